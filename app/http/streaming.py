"""One Server-Sent Events answer for every streamed generation: /generate_stream (and POST /, /generate with
"stream": true), /v1/completions and /v1/chat/completions.

The loop, the failure policy and the headers are here once; a route passes only what its protocol adds: the
`render` callback turning one token event into that protocol's `data:` payloads (none while a stop sequence
may still be forming), what comes before the first token (chat's role chunk) and after the last (usage,
`[DONE]`). A disconnect cancels the task iterating the events, which cancels the generations (the engine's
TokenStream). A failure while decoding is TGI's 424 `generation`, sent as one last event in the path's error
shape (TGI's or OpenAI's), since the 200 status has already been sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from sse_starlette import EventSourceResponse

from app.engine.run import TokenStream
from app.engine.scheduler import GenerationFailed, TokenEvent
from app.http.errors import error_payload

logger = logging.getLogger("app")

Render = Callable[[TokenEvent], Iterable[str]]

# A comment line every 15 s keeps proxies from closing a stream that waits for a slot in the batch.
_PING_SECONDS = 15


def event_stream(
    path: str,
    tokens: TokenStream | None,
    render: Render | None,
    opening: Iterable[str] = (),
    closing: Callable[[], Iterable[str]] = tuple,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    """The streamed answer of a submitted request on `path`: `opening`, render(event) for every token event,
    then closing() once every candidate has finished. Without `tokens` (a request already finished, such as
    chat's ranked pool) only `opening` and closing() are sent."""

    async def events() -> AsyncIterator[dict[str, str]]:
        for data in opening:
            yield {"data": data}
        try:
            async for event in tokens if tokens is not None and render is not None else _nothing():
                for data in render(event):
                    yield {"data": data}
        except GenerationFailed as error:
            logger.error("generation failed in the middle of a stream: %s", error)
            # The server's own reason: a bug it logged, or the drain timeout of a server that is stopping.
            message = f"the generation failed on the server ({error}); the server log has the details"
            yield {"data": json.dumps(error_payload(path, 424, "generation", message), ensure_ascii=False)}
            return
        for data in closing():
            yield {"data": data}

    async def _nothing() -> AsyncIterator[TokenEvent]:
        return
        yield

    # X-Accel-Buffering: nginx (docker-compose.yml) would otherwise hold tokens back in its buffer.
    headers = {**(headers or {}), "X-Accel-Buffering": "no"}
    return EventSourceResponse(events(), ping=_PING_SECONDS, headers=headers)
