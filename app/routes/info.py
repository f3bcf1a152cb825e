"""GET /info (model card), GET /health, GET /metrics (Prometheus)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Response

from app.routes.dependencies import AppMetrics, Service
from app.schemas import HealthResponse

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
    "evaluation",
    "timings",
    "library_versions",
)


@router.get("/info", summary="Model card: corpus, vocabulary, settings, held-out metrics, server limits")
def info(service: Service) -> dict[str, Any]:
    manifest = service.model.manifest
    settings = service.settings
    # Only names, never absolute paths: the card is public and paths disclose the server's layout.
    card: dict[str, Any] = {"model_id": service.name, "model_dir": service.model.directory.name}
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
        "max_topn": settings.max_topn,
        "max_body_bytes": settings.max_body_bytes,
        # Per worker process: sequences decoded together, and requests that may wait (429 beyond).
        "max_batch_size": settings.max_batch_size,
        "max_waiting": settings.max_waiting,
    }
    return card


@router.get("/health", response_model=HealthResponse, summary="Liveness: the model is loaded")
def health(service: Service) -> HealthResponse:
    return HealthResponse(status="ok", model=service.name, vocab_size=len(service.model.vectors))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(app_metrics: AppMetrics) -> Response:
    return Response(app_metrics.render(), media_type=app_metrics.content_type)
