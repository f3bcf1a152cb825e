"""Graceful drain on SIGTERM, which a deploy, a scale-down or `docker compose stop` sends to a replica.

uvicorn handles SIGTERM on its own by closing its listening socket at once and waiting for the open requests.
That cannot tell anyone it is stopping (a closed port answers no /health), and a stream that runs long keeps
it waiting until the orchestrator's SIGKILL cuts the stream off without a last event. So when the app starts
(in the lifespan, after uvicorn has installed its handlers) it puts this handler in front of uvicorn's:

1. SIGTERM flips the service to draining: /health answers 503 (readiness: proxies and Kubernetes stop sending
   new requests), a new generation gets 503 `unavailable` with Retry-After (nothing ran, so it is safe to send
   again), and the socket stays open so both can be answered. /ping stays 200: the process is alive.
2. Running and waiting generations go on for up to DRAIN_TIMEOUT seconds; whatever still runs then is ended
   with an error (a stream's last event says the server stopped, a plain request gets the error answer).
3. The signal is then handed to the handler that was there before (uvicorn's), which closes the socket, waits
   for the responses still being written, runs the lifespan shutdown and exits.

sse-starlette (app/http/streaming.py) ends every open event stream the moment uvicorn's handler runs, and so
would cut the drained streams' last events still being written; while this handler is installed it leaves
ending them to the drain (streams end by themselves once their generation has), and ends any left after a
short grace itself. SIGINT (Ctrl+C) keeps uvicorn's own behaviour, streams cut at once. Each uvicorn worker
process drains on its own: with --workers N, uvicorn's supervisor passes SIGTERM on to every worker. The
in-process test client runs the lifespan outside the main thread, where signal handlers cannot be set; there
the handler is simply not installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType

from sse_starlette.sse import AppStatus

from app.engine.service import ModelService

logger = logging.getLogger("app")

# After the drain, how long the last responses may take to be written before open streams are ended anyway
# (a client that stopped reading must not hold the process until the orchestrator's SIGKILL).
STREAM_GRACE_SECONDS = 5.0


class DrainOnSigterm:
    """Install with `install()` on the running event loop (the app's start-up); `uninstall()` at shutdown."""

    def __init__(self, service: ModelService, timeout: float) -> None:
        self.service = service
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: signal.Handlers | object = signal.SIG_DFL
        self._previous_sigint: signal.Handlers | object = signal.SIG_DFL
        self._task: asyncio.Task | None = None

    def install(self) -> bool:
        """True when installed (only the main thread may set signal handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        self._previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigint = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigint)
        AppStatus.disable_automatic_graceful_drain()
        return True

    def uninstall(self) -> None:
        if self._loop is None:
            return
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        AppStatus.should_exit = True  # what sse-starlette's own hook would have done: end the streams now
        if callable(self._previous_sigint):
            self._previous_sigint(signum, frame)
        else:
            raise KeyboardInterrupt

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Python runs signal handlers on the main thread between two bytecodes of whatever it was doing, which
        # here is the event loop: hand the work to the loop instead of running it in the middle of a callback.
        if self._task is not None:
            logger.info("SIGTERM again: already draining")
            return
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        logger.warning(
            "SIGTERM: draining; /health answers 503, new generations are refused, %d running or waiting "
            "get up to %g s (DRAIN_TIMEOUT)",
            self.service.scheduler.in_flight,
            self.timeout,
        )
        finished, cut = await self.service.drain(self.timeout)
        logger.warning(
            "drained: %d generations finished, %d cut at the drain timeout; stopping", finished, cut
        )
        # Give the server its own SIGTERM handling back and let it run: close the socket, finish writing the
        # last responses (the cut streams' error events included), shut the app down and exit.
        self.uninstall()
        signal.raise_signal(signal.SIGTERM)
        self._loop.call_later(STREAM_GRACE_SECONDS, _end_open_streams)


def _end_open_streams() -> None:
    AppStatus.should_exit = True
