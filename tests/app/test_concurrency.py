"""Model work never blocks the event loop, and a slow stream reader holds up no one else (real server)."""

from __future__ import annotations

import asyncio
import time

import httpx


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_health_answers_while_a_long_generation_runs(server_url: str) -> None:
    """A million-token generation (minutes of work, in the scheduler's thread) is running the whole time the
    /health checks are answered: each answers quickly, and /metrics still shows it in the batch after them."""

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=server_url) as client:
            payload = {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 1_000_000, "do_sample": True}}
            async with client.stream("POST", "/generate_stream", json=payload, timeout=60) as stream:
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("data:")  # under way
                slowest = 0.0
                for _ in range(5):
                    started = time.perf_counter()
                    health = await client.get("/health", timeout=30)
                    slowest = max(slowest, time.perf_counter() - started)
                    assert health.status_code == 200
                metrics = (await client.get("/metrics", timeout=30)).text
                assert _gauge(metrics, "novel_lstm_batch_current_size") >= 1, "the generation had ended"
                # Generous for a loaded 2-core machine; a /health queued behind the generation takes minutes.
                assert slowest < 5.0, f"/health took {slowest:.2f} s while a generation ran"

    asyncio.run(scenario())


def test_a_stalled_stream_reader_does_not_block_other_requests(server_url: str) -> None:
    async def scenario() -> None:
        async with (
            httpx.AsyncClient(base_url=server_url) as slow,
            httpx.AsyncClient(base_url=server_url) as other,
        ):
            payload = {"inputs": "宝玉", "parameters": {"max_new_tokens": 5000, "do_sample": True, "seed": 2}}
            async with slow.stream("POST", "/generate_stream", json=payload, timeout=300) as stream:
                lines = stream.aiter_lines()
                first = await anext(lines)
                assert first.startswith("data:")
                # The slow client now stops reading; the others are served meanwhile.
                for _ in range(3):
                    response = await other.post(
                        "/generate", json={"inputs": "黛玉", "parameters": {"max_new_tokens": 20}}, timeout=60
                    )
                    assert response.status_code == 200
                    assert (await other.get("/health", timeout=30)).status_code == 200

    asyncio.run(scenario())
