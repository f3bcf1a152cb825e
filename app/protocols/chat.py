"""OpenAI's chat protocol: the bodies of POST /v1/chat/completions.

OpenAI semantics: `temperature` defaults to 1 and 0 means greedy; `top_p` 1 is off; `stop` strings end the
reply and are not part of it; `max_tokens` (or `max_completion_tokens`) defaults to 60 words.
Extensions: `character` (who the model plays), `user_character` (who the user is), `top_k`,
`repetition_penalty`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.protocols.openai import StreamOptions, Usage
from app.protocols.strict import NON_BLANK, IgnoresUnknown
from models.chat import DEFAULT_MAX_TOKENS, MAX_USER_CHARACTER_CHARS, USER_CHARACTER_PATTERN


# Strict types as everywhere in this API (app/protocols/strict.py): "1" is not a number, 0 is not a
# boolean, 18.0 is 18; unknown fields are ignored (chat front-ends send many: user, tools,
# response_format, ...).
class ContentPart(IgnoresUnknown):
    type: Literal["text"] = Field(description='only "text" parts: the model reads text, not images or audio')
    text: str = Field(min_length=1, pattern=NON_BLANK)


class ChatMessage(IgnoresUnknown):
    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(min_length=1, pattern=NON_BLANK)]
        | Annotated[list[ContentPart], Field(min_length=1)]
    ) = Field(description="a string, or a list of text parts")
    name: str | None = None


CHAT_EXAMPLE = {
    "model": "hongloumeng",
    "messages": [
        {"role": "system", "content": "你是林黛玉"},
        {"role": "user", "content": "妹妹今日可好？"},
    ],
    "max_tokens": 40,
    "temperature": 0.8,
    "top_p": 0.9,
    "seed": 42,
}


class ChatCompletionRequest(IgnoresUnknown):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                CHAT_EXAMPLE,
                {**CHAT_EXAMPLE, "messages": [{"role": "user", "content": "你好"}], "character": "凤姐"},
            ]
        },
    )

    model: str | None = Field(None, description="any value: the server serves one model")
    messages: list[ChatMessage] = Field(
        min_length=1, description="the conversation; the reply answers the last turns"
    )
    max_tokens: int | None = Field(
        None, ge=1, description=f"words in the reply at most (default {DEFAULT_MAX_TOKENS})"
    )
    max_completion_tokens: int | None = Field(None, ge=1, description="the newer name of max_tokens")
    temperature: float | None = Field(
        None, ge=0, le=2, allow_inf_nan=False, description="0 = greedy; default 1"
    )
    top_p: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="nucleus sampling; 1 = off"
    )
    top_k: int | None = Field(None, ge=1, description="extension: sample among the k most probable words")
    repetition_penalty: float | None = Field(None, gt=0, allow_inf_nan=False, description="extension (TGI)")
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    stop: str | list[str] | None = Field(None, description="strings that end the reply (not included)")
    seed: int | None = Field(None, ge=0, le=2**64 - 1, description="same seed and parameters, same reply")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported (one choice per request)")
    character: str | None = Field(
        None,
        min_length=1,
        pattern=NON_BLANK,
        description="extension: the character the model plays (GET /characters); unknown names are a 404",
    )
    user_character: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_USER_CHARACTER_CHARS,
        pattern=USER_CHARACTER_PATTERN,
        description="extension: the name the user's turns are given (no spaces or quotation marks)",
    )


class ReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ReplyMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    character: str | None = Field(description="extension: who answered")
    user_character: str = Field(description="extension: who the user's turns were given to")
    seed: int = Field(description="extension: the seed used (send it back to get the same reply)")
