"""What every route needs from the running app, as FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.metrics import Metrics
from app.service import ModelService


def get_service(request: Request) -> ModelService:
    return request.app.state.service


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


Service = Annotated[ModelService, Depends(get_service)]
AppMetrics = Annotated[Metrics, Depends(get_metrics)]
