"""The repository's nginx configuration (deploy/nginx/novel-lstm.conf) run by Debian's nginx in front of two
real uvicorn replicas of the tiny model, all on 127.0.0.1: requests are spread over the replicas, streams pass
through token by token, the body limit is the app's, a replica that is killed costs only the request in flight
on it (never sent again to the other one), and the requests after it go to the survivor."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from live_server import REPO_ROOT, LiveServer, live_server

from app.settings import Settings

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from nginx_process import PROXY_CONF, LocalNginx, nginx_binary, start_nginx

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is not installed (apt-get install nginx; .ci/run does it)"
)

# The tiny model decodes thousands of tokens per second: long generations stay in flight for a while.
REPLICA_SETTINGS = {"MAX_NEW_TOKENS": "20000", "LOG_LEVEL": "info"}


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of one Prometheus sample over the label sets that include `labels`."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            total += float(match.group(2))
    return total


def upstreams_in_log(nginx: LocalNginx) -> list[str]:
    """The `"upstream addresses"` field of every access-log line (several, comma-separated, after a retry)."""
    return re.findall(r'"([^"]*)" "[^"]*" \S+$', nginx.access_log.read_text(), re.MULTILINE)


def wait_for_log_line(nginx: LocalNginx, fragment: str) -> str:
    """nginx logs a request as it finishes it, which may be just after the client has the answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in nginx.access_log.read_text().splitlines() if fragment in line]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access-log line with {fragment!r}:\n{nginx.access_log.read_text()}")


@contextmanager
def replicas_behind_nginx(model_dir: Path, directory: Path) -> Iterator[tuple[LocalNginx, list[LiveServer]]]:
    with ExitStack() as stack:
        replicas = [stack.enter_context(live_server(model_dir, **REPLICA_SETTINGS)) for _ in range(2)]
        nginx = start_nginx(directory, [port_of(server) for server in replicas])
        stack.callback(nginx.stop)
        yield nginx, replicas


@pytest.fixture(scope="module")
def shared(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """nginx and two replicas for the tests that leave both running."""
    with replicas_behind_nginx(tiny_model_dir, tmp_path_factory.mktemp("nginx")) as started:
        yield started


def generate(url: str, tokens: int, request_id: str | None = None) -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": tokens, "do_sample": True, "seed": 1}}
    return httpx.post(f"{url}/generate", json=body, headers=headers, timeout=120)


def test_concurrent_generations_are_spread_over_both_replicas(shared: tuple) -> None:
    proxy, replicas = shared
    before = [metric(server.url, "novel_lstm_http_requests_total", route="/generate") for server in replicas]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda i: generate(proxy.url, 3000, f"spread-{i}"), range(6)))
    assert [response.status_code for response in responses] == [200] * 6
    assert [response.headers["x-request-id"] for response in responses] == [f"spread-{i}" for i in range(6)]
    after = [metric(server.url, "novel_lstm_http_requests_total", route="/generate") for server in replicas]
    served = [now - then for now, then in zip(after, before, strict=True)]
    assert sum(served) == 6 and min(served) >= 1, f"least_conn should use both replicas: {served}"
    used = {address for line in upstreams_in_log(proxy) for address in line.split(", ")}
    assert used >= {f"127.0.0.1:{port_of(server)}" for server in replicas}


def test_a_stream_passes_through_event_by_event(shared: tuple) -> None:
    proxy, _ = shared
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 8000, "do_sample": True, "seed": 3}}
    arrivals: list[float] = []
    events: list[dict] = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{proxy.url}/generate_stream", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.perf_counter() - started)
                events.append(json.loads(line[5:]))
    assert len(events) == 8000
    assert events[-1]["details"]["finish_reason"] == "length"
    # Unbuffered: the first token reaches the client long before the last one is generated.
    assert arrivals[0] < arrivals[-1] / 2, (arrivals[0], arrivals[-1])


def test_the_body_limit_is_the_apps_and_nginx_enforces_it(shared: tuple) -> None:
    proxy, _ = shared
    limit = re.search(r"client_max_body_size (\d+)k;", PROXY_CONF.read_text()).group(1)
    assert int(limit) * 1024 == Settings(_env_file=None).max_body_bytes
    too_large = b'{"inputs": "' + b"x" * int(limit) * 1024 + b'"}'
    response = httpx.post(f"{proxy.url}/generate", content=too_large, timeout=30)
    assert response.status_code == 413
    refused = wait_for_log_line(proxy, " 413 POST /generate ")
    assert '"-" "-"' in refused, f"nginx refuses the body itself, no replica reads it: {refused}"


def test_a_killed_replica_fails_only_its_request_in_flight(tiny_model_dir: Path, tmp_path: Path) -> None:
    with replicas_behind_nginx(tiny_model_dir, tmp_path / "nginx") as (proxy, replicas):
        check_kill_in_flight(proxy, replicas)


def check_kill_in_flight(proxy: LocalNginx, replicas: list[LiveServer]) -> None:
    body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 20000, "do_sample": True, "seed": 5}}
    with httpx.stream(
        "POST", f"{proxy.url}/generate_stream", json=body, headers={"X-Request-ID": "doomed"}, timeout=120
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        running = [metric(server.url, "novel_lstm_batch_current_size") for server in replicas]
        assert sorted(running) == [0, 1], running
        victim, survivor = (replicas[0], replicas[1]) if running[0] else (replicas[1], replicas[0])
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        # The stream breaks off: the client sees an error, not a clean end (and not a second generation).
        with pytest.raises(httpx.HTTPError):
            for line in lines:
                assert '"finish_reason"' not in line
    # nginx did not send the POST to the other replica: it had reached the killed one.
    assert metric(survivor.url, "novel_lstm_http_requests_total", route="/generate_stream") == 0
    doomed = wait_for_log_line(proxy, " doomed")
    assert doomed.count(" doomed") == 1 and f'"127.0.0.1:{port_of(victim)}"' in doomed, (
        f"a POST that was sent must not be retried elsewhere: {doomed}"
    )

    # Every request after the kill succeeds at once: the refused connection is retried on the survivor before
    # anything is sent, and the dead replica is then left out for fail_timeout.
    statuses = [generate(proxy.url, 20).status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert metric(survivor.url, "novel_lstm_http_requests_total", route="/generate") == 10


def test_a_replica_taken_out_and_stopped_finishes_its_stream_while_the_other_serves(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """One step of a rolling restart: the replica leaves nginx's upstream (reload), gets SIGTERM and drains;
    its stream through the proxy ends normally, and every new request meanwhile goes to the other replica."""
    with replicas_behind_nginx(tiny_model_dir, tmp_path / "nginx") as (proxy, replicas):
        body = {"inputs": "宝玉", "parameters": {"max_new_tokens": 6000, "do_sample": True, "seed": 7}}
        with httpx.stream("POST", f"{proxy.url}/generate_stream", json=body, timeout=120) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            running = [metric(server.url, "novel_lstm_batch_current_size") for server in replicas]
            assert sorted(running) == [0, 1], running
            stopping, survivor = (replicas[0], replicas[1]) if running[0] else (replicas[1], replicas[0])
            proxy.reload([port_of(server) for server in replicas], down={port_of(stopping)})
            stopping.process.send_signal(signal.SIGTERM)
            statuses = [generate(proxy.url, 20).status_code for _ in range(10)]
            events = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
        assert statuses == [200] * 10
        assert metric(survivor.url, "novel_lstm_http_requests_total", route="/generate") == 10
        assert events[-1]["details"]["finish_reason"] == "length" and len(events) == 5999
        stopping.process.wait(timeout=30)
        assert "drained: 1 generations finished, 0 cut" in stopping.output()
