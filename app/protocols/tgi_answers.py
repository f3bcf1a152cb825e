"""TGI's answers: the bodies of /generate, POST / and the events of /generate_stream, built from the
engine's finished generations and token events (shapes as in text-generation-inference, so its clients
parse them), and TGI's timing and token-count response headers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from app.engine.scheduler import TokenEvent
from app.protocols.tgi import GenerateRequest
from models.decoding import GeneratedToken, Generation


class Token(BaseModel):
    id: int
    text: str
    logprob: float = Field(description="log-probability under the distribution the token was drawn from")
    special: bool = False
    similarity: float | None = Field(
        None,
        description="cosine between the predicted vector and the word's output vector (null: one-hot head, "
        "and in top_tokens)",
    )


class PrefillToken(BaseModel):
    id: int
    text: str
    logprob: float | None = Field(
        None,
        description="with decoder_input_details: log P(token | the prompt tokens before it), as /predict "
        "gives it; null for the first token, a character read as <unk>, and without decoder_input_details",
    )


class BestOfSequence(BaseModel):
    """One candidate that best_of decoded and did not return (TGI's BestOfSequence)."""

    generated_text: str
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None = Field(description="the candidate's own seed (derived from the request's)")
    prefill: list[PrefillToken]
    tokens: list[Token]
    top_tokens: list[list[Token]] | None = None


class Details(BaseModel):
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None = Field(description="the seed used when sampling (echo it back to reproduce the text)")
    prefill: list[PrefillToken] = Field(
        description="the prompt as the model read it: its tokens, rare words as their characters"
    )
    tokens: list[Token]
    top_tokens: list[list[Token]] | None = Field(
        None, description="with top_n_tokens: the most probable words at each step, best first"
    )
    unknown_words: list[str] = Field(
        description="prompt words not in the vocabulary as whole words: read through their characters "
        "(a character too rare to learn as <unk>), never skipped"
    )
    best_of_sequences: list[BestOfSequence] | None = Field(
        None,
        description="with best_of > 1: the other candidates, by cumulative log-probability, best first",
    )


class GenerateResponse(BaseModel):
    generated_text: str
    details: Details | None = None


class StreamDetails(BaseModel):
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None
    input_length: int
    unknown_words: list[str]


class StreamResponse(BaseModel):
    """One Server-Sent Event of /generate_stream; the last one also carries generated_text and details."""

    index: int
    token: Token
    top_tokens: list[Token] | None = Field(None, description="with top_n_tokens: the most probable words")
    generated_text: str | None = None
    details: StreamDetails | None = None


def _token(token: GeneratedToken) -> Token:
    # A drawn token always has probability > 0; the clamp only guards JSON against -inf from float underflow.
    logprob = token.logprob if math.isfinite(token.logprob) else -1e30
    return Token(id=token.id, text=token.text, logprob=logprob, similarity=token.similarity)


def _top_tokens(token: GeneratedToken, words: list[str]) -> list[Token]:
    return [Token(id=i, text=words[i], logprob=logprob) for i, logprob in token.top]


def _full_text(body: GenerateRequest, generation: Generation, default: bool) -> str:
    full = body.params.return_full_text
    return body.inputs + generation.text if (default if full is None else full) else generation.text


def _seed(generation: Generation) -> int | None:
    return generation.seed if generation.params.sampling else None


def _prefill(generation: Generation, words: list[str]) -> list[PrefillToken]:
    logprobs = generation.prefill_logprobs or [None] * len(generation.prompt.ids)
    return [
        PrefillToken(id=i, text=words[i], logprob=logprob)
        for i, logprob in zip(generation.prompt.ids, logprobs, strict=True)
    ]


def _top_tokens_of(generation: Generation, words: list[str]) -> list[list[Token]] | None:
    if not generation.params.top_n_tokens:
        return None
    return [_top_tokens(token, words) for token in generation.tokens]


def _best_of_sequence(
    body: GenerateRequest, generation: Generation, words: list[str], default: bool
) -> BestOfSequence:
    return BestOfSequence(
        generated_text=_full_text(body, generation, default),
        finish_reason=generation.finish_reason or "length",
        generated_tokens=len(generation.tokens),
        seed=_seed(generation),
        prefill=_prefill(generation, words),
        tokens=[_token(token) for token in generation.tokens],
        top_tokens=_top_tokens_of(generation, words),
    )


def generate_response(
    body: GenerateRequest, ranked: list[Generation], words: list[str], full_text_default: bool
) -> GenerateResponse:
    """The answer of a plain request: the best candidate's text (the only one without best_of), with
    details when asked for, the other candidates in details.best_of_sequences."""
    best, others = ranked[0], ranked[1:]
    params = body.params
    details = None
    if params.details or params.decoder_input_details:
        details = Details(
            finish_reason=best.finish_reason or "length",
            generated_tokens=len(best.tokens),
            seed=_seed(best),
            prefill=_prefill(best, words),
            tokens=[_token(token) for token in best.tokens],
            top_tokens=_top_tokens_of(best, words),
            unknown_words=best.prompt.unknown,
            best_of_sequences=[_best_of_sequence(body, g, words, full_text_default) for g in others] or None,
        )
    return GenerateResponse(generated_text=_full_text(body, best, full_text_default), details=details)


def stream_renderer(
    body: GenerateRequest, words: list[str], full_text_default: bool
) -> Callable[[TokenEvent], list[str]]:
    """The render callback of app/http/streaming.py for TGI: one StreamResponse per token, the last one
    with generated_text and details (a TGI stream has one candidate)."""

    sent = 0  # counted here: the scheduler thread may already have appended the next tokens

    def render(event: TokenEvent) -> list[str]:
        nonlocal sent
        sent += 1
        generation = event.generation
        message = StreamResponse(index=sent, token=_token(event.token))
        if generation.params.top_n_tokens:
            message.top_tokens = _top_tokens(event.token, words)
        if event.finish_reason is not None:
            message.generated_text = _full_text(body, generation, full_text_default)
            message.details = StreamDetails(
                finish_reason=event.finish_reason,
                generated_tokens=len(generation.tokens),
                seed=_seed(generation),
                input_length=len(generation.prompt.ids),
                unknown_words=generation.prompt.unknown,
            )
        return [message.model_dump_json()]

    return render


def timing_headers(inputs: str, generation: Generation, started: float, validated: float) -> dict[str, str]:
    """TGI's response headers for a finished generation; `started` and `validated` are perf_counter() times
    of the request's arrival and of the end of its validation (the prompt cut, nothing queued yet). As in
    TGI, total = validation + queue + inference."""
    finished = time.perf_counter()
    seconds = finished - started
    validation = validated - started
    queue = min(generation.queue_seconds or 0.0, finished - validated)
    inference = max(finished - validated - queue, 0.0)
    generated = len(generation.tokens)
    return {
        "x-compute-type": "cpu",
        "x-compute-time": f"{seconds:.6f}",
        "x-compute-characters": str(len(inputs)),
        "x-total-time": str(round(seconds * 1000)),
        "x-validation-time": str(round(validation * 1000)),
        "x-queue-time": str(round(queue * 1000)),
        "x-inference-time": str(round(inference * 1000)),
        "x-time-per-token": str(round(inference * 1000 / generated)) if generated else "0",
        "x-prompt-tokens": str(len(generation.prompt.ids)),
        "x-generated-tokens": str(generated),
    }
