"""Continuous batching, measured: HTTP generation throughput and latency with batching on and off, in one run.

Starts the real server (`uvicorn app.main:app`, subprocesses on free loopback ports) twice for a trained model
directory, both with one worker process: batching on (MAX_BATCH_SIZE=64, the default) and off
(MAX_BATCH_SIZE=1: one sequence at a time, the others wait in the queue). For each concurrency level (1, 4,
8, 16, 64) it drives POST /generate (100 new tokens, sampling, a different seed per request) against one
server and then the other, `--rounds` times alternately (the machine is shared and its load changes within
seconds, so each round's ratio compares measurements taken seconds apart; the medians are printed), with a
lean asyncio HTTP/1.1 client (see `drive`), and prints aggregate tokens/s and p50/p99 latency for both and
their ratio. The in-process decoder (`Decoder.generate`, sequential, in this process) on the same requests,
measured in each round at concurrency 8, is the reference for the HTTP overhead. "per CPU s" is the ratio of
tokens per second of each server's own CPU time, which does not depend on the share of the shared cores a
server happened to get while it was measured. Then a batching server with two worker processes at concurrency
64. The last two lines are the ratios it exists for:

    batched/unbatched throughput at concurrency 16: X.XX
    http/in-process throughput at concurrency 8: X.XX

First, in this process, what the model's continuous cache (models/cache.py) costs a decoding tick: the same
batch of sequences decoded by `DecodingBatch` with and without the cache, alternately, for short prompts and
for prompts of 625 characters (448 tokens on the default model: a cache near a window of 500), printed as
`cache/no-cache tick time` ratios (medians of the rounds). `--ticks-only` stops after them.

    python benchmarks/serve.py --model-dir artifacts/hongloumeng
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The server sets one BLAS thread per process (app/__init__.py); the in-process reference must match.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import httpx  # noqa: E402
from server_process import REPO_ROOT, fail, start_server, stop_server  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))

PROMPTS = ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母道", "袭人", "那僧道", "只见", "宝钗"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts/hongloumeng"))
    parser.add_argument(
        "--requests", type=int, default=64, help="requests per level (at least twice the concurrency)"
    )
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16, 64])
    parser.add_argument("--batch-size", type=int, default=64, help="MAX_BATCH_SIZE of the batching server")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating measurements of the two servers per level"
    )
    parser.add_argument(
        "--multi-workers", type=int, default=2, help="worker processes of the last measurement (0: skip it)"
    )
    parser.add_argument(
        "--ticks-only", action="store_true", help="only the in-process tick cost of the continuous cache"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: asyncio streams (default, ~0.1 ms CPU per request) or httpx (~2.5 ms)",
    )
    return parser.parse_args()


def request_body(i: int, new_tokens: int) -> dict:
    # Sampling without stop sequences: every request generates exactly new_tokens tokens.
    return {
        "inputs": PROMPTS[i % len(PROMPTS)],
        "parameters": {
            "max_new_tokens": new_tokens,
            "do_sample": True,
            "temperature": 0.9,
            "top_k": 40,
            "seed": i,
        },
    }


def in_process_decoder(model_dir: Path) -> object:
    from models.cache import ContinuousCache
    from models.decoding import Decoder, SamplingParams
    from models.trained import TrainedModel

    model = TrainedModel.load(model_dir)
    # The model's n-gram mixture and cache too: the server samples from them (app/engine/service.py).
    cache = ContinuousCache(model.cache) if model.cache is not None else None
    decoder = Decoder(model.network, model.vectors, model.tokenizer, model.mixture, cache)
    for i in range(4):  # warm-up: jieba's dictionary, BLAS
        body = request_body(i, 5)
        decoder.generate(body["inputs"], SamplingParams(**body["parameters"])).run()
    return decoder


def in_process_tokens_per_second(decoder: object, requests: int, new_tokens: int) -> float:
    """The same requests decoded one after another in this process (`Decoder.generate`, a batch of one)."""
    from models.decoding import SamplingParams

    bodies = [request_body(i, new_tokens) for i in range(requests)]
    tokens = 0
    started = time.perf_counter()
    for body in bodies:
        tokens += len(decoder.generate(body["inputs"], SamplingParams(**body["parameters"])).run().tokens)
    return tokens / (time.perf_counter() - started)


def tick_seconds(decoder: object, prompts: list[str], new_tokens: int) -> float:
    """Seconds per tick of one DecodingBatch decoding every prompt together (prefill not counted)."""
    from models.decoding import DecodingBatch, SamplingParams

    batch = DecodingBatch(decoder)
    for i, prompt in enumerate(prompts):
        params = SamplingParams(**{**request_body(i, new_tokens)["parameters"]})
        batch.add(decoder.generate(prompt, params))
    ticks = 0
    started = time.perf_counter()
    while batch:
        batch.tick()
        ticks += 1
    return (time.perf_counter() - started) / ticks


def cache_tick_cost(model_dir: Path, rounds: int, new_tokens: int) -> None:
    """Print the cache's cost per tick: the same batches with and without it, alternately."""
    from models.cache import ContinuousCache
    from models.decoding import Decoder
    from models.trained import TrainedModel

    model = TrainedModel.load(model_dir)
    if model.cache is None:
        print("cache: this model has none (trained with --no-cache, or the validation tail gave it weight 0)")
        return
    decoders = {
        "cache": Decoder(
            model.network, model.vectors, model.tokenizer, model.mixture, ContinuousCache(model.cache)
        ),
        "no-cache": Decoder(model.network, model.vectors, model.tokenizer, model.mixture),
    }
    long_prompt = "".join(PROMPTS) * 25  # 625 characters: a history of ~450 tokens
    print(f"cache: {model.cache}; {new_tokens} new tokens per sequence, {rounds} rounds alternately")
    for label, prompt_of in (
        ("short prompts", lambda i: PROMPTS[i % len(PROMPTS)]),
        ("long prompts", lambda i: long_prompt),
    ):
        for batch_size in (1, 16, 64):
            prompts = [prompt_of(i) for i in range(batch_size)]
            for decoder in decoders.values():  # warm-up
                tick_seconds(decoder, prompts[:2], 3)
            times: dict[str, list[float]] = {name: [] for name in decoders}
            for _ in range(rounds):
                for name, decoder in decoders.items():
                    times[name].append(tick_seconds(decoder, prompts, new_tokens))
            ratio = statistics.median(c / n for c, n in zip(times["cache"], times["no-cache"], strict=True))
            print(
                f"{label}, batch {batch_size:>2}: tick {statistics.median(times['cache']) * 1000:7.2f} ms "
                f"with the cache, {statistics.median(times['no-cache']) * 1000:7.2f} ms without; "
                f"cache/no-cache tick time {ratio:.2f}"
            )


def _pooled(rounds: list[dict]) -> dict:
    """One level's rounds: median tokens/s, p50/p99 over all requests, every failure."""
    latencies = sorted(latency for result in rounds for latency in result["latencies"])
    return {
        "tokens_per_second": statistics.median(result["tokens_per_second"] for result in rounds),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "failures": [failure for result in rounds for failure in result["failures"]],
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_bench_server(
    model_dir: Path, workers: int, new_tokens: int, batch_size: int
) -> tuple[subprocess.Popen, str]:
    settings = {
        "MAX_NEW_TOKENS": str(max(new_tokens, 512)),
        "MAX_BATCH_SIZE": str(batch_size),
        "MAX_WAITING": "1024",  # the benchmark measures throughput, not refusals
    }
    return start_server(model_dir, workers, settings)


async def drive(url: str, concurrency: int, requests: int, new_tokens: int, client: str = "raw") -> dict:
    """`concurrency` clients with one keep-alive connection each send `requests` POST /generate in all.

    client "raw" (the default) writes HTTP/1.1 requests and reads the responses with asyncio streams: about
    0.1 ms of client CPU per request, where httpx.AsyncClient took about 2.5 ms (measured on this machine),
    which at concurrency 16 would be a third of a core taken from the server being measured on 2 shared
    cores. "httpx" keeps the httpx client, to compare."""
    if client == "httpx":
        return await _drive_httpx(url, concurrency, requests, new_tokens)
    host, port = httpx.URL(url).host, httpx.URL(url).port
    latencies: list[float] = []
    failures: list[str] = []
    tokens = 0
    indices = iter(range(requests))

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def warm() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await connect()
        await _post_raw(reader, writer, host, request_body(0, 5))
        return reader, writer

    async def one_client(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        nonlocal tokens
        reader, writer = connection
        for i in indices:  # shared: each index is taken by exactly one client
            started = time.perf_counter()
            try:
                status, body = await _post_raw(reader, writer, host, request_body(i, new_tokens))
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                failures.append(f"request {i}: {error!r}")
                writer.close()
                reader, writer = await connect()
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(f"request {i}: HTTP {status} {body[:200]!r}")
                continue
            tokens += new_tokens
        writer.close()

    # Warm every connection (and the server) before timing.
    connections = await asyncio.gather(*(warm() for _ in range(concurrency)))
    started = time.perf_counter()
    await asyncio.gather(*(one_client(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    return _summary(tokens, elapsed, latencies, failures)


async def _post_raw(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: dict
) -> tuple[int, bytes]:
    payload = json.dumps(body).encode()
    writer.write(
        b"POST /generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (host.encode(), len(payload))
        + payload
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = next((int(v) for k, v in headers.items() if k.strip().lower() == "content-length"), None)
    if length is None:
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(length)


def _summary(tokens: int, elapsed: float, latencies: list[float], failures: list[str]) -> dict:
    latencies.sort()
    return {
        "tokens_per_second": tokens / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "failures": failures,
        "latencies": latencies,
    }


async def _drive_httpx(url: str, concurrency: int, requests: int, new_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        # Warm every connection and worker before timing.
        await asyncio.gather(*(client.post("/generate", json=request_body(i, 5)) for i in range(concurrency)))
        semaphore = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        failures: list[str] = []
        tokens = 0

        async def one(i: int) -> None:
            nonlocal tokens
            async with semaphore:
                started = time.perf_counter()
                try:
                    response = await client.post("/generate", json=request_body(i, new_tokens))
                except httpx.HTTPError as error:
                    failures.append(f"request {i}: {error!r}")
                    return
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(f"request {i}: HTTP {response.status_code} {response.text[:200]}")
                    return
                tokens += new_tokens

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    return _summary(tokens, elapsed, latencies, failures)


def check_token_count(url: str, new_tokens: int) -> None:
    body = request_body(0, new_tokens)
    body["parameters"]["details"] = True
    details = httpx.post(f"{url}/generate", json=body, timeout=120).json()["details"]
    if details["generated_tokens"] != new_tokens:
        fail(f"expected {new_tokens} tokens per request, the server generated {details['generated_tokens']}")


def _row(result: dict) -> str:
    return (
        f"{result['tokens_per_second']:9.1f}  {result['p50'] * 1000:8.1f}  {result['p99'] * 1000:8.1f}  "
        f"{len(result['failures']):>3}"
    )


def main() -> None:
    args = parse_args()
    model_dir = args.model_dir.resolve()
    if not (model_dir / "manifest.json").is_file():
        fail(
            f"{args.model_dir}: no trained model there (manifest.json missing); train one with "
            f"`make train OUT={args.model_dir}` or "
            f"`python -m training --corpus hongloumeng --out {args.model_dir}`"
        )

    print(f"model: {args.model_dir}   new tokens: {args.new_tokens}   cores: {os.cpu_count()}")
    cache_tick_cost(model_dir, args.rounds, args.new_tokens)
    if args.ticks_only:
        return
    print(
        f"one worker; batched = MAX_BATCH_SIZE={args.batch_size}, unbatched = MAX_BATCH_SIZE=1; "
        f"requests per level and round: max(--requests, 2 x concurrency); {args.rounds} rounds per level, "
        "the two servers driven alternately; tokens/s and ratios are medians over the rounds, p50/p99 over "
        "all of a level's requests"
    )
    header = f"{'tokens/s':>9}  {'p50 ms':>8}  {'p99 ms':>8}  {'err':>3}"
    print(f"{'':>11}  {'batched':^33}  {'unbatched':^33}")
    print(
        f"{'concurrency':>11}  {header}  {header}  {'batched/unbatched':>17}  {'per CPU s':>9}  "
        f"{'http/in-process':>15}"
    )

    decoder = in_process_decoder(model_dir)
    servers = {
        "batched": start_bench_server(model_dir, 1, args.new_tokens, args.batch_size),
        "unbatched": start_bench_server(model_dir, 1, args.new_tokens, 1),
    }
    results: dict[str, dict[int, dict]] = {"batched": {}, "unbatched": {}}
    ratios: dict[int, float] = {}
    cpu_ratios: dict[int, float] = {}
    http_in_process: dict[int, float] = {}
    references: list[float] = []
    multi = None
    try:
        for _, url in servers.values():
            check_token_count(url, args.new_tokens)
        for concurrency in args.concurrency:
            requests = max(args.requests, 2 * concurrency)
            rounds: dict[str, list[dict]] = {"batched": [], "unbatched": []}
            level_references: list[float] = []
            # The machine is shared: load changes within seconds, so the servers (and, at concurrency 8, the
            # in-process reference) are measured alternately, round after round, and each round's ratio is
            # taken between measurements seconds apart. Only the server being driven works.
            for _ in range(args.rounds):
                for name, (process, url) in servers.items():
                    cpu = process_cpu_seconds(process.pid)
                    result = asyncio.run(drive(url, concurrency, requests, args.new_tokens, args.client))
                    used = process_cpu_seconds(process.pid) - cpu
                    # Tokens per second of the server's own CPU time (warm-up requests included): what the
                    # server does with the CPU it gets, whatever share of the shared cores that was.
                    result["tokens_per_cpu_second"] = (
                        requests * args.new_tokens / used if used > 0 else math.nan
                    )
                    rounds[name].append(result)
                if concurrency == 8:
                    level_references.append(in_process_tokens_per_second(decoder, requests, args.new_tokens))
            for name in servers:
                results[name][concurrency] = _pooled(rounds[name])
            cpu_ratios[concurrency] = statistics.median(
                b["tokens_per_cpu_second"] / u["tokens_per_cpu_second"]
                for b, u in zip(rounds["batched"], rounds["unbatched"], strict=True)
            )
            ratios[concurrency] = statistics.median(
                b["tokens_per_second"] / u["tokens_per_second"]
                for b, u in zip(rounds["batched"], rounds["unbatched"], strict=True)
            )
            if level_references:
                references += level_references
                http_in_process[concurrency] = statistics.median(
                    b["tokens_per_second"] / r
                    for b, r in zip(rounds["batched"], level_references, strict=True)
                )
            batched, unbatched = results["batched"][concurrency], results["unbatched"][concurrency]
            in_process = f"{http_in_process[concurrency]:15.2f}" if concurrency in http_in_process else ""
            ratio, cpu_ratio = ratios[concurrency], cpu_ratios[concurrency]
            print(
                f"{concurrency:>11}  {_row(batched)}  {_row(unbatched)}  {ratio:17.2f}  {cpu_ratio:9.2f}  "
                f"{in_process}"
            )
            for failure in (batched["failures"] + unbatched["failures"])[:5]:
                print(f"    {failure}")
    finally:
        for process, _ in servers.values():
            stop_server(process)
    if references:
        print(
            f"in-process decoder (sequential, batch of one), measured beside concurrency 8: "
            f"{statistics.median(references):.1f} tokens/s (median of {len(references)})"
        )

    if args.multi_workers > 1:
        concurrency = max(args.concurrency)
        process, url = start_bench_server(model_dir, args.multi_workers, args.new_tokens, args.batch_size)
        try:
            multi = asyncio.run(
                drive(url, concurrency, max(args.requests, 2 * concurrency), args.new_tokens, args.client)
            )
        finally:
            stop_server(process)
        print(
            f"batched, WORKERS={args.multi_workers}, concurrency {concurrency}: "
            f"{multi['tokens_per_second']:.1f} tokens/s, p50 {multi['p50'] * 1000:.1f} ms, "
            f"p99 {multi['p99'] * 1000:.1f} ms, {len(multi['failures'])} failed "
            f"(WORKERS=1: {results['batched'][concurrency]['tokens_per_second']:.1f} tokens/s)"
        )
        for failure in multi["failures"][:5]:
            print(f"    {failure}")

    failed = sum(len(r["failures"]) for by_level in results.values() for r in by_level.values())
    failed += len(multi["failures"]) if multi else 0
    if 16 in cpu_ratios:
        print(f"batched/unbatched tokens per server CPU-second at concurrency 16: {cpu_ratios[16]:.2f}")
    if 16 in ratios:
        print(f"batched/unbatched throughput at concurrency 16: {ratios[16]:.2f}")
    if 8 in http_in_process:
        print(f"http/in-process throughput at concurrency 8: {http_in_process[8]:.2f}")
    if failed:
        fail(f"{failed} requests failed")


if __name__ == "__main__":
    main()
