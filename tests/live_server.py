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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A started server: its base `url`, its `process` (to signal it), `output()` (what it printed so far)."""

    url: str
    process: subprocess.Popen
    log: IO[str]

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


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
    with live_server(model_dir, uvicorn, cwd, base_env, **env) as server:
        yield server.url


@contextmanager
def live_server(
    model_dir: Path,
    uvicorn: list[str] | None = None,
    cwd: Path = REPO_ROOT,
    base_env: dict[str, str] | None = None,
    port: int | None = None,
    **env: str,
) -> Iterator[LiveServer]:
    """running_server's server with its process and output, for tests that stop or kill it themselves (a
    server that has already exited is not stopped again)."""
    port = port or free_port()
    environment = {**(os.environ if base_env is None else base_env), "MODEL_DIR": str(model_dir), **env}
    command = [*(uvicorn or [sys.executable, "-m", "uvicorn"]), "app.main:app", "--host", "127.0.0.1"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        server = LiveServer(f"http://127.0.0.1:{port}", process, log)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    code = process.returncode
                    pytest.fail(f"uvicorn exited with {code} before serving:\n{server.output()}")
                try:
                    if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not answer /health within 120 s:\n{server.output()}")
                time.sleep(0.2)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
