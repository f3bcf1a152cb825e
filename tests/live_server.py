"""Run the real server (`uvicorn app.main:app`) on a free loopback port, for tests and checks over sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    model_dir: Path,
    uvicorn: list[str] | None = None,
    cwd: Path = REPO_ROOT,
    base_env: dict[str, str] | None = None,
    **env: str,
) -> Iterator[str]:
    """`uvicorn app.main:app` on a free loopback port, healthy before it is yielded (its base URL); stopped
    afterwards. `uvicorn` is the command (default: this interpreter's), `base_env` the environment to start
    from (default: this process's). The server's output goes to a file, not a pipe nobody reads, which a
    chatty server would fill and then block on; it is shown when the server fails to start."""
    port = free_port()
    environment = {**(os.environ if base_env is None else base_env), "MODEL_DIR": str(model_dir), **env}
    command = [*(uvicorn or [sys.executable, "-m", "uvicorn"]), "app.main:app", "--host", "127.0.0.1"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"uvicorn exited with {process.returncode} before serving:\n{log.read()}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"uvicorn did not answer /health within 120 s:\n{log.read()}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
