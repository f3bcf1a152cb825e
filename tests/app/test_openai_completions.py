"""POST /v1/completions with the real `openai` client against a real server; the stop cutting on its own."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

PROMPT = "宝玉笑道"


@pytest.fixture(scope="module")
def client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _generate(url: str, **parameters: object) -> dict:
    body = {"inputs": PROMPT, "parameters": {**parameters, "details": True}}
    response = httpx.post(f"{url}/generate", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_completion_plain_equals_generate_with_the_same_seed(client: openai.OpenAI, server_url: str) -> None:
    completion = client.completions.create(
        model="anything", prompt=PROMPT, max_tokens=12, temperature=1.1, top_p=0.9, seed=8
    )
    reference = _generate(server_url, max_new_tokens=12, do_sample=True, temperature=1.1, top_p=0.9, seed=8)
    choice = completion.choices[0]
    assert choice.text == reference["generated_text"]
    assert choice.finish_reason == "length" and choice.index == 0
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == 15
    models = client.models.list()
    assert completion.model == models.data[0].id


def test_temperature_zero_is_greedy(client: openai.OpenAI, server_url: str) -> None:
    completion = client.completions.create(model="m", prompt=PROMPT, max_tokens=10, temperature=0)
    assert completion.choices[0].text == _generate(server_url, max_new_tokens=10)["generated_text"]


def test_default_max_tokens_is_16_like_openai(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="m", prompt=PROMPT, seed=1)
    assert completion.usage.completion_tokens == 16


def test_stream_gives_the_same_text_and_ends_with_done(client: openai.OpenAI, server_url: str) -> None:
    arguments = {"model": "m", "prompt": PROMPT, "max_tokens": 12, "temperature": 0.9, "seed": 3}
    plain = client.completions.create(**arguments).choices[0].text
    chunks = list(client.completions.create(**arguments, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    # The raw stream ends with OpenAI's terminator.
    with httpx.stream("POST", f"{server_url}/v1/completions", json={**arguments, "stream": True}) as raw:
        lines = [line for line in raw.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"


def test_stop_is_cut_from_the_text_plain_and_streamed(client: openai.OpenAI, server_url: str) -> None:
    arguments = {"model": "m", "prompt": PROMPT, "max_tokens": 40, "temperature": 1.0, "seed": 12}
    free = client.completions.create(**arguments).choices[0].text
    stop = free[5:7]  # two characters that occur in the free text (perhaps across two tokens)
    expected = free[: free.index(stop)]
    stopped = client.completions.create(**arguments, stop=[stop, "不会出现的停止词"])
    assert stopped.choices[0].text == expected and stopped.choices[0].finish_reason == "stop"
    streamed = client.completions.create(**arguments, stop=stop, stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The TGI route keeps the stop sequence in the text, as TGI does.
    assert _generate(server_url, max_new_tokens=40, do_sample=True, temperature=1.0, seed=12, stop=[stop])[
        "generated_text"
    ].startswith(expected + stop)


def test_logprobs_and_echo(client: openai.OpenAI, server_url: str) -> None:
    completion = client.completions.create(
        model="m", prompt=PROMPT, max_tokens=5, temperature=0, logprobs=3, echo=True
    )
    choice = completion.choices[0]
    reference = _generate(server_url, max_new_tokens=5, top_n_tokens=3)["details"]["tokens"]
    assert choice.text == PROMPT + "".join(t["text"] for t in reference)
    logprobs = choice.logprobs
    assert logprobs.tokens == [t["text"] for t in reference]
    assert logprobs.token_logprobs == pytest.approx([t["logprob"] for t in reference], abs=1e-6)
    assert len(logprobs.top_logprobs) == 5 and all(len(top) == 3 for top in logprobs.top_logprobs)
    for token, top, offset in zip(logprobs.tokens, logprobs.top_logprobs, logprobs.text_offset, strict=True):
        assert top[token] == pytest.approx(max(top.values()))  # greedy picks the best word
        assert choice.text[offset : offset + len(token)] == token
        assert all(math.isfinite(value) and value <= 0 for value in top.values())


def test_refusals_and_limits_are_openai_errors(client: openai.OpenAI, server_url: str) -> None:
    for arguments, param, fragment in (
        ({"n": 5}, "n", "the limit is 4"),
        ({"best_of": 3}, "best_of", "best_of > 1 is not supported"),
        ({"suffix": "。"}, "suffix", "suffix is not supported"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "logit_bias is not supported"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens"),
        ({"max_tokens": 2_000_000}, "max_tokens", "the limit is"),
        ({"logprobs": 6}, "logprobs", "the limit is 5"),
        ({"temperature": 2.5}, "temperature", "temperature"),
    ):
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            client.completions.create(**{"model": "m", "prompt": PROMPT, "max_tokens": 3, **arguments})
        error = caught.value.body
        assert error["type"] == "invalid_request_error" and error["code"] == "validation"
        assert error["param"] == param and fragment in error["message"], error
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model="m", prompt=["宝玉", "黛玉"], max_tokens=3)
    assert "exactly one prompt" in caught.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model="m", prompt="  ", max_tokens=3)
    assert caught.value.body["param"] == "prompt" and "prompt is empty" in caught.value.body["message"]
    # Malformed JSON under /v1 is OpenAI-shaped too.
    response = httpx.post(
        f"{server_url}/v1/completions", content=b'{"prompt": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation"


def test_a_list_of_one_prompt_and_unknown_fields_are_accepted(client: openai.OpenAI) -> None:
    one = client.completions.create(model="m", prompt=[PROMPT], max_tokens=4, seed=2)
    plain = client.completions.create(model="m", prompt=PROMPT, max_tokens=4, seed=2, extra_body={"top_k": 3})
    assert one.choices[0].text == plain.choices[0].text  # top_k is not OpenAI's: ignored (and logged)
