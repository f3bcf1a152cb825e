"""What a user loses when a replica restarts or dies: nginx (deploy/nginx/novel-lstm.conf) in front of N
uvicorn replicas of one model, under load, all on 127.0.0.1.

Starts the replicas (`uvicorn app.main:app`, one process each, DRAIN_TIMEOUT as given) and Debian's nginx in
front of them (benchmarks/nginx_process.py), then drives load through the proxy for the whole run: `--clients`
concurrent clients, each sending one request after another, half POST /generate and half POST /generate_stream
(read to the end), 16-64 new tokens (one in five: 200-400), every request with its own id (X-Request-ID, and
`?request_id=` so each replica's access log names it). Meanwhile, in this order:

1. **steady**: load only (`--steady` seconds).
2. **rolling restart (SIGTERM)**: for each replica in turn, what a deploy does: take it out of nginx's
   upstream (`down`, nginx reloads gracefully; Kubernetes does the same by removing the pod from the endpoints
   during its preStop pause), send it SIGTERM (it drains: running generations finish, new ones are refused
   with 503, then it exits), start it again on the same port, wait for /health 200, and put it back (reload).
3. **steady** again.
4. **replica killed (SIGKILL)**: the first replica is killed without warning and stays down; load goes on for
   `--steady` seconds. nginx finds out from the refused connections (passive health check) and retries those
   on another replica, since nothing was sent; the requests that were running on the killed replica fail.

A request fails when it gets any status but 200, when a stream breaks off or ends with an error event, or on a
transport error. For each window it prints requests (by the time they ended), failures by cause, latency
p50/p99 and tokens/s; then checks in the replicas' own access logs that no request id reached two replicas
(nginx never sent a generation twice), and ends with:

    rolling restart (SIGTERM) under load: N requests, F failed
    replica killed (SIGKILL) under load: N requests, F failed (in flight on it), G after 1 s

where the rolling-restart N counts every request that overlapped the restarts, and for the kill N counts every
request that overlapped the time from the kill to the end, F those of them that failed and had been sent to
the killed replica, G the failures among requests started 1 s or more after the kill. Exits 1 if a request
failed during the rolling restart, a failure happened 1 s after the kill, or a generation ran twice.

    python benchmarks/failover.py --model-dir artifacts/hongloumeng

Clients open a new connection to nginx for every request unless `--keep-alive`: reloading nginx (how a replica
is taken out and put back) closes the idle client connections of its old workers, and a request sent on one at
that very moment fails (httpx does not resend a POST): a cost of reloading the proxy with keep-alive clients,
not of the replicas, which `--keep-alive` shows on its own.

The clients, nginx and the replicas share this machine's cores, so latency and tokens/s are for all of them
together; the failure counts are what the benchmark is about.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from nginx_process import HOST, LocalNginx, NginxError, free_port, nginx_binary, start_nginx
from server_process import REPO_ROOT, fail

PROMPTS = ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母道", "袭人", "那僧道", "只见", "宝钗"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts/hongloumeng"))
    parser.add_argument("--replicas", type=int, default=2, help="API replicas behind nginx (at least 2)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16-32)")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of load before and after events")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="DRAIN_TIMEOUT of the replicas")
    parser.add_argument(
        "--take-out-delay",
        type=float,
        default=1.0,
        help="seconds between taking a replica out of nginx and its SIGTERM (Kubernetes' preStop pause)",
    )
    parser.add_argument(
        "--no-take-out",
        action="store_true",
        help="SIGTERM the replicas without taking them out of nginx first (what a bare `docker compose "
        "restart` does): shows what the drain's 503s cost when the proxy is not told",
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="clients reuse their connections to nginx (off: one connection per request, see the docstring)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.replicas < 2:
        parser.error("--replicas must be at least 2: the survivors carry the load while one restarts")
    if not 1 <= args.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    return args


# ------------------------------------------------------------------------------------------------ replicas


@dataclass
class Replica:
    """One replica's port; a new process (and log file) for every start on it."""

    index: int
    port: int
    log_dir: Path
    process: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, model_dir: Path, drain_timeout: float) -> None:
        log = self.log_dir / f"replica{self.index}-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {**os.environ, "MODEL_DIR": str(model_dir), "DRAIN_TIMEOUT": str(drain_timeout)}
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", HOST, "--port", str(self.port)]
        # The access log stays on (uvicorn's default): it is the record of which replica ran which request id.
        command += ["--log-level", "info"]
        with log.open("w") as output:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=output)

    def wait_healthy(self, seconds: float = 180) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.process.poll() is not None:
                fail(f"replica {self.index} exited with {self.process.returncode}; see {self.logs[-1]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        fail(f"replica {self.index} did not answer /health within {seconds:.0f} s; see {self.logs[-1]}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# ------------------------------------------------------------------------------------------------ load


@dataclass
class Result:
    request_id: str
    kind: str  # "generate" | "stream"
    started: float
    ended: float
    cause: str | None  # None: succeeded
    tokens: int


async def one_request(client: httpx.AsyncClient, proxy: str, request_id: str, rng: random.Random) -> Result:
    stream = rng.random() < 0.5
    kind = "stream" if stream else "generate"
    # Mostly short requests; one in five long enough (seconds under load) to be running when a replica stops.
    tokens = rng.randint(200, 400) if rng.random() < 0.2 else rng.randint(16, 64)
    body = {
        "inputs": rng.choice(PROMPTS),
        "parameters": {"max_new_tokens": tokens, "do_sample": True, "seed": rng.getrandbits(32)},
    }
    url = f"{proxy}/{'generate_stream' if stream else 'generate'}?request_id={request_id}"
    headers = {"X-Request-ID": request_id}
    started = time.monotonic()
    cause: str | None = None
    received = 0
    answered = False  # the status line came back (a stream that breaks off after it is "broken off")
    try:
        if not stream:
            response = await client.post(url, json=body, headers=headers)
            if response.status_code == 200:
                received = int(response.headers["x-generated-tokens"])
            else:
                cause = f"HTTP {response.status_code}"
        else:
            async with client.stream("POST", url, json=body, headers=headers) as response:
                answered = True
                if response.status_code != 200:
                    await response.aread()
                    cause = f"HTTP {response.status_code}"
                else:
                    last: dict = {}
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            last = json.loads(line[5:])
                            if "error" in last:
                                cause = f"error event ({last.get('error_type')})"
                                break
                            received += 1
                    if cause is None and "details" not in last:
                        cause = "stream ended without its last event"
    except httpx.RemoteProtocolError:
        cause = "stream broken off" if answered else "connection closed, no answer"
    except httpx.HTTPError as error:
        cause = f"transport: {type(error).__name__}"
    return Result(request_id, kind, started, time.monotonic(), cause, received if cause is None else 0)


async def client_loop(
    number: int, proxy: str, stop: asyncio.Event, results: list[Result], seed: int, keep_alive: bool
) -> None:
    rng = random.Random(seed * 1000 + number)
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2 if keep_alive else 0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        count = 0
        while not stop.is_set():
            count += 1
            results.append(await one_request(client, proxy, f"c{number}-{count}", rng))


# ------------------------------------------------------------------------------------------------ events


@dataclass
class Window:
    name: str
    start: float
    end: float = 0.0


async def rolling_restart(
    replicas: list[Replica], nginx: LocalNginx, args: argparse.Namespace, windows: list[Window]
) -> None:
    model_dir, drain_timeout = args.model_dir, args.drain_timeout
    ports = [replica.port for replica in replicas]
    for replica in replicas:
        window = Window(f"restart replica {replica.index} (SIGTERM)", time.monotonic())
        windows.append(window)
        if not args.no_take_out:
            await asyncio.to_thread(nginx.reload, ports, {replica.port})
            # nginx's old workers pass on the requests they had already read with the old replica list;
            # they reach the replica within milliseconds, and must arrive before it refuses new generations.
            await asyncio.sleep(args.take_out_delay)
        taken_out = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(replica.process.wait, drain_timeout + 30)
        drained = time.monotonic()
        drain_report = (re.findall(r"drained: .*", replica.logs[-1].read_text()) or ["no drain line"])[-1]
        replica.start(model_dir, drain_timeout)
        loaded = await asyncio.to_thread(replica.wait_healthy)
        if not args.no_take_out:
            await asyncio.to_thread(nginx.reload, ports)
        print(
            f"  replica {replica.index}: SIGTERM {taken_out - window.start:.2f} s after the restart began, "
            f"exited {drained - taken_out:.2f} s later ({drain_report}); "
            f"restarted and healthy in {loaded:.1f} s",
            flush=True,
        )
        await asyncio.sleep(2)  # settle: the new process takes its share again before the next one goes
        window.end = time.monotonic()


# ------------------------------------------------------------------------------------------------ reporting


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def describe(window: Window, results: list[Result]) -> str:
    inside = [r for r in results if window.start <= r.ended < window.end]
    ok = [r for r in inside if r.cause is None]
    causes = Counter(r.cause for r in inside if r.cause is not None)
    latencies = [1000 * (r.ended - r.started) for r in ok]
    seconds = max(window.end - window.start, 1e-9)
    failed = ", ".join(f"{n} {cause}" for cause, n in causes.most_common()) or "none"
    return (
        f"{window.name:<40} {seconds:5.1f} s  {len(inside):5d} requests  failed: {failed}; "
        f"p50 {percentile(latencies, 0.5):6.0f} ms  p99 {percentile(latencies, 0.99):6.0f} ms  "
        f"{sum(r.tokens for r in ok) / seconds:7.0f} tokens/s"
    )


def upstreams_by_request(nginx: LocalNginx) -> dict[str, str]:
    """request id -> the upstream address(es) nginx tried, from its access log."""
    return {request_id: line.split('"')[1] for request_id, line in log_lines_by_request(nginx).items()}


def log_lines_by_request(nginx: LocalNginx) -> dict[str, str]:
    """request id -> its line in nginx's access log (status, upstreams tried and their statuses)."""
    found: dict[str, str] = {}
    for line in nginx.access_log.read_text().splitlines():
        match = re.search(r'"[^"]*" "[^"]*" (\S+)$', line)
        if match:
            found[match.group(1)] = line
    return found


def replicas_by_request(replicas: list[Replica]) -> dict[str, set[str]]:
    """request id -> every replica process whose access log has it (any status)."""
    seen: dict[str, set[str]] = {}
    for replica in replicas:
        for log in replica.logs:
            for request_id in re.findall(r"request_id=([\w-]+) HTTP/1\.1\" \d+", log.read_text()):
                seen.setdefault(request_id, set()).add(log.stem)
    return seen


def resources(pid: int) -> tuple[float, float]:
    """Resident memory (MB) and CPU seconds (user + system) of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overlapping(results: list[Result], start: float, end: float) -> list[Result]:
    return [r for r in results if r.started < end and r.ended > start]


# ------------------------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace, replicas: list[Replica], nginx: LocalNginx) -> int:
    results: list[Result] = []
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(client_loop(n, nginx.url, stop, results, args.seed, args.keep_alive))
        for n in range(args.clients)
    ]
    windows: list[Window] = []
    began = time.monotonic()
    windows.append(Window("steady", began))
    await asyncio.sleep(args.steady)
    windows[-1].end = time.monotonic()

    print("rolling restart:", flush=True)
    await rolling_restart(replicas, nginx, args, windows)
    rolling_start, rolling_end = windows[1].start, windows[-1].end

    windows.append(Window("steady after the restarts", time.monotonic()))
    await asyncio.sleep(args.steady)
    windows[-1].end = time.monotonic()

    victim = replicas[0]
    killed = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    print(f"replica {victim.index} killed (SIGKILL) and left down", flush=True)
    windows.append(Window(f"kill replica {victim.index}: the first 1 s", killed, killed + 1))
    await asyncio.sleep(1)
    windows.append(Window(f"kill replica {victim.index}: 1 s on", killed + 1))
    await asyncio.sleep(args.steady)
    stop.set()
    await asyncio.gather(*clients)
    ended = time.monotonic()
    windows[-1].end = ended
    for replica in replicas[1:]:  # the survivors, after the whole run's load
        rss, cpu = resources(replica.process.pid)
        print(f"replica {replica.index}: {rss:.0f} MB resident, {cpu:.1f} s of CPU since its (re)start")

    print()
    for window in windows:
        print(describe(window, results))
    print()

    upstreams = upstreams_by_request(nginx)
    reached = replicas_by_request(replicas)
    twice = sorted(request_id for request_id, processes in reached.items() if len(processes) > 1)
    resent = sorted(
        r.request_id for r in results if "," in upstreams.get(r.request_id, "") and r.cause is not None
    )
    print(
        f"request ids in the replicas' access logs: {len(reached)} of {len(results)} requests; "
        f"reached two replicas (a generation run twice): {len(twice)} {twice[:5] if twice else ''}"
    )
    retried = sum("," in addresses for addresses in upstreams.values())
    print(
        f"nginx retried {retried} requests on another replica after a failed connection (nothing sent); "
        f"failed requests among them: {len(resent)}"
    )

    rolling = overlapping(results, rolling_start, rolling_end)
    rolling_failed = [r for r in rolling if r.cause is not None]
    after_kill = overlapping(results, killed, ended)
    kill_failed = [r for r in after_kill if r.cause is not None]
    on_victim = [r for r in kill_failed if upstreams.get(r.request_id, "").split(", ")[0] == victim.address]
    elsewhere = [r for r in kill_failed if r not in on_victim]
    late = [r for r in kill_failed if r.started >= killed + 1]
    in_flight = [r for r in on_victim if r.started < killed]
    latest = max((r.started - killed for r in on_victim), default=0.0)
    print(
        f"killed replica: {len(on_victim)} failed requests had been sent to it ({len(in_flight)} of them "
        f"started before the kill; latest start {1000 * latest:+.0f} ms from the kill); "
        f"{len(elsewhere)} other failures"
        + (f": {Counter(r.cause for r in elsewhere).most_common()}" if elsewhere else "")
    )
    if rolling_failed:
        print(f"rolling restart failures: {Counter(r.cause for r in rolling_failed).most_common()}")
        lines = log_lines_by_request(nginx)
        marks = ", ".join(f"{w.name} at {w.start - began:.2f} s" for w in windows[1:-3])
        print(f"  (times from the start of the load: {marks})")
        for r in rolling_failed[:5]:
            print(
                f"  {r.request_id} {r.kind}: {r.started - began:.2f}-{r.ended - began:.2f} s, {r.cause}; "
                f"nginx: {lines.get(r.request_id, 'no log line')}"
            )
    print(f"rolling restart (SIGTERM) under load: {len(rolling)} requests, {len(rolling_failed)} failed")
    print(
        f"replica killed (SIGKILL) under load: {len(after_kill)} requests, {len(on_victim)} failed "
        f"(in flight on it), {len(late)} after 1 s"
    )
    return 1 if rolling_failed or late or elsewhere or twice else 0


def main() -> None:
    args = parse_args()
    if nginx_binary() is None:
        fail("nginx is not installed (Debian: apt-get install nginx, or `make nginx` as root)")
    if not (args.model_dir / "manifest.json").is_file():
        fail(f"{args.model_dir} holds no trained model (manifest.json); train one with `make train`")
    with tempfile.TemporaryDirectory(prefix="failover-") as directory:
        root = Path(directory)
        replicas = [Replica(index, free_port(), root) for index in range(args.replicas)]
        try:
            for replica in replicas:
                replica.start(args.model_dir, args.drain_timeout)
            loads = [replica.wait_healthy() for replica in replicas]
            print(
                f"{args.replicas} replicas of {args.model_dir} healthy (model loaded in "
                f"{', '.join(f'{s:.1f}' for s in loads)} s); {args.clients} clients through nginx",
                flush=True,
            )
            try:
                nginx = start_nginx(root / "nginx", [replica.port for replica in replicas])
            except NginxError as error:
                fail(str(error))
            try:
                code = asyncio.run(run(args, replicas, nginx))
            finally:
                nginx.stop()
        finally:
            for replica in replicas:
                replica.stop()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
