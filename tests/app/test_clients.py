"""The real, unchanged TGI clients against a real server (uvicorn in a subprocess, tiny real model):
huggingface_hub's InferenceClient, text_generation's Client and AsyncClient, and LangChain's
HuggingFaceEndpoint. Each call is what a user writes from the clients' own documentation."""

from __future__ import annotations

import asyncio
import math
import warnings

import httpx
import pytest
import text_generation
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError as HubValidationError
from langchain_huggingface import HuggingFaceEndpoint
from text_generation.errors import ValidationError as TGIValidationError

# text_generation 0.7 calls pydantic's deprecated .dict(): the client's own warning, not this server's.
pytestmark = pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")

PROMPT = "宝玉笑道"
SEEDED = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.2, "top_k": 40, "seed": 21}


def _reference(url: str, **parameters: object) -> dict:
    """The same request sent by hand to /generate (return_full_text false), for comparison."""
    response = httpx.post(
        f"{url}/generate",
        json={"inputs": PROMPT, "parameters": {**parameters, "details": True, "return_full_text": False}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def hub(server_url: str) -> InferenceClient:
    # model=<URL> is how huggingface_hub addresses a self-hosted endpoint (get_endpoint_info and
    # health_check need it); base_url=<URL> works for text_generation as well (tested below).
    return InferenceClient(model=server_url, timeout=60)


# --------------------------------------------------------------------------- huggingface_hub InferenceClient


def test_hub_text_generation_plain(hub: InferenceClient, server_url: str) -> None:
    generated = _reference(server_url, **SEEDED)["generated_text"]
    # The client posts to / and leaves return_full_text out: TGI's compatibility route then prepends the
    # prompt (its default for text-generation models); false is honoured.
    assert hub.text_generation(PROMPT, **SEEDED) == PROMPT + generated
    assert hub.text_generation(PROMPT, return_full_text=False, **SEEDED) == generated
    with_base_url = InferenceClient(base_url=server_url, timeout=60)
    assert with_base_url.text_generation(PROMPT, return_full_text=False, **SEEDED) == generated


def test_hub_text_generation_stream(hub: InferenceClient, server_url: str) -> None:
    pieces = list(hub.text_generation(PROMPT, stream=True, **SEEDED))
    reference = _reference(server_url, **SEEDED)
    assert pieces == [token["text"] for token in reference["details"]["tokens"]]
    # A client pointed at .../generate gets its stream too (TGI's "stream": true).
    at_generate = InferenceClient(model=f"{server_url}/generate", timeout=60)
    assert "".join(at_generate.text_generation(PROMPT, stream=True, **SEEDED)) == reference["generated_text"]


def test_hub_text_generation_details(hub: InferenceClient, server_url: str) -> None:
    output = hub.text_generation(PROMPT, details=True, **SEEDED)
    reference = _reference(server_url, **SEEDED)
    assert output.generated_text == PROMPT + reference["generated_text"]  # POST /: full text by default
    details = output.details
    assert details.finish_reason == "length" and details.generated_tokens == 12 and details.seed == 21
    assert [t.id for t in details.tokens] == [t["id"] for t in reference["details"]["tokens"]]
    assert all(t.logprob <= 0 and t.special is False for t in details.tokens)
    streamed = list(hub.text_generation(PROMPT, details=True, stream=True, **SEEDED))
    assert streamed[-1].generated_text == PROMPT + reference["generated_text"]
    assert streamed[-1].details.finish_reason == "length" and streamed[-1].details.seed == 21


def test_hub_top_n_tokens_and_decoder_input_details(hub: InferenceClient) -> None:
    output = hub.text_generation(
        PROMPT, max_new_tokens=5, details=True, top_n_tokens=3, decoder_input_details=True
    )
    details = output.details
    assert [t.text for t in details.prefill] == ["宝玉", "笑", "道"]
    assert details.prefill[0].logprob is None
    assert all(t.logprob is not None and t.logprob <= 0 for t in details.prefill[1:])
    assert len(details.top_tokens) == 5
    for chosen, top in zip(details.tokens, details.top_tokens, strict=True):
        # huggingface_hub leaves the lists of lists as plain dicts (its parser converts one level only).
        top = [t if isinstance(t, dict) else vars(t) for t in top]
        assert len(top) == 3 and top[0]["id"] == chosen.id  # greedy picks the best word
        assert sum(math.exp(t["logprob"]) for t in top) <= 1 + 1e-6
    streamed = list(hub.text_generation(PROMPT, max_new_tokens=3, details=True, stream=True, top_n_tokens=2))
    assert all(len(event.top_tokens) == 2 for event in streamed)


def test_hub_refusals_are_validation_errors(hub: InferenceClient) -> None:
    for refused, fragment in (
        ({"best_of": 2}, "which needs sampling"),
        ({"best_of": 5, "do_sample": True}, "the limit is 4"),
        ({"watermark": True}, "watermark is not supported"),
        ({"grammar": {"type": "regex", "value": "[a-z]+"}}, "grammar is not supported"),
        ({"adapter_id": "my-lora"}, "adapter_id is not supported"),
    ):
        with pytest.raises(HubValidationError, match=fragment):
            hub.text_generation(PROMPT, max_new_tokens=3, **refused)


def test_hub_endpoint_info_and_health(server_url: str, tiny_model_dir) -> None:
    # Both are only offered for provider="hf-inference" (the client refuses them on its default provider).
    hub = InferenceClient(model=server_url, provider="hf-inference", timeout=60)
    info = hub.get_endpoint_info()
    assert info["model_id"] == tiny_model_dir.name
    assert info["max_input_tokens"] == 200 and info["max_best_of"] == 4
    assert hub.health_check() is True
    assert hub.text_generation(PROMPT, max_new_tokens=3, return_full_text=False)


# ------------------------------------------------------------------------------ text_generation Client


def test_text_generation_client_generate_and_stream(server_url: str) -> None:
    client = text_generation.Client(server_url, timeout=60)
    reference = _reference(server_url, **SEEDED)
    response = client.generate(PROMPT, **SEEDED)
    assert response.generated_text == reference["generated_text"]
    assert response.details.seed == 21 and response.details.generated_tokens == 12
    assert [t.text for t in response.details.prefill] == ["宝玉", "笑", "道"]
    events = list(client.generate_stream(PROMPT, **SEEDED))
    assert [e.token.id for e in events] == [t["id"] for t in reference["details"]["tokens"]]
    assert events[-1].generated_text == reference["generated_text"]
    assert events[-1].details.finish_reason == "length"
    detailed = client.generate(PROMPT, max_new_tokens=3, top_n_tokens=2, decoder_input_details=True)
    assert len(detailed.details.top_tokens) == 3 and detailed.details.prefill[1].logprob is not None
    with pytest.raises(TGIValidationError, match="watermark is not supported"):
        client.generate(PROMPT, max_new_tokens=3, watermark=True)


def test_text_generation_async_client_generate_and_stream(server_url: str) -> None:
    reference = _reference(server_url, **SEEDED)

    async def run() -> tuple[object, list]:
        client = text_generation.AsyncClient(server_url, timeout=60)
        response = await client.generate(PROMPT, **SEEDED)
        events = [event async for event in client.generate_stream(PROMPT, **SEEDED)]
        return response, events

    response, events = asyncio.run(run())
    assert response.generated_text == reference["generated_text"]
    assert "".join(e.token.text for e in events) == reference["generated_text"]
    assert events[-1].details.seed == 21


# ------------------------------------------------------------------------------ LangChain HuggingFaceEndpoint


def test_langchain_huggingface_endpoint_invoke_and_stream(server_url: str) -> None:
    """HuggingFaceEndpoint sends temperature 0.8, top_p 0.95 and typical_p 0.95 by default (once a 422)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that no API token is set, which a local server needs not
        llm = HuggingFaceEndpoint(endpoint_url=server_url, max_new_tokens=12, seed=5, timeout=60)
        text = llm.invoke(PROMPT)
        streamed = "".join(
            HuggingFaceEndpoint(
                endpoint_url=server_url, max_new_tokens=12, seed=5, timeout=60, streaming=True
            ).stream(PROMPT)
        )
    reference = _reference(server_url, max_new_tokens=12, seed=5, temperature=0.8, top_p=0.95, typical_p=0.95)
    assert text == reference["generated_text"] and len(reference["details"]["tokens"]) == 12
    assert streamed == text
