"""Graceful drain on SIGTERM (app/http/drain.py) with a real uvicorn process: a stream started before the
signal runs to its end, meanwhile /health answers 503, /ping 200 and a new generation is refused with 503
(nothing ran), the metrics show the drain, then the server exits by itself; past DRAIN_TIMEOUT a stream still
running is ended with an error event."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from live_server import LiveServer, live_server

GENERATE = {"inputs": "宝玉", "parameters": {"max_new_tokens": 10, "do_sample": True, "seed": 2}}


def metric(server: LiveServer, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def stream_events(response: httpx.Response) -> Iterator[dict]:
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def wait_for_exit(server: LiveServer, seconds: float) -> int:
    try:
        return server.process.wait(timeout=seconds)
    except Exception:
        raise AssertionError(f"the server did not exit within {seconds} s:\n{server.output()}") from None


def test_a_stream_started_before_sigterm_finishes_and_new_work_is_refused(tiny_model_dir: Path) -> None:
    # 6000 tokens take the tiny model a second or more: the stream is still running when SIGTERM comes.
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 6000, "do_sample": True, "seed": 1}}
    with live_server(tiny_model_dir, MAX_NEW_TOKENS="20000", DRAIN_TIMEOUT="60") as server:
        assert metric(server, "novel_lstm_draining") == 0
        with httpx.stream("POST", f"{server.url}/generate_stream", json=body, timeout=120) as response:
            events = stream_events(response)
            first = next(events)
            server.process.send_signal(signal.SIGTERM)
            # The drain starts on the server's event loop right after the signal.
            deadline = time.monotonic() + 10
            while httpx.get(f"{server.url}/health", timeout=5).status_code != 503:
                assert time.monotonic() < deadline, "/health did not turn 503 after SIGTERM"
                time.sleep(0.02)
            health = httpx.get(f"{server.url}/health", timeout=5)
            assert health.status_code == 503 and health.json()["status"] == "draining"
            ping = httpx.get(f"{server.url}/ping", timeout=5)
            assert ping.status_code == 200 and ping.json()["status"] == "draining"
            refused = httpx.post(f"{server.url}/generate", json=GENERATE, timeout=30)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error_type"] == "unavailable"
            assert "shutting down" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
            openai = httpx.post(
                f"{server.url}/v1/completions", json={"prompt": "宝玉", "max_tokens": 5}, timeout=30
            )
            assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_error"
            # Requests that start no generation are still answered.
            assert (
                httpx.post(f"{server.url}/tokenize", json={"inputs": "宝玉"}, timeout=30).status_code == 200
            )
            assert metric(server, "novel_lstm_draining") == 1
            assert metric(server, "novel_lstm_drain_refused_requests_total") == 2
            rest = list(events)
        assert first["index"] == 1
        assert len(rest) == 5999 and rest[-1]["details"]["finish_reason"] == "length"
        wait_for_exit(server, 30)
        log = server.output()
        assert "SIGTERM: draining" in log
        assert "drained: 1 generations finished, 0 cut" in log, log


def test_a_stream_still_running_at_the_drain_timeout_ends_with_an_error_event(tiny_model_dir: Path) -> None:
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 20000, "do_sample": True, "seed": 4}}
    with live_server(tiny_model_dir, MAX_NEW_TOKENS="20000", DRAIN_TIMEOUT="0.5") as server:
        with httpx.stream("POST", f"{server.url}/generate_stream", json=body, timeout=120) as response:
            events = stream_events(response)
            next(events)
            server.process.send_signal(signal.SIGTERM)
            received = list(events)  # the stream ends: cleanly, with an error event last
        last = received[-1]
        assert last["error_type"] == "generation"
        assert "DRAIN_TIMEOUT=0.5 s" in last["error"]
        assert len(received) < 20000
        assert all("error" not in event for event in received[:-1])
        wait_for_exit(server, 30)
        assert "drained: 0 generations finished, 1 cut at the drain timeout" in server.output()


def test_ctrl_c_still_stops_at_once(tiny_model_dir: Path) -> None:
    """SIGINT keeps uvicorn's behaviour (no drain): a running stream is ended and the server exits."""
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 20000, "do_sample": True, "seed": 6}}
    with live_server(tiny_model_dir, MAX_NEW_TOKENS="20000", DRAIN_TIMEOUT="60") as server:
        with httpx.stream("POST", f"{server.url}/generate_stream", json=body, timeout=120) as response:
            events = stream_events(response)
            next(events)
            server.process.send_signal(signal.SIGINT)
            started = time.monotonic()
            try:
                received = list(events)
            except httpx.HTTPError:  # ended without a last chunk: the connection was closed
                received = []
        assert time.monotonic() - started < 10
        # Cut off: the last event received is an ordinary token, not the final one with details.
        assert not received or received[-1]["details"] is None, len(received)
        wait_for_exit(server, 30)
        assert "SIGTERM: draining" not in server.output()
