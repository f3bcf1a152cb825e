"""What the OpenAI-compatible routes under /v1 share: the request fields of completions and chat and their
mapping to SamplingParams (OpenAI's meaning: `temperature` 0 is greedy, anything else samples, null is 1),
usage counting, the model list, stream options.

**Usage** counts tokens as the model sees them (jieba words, rare words as their characters), the same numbers
as TGI's `x-prompt-tokens` / `x-generated-tokens` headers and `POST /tokenize`. The error shape is an HTTP
concern (app/http/openai_errors.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.engine.errors import APIError
from app.engine.limits import Limits
from app.protocols.sampling import SamplingFields
from app.protocols.strict import IgnoresUnknown
from models.decoding import Generation, SamplingParams


class StreamOptions(IgnoresUnknown):
    include_usage: bool | None = Field(
        False, description="send one more chunk before [DONE] with `usage` and no choices"
    )


class OpenAISampling(SamplingFields):
    """The fields completions and chat share (repetition_penalty is TGI's, as an extension)."""

    temperature: float | None = Field(
        None,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="0: greedy (always the most probable word); otherwise sampling at this temperature "
        "(null: 1)",
    )
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, allow_inf_nan=False, description="minus this for every word already used (0: off)"
    )
    stop: str | list[str] | None = Field(
        None, description="stop before the first of these; it is cut from the returned text"
    )
    n: int | None = Field(
        None,
        ge=1,
        description="how many choices to return, each sampled with its own seed (null: 1; server limit: "
        "/info max_best_of)",
    )
    stream: bool | None = Field(False, description="Server-Sent Events, ending with `data: [DONE]`")
    stream_options: StreamOptions | None = None

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling_params(
        self, limits: Limits, max_tokens: int, names: dict[str, str], top_n_tokens: int = 0
    ) -> SamplingParams:
        """The request's SamplingParams, checked against the server's limits; `names` maps TGI's names of
        the limits (max_new_tokens, top_n_tokens) to this request's fields, for the messages."""
        stops = self.stops
        if any(stop == "" for stop in stops):
            raise APIError(422, "validation", "stop sequences must be non-empty strings", param="stop")
        limits.check_generation(max_tokens, stops, top_n_tokens, prefix="", names=names)
        limits.check_top_k(getattr(self, "top_k", None), "top_k")
        limits.check_candidates(self.n or 1, "n")
        greedy = self.temperature == 0
        params = SamplingParams(
            max_new_tokens=max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else self.temperature,
            presence_penalty=self.presence_penalty,
            stop=tuple(stops),
            top_n_tokens=top_n_tokens,
            **self.shared_params(),
        )
        try:
            params.validate()
        except ValueError as error:  # the schema already checks these ranges; this keeps the two in step
            raise APIError(422, "validation", str(error)) from None
        return params


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens of the prompt as the model read it")
    completion_tokens: int = Field(description="tokens generated")
    total_tokens: int


def usage_of(generations: list[Generation]) -> Usage:
    """Token counts of a request's finished (or cut short) generations: the prompt once, as OpenAI counts
    it for n choices, and every choice's tokens."""
    prompt = len(generations[0].prompt.ids)
    completion = sum(len(generation.tokens) for generation in generations)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ModelCard(BaseModel):
    id: str = Field(description="the model's name; send it as `model` (any value is accepted: one model)")
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was trained (Unix seconds)")
    owned_by: str = "novel-lstm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
