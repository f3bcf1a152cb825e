"""OpenAI-compatible routes under /v1 (the `openai` client with base_url=http://host:port/v1).

The shared pieces (error shape, usage, model list) live in app/openai_api.py; chat completions build on them.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from app.errors import APIError
from app.openai_api import ModelCard, ModelList, openai_error_responses
from app.routes.dependencies import Service
from app.service import ModelService

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
