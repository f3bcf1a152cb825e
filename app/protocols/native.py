"""Request and response bodies of this server's own routes: POST /predict (next-word candidates),
GET|POST /similar (word2vec neighbours and analogies), GET /health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.protocols.strict import JsonIntegers


class PredictRequest(JsonIntegers):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"inputs": "黛玉听了", "top_k": 10}]}
    )

    inputs: str = Field(description="the context; the candidates are for the word after it")
    top_k: int = Field(10, ge=1, description="how many candidates (server limit: /info)")
    temperature: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="divides the logits before softmax"
    )


class Candidate(BaseModel):
    id: int
    word: str
    probability: float
    similarity: float | None


class PredictResponse(BaseModel):
    tokens: list[str] = Field(description="the prompt as jieba cut it")
    unknown_words: list[str]
    candidates: list[Candidate]


class SimilarRequest(JsonIntegers):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"positive": ["宝玉", "姐姐"], "negative": ["哥哥"], "topn": 10}],
            # At least one word, in either list (the route answers 422 otherwise).
            "anyOf": [
                {"required": ["positive"], "properties": {"positive": {"minItems": 1}}},
                {"required": ["negative"], "properties": {"negative": {"minItems": 1}}},
            ],
        },
    )

    positive: list[str] = Field(
        default_factory=list, description="words added (gensim most_similar semantics)"
    )
    negative: list[str] = Field(default_factory=list, description="words subtracted")
    topn: int = Field(10, ge=1, description="how many neighbours (server limit: /info)")


class Neighbour(BaseModel):
    word: str
    similarity: float


class SimilarResponse(BaseModel):
    positive: list[str]
    negative: list[str]
    similar: list[Neighbour]


class HealthResponse(BaseModel):
    status: Literal["ok", "draining"]
    model: str
    vocab_size: int
