"""TGI's generation routes: POST / (the compatibility route), POST /generate, POST /generate_stream.

As in text-generation-inference: `POST /` with `"stream": false` answers a one-item JSON list (what
`text_generation.Client` and `huggingface_hub.InferenceClient` read), with `"stream": true` the Server-Sent
Events of /generate_stream, and `return_full_text` defaults to true there; `POST /generate` honours
`"stream": true` the same way (a client pointed at .../generate still gets its stream). Plain answers carry
TGI's timing and token-count headers (x-compute-time, x-prompt-tokens, x-generated-tokens, ...).

The routes only translate: app/protocols/tgi.py validates the request into the engine's GenerationRequest,
the engine runs it (docs/architecture.md, "The path of a request"), app/protocols/tgi_answers.py shapes the
answer, and app/http/streaming.py streams it.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from app.engine.run import cumulative_logprob
from app.engine.service import ModelService
from app.http.connection import disconnected
from app.http.errors import ErrorResponse
from app.http.streaming import event_stream
from app.protocols.tgi import GenerateRequest, generation_request
from app.protocols.tgi_answers import GenerateResponse, generate_response, stream_renderer, timing_headers
from app.routes.dependencies import Service

router = APIRouter(tags=["generation (TGI compatible)"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "validation: invalid parameters, an empty prompt, or a TGI feature this model "
        "cannot honour (watermark, grammar, adapter_id)",
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


async def _answer(
    body: GenerateRequest, request: Request, service: ModelService, full_text_default: bool
) -> tuple[GenerateResponse, dict[str, str]]:
    """Run a plain (non-streamed) request to its end: the answer and TGI's headers."""
    started = time.perf_counter()
    run = generation_request(service.limits, body, request.url.path, stream=False)
    generations = await service.prepare(run)
    validated = time.perf_counter()
    ranked = await service.complete(generations, run.route, disconnected(request), cumulative_logprob)
    response = generate_response(body, ranked, service.model.vectors.words, full_text_default)
    return response, timing_headers(body.inputs, ranked[0], started, validated)


async def _stream(
    body: GenerateRequest, request: Request, service: ModelService, full_text_default: bool
) -> EventSourceResponse:
    # Errors in the request (422) and overload (429) are plain JSON, raised before the stream starts.
    run = generation_request(service.limits, body, request.url.path, stream=True)
    generations = await service.prepare(run)
    tokens = service.stream(generations, run.route)
    headers = {
        "x-compute-type": "cpu",
        "x-compute-characters": str(len(body.inputs)),
        "x-prompt-tokens": str(len(generations[0].prompt.ids)),
    }
    render = stream_renderer(body, service.model.vectors.words, full_text_default)
    return event_stream(request.url.path, tokens, render, headers=headers)


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
    body: GenerateRequest, request: Request, service: Service
) -> list[GenerateResponse] | Response:
    # return_full_text defaults to true here, as TGI does for text-generation models.
    if body.stream:
        return await _stream(body, request, service, full_text_default=True)
    response, headers = await _answer(body, request, service, full_text_default=True)
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
async def generate(body: GenerateRequest, request: Request, service: Service) -> GenerateResponse | Response:
    if body.stream:
        return await _stream(body, request, service, full_text_default=False)
    response, headers = await _answer(body, request, service, full_text_default=False)
    return JSONResponse(response.model_dump(mode="json"), headers=headers)


@router.post(
    "/generate_stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": _STREAM_DESCRIPTION}, **_ERRORS},
    summary="Generate text after a prompt, streamed token by token (Server-Sent Events)",
)
async def generate_stream(body: GenerateRequest, request: Request, service: Service) -> EventSourceResponse:
    return await _stream(body, request, service, full_text_default=False)
