"""OpenAI-compatible routes under /v1 (the `openai` client with base_url=http://host:port/v1): the model
list and POST /v1/completions (a prompt continued, as OpenAI's legacy completions API).

The shared pieces (usage, model list) live in app/protocols/openai.py, the error shape in
app/http/openai_errors.py, stop cutting in models/stops.py;
chat completions build on them. Generation goes through the same service API as the TGI routes
(app/engine/service.py), so the same seed and parameters give the same text here as on /generate.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from app import __version__
from app.engine.errors import APIError
from app.engine.scheduler import GenerationFailed
from app.engine.service import ClientDisconnected, ModelService, TokenStream
from app.http.errors import error_payload
from app.http.openai_errors import openai_error_responses
from app.protocols.completions import (
    DEFAULT_MAX_TOKENS,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
)
from app.protocols.openai import ModelCard, ModelList, usage_of
from app.routes.dependencies import AppMetrics, Service
from models.decoding import GeneratedToken, Generation, SamplingParams
from models.stops import StopCutter

router = APIRouter(prefix="/v1", tags=["OpenAI compatible"])


def model_card(service: ModelService) -> ModelCard:
    created = service.model.manifest.get("created_at")
    try:
        timestamp = int(datetime.fromisoformat(created).timestamp()) if isinstance(created, str) else 0
    except ValueError:
        timestamp = 0
    return ModelCard(id=service.name, created=timestamp)


@router.get("/models", response_model=ModelList, summary="The served model (OpenAI's model list)")
def list_models(service: Service) -> ModelList:
    return ModelList(data=[model_card(service)])


@router.get(
    "/models/{model}",
    response_model=ModelCard,
    responses=openai_error_responses(404),
    summary="One model by id (OpenAI's models.retrieve)",
)
def retrieve_model(model: str, service: Service) -> ModelCard:
    if model != service.name:
        raise APIError(
            404,
            "model_not_found",
            f"no model {model!r}; this server serves {service.name!r} (GET /v1/models)",
        )
    return model_card(service)


# --------------------------------------------------------------------------------------------- completions

# TGI's names -> this route's, for the limit messages.
_NAMES = {"max_new_tokens": "max_tokens", "top_n_tokens": "logprobs"}
_FINISH = {"stop_sequence": "stop", "length": "length"}


def completion_params(service: ModelService, body: CompletionRequest) -> SamplingParams:
    """OpenAI's parameters -> SamplingParams, as TGI maps them: temperature 0 is greedy, anything else
    samples (default temperature 1)."""
    max_tokens = body.max_tokens if body.max_tokens is not None else DEFAULT_MAX_TOKENS
    service.check_generation_limits(max_tokens, body.stops, body.logprobs or 0, prefix="", names=_NAMES)
    if any(stop == "" for stop in body.stops):
        raise APIError(422, "validation", "stop sequences must be non-empty strings", param="stop")
    greedy = body.temperature == 0
    return SamplingParams(
        max_new_tokens=max_tokens,
        do_sample=not greedy,
        temperature=None if greedy or body.temperature is None else body.temperature,
        top_p=body.top_p,
        repetition_penalty=body.repetition_penalty,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        seed=body.seed,
        stop=tuple(body.stops),
        top_n_tokens=body.logprobs or 0,
    )


def _system_fingerprint() -> str:
    return f"novel-lstm-{__version__}"


class _Pieces:
    """Turns generated tokens into the text (and logprobs) a completion returns: stop sequences cut off,
    the prompt prepended with echo, each token's offset in the returned text."""

    def __init__(self, body: CompletionRequest, words: list[str]) -> None:
        self.words = words
        self.logprobs = body.logprobs
        self.cutter = StopCutter(body.stops)
        self.prefix = body.text if body.echo else ""
        self.offset = 0

    def take(
        self, generation: Generation, released: list[tuple[int, str]]
    ) -> tuple[str, CompletionLogprobs | None]:
        text = ""
        if self.prefix:
            text, self.prefix = self.prefix, ""
            self.offset += len(text)
        tokens, token_logprobs, tops, offsets = [], [], [], []
        for index, piece in released:
            token: GeneratedToken = generation.tokens[index]
            tokens.append(piece)
            token_logprobs.append(token.logprob if math.isfinite(token.logprob) else -1e30)
            tops.append({self.words[i]: logprob for i, logprob in token.top})
            offsets.append(self.offset)
            self.offset += len(piece)
            text += piece
        if self.logprobs is None:
            return text, None
        return text, CompletionLogprobs(
            tokens=tokens,
            token_logprobs=token_logprobs,
            top_logprobs=tops if self.logprobs > 0 else None,
            text_offset=offsets,
        )


def _failed(error: GenerationFailed) -> APIError:
    return APIError(424, "generation", f"the generation failed on the server ({error}); see the server log")


@router.post(
    "/completions",
    response_model=Completion,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "the completion; with stream, Server-Sent Events of Completion chunks and then "
            "`data: [DONE]`",
        },
        **openai_error_responses(422, 424, 429),
    },
    summary="OpenAI completions: continue a prompt",
)
async def completions(
    body: CompletionRequest, request: Request, service: Service, metrics: AppMetrics
) -> Completion | Response:
    service.check_prompt(body.text, field="prompt")
    params = completion_params(service, body)
    generation = await service.prepare(body.text, params, field="prompt")
    identifier = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    counter = metrics.tokens.labels("/v1/completions")
    if body.stream:
        tokens = service.stream(generation)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _chunks(body, tokens, identifier, created, service, counter, include_usage)
        return EventSourceResponse(events, ping=15, headers={"X-Accel-Buffering": "no"})
    try:
        generation = await service.complete(generation, request)
    except ClientDisconnected:
        return Response(status_code=499)
    counter.inc(len(generation.tokens))
    pieces = _Pieces(body, service.model.vectors.words)
    released = [piece for token in generation.tokens for piece in pieces.cutter.push(token.text)]
    released += pieces.cutter.finish()
    text, logprobs = pieces.take(generation, released)
    choice = CompletionChoice(
        text=text, logprobs=logprobs, finish_reason=_FINISH[generation.finish_reason or "length"]
    )
    return Completion(
        id=identifier,
        created=created,
        model=service.name,
        system_fingerprint=_system_fingerprint(),
        choices=[choice],
        usage=usage_of(generation),
    )


async def _chunks(
    body: CompletionRequest,
    tokens: TokenStream,
    identifier: str,
    created: int,
    service: ModelService,
    counter: Any,
    include_usage: bool,
) -> AsyncIterator[dict]:
    """One chunk per released piece of text (a token, once no stop sequence can begin in it), the last
    with finish_reason; then the usage chunk (stream_options.include_usage) and `data: [DONE]`."""
    generation = tokens.generation
    pieces = _Pieces(body, service.model.vectors.words)

    def chunk(text: str, logprobs: CompletionLogprobs | None, finish_reason: str | None) -> dict:
        choice = CompletionChoice(text=text, logprobs=logprobs, finish_reason=finish_reason)
        completion = Completion(
            id=identifier,
            created=created,
            model=service.name,
            system_fingerprint=_system_fingerprint(),
            choices=[choice],
        )
        return {"data": completion.model_dump_json(exclude={"usage"} if not include_usage else set())}

    try:
        async for token in tokens:
            counter.inc()
            finish_reason = tokens.finish_reason
            released = pieces.cutter.push(token.text)
            if finish_reason is not None:
                released += pieces.cutter.finish()
            if released or pieces.prefix or finish_reason is not None:
                text, logprobs = pieces.take(generation, released)
                yield chunk(text, logprobs, _FINISH[finish_reason] if finish_reason else None)
    except GenerationFailed as error:
        failure = error_payload("/v1", 424, "generation", str(_failed(error).message))
        yield {"data": json.dumps(failure, ensure_ascii=False)}
        return
    if include_usage:
        final = Completion(
            id=identifier,
            created=created,
            model=service.name,
            system_fingerprint=_system_fingerprint(),
            choices=[],
            usage=usage_of(generation),
        )
        yield {"data": final.model_dump_json()}
    yield {"data": "[DONE]"}
