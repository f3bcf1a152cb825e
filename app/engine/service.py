"""The loaded model as the routes see it: one TrainedModel, its Decoder, the scheduler that runs every
generation, and the request checks that depend on server settings (limits) or on the vocabulary.

The generation API for routes (TGI `/generate`, `/generate_stream`, `POST /`, OpenAI completions, chat):

    params = service.sampling_params(body.parameters)      # 422: server limits, parameter ranges
    generation = await service.prepare(text, params)        # 422: empty prompt, ...; cut in a worker thread
    # either the whole result (cancelled if the client disconnects before the end):
    generation = await service.complete(generation, request)   # 429 overloaded (Retry-After)
    # or token by token (429 is raised here, before a streamed response starts):
    tokens = service.stream(generation)
    async for token in tokens: ...                          # tokens.finish_reason set on the last one

Why this shape: validation (`prepare`) is separate from submission, so a bad request is a 422 and never
takes a place in the batch or the queue; `stream` submits synchronously, so "overloaded" is a plain 429
JSON answer and not an error in the middle of an event stream; and leaving an `async for` early, or a route
task cancelled by a disconnect, cancels the generation, so abandoned work stops within one scheduler tick.
`complete` watches the connection itself, because a plain response is only written at the end. Every route
sees the same `Generation` (prompt, seed, tokens, finish_reason) as the in-process `Decoder.generate`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request

from app.engine.errors import APIError
from app.engine.scheduler import GenerationFailed, Overloaded, Scheduler, Ticket
from app.metrics import Metrics
from app.settings import Settings
from models.artifacts import ArtifactError
from models.chat import Chat
from models.decoding import (
    Decoder,
    EmptyPromptError,
    GeneratedToken,
    Generation,
    SamplingParams,
)
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


class ClientDisconnected(Exception):
    """The client of a plain request went away before its generation ended (the generation was cancelled)."""


class TokenStream:
    """The tokens of one submitted generation, for `async for`; see the module docstring."""

    def __init__(self, ticket: Ticket) -> None:
        self._ticket = ticket
        self.generation = ticket.generation

    @property
    def finish_reason(self) -> str | None:
        """Set when the last token is handed out ("length" | "stop_sequence")."""
        return self._ticket.finish_reason

    def __aiter__(self) -> AsyncIterator[GeneratedToken]:
        return self._ticket.tokens()

    def cancel(self) -> None:
        self._ticket.cancel()


class ModelService:
    def __init__(self, model: TrainedModel, settings: Settings, metrics: Metrics | None = None) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.decoder = Decoder(model.network, model.vectors, model.tokenizer, model.mixture)
        # Chat renders whole conversations into one prompt, so it keeps within the prompt limit too.
        self.chat = Chat(self.decoder, model.characters, settings.max_prompt_chars)
        self.name = model.directory.name
        self._model_lane: CapacityLimiter | None = None
        self.scheduler = Scheduler(self.decoder, settings.max_batch_size, settings.max_waiting, metrics)

    # -------------------------------------------------------------------------------------------- generation
    async def prepare(self, text: str, params: SamplingParams, field: str = "inputs") -> Generation:
        """Check and cut the prompt into a Generation ready to submit. Raises APIError 422 for a prompt the
        model cannot condition on (naming `field`, the prompt's name in the request). Nothing is queued yet.

        jieba is CPU work, so a long prompt is cut in a worker thread; a short one (the usual case) is cut
        right here: its few tens of microseconds cost less than the hop to a thread and back, which hands
        the GIL to and from the scheduler thread (measured with py-spy on the benchmark server)."""
        try:
            if len(text) <= INLINE_PROMPT_CHARS:
                return self.decoder.generate(text, params)
            return await to_thread.run_sync(self.decoder.generate, text, params)
        except EmptyPromptError as error:
            raise prompt_error(error, field) from None
        except ValueError as error:  # parameter ranges; sampling_params already checked them
            raise APIError(422, "validation", f"parameters.{error}") from None

    def stream(self, generation: Generation) -> TokenStream:
        """Submit for token-by-token delivery. Raises APIError 429 (with Retry-After) when overloaded."""
        return TokenStream(self._submit(generation, stream=True))

    async def complete(self, generation: Generation, request: Request | None = None) -> Generation:
        """Submit and wait for the end. With `request`, a client that disconnects cancels the generation
        (its slot is free within one tick) and ClientDisconnected is raised. Raises APIError 429 when
        overloaded."""
        ticket = self._submit(generation, stream=False)
        if request is None:
            try:
                return await ticket.wait()
            except GenerationFailed as error:
                raise generation_error(error) from None
        finished = asyncio.ensure_future(ticket.wait())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not finished.done():
                finished.cancel()  # Ticket.wait cancels the generation on its way out
        # cancel() only asks: the task is not cancelled() until it next runs, so "not done" means the client
        # left first too (checking cancelled() alone read the result of an unfinished task: a 500).
        if not finished.done() or finished.cancelled():
            raise ClientDisconnected("the client disconnected before the generation ended")
        try:
            return finished.result()
        except GenerationFailed as error:
            raise generation_error(error) from None

    def _submit(self, generation: Generation, stream: bool) -> Ticket:
        try:
            return self.scheduler.submit(generation, stream=stream)
        except Overloaded as error:
            if self.metrics is not None:
                self.metrics.overloaded.inc()
            raise APIError(
                429, "overloaded", str(error), headers={"Retry-After": str(error.retry_after)}
            ) from None

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

    # -------------------------------------------------------------------------------------------- validation
    def check_prompt(self, text: str, field: str = "inputs") -> None:
        if not text.strip():
            raise APIError(
                422,
                "validation",
                f"{field} is empty; send a few words of the novel to continue, e.g. 宝玉笑道",
                param=field,
            )
        limit = self.settings.max_prompt_chars
        if len(text) > limit:
            raise APIError(
                422,
                "validation",
                f"{field} is {len(text)} characters long, the limit is {limit}; shorten the prompt (only its "
                "last words matter most) or raise MAX_PROMPT_CHARS on the server",
                param=field,
            )

    def check_top_k(self, top_k: int | None, field: str) -> None:
        limit = self.settings.top_k_limit
        if top_k is not None and top_k > limit:
            raise APIError(422, "validation", f"{field} is {top_k}, the limit is {limit}; ask for fewer")

    @property
    def max_input_tokens(self) -> int:
        """TGI's max_input_tokens: every token is at least one character, so the prompt limit in characters
        bounds the tokens too."""
        return self.settings.max_prompt_chars

    def check_generation_limits(
        self,
        max_new_tokens: int,
        stop: list[str],
        top_n_tokens: int = 0,
        truncate: int | None = None,
        prefix: str = "parameters.",
        names: dict[str, str] | None = None,
    ) -> None:
        """The server limits of /info, for TGI's parameters (prefix "parameters.") and OpenAI's (names maps
        TGI's names to the route's, e.g. max_new_tokens -> max_tokens)."""
        names = names or {}

        def field(name: str) -> str:
            return prefix + names.get(name, name)

        limit = self.settings.max_new_tokens
        if max_new_tokens > limit:
            raise APIError(
                422,
                "validation",
                f"{field('max_new_tokens')} is {max_new_tokens}, the limit is {limit}; "
                "ask for fewer (or raise MAX_NEW_TOKENS on the server)",
                param=field("max_new_tokens"),
            )
        if len(stop) > self.settings.max_stop_sequences:
            raise APIError(
                422,
                "validation",
                f"{field('stop')} has {len(stop)} sequences, the limit is {self.settings.max_stop_sequences}",
                param=field("stop"),
            )
        longest = max(stop, key=len, default="")
        if len(longest) > self.settings.max_stop_chars:
            raise APIError(
                422,
                "validation",
                f"{field('stop')} has a sequence of {len(longest)} characters, the limit is "
                f"{self.settings.max_stop_chars}; a stop sequence is a few characters such as 」",
                param=field("stop"),
            )
        top_n_limit = self.settings.max_top_n_tokens
        if top_n_tokens > top_n_limit:
            raise APIError(
                422,
                "validation",
                f"{field('top_n_tokens')} is {top_n_tokens}, the limit is {top_n_limit} (MAX_TOP_N_TOKENS); "
                "ask for fewer, or use POST /predict for a longer list of candidates",
                param=field("top_n_tokens"),
            )
        if truncate is not None and truncate > self.max_input_tokens:
            raise APIError(
                422,
                "validation",
                f"{field('truncate')} is {truncate}, it must be at most max_input_tokens = "
                f"{self.max_input_tokens} (GET /info)",
                param=field("truncate"),
            )


async def _disconnected(request: Request) -> None:
    """Return when the client has gone. After the body has been read, the server's `receive` answers only
    `http.disconnect` (uvicorn, and Starlette's TestClient once the response is complete)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def prompt_error(error: EmptyPromptError, field: str = "inputs") -> APIError:
    """The 422 for a prompt the model cannot condition on: only an empty one, since unknown words are read
    through their characters (models/vocabulary.py)."""
    return APIError(422, "validation", str(error), param=field)


def generation_error(error: GenerationFailed) -> APIError:
    """TGI's 424 `generation`: the request was valid but decoding failed on the server's side."""
    return APIError(
        424, "generation", f"the generation failed on the server ({error}); the server log has the details"
    )
