"""HTTP generation throughput and latency against the in-process decoder, measured in the same run.

Starts the real server (`uvicorn app.main:app`, a subprocess on a free loopback port) for a trained model
directory, drives POST /generate (100 new tokens, sampling, a different seed per request) at concurrency 1, 8
and 32 with an async httpx client, and prints tokens/s and p50/p99 latency per level next to the tokens/s of
the decoder called directly in this process on the same requests. Ends with the ratio at concurrency 8.

    python benchmarks/serve.py --model-dir artifacts/hongloumeng

Workers: by default as many uvicorn worker processes as cores. The app keeps no state between requests (the
model is read-only, each request carries its own LSTM state), so processes scale it past the GIL, which a
single process's thread pool cannot: a token's work is many small NumPy calls, mostly holding the GIL. Each
worker loads its own copy of the model (tens of MB). `--workers 1` measures one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The server sets one BLAS thread per process (app/__init__.py); the in-process reference must match.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import httpx  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PROMPTS = ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母道", "袭人", "那僧道", "只见", "宝钗"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("artifacts/hongloumeng"))
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="uvicorn worker processes")
    return parser.parse_args()


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


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


def in_process_tokens_per_second(model_dir: Path, requests: int, new_tokens: int) -> float:
    from models.decoding import Decoder, SamplingParams
    from models.trained import TrainedModel

    model = TrainedModel.load(model_dir)
    decoder = Decoder(model.network, model.vectors, model.tokenizer)
    bodies = [request_body(i, new_tokens) for i in range(requests)]
    for body in bodies[:4]:  # warm-up: jieba's dictionary, BLAS
        decoder.generate(body["inputs"], SamplingParams(**body["parameters"])).run()
    tokens = 0
    started = time.perf_counter()
    for body in bodies:
        tokens += len(decoder.generate(body["inputs"], SamplingParams(**body["parameters"])).run().tokens)
    return tokens / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, workers: int, new_tokens: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(model_dir), "MAX_NEW_TOKENS": str(max(new_tokens, 512))}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
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
    process.terminate()
    fail("the server did not answer /health within 120 s")
    raise AssertionError("unreachable")


async def drive(url: str, concurrency: int, requests: int, new_tokens: int) -> dict:
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
    latencies.sort()
    return {
        "tokens_per_second": tokens / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "failures": failures,
    }


def check_token_count(url: str, new_tokens: int) -> None:
    body = request_body(0, new_tokens)
    body["parameters"]["details"] = True
    details = httpx.post(f"{url}/generate", json=body, timeout=120).json()["details"]
    if details["generated_tokens"] != new_tokens:
        fail(f"expected {new_tokens} tokens per request, the server generated {details['generated_tokens']}")


def main() -> None:
    args = parse_args()
    model_dir = args.model_dir.resolve()
    if not (model_dir / "manifest.json").is_file():
        fail(
            f"{args.model_dir}: no trained model there (manifest.json missing); train one with "
            f"`make train OUT={args.model_dir}` or "
            f"`python -m training --corpus hongloumeng --out {args.model_dir}`"
        )

    reference = in_process_tokens_per_second(model_dir, args.requests, args.new_tokens)
    print(f"model: {args.model_dir}   requests per level: {args.requests}   new tokens: {args.new_tokens}")
    print(f"uvicorn workers: {args.workers} (cores: {os.cpu_count()})")
    print(f"in-process decoder (sequential): {reference:9.1f} tokens/s")
    print(
        f"{'concurrency':>11}  {'tokens/s':>9}  {'p50 ms':>8}  {'p99 ms':>8}  {'http/in-process':>15}  failed"
    )

    process, url = start_server(model_dir, args.workers, args.new_tokens)
    results = {}
    try:
        check_token_count(url, args.new_tokens)
        for concurrency in args.concurrency:
            result = asyncio.run(drive(url, concurrency, args.requests, args.new_tokens))
            results[concurrency] = result
            print(
                f"{concurrency:>11}  {result['tokens_per_second']:9.1f}  {result['p50'] * 1000:8.1f}  "
                f"{result['p99'] * 1000:8.1f}  {result['tokens_per_second'] / reference:15.2f}  "
                f"{len(result['failures'])}"
            )
            for failure in result["failures"][:5]:
                print(f"    {failure}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    failed = sum(len(result["failures"]) for result in results.values())
    if 8 in results:
        print(
            f"http/in-process throughput at concurrency 8: {results[8]['tokens_per_second'] / reference:.2f}"
        )
    if failed:
        fail(f"{failed} requests failed")


if __name__ == "__main__":
    main()
