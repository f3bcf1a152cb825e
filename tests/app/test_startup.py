"""A missing or broken model directory stops `uvicorn app.main:app` with one clear line, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from live_server import REPO_ROOT, free_port

from app.engine.service import ModelLoadError
from app.main import create_app
from app.settings import Settings


def _start(model_dir: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "MODEL_DIR": str(model_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if "cannot start" in line]


def test_missing_model_dir_stops_the_server_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    result = _start(missing)
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert str(missing) in line and "does not exist" in line
    assert "make train" in line and "python -m training" in line


def test_corrupt_model_dir_stops_the_server_with_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    with open(broken / "lstm.npz", "r+b") as handle:  # flip bytes in the middle: the hash no longer matches
        handle.seek(200)
        handle.write(b"\x00\xff" * 16)
    result = _start(broken)
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert "lstm.npz" in line and "make train" in line


def test_directory_without_manifest(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _start(empty)
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert "manifest.json" in line


def test_in_process_start_raises_the_same_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ModelLoadError, match="does not exist"),
        TestClient(create_app(Settings(model_dir=tmp_path / "x"))),
    ):
        pass


def test_a_model_of_an_older_format_is_refused_with_one_line_saying_retrain(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A format-1 model (closed vocabulary, unknown words deleted) must be retrained, not served.
    import json

    from models.artifacts import MANIFEST_FILE, MANIFEST_HASH_KEY, OLDEST_READABLE_VERSION, manifest_digest

    old = tmp_path / "old"
    shutil.copytree(tiny_model_dir, old)
    manifest = json.loads((old / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["format_version"] = OLDEST_READABLE_VERSION - 1
    manifest[MANIFEST_HASH_KEY] = manifest_digest(manifest)  # a genuine old manifest, not a corrupted one
    (old / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    result = _start(old)
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert "older version" in line and "retrain" in line and "make train" in line
