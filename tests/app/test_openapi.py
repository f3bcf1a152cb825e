"""The OpenAPI document says what the server does, on the real app and tiny model.

tests/app/test_schema_fuzz.py fuzzes the whole document; these tests pin the specific defects found before.
"""

from __future__ import annotations

import json
import socket
import urllib.parse

import pytest
from fastapi.testclient import TestClient

from models.tokenizer import NON_BLANK


def _component(client: TestClient, name: str) -> dict:
    return client.app.openapi()["components"]["schemas"][name]


def _branch(prop: dict, kind: str) -> dict:
    return next(branch for branch in prop.get("anyOf", [prop]) if branch.get("type") == kind)


def test_limits_from_settings_are_in_the_schema_and_in_info(client: TestClient) -> None:
    settings = client.app.state.settings
    parameters = _component(client, "GenerateParameters")["properties"]
    assert _branch(parameters["max_new_tokens"], "integer")["maximum"] == settings.max_new_tokens
    assert _branch(parameters["top_k"], "integer")["maximum"] == settings.top_k_limit
    stop = _branch(parameters["stop"], "array")
    assert stop["maxItems"] == settings.max_stop_sequences
    assert stop["items"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": settings.max_stop_chars,
    }
    inputs = _component(client, "GenerateRequest")["properties"]["inputs"]
    assert inputs["maxLength"] == settings.max_prompt_chars and inputs["pattern"] == NON_BLANK
    assert _component(client, "PredictRequest")["properties"]["top_k"]["maximum"] == settings.top_k_limit
    similar = _component(client, "SimilarRequest")
    assert similar["properties"]["topn"]["maximum"] == settings.max_topn
    for field in ("positive", "negative"):
        assert similar["properties"][field]["maxItems"] == settings.max_similar_words
        assert similar["properties"][field]["items"]["maxLength"] == settings.max_word_chars
    assert {tuple(option["required"]) for option in similar["anyOf"]} == {("positive",), ("negative",)}
    query = {p["name"]: p["schema"] for p in client.app.openapi()["paths"]["/similar"]["get"]["parameters"]}
    assert query["topn"]["maximum"] == settings.max_topn
    assert query["word"]["maxLength"] == settings.max_word_chars and query["word"]["pattern"] == NON_BLANK
    limits = client.get("/info").json()["limits"]
    assert limits["max_stop_chars"] == settings.max_stop_chars
    assert limits["max_similar_words"] == settings.max_similar_words
    assert limits["max_word_chars"] == settings.max_word_chars


def test_every_status_the_middleware_answers_is_documented(client: TestClient) -> None:
    document = client.app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]  # this app never sends it
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert {"400", "408", "413", "415", "422"} <= set(operation["responses"]), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith("4") and not path.startswith("/v1/"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_tgi_off_values_are_the_only_values_the_schema_allows(client: TestClient) -> None:
    parameters = _component(client, "GenerateParameters")["properties"]
    for field in ("grammar", "adapter_id"):
        assert parameters[field]["type"] == "null", field
    assert _branch(parameters["best_of"], "integer")["maximum"] == 4  # MAX_BEST_OF
    for parameter, value in (
        ("grammar", {"type": "json"}),
        ("best_of", 2),  # greedy: best_of > 1 needs sampling
        ("best_of", 5),
        ("watermark", True),
        ("watermark", 0),
    ):
        refused = client.post("/generate", json={"inputs": "宝玉", "parameters": {parameter: value}})
        assert refused.status_code == 422, (parameter, refused.text)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        # JSON Schema's "integer" includes 2.0; strict validation used to refuse it.
        ("/generate", {"inputs": "宝玉", "parameters": {"max_new_tokens": 2.0, "top_k": 3.0, "seed": 7.0}}),
        ("/generate", {"inputs": "宝玉", "parameters": {"max_new_tokens": 2, "best_of": 1.0}}),
        ("/predict", {"inputs": "宝玉", "top_k": 3.0}),
        ("/similar", {"positive": ["宝玉"], "topn": 3.0}),
    ],
)
def test_integral_numbers_are_integers(client: TestClient, path: str, payload: dict) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "payload", "fragment"),
    [
        ("/generate", {"inputs": "宝玉", "parameters": {"stop": ["x" * 101]}}, "sequence of 101 characters"),
        ("/similar", {"positive": ["宝玉"] * 21}, "positive has 21 words, the limit is 20"),
        ("/similar", {"positive": ["宝玉"], "negative": ["黛玉"] * 21}, "negative has 21 words"),
        ("/similar", {"positive": ["宝" * 51]}, "a word of 51 characters"),
    ],
)
def test_list_and_string_limits(client: TestClient, path: str, payload: dict, fragment: str) -> None:
    # 8 stop strings of 1M characters got a 200; /similar took a 1M-word list.
    response = client.post(path, json=payload)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_options_and_405_list_every_method_of_the_path(client: TestClient) -> None:
    # OPTIONS /similar answered 405 with `Allow: GET`, though POST /similar exists.
    options = client.options("/similar")
    assert options.status_code == 204 and options.headers["allow"] == "GET, POST"
    wrong = client.delete("/similar")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"
    assert wrong.json()["error_type"] == "method_not_allowed" and "only GET, POST" in wrong.json()["error"]
    assert client.put("/generate").headers["allow"] == "POST"


def _raw_exchange(server_url: str, request: bytes) -> tuple[bytes, bytes]:
    url = urllib.parse.urlsplit(server_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_a_90_kb_url_and_a_malformed_request_are_answered_in_json(server_url: str) -> None:
    # uvicorn answered these itself, in plain text ("Invalid HTTP request received.").
    head, body = _raw_exchange(
        server_url, b"GET /similar?word=" + b"a" * 90_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert head.split(b" ")[1] == b"414", head
    assert b"content-type: application/json" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    assert json.loads(body)["error"].startswith("the URL is 90014 bytes long, the limit is 65535")
    head, body = _raw_exchange(server_url, b"GET /health HTTP/1.1\r\nHost x\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    assert json.loads(body)["error_type"] == "invalid_http"


def test_tokenize_checks_the_parameters_it_shares_with_generate(client: TestClient) -> None:
    # Found by Schemathesis: /tokenize took the GenerateRequest whose schema carries the limits, but ignored
    # parameters beyond them (max_new_tokens over the limit: 200 on /tokenize, 422 on /generate).
    limit = client.app.state.settings.max_new_tokens
    body = {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": limit + 1}}
    assert client.post("/generate", json=body).status_code == 422
    assert client.post("/tokenize", json=body).status_code == 422
    assert client.post("/tokenize", json={"inputs": "宝玉笑道", "parameters": None}).status_code == 200


def test_streaming_routes_state_that_prefill_details_are_refused(client: TestClient) -> None:
    # Found by Schemathesis: decoder_input_details with a stream is a 422 (as in TGI), which the schema
    # shared by /generate and /generate_stream did not say.
    document = client.app.openapi()
    for path in ("/generate_stream", "/generate", "/"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "decoder_input_details" in json.dumps(schema["allOf"][1]), path
    body = {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 2, "decoder_input_details": True}}
    assert client.post("/generate_stream", json=body).status_code == 422
    assert client.post("/generate", json=body).status_code == 200


def test_openai_prompt_and_stop_limits_are_in_the_schema(client: TestClient) -> None:
    # Found by Schemathesis: prompt [""] and stop "" were schema-valid but refused.
    settings = client.app.state.settings
    properties = _component(client, "CompletionRequest")["properties"]
    assert _branch(properties["prompt"], "string")["pattern"] == NON_BLANK
    assert _branch(properties["prompt"], "array")["items"]["maxLength"] == settings.max_prompt_chars
    assert _branch(properties["stop"], "string")["minLength"] == 1
    assert _branch(properties["stop"], "string")["maxLength"] == settings.max_stop_chars
    body = {"prompt": "宝玉笑道", "max_tokens": 2, "stop": "x" * (settings.max_stop_chars + 1)}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 422 and "characters" in response.json()["error"]["message"]
