"""POST /v1/chat/completions (OpenAI's chat API) and GET /characters: chat with the novel's characters.

The route only translates: app/protocols/chat.py validates the request, renders the conversation through
models/chat.py (shared with the playground's chat tab, which calls this route, and the chat evaluation) and
builds the answer; the engine runs the reply in the worker's batch like every other generation.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request

from app.http.connection import disconnected
from app.http.openai_errors import openai_error_responses
from app.http.streaming import event_stream
from app.protocols.chat import (
    ChatCompletion,
    ChatCompletionRequest,
    chat_completion,
    choose,
    generation_request,
    grounding_lines,
    ranked_chunks,
    stream_renderer,
)
from app.protocols.openai import usage_of
from app.routes.dependencies import Service

router = APIRouter(tags=["OpenAI compatible"])
ROUTE = "/v1/chat/completions"


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
async def chat_completions(body: ChatCompletionRequest, request: Request, service: Service) -> Any:
    chat = service.chat
    prompt, run = generation_request(chat, service.limits, body, ROUTE)
    generations = await service.prepare(run)
    header = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": service.name}
    grounding = grounding_lines(chat, prompt)
    chosen = generations  # the generations the answer's choices come from (usage counts their tokens)

    def closing() -> list[str]:
        usage = {**header, "object": "chat.completion.chunk", "choices": [], "usage": None}
        usage["usage"] = usage_of(chosen).model_dump()
        return [*([json.dumps(usage)] if body.include_usage else []), "[DONE]"]

    if not body.stream or len(generations) > 1:
        # A pool is ranked once every candidate has finished (model work: in the model's lane).
        # The pool keeps its n best once each candidate has said a few tokens (RerankConfig.prune_after).
        prune = chat.pruner(prompt, keep=body.n or 1)
        finished = await service.complete(generations, run.route, disconnected(request), prune=prune)
        replies = await service.run_model(choose, chat, prompt, finished, body.n or 1)
        chosen = [reply.generation for reply in replies]
        if not body.stream:
            return chat_completion(chat, prompt, replies, finished, header)
        return event_stream(
            ROUTE, None, None, opening=ranked_chunks(replies, header, grounding), closing=closing
        )
    tokens = service.stream(generations, run.route)
    opening, render = stream_renderer(chat, generations, header, grounding)
    return event_stream(ROUTE, tokens, render, opening=opening, closing=closing)


@router.get("/characters", summary="The novel's speakers a chat can pick (found at training time)")
def characters(service: Service) -> dict[str, Any]:
    found = service.model.characters
    default = found.most_frequent
    return {
        "default": default.name if default is not None else None,
        **found.to_json(),
    }
