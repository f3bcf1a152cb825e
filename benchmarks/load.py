"""Load, abandonment and half-open connections against the real server, all on 127.0.0.1.

Starts `uvicorn app.main:app` (a subprocess on a free loopback port, `--workers N`) for a trained model and
runs, in this order:

1. **load**: 32 clients for 60 s, each sending a random mix of POST /generate, POST /generate_stream (read to
   the end), POST /predict, GET and POST /similar, GET /info, one after the other, while a separate probe
   sends GET /health every 50 ms. Any answer but 200, and any transport error, counts as an error.
2. **abandonment**: 50 streams read to their first event and then dropped, and 50 POST /generate calls for
   512 tokens whose sockets are closed while they generate. Then the server's CPU time is sampled for 3 s:
   abandoned work must stop (the generations are cancelled, not finished for nobody).
3. **half-open connections**: 200 that send half of their request headers and 200 that send headers and half
   a body, then stall. /health must keep answering while they are held, and the server must close every one
   of them by itself (HEADER_READ_TIMEOUT / BODY_READ_TIMEOUT, set to 5 s here).
4. resident memory of every worker process.

Prints (and exits 1 if a limit is missed):

    errors: 0
    requests: N in 60 s (X/s); latency p50 X ms, p99 X ms
    /health under load: p50 X ms, p99 X ms (limit 200 ms)
    abandoned: 50 streams + 50 /generate; cancelled N; server CPU in the 3 s after: X% of one core
    half-open: 400 held; /health meanwhile p99 X ms; closed by the server within X s: 400/400
    RSS per worker: X MB (limit 300 MB)

    python benchmarks/load.py --model-dir artifacts/hongloumeng

The client runs in this process on the same cores as the server, so the figures are for both together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from server_process import HOST, fail, start_server, stop_server

PROMPTS = ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母道", "袭人", "那僧道", "只见", "宝钗"]
WORDS = ["宝玉", "黛玉", "宝钗", "袭人", "贾母", "凤姐"]
HEALTH_P99_LIMIT_MS = 200.0
RSS_LIMIT_MB = 300.0
IDLE_CPU_LIMIT = 0.10  # share of one core the server may still use once abandoned work is gone
STALL_TIMEOUT_S = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts/hongloumeng"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of mixed load")
    parser.add_argument(
        "--abandoned", type=int, default=50, help="abandoned streams, and abandoned /generate"
    )
    parser.add_argument("--half-open", type=int, default=200, help="stalled connections of each kind")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ------------------------------------------------------------------------------------------------ server


def start_load_server(model_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    timeouts = {"BODY_READ_TIMEOUT": str(STALL_TIMEOUT_S), "HEADER_READ_TIMEOUT": str(STALL_TIMEOUT_S)}
    return start_server(model_dir, workers, timeouts)


def server_processes(root: int) -> list[int]:
    """The serving processes: uvicorn's worker children with --workers > 1, else the server itself. (The
    multiprocessing helper uvicorn starts beside its workers is not one; it holds no model.)"""
    children: list[int] = []
    for task in Path(f"/proc/{root}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(pid) for pid in text]
    workers = [pid for pid in children if "app.main" in _cmdline(pid) or _rss_mb(pid) > 50]
    return workers or [root]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def metric(url: str, name: str) -> float:
    """Sum of a Prometheus sample over its labels (one worker's view when WORKERS > 1)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------------------------------------ 1. load


def _generate_body(rng: random.Random) -> dict:
    return {
        "inputs": rng.choice(PROMPTS),
        "parameters": {
            "max_new_tokens": rng.randint(10, 60),
            "do_sample": True,
            "temperature": 0.9,
            "top_k": 40,
            "seed": rng.randrange(2**32),
        },
    }


async def _one_request(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int]:
    kind = rng.choices(
        ["generate", "generate_stream", "predict", "similar_get", "similar_post", "info"],
        weights=[4, 3, 2, 1, 1, 1],
    )[0]
    if kind == "generate":
        response = await client.post("/generate", json=_generate_body(rng))
    elif kind == "generate_stream":
        async with client.stream("POST", "/generate_stream", json=_generate_body(rng)) as stream:
            async for _ in stream.aiter_lines():
                pass
            response = stream
    elif kind == "predict":
        response = await client.post("/predict", json={"inputs": rng.choice(PROMPTS), "top_k": 10})
    elif kind == "similar_get":
        response = await client.get("/similar", params={"word": rng.choice(WORDS), "topn": 10})
    elif kind == "similar_post":
        positive = rng.sample(WORDS, 2)
        response = await client.post("/similar", json={"positive": positive, "topn": 10})
    else:
        response = await client.get("/info")
    return kind, response.status_code


async def run_load(url: str, clients: int, duration: float, seed: int) -> dict:
    latencies: list[float] = []
    health: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + duration

    async def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    kind, status = await _one_request(client, rng)
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"{kind}: HTTP {status}")

    async def health_probe() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get("/health")
                    if response.status_code != 200:
                        errors.append(f"health: HTTP {response.status_code}")
                except httpx.HTTPError as error:
                    errors.append(f"health: {type(error).__name__}: {error}")
                health.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

    await asyncio.gather(health_probe(), *(client_loop(i) for i in range(clients)))
    return {"latencies": latencies, "health": health, "errors": errors}


# --------------------------------------------------------------------------------------- 2. abandonment


async def abandon_streams(url: str, count: int) -> int:
    async def one(i: int) -> int:
        body = {"inputs": PROMPTS[i % len(PROMPTS)], "parameters": {"max_new_tokens": 512, "seed": i}}
        async with (
            httpx.AsyncClient(base_url=url, timeout=60) as client,
            client.stream("POST", "/generate_stream", json=body) as stream,
        ):
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    return stream.status_code  # leaving the block drops the connection
        return 0

    statuses = await asyncio.gather(*(one(i) for i in range(count)))
    return sum(1 for status in statuses if status == 200)


def abandon_generates(url: str, count: int) -> None:
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    for i in range(count):
        body = json.dumps(
            {"inputs": PROMPTS[i % len(PROMPTS)], "parameters": {"max_new_tokens": 512}}
        ).encode()
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sockets.append(sock)
    time.sleep(0.2)  # they are queued or generating now
    for sock in sockets:
        sock.close()


# ---------------------------------------------------------------------------------- 3. half-open connections


def open_half_requests(url: str, count: int) -> list[socket.socket]:
    port = int(url.rsplit(":", 1)[1])
    held = []
    for i in range(count):
        headers_only = socket.create_connection((HOST, port), timeout=10)
        headers_only.sendall(b"POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: appl")
        half_body = socket.create_connection((HOST, port), timeout=10)
        half_body.sendall(
            b"POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"inputs": "' + str(i).encode()
        )
        held += [headers_only, half_body]
    return held


def wait_until_closed(held: list[socket.socket], limit: float) -> tuple[int, float]:
    """How many of `held` the server closed within `limit` seconds, and when the last one closed."""
    for sock in held:
        sock.setblocking(False)
    open_ = set(range(len(held)))
    started = time.monotonic()
    last = 0.0
    while open_ and time.monotonic() - started < limit:
        for index in list(open_):
            try:
                data = held[index].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # EOF: the server closed it (after its 408, which arrives first)
                open_.discard(index)
                last = time.monotonic() - started
        time.sleep(0.05)
    for sock in held:
        sock.close()
    return len(held) - len(open_), last


async def health_p99_while(url: str, seconds: float) -> float:
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get("/health")
            response.raise_for_status()
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return percentile(times, 0.99) * 1000


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    args = parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        fail(f"no trained model at {args.model_dir}; train one with `make train OUT={args.model_dir}`")
    process, url = start_load_server(args.model_dir, args.workers)
    failed: list[str] = []
    try:
        workers = server_processes(process.pid)
        print(f"server: {url}, {len(workers)} worker process(es), model {args.model_dir}", flush=True)

        load = asyncio.run(run_load(url, args.clients, args.duration, args.seed))
        latencies_ms = [t * 1000 for t in load["latencies"]]
        health_ms = [t * 1000 for t in load["health"]]
        errors = load["errors"]
        print(f"errors: {len(errors)}")
        for error in sorted(set(errors))[:10]:
            print(f"  {error} (x{errors.count(error)})")
        rate = len(latencies_ms) / args.duration
        print(
            f"requests: {len(latencies_ms)} in {args.duration:g} s ({rate:.0f}/s) "
            f"from {args.clients} clients; latency p50 {statistics.median(latencies_ms):.0f} ms, "
            f"p99 {percentile(latencies_ms, 0.99):.0f} ms"
        )
        health_p99 = percentile(health_ms, 0.99)
        print(
            f"/health under load: p50 {statistics.median(health_ms):.1f} ms, p99 {health_p99:.1f} ms "
            f"(limit {HEALTH_P99_LIMIT_MS:.0f} ms)"
        )
        if errors:
            failed.append("errors under load")
        if health_p99 >= HEALTH_P99_LIMIT_MS:
            failed.append("/health p99 under load")

        cancelled_before = metric(url, "novel_lstm_cancelled_generations_total")
        streams = asyncio.run(abandon_streams(url, args.abandoned))
        abandon_generates(url, args.abandoned)
        time.sleep(1.0)  # one tick is enough to drop them; leave room for the last disconnects to arrive
        before = cpu_seconds(workers)
        time.sleep(3.0)
        idle_share = (cpu_seconds(workers) - before) / 3.0
        cancelled = metric(url, "novel_lstm_cancelled_generations_total") - cancelled_before
        active = metric(url, "novel_lstm_batch_current_size") + metric(url, "novel_lstm_queue_size")
        print(
            f"abandoned: {streams} streams + {args.abandoned} /generate; cancelled {cancelled:.0f} "
            f"(one worker's count), still running or queued {active:.0f}; server CPU in the 3 s after: "
            f"{idle_share:.1%} of one core (limit {IDLE_CPU_LIMIT:.0%})"
        )
        if idle_share > IDLE_CPU_LIMIT or active > 0:
            failed.append("abandoned work kept running")

        held = open_half_requests(url, args.half_open)
        health_during = asyncio.run(health_p99_while(url, 2.0))
        closed, last = wait_until_closed(held, STALL_TIMEOUT_S * 4)
        print(
            f"half-open: {len(held)} held ({args.half_open} in the headers, {args.half_open} in the body); "
            f"/health meanwhile p99 {health_during:.1f} ms; closed by the server within {last:.1f} s: "
            f"{closed}/{len(held)}"
        )
        if closed < len(held):
            failed.append("half-open connections held")

        rss = [_rss_mb(pid) for pid in workers]
        print(
            f"RSS per worker: {', '.join(f'{value:.0f} MB' for value in rss)} (limit {RSS_LIMIT_MB:.0f} MB)"
        )
        if max(rss) > RSS_LIMIT_MB:
            failed.append("RSS per worker")
    finally:
        stop_server(process)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
