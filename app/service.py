"""The loaded model as the routes see it: one TrainedModel, its Decoder, and the request checks that depend
on server settings (limits) or on the vocabulary (unknown words). Holds no per-request state, so all threads
share it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from anyio import CapacityLimiter, to_thread

from app.errors import APIError
from app.schemas import GenerateParameters
from app.settings import Settings
from models.artifacts import ArtifactError
from models.decoding import Decoder, EmptyPromptError, SamplingParams, UnknownWordsError
from models.trained import TrainedModel

_Result = TypeVar("_Result")

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
    def __init__(self, model: TrainedModel, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self.decoder = Decoder(model.network, model.vectors, model.tokenizer)
        self.name = model.directory.name
        self._model_lane: CapacityLimiter | None = None

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
    def start(cls, settings: Settings) -> ModelService:
        started = time.perf_counter()
        service = cls(load_model(settings.model_dir), settings)
        # Pay the lazy costs (jieba's prefix dictionary, the character index behind suggestions) now, not in
        # the first user's request.
        service.decoder.encode("宝玉笑道")
        service.model.vectors.suggest("宝玉")
        logger.info(
            "loaded model %s (%d words, %s head) in %.1f s",
            settings.model_dir,
            len(service.model.vectors),
            service.model.network.config.loss,
            time.perf_counter() - started,
        )
        return service

    # -------------------------------------------------------------------------------------------- validation
    def check_prompt(self, text: str) -> None:
        if not text.strip():
            raise APIError(
                422, "validation", "inputs is empty; send a few words of the novel to continue, e.g. 宝玉笑道"
            )
        limit = self.settings.max_prompt_chars
        if len(text) > limit:
            raise APIError(
                422,
                "validation",
                f"inputs is {len(text)} characters long, the limit is {limit}; shorten the prompt (only its "
                "last words matter most) or raise MAX_PROMPT_CHARS on the server",
            )

    def check_top_k(self, top_k: int | None, field: str) -> None:
        limit = self.settings.top_k_limit
        if top_k is not None and top_k > limit:
            raise APIError(422, "validation", f"{field} is {top_k}, the limit is {limit}; ask for fewer")

    def sampling_params(self, parameters: GenerateParameters) -> SamplingParams:
        limit = self.settings.max_new_tokens
        if parameters.max_new_tokens > limit:
            raise APIError(
                422,
                "validation",
                f"parameters.max_new_tokens is {parameters.max_new_tokens}, the limit is {limit}; "
                "ask for fewer (or raise MAX_NEW_TOKENS on the server)",
            )
        self.check_top_k(parameters.top_k, "parameters.top_k")
        if len(parameters.stop) > self.settings.max_stop_sequences:
            raise APIError(
                422,
                "validation",
                f"parameters.stop has {len(parameters.stop)} sequences, the limit is "
                f"{self.settings.max_stop_sequences}",
            )
        params = SamplingParams(
            max_new_tokens=parameters.max_new_tokens,
            do_sample=parameters.do_sample,
            temperature=parameters.temperature,
            top_k=parameters.top_k,
            top_p=parameters.top_p,
            repetition_penalty=parameters.repetition_penalty,
            seed=parameters.seed,
            stop=tuple(parameters.stop),
        )
        try:
            params.validate()
        except ValueError as error:  # the schema already checks these ranges; this keeps the two in step
            raise APIError(422, "validation", f"parameters.{error}") from None
        return params


def prompt_error(error: EmptyPromptError | UnknownWordsError) -> APIError:
    """The 422 for a prompt the model cannot condition on."""
    if isinstance(error, UnknownWordsError):
        return APIError(
            422, "unknown_words", str(error), unknown_words=error.unknown, suggestions=error.suggestions
        )
    return APIError(422, "validation", str(error))
