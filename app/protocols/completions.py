"""Request and response bodies of POST /v1/completions, in OpenAI's shapes (the `openai` client parses them).

As on the TGI routes, fields this server does not know are ignored (and logged) and what it cannot do is a
422 saying why: `n` > 1, `best_of` > 1, `suffix`, `logit_bias`, token-id prompts, more than one prompt.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from app.protocols.openai import StreamOptions, Usage
from app.protocols.strict import IgnoresUnknown

# OpenAI's default for max_tokens on /v1/completions.
DEFAULT_MAX_TOKENS = 16


_PROMPT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
    ]
}


def _one_prompt(value: object) -> object:
    """A list of one string is that string; any other list is refused (one completion per request)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"a list of {len(value)} prompts")
        return value[0]
    return value


class CompletionRequest(IgnoresUnknown):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "hongloumeng",
                    "prompt": "宝玉笑道",
                    "max_tokens": 30,
                    "temperature": 0.8,
                    "seed": 42,
                }
            ]
        }
    )

    model: str | None = Field(
        None, description="ignored: the server serves one model (GET /v1/models), whatever is sent"
    )
    # One validator instead of a union, so a wrong prompt gets one message (the schema says the same).
    prompt: Annotated[str, BeforeValidator(_one_prompt), WithJsonSchema(_PROMPT_SCHEMA)] = Field(
        description="the text to continue: a string, or a list of exactly one string"
    )
    max_tokens: int | None = Field(
        DEFAULT_MAX_TOKENS, ge=1, description="words to generate at most (null: 16; server limit: /info)"
    )
    temperature: float | None = Field(
        None,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="0: greedy (always the most probable word); otherwise sampling at this temperature "
        "(null: 1)",
    )
    top_p: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="nucleus sampling mass (1 or null: off)"
    )
    n: int | None = Field(1, ge=1, le=1, description="only 1: one completion per request")
    stream: bool | None = Field(False, description="Server-Sent Events, ending with `data: [DONE]`")
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(
        None,
        ge=0,
        description="return the log-probability of each generated word and of the n most probable "
        "alternatives (server limit: MAX_TOP_N_TOKENS)",
    )
    echo: bool | None = Field(False, description="prepend the prompt to the returned text")
    stop: str | list[str] | None = Field(
        None, description="stop before the first of these; it is cut from the returned text"
    )
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, allow_inf_nan=False, description="minus this for every word already used (0: off)"
    )
    frequency_penalty: float | None = Field(
        None,
        ge=-2,
        le=2,
        allow_inf_nan=False,
        description="as TGI: minus this times the word's share of the tokens so far (0: off)",
    )
    repetition_penalty: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="TGI's extension: > 1 discourages repeats (1: off)"
    )
    seed: int | None = Field(
        None, ge=0, le=2**64 - 1, description="same seed and parameters give the same text"
    )
    best_of: int | None = Field(None, ge=1, le=1, description="only null or 1")
    logit_bias: dict[str, float] | None = Field(None, max_length=0, description="only null or {}")
    suffix: None = Field(None, description="only null: no insertion mode")
    user: str | None = Field(None, description="ignored")

    @property
    def text(self) -> str:
        return self.prompt

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = Field(
        description="per token: the most probable words and their logprobs (null when logprobs is 0)"
    )
    text_offset: list[int] = Field(description="where each token starts in the returned text")


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = Field(
        description="stop: a stop sequence was reached; length: max_tokens; null: more chunks follow"
    )


class Completion(BaseModel):
    """The answer, and (with stream) each chunk: then `choices` hold the new text only, the last chunk the
    finish_reason, and with stream_options.include_usage one more chunk has `usage` and no choices."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
