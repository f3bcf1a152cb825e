"""OpenAI-compatible routes under /v1 (the `openai` client with base_url=http://host:port/v1): the model
list and POST /v1/completions (a prompt continued, as OpenAI's legacy completions API). The route only
translates: app/protocols/completions.py maps the request and builds the answer, the engine runs it.

Generation goes through the same engine as the TGI routes, so the same seed and parameters give the same
text here as on /generate.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response

from app import __version__
from app.engine.errors import APIError
from app.engine.service import ModelService
from app.http.connection import disconnected
from app.http.openai_errors import openai_error_responses
from app.http.streaming import event_stream
from app.protocols.completions import (
    Completion,
    CompletionRequest,
    completion,
    generation_request,
    stream_renderer,
)
from app.protocols.openai import ModelCard, ModelList, usage_of
from app.routes.dependencies import Service

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


def _system_fingerprint() -> str:
    return f"novel-lstm-{__version__}"


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
async def completions(body: CompletionRequest, request: Request, service: Service) -> Completion | Response:
    run = generation_request(service.limits, body, request.url.path)
    generations = await service.prepare(run)
    header = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": service.name,
        "system_fingerprint": _system_fingerprint(),
    }
    words = service.model.vectors.words
    if not body.stream:
        finished = await service.complete(generations, run.route, disconnected(request))
        return completion(body, finished, words, header)
    tokens = service.stream(generations, run.route)

    def closing() -> list[str]:
        usage = [Completion(**header, choices=[], usage=usage_of(generations)).model_dump_json()]
        return [*(usage if body.include_usage else []), "[DONE]"]

    render = stream_renderer(body, len(generations), words, header)
    return event_stream(request.url.path, tokens, render, closing=closing)
