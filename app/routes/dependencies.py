"""What every route needs from the running app, as FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine.service import ModelService
from app.metrics import Metrics


# `async def`, though they only read an attribute: FastAPI runs a plain `def` dependency in its thread pool,
# and two thread hops per request (each a GIL hand-off with the scheduler thread) were the largest part of a
# request's cost on the event loop (py-spy on the benchmark server).
async def get_service(request: Request) -> ModelService:
    return request.app.state.service


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


Service = Annotated[ModelService, Depends(get_service)]
AppMetrics = Annotated[Metrics, Depends(get_metrics)]
