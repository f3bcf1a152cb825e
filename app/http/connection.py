"""The connection of a plain (non-streamed) request, watched while its generation runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request


def disconnected(request: Request) -> Callable[[], Awaitable[None]]:
    """A coroutine function that returns when the client has gone, for `ModelService.complete`: a plain
    answer is written only at the end, so nothing else would notice a client leaving before it. After the
    body has been read, the server's `receive` answers only `http.disconnect` (uvicorn, and Starlette's
    TestClient once the response is complete)."""

    async def gone() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return gone
