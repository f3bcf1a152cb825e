"""POST /generate and POST /generate_stream: text-generation-inference compatible generation.

Model work never runs on the event loop: a validated request is handed to the worker's scheduler
(app/scheduler.py), which decodes it in its batch with every other running generation. /generate waits for
the end (and cancels the generation if its client disconnects first); the stream receives tokens as the
scheduler decodes them, so a slow SSE reader only ever waits on its own socket while the loop serves everyone
else. Errors in the request (422) and "overloaded" (429 with Retry-After) come before any response starts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from app.errors import error_body
from app.routes.dependencies import AppMetrics, Service
from app.schemas import (
    Details,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    PrefillToken,
    StreamDetails,
    StreamResponse,
    Token,
)
from app.service import ClientDisconnected, ModelService, TokenStream
from models.decoding import GeneratedToken, Generation

logger = logging.getLogger("app")
router = APIRouter(tags=["generation"])

_ERRORS = {
    422: {"model": ErrorResponse, "description": "invalid parameters, empty prompt or only unknown words"},
    429: {
        "model": ErrorResponse,
        "description": "overloaded: every batch slot and the waiting queue are taken (MAX_BATCH_SIZE, "
        "MAX_WAITING); retry after the number of seconds in the Retry-After header",
    },
}

# nginx's "client closed request": only ever seen in logs and metrics, since the client is gone.
CLIENT_CLOSED_REQUEST = 499


async def start_generation(service: ModelService, body: GenerateRequest) -> Generation:
    """Validate against the server limits and cut the prompt (no tokens yet, nothing queued)."""
    service.check_prompt(body.inputs)
    params = service.sampling_params(body.parameters)
    return await service.prepare(body.inputs, params)


def _token(token: GeneratedToken) -> Token:
    # A drawn token always has probability > 0; the clamp only guards JSON against -inf from float underflow.
    logprob = token.logprob if math.isfinite(token.logprob) else -1e30
    return Token(id=token.id, text=token.text, logprob=logprob, similarity=token.similarity)


def _full_text(body: GenerateRequest, generation: Generation) -> str:
    return body.inputs + generation.text if body.parameters.return_full_text else generation.text


@router.post(
    "/generate",
    response_model=GenerateResponse,
    response_model_exclude_none=False,
    responses=_ERRORS,
    summary="Generate text after a prompt",
)
async def generate(
    body: GenerateRequest, request: Request, service: Service, metrics: AppMetrics
) -> GenerateResponse | Response:
    generation = await start_generation(service, body)
    try:
        generation = await service.complete(generation, request)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    metrics.tokens.labels("/generate").inc(len(generation.tokens))
    details = None
    if body.parameters.details:
        words = service.model.vectors.words
        details = Details(
            finish_reason=generation.finish_reason or "length",
            generated_tokens=len(generation.tokens),
            seed=generation.seed if generation.params.sampling else None,
            prefill=[PrefillToken(id=i, text=words[i]) for i in generation.prompt.ids],
            tokens=[_token(token) for token in generation.tokens],
            unknown_words=generation.prompt.unknown,
        )
    return GenerateResponse(generated_text=_full_text(body, generation), details=details)


@router.post(
    "/generate_stream",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: one `data:` JSON (StreamResponse) per token; the last one "
            "also carries generated_text and details",
        },
        **_ERRORS,
    },
    summary="Generate text after a prompt, streamed token by token (Server-Sent Events)",
)
async def generate_stream(
    body: GenerateRequest, service: Service, metrics: AppMetrics
) -> EventSourceResponse:
    # Errors in the request (422) and overload (429) are plain JSON, raised before the stream starts.
    generation = await start_generation(service, body)
    tokens = service.stream(generation)
    return EventSourceResponse(_events(body, tokens, metrics), ping=15)


async def _events(body: GenerateRequest, tokens: TokenStream, metrics: AppMetrics) -> AsyncIterator[dict]:
    """One event per token. A disconnect cancels the task iterating this, which cancels the generation."""
    generation = tokens.generation
    counter = metrics.tokens.labels("/generate_stream")
    index = 0
    try:
        async for token in tokens:
            index += 1
            counter.inc()
            event = StreamResponse(index=index, token=_token(token))
            if tokens.finish_reason is not None:  # set before the last token is handed out
                event.generated_text = _full_text(body, generation)
                event.details = _stream_details(tokens.finish_reason, generation)
            yield {"data": event.model_dump_json()}
    except Exception:
        logger.exception("generation failed in the middle of a stream")
        failure = error_body("generation failed; the server log has the details", "internal")
        yield {"data": json.dumps(failure)}


def _stream_details(finish_reason: str, generation: Generation) -> StreamDetails:
    return StreamDetails(
        finish_reason=finish_reason,
        generated_tokens=len(generation.tokens),
        seed=generation.seed if generation.params.sampling else None,
        input_length=len(generation.prompt.ids),
        unknown_words=generation.prompt.unknown,
    )
