"""TGI's generation routes: POST / (the compatibility route), POST /generate, POST /generate_stream.

As in text-generation-inference: `POST /` with `"stream": false` answers a one-item JSON list (what
`text_generation.Client` and `huggingface_hub.InferenceClient` read), with `"stream": true` the Server-Sent
Events of /generate_stream, and `return_full_text` defaults to true there; `POST /generate` honours
`"stream": true` the same way (a client pointed at .../generate still gets its stream). Plain answers carry
TGI's timing and token-count headers (x-compute-time, x-prompt-tokens, x-generated-tokens, ...).

Model work never runs on the event loop: a validated request is handed to the worker's scheduler
(app/engine/scheduler.py), which decodes it in its batch with every other running generation. A plain request
waits for the end (and cancels the generation if its client disconnects first); a stream receives tokens as
the scheduler decodes them, so a slow SSE reader only ever waits on its own socket while the loop serves
everyone else. Errors in the request (422) and "overloaded" (429 with Retry-After) come before any response
starts; a failure while decoding is TGI's 424 `generation` (an error event inside a stream that already
started).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from app.engine.scheduler import GenerationFailed
from app.engine.service import ClientDisconnected, ModelService, TokenStream
from app.http.errors import ErrorResponse, error_body
from app.metrics import Metrics
from app.protocols.tgi import (
    Details,
    GenerateRequest,
    GenerateResponse,
    PrefillToken,
    StreamDetails,
    StreamResponse,
    Token,
    sampling_params,
)
from app.routes.dependencies import AppMetrics, Service
from models.decoding import GeneratedToken, Generation

logger = logging.getLogger("app")
router = APIRouter(tags=["generation (TGI compatible)"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "validation: invalid parameters, an empty prompt, only unknown words, or a TGI "
        "feature this model cannot honour (best_of > 1, watermark, grammar, adapter_id)",
    },
    424: {"model": ErrorResponse, "description": "generation: decoding failed on the server's side"},
    429: {
        "model": ErrorResponse,
        "description": "overloaded: every batch slot and the waiting queue are taken (MAX_BATCH_SIZE, "
        "MAX_WAITING); retry after the number of seconds in the Retry-After header",
    },
}
_STREAM_DESCRIPTION = (
    "Server-Sent Events: one `data:` JSON (StreamResponse) per token; the last one also carries "
    "generated_text and details"
)


def _header(description: str, kind: str = "integer") -> dict:
    return {"description": description, "schema": {"type": kind}}


_HEADERS = {
    "x-compute-type": _header("cpu", "string"),
    "x-compute-time": _header("seconds from request to answer", "string"),
    "x-compute-characters": _header("characters in inputs"),
    "x-total-time": _header("milliseconds from request to answer"),
    "x-validation-time": _header("milliseconds spent checking the request and cutting the prompt"),
    "x-queue-time": _header("milliseconds waiting for a batch slot (MAX_BATCH_SIZE)"),
    "x-inference-time": _header("milliseconds from joining the batch to the last token"),
    "x-time-per-token": _header("inference milliseconds per generated token"),
    "x-prompt-tokens": _header("prompt tokens the model read"),
    "x-generated-tokens": _header("tokens generated"),
}

# nginx's "client closed request": only ever seen in logs and metrics, since the client is gone.
CLIENT_CLOSED_REQUEST = 499


async def start_generation(service: ModelService, body: GenerateRequest, stream: bool = False) -> Generation:
    """Validate against the server limits and cut the prompt (no tokens yet, nothing queued)."""
    service.check_prompt(body.inputs)
    params = sampling_params(service, body.params, stream=stream)
    return await service.prepare(body.inputs, params)


def _token(token: GeneratedToken) -> Token:
    # A drawn token always has probability > 0; the clamp only guards JSON against -inf from float underflow.
    logprob = token.logprob if math.isfinite(token.logprob) else -1e30
    return Token(id=token.id, text=token.text, logprob=logprob, similarity=token.similarity)


def _top_tokens(token: GeneratedToken, words: list[str]) -> list[Token]:
    return [Token(id=i, text=words[i], logprob=logprob) for i, logprob in token.top]


def _full_text(body: GenerateRequest, generation: Generation, default: bool) -> str:
    full = body.params.return_full_text
    return body.inputs + generation.text if (default if full is None else full) else generation.text


def _details(generation: Generation, words: list[str]) -> Details:
    logprobs = generation.prefill_logprobs or [None] * len(generation.prompt.ids)
    return Details(
        finish_reason=generation.finish_reason or "length",
        generated_tokens=len(generation.tokens),
        seed=generation.seed if generation.params.sampling else None,
        prefill=[
            PrefillToken(id=i, text=words[i], logprob=logprob)
            for i, logprob in zip(generation.prompt.ids, logprobs, strict=True)
        ],
        tokens=[_token(token) for token in generation.tokens],
        top_tokens=[_top_tokens(token, words) for token in generation.tokens]
        if generation.params.top_n_tokens
        else None,
        unknown_words=generation.prompt.unknown,
    )


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


async def _finish(
    body: GenerateRequest,
    request: Request,
    service: ModelService,
    metrics: Metrics,
    route: str,
    full_text_default: bool,
) -> tuple[GenerateResponse | None, dict[str, str]]:
    """Run a plain (non-streamed) generation to its end; (None, {}) when the client disconnected."""
    started = time.perf_counter()
    generation = await start_generation(service, body)
    validated = time.perf_counter()
    try:
        generation = await service.complete(generation, request)
    except ClientDisconnected:
        return None, {}
    metrics.tokens.labels(route).inc(len(generation.tokens))
    params = body.params
    details = (
        _details(generation, service.model.vectors.words)
        if params.details or params.decoder_input_details
        else None
    )
    response = GenerateResponse(
        generated_text=_full_text(body, generation, full_text_default), details=details
    )
    return response, timing_headers(body.inputs, generation, started, validated)


async def _stream(
    body: GenerateRequest, service: ModelService, metrics: Metrics, route: str, full_text_default: bool
) -> EventSourceResponse:
    # Errors in the request (422) and overload (429) are plain JSON, raised before the stream starts.
    generation = await start_generation(service, body, stream=True)
    tokens = service.stream(generation)
    headers = {
        "x-compute-type": "cpu",
        "x-compute-characters": str(len(body.inputs)),
        "x-prompt-tokens": str(len(generation.prompt.ids)),
        "X-Accel-Buffering": "no",
    }
    events = _events(body, tokens, metrics.tokens.labels(route), service, full_text_default)
    return EventSourceResponse(events, ping=15, headers=headers)


async def _events(
    body: GenerateRequest, tokens: TokenStream, counter: Any, service: ModelService, full_text_default: bool
) -> AsyncIterator[dict]:
    """One event per token. A disconnect cancels the task iterating this, which cancels the generation."""
    generation = tokens.generation
    words = service.model.vectors.words
    index = 0
    try:
        async for token in tokens:
            index += 1
            counter.inc()
            event = StreamResponse(index=index, token=_token(token))
            if generation.params.top_n_tokens:
                event.top_tokens = _top_tokens(token, words)
            if tokens.finish_reason is not None:  # set before the last token is handed out
                event.generated_text = _full_text(body, generation, full_text_default)
                event.details = _stream_details(tokens.finish_reason, generation)
            yield {"data": event.model_dump_json()}
    except GenerationFailed as error:
        logger.error("generation failed in the middle of a stream: %s", error)
        failure = error_body(
            "the generation failed on the server; the server log has the details", "generation"
        )
        yield {"data": json.dumps(failure, ensure_ascii=False)}


def _stream_details(finish_reason: str, generation: Generation) -> StreamDetails:
    return StreamDetails(
        finish_reason=finish_reason,
        generated_tokens=len(generation.tokens),
        seed=generation.seed if generation.params.sampling else None,
        input_length=len(generation.prompt.ids),
        unknown_words=generation.prompt.unknown,
    )


@router.post(
    "/",
    response_model=list[GenerateResponse],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": 'a one-item JSON list; with "stream": true, ' + _STREAM_DESCRIPTION,
            "headers": _HEADERS,
        },
        **_ERRORS,
    },
    summary="TGI's compatibility route: generate (a one-item list) or stream, by `stream`",
)
async def compat_generate(
    body: GenerateRequest, request: Request, service: Service, metrics: AppMetrics
) -> list[GenerateResponse] | Response:
    # return_full_text defaults to true here, as TGI does for text-generation models.
    if body.stream:
        return await _stream(body, service, metrics, "/", full_text_default=True)
    response, headers = await _finish(body, request, service, metrics, "/", full_text_default=True)
    if response is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return JSONResponse([response.model_dump(mode="json")], headers=headers)


@router.post(
    "/generate",
    response_model=GenerateResponse,
    response_model_exclude_none=False,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": 'the generated text; with "stream": true, ' + _STREAM_DESCRIPTION,
            "headers": _HEADERS,
        },
        **_ERRORS,
    },
    summary="Generate text after a prompt",
)
async def generate(
    body: GenerateRequest, request: Request, service: Service, metrics: AppMetrics
) -> GenerateResponse | Response:
    if body.stream:
        return await _stream(body, service, metrics, "/generate", full_text_default=False)
    response, headers = await _finish(body, request, service, metrics, "/generate", full_text_default=False)
    if response is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return JSONResponse(response.model_dump(mode="json"), headers=headers)


@router.post(
    "/generate_stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": _STREAM_DESCRIPTION}, **_ERRORS},
    summary="Generate text after a prompt, streamed token by token (Server-Sent Events)",
)
async def generate_stream(
    body: GenerateRequest, service: Service, metrics: AppMetrics
) -> EventSourceResponse:
    return await _stream(body, service, metrics, "/generate_stream", full_text_default=False)
