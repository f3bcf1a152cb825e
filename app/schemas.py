"""Request and response bodies. The generation shapes follow Hugging Face text-generation-inference (TGI), so
its clients (`text_generation.Client`, `huggingface_hub.InferenceClient`) work unchanged; the examples are
real requests that succeed when pressed "Try it out" in Swagger (/docs).

Models are strict: a string where a number belongs is an error, not silently converted, and NaN/Infinity are
refused. Unknown fields are refused too (typos must not be ignored), except the TGI parameters that those
clients always send, which are accepted at their "off" values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The sampling settings shown in Swagger's examples (GenerateParameters alone, and inside GenerateRequest).
EXAMPLE_PARAMETERS: dict[str, Any] = {
    "max_new_tokens": 30,
    "do_sample": True,
    "temperature": 0.8,
    "top_k": 20,
    "top_p": 0.95,
    "repetition_penalty": 1.2,
    "seed": 42,
    "stop": ["」"],
    "details": True,
}


class GenerateParameters(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"example": EXAMPLE_PARAMETERS},
    )

    max_new_tokens: int = Field(
        50, ge=1, description="how many words to generate at most (server limit: /info)"
    )
    do_sample: bool = Field(
        False,
        description="sample instead of always taking the most probable word; as in TGI, setting temperature, "
        "top_k or top_p (< 1) also turns sampling on",
    )
    temperature: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="divides the logits: < 1 sharper, > 1 more varied"
    )
    top_k: int | None = Field(None, ge=1, description="sample only among the k most probable words")
    top_p: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="nucleus sampling: smallest set with this much mass",
    )
    repetition_penalty: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="> 1 discourages words already in the prompt or output"
    )
    seed: int | None = Field(
        None, ge=0, le=2**64 - 1, description="same seed and parameters give the same text; drawn if absent"
    )
    stop: list[str] = Field(
        default_factory=list, description="stop once the generated text contains one of these"
    )
    return_full_text: bool = Field(False, description="prepend the prompt to generated_text")
    details: bool = Field(False, description="return per-token ids, logprobs and similarities")

    # Sent by TGI clients with every request; accepted at their "off" values, refused otherwise.
    best_of: int | None = Field(None, description="not supported (only null or 1)")
    watermark: bool = Field(False, description="not supported (only false)")
    truncate: int | None = Field(None, description="not supported (only null)")
    typical_p: float | None = Field(None, description="not supported (only null)")
    decoder_input_details: bool = Field(
        False, description="accepted for TGI compatibility; prefill is listed"
    )
    top_n_tokens: int | None = Field(None, description="not supported (only null); use POST /predict")
    grammar: Any = Field(None, description="not supported (only null)")
    frequency_penalty: float | None = Field(
        None, description="not supported (only null); use repetition_penalty"
    )
    adapter_id: str | None = Field(None, description="not supported (only null)")

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: list[str]) -> list[str]:
        if any(stop == "" for stop in value):
            raise ValueError("stop sequences must be non-empty strings")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("best_of is not supported by this server; send null or 1")
        return value

    @field_validator("watermark")
    @classmethod
    def _watermark(cls, value: bool) -> bool:
        if value:
            raise ValueError("watermarking is not supported by this server; send false")
        return value

    @field_validator("truncate", "typical_p", "top_n_tokens", "grammar", "frequency_penalty", "adapter_id")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("not supported by this server; leave it out or send null (see /docs)")
        return value


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "inputs": "宝玉笑道",
                    "parameters": EXAMPLE_PARAMETERS,
                }
            ]
        },
    )

    inputs: str = Field(description="the prompt: a few words in the novel's language")
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: bool = Field(
        False, description="ignored (TGI clients send it); use POST /generate_stream to stream"
    )


class Token(BaseModel):
    id: int
    text: str
    logprob: float = Field(description="log-probability under the distribution the token was drawn from")
    special: bool = False
    similarity: float | None = Field(
        description="cosine between the predicted vector and the word's word2vec vector (null: one-hot head)"
    )


class PrefillToken(BaseModel):
    id: int
    text: str
    logprob: float | None = None


class Details(BaseModel):
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None = Field(description="the seed used when sampling (echo it back to reproduce the text)")
    prefill: list[PrefillToken] = Field(
        description="the prompt as the model read it: its tokens, rare words as their characters"
    )
    tokens: list[Token]
    unknown_words: list[str] = Field(
        description="prompt words not in the vocabulary as whole words: read through their characters "
        "(a character too rare to learn as <unk>), never skipped"
    )


class GenerateResponse(BaseModel):
    generated_text: str
    details: Details | None = None


class StreamDetails(BaseModel):
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None
    input_length: int
    unknown_words: list[str]


class StreamResponse(BaseModel):
    """One Server-Sent Event of /generate_stream; the last one also carries generated_text and details."""

    index: int
    token: Token
    generated_text: str | None = None
    details: StreamDetails | None = None


class PredictRequest(BaseModel):
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


class SimilarRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"positive": ["宝玉", "姐姐"], "negative": ["哥哥"], "topn": 10}]},
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
    status: Literal["ok"]
    model: str
    vocab_size: int


class ErrorResponse(BaseModel):
    error: str = Field(examples=["parameters.top_p: input should be less than or equal to 1 (got 1.5)"])
    error_type: str = Field(examples=["validation"])
