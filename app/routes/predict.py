"""POST /predict: the most probable next words after a context."""

from __future__ import annotations

from fastapi import APIRouter

from app.engine.service import prompt_error
from app.http.errors import ErrorResponse
from app.protocols.native import Candidate, PredictRequest, PredictResponse
from app.routes.dependencies import Service
from models.decoding import EmptyPromptError

router = APIRouter(tags=["prediction"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={422: {"model": ErrorResponse}},
    summary="Next-word candidates with probability and cosine similarity",
)
async def predict(body: PredictRequest, service: Service) -> PredictResponse:
    service.limits.check_prompt(body.inputs)
    service.limits.check_top_k(body.top_k, "top_k")
    try:
        prompt, candidates = await service.run_model(
            service.decoder.predict_next, body.inputs, body.top_k, body.temperature
        )
    except EmptyPromptError as error:
        raise prompt_error(error) from None
    return PredictResponse(
        tokens=prompt.tokens,
        unknown_words=prompt.unknown,
        candidates=[
            Candidate(id=c.id, word=c.word, probability=c.probability, similarity=c.similarity)
            for c in candidates
        ],
    )
