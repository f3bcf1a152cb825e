"""Several candidates for one request, through the engine: OpenAI's `n` (completions and chat, plain and
streamed) and TGI's `best_of`, with the real `openai` and `huggingface_hub` clients against a live server,
and the engine's ranking by a caller's score on the real app."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from huggingface_hub import InferenceClient

from app.engine.run import GenerationRequest, candidate_seed, cumulative_logprob
from models.decoding import SamplingParams

PROMPT = "宝玉笑道"
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def oai(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _sse(response: httpx.Response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            events.append(json.loads(line[5:]))
    return events


# ----------------------------------------------------------------------------------------------- OpenAI's n


def test_completions_n_returns_n_different_seeded_choices(oai: openai.OpenAI) -> None:
    three = oai.completions.create(model="m", prompt=PROMPT, max_tokens=12, n=3, seed=11, temperature=1.0)
    assert [choice.index for choice in three.choices] == [0, 1, 2]
    texts = [choice.text for choice in three.choices]
    assert len(set(texts)) == 3, texts
    # Choice 0 is the request's own seed: the text n=1 gives; the others are seeded too (same again).
    one = oai.completions.create(model="m", prompt=PROMPT, max_tokens=12, seed=11, temperature=1.0)
    assert one.choices[0].text == texts[0]
    again = oai.completions.create(model="m", prompt=PROMPT, max_tokens=12, n=3, seed=11, temperature=1.0)
    assert [choice.text for choice in again.choices] == texts
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 36  # 12 tokens for each choice (no stop sequence)


def test_streamed_completions_tag_every_chunk_with_its_choice(oai: openai.OpenAI) -> None:
    arguments = {"model": "m", "prompt": PROMPT, "max_tokens": 10, "n": 3, "seed": 5, "temperature": 0.9}
    plain = oai.completions.create(**arguments)
    texts, finished = {}, {}
    for chunk in oai.completions.create(**arguments, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason is not None:
                finished[choice.index] = choice.finish_reason
    assert texts == {choice.index: choice.text for choice in plain.choices}
    assert finished == {0: "length", 1: "length", 2: "length"}


def test_chat_n_plain_and_streamed(oai: openai.OpenAI) -> None:
    arguments = {"model": "m", "messages": HELLO, "max_tokens": 15, "n": 3, "seed": 8, "temperature": 1.0}
    plain = oai.chat.completions.create(**arguments)
    replies = [choice.message.content for choice in plain.choices]
    assert [choice.index for choice in plain.choices] == [0, 1, 2]
    assert len(set(replies)) == 3, replies
    streamed: dict[int, str] = {}
    roles, finishes = set(), {}
    for chunk in oai.chat.completions.create(**arguments, stream=True):
        for choice in chunk.choices:
            if choice.delta.role:
                roles.add(choice.index)
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
    assert roles == {0, 1, 2}  # a role chunk opens every choice, as OpenAI sends them
    assert {i: text.strip() for i, text in streamed.items()} == dict(enumerate(replies))
    assert finishes == {choice.index: choice.finish_reason for choice in plain.choices}


def test_n_over_the_limit_is_a_422(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="the limit is 4"):
        oai.completions.create(model="m", prompt=PROMPT, max_tokens=3, n=5)
    with pytest.raises(openai.UnprocessableEntityError, match="the limit is 4"):
        oai.chat.completions.create(model="m", messages=HELLO, max_tokens=3, n=5)


# ------------------------------------------------------------------------------------------- TGI's best_of


def test_hub_best_of_returns_the_most_probable_candidate(server_url: str) -> None:
    hub = InferenceClient(model=server_url, timeout=60)
    arguments = {"max_new_tokens": 10, "best_of": 2, "details": True, "do_sample": True, "seed": 4}
    output = hub.text_generation(PROMPT, return_full_text=False, **arguments)
    others = output.details.best_of_sequences
    assert len(others) == 1
    other = others[0]
    assert other.generated_text != output.generated_text
    best_score = sum(token.logprob for token in output.details.tokens)
    assert best_score >= sum(token.logprob for token in other.tokens)
    # Both candidates are seeded: the request's seed and the one derived from it, whichever won.
    assert {output.details.seed, other.seed} == {4, candidate_seed(4, 1)}
    again = hub.text_generation(PROMPT, return_full_text=False, **arguments)
    assert again.generated_text == output.generated_text
    assert again.details.best_of_sequences[0].generated_text == other.generated_text


def test_best_of_candidates_are_the_seeded_single_requests(client: TestClient) -> None:
    """Each candidate is exactly the generation its seed gives alone, so the batch changed nothing."""
    parameters = {"max_new_tokens": 8, "do_sample": True, "details": True, "seed": 9}
    body = client.post(
        "/generate", json={"inputs": PROMPT, "parameters": {**parameters, "best_of": 3}}
    ).json()
    candidates = [body["details"], *body["details"]["best_of_sequences"]]
    texts = [body["generated_text"], *(c["generated_text"] for c in body["details"]["best_of_sequences"])]
    scores = [sum(token["logprob"] for token in c["tokens"]) for c in candidates]
    assert scores == sorted(scores, reverse=True)
    for candidate, text in zip(candidates, texts, strict=True):
        alone = client.post(
            "/generate", json={"inputs": PROMPT, "parameters": {**parameters, "seed": candidate["seed"]}}
        ).json()
        assert alone["generated_text"] == text
    assert sorted(c["seed"] for c in candidates) == sorted(candidate_seed(9, i) for i in range(3))


def test_best_of_is_refused_when_streamed_or_greedy(client: TestClient) -> None:
    streamed = client.post(
        "/generate_stream", json={"inputs": PROMPT, "parameters": {"best_of": 2, "top_k": 5}}
    )
    assert streamed.status_code == 422 and "not supported when streaming" in streamed.json()["error"]
    plain = client.post(
        "/",
        json={"inputs": PROMPT, "stream": True, "parameters": {"best_of": 2, "seed": 1, "do_sample": True}},
    )
    assert plain.status_code == 422 and plain.json()["error_type"] == "validation"
    greedy = client.post("/generate", json={"inputs": PROMPT, "parameters": {"best_of": 2}})
    assert greedy.status_code == 422 and "needs sampling" in greedy.json()["error"]


# ---------------------------------------------------------------------------------- the engine's ranking


def test_the_engine_ranks_candidates_by_the_callers_score(client: TestClient) -> None:
    """What a reranker plugs into: n candidates of one request, back best first by any function of them."""
    service = client.app.state.service
    request = GenerationRequest(
        text=PROMPT,
        params=SamplingParams(max_new_tokens=6, do_sample=True, seed=2),
        route="/generate",
        candidates=4,
    )

    async def run(score):
        return await service.complete(await service.prepare(request), request.route, score=score)

    by_length = asyncio.run(run(lambda g: len(g.text)))
    assert len(by_length) == 4
    assert [len(g.text) for g in by_length] == sorted((len(g.text) for g in by_length), reverse=True)
    by_logprob = asyncio.run(run(cumulative_logprob))
    assert [cumulative_logprob(g) for g in by_logprob] == sorted(
        map(cumulative_logprob, by_logprob), reverse=True
    )
    unranked = asyncio.run(run(None))
    assert [g.seed for g in unranked] == [candidate_seed(2, i) for i in range(4)]


def test_the_engine_stops_the_candidates_a_request_prunes_and_frees_their_rows(client: TestClient) -> None:
    """What chat's pool pruning plugs into: after the tick where every candidate has 3 tokens, the request
    stops two of them; they end there ("pruned": had their rows stayed in the batch, they would have grown),
    the others run to their end as they would have unpruned."""
    service = client.app.state.service
    request = GenerationRequest(
        text=PROMPT,
        params=SamplingParams(max_new_tokens=12, do_sample=True, seed=5),
        route="/generate",
        candidates=4,
    )
    asked = []

    class StopTwo:
        def ready(self, pool):
            asked.append([len(g.tokens) for g in pool])
            return all(g.finish_reason is not None or len(g.tokens) >= 3 for g in pool)

        def stop(self, requests):
            assert [pruning for pruning, _ in requests] == [self]  # the only pruning request of its tick
            ((_, pool),) = requests
            for generation in pool[1:3]:
                generation.finish_reason = "pruned"
            return [pool[1:3]]

    prune = StopTwo()

    async def run(prune=None):
        return await service.complete(await service.prepare(request), request.route, prune=prune)

    finished = asyncio.run(run(prune))
    assert [g.finish_reason for g in finished] == ["length", "pruned", "pruned", "length"]
    assert [len(g.tokens) for g in finished] == [12, 3, 3, 12]
    assert asked[-1] == [3, 3, 3, 3]  # asked after every tick until it answered, never again
    unpruned = asyncio.run(run())
    assert [t.id for t in finished[0].tokens] == [t.id for t in unpruned[0].tokens]
    assert [t.id for t in finished[1].tokens] == [t.id for t in unpruned[1].tokens][:3]


# ------------------------------------------------------------------------------------- one failure policy


def test_a_failure_inside_a_chat_stream_is_the_same_424_generation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chat used to answer a failing stream with 500 `internal`; every protocol now sends TGI's 424
    `generation`, in its own error shape."""
    network = client.app.state.service.decoder.network

    def broken_step(ids, state):
        raise FloatingPointError("injected failure")

    monkeypatch.setattr(network, "step", broken_step)
    # Greedy: one candidate, streamed token by token, so the failure comes after the 200 as a last event.
    body = {"messages": HELLO, "max_tokens": 5, "stream": True, "temperature": 0}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = _sse(response)
    assert events[-1]["error"]["code"] == "generation" and events[-1]["error"]["type"] == "server_error"
    plain = client.post("/v1/chat/completions", json={**body, "stream": False})
    assert plain.status_code == 424 and plain.json()["error"]["code"] == "generation"
    # Sampled with a pool: the candidates are ranked before the first byte, so even a stream answers the
    # status. n=2 makes it a pool whatever pool size training chose for this model (it may choose 1).
    ranked = client.post("/v1/chat/completions", json={**body, "temperature": 1.0, "n": 2})
    assert ranked.status_code == 424 and ranked.json()["error"]["code"] == "generation"
    completion = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 5, "stream": True})
    assert _sse_text(completion)[-1]["error"]["code"] == "generation"


def _sse_text(response: httpx.Response) -> list[dict]:
    return [
        json.loads(line[5:])
        for line in response.text.splitlines()
        if line.startswith("data:") and line[5:].strip() != "[DONE]"
    ]
