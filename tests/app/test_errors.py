"""Every client error is a 4xx JSON {"error", "error_type"} with a message naming the problem; never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def _assert_error(response, status: int, error_type: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error_type"] == error_type
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])
    return body


GENERATE_ERRORS = [
    ({"inputs": ""}, "inputs is empty"),
    ({"inputs": "   \n\t "}, "inputs is empty"),
    ({"inputs": "宝玉" * 101}, "the limit is 200"),
    ({"inputs": "宝玉", "parameters": {"do_sample": True, "temperature": 0}}, "parameters.temperature"),
    ({"inputs": "宝玉", "parameters": {"temperature": -0.5}}, "greater than 0"),
    ({"inputs": "宝玉", "parameters": {"top_p": 0}}, "parameters.top_p"),
    ({"inputs": "宝玉", "parameters": {"top_p": 1.01}}, "less than or equal to 1"),
    ({"inputs": "宝玉", "parameters": {"top_k": 0}}, "parameters.top_k"),
    ({"inputs": "宝玉", "parameters": {"top_k": 51}}, "the limit is 50"),
    ({"inputs": "宝玉", "parameters": {"max_new_tokens": 0}}, "parameters.max_new_tokens"),
    ({"inputs": "宝玉", "parameters": {"max_new_tokens": 65}}, "the limit is 64"),
    ({"inputs": "宝玉", "parameters": {"repetition_penalty": 0}}, "parameters.repetition_penalty"),
    ({"inputs": "宝玉", "parameters": {"seed": -1}}, "parameters.seed"),
    ({"inputs": "宝玉", "parameters": {"stop": [""]}}, "non-empty"),
    ({"inputs": "宝玉", "parameters": {"stop": ["。"] * 9}}, "the limit is 8"),
    ({"inputs": 42}, "inputs"),
    ({"inputs": "宝玉", "parameters": {"max_new_tokens": "10"}}, "parameters.max_new_tokens"),
    ({"inputs": "宝玉", "parameters": {"max_new_tokens": 2.5}}, "parameters.max_new_tokens"),
    ({"inputs": "宝玉", "parameters": {"do_sample": "yes"}}, "parameters.do_sample"),
    ({"inputs": "宝玉", "parameters": {"temperature": "hot"}}, "parameters.temperature"),
    ({"inputs": "宝玉", "parameters": {"stop": "。"}}, "parameters.stop"),
    ({"inputs": "宝玉", "parameters": []}, "parameters"),
    ({"prompt": "宝玉"}, "inputs is required"),
    # TGI parameters: out of range, over a server limit, or a feature this model lacks (the message says why).
    ({"inputs": "宝玉", "parameters": {"watermark": True}}, "watermark is not supported"),
    ({"inputs": "宝玉", "parameters": {"best_of": 2}}, "which needs sampling (as in TGI"),
    ({"inputs": "宝玉", "parameters": {"best_of": 5, "do_sample": True}}, "the limit is 4 (MAX_BEST_OF)"),
    ({"inputs": "宝玉", "parameters": {"best_of": 0}}, "parameters.best_of"),
    ({"inputs": "宝玉", "parameters": {"grammar": {"type": "regex", "value": "a+"}}}, "grammar is not supp"),
    ({"inputs": "宝玉", "parameters": {"adapter_id": "lora-1"}}, "adapter_id is not supported"),
    ({"inputs": "宝玉", "parameters": {"top_n_tokens": 6}}, "the limit is 5 (MAX_TOP_N_TOKENS)"),
    ({"inputs": "宝玉", "parameters": {"top_n_tokens": -1}}, "parameters.top_n_tokens"),
    ({"inputs": "宝玉", "parameters": {"truncate": 0}}, "parameters.truncate"),
    ({"inputs": "宝玉", "parameters": {"truncate": 201}}, "max_input_tokens = 200"),
    ({"inputs": "宝玉", "parameters": {"typical_p": 0}}, "parameters.typical_p"),
    ({"inputs": "宝玉", "parameters": {"typical_p": 1.5}}, "parameters.typical_p"),
    ({"inputs": "宝玉", "parameters": {"frequency_penalty": 2.5}}, "parameters.frequency_penalty"),
    ({"inputs": "宝玉", "parameters": {"frequency_penalty": "high"}}, "parameters.frequency_penalty"),
]


@pytest.mark.parametrize("path", ["/", "/generate", "/generate_stream"])
@pytest.mark.parametrize(("payload", "fragment"), GENERATE_ERRORS)
def test_invalid_generate_requests(client: TestClient, path: str, payload: dict, fragment: str) -> None:
    _assert_error(client.post(path, json=payload), 422, "validation", fragment)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/generate_stream", {}),
        ("/generate", {"stream": True}),
        ("/", {"stream": True}),
    ],
)
def test_decoder_input_details_is_refused_when_streaming_like_tgi(
    client: TestClient, path: str, payload: dict
) -> None:
    body = {"inputs": "宝玉", "parameters": {"decoder_input_details": True}, **payload}
    _assert_error(client.post(path, json=body), 422, "validation", "not supported when streaming")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(client: TestClient, literal: str) -> None:
    body = f'{{"inputs": "宝玉", "parameters": {{"do_sample": true, "temperature": {literal}}}}}'
    response = client.post("/generate", content=body.encode(), headers={"content-type": "application/json"})
    _assert_error(response, 422, "validation", "parameters.temperature", "finite")


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/generate", content='{"inputs": "宝玉", '.encode(), headers={"content-type": "application/json"}
    )
    body = _assert_error(response, 422, "validation", "not valid JSON")
    assert body["fields"] == ["request body"]


def test_missing_body(client: TestClient) -> None:
    _assert_error(client.post("/generate"), 422, "validation", "request body is missing")


def test_a_prompt_of_unknown_words_is_read_through_its_characters_not_refused(
    client: TestClient, vocabulary: list[str]
) -> None:
    unknown = "孙悟空"  # not a word of the novel's vocabulary: read as its characters (or <unk>)
    assert unknown not in vocabulary
    body = client.post(
        "/generate", json={"inputs": unknown, "parameters": {"max_new_tokens": 3, "details": True}}
    ).json()
    assert body["details"]["unknown_words"] == [unknown] and body["details"]["generated_tokens"] == 3
    assert len(body["details"]["prefill"]) == len(unknown)  # one token per character, none deleted
    predicted = client.post("/predict", json={"inputs": unknown}).json()
    assert predicted["unknown_words"] == [unknown] and predicted["candidates"]
    assert "<unk>" not in [candidate["word"] for candidate in predicted["candidates"]]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"inputs": "宝玉", "top_k": 0}, "top_k"),
        ({"inputs": "宝玉", "top_k": 51}, "the limit is 50"),
        ({"inputs": "宝玉", "temperature": 0}, "temperature"),
        ({"inputs": " "}, "inputs is empty"),
        ({"inputs": ["宝玉"]}, "inputs"),
    ],
)
def test_invalid_predict_requests(client: TestClient, payload: dict, fragment: str) -> None:
    _assert_error(client.post("/predict", json=payload), 422, "validation", fragment)


def test_similar_unknown_word_is_404_with_suggestions(client: TestClient, vocabulary: list[str]) -> None:
    body = _assert_error(client.get("/similar", params={"word": "宝猫"}), 404, "unknown_word", "宝猫")
    assert body["unknown_words"] == ["宝猫"]
    assert all(word in vocabulary for word in body["suggestions"]["宝猫"])
    body = _assert_error(
        client.post("/similar", json={"positive": ["宝玉", "宝猫"], "negative": ["孙悟空"]}),
        404,
        "unknown_word",
    )
    assert body["unknown_words"] == ["宝猫", "孙悟空"]


@pytest.mark.parametrize(
    ("request_args", "status", "fragment"),
    [
        ({"method": "GET", "url": "/similar"}, 422, "word is required"),
        ({"method": "GET", "url": "/similar", "params": {"word": "宝玉", "topn": "ten"}}, 422, "topn"),
        ({"method": "GET", "url": "/similar", "params": {"word": "宝玉", "topn": 0}}, 422, "topn"),
        (
            {"method": "GET", "url": "/similar", "params": {"word": "宝玉", "topn": 21}},
            422,
            "the limit is 20",
        ),
        ({"method": "GET", "url": "/similar", "params": {"word": " "}}, 422, "non-empty"),
        ({"method": "POST", "url": "/similar", "json": {}}, 422, "at least one word"),
        ({"method": "POST", "url": "/similar", "json": {"positive": "宝玉"}}, 422, "positive"),
    ],
)
def test_invalid_similar_requests(client: TestClient, request_args: dict, status: int, fragment: str) -> None:
    _assert_error(client.request(**request_args), status, "validation", fragment)


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    _assert_error(client.get("/nothing-here"), 404, "not_found", "/nothing-here", "/docs")
    _assert_error(client.get("/generate"), 405, "method_not_allowed", "GET", "/generate")
    _assert_error(client.delete("/similar"), 405, "method_not_allowed")
