"""OpenAI's chat protocol: the bodies of POST /v1/chat/completions, the request's mapping to the engine
(the conversation rendered, set up and cut by models.chat.Chat) and the answer built from its generations.

OpenAI semantics: `temperature` defaults to 1 and 0 means greedy; `top_p` 1 is off; `stop` strings end the
reply and are not part of it; `max_tokens` (or `max_completion_tokens`) defaults to 60 words.
Extensions: `character` (who the model plays), `user_character` (who the user is), `top_k`,
`repetition_penalty`; in the answer, `grounding` (the novel's lines recalled for the turn, with chapters).

A sampled reply is chosen: the engine draws a pool of candidates in one batch (the model's chosen number,
or `n` if more), keeps the `n` most relevant once each has said a few tokens (the model's `prune_after`),
models/chat.py ranks those by their relevance to the turn, and the best `n` distinct ones are the choices,
best first. Ranking needs whole replies, so a streamed answer with a pool of more than one
sends each choice's reply in one content chunk once the pool is ranked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.engine.errors import APIError
from app.engine.limits import Limits
from app.engine.run import GenerationRequest
from app.engine.scheduler import TokenEvent
from app.protocols.openai import OpenAISampling, Usage, usage_of
from app.protocols.sampling import TopK
from app.protocols.strict import IgnoresUnknown
from models.chat import (
    DEFAULT_MAX_TOKENS,
    MAX_USER_CHARACTER_CHARS,
    PRUNED,
    USER_CHARACTER_PATTERN,
    Chat,
    ChatError,
    ChatPrompt,
    ChatReply,
    Message,
)
from models.decoding import Generation
from models.tokenizer import NON_BLANK


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


class ChatCompletionRequest(OpenAISampling, TopK):
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


class GroundingLine(BaseModel):
    chapter: int = Field(description="the chapter of the novel (1-based) the exchange is from")
    asker: str
    said: str
    answerer: str
    answer: str
    text: str = Field(description="the exchange as the prompt rendered it before the conversation")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    character: str | None = Field(description="extension: who answered")
    user_character: str = Field(description="extension: who the user's turns were given to")
    seed: int = Field(
        description="extension: the seed used (send it back to get the same reply; choice i > 0 uses a seed "
        "derived from it)"
    )
    grounding: list[GroundingLine] = Field(
        default_factory=list,
        description="extension: the novel's own exchanges recalled for the last user turn and rendered "
        "before the conversation (most relevant first); empty when none shares a word with it",
    )


def grounding_lines(chat: Chat, prompt: ChatPrompt) -> list[GroundingLine]:
    return [
        GroundingLine(
            chapter=recalled.exchange.chapter,
            asker=recalled.exchange.asker,
            said=recalled.exchange.said,
            answerer=recalled.exchange.answerer,
            answer=recalled.exchange.answer,
            text=chat.render_exchange(recalled),
        )
        for recalled in prompt.grounding
    ]


def _messages(body: ChatCompletionRequest) -> list[Message]:
    # Text parts are joined: the schema already refused non-text parts and empty texts.
    return [
        Message(
            role=m.role,
            content=m.content if isinstance(m.content, str) else "".join(p.text for p in m.content),
        )
        for m in body.messages
    ]


def generation_request(
    chat: Chat, limits: Limits, body: ChatCompletionRequest, route: str
) -> tuple[ChatPrompt, GenerationRequest]:
    """The conversation rendered in the novel's dialogue form, and the request the engine runs: n
    candidates of the reply, set up by `Chat.prepare` (stop at the closing quote, no empty reply)."""
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    # Both names are checked when both are sent (max_completion_tokens is the one used).
    for field in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, field)
        if value is not None:
            limits.check_generation(value, body.stops, prefix="", names={"max_new_tokens": field})
    params = body.sampling_params(limits, max_tokens, {})
    try:
        prompt = chat.render(_messages(body), body.character, body.user_character)
    except ChatError as error:
        if error.param == "character":  # a name the novel does not have: not found, like an unknown model
            raise APIError(404, "character_not_found", str(error), param="character") from None
        raise APIError(422, "validation", str(error), param=error.param) from None
    request = GenerationRequest(
        text=prompt.text,
        params=params,
        route=route,
        field="messages",
        candidates=pool_size(chat, params.do_sample, body.n or 1),
        start=partial(chat.prepare, prompt),
        uncut_chars=chat.uncut_chars(prompt),
    )
    return prompt, request


def pool_size(chat: Chat, sampling: bool, n: int) -> int:
    """Candidates drawn for a request of n choices: the model's reranking pool when sampling (greedy
    decoding would draw the same reply every time), never fewer than n."""
    return max(n, chat.rerank.candidates) if sampling else n


def choose(chat: Chat, prompt: ChatPrompt, generations: list[Generation], n: int) -> list[ChatReply]:
    """The n choices: the pool ranked by relevance to the turn (models/chat.py), distinct replies first,
    best first; repeated ones only when the pool holds fewer than n different replies."""
    generations = [g for g in generations if g.finish_reason != PRUNED]  # stopped early: never a choice
    if len(generations) == 1:
        return [chat.reply(prompt, generations[0])]
    ranked = chat.rank_replies(prompt, generations)
    if len(ranked) < n:
        chosen = {id(reply.generation) for reply in ranked}
        ranked += [chat.reply(prompt, g) for g in generations if id(g) not in chosen]
    return ranked[:n]


def chat_completion(
    chat: Chat, prompt: ChatPrompt, replies: list[ChatReply], generations: list[Generation], header: dict
) -> ChatCompletion:
    """The answer of a plain request: the chosen replies in order. Usage counts the choices' tokens, as
    OpenAI counts n choices (the rest of the pool drawn for ranking is the server's cost, not the reply)."""
    return ChatCompletion(
        **header,
        choices=[
            Choice(index=i, message=ReplyMessage(content=reply.text), finish_reason=reply.finish_reason)
            for i, reply in enumerate(replies)
        ],
        usage=usage_of([reply.generation for reply in replies]),
        character=prompt.character,
        user_character=prompt.user_character,
        seed=generations[0].seed,
        grounding=grounding_lines(chat, prompt),
    )


def ranked_chunks(replies: list[ChatReply], header: dict, grounding: list[GroundingLine]) -> list[str]:
    """The stream of a ranked pool: per choice a role chunk, one content chunk and its finish chunk."""
    base = {**header, "object": "chat.completion.chunk"}
    out = []
    for index, reply in enumerate(replies):
        for delta, finish in (
            ({"role": "assistant", "content": ""}, None),
            ({"content": reply.text}, None),
            ({}, reply.finish_reason),
        ):
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunk = {**base, "choices": [choice]}
            if not out:  # the very first chunk carries the extension, as in the token stream
                chunk["grounding"] = [line.model_dump() for line in grounding]
            out.append(json.dumps(chunk, ensure_ascii=False))
    return out


def stream_renderer(
    chat: Chat, generations: list[Generation], header: dict, grounding: list[GroundingLine] | None = None
) -> tuple[list[str], Callable[[TokenEvent], list[str]]]:
    """OpenAI's chat stream for app/http/streaming.py: a role chunk per choice first (the first one carries
    the `grounding` extension), then content chunks as each reply is released by its cutter (tagged with the
    choice's index), and each choice's finish chunk."""
    base = {**header, "object": "chat.completion.chunk"}
    cutters = [chat.cutter(generation.params) for generation in generations]
    finished = [False] * len(generations)

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return json.dumps({**base, "choices": [choice]}, ensure_ascii=False)

    def render(event: TokenEvent) -> list[str]:
        index, cutter = event.choice, cutters[event.choice]
        if finished[index]:
            return []
        text = "".join(piece for _, piece in cutter.push(event.token.text))
        out = [chunk(index, {"content": text})] if text else []
        # The closing quote (or a stop string) ends the reply; the decoder stops on the same token.
        if cutter.stopped or event.finish_reason is not None:
            finished[index] = True
            rest = "".join(piece for _, piece in cutter.finish())
            out += [chunk(index, {"content": rest})] if rest else []
            out.append(chunk(index, {}, "stop" if cutter.stopped else "length"))
        return out

    opening = [chunk(index, {"role": "assistant", "content": ""}) for index in range(len(generations))]
    if grounding:
        first = json.loads(opening[0])
        opening[0] = json.dumps(
            {**first, "grounding": [line.model_dump() for line in grounding]}, ensure_ascii=False
        )
    return opening, render
