"""GET /info, /health, /metrics, the playground page and the OpenAPI examples."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def _counter(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_info_is_the_model_card(client: TestClient, tiny_model_dir) -> None:
    info = client.get("/info").json()
    assert info["model_id"] == tiny_model_dir.name
    assert info["vocabulary"]["size"] == len(client.app.state.service.model.vectors)
    for section in ("corpus", "segmentation", "word2vec", "network", "training", "evaluation"):
        assert section in info, section
    assert info["limits"]["max_new_tokens"] == 64
    assert "files" not in info


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["vocab_size"] > 0


def test_metrics_count_requests_latency_and_tokens(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/generate", json={"inputs": "宝玉", "parameters": {"max_new_tokens": 7}})
    client.post("/generate", json={"inputs": "", "parameters": {}})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = {"method": "POST", "route": "/generate", "status": "200"}
    bad = {"method": "POST", "route": "/generate", "status": "422"}
    assert (
        _counter(text, "novel_lstm_http_requests_total", **ok)
        == _counter(before, "novel_lstm_http_requests_total", **ok) + 1
    )
    assert (
        _counter(text, "novel_lstm_http_requests_total", **bad)
        == _counter(before, "novel_lstm_http_requests_total", **bad) + 1
    )
    tokens = {"route": "/generate"}
    assert (
        _counter(text, "novel_lstm_generated_tokens_total", **tokens)
        == _counter(before, "novel_lstm_generated_tokens_total", **tokens) + 7
    )
    latency = {"method": "POST", "route": "/generate"}
    assert _counter(text, "novel_lstm_http_request_duration_seconds_count", **latency) >= 2


def test_unknown_routes_share_one_metrics_label(client: TestClient) -> None:
    client.get("/no/such/page/12345")
    text = client.get("/metrics").text
    assert "12345" not in text
    assert re.search(r'route="unmatched",status="404"', text)


def test_playground_page_and_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset


def test_openapi_lists_every_endpoint_with_chinese_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {
        "/", "/generate", "/generate_stream", "/predict", "/similar", "/info", "/health", "/ping", "/metrics",
        "/tokenize", "/v1/models", "/v1/completions",
    } <= set(paths)  # fmt: skip
    assert {"get", "post"} <= set(paths["/similar"])
    components = schema["components"]["schemas"]
    assert components["GenerateRequest"]["examples"][0]["inputs"] == "宝玉笑道"
    assert client.get("/docs").status_code == 200


def test_openapi_examples_succeed(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    for path, schema in (
        ("/", "GenerateRequest"),
        ("/generate", "GenerateRequest"),
        ("/predict", "PredictRequest"),
        ("/similar", "SimilarRequest"),
        ("/v1/completions", "CompletionRequest"),
    ):
        example = components[schema]["examples"][0]
        response = client.post(path, json=example)
        assert response.status_code == 200, (path, response.text)
    assert client.get("/similar", params={"word": "黛玉", "topn": 10}).status_code == 200
