"""The import rules of docs/architecture.md, checked on the source: app/, training/ and benchmarks/ stand on
models/ and nothing points back up; inside app/, the engine and the protocols know nothing of HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(folder: str) -> dict[str, set[str]]:
    """module path -> the top two levels of every module it imports (`app.http`, `fastapi`, ...)."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = {".".join(name.split(".")[:2]) for name in names}
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("models", ("app", "training", "benchmarks")),
        ("app", ("training", "benchmarks")),
        ("training", ("app", "benchmarks")),
        ("app/engine", ("fastapi", "starlette", "sse_starlette", "app.http", "app.routes", "app.protocols")),
        ("app/protocols", ("fastapi", "starlette", "sse_starlette", "app.http", "app.routes")),
        ("app/http", ("app.routes", "app.protocols")),
    ],
)
def test_nothing_imports_upwards(folder: str, forbidden: tuple[str, ...]) -> None:
    imports = _imports(folder)
    assert imports, folder
    wrong = {
        module: sorted(name for name in names if name.split(".")[0] in forbidden or name in forbidden)
        for module, names in imports.items()
    }
    assert {module: names for module, names in wrong.items() if names} == {}
