"""GET /similar and POST /similar: word2vec neighbours and analogies with gensim's most_similar semantics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.engine.errors import APIError
from app.engine.service import ModelService
from app.http.errors import ErrorResponse
from app.protocols.native import Neighbour, SimilarRequest, SimilarResponse
from app.routes.dependencies import Service

router = APIRouter(tags=["word vectors"])

_ERRORS = {
    404: {"model": ErrorResponse, "description": "a word is not in the vocabulary (suggestions included)"},
    422: {"model": ErrorResponse},
}


def _neighbours(
    service: ModelService, positive: list[str], negative: list[str], topn: int
) -> SimilarResponse:
    if topn > service.settings.max_topn:
        raise APIError(422, "validation", f"topn is {topn}, the limit is {service.settings.max_topn}")
    settings = service.settings
    for field, given in (("positive", positive), ("negative", negative)):
        if len(given) > settings.max_similar_words:
            raise APIError(
                422,
                "validation",
                f"{field} has {len(given)} words, the limit is {settings.max_similar_words}",
            )
    words = positive + negative
    if not words:
        raise APIError(422, "validation", "give at least one word in positive or negative, e.g. 黛玉")
    if any(not word.strip() for word in words):
        raise APIError(422, "validation", "words must be non-empty, e.g. 黛玉")
    longest = max(words, key=len)
    if len(longest) > settings.max_word_chars:
        raise APIError(
            422,
            "validation",
            f"a word of {len(longest)} characters was sent, the limit is {settings.max_word_chars}; "
            "send single words of the novel, e.g. 黛玉",
        )
    vectors = service.model.vectors
    unknown = [word for word in dict.fromkeys(words) if word not in vectors]
    if unknown:
        suggestions = {word: vectors.suggest(word, k=5) for word in unknown}
        hints = "; ".join(f"{w} → {'、'.join(s)}" for w, s in suggestions.items() if s)
        message = f"not in the vocabulary of {len(vectors)} words: {'、'.join(unknown)}"
        message += (
            f" (known words with the same characters: {hints})" if hints else " (no similar known words)"
        )
        raise APIError(404, "unknown_word", message, unknown_words=unknown, suggestions=suggestions)
    found = vectors.most_similar(positive=positive, negative=negative, topn=topn)
    return SimilarResponse(
        positive=positive,
        negative=negative,
        similar=[Neighbour(word=word, similarity=score) for word, score in found],
    )


@router.get(
    "/similar",
    response_model=SimilarResponse,
    responses=_ERRORS,
    summary="Words whose word2vec vectors are closest to a word's",
)
def similar(
    service: Service,
    word: Annotated[str, Query(description="a word of the vocabulary", examples=["黛玉"])],
    topn: Annotated[int, Query(ge=1, description="how many neighbours", examples=[10])] = 10,
) -> SimilarResponse:
    return _neighbours(service, [word], [], topn)


@router.post(
    "/similar",
    response_model=SimilarResponse,
    responses=_ERRORS,
    summary="Analogies: words closest to mean(positive) - mean(negative), gensim semantics",
)
def similar_analogy(body: SimilarRequest, service: Service) -> SimilarResponse:
    return _neighbours(service, body.positive, body.negative, body.topn)
