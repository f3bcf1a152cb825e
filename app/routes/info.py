"""GET /info (TGI's endpoint info next to the model card), GET /health and /ping, GET /metrics (Prometheus),
POST /tokenize (the prompt as the model reads it: clients cannot run jieba to count tokens)."""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import __version__
from app.engine.service import ModelService
from app.http.errors import ErrorResponse
from app.protocols.native import HealthResponse
from app.protocols.tgi import GenerateRequest, SimpleToken, generation_request
from app.routes.dependencies import AppMetrics, Service
from models.artifacts import MANIFEST_FILE

router = APIRouter(tags=["service"])

# Manifest sections shown on the model card (the file hashes are for the loader, not for people).
_CARD_SECTIONS = (
    "format_version",
    "created_at",
    "corpus",
    "segmentation",
    "word2vec",
    "vocabulary",
    "network",
    "training",
    "mixture",
    "cache",
    "evaluation",
    "characters",
    "chat_evaluation",
    "timings",
    "library_versions",
)


class Info(BaseModel):
    """TGI's Info fields (what `InferenceClient.get_endpoint_info` returns), then this project's model card:
    the manifest's sections (corpus, vocabulary, network, training, evaluation, ...) and `limits`."""

    model_config = ConfigDict(extra="allow")

    model_id: str = Field(description="the model directory's name")
    model_sha: str | None = Field(description="sha256 of the model's manifest.json")
    model_dtype: str = "float32"
    model_device_type: str = "cpu"
    model_pipeline_tag: str = "text-generation"
    max_concurrent_requests: int = Field(description="per worker: MAX_BATCH_SIZE + MAX_WAITING")
    max_best_of: int = Field(description="MAX_BEST_OF: candidates one request may ask for (best_of, n)")
    max_stop_sequences: int
    max_input_tokens: int = Field(description="MAX_PROMPT_CHARS: a token is at least one character")
    max_input_length: int = Field(description="the same, under TGI's older name")
    max_total_tokens: int = Field(description="max_input_tokens + MAX_NEW_TOKENS")
    max_batch_size: int = Field(description="per worker: sequences decoded together (MAX_BATCH_SIZE)")
    max_batch_total_tokens: int | None = None
    max_waiting_tokens: int | None = None
    waiting_served_ratio: float | None = None
    validation_workers: int = 1
    max_client_batch_size: int = Field(1, description="one prompt per request")
    router: str = "novel-lstm"
    version: str = Field(description="this server's version")
    sha: str | None = None
    docker_label: str | None = None


@router.get(
    "/info",
    response_model=Info,
    summary="TGI's endpoint info and the model card: corpus, vocabulary, settings, metrics, limits",
)
def info(service: Service) -> dict[str, Any]:
    manifest = service.model.manifest
    settings = service.settings
    manifest_file = service.model.directory / MANIFEST_FILE
    sha = hashlib.sha256(manifest_file.read_bytes()).hexdigest() if manifest_file.is_file() else None
    card: dict[str, Any] = {
        "model_id": service.name,
        "model_sha": sha,
        "model_dtype": "float32",
        "model_device_type": "cpu",
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": settings.max_batch_size + settings.max_waiting,
        "max_best_of": settings.max_best_of,
        "max_stop_sequences": settings.max_stop_sequences,
        "max_input_tokens": service.limits.max_input_tokens,
        "max_input_length": service.limits.max_input_tokens,
        "max_total_tokens": service.limits.max_input_tokens + settings.max_new_tokens,
        "max_batch_size": settings.max_batch_size,
        "max_batch_total_tokens": None,
        "max_waiting_tokens": None,
        "waiting_served_ratio": None,
        "validation_workers": 1,
        "max_client_batch_size": 1,
        "router": "novel-lstm",
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
    # Only names, never absolute paths: the card is public and paths disclose the server's layout.
    card["model_dir"] = service.model.directory.name
    card.update({key: manifest[key] for key in _CARD_SECTIONS if key in manifest})
    if isinstance(card.get("corpus"), dict):
        corpus = {key: value for key, value in card["corpus"].items() if key != "input"}
        if isinstance(corpus.get("source"), str) and corpus["source"].startswith(("/", "~")):
            corpus["source"] = PurePath(corpus["source"]).name
        card["corpus"] = corpus
    card["limits"] = {
        "max_prompt_chars": settings.max_prompt_chars,
        "max_new_tokens": settings.max_new_tokens,
        "top_k": settings.top_k_limit,
        "max_stop_sequences": settings.max_stop_sequences,
        "max_top_n_tokens": settings.max_top_n_tokens,
        "max_stop_chars": settings.max_stop_chars,
        "max_best_of": settings.max_best_of,
        "max_topn": settings.max_topn,
        "max_similar_words": settings.max_similar_words,
        "max_word_chars": settings.max_word_chars,
        "max_body_bytes": settings.max_body_bytes,
        "body_read_timeout": settings.body_read_timeout,
        "header_read_timeout": settings.header_read_timeout,
        # Per worker process: sequences decoded together, and requests that may wait (429 beyond).
        "max_batch_size": settings.max_batch_size,
        "max_waiting": settings.max_waiting,
    }
    return card


# async: answered on the event loop itself, never queued behind busy worker threads (a sync route waits for
# a thread of the pool, which prompt cutting and model work share), so a health check stays fast under load.
@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": '`"status": "draining"`: stopping (SIGTERM)'}},
    summary="Readiness: the model is loaded and the server takes new generations (503 while draining)",
)
async def health(service: Service) -> HealthResponse | JSONResponse:
    # 503 while draining, so a proxy's or Kubernetes' readiness check stops sending this replica requests.
    status_code = 503 if service.draining else 200
    body = _health_body(service)
    return body if status_code == 200 else JSONResponse(body.model_dump(), status_code=status_code)


@router.get(
    "/ping",
    response_model=HealthResponse,
    summary="Liveness: the server answers (200 also while draining; the status field tells)",
)
async def ping(service: Service) -> HealthResponse:
    # Always 200: a draining server is alive and finishing its work, and must not be restarted for it.
    return _health_body(service)


def _health_body(service: ModelService) -> HealthResponse:
    status = "draining" if service.draining else "ok"
    return HealthResponse(status=status, model=service.name, vocab_size=len(service.model.vectors))


@router.post(
    "/tokenize",
    response_model=list[SimpleToken],
    responses={422: {"model": ErrorResponse, "description": "empty or too long inputs"}},
    summary="The prompt's tokens as the model reads them, with character offsets (TGI's /tokenize)",
)
async def tokenize(body: GenerateRequest, service: Service) -> list[SimpleToken]:
    """Only `inputs` is read (the body is TGI's GenerateRequest, so a client can send the one it generates
    with). The number of tokens is x-prompt-tokens / usage.prompt_tokens of the same prompt."""
    # The parameters are not used, but they are checked as /generate checks them: the schema this body
    # shares with /generate states the server's limits, and a request is valid on both or on neither.
    generation_request(service.limits, body, "/tokenize", stream=False)
    pieces = await service.run_model(service.decoder.pieces, body.inputs)
    unknown = service.decoder.unknown_id
    return [
        SimpleToken(
            id=piece.id,
            text=piece.text,
            start=piece.start,
            stop=piece.stop,
            known=piece.id != unknown,
            spelled=piece.spelled,
        )
        for piece in pieces
    ]


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(app_metrics: AppMetrics) -> Response:
    return Response(app_metrics.render(), media_type=app_metrics.content_type)
