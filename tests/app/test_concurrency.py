"""Model work never blocks the event loop, and a slow stream reader holds up no one else (real server)."""

from __future__ import annotations

import asyncio

import httpx


async def _long_generation(client: httpx.AsyncClient) -> httpx.Response:
    payload = {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 5000, "do_sample": True, "seed": 1}}
    return await client.post("/generate", json=payload, timeout=300)


def test_health_answers_while_a_long_generation_runs(server_url: str) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=server_url) as client:
            generation = asyncio.create_task(_long_generation(client))
            await asyncio.sleep(0.3)  # the generation is under way in the thread pool
            answered_while_running = 0
            for _ in range(5):
                health = await client.get("/health", timeout=30)
                assert health.status_code == 200
                answered_while_running += not generation.done()
            assert answered_while_running > 0, "every /health waited for the generation to finish"
            response = await generation
            assert response.status_code == 200
            assert response.json()["generated_text"]

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
