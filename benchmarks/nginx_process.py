"""Debian's nginx in front of local replicas, with the repository's proxy configuration (deploy/nginx/).

Used by benchmarks/failover.py and by tests/deploy/test_nginx.py (which puts this folder on sys.path). nginx
runs as a foreground process (`daemon off`) with its prefix, pid file, logs and temp directories all under one
directory of the caller's, on an ephemeral loopback port, so it needs no root, touches nothing in /etc
or /var and several can run side by side. The policy itself (least_conn, retries, timeouts, buffering, body
limit) is deploy/nginx/novel-lstm.conf, included unchanged; only the replica list and the listen address are
written here, as the two files that configuration includes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
PROXY_CONF = REPO_ROOT / "deploy" / "nginx" / "novel-lstm.conf"
HOST = "127.0.0.1"
# Passive health check of each replica: one failed connection takes it out for FAIL_TIMEOUT_S, then nginx
# tries it again with a single request (and retries elsewhere if it is still down).
FAIL_TIMEOUT_S = 5


class NginxError(RuntimeError):
    """nginx is missing, rejected its configuration or did not start."""


def nginx_binary() -> str | None:
    """Debian installs nginx into /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def replica_lines(replica_ports: list[int], down: set[int] = frozenset()) -> str:
    """One `server` line per replica; `down` ones are out of rotation (a rolling restart's first step)."""
    lines = []
    for port in replica_ports:
        flag = " down" if port in down else ""
        lines.append(f"server {HOST}:{port} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s{flag};\n")
    return "".join(lines)


@dataclass
class LocalNginx:
    """A running nginx: `url` to send requests to, `access_log` (one line per request: status, upstreams
    tried, request id), `reload()` with a new replica list, `stop()`."""

    directory: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.directory / "logs" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.directory / "logs" / "error.log"

    def set_replicas(self, replica_ports: list[int], down: set[int] = frozenset()) -> None:
        (self.directory / "novel-lstm-replicas.conf").write_text(replica_lines(replica_ports, down))

    def reload(self, replica_ports: list[int], down: set[int] = frozenset()) -> None:
        """New replica list, applied the way nginx reloads: new workers take new requests at once, the old
        ones finish the requests they hold (streams included) and exit."""
        self.set_replicas(replica_ports, down)
        _check_config(self.directory)
        generation_before = _worker_pids(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        # The reload is done when a worker started by it exists (it serves the new configuration).
        while time.monotonic() < deadline:
            if _worker_pids(self.process.pid) - generation_before:
                return
            time.sleep(0.02)
        raise NginxError(f"nginx did not reload within 10 s; see {self.error_log}")

    def stop(self) -> None:
        """Graceful quit (SIGQUIT), then terminate if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _worker_pids(master: int) -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def _main_config(directory: Path) -> str:
    logs = directory / "logs"
    temp = directory / "temp"
    # As root (CI), nginx would switch its workers to an unprivileged user that cannot enter the caller's
    # private temporary directory; the workers then stay root, harmless for a loopback-only test proxy.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}"
        "daemon off;\n"
        "worker_processes 2;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {logs / 'error.log'} notice;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    log_format failover '$msec $status $request_method $uri $request_time '\n"
        '                        \'"$upstream_addr" "$upstream_status" $novel_lstm_request_id\';\n'
        f"    access_log {logs / 'access.log'} failover;\n"
        f"    client_body_temp_path {temp / 'client_body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n"
        f"    include {PROXY_CONF};\n"
        "}\n"
    )


def _check_config(directory: Path) -> None:
    binary = nginx_binary()
    command = [binary, "-t", "-q", "-e", str(directory / "logs" / "error.log")]
    command += ["-p", f"{directory}/", "-c", str(directory / "nginx.conf")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NginxError(f"nginx rejected the configuration:\n{result.stderr}")


def start_nginx(directory: Path, replica_ports: list[int], port: int | None = None) -> LocalNginx:
    """Write the configuration into `directory` (created), check it with `nginx -t`, start nginx in the
    foreground and return once it answers on its port."""
    binary = nginx_binary()
    if binary is None:
        raise NginxError("nginx is not installed (Debian: apt-get install nginx; CI's .ci/run installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "temp"):
        (directory / sub).mkdir(exist_ok=True)
    port = port or free_port()
    (directory / "nginx.conf").write_text(_main_config(directory))
    (directory / "novel-lstm-listen.conf").write_text(f"listen {HOST}:{port};\n")
    (directory / "novel-lstm-replicas.conf").write_text(replica_lines(replica_ports))
    _check_config(directory)
    command = [binary, "-e", str(directory / "logs" / "error.log")]
    command += ["-p", f"{directory}/", "-c", str(directory / "nginx.conf")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    nginx = LocalNginx(directory, port, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NginxError(f"nginx exited with {process.returncode}:\n{nginx.error_log.read_text()}")
        try:
            httpx.get(f"{nginx.url}/ping", timeout=2)
            return nginx
        except httpx.TransportError:
            time.sleep(0.05)
    nginx.stop()
    raise NginxError(f"nginx did not listen on port {port} within 20 s")
