"""Text generation from a trained network: stateful decoding with the sampling controls of HF/TGI servers.

The prompt runs through the LSTM once; after that every new token costs one `Network.step` (O(1) in the length
of the text so far), unlike the reference scripts that re-feed the whole window for every word.

Choosing each token from the logits (penalties, temperature, top-k, top-p, the seeded draw) is the job of
the sequence's own `models.sampling.Sampler`; this module runs the network and the stop/length bookkeeping.

`GeneratedToken.similarity` is the cosine between the network's predicted vector and the chosen word's output
vector (the vector it was scored against), which is what `Network.similarity` computes for every word; the
one-hot ("softmax") head predicts no vector, so it is None there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.sampling import Sampler, SamplingParams, softmax_with_temperature, top_k_indices

__all__ = [
    "Candidate",
    "Decoder",
    "EmptyPromptError",
    "GeneratedToken",
    "Generation",
    "Prompt",
    "SamplingParams",
    "UnknownWordsError",
]

# Seeds drawn for requests that did not send one stay below 2**53 so JavaScript clients can echo them exactly.
_MAX_DRAWN_SEED = 2**53


class NetworkLike(Protocol):
    """What decoding needs from models.network.Network (see the team contract)."""

    def forward_sequence(self, ids: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]: ...
    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...
    def scores(self, output: np.ndarray) -> np.ndarray: ...
    def similarity(self, output: np.ndarray) -> np.ndarray | None: ...
    def output_unit_vectors(self) -> np.ndarray: ...


class VectorsLike(Protocol):
    words: list[str]
    index: dict[str, int]
    unit: np.ndarray

    def suggest(self, word: str, k: int = 5) -> list[str]: ...


class TokenizerLike(Protocol):
    def cut(self, text: str) -> list[str]: ...


class EmptyPromptError(ValueError):
    """The prompt holds no tokens at all (empty, or only whitespace)."""


class UnknownWordsError(ValueError):
    """Not one word of the prompt is in the model's vocabulary, so there is nothing to condition on."""

    def __init__(self, unknown: list[str], suggestions: dict[str, list[str]]) -> None:
        self.unknown = unknown
        self.suggestions = suggestions
        hints = "; ".join(f"{word} → {'、'.join(found)}" for word, found in suggestions.items() if found)
        message = f"none of the prompt's words are in the model's vocabulary: {'、'.join(unknown)}"
        if hints:
            message += f" (known words with the same characters: {hints})"
        super().__init__(message)


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it: jieba tokens, the ids of the known ones, and the unknown ones."""

    text: str
    tokens: list[str]
    ids: list[int]
    unknown: list[str]


@dataclass(frozen=True)
class GeneratedToken:
    id: int
    text: str
    logprob: float
    similarity: float | None


@dataclass(frozen=True)
class Candidate:
    id: int
    word: str
    probability: float
    similarity: float | None


@dataclass
class Generation:
    """One generation in progress. Iterate it to get tokens as they are decoded (for streaming); afterwards
    `tokens`, `text` and `finish_reason` ("length" | "stop_sequence") describe the result."""

    prompt: Prompt
    params: SamplingParams
    seed: int
    tokens: list[GeneratedToken] = field(default_factory=list)
    finish_reason: str | None = None
    _iterator: Iterator[GeneratedToken] | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        # Chinese is written without spaces, and jieba cut the novel without inserting any.
        return "".join(token.text for token in self.tokens)

    def __iter__(self) -> Iterator[GeneratedToken]:
        if self._iterator is None:
            raise RuntimeError("a Generation can be iterated once")
        iterator, self._iterator = self._iterator, None
        return iterator

    def run(self) -> Generation:
        """Decode to the end (non-streaming use) and return self."""
        for _ in self:
            pass
        return self


class Decoder:
    """Generation and next-word prediction for one loaded model. Holds no per-request state, so one Decoder
    serves concurrent requests (each request's LSTM state lives in its own Generation)."""

    def __init__(self, network: NetworkLike, vectors: VectorsLike, tokenizer: TokenizerLike) -> None:
        self.network = network
        self.vectors = vectors
        self.tokenizer = tokenizer
        self.vocab_size = len(vectors.words)

    # ----------------------------------------------------------------------------------------------------
    # prompt

    def encode(self, text: str) -> Prompt:
        """Cut the prompt exactly as the novel was cut; split its tokens into known ids and unknown words."""
        tokens = self.tokenizer.cut(text)
        index = self.vectors.index
        ids = [index[token] for token in tokens if token in index]
        unknown = list(dict.fromkeys(token for token in tokens if token not in index))
        return Prompt(text=text, tokens=tokens, ids=ids, unknown=unknown)

    def _require_known(self, prompt: Prompt) -> None:
        if not prompt.tokens:
            raise EmptyPromptError("the prompt is empty; send at least one word, e.g. 宝玉笑道")
        if not prompt.ids:
            suggestions = {word: self.vectors.suggest(word, k=5) for word in prompt.unknown}
            raise UnknownWordsError(prompt.unknown, suggestions)

    def _run_prompt(self, prompt: Prompt) -> tuple[np.ndarray, Any]:
        """One pass over the prompt: the head output after its last token (1, .) and the LSTM state."""
        ids = np.asarray(prompt.ids, dtype=np.int64)[None, :]
        outputs, state = self.network.forward_sequence(ids)
        return outputs[:, -1], state

    # ----------------------------------------------------------------------------------------------------
    # next-word prediction

    def predict_next(
        self, text: str, top_k: int = 10, temperature: float = 1.0
    ) -> tuple[Prompt, list[Candidate]]:
        """The top_k most probable next words after `text`, with probability and cosine similarity."""
        prompt = self.encode(text)
        self._require_known(prompt)
        output, _ = self._run_prompt(prompt)
        logits = self.network.scores(output)[0].astype(np.float64)
        probabilities = softmax_with_temperature(logits, temperature)  # finite for any temperature > 0
        k = min(top_k, self.vocab_size)
        best = top_k_indices(probabilities, k)
        best = best[np.argsort(-probabilities[best], kind="stable")]
        similarity = self.network.similarity(output)
        candidates = [
            Candidate(
                id=int(i),
                word=self.vectors.words[i],
                probability=float(probabilities[i]),
                similarity=None if similarity is None else float(similarity[0, i]),
            )
            for i in best
        ]
        return prompt, candidates

    # ----------------------------------------------------------------------------------------------------
    # generation

    def generate(self, text: str, params: SamplingParams | None = None) -> Generation:
        """Prepare a generation: validates, encodes and checks the prompt now (so errors surface before any
        streaming starts); the prompt pass and the decoding happen while the Generation is iterated."""
        params = params or SamplingParams()
        params.validate()
        prompt = self.encode(text)
        self._require_known(prompt)
        seed = params.seed if params.seed is not None else secrets.randbelow(_MAX_DRAWN_SEED)
        generation = Generation(prompt=prompt, params=params, seed=seed)
        generation._iterator = self._decode(generation)
        return generation

    def _decode(self, generation: Generation) -> Iterator[GeneratedToken]:
        params = generation.params
        network = self.network
        words = self.vectors.words
        # The vectors Network.similarity measures against; only the chosen word's row is needed per token.
        unit = network.output_unit_vectors()
        sampler = Sampler(params, generation.seed, self.vocab_size, seen=generation.prompt.ids)
        stops = params.stop
        longest_stop = max((len(stop) for stop in stops), default=0)

        text = ""
        output, state = self._run_prompt(generation.prompt)
        # The one-hot head has no predicted vector: ask once, and skip similarity from then on.
        has_vector = network.similarity(output) is not None
        step_ids = np.empty(1, dtype=np.int64)

        for _ in range(params.max_new_tokens):
            choice = sampler.choose(network.scores(output)[0])
            chosen = choice.id
            similarity = None
            if has_vector:
                predicted = output[0]
                norm = float(np.linalg.norm(predicted))
                similarity = float(predicted @ unit[chosen]) / norm if norm > 0 else 0.0
            token = GeneratedToken(
                id=chosen, text=words[chosen], logprob=choice.logprob, similarity=similarity
            )
            generation.tokens.append(token)
            text += token.text

            # Only the tail can contain a stop sequence that this token completed.
            tail = text[-(longest_stop + len(token.text)) :] if stops else ""
            if stops and any(stop in tail for stop in stops):
                generation.finish_reason = "stop_sequence"
                yield token
                return
            if len(generation.tokens) == params.max_new_tokens:
                generation.finish_reason = "length"
                yield token
                return
            yield token
            step_ids[0] = chosen
            output, state = network.step(step_ids, state)
        generation.finish_reason = "length"
