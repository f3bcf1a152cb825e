"""TGI's protocol: the bodies of /generate, /generate_stream, POST / and /tokenize, in Hugging Face
text-generation-inference's shapes, so its clients (`text_generation.Client`,
`huggingface_hub.InferenceClient`, LangChain's HuggingFaceEndpoint) work unchanged; the examples are real
requests that succeed when pressed "Try it out" in Swagger (/docs).

Values are strict (app/protocols/strict.py). As in TGI, `null` means "the default" for every generation
parameter and fields this server does not know are ignored (and logged), since TGI clients send fields of
newer TGI versions. What this model cannot do (`watermark`, `grammar`, `adapter_id`) is refused with a 422
that says why, never silently ignored. The answers' shapes are in app/protocols/tgi_answers.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.engine.errors import APIError
from app.engine.limits import Limits
from app.engine.run import GenerationRequest
from app.protocols.sampling import SamplingFields, TopK
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


class GenerateParameters(SamplingFields, TopK):
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
    typical_p: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="typical decoding (Meister et al. 2022): keep the words whose surprisal is closest to "
        "the entropy, as many as hold this much mass (1 or null: off)",
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

    best_of: int | None = Field(
        None,
        ge=1,
        description="decode this many candidates in one batch and return the one with the highest cumulative "
        "log-probability, the others in details.best_of_sequences (as in TGI: needs sampling, not with "
        "streaming; server limit: /info max_best_of)",
    )
    # Parameters of TGI that this model cannot honour: the schema admits only their "off" values (so it says
    # exactly what is accepted); any other value is a 422 whose message says why (app/http/errors.py's hints).
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


def sampling_params(limits: Limits, parameters: GenerateParameters, stream: bool = False) -> SamplingParams:
    """TGI's parameters (null: the default) -> SamplingParams, checked against the server limits."""
    max_new_tokens = (
        parameters.max_new_tokens if parameters.max_new_tokens is not None else DEFAULT_MAX_NEW_TOKENS
    )
    stop = parameters.stop or []
    limits.check_top_k(parameters.top_k, "parameters.top_k")
    limits.check_generation(max_new_tokens, stop, parameters.top_n_tokens or 0, parameters.truncate)
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
        typical_p=parameters.typical_p,
        stop=tuple(stop),
        top_n_tokens=parameters.top_n_tokens or 0,
        prefill_logprobs=bool(parameters.decoder_input_details),
        truncate=parameters.truncate,
        **parameters.shared_params(),
    )
    try:
        params.validate()
    except ValueError as error:  # the schema already checks these ranges; this keeps the two in step
        raise APIError(422, "validation", f"parameters.{error}") from None
    return params


def generation_request(limits: Limits, body: GenerateRequest, route: str, stream: bool) -> GenerationRequest:
    """A TGI request as the engine runs it: the prompt, the parameters, and best_of candidates (as TGI
    validates best_of: it needs sampling, since greedy candidates would all be the same text, and it is
    refused for a stream, which has one sequence to send)."""
    limits.check_prompt(body.inputs)
    params = sampling_params(limits, body.params, stream)
    best_of = body.params.best_of or 1
    limits.check_candidates(best_of, "parameters.best_of")
    if best_of > 1 and not params.sampling:
        raise APIError(
            422,
            "validation",
            f"parameters.best_of is {best_of}, which needs sampling (as in TGI: greedy candidates would all "
            "be the same text); set do_sample to true, or a temperature, top_k, top_p or typical_p",
            param="parameters.best_of",
        )
    if best_of > 1 and stream:
        raise APIError(
            422,
            "validation",
            f"parameters.best_of is {best_of}: best_of > 1 is not supported when streaming tokens (as in "
            "TGI); use POST /generate, or send 1",
            param="parameters.best_of",
        )
    return GenerationRequest(text=body.inputs, params=params, route=route, candidates=best_of)


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
