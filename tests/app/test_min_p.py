"""min_p on every generation route (/generate, POST /, /generate_stream, OpenAI completions and chat): the
one shared sampling field, validated alike and reaching the sampler the same way. min_p 1 keeps only the
most probable word, so a sampled request with it must write exactly the greedy text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_stream import parse_sse

PROMPT = "宝玉笑道"
HELLO = [{"role": "user", "content": "你好"}]


def _tgi(client: TestClient, path: str, stream: bool = False, **parameters: object) -> str:
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, **parameters}}
    if stream:
        with client.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            return parse_sse(list(response.iter_lines()))[-1]["generated_text"]
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    return (answer[0] if isinstance(answer, list) else answer)["generated_text"]


@pytest.mark.parametrize(
    ("path", "stream"), [("/generate", False), ("/", False), ("/generate_stream", True)], ids=str
)
def test_tgi_min_p_one_is_greedy_and_smaller_values_still_sample(
    client: TestClient, path: str, stream: bool
) -> None:
    greedy = _tgi(client, path, stream)
    assert _tgi(client, path, stream, do_sample=True, temperature=1.5, seed=3, min_p=1.0) == greedy
    sampled = {
        _tgi(client, path, stream, do_sample=True, temperature=1.5, seed=s, min_p=0.01) for s in range(4)
    }
    assert len(sampled) > 1
    # 0 (and null) is off: the same draws as without it.
    assert _tgi(client, path, stream, do_sample=True, seed=5, min_p=0) == _tgi(
        client, path, stream, do_sample=True, seed=5
    )


def test_openai_min_p_one_is_greedy(client: TestClient) -> None:
    def completion(**fields: object) -> str:
        response = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 12, **fields})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    def chat(**fields: object) -> str:
        response = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 12, **fields})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    assert completion(temperature=1.5, seed=2, min_p=1.0) == completion(temperature=0)
    assert chat(temperature=1.5, seed=2, min_p=1.0) == chat(temperature=0)
    assert len({completion(temperature=1.5, seed=s, min_p=0.01) for s in range(4)}) > 1


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5"])
def test_min_p_out_of_range_is_a_422_naming_it_on_every_route(client: TestClient, value: object) -> None:
    for path, body, field in (
        ("/generate", {"inputs": PROMPT, "parameters": {"min_p": value}}, "parameters.min_p"),
        ("/", {"inputs": PROMPT, "parameters": {"min_p": value}}, "parameters.min_p"),
        ("/generate_stream", {"inputs": PROMPT, "parameters": {"min_p": value}}, "parameters.min_p"),
        ("/v1/completions", {"prompt": PROMPT, "min_p": value}, "min_p"),
        ("/v1/chat/completions", {"messages": HELLO, "min_p": value}, "min_p"),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        message = error["message"] if isinstance(error, dict) else error
        assert message.startswith(field), (path, message)


def test_the_schema_states_min_p_range(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("GenerateParameters", "CompletionRequest", "ChatCompletionRequest"):
        branch = next(b for b in schemas[name]["properties"]["min_p"]["anyOf"] if b.get("type") == "number")
        assert (branch["minimum"], branch["maximum"]) == (0, 1), name
