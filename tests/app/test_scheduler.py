"""Continuous batching on the real server: seeded results in a batch, abandoned work stops, back-pressure.

One server with a single batch slot and a single waiting place (MAX_BATCH_SIZE=1, MAX_WAITING=1), so "the next
request is served" can only happen if an abandoned generation really left its slot, and a third concurrent
request must be refused. Generations of a million tokens (minutes on the tiny model) stand for work that
must not run to its end. The scheduler itself (no HTTP) checks what the requests of one tick share.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import running_server

from app.engine.scheduler import GenerationFailed, Scheduler
from models.decoding import Decoder, Generation, Prompt, SamplingParams
from models.trained import TrainedModel

LONG = {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 1_000_000, "do_sample": True, "seed": 3}}
SHORT = {"inputs": "黛玉听了", "parameters": {"max_new_tokens": 20, "do_sample": True, "seed": 4}}


@pytest.fixture(scope="module")
def one_slot_url(tiny_model_dir: Path) -> Iterator[str]:
    with running_server(
        tiny_model_dir, MAX_BATCH_SIZE="1", MAX_WAITING="1", MAX_NEW_TOKENS="1000000", TOP_K_LIMIT="50"
    ) as url:
        yield url


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _requests(url: str, route: str, status: int) -> float:
    """novel_lstm_http_requests_total for POST `route` answered with `status` (0 when never seen)."""
    sample = f'novel_lstm_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(sample):
            return float(line.split()[-1])
    return 0.0


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _idle(url: str) -> bool:
    return _metric(url, "novel_lstm_batch_current_size") == 0 and _metric(url, "novel_lstm_queue_size") == 0


def test_a_disconnected_stream_frees_its_slot(one_slot_url: str) -> None:
    _wait_for(lambda: _idle(one_slot_url))
    cancelled = _metric(one_slot_url, "novel_lstm_cancelled_generations_total")
    with (
        httpx.Client(base_url=one_slot_url) as client,
        client.stream("POST", "/generate_stream", json=LONG, timeout=60) as stream,
    ):
        assert next(stream.iter_lines()).startswith("data:")  # it holds the only slot now
    # Served at once, not after the abandoned stream's million tokens.
    started = time.perf_counter()
    response = httpx.post(f"{one_slot_url}/generate", json=SHORT, timeout=30)
    assert response.status_code == 200 and response.json()["generated_text"]
    assert time.perf_counter() - started < 15
    assert _metric(one_slot_url, "novel_lstm_cancelled_generations_total") == cancelled + 1


def test_a_disconnected_plain_generate_stops_generating(one_slot_url: str) -> None:
    """A /generate whose client is gone must not keep generating."""
    _wait_for(lambda: _idle(one_slot_url))
    cancelled = _metric(one_slot_url, "novel_lstm_cancelled_generations_total")
    closed = _requests(one_slot_url, "/generate", 499)
    url = urllib.parse.urlsplit(one_slot_url)
    body = json.dumps(LONG).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        _wait_for(lambda: _metric(one_slot_url, "novel_lstm_batch_current_size") == 1)
    # The socket is closed: the generation leaves the batch and the decoder goes quiet.
    _wait_for(lambda: _idle(one_slot_url), timeout=10)
    assert _metric(one_slot_url, "novel_lstm_cancelled_generations_total") == cancelled + 1
    decoded = _metric(one_slot_url, "novel_lstm_scheduler_tokens_total")
    time.sleep(0.5)
    assert _metric(one_slot_url, "novel_lstm_scheduler_tokens_total") == decoded
    response = httpx.post(f"{one_slot_url}/generate", json=SHORT, timeout=30)
    assert response.status_code == 200
    # Found by benchmarks/load.py and by benchmarks/serve.py: the cancelled request used to end in a 500
    # (InvalidStateError) in the log; it is counted as "client closed request" (499) instead.
    _wait_for(lambda: _requests(one_slot_url, "/generate", 499) == closed + 1)
    metrics = httpx.get(f"{one_slot_url}/metrics", timeout=30).text
    assert 'status="500"' not in metrics, [line for line in metrics.splitlines() if 'status="500"' in line]


def test_a_full_batch_and_queue_answer_429_with_retry_after(one_slot_url: str) -> None:
    _wait_for(lambda: _idle(one_slot_url))
    with (
        httpx.Client(base_url=one_slot_url) as client,
        client.stream("POST", "/generate_stream", json=LONG, timeout=60) as running,
    ):
        # Keep the line iterator: a discarded one is closed, and closing it closes the connection.
        lines = running.iter_lines()
        assert next(lines).startswith("data:")
        with client.stream("POST", "/generate_stream", json=LONG, timeout=60) as waiting:
            assert waiting.status_code == 200  # queued: its events start once the slot is free
            _wait_for(lambda: _metric(one_slot_url, "novel_lstm_queue_size") == 1)
            for path in ("/", "/generate", "/generate_stream"):
                refused = client.post(path, json=SHORT, timeout=30)
                assert refused.status_code == 429, refused.text
                assert int(refused.headers["Retry-After"]) >= 1
                error = refused.json()
                assert error["error_type"] == "overloaded"
                assert "MAX_BATCH_SIZE=1" in error["error"] and "MAX_WAITING=1" in error["error"]
            # Under /v1 the same refusal in OpenAI's shape (the openai client raises RateLimitError).
            for stream in (False, True):
                body = {"prompt": "黛玉听了", "max_tokens": 5, "stream": stream}
                refused = client.post("/v1/completions", json=body, timeout=30)
                assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
                error = refused.json()["error"]
                assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
            # A request that fails validation is answered 422 as always: it never needed a place.
            invalid = client.post("/generate", json={"inputs": "", "parameters": {}}, timeout=30)
            assert invalid.status_code == 422
    _wait_for(lambda: _idle(one_slot_url))
    assert httpx.post(f"{one_slot_url}/generate", json=SHORT, timeout=30).status_code == 200


def test_a_queued_request_reports_its_time_in_the_queue(one_slot_url: str) -> None:
    """TGI's x-queue-time / x-inference-time: a request that waited for the only slot says how long."""
    _wait_for(lambda: _idle(one_slot_url))
    with (
        httpx.Client(base_url=one_slot_url) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        with client.stream("POST", "/generate_stream", json=LONG, timeout=60) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data:")  # it holds the only slot
            queued = pool.submit(httpx.post, f"{one_slot_url}/generate", json=SHORT, timeout=60)
            _wait_for(lambda: _metric(one_slot_url, "novel_lstm_queue_size") == 1)
            time.sleep(0.6)
        headers = queued.result().headers  # the slot was freed when the stream closed
    queue, inference = int(headers["x-queue-time"]), int(headers["x-inference-time"])
    validation, total = int(headers["x-validation-time"]), int(headers["x-total-time"])
    assert queue >= 600, headers
    assert abs(validation + queue + inference - total) <= 2, headers  # each rounded to a millisecond
    assert abs(int(headers["x-time-per-token"]) - inference / int(headers["x-generated-tokens"])) <= 1


def test_a_request_failing_validation_never_enters_the_batch(one_slot_url: str) -> None:
    _wait_for(lambda: _idle(one_slot_url))
    batches = _metric(one_slot_url, "novel_lstm_queue_duration_seconds_count")
    for payload in (
        {"inputs": "   ", "parameters": {}},
        {"inputs": "宝玉", "parameters": {"top_k": 51}},
        {"inputs": "宝玉", "parameters": {"max_new_tokens": 2_000_000}},
    ):
        assert httpx.post(f"{one_slot_url}/generate", json=payload, timeout=30).status_code == 422
    assert _metric(one_slot_url, "novel_lstm_queue_duration_seconds_count") == batches


def test_seeded_requests_are_the_same_alone_and_among_31_others(server_url: str) -> None:
    # Every TGI control in the mix, each sequence with its own (typical_p, frequency_penalty,
    # top_n_tokens, decoder_input_details and truncate as well as the sampling basics).
    extras = [
        {},
        {"typical_p": 0.8},
        {"frequency_penalty": 1.2, "top_n_tokens": 3},
        {"repetition_penalty": 1.3, "top_p": 0.9},
        {"decoder_input_details": True, "truncate": 2},
        {"typical_p": 0.95, "top_p": 0.95, "frequency_penalty": -0.5},
    ]

    def payload(i: int) -> dict:
        parameters = {"max_new_tokens": 60, "do_sample": True, "temperature": 1.1, "top_k": 30, "seed": i}
        parameters.update(extras[i % len(extras)], details=True)
        if i % 4 == 0:
            parameters["stop"] = ["。"]  # some end early, the others continue in the batch
        return {"inputs": ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母道"][i % 4], "parameters": parameters}

    alone = [httpx.post(f"{server_url}/generate", json=payload(i), timeout=60).json() for i in range(32)]
    before = _histogram_over(server_url, 16)

    async def together() -> list[dict]:
        async with httpx.AsyncClient(base_url=server_url) as client:
            responses = await asyncio.gather(
                *(client.post("/generate", json=payload(i), timeout=120) for i in range(32))
            )
        return [response.json() for response in responses]

    batched = asyncio.run(together())
    assert _histogram_over(server_url, 16) > before, "the 32 requests never shared a tick"
    assert [r["generated_text"] for r in batched] == [r["generated_text"] for r in alone]
    for single, together_ in zip(alone, batched, strict=True):
        details, other = single["details"], together_["details"]
        assert [t["id"] for t in other["tokens"]] == [t["id"] for t in details["tokens"]]
        assert [p["logprob"] for p in other["prefill"]] == pytest.approx(
            [p["logprob"] for p in details["prefill"]]
        )
        if details["top_tokens"] is not None:
            assert [[t["id"] for t in top] for top in other["top_tokens"]] == [
                [t["id"] for t in top] for top in details["top_tokens"]
            ]


def _histogram_over(url: str, size: int) -> float:
    """Ticks that advanced more than `size` sequences so far."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    count = bucket = 0.0
    for line in text.splitlines():
        if line.startswith("novel_lstm_batch_size_count "):
            count = float(line.split()[1])
        if line.startswith(f'novel_lstm_batch_size_bucket{{le="{float(size)}"}} '):
            bucket = float(line.split()[1])
    return count - bucket


def test_requests_joining_in_one_tick_are_prefilled_together_and_a_failing_one_fails_alone(
    tiny_model_dir: Path,
) -> None:
    model = TrainedModel.load(tiny_model_dir)
    decoder = Decoder(model.network, model.vectors, model.tokenizer, model.mixture)
    texts = ["宝玉笑道：“好妹妹", "黛玉听了便说道：“", "凤姐儿笑道：“老祖宗"]
    params = SamplingParams(max_new_tokens=12, do_sample=True, temperature=1.1, seed=7)
    alone = [decoder.generate(text, params).run() for text in texts]
    # A prompt naming a word the model does not have: its prefill raises (as a bug on the server would).
    length = len(decoder.encode(texts[0]).ids)
    broken = Generation(Prompt("?", ["?"] * length, [len(model.vectors.words) + 9] * length, []), params, 7)
    scheduler = Scheduler(decoder, max_batch_size=16, max_waiting=16)
    passes: list[tuple[int, ...]] = []
    forward = decoder.network.forward_sequence

    def counting_forward(ids, state=None, lengths=None):
        passes.append(np.shape(ids))
        return forward(ids, state, lengths)

    async def run() -> list[list[Generation]]:
        tickets = [scheduler.submit([decoder.generate(text, params)], stream=False) for text in texts]
        failing = scheduler.submit([broken], stream=False)
        decoder.network.forward_sequence = counting_forward
        scheduler.start()  # every request is waiting: the first tick admits all four together
        finished = [await ticket.wait() for ticket in tickets]
        with pytest.raises(GenerationFailed):
            await failing.wait()
        return finished

    try:
        finished = asyncio.run(run())
    finally:
        scheduler.stop()
    assert passes[0] == (4, max(length, *(len(g.prompt.ids) for g in alone)))  # one pass for all four
    for (together,), single in zip(finished, alone, strict=True):
        assert together.text == single.text and together.finish_reason == single.finish_reason
