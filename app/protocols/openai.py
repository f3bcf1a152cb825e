"""What the OpenAI-compatible routes under /v1 share: usage counting, the model list, stream options.

**Usage** counts tokens as the model sees them (jieba words, rare words as their characters), the same numbers
as TGI's `x-prompt-tokens` / `x-generated-tokens` headers and `POST /tokenize`. The error shape is an HTTP
concern (app/http/openai_errors.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.protocols.strict import IgnoresUnknown
from models.decoding import Generation


class StreamOptions(IgnoresUnknown):
    include_usage: bool | None = Field(
        False, description="send one more chunk before [DONE] with `usage` and no choices"
    )


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens of the prompt as the model read it")
    completion_tokens: int = Field(description="tokens generated")
    total_tokens: int


def usage_of(generation: Generation) -> Usage:
    """Token counts of a finished (or cut short) generation."""
    prompt = len(generation.prompt.ids)
    completion = len(generation.tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ModelCard(BaseModel):
    id: str = Field(description="the model's name; send it as `model` (any value is accepted: one model)")
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was trained (Unix seconds)")
    owned_by: str = "novel-lstm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
