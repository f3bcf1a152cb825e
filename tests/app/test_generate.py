"""POST /generate on the real app with the tiny real model."""

from __future__ import annotations

from fastapi.testclient import TestClient

PROMPT = "宝玉笑道"


def _generate(client: TestClient, inputs: str = PROMPT, **parameters: object) -> dict:
    response = client.post("/generate", json={"inputs": inputs, "parameters": parameters})
    assert response.status_code == 200, response.text
    return response.json()


def test_generate_returns_text_and_details(client: TestClient, vocabulary: list[str]) -> None:
    body = _generate(client, max_new_tokens=12, do_sample=True, temperature=0.8, top_k=20, top_p=0.95,
                     repetition_penalty=1.2, seed=42, details=True)  # fmt: skip
    details = body["details"]
    assert details["finish_reason"] == "length"
    assert details["generated_tokens"] == len(details["tokens"]) == 12
    assert details["seed"] == 42
    assert details["unknown_words"] == []
    assert [token["text"] for token in details["prefill"]] == ["宝玉", "笑", "道"]
    assert body["generated_text"] == "".join(token["text"] for token in details["tokens"])
    for token in details["tokens"]:
        assert vocabulary[token["id"]] == token["text"]
        assert token["logprob"] <= 0.0
        assert -1.0 <= token["similarity"] <= 1.0
        assert token["special"] is False


def test_without_details_only_text(client: TestClient) -> None:
    body = _generate(client, max_new_tokens=5)
    assert body["details"] is None
    assert isinstance(body["generated_text"], str) and body["generated_text"]


def test_return_full_text_prepends_the_prompt(client: TestClient) -> None:
    plain = _generate(client, max_new_tokens=6, seed=1, do_sample=True)
    full = _generate(client, max_new_tokens=6, seed=1, do_sample=True, return_full_text=True)
    assert full["generated_text"] == PROMPT + plain["generated_text"]


def test_same_seed_same_text_different_seeds_differ(client: TestClient) -> None:
    params = {"max_new_tokens": 30, "do_sample": True, "temperature": 1.2, "top_k": 40}
    first = _generate(client, seed=123, **params)["generated_text"]
    assert _generate(client, seed=123, **params)["generated_text"] == first
    others = {_generate(client, seed=seed, **params)["generated_text"] for seed in range(1, 6)}
    assert len(others | {first}) > 1


def test_greedy_is_deterministic_and_reports_no_seed(client: TestClient) -> None:
    first = _generate(client, max_new_tokens=15, details=True)
    second = _generate(client, max_new_tokens=15, details=True)
    assert first["generated_text"] == second["generated_text"]
    assert first["details"]["seed"] is None


def test_stop_sequence_ends_generation(client: TestClient) -> None:
    free = _generate(client, max_new_tokens=40, details=True)
    texts = [token["text"] for token in free["details"]["tokens"]]
    stop = texts[4]  # a word greedy decoding produces at position 5 (or earlier)
    expected = next(i for i in range(len(texts)) if stop in "".join(texts[: i + 1]))
    stopped = _generate(client, max_new_tokens=40, details=True, stop=[stop])
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["generated_text"] == "".join(texts[: expected + 1])
    assert stopped["generated_text"].endswith(stop)


def test_some_unknown_words_are_served_and_listed(client: TestClient, vocabulary: list[str]) -> None:
    body = _generate(client, inputs="宝玉看见孙悟空", max_new_tokens=3, details=True)
    assert "孙悟空" not in vocabulary
    assert body["details"]["unknown_words"] == ["孙悟空"]
    assert body["details"]["generated_tokens"] == 3


def test_tgi_client_payload_with_null_parameters_is_accepted(client: TestClient) -> None:
    # What text_generation.Client.generate sends: every parameter, unused ones null/false, plus "stream".
    payload = {
        "inputs": PROMPT,
        "parameters": {
            "best_of": None, "details": True, "decoder_input_details": False, "do_sample": False,
            "frequency_penalty": None, "grammar": None, "max_new_tokens": 5, "repetition_penalty": None,
            "return_full_text": False, "seed": None, "stop": [], "temperature": None, "top_k": None,
            "top_n_tokens": None, "top_p": None, "truncate": None, "typical_p": None, "watermark": False,
            "adapter_id": None,
        },
        "stream": False,
    }  # fmt: skip
    response = client.post("/generate", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["details"]["generated_tokens"] == 5


def test_sampling_control_alone_turns_sampling_on_like_tgi(client: TestClient) -> None:
    body = _generate(client, max_new_tokens=5, temperature=0.9, seed=9, details=True)
    assert body["details"]["seed"] == 9
