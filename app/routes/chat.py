"""POST /v1/chat/completions (OpenAI's chat API) and GET /characters: chat with the novel's characters.

The route only maps HTTP shapes: rendering the conversation into the novel's dialogue form, the generation
and the cut at the closing quote are models/chat.py's, shared with the playground's chat tab (which calls
this route) and the chat evaluation. The generation runs in the worker's batching scheduler like every
other (app/engine/service.py), so a chat reply is batched with /generate requests.

OpenAI semantics: `temperature` defaults to 1 and 0 means greedy; `top_p` 1 is off; `stop` strings end the
reply and are not part of it; `max_tokens` (or `max_completion_tokens`) defaults to 60 words; `n` must be 1;
`presence_penalty` (OpenAI's: minus the penalty for every word already used) and `frequency_penalty` (as TGI's
OpenAI route: minus the penalty times the share of the tokens so far) are applied by models/sampling.py.
Extensions: `character` (who the model plays), `user_character` (who the user is), `top_k`,
`repetition_penalty`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from app.engine.errors import APIError
from app.engine.service import ClientDisconnected, ModelService, TokenStream
from app.http.openai_errors import openai_error_body, openai_error_responses
from app.protocols.chat import ChatCompletion, ChatCompletionRequest, Choice, ReplyMessage
from app.protocols.openai import usage_of
from app.routes.dependencies import AppMetrics, Service
from models.chat import (
    DEFAULT_MAX_TOKENS,
    ChatError,
    ChatPrompt,
    Message,
)
from models.decoding import Generation, SamplingParams

logger = logging.getLogger("app")
router = APIRouter(tags=["OpenAI compatible"])
ROUTE = "/v1/chat/completions"
CLIENT_CLOSED_REQUEST = 499


def _fail(message: str, param: str | None) -> APIError:
    return APIError(422, "validation", message, param=param)


def _messages(body: ChatCompletionRequest) -> list[Message]:
    # Text parts are joined: the schema already refused non-text parts and empty texts.
    return [
        Message(
            role=m.role,
            content=m.content if isinstance(m.content, str) else "".join(p.text for p in m.content),
        )
        for m in body.messages
    ]


def _sampling(body: ChatCompletionRequest, service: ModelService) -> SamplingParams:
    if body.n not in (None, 1):
        raise _fail(f"n is {body.n}: this server returns one choice per request; send n=1", "n")
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not s for s in stop):
        raise _fail("stop strings must not be empty", "stop")
    # The server limits of /info, checked and worded as for every other route (app/engine/service.py);
    # both names are checked when both are sent (max_completion_tokens is the one used).
    for field in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, field)
        if value is not None:
            service.check_generation_limits(value, stop, prefix="", names={"max_new_tokens": field})
    service.check_generation_limits(max_tokens, stop, prefix="")
    service.check_top_k(body.top_k, "top_k")
    temperature = 1.0 if body.temperature is None else body.temperature
    greedy = temperature == 0
    params = SamplingParams(
        max_new_tokens=max_tokens,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_k=body.top_k,
        top_p=None if body.top_p is None or body.top_p >= 1 else body.top_p,
        repetition_penalty=body.repetition_penalty,
        presence_penalty=body.presence_penalty or None,
        frequency_penalty=body.frequency_penalty or None,
        seed=body.seed,
        stop=tuple(stop),
    )
    try:
        params.validate()
    except ValueError as error:
        raise _fail(str(error), None) from None
    return params


async def _prepare(body: ChatCompletionRequest, service: ModelService) -> tuple[ChatPrompt, Generation]:
    params = _sampling(body, service)
    try:
        prompt = service.chat.render(_messages(body), body.character, body.user_character)
    except ChatError as error:
        if error.param == "character":  # a name the novel does not have: not found, like an unknown model
            raise APIError(404, "character_not_found", str(error), param="character") from None
        raise _fail(str(error), error.param) from None
    generation = await service.prepare(prompt.text, service.chat.sampling(params))
    return prompt, generation


@router.post(
    ROUTE,
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "a chat.completion; with stream=true, Server-Sent Events of chat.completion.chunk "
            "objects ending with `data: [DONE]`",
        },
        **openai_error_responses(404, 422, 429),
    },
    summary="Chat with a character of the novel (OpenAI chat completions)",
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, service: Service, metrics: AppMetrics
) -> Any:
    prompt, generation = await _prepare(body, service)
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    if body.stream:
        tokens = service.stream(generation)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _chunks(service, prompt, tokens, completion_id, created, include_usage, metrics)
        return EventSourceResponse(events, ping=15)
    try:
        generation = await service.complete(generation, request)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    metrics.tokens.labels(ROUTE).inc(len(generation.tokens))
    reply = service.chat.reply(prompt, generation)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=service.name,
        choices=[Choice(message=ReplyMessage(content=reply.text), finish_reason=reply.finish_reason)],
        usage=usage_of(generation),
        character=prompt.character,
        user_character=prompt.user_character,
        seed=generation.seed,
    )


async def _chunks(
    service: ModelService,
    prompt: ChatPrompt,
    tokens: TokenStream,
    completion_id: str,
    created: int,
    include_usage: bool,
    metrics: AppMetrics,
) -> AsyncIterator[dict]:
    """OpenAI's stream: a role chunk, content chunks as the reply is released by the cutter, a chunk with
    finish_reason, an optional usage chunk, then [DONE]. Leaving early (disconnect) cancels the generation."""
    generation = tokens.generation
    cutter = service.chat.cutter(generation.params)
    counter = metrics.tokens.labels(ROUTE)
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": service.name}

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"data": json.dumps({**base, "choices": [choice]}, ensure_ascii=False)}

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for token in tokens:
            counter.inc()
            text = "".join(piece for _, piece in cutter.push(token.text))
            if text:
                yield chunk({"content": text})
            if cutter.stopped:
                # The closing quote (or a stop string) ended the reply; the decoder stops on the same token.
                break
        rest = "".join(piece for _, piece in cutter.finish())
        if rest:
            yield chunk({"content": rest})
    except Exception:
        logger.exception("chat generation failed in the middle of a stream")
        failure = openai_error_body("generation failed; the server log has the details", 500, code="internal")
        yield {"data": json.dumps(failure)}
        return
    yield chunk({}, "stop" if cutter.stopped else "length")
    if include_usage:
        usage = usage_of(generation).model_dump()
        yield {"data": json.dumps({**base, "choices": [], "usage": usage})}
    yield {"data": "[DONE]"}


@router.get("/characters", summary="The novel's speakers a chat can pick (found at training time)")
def characters(service: Service) -> dict[str, Any]:
    found = service.model.characters
    default = found.most_frequent
    return {
        "default": default.name if default is not None else None,
        **found.to_json(),
    }
