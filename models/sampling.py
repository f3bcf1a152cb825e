"""Choosing the next token from one sequence's logits: the sampling controls of HF/TGI servers.

This is the per-sequence half of decoding. `models/decoding.py` runs the network (one sequence, or many at
once) and hands each sequence's row of logits to that sequence's own `Sampler`, which holds everything that
differs between requests: the parameters, the seeded random generator and the ids seen so far (for penalties).
Keeping it apart from the network loop is what lets a batched loop give a seeded request exactly the text it
gets alone.

Per token the logits go through, in this order (the order of Hugging Face `generate`):

1. repetition penalty (CTRL paper / HF semantics): for every word id already in the prompt or in the generated
   text, a positive logit is divided by the penalty and a negative one multiplied by it;
2. greedy decoding stops here and takes the argmax;
3. temperature divides the logits;
4. top-k keeps the k highest logits (found with `np.argpartition`, only those k are sorted);
5. top-p (nucleus) keeps the smallest prefix of the sorted candidates whose probability mass reaches p;
6. one draw from the renormalised distribution with a seeded `numpy.random.Generator`.

`Choice.logprob` is the natural log of the chosen word's probability under the distribution it was drawn
from, i.e. after steps 1-5 and renormalisation (for greedy decoding: softmax of the penalised logits at
temperature 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """Decoding controls; None means "off" (TGI semantics). Validated by `validate()`."""

    max_new_tokens: int = 50
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def sampling(self) -> bool:
        """Sample instead of argmax: asked for, or implied by a sampling control (as text-generation-inference
        does, so `{"temperature": 0.7}` samples without `do_sample: true`)."""
        return (
            self.do_sample
            or (self.temperature is not None and self.temperature != 1.0)
            or self.top_k is not None
            or (self.top_p is not None and self.top_p < 1.0)
        )

    def validate(self) -> None:
        """Raise ValueError naming the parameter, its value and the allowed range."""

        def finite(name: str, value: float | None) -> None:
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")

        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        for name in ("temperature", "top_p", "repetition_penalty"):
            finite(name, getattr(self, name))
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; "
                "for greedy decoding leave temperature out and set do_sample to false"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(
                f"repetition_penalty must be > 0 (1 = no penalty), got {self.repetition_penalty}"
            )
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if any(not stop for stop in self.stop):
            raise ValueError("stop sequences must be non-empty strings")


@dataclass(frozen=True)
class Choice:
    """The token a Sampler chose: its id and its log-probability (see the module docstring)."""

    id: int
    logprob: float


class Sampler:
    """One sequence's token choice: its parameters, its seeded generator and the ids it has seen.

    Not thread-safe and not shared: every generation owns one. `choose` may modify the logits row it is given
    (it is scratch space: the caller computed it for this sequence and this token only)."""

    def __init__(self, params: SamplingParams, seed: int, vocab_size: int, seen: Iterable[int] = ()) -> None:
        self.params = params
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.sampling = params.sampling
        penalty = params.repetition_penalty
        self.penalty = penalty if penalty is not None and penalty != 1.0 else None
        self.temperature = params.temperature if params.temperature is not None else 1.0
        self.top_k = params.top_k if params.top_k is not None and params.top_k < vocab_size else None
        self.top_p = params.top_p if params.top_p is not None and params.top_p < 1.0 else None
        ordered = list(dict.fromkeys(int(i) for i in seen))
        self._seen_set = set(ordered)
        self._seen_ids = np.asarray(ordered, dtype=np.int64)

    def choose(self, logits: np.ndarray) -> Choice:
        """Pick the next token from this sequence's logits (shape (V,)) and remember it as seen."""
        if not logits.flags.writeable or logits.dtype != np.float32:
            logits = np.array(logits, dtype=np.float32)
        if self.penalty is not None and self._seen_ids.size:
            values = logits[self._seen_ids]
            logits[self._seen_ids] = np.where(values > 0, values / self.penalty, values * self.penalty)
        if self.sampling:
            chosen, logprob = _sample(logits, self.temperature, self.top_k, self.top_p, self.rng)
        else:
            chosen, logprob = _greedy(logits)
        if self.penalty is not None and chosen not in self._seen_set:
            self._seen_set.add(chosen)
            self._seen_ids = np.append(self._seen_ids, chosen)
        return Choice(id=chosen, logprob=logprob)


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (unordered), O(V) with argpartition instead of a full sort."""
    if k >= values.shape[0]:
        return np.arange(values.shape[0])
    return np.argpartition(values, values.shape[0] - k)[-k:]


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) in place on a float64 array, finite for every temperature > 0.

    The maximum is subtracted *before* dividing: (l - max) / T is 0 for the best word and <= 0 elsewhere, so
    a subnormal temperature (5e-324) gives 0 or -inf, never inf - inf = NaN, and the result is greedy (ties
    share the mass), as a tiny temperature should be.
    """
    logits -= logits.max()
    with np.errstate(over="ignore", under="ignore"):  # -x / 5e-324 is -inf on purpose: exp gives 0
        logits /= temperature
        probabilities = np.exp(logits, out=logits)
    probabilities /= probabilities.sum()
    return probabilities


def _greedy(logits: np.ndarray) -> tuple[int, float]:
    chosen = int(np.argmax(logits))
    top = float(logits[chosen])
    # log softmax of the winner = -log sum exp(l - l_max); computed in float64 for accuracy.
    logsumexp = math.log(float(np.exp(logits - top, dtype=np.float64).sum()))
    return chosen, -logsumexp


def _sample(
    logits: np.ndarray,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Temperature → top-k → top-p → one draw. Works on the k candidates only once top-k has cut them."""
    if top_k is not None:
        candidates = top_k_indices(logits, top_k)
        scaled = logits[candidates].astype(np.float64)
    else:
        candidates = None
        scaled = logits.astype(np.float64)
    probabilities = softmax_with_temperature(scaled, temperature)

    if top_p is not None:
        order = np.argsort(-probabilities, kind="stable")
        sorted_probabilities = probabilities[order]
        cumulative = np.cumsum(sorted_probabilities)
        # Keep every word whose preceding mass is still below p: the smallest prefix reaching p, at least one.
        keep = int(np.searchsorted(cumulative, top_p, side="left")) + 1
        kept = order[:keep]
        kept_probabilities = sorted_probabilities[:keep] / cumulative[keep - 1]
        position = _draw(kept_probabilities, rng)
        local = int(kept[position])
        probability = float(kept_probabilities[position])
    else:
        local = _draw(probabilities, rng)
        probability = float(probabilities[local])
    chosen = int(candidates[local]) if candidates is not None else local
    return chosen, math.log(probability) if probability > 0 else -math.inf


def _draw(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw: one uniform number per token keeps seeded runs reproducible and cheap."""
    cumulative = np.cumsum(probabilities)
    position = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(position, probabilities.shape[0] - 1)
