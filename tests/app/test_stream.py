"""POST /generate_stream: Server-Sent Events parsed the way a client does."""

from __future__ import annotations

import json

import httpx
from fastapi.testclient import TestClient

PARAMETERS = {"max_new_tokens": 12, "do_sample": True, "temperature": 0.9, "top_k": 30, "seed": 5}


def parse_sse(lines: list[str]) -> list[dict]:
    """Minimal SSE client: events are separated by blank lines; `data:` lines carry the payload."""
    events, data = [], []
    for line in lines:
        if line == "":
            if data:
                events.append(json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # ":" comments (keep-alive pings) and other fields are ignored, as EventSource does
    if data:
        events.append(json.loads("\n".join(data)))
    return events


def _stream(client: TestClient, parameters: dict) -> tuple[httpx.Response, list[dict]]:
    with client.stream(
        "POST", "/generate_stream", json={"inputs": "宝玉笑道", "parameters": parameters}
    ) as response:
        lines = list(response.iter_lines())
    return response, parse_sse(lines)


def test_one_event_per_token_and_a_final_summary(client: TestClient) -> None:
    response, events = _stream(client, PARAMETERS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(events) == 12
    assert [event["index"] for event in events] == list(range(1, 13))
    for event in events[:-1]:
        assert event["generated_text"] is None and event["details"] is None
        assert set(event["token"]) == {"id", "text", "logprob", "special", "similarity"}
    last = events[-1]
    assert last["generated_text"] == "".join(event["token"]["text"] for event in events)
    assert last["details"] == {
        "finish_reason": "length",
        "generated_tokens": 12,
        "seed": 5,
        "input_length": 3,
        "unknown_words": [],
    }


def test_stream_and_generate_agree_for_the_same_seed(client: TestClient) -> None:
    _, events = _stream(client, PARAMETERS)
    body = client.post(
        "/generate", json={"inputs": "宝玉笑道", "parameters": {**PARAMETERS, "details": True}}
    ).json()
    assert events[-1]["generated_text"] == body["generated_text"]
    assert [e["token"]["id"] for e in events] == [t["id"] for t in body["details"]["tokens"]]


def test_stream_stops_on_stop_sequence(client: TestClient) -> None:
    _, free = _stream(client, {"max_new_tokens": 30})
    stop = free[3]["token"]["text"]
    _, events = _stream(client, {"max_new_tokens": 30, "stop": [stop]})
    assert events[-1]["details"]["finish_reason"] == "stop_sequence"
    assert events[-1]["generated_text"].endswith(stop)
    assert len(events) <= 4


def test_invalid_stream_request_is_plain_json_422(client: TestClient) -> None:
    response = client.post("/generate_stream", json={"inputs": "宝玉", "parameters": {"top_p": 0}})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error_type"] == "validation"
