"""The rules of docs/architecture.md, checked on the source: app/, training/ and benchmarks/ stand on
models/ and nothing points back up; inside app/, the engine and the protocols know nothing of HTTP,
and its functions and modules stay within the size the document sets."""

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


def test_app_functions_and_modules_stay_readable() -> None:
    """docs/architecture.md's size rule for app/: no function over 80 lines (decorators included), no module
    over 400; past that a piece is doing two things and should be split where the document says."""
    too_long = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        if len(text.splitlines()) > 400:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
                if node.end_lineno - start + 1 > 80:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {node.end_lineno - start + 1} lines")
    assert too_long == []
