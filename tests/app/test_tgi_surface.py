"""TGI's HTTP surface on the real app with the tiny real model: POST /, `stream` on /generate, the headers,
every GenerateParameters field either honoured (its effect shown) or refused (test_errors.py), null and
"off" values, unknown fields, /info's TGI fields, /ping and /tokenize."""

from __future__ import annotations

import json
import logging
import math

import pytest
from fastapi.testclient import TestClient
from test_stream import parse_sse

PROMPT = "宝玉笑道"
SAMPLED = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.3, "seed": 11}


def _post(client: TestClient, path: str, inputs: str = PROMPT, **body: object) -> dict | list:
    response = client.post(path, json={"inputs": inputs, **body})
    assert response.status_code == 200, response.text
    return response.json()


def _text(client: TestClient, inputs: str = PROMPT, **parameters: object) -> str:
    return _post(client, "/generate", inputs, parameters=parameters)["generated_text"]


def _details(client: TestClient, inputs: str = PROMPT, **parameters: object) -> dict:
    return _post(client, "/generate", inputs, parameters={**parameters, "details": True})["details"]


def _stream_events(client: TestClient, path: str, body: dict) -> list[dict]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse(list(response.iter_lines()))


# ---------------------------------------------------------------------------------------------- the routes


def test_compat_route_answers_a_one_item_list_with_the_full_text(client: TestClient) -> None:
    plain = _post(client, "/generate", parameters=SAMPLED)
    listed = _post(client, "/", parameters=SAMPLED)
    assert isinstance(listed, list) and len(listed) == 1
    # return_full_text defaults to true on POST / (TGI's default for text-generation models), false elsewhere.
    assert listed[0]["generated_text"] == PROMPT + plain["generated_text"]
    explicit = _post(client, "/", parameters={**SAMPLED, "return_full_text": False})
    assert explicit[0]["generated_text"] == plain["generated_text"]
    nulled = _post(client, "/generate", parameters={**SAMPLED, "return_full_text": None})
    assert nulled["generated_text"] == plain["generated_text"]


@pytest.mark.parametrize("path", ["/", "/generate"])
def test_stream_true_answers_server_sent_events_on_compat_and_generate(client: TestClient, path: str) -> None:
    body = {"inputs": PROMPT, "parameters": {**SAMPLED, "return_full_text": False}, "stream": True}
    events = _stream_events(client, path, body)
    reference = _stream_events(client, "/generate_stream", {"inputs": PROMPT, "parameters": SAMPLED})
    assert [e["token"]["id"] for e in events] == [e["token"]["id"] for e in reference]
    assert events[-1]["generated_text"] == reference[-1]["generated_text"]


def test_same_seed_same_text_on_every_tgi_route(client: TestClient) -> None:
    parameters = {
        **SAMPLED,
        "top_k": 30,
        "typical_p": 0.9,
        "frequency_penalty": 0.5,
        "return_full_text": False,
    }
    body = {"inputs": PROMPT, "parameters": parameters}
    texts = {
        "/generate": _post(client, "/generate", **body)["generated_text"],
        "/": _post(client, "/", **body)[0]["generated_text"],
        "/generate_stream": _stream_events(client, "/generate_stream", body)[-1]["generated_text"],
        "/ stream": _stream_events(client, "/", {**body, "stream": True})[-1]["generated_text"],
    }
    assert len(set(texts.values())) == 1, texts


def test_plain_answers_carry_tgi_headers(client: TestClient) -> None:
    for path in ("/", "/generate"):
        response = client.post(path, json={"inputs": PROMPT, "parameters": {"max_new_tokens": 7}})
        headers = response.headers
        assert headers["x-prompt-tokens"] == "3"  # 宝玉 / 笑 / 道
        assert headers["x-generated-tokens"] == "7"
        assert float(headers["x-compute-time"]) > 0
        assert headers["x-compute-type"] == "cpu" and headers["x-compute-characters"] == "4"
        assert int(headers["x-total-time"]) >= 0 and int(headers["x-time-per-token"]) >= 0
        parts = [int(headers[f"x-{part}-time"]) for part in ("validation", "queue", "inference")]
        assert min(parts) >= 0 and abs(sum(parts) - int(headers["x-total-time"])) <= 2, headers
    with client.stream("POST", "/generate_stream", json={"inputs": PROMPT}) as response:
        assert response.headers["x-prompt-tokens"] == "3"


# ----------------------------------------------------------------------------------- null, off and unknown


def test_null_means_default_for_every_parameter(client: TestClient) -> None:
    nulls = {
        name: None
        for name in (
            "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
            "frequency_penalty", "seed", "stop", "return_full_text", "details", "decoder_input_details",
            "top_n_tokens", "truncate", "best_of", "watermark", "grammar", "adapter_id",
        )
    }  # fmt: skip
    nulled = _post(client, "/generate", parameters=nulls)
    default = _post(client, "/generate", parameters={})
    assert nulled == default
    assert _post(client, "/generate", parameters=None) == default
    assert _post(client, "/generate", parameters={}, stream=None) == default
    # null max_new_tokens is the documented default of 50 words.
    assert _details(client, max_new_tokens=None)["generated_tokens"] == 50


def test_off_values_change_nothing(client: TestClient) -> None:
    off = {
        "frequency_penalty": 0, "top_n_tokens": 0, "typical_p": 1.0, "top_p": 1.0, "repetition_penalty": 1.0,
        "best_of": 1, "watermark": False, "decoder_input_details": False,
    }  # fmt: skip
    assert _text(client, **SAMPLED, **off) == _text(client, **SAMPLED)
    greedy = _details(client, max_new_tokens=10, **off)
    assert greedy["seed"] is None  # none of them turned sampling on
    assert greedy["top_tokens"] is None


def test_unknown_fields_are_ignored_and_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app"):
        body = {
            "inputs": PROMPT,
            "parameters": {**SAMPLED, "temprature": 0.5, "epsilon_cutoff": 0.1},
            "add_special_tokens": False,
        }
        ignored = _post(client, "/generate", **body)
    assert ignored["generated_text"] == _text(client, **SAMPLED)
    logged = caplog.text
    assert "'temprature'" in logged and "'epsilon_cutoff'" in logged and "'add_special_tokens'" in logged


# ----------------------------------------------------------------------------------- each parameter's effect


def test_typical_p_samples_and_narrows_the_choice(client: TestClient) -> None:
    # typical_p alone turns sampling on (as in TGI): a seed is reported and different seeds differ.
    details = _details(client, max_new_tokens=20, typical_p=0.5, seed=4)
    assert details["seed"] == 4
    texts = {_text(client, max_new_tokens=20, typical_p=0.9, seed=seed) for seed in range(6)}
    assert len(texts) > 1
    # Under a small typical set each drawn word carries more of the (renormalised) mass than under none.
    narrow = _details(client, max_new_tokens=40, typical_p=0.2, do_sample=True, seed=5)["tokens"]
    wide = _details(client, max_new_tokens=40, do_sample=True, seed=5)["tokens"]
    assert sum(t["logprob"] for t in narrow) > sum(t["logprob"] for t in wide)


def test_frequency_penalty_discourages_repeats(client: TestClient) -> None:
    def repeated(tokens: list[dict]) -> int:
        return len(tokens) - len({t["id"] for t in tokens})

    plain = _details(client, max_new_tokens=60)["tokens"]
    penalised = _details(client, max_new_tokens=60, frequency_penalty=2.0)["tokens"]
    encouraged = _details(client, max_new_tokens=60, frequency_penalty=-2.0)["tokens"]
    assert repeated(penalised) < repeated(plain) <= repeated(encouraged)


def test_top_n_tokens_lists_the_best_alternatives(client: TestClient) -> None:
    details = _details(client, max_new_tokens=6, top_n_tokens=3)
    assert len(details["top_tokens"]) == 6
    for token, top in zip(details["tokens"], details["top_tokens"], strict=True):
        assert len(top) == 3
        assert top[0]["id"] == token["id"]  # greedy: the chosen word is the best one
        assert top[0]["logprob"] == pytest.approx(token["logprob"], abs=1e-6)
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    events = _stream_events(
        client, "/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "top_n_tokens": 2}}
    )
    assert all(len(event["top_tokens"]) == 2 for event in events)


def test_decoder_input_details_are_the_model_probabilities_of_the_prompt(client: TestClient) -> None:
    body = _post(
        client, "/generate", parameters={"max_new_tokens": 2, "decoder_input_details": True}
    )  # details implied, as in TGI
    prefill = body["details"]["prefill"]
    assert [t["text"] for t in prefill] == ["宝玉", "笑", "道"]
    assert prefill[0]["logprob"] is None
    # log P(笑 | 宝玉) is what /predict says after 宝玉.
    predicted = client.post("/predict", json={"inputs": "宝玉", "top_k": 50}).json()["candidates"]
    probability = next(c["probability"] for c in predicted if c["word"] == "笑")
    assert prefill[1]["logprob"] == pytest.approx(math.log(probability), abs=1e-4)
    assert all(t["logprob"] <= 0 for t in prefill[1:])
    assert all(t["logprob"] is None for t in _details(client, max_new_tokens=2)["prefill"])


def test_truncate_keeps_the_last_tokens_of_the_prompt(client: TestClient) -> None:
    long_prompt = "黛玉听了，" + PROMPT
    truncated = _details(client, long_prompt, **SAMPLED, truncate=3)
    assert [t["text"] for t in truncated["prefill"]] == ["宝玉", "笑", "道"]

    def logprobs(details: dict) -> list[float]:
        return [t["logprob"] for t in details["tokens"]]

    # Exactly what the last three tokens alone give, and not what the whole prompt gives.
    assert logprobs(truncated) == pytest.approx(logprobs(_details(client, PROMPT, **SAMPLED)), abs=1e-5)
    assert logprobs(truncated) != pytest.approx(logprobs(_details(client, long_prompt, **SAMPLED)), abs=1e-5)


def test_stop_and_seed_and_best_of_one_behave_as_in_tgi(client: TestClient) -> None:
    first = _details(client, **SAMPLED, best_of=1)
    assert first["seed"] == SAMPLED["seed"]
    stop = first["tokens"][2]["text"]
    stopped = _details(client, **SAMPLED, stop=[stop])
    assert stopped["finish_reason"] == "stop_sequence"


# --------------------------------------------------------------------------------- /info, /ping, /tokenize


def test_info_has_tgi_fields_next_to_the_model_card(client: TestClient, tiny_model_dir) -> None:
    info = client.get("/info").json()
    assert info["model_id"] == tiny_model_dir.name
    assert info["max_input_tokens"] == 200 and info["max_total_tokens"] == 200 + 64
    assert info["max_best_of"] == 4 and info["max_client_batch_size"] == 1
    assert info["max_stop_sequences"] == 8 and info["max_concurrent_requests"] > 0
    assert info["router"] == "novel-lstm" and info["version"] == "0.1.0"
    assert len(info["model_sha"]) == 64
    assert info["model_pipeline_tag"] == "text-generation"
    assert info["limits"]["max_top_n_tokens"] == 5
    assert "vocabulary" in info and "network" in info  # the model card is still there


def test_ping_is_health(client: TestClient) -> None:
    assert client.get("/ping").json() == client.get("/health").json()


def test_tokenize_gives_ids_offsets_and_how_each_piece_is_read(
    client: TestClient, vocabulary: list[str]
) -> None:
    text = "宝玉 看见孙悟空"
    assert "孙悟空" not in vocabulary  # read through its characters (models/vocabulary.py)
    tokens = _post(client, "/tokenize", text)
    assert "".join(t["text"] for t in tokens) == text.replace(" ", "")
    for token in tokens:
        assert text[token["start"] : token["stop"]] == token["text"]
        if token["known"]:
            assert vocabulary[token["id"]] == token["text"]
        else:
            assert vocabulary[token["id"]] == "<unk>" and token["spelled"]
    assert tokens[0] == {"id": vocabulary.index("宝玉"), "text": "宝玉", "start": 0, "stop": 2, "known": True,
                         "spelled": False}  # fmt: skip
    assert [t["text"] for t in tokens if t["spelled"]] == ["孙", "悟", "空"]
    # They are exactly what the model reads: the prefill of a generation and its x-prompt-tokens.
    response = client.post(
        "/generate", json={"inputs": text, "parameters": {"max_new_tokens": 1, "details": True}}
    )
    assert [p["id"] for p in response.json()["details"]["prefill"]] == [t["id"] for t in tokens]
    assert int(response.headers["x-prompt-tokens"]) == len(tokens)
    # The same body a client generates with is accepted (TGI's /tokenize takes a GenerateRequest).
    assert (
        client.post("/tokenize", json={"inputs": "宝玉", "parameters": {"max_new_tokens": 3}}).status_code
        == 200
    )
    assert client.post("/tokenize", json={"inputs": " "}).json()["error_type"] == "validation"


def test_generation_failure_is_424_generation(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing tick (a server-side bug) is TGI's 424 `generation`, never a bare 500. The fault is injected
    into the real scheduler's batch by making the network's step raise once."""
    service = client.app.state.service
    network = service.decoder.network
    original = network.step
    calls = {"n": 0}

    def broken_step(ids, state):
        calls["n"] += 1
        raise FloatingPointError("injected failure")

    monkeypatch.setattr(network, "step", broken_step)
    response = client.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 5}})
    assert response.status_code == 424, response.text
    assert response.json()["error_type"] == "generation"
    events = _stream_events(
        client, "/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}
    )
    assert events[-1]["error_type"] == "generation" and json.dumps(events[-1])
    monkeypatch.setattr(network, "step", original)
    assert calls["n"] >= 2
    assert client.post("/generate", json={"inputs": PROMPT}).status_code == 200
