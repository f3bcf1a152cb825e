"""What grounding and reranking cost a chat turn: latency of POST /v1/chat/completions, grounded and reranked
vs plain, at concurrency 1 and 8, in one run.

Starts the real server twice for a trained model directory (one worker each, subprocesses on free loopback
ports): `CHAT_GROUNDING=true` (the default: the novel's exchanges recalled for the turn, a pool of sampled
candidates ranked by relevance) and `CHAT_GROUNDING=false` (the plain turn: no recalled lines, one
candidate). For each concurrency level it sends the same chat turns (real lines of the novel's dialogue
form, a different seed per request, sampling at the playground's settings, replies up to 60 tokens) to one
server and then the other, `--rounds` times alternately (the machine is shared: each round's ratio compares
measurements taken seconds apart; at concurrency 1 the two servers take turns request by request, so both
meet the same moments of a shared machine), and prints the median latency of each and the median of the
rounds' ratios, and beside them the CPU time each server process spent per turn (user + system, from /proc:
on a shared machine the latencies move with the other jobs, the CPU a turn costs much less). The last lines
are the ratios the chat's latency goal is stated in:

    grounded/plain median latency at concurrency 1: X.XX
    grounded/plain median latency at concurrency 8: X.XX

    python benchmarks/chat_latency.py --model-dir artifacts/hongloumeng
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

# The server sets one BLAS thread per process (app/__init__.py); so does this client, which only waits.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import httpx  # noqa: E402
from server_process import fail, start_server, stop_server  # noqa: E402

# What people say to the characters: greetings, questions, invitations (the playground's kind of turn).
TURNS = [
    ("林妹妹，你今天身上可好些了？", "黛玉"),
    ("老太太，今儿可吃了饭没有？", "贾母"),
    ("二爷往那里去？", "宝玉"),
    ("姐姐，明儿园子里逛逛去罢。", "宝钗"),
    ("奶奶叫你呢，快去罢。", "袭人"),
    ("这件事你可知道了？", "凤姐"),
    ("你们在这里做什么呢？", "平儿"),
    ("妹妹为什么又哭了？", "黛玉"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts/hongloumeng"))
    parser.add_argument("--requests", type=int, default=16, help="requests per level and server per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def body(i: int, characters: set[str]) -> dict:
    said, character = TURNS[i % len(TURNS)]
    request = {
        "messages": [{"role": "user", "content": said}],
        "max_tokens": 60,
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": i,
    }
    if character in characters:  # a model trained on another novel plays its default character
        request["character"] = character
    return request


async def drive(url: str, requests: int, concurrency: int, characters: set[str]) -> list[float]:
    """Latencies (s) of `requests` chat turns, at most `concurrency` in flight; any failure stops the run."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body(i, characters))
                if response.status_code != 200:
                    fail(f"chat turn {i}: HTTP {response.status_code} {response.text[:200]}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def drive_paired(urls: dict[str, str], requests: int, characters: set[str]) -> dict[str, list[float]]:
    """Concurrency 1 on both servers taking turns: chat turn i is sent to one and then to the other (which
    goes first alternates), one request in flight at a time; the latencies (s) per server."""
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    async with httpx.AsyncClient(timeout=300) as client:
        for i in range(requests):
            for name in list(urls)[:: 1 if i % 2 == 0 else -1]:
                started = time.perf_counter()
                response = await client.post(f"{urls[name]}/v1/chat/completions", json=body(i, characters))
                if response.status_code != 200:
                    fail(f"chat turn {i} ({name}): HTTP {response.status_code} {response.text[:200]}")
                latencies[name].append(time.perf_counter() - started)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; the server is one process per worker)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    args = parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        fail(f"{args.model_dir}: not a model directory (train one with `make train`)")
    servers = {}
    try:
        for name, grounding in (("grounded", "true"), ("plain", "false")):
            servers[name] = start_server(args.model_dir, 1, {"CHAT_GROUNDING": grounding})
        characters = {c["name"] for c in httpx.get(f"{servers['plain'][1]}/characters").json()["characters"]}
        for _, url in servers.values():  # warm-up: the first turns pay for lazy loading
            asyncio.run(drive(url, 2, 1, characters))
        print(f"model {args.model_dir}; {args.requests} chat turns per level, {args.rounds} rounds")
        print(
            "concurrency  grounded p50 ms  plain p50 ms  ratio (median of rounds)  "
            "server CPU ms per turn (grounded, plain)"
        )
        ratios_by_level = {}
        for concurrency in args.concurrency:
            medians: dict[str, list[float]] = {"grounded": [], "plain": []}
            cpu: dict[str, float] = {"grounded": 0.0, "plain": 0.0}
            ratios = []
            for _ in range(args.rounds):
                if concurrency == 1:
                    before = {name: cpu_seconds(process.pid) for name, (process, _) in servers.items()}
                    urls = {name: url for name, (_, url) in servers.items()}
                    paired = asyncio.run(drive_paired(urls, args.requests, characters))
                    for name, (process, _) in servers.items():
                        cpu[name] += cpu_seconds(process.pid) - before[name]
                        medians[name].append(statistics.median(paired[name]))
                else:
                    for name, (process, url) in servers.items():
                        before_one = cpu_seconds(process.pid)
                        latencies = asyncio.run(drive(url, args.requests, concurrency, characters))
                        cpu[name] += cpu_seconds(process.pid) - before_one
                        medians[name].append(statistics.median(latencies))
                ratios.append(medians["grounded"][-1] / medians["plain"][-1])
            ratio = statistics.median(ratios)
            ratios_by_level[concurrency] = ratio
            turns = args.rounds * args.requests
            print(
                f"{concurrency:>11}  {statistics.median(medians['grounded']) * 1000:>15.0f}  "
                f"{statistics.median(medians['plain']) * 1000:>12.0f}  {ratio:.2f} "
                f"({', '.join(f'{r:.2f}' for r in ratios)})  "
                f"{cpu['grounded'] / turns * 1000:.1f}, {cpu['plain'] / turns * 1000:.1f}"
            )
        for concurrency, ratio in ratios_by_level.items():
            print(f"grounded/plain median latency at concurrency {concurrency}: {ratio:.2f}")
    finally:
        for process, _ in servers.values():
            stop_server(process)


if __name__ == "__main__":
    main()
