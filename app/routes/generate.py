"""POST /generate and POST /generate_stream: text-generation-inference compatible generation.

Model work never runs on the event loop: it runs in a worker thread through ModelService.run_model (one lane
per process, see there); /generate hands over the whole generation, the stream advances its decoder one token
per call, so a slow SSE reader only ever waits on its own socket while the loop serves everyone else.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator

from fastapi import APIRouter
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
from app.service import ModelService, prompt_error
from models.decoding import EmptyPromptError, GeneratedToken, Generation, UnknownWordsError

logger = logging.getLogger("app")
router = APIRouter(tags=["generation"])

_ERRORS = {
    422: {"model": ErrorResponse, "description": "invalid parameters, empty prompt or only unknown words"}
}


def start_generation(service: ModelService, body: GenerateRequest) -> Generation:
    """Validate against the server limits, cut the prompt and prepare the decoder (no tokens yet)."""
    service.check_prompt(body.inputs)
    params = service.sampling_params(body.parameters)
    try:
        return service.decoder.generate(body.inputs, params)
    except (EmptyPromptError, UnknownWordsError) as error:
        raise prompt_error(error) from None


def _generate_all(service: ModelService, body: GenerateRequest) -> Generation:
    return start_generation(service, body).run()


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
async def generate(body: GenerateRequest, service: Service, metrics: AppMetrics) -> GenerateResponse:
    generation = await service.run_model(_generate_all, service, body)
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
    # Errors in the request are plain 422 JSON, raised before the stream starts.
    generation = await service.run_model(start_generation, service, body)
    return EventSourceResponse(_events(body, generation, service, metrics), ping=15)


async def _events(
    body: GenerateRequest, generation: Generation, service: ModelService, metrics: AppMetrics
) -> AsyncIterator[dict]:
    tokens = iter(generation)
    counter = metrics.tokens.labels("/generate_stream")
    index = 0
    while True:
        try:
            token = await service.run_model(next, tokens, None)
        except Exception:
            logger.exception("generation failed in the middle of a stream")
            yield {
                "data": json.dumps(
                    error_body("generation failed; the server log has the details", "internal")
                )
            }
            return
        if token is None:
            return
        index += 1
        counter.inc()
        event = StreamResponse(index=index, token=_token(token))
        if generation.finish_reason is not None:  # set before the last token is handed out
            event.generated_text = _full_text(body, generation)
            event.details = StreamDetails(
                finish_reason=generation.finish_reason,
                generated_tokens=len(generation.tokens),
                seed=generation.seed if generation.params.sampling else None,
                input_length=len(generation.prompt.ids),
                unknown_words=generation.prompt.unknown,
            )
        yield {"data": event.model_dump_json()}
