"""Request and response bodies. The generation shapes follow Hugging Face text-generation-inference (TGI), so
its clients (`text_generation.Client`, `huggingface_hub.InferenceClient`, LangChain's HuggingFaceEndpoint)
work unchanged; the examples are real requests that succeed when pressed "Try it out" in Swagger (/docs).

Values are strict: a string where a number belongs is an error, not silently converted, and NaN/Infinity are
refused. As in TGI, `null` means "the default" for every generation parameter and fields this server does not
know are ignored (and logged: app/routes/generate.py), since TGI clients send fields of newer TGI versions.
What this model cannot do (`best_of` > 1, `watermark`, `grammar`, `adapter_id`) is refused with a 422 that
says why, never silently ignored.
"""

from __future__ import annotations

import logging
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger("app")

# max_new_tokens when the request leaves it out or sends null.
DEFAULT_MAX_NEW_TOKENS = 50

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


def unknown_fields(model: type[BaseModel], data: Any) -> list[str]:
    """Keys of a JSON object that `model` does not declare (they are ignored, as TGI ignores them)."""
    if not isinstance(data, dict):
        return []
    known = set(model.model_fields)
    return [key for key in data if key not in known]


def _is_int_field(annotation: Any) -> bool:
    return annotation is int or (get_origin(annotation) in (Union, UnionType) and int in get_args(annotation))


class _JsonIntegers(BaseModel):
    """Strict models, except that an integer field takes 18.0 as 18: JSON Schema's "integer" is any number
    with a zero fractional part, so the schema promises 18.0 is accepted (Schemathesis sent it). Strings
    and booleans stay refused. Done before validation so the fields keep plain `int` types, whose bounds
    the JSON schema prints as integer minimum/maximum."""

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: int(value)
            if isinstance(value, float)
            and value.is_integer()
            and key in fields
            and _is_int_field(fields[key].annotation)
            else value
            for key, value in data.items()
        }


class _IgnoresUnknown(_JsonIntegers):
    """Ignores undeclared fields like TGI (serde's default) and logs their names: a typo shows in the log."""

    model_config = ConfigDict(extra="ignore", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _log_unknown(cls, data: Any) -> Any:
        unknown = unknown_fields(cls, data)
        if unknown:
            logger.info("%s: ignoring unknown fields %s", cls.__name__, ", ".join(map(repr, unknown[:10])))
        return data


class GenerateParameters(_IgnoresUnknown):
    model_config = ConfigDict(json_schema_extra={"example": EXAMPLE_PARAMETERS})

    max_new_tokens: int | None = Field(
        DEFAULT_MAX_NEW_TOKENS,
        ge=1,
        description=f"how many words to generate at most (null: {DEFAULT_MAX_NEW_TOKENS}; limit: /info)",
    )
    do_sample: bool | None = Field(
        False,
        description="sample instead of always taking the most probable word; as in TGI, setting temperature, "
        "top_k, top_p < 1 or typical_p < 1 also turns sampling on",
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
        description="nucleus sampling: smallest set with this much mass (1 or null: off)",
    )
    typical_p: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="typical decoding (Meister et al. 2022): keep the words whose surprisal is closest to "
        "the entropy, as many as hold this much mass (1 or null: off)",
    )
    repetition_penalty: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="> 1 discourages words already in the prompt or output (1 or null: off)",
    )
    frequency_penalty: float | None = Field(
        None,
        ge=-2,
        le=2,
        allow_inf_nan=False,
        description="as in TGI: subtracts this times a word's share of the tokens so far (prompt and output) "
        "from its logit; > 0 discourages repeats, < 0 encourages them (0 or null: off)",
    )
    seed: int | None = Field(
        None, ge=0, le=2**64 - 1, description="same seed and parameters give the same text; drawn if absent"
    )
    stop: list[str] | None = Field(
        default_factory=list,
        description="stop once the generated text contains one of these (server limit: /info)",
    )
    return_full_text: bool | None = Field(
        None, description="prepend the prompt to generated_text (null: false on /generate, true on POST /)"
    )
    details: bool | None = Field(False, description="return per-token ids, logprobs and similarities")
    decoder_input_details: bool | None = Field(
        False,
        description="also return each prompt token's logprob given the tokens before it (details.prefill; "
        "implies details; not with streaming, as in TGI)",
    )
    top_n_tokens: int | None = Field(
        None,
        ge=0,
        description="also return the n most probable words at each step (details.top_tokens, stream "
        "top_tokens; 0 or null: off; server limit: /info)",
    )
    truncate: int | None = Field(
        None, ge=1, description="read only the last N tokens of the prompt (null: all of it)"
    )

    # Parameters of TGI that this model cannot honour: the schema admits only their "off" values (so it says
    # exactly what is accepted); any other value is a 422 whose message says why (app/errors.py's hints).
    best_of: int | None = Field(None, ge=1, le=1, description="only null or 1: one sequence per request")
    watermark: Literal[False, None] = Field(False, description="only false (or null): no watermarking")
    grammar: None = Field(None, description="only null: no constrained decoding")
    adapter_id: None = Field(None, description="only null: no LoRA adapters")

    @field_validator("watermark", mode="before")
    @classmethod
    def _watermark_is_a_boolean(cls, value: Any) -> Any:
        # Literal[False] alone lets 0 through (0 == False); the schema says false or null.
        if value is not None and value is not False:
            raise ValueError("watermarking is not supported by this server; send false or leave it out")
        return value

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(stop == "" for stop in value):
            raise ValueError("stop sequences must be non-empty strings")
        return value


class GenerateRequest(_IgnoresUnknown):
    model_config = ConfigDict(
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
    parameters: GenerateParameters | None = Field(
        default_factory=GenerateParameters, description="null: all defaults"
    )
    stream: bool | None = Field(
        False,
        description="on POST / and POST /generate: true answers Server-Sent Events as /generate_stream does "
        "(as TGI's compatibility route); /generate_stream always streams",
    )

    @property
    def params(self) -> GenerateParameters:
        return self.parameters if self.parameters is not None else GenerateParameters()


class Token(BaseModel):
    id: int
    text: str
    logprob: float = Field(description="log-probability under the distribution the token was drawn from")
    special: bool = False
    similarity: float | None = Field(
        None,
        description="cosine between the predicted vector and the word's output vector (null: one-hot head, "
        "and in top_tokens)",
    )


class PrefillToken(BaseModel):
    id: int
    text: str
    logprob: float | None = Field(
        None,
        description="with decoder_input_details: log P(token | the prompt tokens before it), as /predict "
        "gives it; null for the first token, a character read as <unk>, and without decoder_input_details",
    )


class Details(BaseModel):
    finish_reason: Literal["length", "stop_sequence"]
    generated_tokens: int
    seed: int | None = Field(description="the seed used when sampling (echo it back to reproduce the text)")
    prefill: list[PrefillToken] = Field(
        description="the prompt as the model read it: its tokens, rare words as their characters"
    )
    tokens: list[Token]
    top_tokens: list[list[Token]] | None = Field(
        None, description="with top_n_tokens: the most probable words at each step, best first"
    )
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
    top_tokens: list[Token] | None = Field(None, description="with top_n_tokens: the most probable words")
    generated_text: str | None = None
    details: StreamDetails | None = None


class SimpleToken(BaseModel):
    """One token of POST /tokenize (TGI's SimpleToken plus `known` and `spelled`)."""

    id: int = Field(description="the vocabulary id the model reads")
    text: str
    start: int = Field(description="offset of the first character in inputs (Unicode characters)")
    stop: int = Field(description="offset after the last character")
    known: bool = Field(description="false for a character the model never learnt: it reads <unk> there")
    spelled: bool = Field(
        description="a character of a word outside the vocabulary (the model reads it through its characters)"
    )


class PredictRequest(_JsonIntegers):
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


class SimilarRequest(_JsonIntegers):
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
    status: Literal["ok"]
    model: str
    vocab_size: int


class ErrorResponse(BaseModel):
    error: str = Field(examples=["parameters.top_p: input should be less than or equal to 1 (got 1.5)"])
    error_type: str = Field(
        examples=["validation"],
        description="validation (422), generation (424), overloaded (429), as TGI; not_found, "
        "method_not_allowed and the request guard's kinds otherwise",
    )
