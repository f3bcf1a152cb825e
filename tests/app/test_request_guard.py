"""app/http/request_guard.py on the real app and tiny model: body limits, media type, UTF-8, lone
surrogates."""

from __future__ import annotations

import socket
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import running_server

JSON = {"Content-Type": "application/json"}


def _assert_json_error(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    for needle in needles:
        assert needle in body["error"], body
    return body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", '{"inputs": "\\ud800"}'),
        (
            "/generate",
            '{"inputs": "宝玉\\ud800笑道", "parameters": {"details": true, "return_full_text": true}}',
        ),
        ("/generate_stream", '{"inputs": "宝玉\\udc00笑道"}'),
        ("/predict", '{"inputs": "\\ud800"}'),
        ("/similar", '{"positive": ["\\ud83d"]}'),
    ],
)
def test_lone_surrogate_is_422_naming_the_field(client: TestClient, path: str, body: str) -> None:
    # This used to be a 500 (or a stream broken half-way) with a traceback in the log.
    response = client.post(path, content=body.encode(), headers=JSON)
    _assert_json_error(response, 422, "lone UTF-16 surrogate")


def test_a_valid_surrogate_pair_and_an_escaped_backslash_still_pass(client: TestClient) -> None:
    # "\ud83d\ude00" is one emoji (a pair), "\\ud800" the literal text \ud800: both are valid text.
    for inputs in ('"宝玉\\ud83d\\ude00"', '"宝玉\\\\ud800"'):
        body = f'{{"inputs": {inputs}, "parameters": {{"max_new_tokens": 2}}}}'
        response = client.post("/generate", content=body.encode(), headers=JSON)
        assert response.status_code == 200, response.text


def test_body_over_the_limit_is_413_json(client: TestClient) -> None:
    # A 100 MB body used to be read and parsed in full.
    limit = client.app.state.settings.max_body_bytes
    huge = b'{"inputs": "' + b"a" * (limit + 1) + b'"}'
    _assert_json_error(client.post("/generate", content=huge, headers=JSON), 413, "larger than", "/info")

    def chunks():  # no Content-Length: counted while reading
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    _assert_json_error(client.post("/predict", content=chunks(), headers=JSON), 413, "larger than")
    assert client.get("/info").json()["limits"]["max_body_bytes"] == limit


def test_invalid_utf8_says_so(client: TestClient) -> None:
    # A generic 400 before.
    response = client.post("/generate", content=b'{"inputs": "\xff\xfe"}', headers=JSON)
    _assert_json_error(response, 400, "not valid UTF-8 JSON", "offset 12")


def test_wrong_content_type_says_so(client: TestClient) -> None:
    # "input should be a valid dictionary" before.
    response = client.post(
        "/generate", content=b"inputs=hello", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    _assert_json_error(response, 415, "application/x-www-form-urlencoded", "Content-Type: application/json")


def test_stalled_body_is_answered_408_and_the_connection_freed(tiny_model_dir: Path) -> None:
    # The body: half a body used to hold the request forever.
    with running_server(tiny_model_dir, BODY_READ_TIMEOUT="1") as server_url:
        url = urllib.parse.urlsplit(server_url)
        with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
            sock.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"inputs": '
            )
            started = time.monotonic()
            answer = sock.recv(65536)
            waited = time.monotonic() - started
            while chunk := sock.recv(65536):  # the server closes the connection after the answer
                answer += chunk
    assert b" 408 " in answer.split(b"\r\n", 1)[0], answer
    assert b"did not arrive within 1 s" in answer
    assert 0.5 < waited < 15


def _closed_after(sock: socket.socket, drip: bytes = b"", every: float = 0.3) -> tuple[bytes, float]:
    """Read until the server closes the connection, sending one byte of `drip` every `every` seconds."""
    sock.settimeout(every)
    answer = b""
    started = time.monotonic()
    position = 0
    while time.monotonic() - started < 20:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if position < len(drip):
                sock.sendall(drip[position : position + 1])
                position += 1
            continue
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - started


def test_stalled_or_dripping_headers_are_answered_408_and_the_connection_closed(tiny_model_dir: Path) -> None:
    # The request line and headers: half a request line or headers held the connection forever, and so
    # did one byte every few seconds.
    with running_server(tiny_model_dir, HEADER_READ_TIMEOUT="1") as server_url:
        url = urllib.parse.urlsplit(server_url)
        cases = {
            "nothing sent": b"",
            "half the headers": b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Ty",
        }
        for name, sent in cases.items():
            with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
                sock.sendall(sent)
                answer, waited = _closed_after(sock)
            if sent:
                assert b" 408 " in answer.split(b"\r\n", 1)[0], (name, answer)
                assert b"headers did not arrive within 1 s" in answer, name
            assert 0.5 < waited < 10, name
        with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            answer, waited = _closed_after(sock, drip=b"Host: x\r\nX-Drip: " + b"a" * 100)
        assert b" 408 " in answer.split(b"\r\n", 1)[0] and waited < 5, answer
        # A prompt client on a kept-alive connection is not affected: two requests, one connection.
        with httpx.Client(base_url=server_url) as client:
            assert client.get("/health").status_code == 200
            time.sleep(1.5)
            assert client.get("/health").status_code == 200


def test_a_dripping_body_is_answered_408_within_the_body_timeout(tiny_model_dir: Path) -> None:
    # The body timeout is for the whole body, not between chunks: a byte every 0.3 s used to keep a
    # request alive for as long as the client liked.
    with running_server(tiny_model_dir, BODY_READ_TIMEOUT="1") as server_url:
        url = urllib.parse.urlsplit(server_url)
        with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
            sock.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n"
            )
            answer, waited = _closed_after(sock, drip=b'{"inputs": "' + b"a" * 80)
    assert b" 408 " in answer.split(b"\r\n", 1)[0], answer
    assert b"did not arrive within 1 s" in answer
    assert waited < 5
