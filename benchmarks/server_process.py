"""The real server as a subprocess for the benchmarks: started on a free loopback port, waited for, stopped.

Shared by benchmarks/load.py and benchmarks/serve.py, which are run as scripts (`python benchmarks/X.py`,
as `make bench` does), so they import this module as a sibling (`from server_process import ...`): the
script's own folder is first on sys.path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # every request of the benchmarks goes to the loopback interface only


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`uvicorn app.main:app` for `model_dir` with `workers` processes and the settings in `env` (added to
    this process's environment); returns once /health answers 200, exits with a message if it never does."""
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(model_dir), **env}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"the server exited with code {process.returncode} before serving (see its output above)")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(process)
    fail("the server did not answer /health within 120 s")
    raise AssertionError("unreachable")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
