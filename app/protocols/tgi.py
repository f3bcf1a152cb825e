"""TGI's protocol: the bodies of /generate, /generate_stream, POST / and /tokenize, in Hugging Face
text-generation-inference's shapes, so its clients (`text_generation.Client`,
`huggingface_hub.InferenceClient`, LangChain's HuggingFaceEndpoint) work unchanged; the examples are real
requests that succeed when pressed "Try it out" in Swagger (/docs).

Values are strict (app/protocols/strict.py). As in TGI, `null` means "the default" for every generation
parameter and fields this server does not know are ignored (and logged), since TGI clients send fields of
newer TGI versions. What this model cannot do (`best_of` > 1, `watermark`, `grammar`, `adapter_id`) is
refused with a 422 that says why, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.engine.errors import APIError
from app.engine.service import ModelService
from app.protocols.strict import IgnoresUnknown
from models.decoding import SamplingParams

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


class GenerateParameters(IgnoresUnknown):
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
    # exactly what is accepted); any other value is a 422 whose message says why (app/http/errors.py's hints).
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


class GenerateRequest(IgnoresUnknown):
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


def sampling_params(
    service: ModelService, parameters: GenerateParameters, stream: bool = False
) -> SamplingParams:
    """TGI's parameters (null: the default) -> SamplingParams, checked against the server limits."""
    max_new_tokens = (
        parameters.max_new_tokens if parameters.max_new_tokens is not None else DEFAULT_MAX_NEW_TOKENS
    )
    stop = parameters.stop or []
    service.check_top_k(parameters.top_k, "parameters.top_k")
    service.check_generation_limits(max_new_tokens, stop, parameters.top_n_tokens or 0, parameters.truncate)
    if stream and parameters.decoder_input_details:
        raise APIError(
            422,
            "validation",
            "parameters.decoder_input_details is not supported when streaming tokens (as in TGI); "
            "use POST /generate, or send false",
            param="parameters.decoder_input_details",
        )
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        do_sample=bool(parameters.do_sample),
        temperature=parameters.temperature,
        top_k=parameters.top_k,
        top_p=parameters.top_p,
        typical_p=parameters.typical_p,
        repetition_penalty=parameters.repetition_penalty,
        frequency_penalty=parameters.frequency_penalty,
        seed=parameters.seed,
        stop=tuple(stop),
        top_n_tokens=parameters.top_n_tokens or 0,
        prefill_logprobs=bool(parameters.decoder_input_details),
        truncate=parameters.truncate,
    )
    try:
        params.validate()
    except ValueError as error:  # the schema already checks these ranges; this keeps the two in step
        raise APIError(422, "validation", f"parameters.{error}") from None
    return params


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
