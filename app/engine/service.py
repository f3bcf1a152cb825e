"""The engine: the loaded model, the server's limits, the worker's scheduler, and the one run path every
generation route takes.

    request = GenerationRequest(text, params, route)        # built by a protocol (app/protocols/)
    generations = await service.prepare(request)             # 422: empty prompt; cut, nothing queued yet
    # either the end (cancelled if the client disconnects first; ranked best first by `score` if given):
    generations = await service.complete(generations, request.route, disconnected, score)
    # or token events as they are decoded (429 is raised here, before a streamed response starts):
    async for event in service.stream(generations, request.route): ...

Why this shape: validation (`prepare`) is separate from submission, so a bad request is a 422 and never
takes a place in the batch or the queue; `stream` submits synchronously, so "overloaded" is a plain 429
answer and not an error in the middle of an event stream; and leaving an `async for` early, or a route task
cancelled by a disconnect, cancels the generations, so abandoned work stops within one scheduler tick.
`complete` watches the connection itself, because a plain response is only written at the end.

One failure policy for every protocol: a request the server cannot take is an APIError before anything is
queued (422 validation, 429 overloaded); decoding that fails on the server's side is 424 `generation`
(`generation_error`), or, once a stream has started, the `GenerationFailed` the stream raises (app/http/
streaming.py turns it into the protocol's error event); a client that went away is `ClientDisconnected`
(app/http/errors.py answers nginx's 499, which only logs and metrics see).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from anyio import CapacityLimiter, to_thread

from app.engine.errors import APIError, ClientDisconnected
from app.engine.limits import Limits
from app.engine.run import GenerationRequest, Score, TokenStream, candidates
from app.engine.scheduler import Draining, GenerationFailed, Overloaded, Prune, Scheduler, Ticket
from app.metrics import Metrics
from app.settings import Settings
from models.artifacts import ArtifactError
from models.cache import ContinuousCache
from models.chat import Chat
from models.decoding import Decoder, EmptyPromptError, Generation
from models.rerank import RerankConfig
from models.trained import TrainedModel

_Result = TypeVar("_Result")

# Prompts up to this many characters are cut on the event loop (see ModelService.prepare).
INLINE_PROMPT_CHARS = 32

logger = logging.getLogger("app")


class ModelLoadError(Exception):
    """The configured model directory cannot be served; str() is the one line printed at start-up."""


def train_hint(model_dir: Path) -> str:
    return (
        f"train one with `make train OUT={model_dir}` (or `python -m training --corpus hongloumeng --out "
        f"{model_dir}`), or point MODEL_DIR at an existing model directory"
    )


def load_model(model_dir: Path) -> TrainedModel:
    """TrainedModel.load with every failure turned into one actionable line."""
    if not model_dir.exists():
        raise ModelLoadError(f"model directory {model_dir} does not exist; {train_hint(model_dir)}")
    try:
        return TrainedModel.load(model_dir)
    except ArtifactError as error:
        # ArtifactError already names the file, the problem and the fix; add where a fresh model comes from.
        raise ModelLoadError(f"{error} (`make train OUT={model_dir}` trains a new model there)") from None
    except (OSError, ValueError, KeyError) as error:
        # TrainedModel.load wraps these in ArtifactError; a safety net so start-up still ends in one line.
        raise ModelLoadError(f"cannot serve {model_dir}: {error}; {train_hint(model_dir)}") from None


class ModelService:
    def __init__(self, model: TrainedModel, settings: Settings, metrics: Metrics | None = None) -> None:
        self.model = model
        self.settings = settings
        self.limits = Limits(settings)
        self.metrics = metrics
        cache = (
            ContinuousCache(model.cache) if model.cache is not None and settings.continuous_cache else None
        )
        self.decoder = Decoder(model.network, model.vectors, model.tokenizer, model.mixture, cache)
        # Chat keeps within the prompt limit too; without grounding it neither recalls nor ranks.
        grounded = settings.chat_grounding
        self.chat = Chat(
            self.decoder,
            model.characters,
            settings.max_prompt_chars,
            memory=model.memory if grounded else None,
            rerank=None if grounded else RerankConfig(candidates=1),
        )
        self.name = model.directory.name
        self._model_lane: CapacityLimiter | None = None
        self._draining = False
        self.scheduler = Scheduler(self.decoder, settings.max_batch_size, settings.max_waiting, metrics)

    # ------------------------------------------------------------------------------------------- the run path
    async def prepare(self, request: GenerationRequest) -> list[Generation]:
        """Cut the prompt into the request's candidates, ready to submit. Raises APIError 422 for a prompt the
        model cannot condition on (naming the request's prompt field). Nothing is queued yet.

        jieba is CPU work, so a long prompt is cut in a worker thread; a short one (the usual case) is cut
        right here: its few tens of microseconds cost less than the hop to a thread and back, which hands
        the GIL to and from the scheduler thread (measured with py-spy on the benchmark server). A grounded
        chat turn is long but mostly recalled lines already cut (`GenerationRequest.uncut_chars`)."""
        start = request.start or (lambda params: self.decoder.generate(request.text, params))
        uncut = len(request.text) if request.uncut_chars is None else request.uncut_chars
        try:
            if uncut <= INLINE_PROMPT_CHARS:
                first = start(request.params)
            else:
                first = await to_thread.run_sync(start, request.params)
        except EmptyPromptError as error:
            raise prompt_error(error, request.field) from None
        except ValueError as error:  # parameter ranges; the protocols checked them already
            raise APIError(422, "validation", str(error)) from None
        return candidates(first, request.candidates)

    def stream(self, generations: list[Generation], route: str) -> TokenStream:
        """Submit for token-by-token delivery. Raises APIError 429 (with Retry-After) when overloaded."""
        ticket = self._submit(generations, stream=True)
        return TokenStream(ticket, self.metrics.tokens.labels(route).inc if self.metrics else lambda: None)

    async def complete(
        self,
        generations: list[Generation],
        route: str,
        disconnected: Callable[[], Awaitable[None]] | None = None,
        score: Score | None = None,
        prune: Prune | None = None,
    ) -> list[Generation]:
        """Submit and wait for every candidate's end; with `score`, they come back best first (ties keep
        their order). `disconnected` returns when the client has gone: then the generations are cancelled
        (their slots are free within one tick) and ClientDisconnected is raised. `prune` may stop some
        candidates early (app/engine/scheduler.py, Prune). Raises APIError 429 when
        overloaded, 424 when decoding failed."""
        ticket = self._submit(generations, stream=False, prune=prune)
        try:
            finished = await _unless_gone(ticket, disconnected)
        except GenerationFailed as error:
            raise generation_error(error) from None
        if self.metrics is not None:
            self.metrics.tokens.labels(route).inc(sum(len(g.tokens) for g in finished))
        return sorted(finished, key=score, reverse=True) if score is not None else finished

    def _submit(self, generations: list[Generation], stream: bool, prune: Prune | None = None) -> Ticket:
        try:
            return self.scheduler.submit(generations, stream=stream, prune=prune)
        except Overloaded as error:
            if self.metrics is not None:
                self.metrics.overloaded.inc()
            raise APIError(
                429, "overloaded", str(error), headers={"Retry-After": str(error.retry_after)}
            ) from None
        except Draining as error:
            if self.metrics is not None:
                self.metrics.drain_refused.inc()
            # Nothing ran, so the request is safe to send again: another replica answers it. Connection:
            # close, so a client that keeps its connections open opens a new one (to a replica not stopping).
            raise APIError(
                503,
                "unavailable",
                f"{error}; send the request again (another replica takes it)",
                headers={"Retry-After": "1", "Connection": "close"},
            ) from None

    # ------------------------------------------------------------------------------------------------ drain
    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self, timeout: float) -> tuple[int, int]:
        """Stop taking generations and give the running and waiting ones `timeout` seconds to finish; end the
        rest with an error (a stream's last event says the server stopped). Returns (finished, cut)."""
        self._draining = True
        self.scheduler.begin_drain()
        if self.metrics is not None:
            self.metrics.draining.set(1)
        running = self.scheduler.in_flight
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.scheduler.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.scheduler.in_flight:
            self.scheduler.cut_all(
                f"the server is shutting down and stopped this generation after DRAIN_TIMEOUT={timeout:g} s; "
                "send the request again (another replica takes it)"
            )
            while self.scheduler.in_flight:
                await asyncio.sleep(0.01)
        return running - self.scheduler.cut, self.scheduler.cut

    # ------------------------------------------------------------------------------------- other model work
    async def run_model(self, function: Callable[..., _Result], *args: object) -> _Result:
        """Run model work in a worker thread, one piece at a time per process.

        A token's work is many small NumPy calls that hold the GIL, so several threads decoding at once in
        one process only take turns at the GIL while paying for the switching: measured at concurrency 8
        with 2 worker processes, HTTP throughput fell to 0.68 of the in-process decoder's. One lane per
        process keeps a core busy with one request's token at a time; concurrency comes from worker
        processes. Streams call this once per token, so they still interleave fairly, and the event loop
        (health checks, slow SSE readers) is never blocked."""
        if self._model_lane is None:  # created on first use, inside the running event loop
            self._model_lane = CapacityLimiter(1)
        return await to_thread.run_sync(function, *args, limiter=self._model_lane)

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics | None = None) -> ModelService:
        """Load the model and start the scheduler thread (stop it with `stop`)."""
        started = time.perf_counter()
        service = cls(load_model(settings.model_dir), settings, metrics)
        # Pay the lazy costs (jieba's prefix dictionary, the character index behind suggestions) now, not in
        # the first user's request.
        service.decoder.encode("宝玉笑道")
        service.model.vectors.suggest("宝玉")
        service.scheduler.start()
        logger.info(
            "loaded model %s (%d words, %s head) in %.1f s",
            settings.model_dir,
            len(service.model.vectors),
            service.model.network.config.loss,
            time.perf_counter() - started,
        )
        return service

    def stop(self) -> None:
        self.scheduler.stop()


async def _unless_gone(
    ticket: Ticket, disconnected: Callable[[], Awaitable[None]] | None
) -> list[Generation]:
    """The ticket's finished generations, or ClientDisconnected (and the ticket cancelled) if
    `disconnected` returns first."""
    if disconnected is None:
        return await ticket.wait()
    finished = asyncio.ensure_future(ticket.wait())
    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not finished.done():
            finished.cancel()  # Ticket.wait cancels the generations on its way out
    # cancel() only asks: the task is not cancelled() until it next runs, so "not done" means the client
    # left first too (checking cancelled() alone read the result of an unfinished task: a 500).
    if not finished.done() or finished.cancelled():
        raise ClientDisconnected("the client disconnected before the generation ended")
    return finished.result()


def prompt_error(error: EmptyPromptError, field: str = "inputs") -> APIError:
    """The 422 for a prompt the model cannot condition on: only an empty one, since unknown words are read
    through their characters (models/vocabulary.py)."""
    return APIError(422, "validation", str(error), param=field)


def generation_error(error: GenerationFailed) -> APIError:
    """TGI's 424 `generation`: the request was valid but decoding failed on the server's side."""
    return APIError(
        424, "generation", f"the generation failed on the server ({error}); the server log has the details"
    )
