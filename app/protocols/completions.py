"""OpenAI's completions protocol: the bodies of POST /v1/completions in OpenAI's shapes (the `openai` client
parses them), the request's mapping to the engine and the answer built from its generations.

As on the TGI routes, fields this server does not know are ignored (and logged) and what it cannot do is a
422 saying why: `suffix`, `logit_bias`, token-id prompts, more than one prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from app.engine.limits import Limits
from app.engine.run import GenerationRequest
from app.engine.scheduler import TokenEvent
from app.protocols.openai import OpenAISampling, Usage, usage_of
from models.decoding import GeneratedToken, Generation
from models.stops import StopCutter

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


class CompletionRequest(OpenAISampling):
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
    logprobs: int | None = Field(
        None,
        ge=0,
        description="return the log-probability of each generated word and of the n most probable "
        "alternatives (server limit: MAX_TOP_N_TOKENS)",
    )
    echo: bool | None = Field(False, description="prepend the prompt to the returned text")
    best_of: int | None = Field(None, ge=1, le=1, description="only null or 1 (n returns several choices)")
    logit_bias: dict[str, float] | None = Field(None, max_length=0, description="only null or {}")
    suffix: None = Field(None, description="only null: no insertion mode")
    user: str | None = Field(None, description="ignored")

    @property
    def text(self) -> str:
        return self.prompt


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


# TGI's names -> this route's, for the limit messages.
_NAMES = {"max_new_tokens": "max_tokens", "top_n_tokens": "logprobs"}
_FINISH = {"stop_sequence": "stop", "length": "length"}


def generation_request(limits: Limits, body: CompletionRequest, route: str) -> GenerationRequest:
    """A completions request as the engine runs it: n candidates, each one choice."""
    limits.check_prompt(body.text, field="prompt")
    max_tokens = body.max_tokens if body.max_tokens is not None else DEFAULT_MAX_TOKENS
    params = body.sampling_params(limits, max_tokens, _NAMES, body.logprobs or 0)
    return GenerationRequest(
        text=body.text, params=params, route=route, field="prompt", candidates=body.n or 1
    )


class _Pieces:
    """Turns one choice's generated tokens into the text (and logprobs) a completion returns: stop sequences
    cut off, the prompt prepended with echo, each token's offset in the returned text."""

    def __init__(self, body: CompletionRequest, words: list[str]) -> None:
        self.words = words
        self.logprobs = body.logprobs
        self.cutter = StopCutter(body.stops)
        self.prefix = body.text if body.echo else ""
        self.offset = 0

    def take(
        self, generation: Generation, released: list[tuple[int, str]]
    ) -> tuple[str, CompletionLogprobs | None]:
        text = ""
        if self.prefix:
            text, self.prefix = self.prefix, ""
            self.offset += len(text)
        tokens, token_logprobs, tops, offsets = [], [], [], []
        for index, piece in released:
            token: GeneratedToken = generation.tokens[index]
            tokens.append(piece)
            token_logprobs.append(token.logprob if math.isfinite(token.logprob) else -1e30)
            tops.append({self.words[i]: logprob for i, logprob in token.top})
            offsets.append(self.offset)
            self.offset += len(piece)
            text += piece
        if self.logprobs is None:
            return text, None
        return text, CompletionLogprobs(
            tokens=tokens,
            token_logprobs=token_logprobs,
            top_logprobs=tops if self.logprobs > 0 else None,
            text_offset=offsets,
        )

    def choice(self, index: int, generation: Generation) -> CompletionChoice:
        """The whole choice of a finished generation."""
        released = [piece for token in generation.tokens for piece in self.cutter.push(token.text)]
        text, logprobs = self.take(generation, released + self.cutter.finish())
        finish_reason = _FINISH[generation.finish_reason or "length"]
        return CompletionChoice(text=text, index=index, logprobs=logprobs, finish_reason=finish_reason)


def completion(
    body: CompletionRequest, generations: list[Generation], words: list[str], header: dict
) -> Completion:
    """The answer of a plain request: one choice per candidate."""
    choices = [_Pieces(body, words).choice(index, g) for index, g in enumerate(generations)]
    return Completion(**header, choices=choices, usage=usage_of(generations))


def stream_renderer(
    body: CompletionRequest, count: int, words: list[str], header: dict
) -> Callable[[TokenEvent], list[str]]:
    """The render callback of app/http/streaming.py: one chunk per released piece of a choice's text (a
    token, once no stop sequence can begin in it), the choice's last chunk with its finish_reason."""
    pieces = [_Pieces(body, words) for _ in range(count)]
    exclude = {"usage"} if not body.include_usage else set()

    def render(event: TokenEvent) -> list[str]:
        choice = pieces[event.choice]
        released = choice.cutter.push(event.token.text)
        if event.finish_reason is not None:
            released += choice.cutter.finish()
        elif not released and not choice.prefix:
            return []
        text, logprobs = choice.take(event.generation, released)
        finish_reason = _FINISH[event.finish_reason] if event.finish_reason else None
        part = CompletionChoice(text=text, index=event.choice, logprobs=logprobs, finish_reason=finish_reason)
        return [Completion(**header, choices=[part]).model_dump_json(exclude=exclude)]

    return render
