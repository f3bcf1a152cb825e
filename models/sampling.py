"""Choosing the next token from one sequence's logits: the sampling controls of HF/TGI servers.

This is the per-sequence half of decoding. `models/decoding.py` runs the network (one sequence, or many at
once) and hands each sequence's row of logits to that sequence's own `Sampler`, which holds everything that
differs between requests: the parameters, the seeded random generator and the ids seen so far (for penalties).
Keeping it apart from the network loop is what lets a batched loop give a seeded request exactly the text it
gets alone.

Per token the logits go through, in this order (the order of Hugging Face `generate`):

1. repetition penalty (CTRL paper / HF semantics): for every word id already in the prompt or in the generated
   text, a positive logit is divided by the penalty and a negative one multiplied by it; then the frequency
   penalty (TGI semantics): every word's logit minus `frequency_penalty` times its share of the tokens so far
   (prompt and generated: occurrences / tokens), and the presence penalty (OpenAI semantics): minus
   `presence_penalty` for every word that occurred at all;
   then chat's suppression: `suppress_ids` cannot be chosen before `min_new_tokens` tokens (a reply that
   closes its quote before saying anything), and `banned_ids` never (a reply opening a new quotation);
2. greedy decoding stops here and takes the argmax;
3. temperature divides the logits;
4. top-k keeps the k highest logits (the k-th largest found with `np.partition`), as candidates in ascending
   id order, so which word a seeded draw lands on never depends on a partition algorithm's output order;
5. top-p (nucleus) keeps the smallest prefix of the sorted candidates whose probability mass reaches p;
   then min-p (llama.cpp, vLLM, HF `MinPLogitsWarper`) keeps the words whose probability is at least
   `min_p` times the most probable word's (a ratio, so it is the same before or after renormalising);
6. typical-p (Meister et al. 2022, HF `TypicalLogitsWarper`, after top-p as in TGI) keeps the words whose
   surprisal is closest to the distribution's entropy, as many as hold `typical_p` of the mass;
7. one draw from the renormalised distribution with a seeded `numpy.random.Generator` (one uniform number per
   token whatever the controls, so a seed means the same thing in every combination).

`choose_batch` runs these steps for a whole batch of sequences at once (one NumPy call per step for all
rows that decode the same way), with each sequence's own parameters, seen ids and seeded generator, and
chooses exactly what each `Sampler.choose` would alone.

`Choice.logprob` is the natural log of the chosen word's probability under the distribution it was drawn
from, i.e. after steps 1-6 and renormalisation (for greedy decoding: softmax of the penalised logits at
temperature 1). `Choice.top` (when `top_n_tokens` > 0) lists the most probable words of that same
distribution with their log-probabilities, best first: fewer than n when top-k/top-p/typical-p kept fewer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """Decoding controls; None means "off" (TGI semantics). Validated by `validate()`.

    Besides the token choice (see the module docstring) they hold what decoding reports or reads:
    `top_n_tokens` alternatives per generated token, `prefill_logprobs` (the log-probability of every prompt
    token given the ones before it, TGI's `decoder_input_details`) and `truncate` (only the last N prompt
    tokens are read, TGI's `truncate`)."""

    max_new_tokens: int = 50
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_n_tokens: int = 0
    prefill_logprobs: bool = False
    truncate: int | None = None
    # The first `min_new_tokens` tokens may not be any of `suppress_ids` (chat: a reply may not close its
    # quote before saying anything). Both default to off.
    min_new_tokens: int = 0
    suppress_ids: tuple[int, ...] = ()
    # Never chosen (chat: a reply is inside a quotation, so it cannot open another one with the same mark).
    banned_ids: tuple[int, ...] = ()

    @property
    def sampling(self) -> bool:
        """Sample instead of argmax: asked for, or implied by a sampling control (as text-generation-inference
        does, so `{"temperature": 0.7}` samples without `do_sample: true`)."""
        return (
            self.do_sample
            or (self.temperature is not None and self.temperature != 1.0)
            or self.top_k is not None
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )

    def validate(self) -> None:
        """Raise ValueError naming the parameter, its value and the allowed range."""

        def finite(name: str, value: float | None) -> None:
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")

        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        for name in ("temperature", "top_p", "typical_p", "repetition_penalty"):
            finite(name, getattr(self, name))
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            finite(name, value)
            if value is not None and not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2] (0 = no penalty), got {value}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; "
                "for greedy decoding leave temperature out and set do_sample to false"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        finite("min_p", self.min_p)
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        if self.typical_p is not None and not 0.0 < self.typical_p <= 1.0:
            raise ValueError(f"typical_p must be in (0, 1] (1 = off), got {self.typical_p}")
        if self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be >= 0, got {self.min_new_tokens}")
        if self.top_n_tokens < 0:
            raise ValueError(f"top_n_tokens must be >= 0 (0 = off), got {self.top_n_tokens}")
        if self.truncate is not None and self.truncate < 1:
            raise ValueError(
                f"truncate must be at least 1 (null = read the whole prompt), got {self.truncate}"
            )
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
    """The token a Sampler chose: its id, its log-probability and (top_n_tokens > 0) the most probable
    (id, log-probability) pairs of the distribution it was drawn from (see the module docstring)."""

    id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class Sampler:
    """One sequence's token choice: its parameters, its seeded generator and the ids it has seen.

    Not thread-safe and not shared: every generation owns one. `choose` may modify the logits row it is given
    (it is scratch space: the caller computed it for this sequence and this token only). A batched loop calls
    `choose_batch` with all its sequences' samplers instead: the same choices, fewer NumPy calls."""

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
        self.typical_p = params.typical_p if params.typical_p is not None and params.typical_p < 1.0 else None
        self.min_p = params.min_p or None
        self.top_n = params.top_n_tokens
        seen = [int(i) for i in seen]
        ordered = list(dict.fromkeys(seen))
        self._seen_set = set(ordered)
        self._seen_ids = np.asarray(ordered, dtype=np.int64)
        # Occurrence counts for the frequency/presence penalties, over the whole vocabulary (one O(V) pass
        # per token, small next to scoring the (V, D) output matrix); kept only when a penalty is on.
        self.frequency = params.frequency_penalty or None
        self.presence = params.presence_penalty or None
        self._counts: np.ndarray | None = None
        self._total = len(seen)
        if self.frequency is not None or self.presence is not None:
            self._counts = np.zeros(vocab_size, dtype=np.float32)
            np.add.at(self._counts, np.asarray(seen, dtype=np.int64), 1.0)
        suppress = params.min_new_tokens > 0 and len(params.suppress_ids) > 0
        self._suppress = np.asarray(params.suppress_ids, dtype=np.int64) if suppress else None
        self._banned = np.asarray(params.banned_ids, dtype=np.int64) if params.banned_ids else None
        self._chosen = 0
        # Rows without any penalty (or suppression) skip the _penalise call altogether.
        self.penalises = self._penalises_after_suppression or self._suppress is not None
        # Rows that decode the same way (greedy; or sampling with the same top-k, with or without top-p) go
        # through `choose_batch` together. A parameter the vectorised steps do not know (any field outside
        # _VECTORISED left at a non-default value) sends this sampler down `_choose_row` instead, so adding a
        # control to SamplingParams can never be silently ignored by the batched path.
        self._group: tuple | None = None
        if all(getattr(params, name) == default for name, default in _other_defaults(type(params))):
            self._group = ("sample", self.top_k, self.top_p is not None) if self.sampling else ("greedy",)

    def choose(self, logits: np.ndarray) -> Choice:
        """Pick the next token from this sequence's logits (shape (V,)) and remember it as seen."""
        return choose_batch([self], logits[None, :])[0]

    def _penalise(self, logits: np.ndarray) -> None:
        """Repetition, frequency, presence penalties and the suppression on this row, in place."""
        if self.penalty is not None and self._seen_ids.size:
            values = logits[self._seen_ids]
            # An extreme admitted penalty (5e-324, 1e308) overflows float32 to +-inf, and inf - inf in the
            # softmax is NaN: garbage words with logprob -1e30. Saturating at a finite bound keeps the order
            # that matters (a tiny penalty puts seen words far ahead, a huge one far behind) and every
            # later step finite.
            # In float64, where 5e-324 is not 0 (float32 would divide by zero); a masked word's -inf (the
            # network's <unk>) stays -inf: -inf * a tiny penalty would be NaN.
            wide = values.astype(np.float64)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                penalised = np.where(wide > 0, wide / self.penalty, wide * self.penalty)
            penalised = np.clip(penalised, -_LOGIT_BOUND, _LOGIT_BOUND)
            logits[self._seen_ids] = np.where(np.isfinite(values), penalised, values)
        counts = self._counts
        if counts is not None and self._total:
            if self.frequency is not None:
                logits -= np.float32(self.frequency / self._total) * counts
            if self.presence is not None:
                logits -= np.float32(self.presence) * (counts > 0)
        if self._suppress is not None:
            # Last, so no penalty arithmetic meets the -inf (a repetition penalty that rounds to 0 in float32
            # would turn -inf * 0 into NaN).
            logits[self._suppress] = -np.inf
        if self._banned is not None:
            logits[self._banned] = -np.inf

    @property
    def _penalises_after_suppression(self) -> bool:
        return self.penalty is not None or self._counts is not None or self._banned is not None

    def _remember(self, chosen: int) -> None:
        self._chosen += 1
        if self._suppress is not None and self._chosen >= self.params.min_new_tokens:
            self._suppress = None
            self.penalises = self._penalises_after_suppression
        if self.penalty is not None and chosen not in self._seen_set:
            self._seen_set.add(chosen)
            self._seen_ids = np.append(self._seen_ids, chosen)
        if self._counts is not None:
            self._counts[chosen] += 1.0
        self._total += 1

    def _choose_row(self, logits: np.ndarray) -> tuple[int, float, _Top]:
        """The one-row form of the steps `choose_batch` vectorises (after the penalty): the reference the
        batched path is tested against, and the path for parameters it does not vectorise (typical_p, min_p,
        top_n_tokens)."""
        if self.sampling:
            return _sample(
                logits,
                self.temperature,
                self.top_k,
                self.top_p,
                self.rng,
                self.typical_p,
                self.top_n,
                self.min_p,
            )
        return _greedy(logits, self.top_n)


# SamplingParams fields the vectorised steps of choose_batch implement (or that do not touch the choice).
_VECTORISED = frozenset(
    {
        "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed", "stop",
        # applied per row in Sampler._penalise, before the grouped steps
        "frequency_penalty", "presence_penalty", "min_new_tokens", "suppress_ids", "banned_ids",
        # read by decoding, not by the choice
        "prefill_logprobs", "truncate",
    }
)  # fmt: skip


@functools.cache
def _other_defaults(params_type: type[SamplingParams]) -> tuple[tuple[str, object], ...]:
    """(name, default) of the SamplingParams fields outside _VECTORISED (cached: fields() is slow)."""
    return tuple((f.name, f.default) for f in fields(params_type) if f.name not in _VECTORISED)


def choose_batch(samplers: Sequence[Sampler], logits: np.ndarray) -> list[Choice]:
    """Every sequence's next token: row i of `logits` (B, V) belongs to samplers[i] and is scratch space.

    Exactly what each sampler would choose on its own row (same ids, same logprobs, bit for bit; tests prove
    it), but rows that decode the same way go through each step together: one `np.partition` for the top-k of
    every such row, one softmax, one cumulative sum, one comparison against the draws. Only the draw itself
    (each sequence's own seeded generator, one number per token) and the penalty (each sequence's own seen
    ids) are per row. Per token at batch 16 this replaced ~15 NumPy calls of a few µs each by a share of ~15
    calls for the whole batch."""
    if logits.dtype != np.float32 or not logits.flags.writeable or not logits.flags.c_contiguous:
        logits = np.array(logits, dtype=np.float32)
    choices: list[Choice | None] = [None] * len(samplers)
    groups: dict[tuple, list[int]] = {}
    for row, sampler in enumerate(samplers):
        if sampler.penalises:
            sampler._penalise(logits[row])
        if sampler._group is None:  # a control only the one-row steps implement
            chosen, logprob, top = sampler._choose_row(logits[row])
            sampler._remember(chosen)
            choices[row] = Choice(id=chosen, logprob=logprob, top=top)
        else:
            groups.setdefault(sampler._group, []).append(row)
    for group, rows in groups.items():
        if len(rows) == 1:  # the one-row steps make fewer NumPy calls; the result is the same (tested)
            sampler = samplers[rows[0]]
            chosen, logprob, _ = sampler._choose_row(logits[rows[0]])  # top_n_tokens is not vectorised
            sampler._remember(chosen)
            choices[rows[0]] = Choice(id=chosen, logprob=logprob)
            continue
        block = logits if len(rows) == len(samplers) else logits[rows]
        members = [samplers[row] for row in rows]
        if group[0] == "greedy":
            chosen_ids, logprobs = _greedy_rows(block)
        else:
            _, top_k, nucleus = group
            # One uniform number per sequence and token, from its own generator: the draws of a sequence do
            # not depend on which other sequences share its batch.
            uniforms = np.array([s.rng.random() for s in members])
            temperatures = np.array([s.temperature for s in members])
            top_p = np.array([s.top_p for s in members]) if nucleus else None
            chosen_ids, logprobs = _sample_rows(block, temperatures, top_k, top_p, uniforms)
        for row, sampler, chosen, logprob in zip(rows, members, chosen_ids, logprobs, strict=True):
            sampler._remember(chosen)
            choices[row] = Choice(id=chosen, logprob=logprob)
    return choices  # type: ignore[return-value]  # every row was filled above


# Larger than any logit the network produces, small enough that differences of two stay finite in float32.
_LOGIT_BOUND = np.float32(1e30)


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (unordered), O(V) with argpartition instead of a full sort."""
    if k >= values.shape[0]:
        return np.arange(values.shape[0])
    return np.argpartition(values, values.shape[0] - k)[-k:]


def top_k_ascending(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest logits of each row, in ascending id order: (V,) -> (k,) or (B, V) -> (B, k).

    The candidate order decides which word a seeded uniform draw lands on, so it is canonical (ascending ids)
    instead of whatever order `argpartition` leaves (an implementation detail that may change with NumPy).
    The k-th largest value comes from `np.partition` (values only: about twice as fast as `argpartition`
    here); every logit at least that large is a candidate. Ties at the threshold (more than k such logits)
    keep the lowest ids."""
    if logits.ndim == 1:  # one sequence (the common case of a lightly loaded server): fewer NumPy calls
        size = logits.shape[0]
        threshold = np.partition(logits, size - k)[size - k]
        ids = np.flatnonzero(logits >= threshold)
        return ids if ids.size == k else _top_k_flat(logits[None, :], k)[0]
    return _top_k_flat(logits, k) % logits.shape[1]


def _top_k_flat(rows: np.ndarray, k: int) -> np.ndarray:
    """top_k_ascending of (B, V) as positions in the flattened (B * V) array, shape (B, k)."""
    size = rows.shape[1]
    threshold = np.partition(rows, size - k, axis=1)[:, size - k : size - k + 1]
    flat = np.flatnonzero(rows >= threshold)
    if flat.size == rows.shape[0] * k:  # no ties at any threshold: k hits per row, in row-major order
        return flat.reshape(rows.shape[0], k)
    positions = np.empty((rows.shape[0], k), dtype=np.int64)
    for i, (row, value) in enumerate(zip(rows, threshold[:, 0], strict=True)):
        above = np.flatnonzero(row > value)
        tied = np.flatnonzero(row == value)[: k - above.size]
        positions[i] = np.sort(np.concatenate([above, tied])) + i * size
    return positions


def softmax_with_temperature(logits: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """softmax(logits / temperature) over the last axis, in place on a float64 array, finite for every
    temperature > 0 (a scalar, or one per row as a (B, 1) array).

    The maximum is subtracted *before* dividing: (l - max) / T is 0 for the best word and <= 0 elsewhere, so
    a subnormal temperature (5e-324) gives 0 or -inf, never inf - inf = NaN, and the result is greedy (ties
    share the mass), as a tiny temperature should be.
    """
    logits -= logits.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):  # -x / 5e-324 is -inf on purpose: exp gives 0
        logits /= temperature
        probabilities = np.exp(logits, out=logits)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return probabilities


_Top = tuple[tuple[int, float], ...]


def _greedy(logits: np.ndarray, top_n: int = 0) -> tuple[int, float, _Top]:
    chosen = int(np.argmax(logits))
    best = float(logits[chosen])
    # log softmax of the winner = -log sum exp(l - l_max); computed in float64 for accuracy.
    logsumexp = math.log(float(np.exp(logits - best, dtype=np.float64).sum()))
    top: _Top = ()
    if top_n:
        ids = top_k_indices(logits, top_n)
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        top = tuple((int(i), float(logits[i]) - best - logsumexp) for i in ids if np.isfinite(logits[i]))
    return chosen, -logsumexp, top


def _greedy_rows(logits: np.ndarray) -> tuple[list[int], list[float]]:
    """_greedy for every row of (G, V) at once."""
    chosen = np.argmax(logits, axis=1)
    top = logits[np.arange(logits.shape[0]), chosen]
    sums = np.exp(logits - top[:, None], dtype=np.float64).sum(axis=1)
    return chosen.tolist(), [-math.log(total) for total in sums.tolist()]


def _sample(
    logits: np.ndarray,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    rng: np.random.Generator,
    typical_p: float | None = None,
    top_n: int = 0,
    min_p: float | None = None,
) -> tuple[int, float, _Top]:
    """Temperature → top-k → top-p → min-p → typical-p → one draw, for one row. Works on the k candidates
    only once top-k has cut them; `kept` (indices into the candidates) is None while every candidate is still
    in. `_sample_rows` is the same for many rows (without min-p, typical-p and top_n)."""
    if top_k is not None:
        candidates = top_k_ascending(logits, top_k)
        scaled = logits[candidates].astype(np.float64)
    else:
        candidates = None
        scaled = logits.astype(np.float64)
    probabilities = softmax_with_temperature(scaled, temperature)

    kept: np.ndarray | None = None
    if top_p is not None:
        orders, sorted_rows, cumulative_rows = nucleus_sorted(probabilities[None, :], np.array([top_p]))
        order, sorted_probabilities, cumulative = orders[0], sorted_rows[0], cumulative_rows[0]
        # Keep every word whose preceding mass is still below p: the smallest prefix reaching p, at least one
        # (and at most all of them, should rounding leave the total a hair below p).
        keep = min(int(np.searchsorted(cumulative, top_p, side="left")) + 1, cumulative.size)
        kept = order[:keep]
        probabilities = sorted_probabilities[:keep] / cumulative[keep - 1]
    if min_p is not None:
        likely = np.flatnonzero(probabilities >= min_p * probabilities.max())
        kept = likely if kept is None else kept[likely]
        probabilities = probabilities[likely] / probabilities[likely].sum()
    if typical_p is not None:
        typical = _typical(probabilities, typical_p)
        kept = typical if kept is None else kept[typical]
        probabilities = probabilities[typical]
        probabilities /= probabilities.sum()
    position = _draw(probabilities, rng.random())
    probability = float(probabilities[position])

    def word(position: int) -> int:
        local = int(kept[position]) if kept is not None else position
        return int(candidates[local]) if candidates is not None else local

    top: _Top = ()
    if top_n:
        best = top_k_indices(probabilities, min(top_n, probabilities.shape[0]))
        best = best[np.argsort(-probabilities[best], kind="stable")]
        top = tuple((word(int(i)), math.log(probabilities[i])) for i in best if probabilities[i] > 0)
    return word(position), math.log(probability) if probability > 0 else -math.inf, top


# How many of the most probable words top-p sorts first (then more, then all). Sorting a whole 7,000-word row
# costs more than the rest of a token's sampling (about 0.4 ms a row); the nucleus nearly always lies among
# the few hundred most probable words, which `np.partition` finds in one linear pass. One flat row (a reply's
# first word) must not send a whole batch to the full sort: the second, longer shortlist catches most.
NUCLEUS_SHORTLIST = 256
NUCLEUS_SHORTLISTS = (NUCLEUS_SHORTLIST, 1024)


def nucleus_sorted(probabilities: np.ndarray, top_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's word indices by falling probability (ties: the lower index first), those probabilities and
    their running sum: (B, W) -> three (B, w) arrays, where w is W or a shortlist of the most probable words
    (NUCLEUS_SHORTLISTS, shortest first) when every row's shortlist already holds its `top_p` mass. The
    shortlist is then exactly the first w entries of the full stable sort (every word outside it is less
    probable than every word in it, and ties at its edge make the full sort instead), and a running sum over
    a prefix is the prefix of the running sum, so top-p keeps and draws exactly what the full sort gives."""
    rows, width = probabilities.shape
    for size in NUCLEUS_SHORTLISTS:
        if width <= 2 * size:
            break
        edge = width - size
        threshold = np.partition(probabilities, edge, axis=1)[:, edge : edge + 1]
        flat = np.flatnonzero(probabilities >= threshold)
        if flat.size != rows * size:  # ties at some row's edge: the full sort decides them
            break
        ids = (flat % width).reshape(rows, size)  # ascending ids per row
        shortlisted = probabilities.reshape(-1)[flat].reshape(rows, size)
        order = np.argsort(-shortlisted, axis=1, kind="stable")
        sorted_probabilities = np.take_along_axis(shortlisted, order, axis=1)
        cumulative = np.cumsum(sorted_probabilities, axis=1)
        if (cumulative[:, -1] >= top_p).all():
            return np.take_along_axis(ids, order, axis=1), sorted_probabilities, cumulative
    order = np.argsort(-probabilities, axis=1, kind="stable")
    sorted_probabilities = np.take_along_axis(probabilities, order, axis=1)
    return order, sorted_probabilities, np.cumsum(sorted_probabilities, axis=1)


def _typical(probabilities: np.ndarray, mass: float) -> np.ndarray:
    """Indices of the locally typical set (HF TypicalLogitsWarper): sort the words by how far their
    surprisal -log p lies from the entropy, keep the closest until they hold `mass` (at least one word)."""
    nonzero = np.flatnonzero(probabilities > 0)
    p = probabilities[nonzero]
    surprisal = -np.log(p)
    entropy = float((p * surprisal).sum())
    order = np.argsort(np.abs(surprisal - entropy), kind="stable")
    cumulative = np.cumsum(p[order])
    last = min(int((cumulative < mass).sum()), order.shape[0] - 1)
    return nonzero[order[: last + 1]]


def _draw(probabilities: np.ndarray, uniform: float) -> int:
    """Inverse-CDF draw: one uniform number per token keeps seeded runs reproducible and cheap."""
    cumulative = np.cumsum(probabilities)
    position = int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right"))
    return min(position, probabilities.shape[0] - 1)


def _sample_rows(
    logits: np.ndarray,
    temperatures: np.ndarray,
    top_k: int | None,
    top_p: np.ndarray | None,
    uniforms: np.ndarray,
) -> tuple[list[int], list[float]]:
    """_sample for every row of (G, V) at once: one temperature, top-p and uniform number per row, one top-k
    for all. Each step is the row-wise form of _sample's (row-wise reductions, elementwise arithmetic), so a
    row gets exactly what _sample gives it alone."""
    rows = np.arange(logits.shape[0])
    if top_k is not None:
        flat = _top_k_flat(logits, top_k)
        scaled = logits.reshape(-1)[flat].astype(np.float64)
        candidates = flat % logits.shape[1]
    else:
        candidates = None
        scaled = logits.astype(np.float64)
    probabilities = softmax_with_temperature(scaled, temperatures[:, None])
    width = probabilities.shape[1]

    if top_p is not None:
        order, sorted_probabilities, cumulative = nucleus_sorted(probabilities, top_p)
        width = order.shape[1]
        # searchsorted(side="left") on each non-decreasing row = the number of entries below p.
        keep = np.minimum((cumulative < top_p[:, None]).sum(axis=1) + 1, width)
        kept_probabilities = sorted_probabilities / cumulative[rows, keep - 1][:, None]
        # The draw over each row's first `keep` entries (a prefix of a cumulative sum is the cumulative sum
        # of the prefix); searchsorted(side="right") = the number of entries <= the target.
        kept_cumulative = np.cumsum(kept_probabilities, axis=1)
        targets = uniforms * kept_cumulative[rows, keep - 1]
        inside = np.arange(width)[None, :] < keep[:, None]
        positions = np.minimum(((kept_cumulative <= targets[:, None]) & inside).sum(axis=1), keep - 1)
        local = order[rows, positions]
        chosen_probabilities = kept_probabilities[rows, positions]
    else:
        cumulative = np.cumsum(probabilities, axis=1)
        targets = uniforms * cumulative[:, -1]
        positions = np.minimum((cumulative <= targets[:, None]).sum(axis=1), width - 1)
        local = positions
        chosen_probabilities = probabilities[rows, positions]
    chosen = candidates[rows, local] if candidates is not None else local
    logprobs = [math.log(p) if p > 0 else -math.inf for p in chosen_probabilities.tolist()]
    return chosen.tolist(), logprobs
