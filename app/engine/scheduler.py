"""Continuous batching: one scheduler per worker process owns the model and advances all generations at once.

Why this shape (docs/architecture.md, "The engine"):

* **One thread owns the model.** A token's work is a few NumPy calls; run per request, every request pays for
  reading the same weights (the (V, D) output matrix alone is most of a token's cost), and threads decoding
  side by side only take turns at the GIL. So one thread runs ticks: each tick advances *all* active
  sequences by one token with one batched `Network.step` and one batched `Network.scores`
  (`models.decoding.DecodingBatch`), a matrix-matrix product that costs little more than one matrix-vector
  product. The event loop never runs model work, so /health and slow SSE readers are never held up.
* **Requests join and leave between ticks.** A submitted generation waits in a bounded queue and is
  prefilled (its prompt run through the LSTM, batched with the others joining; a request's candidates once
  for all) at the start of the next tick with a free slot; a finished one leaves in the tick that finished
  it; a cancelled one (its client disconnected) is dropped at the start of the next tick, so an abandoned
  request frees its slot within one tick instead of running to max_new_tokens.
* **Each sequence samples on its own.** Its Sampler (parameters, seeded generator, seen ids) is its own, so
  a seeded request gives the same text alone or in a batch (up to BLAS rounding, see DecodingBatch).
* **Bounded, and says so.** At most `max_batch_size` sequences run and `max_waiting` wait; one more is
  refused at once with `Overloaded` (the routes answer 429 `overloaded` with Retry-After, as TGI does),
  never queued without bound, so a client never hangs and memory stays bounded.
* **Thread → event loop hand-off.** Each request has an `asyncio.Queue` on its event loop; a tick delivers
  all its tokens in one `loop.call_soon_threadsafe` callback (one wake-up of the loop per tick, not per
  token). A plain (non-streamed) request asks only for the end, so it costs the loop one wake-up in all.

`MAX_BATCH_SIZE=1` turns batching off (one sequence at a time, the others queue): that is the benchmark's
reference (benchmarks/serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.metrics import Metrics
from models.decoding import Decoder, DecodingBatch, GeneratedToken, Generation

logger = logging.getLogger("app")


class Overloaded(Exception):
    """The batch and the waiting queue are full; `retry_after` is a hint in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GenerationFailed(Exception):
    """The scheduler could not run this generation (a bug on the server's side; the log has the traceback)."""


class Draining(Exception):
    """The worker is stopping (SIGTERM): it finishes what it runs and takes no new generations."""


class Prune(Protocol):
    """A request's way to stop some of its candidates early (chat's pool keeps its best few), asked on the
    scheduler thread after every tick: `ready` once it can tell; then `stop` of the first ready request of
    its kind decides for all of them together (one scoring pass): the generations to stop for each."""

    def ready(self, generations: list[Generation]) -> bool: ...
    def stop(self, requests: list[tuple[Any, list[Generation]]]) -> list[list[Generation]]: ...


@dataclass(frozen=True)
class TokenEvent:
    """One decoded token of one candidate of a request. `finish_reason` is set on that candidate's last token
    ("length" | "stop_sequence"); `generation` is the candidate, its tokens so far included."""

    choice: int
    token: GeneratedToken
    generation: Generation
    finish_reason: str | None


@dataclass(frozen=True)
class _Delivery:
    choice: int
    token: GeneratedToken | None  # None with `error` set, or for the end of a plain request
    finish_reason: str | None
    error: BaseException | None = None


class Ticket:
    """One request's submitted generations (its candidates: one, or OpenAI's n, TGI's best_of), as the
    request sees them: an async iterator of token events (or `wait()` for the end) and `cancel()`. Created
    by `Scheduler.submit` on the request's event loop; the scheduler hands back every candidate's tokens
    through the one queue."""

    def __init__(
        self, scheduler: Scheduler, generations: list[Generation], stream: bool, prune: Prune | None = None
    ) -> None:
        self.scheduler = scheduler
        self.generations = generations
        self.stream = stream
        self.prune = prune  # asked after every tick until it answers (then cleared)
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self.submitted = time.perf_counter()
        self.unfinished = len(generations)
        self.done = False

    def cancel(self) -> None:
        """The client is gone: drop the generations at the next tick (no-op once they have all finished)."""
        if not self.done:
            self.done = True
            self.scheduler._cancel(self)

    async def _next(self) -> _Delivery:
        delivery = await self.queue.get()
        if delivery.error is not None:
            raise GenerationFailed(str(delivery.error)) from delivery.error
        if delivery.finish_reason is not None:
            self.unfinished -= 1
            self.done = self.unfinished == 0
        return delivery

    async def wait(self) -> list[Generation]:
        """Wait for the end of every candidate (plain requests); returns the finished Generations."""
        try:
            while not self.done:
                await self._next()
            return self.generations
        finally:
            self.cancel()  # a no-op after the end; frees the slots if this await was cancelled (disconnect)

    async def events(self) -> AsyncIterator[TokenEvent]:
        """The tokens as they are decoded, every candidate's interleaved. Leaving the loop early (break, an
        exception, a cancelled task) cancels the generations."""
        try:
            while not self.done:
                delivery = await self._next()
                if delivery.token is not None:
                    generation = self.generations[delivery.choice]
                    yield TokenEvent(delivery.choice, delivery.token, generation, delivery.finish_reason)
        finally:
            self.cancel()


class Scheduler:
    """Owns a Decoder's network in one thread; see the module docstring."""

    def __init__(
        self, decoder: Decoder, max_batch_size: int, max_waiting: int, metrics: Metrics | None = None
    ) -> None:
        self.decoder = decoder
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.metrics = metrics  # None: no Prometheus metrics (tests of the scheduler alone)
        self._batch = DecodingBatch(decoder)
        # id(generation) -> (ticket, candidate index), for the sequences in the batch
        self._tickets: dict[int, tuple[Ticket, int]] = {}
        self._waiting: deque[tuple[Ticket, int]] = deque()  # one entry per candidate
        self._cancelled: list[Ticket] = []
        self._active = 0  # len(batch), readable from the event loop under the lock
        self._lock = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._tick_seconds = 0.001  # moving average, for the Retry-After hint
        self._window_start = time.perf_counter()  # tokens/s gauge: tokens counted over windows of >= 1 s
        self._window_tokens = 0
        self._draining = False  # set once by begin_drain: submit refuses from then on
        self._cut_reason: str | None = None  # set by cut_all, acted on by the scheduler thread
        self.cut = 0  # generations ended by cut_all

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ------------------------------------------------------------------------------- event-loop side API
    def submit(
        self, generations: list[Generation], stream: bool = True, prune: Prune | None = None
    ) -> Ticket:
        """Queue a request's validated generations (its candidates); each joins the batch at the next tick
        with a free slot. Raises Overloaded at once when the batch and the queue cannot take all of them.
        `prune` may stop some of them early (see Prune). Call on the request's event loop."""
        ticket = Ticket(self, generations, stream, prune)
        with self._lock:
            if self._draining:
                raise Draining("this server is shutting down and takes no new generations")
            if self._active + len(self._waiting) + len(generations) > self.max_batch_size + self.max_waiting:
                raise Overloaded(self._overloaded_message(), self._retry_after())
            self._waiting.extend((ticket, choice) for choice in range(len(generations)))
            self._observe_queue()
            self._lock.notify()
        return ticket

    @property
    def active(self) -> int:
        return self._active

    @property
    def in_flight(self) -> int:
        """Generations running or waiting: what a drain waits for."""
        with self._lock:
            return self._active + len(self._waiting)

    def begin_drain(self) -> None:
        """Refuse every later submit with Draining; what is running or waiting goes on to its end."""
        with self._lock:
            self._draining = True

    def cut_all(self, reason: str) -> None:
        """End every running and waiting generation at the next tick: a stream gets `reason` as its error,
        a plain request fails with it. `cut` counts them once done (in_flight is then 0)."""
        with self._lock:
            self._cut_reason = reason
            self._lock.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _cancel(self, ticket: Ticket) -> None:
        with self._lock:
            self._cancelled.append(ticket)
            self._lock.notify()

    def _overloaded_message(self) -> str:
        return (
            f"the server is at capacity: {self._active} generations running (MAX_BATCH_SIZE="
            f"{self.max_batch_size}) and {len(self._waiting)} waiting (MAX_WAITING={self.max_waiting}); "
            f"retry after {self._retry_after()} s, or ask for fewer max_new_tokens"
        )

    def _retry_after(self) -> int:
        # Roughly when the queue ahead will have moved: a generation is ~100 ticks; at least 1 s.
        return max(1, math.ceil(self._tick_seconds * 100 * (1 + len(self._waiting) / self.max_batch_size)))

    def _observe_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_length.set(len(self._waiting))
            self.metrics.batch_current.set(self._active)

    # ---------------------------------------------------------------------------------- scheduler thread
    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._waiting and not self._active and not self._cancelled:
                    self._went_idle()
                while self._running and not self._waiting and not self._active and not self._cancelled:
                    self._lock.wait()
                if not self._running:
                    break
                if self._cut_reason is not None:
                    self._cut(self._cut_reason)
                    self._cut_reason = None
                cancelled, self._cancelled = self._cancelled, []
                if cancelled:
                    leaving = set(map(id, cancelled))
                    self._waiting = deque(entry for entry in self._waiting if id(entry[0]) not in leaving)
                joining = []
                free = (
                    self.max_batch_size
                    - len(self._batch)
                    + sum(id(g) in self._tickets for t in cancelled for g in t.generations)
                )
                while free > 0 and self._waiting:
                    joining.append(self._waiting.popleft())
                    free -= 1
            try:
                self._tick(cancelled, joining)
            except Exception as error:  # a bug: fail every request in the batch, keep serving the next ones
                logger.exception("a scheduler tick failed; its %d generations fail", len(self._batch))
                for ticket in {id(t): t for t, _ in self._tickets.values()}.values():
                    self._deliver(ticket, [_Delivery(0, None, None, error)])
                self._tickets.clear()
                self._batch = DecodingBatch(self.decoder)
            with self._lock:
                self._active = len(self._batch)
                self._observe_queue()

    def _tick(self, cancelled: list[Ticket], joining: list[tuple[Ticket, int]]) -> None:
        gone = [g for t in cancelled for g in t.generations if self._tickets.pop(id(g), None) is not None]
        if gone:
            self._batch.remove(gone)
            if self.metrics is not None:
                self.metrics.cancelled.inc(len(gone))
        now = time.perf_counter()
        # A request's candidates join together: the batch reads their one prompt once.
        by_ticket: dict[int, tuple[Ticket, list[int]]] = {}
        for ticket, choice in joining:
            by_ticket.setdefault(id(ticket), (ticket, []))[1].append(choice)
            ticket.generations[choice].queue_seconds = now - ticket.submitted  # TGI's x-queue-time
            if self.metrics is not None:
                self.metrics.queue_seconds.observe(now - ticket.submitted)
        joined = list(by_ticket.values())
        errors = self._batch.add_requests([[t.generations[c] for c in choices] for t, choices in joined])
        for (ticket, choices), error in zip(joined, errors, strict=True):
            if error is not None:
                logger.error("prefill failed", exc_info=error)
                self._deliver(ticket, [_Delivery(choice, None, None, error) for choice in choices])
                continue
            for choice in choices:
                self._tickets[id(ticket.generations[choice])] = (ticket, choice)
        if not self._batch:
            return
        size = len(self._batch)
        started = time.perf_counter()
        events = self._batch.tick()
        self._tick_seconds = 0.9 * self._tick_seconds + 0.1 * (time.perf_counter() - started)
        if self.metrics is not None:
            self.metrics.batch_size.observe(size)
            self.metrics.scheduler_tokens.inc(len(events))
            self._count_tokens(len(events))
        per_ticket: dict[int, tuple[Ticket, list[_Delivery]]] = {}
        for generation, token in events:
            ticket, choice = self._tickets[id(generation)]
            finish_reason = generation.finish_reason
            if finish_reason is not None:
                del self._tickets[id(generation)]
            if ticket.stream or finish_reason is not None:
                delivery = _Delivery(choice, token, finish_reason)
                per_ticket.setdefault(id(ticket), (ticket, []))[1].append(delivery)
        self._prune(per_ticket)
        # One wake-up per event loop per tick, carrying every request's tokens.
        by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list]] = {}
        for ticket, deliveries in per_ticket.values():
            by_loop.setdefault(id(ticket.loop), (ticket.loop, []))[1].append((ticket.queue, deliveries))
        for loop, items in by_loop.values():
            _call_soon(loop, _put_all, items)

    def _prune(self, per_ticket: dict[int, tuple[Ticket, list[_Delivery]]]) -> None:
        """Ask the running tickets that may prune; stop what they name (their rows are freed now) and tell
        each ticket that those candidates ended."""
        kinds: dict[type, list[Ticket]] = {}
        for ticket in {id(t): t for t, _ in self._tickets.values() if t.prune is not None}.values():
            if ticket.prune is not None and ticket.prune.ready(ticket.generations):
                kinds.setdefault(type(ticket.prune), []).append(ticket)
        for ready in kinds.values():
            decided = ready[0].prune.stop([(t.prune, t.generations) for t in ready])  # type: ignore[union-attr]
            for ticket, stopped in zip(ready, decided, strict=True):
                ticket.prune = None
                running = [g for g in stopped if id(g) in self._tickets]
                self._batch.remove(running)
                for generation in running:
                    _, choice = self._tickets.pop(id(generation))
                    delivery = _Delivery(choice, None, generation.finish_reason)
                    per_ticket.setdefault(id(ticket), (ticket, []))[1].append(delivery)

    def _cut(self, reason: str) -> None:
        """cut_all's work, on the scheduler thread with the lock held: fail every request, empty the batch."""
        entries = [*self._tickets.values(), *self._waiting]  # (ticket, candidate) per generation
        error = GenerationFailed(reason)
        for ticket in {id(ticket): ticket for ticket, _ in entries}.values():
            self._deliver(ticket, [_Delivery(0, None, None, error)])
        self._tickets.clear()
        self._waiting.clear()
        self._batch = DecodingBatch(self.decoder)
        self._active = 0
        self.cut += len(entries)
        if self.metrics is not None:
            self.metrics.drain_cut.inc(len(entries))
        self._observe_queue()

    def _went_idle(self) -> None:
        if self.metrics is not None:
            self.metrics.tokens_per_second.set(0)
        self._window_start, self._window_tokens = time.perf_counter(), 0

    def _count_tokens(self, tokens: int) -> None:
        self._window_tokens += tokens
        now = time.perf_counter()
        if now - self._window_start >= 1.0:
            self.metrics.tokens_per_second.set(self._window_tokens / (now - self._window_start))
            self._window_start, self._window_tokens = now, 0

    def _deliver(self, ticket: Ticket, deliveries: list[_Delivery]) -> None:
        _call_soon(ticket.loop, _put_all, [(ticket.queue, deliveries)])


def _call_soon(loop: asyncio.AbstractEventLoop, function: Callable[..., None], *args: object) -> None:
    # RuntimeError: the request's loop has closed (server shutting down), so nobody is listening.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(function, *args)


def _put_all(items: list[tuple[asyncio.Queue, list[_Delivery]]]) -> None:
    for queue, deliveries in items:
        for delivery in deliveries:
            queue.put_nowait(delivery)
