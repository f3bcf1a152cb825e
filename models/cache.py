"""A continuous cache over the running text (Grave, Joulin & Usunier 2017, "Improving neural language models
with a continuous cache").

A novel repeats itself locally: the names, objects and turns of phrase of the current scene come back within
a few hundred words, and a network trained on the whole book spreads its probability over every scene. The
cache remembers, for each of the last `window` positions i of the running text, the network's output there
(h_i, the vector it predicted the next token from) and the token that actually followed (x_{i+1}). At a new
position t it proposes the tokens that followed the positions whose output looked like the current one:

    p_cache(w) ∝ Σ_{i in the window, x_{i+1} = w} exp(θ · cos(h_t, h_i))

and the served distribution becomes (1 − μ)·p_model + μ·p_cache (μ scaled by how full the cache is, below),
where p_model is what would be served without it (the LSTM, or its n-gram mixture, models/ngram.py). Cosine
rather than the paper's raw dot product: the head outputs' lengths vary with the head (a predicted vector for
cos_softmax, the hidden state for the one-hot head), and a cosine keeps θ ("flatness": small θ spreads the
cache over the whole window, large θ picks the few positions most like the current one) comparable between
them.

What the running text is: real text only. In evaluation, the held-out text read so far; in serving, the
prompt (in chat, the rendered conversation, earlier replies included), never the tokens being sampled. A cache
that also remembered the sampled tokens fed on itself: on the default 红楼梦 model, greedy decoding after
`宝玉笑道：` gave `你你你你…` and sampling at temperature 0.8 `王熙凤王熙凤王熙凤` (each token made itself
more likely at the next similar position).

The cache's share grows with what it holds: μ·min(1, n / window) with n remembered pairs. A cache of a few
pairs is a few words with all of its mass, and at μ = 0.12 one such word outranks the model's own best guess
wherever the model is unsure (after a 5-character prompt, greedy decoding repeated the prompt's words); a full
window is the estimate μ was chosen for. Evaluation reads the same rule (the cache starts empty at the first
held-out token), so what is measured is what is served. μ, θ and the window are chosen on the validation tail
of the training chapters (training/cache.py) and stored in the model directory (`cache.json`).

Counts over the running text (a dynamic token n-gram, Kuhn & De Mori 1990): a name or a turn of phrase that
came back recently usually comes back with the same neighbours, which the cosine above only sees through the
network's outputs. After the cache, each row mixes in p_dyn(w | a, b) = count(a b w) / count(a b ·) over the
last `count_window` ids of the running text, where (a, b) are the row's two previous tokens, or
count(b w) / count(b ·) when that trigram context never occurred there (nothing when b did not either):

    p' = (1 − ν_c)·p_served + ν_c·p_dyn

ν_c depends on the class c of the row's context: trigram or bigram, and min(floor(log2 count(context ·)), 4)
(a context seen once is a weaker estimate than one seen 16 times). The ν are chosen with μ on the validation
tail (training/cache.py) and stored with them; a settings file without them (written before) serves ν = 0.
The counts are read with NumPy from the history's ids, which are kept in reading order (which positions follow
the same one or two ids), never from a per-token table that a tick would have to update. Their window is their
own: an id costs 8 bytes to remember and one comparison per tick, a cache pair 200 floats and a dot product,
so counts can afford a longer memory than the cache (chosen on the validation tail, training/cache.py). A
settings file without `count_window` counts over the cache's window, as before it.

`CacheHistory` holds the remembered pairs of a whole decoding batch (one row per sequence, a ring buffer of
at most `window` pairs each) so that a tick scores every row's cache with one batched product; rows never
share anything, so a sequence's cache is the same alone or in a batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

# Positions scored together when a whole stream is read at once (evaluation, prompt prefill): bounds the
# (chunk, chunk + window) similarity block.
STREAM_CHUNK = 256
# Context classes of the token n-gram per order: min(floor(log2 count(context ·)), COUNT_CLASSES - 1).
COUNT_CLASSES = 5


@dataclass(frozen=True)
class CacheSettings:
    """μ (`weight`, the cache's share of the served distribution), θ (`flatness`) and the window (how many
    recent positions are remembered)."""

    weight: float
    flatness: float
    window: int
    # ν of the token n-gram over the window, by how often the row's context occurred there (1, 2-3, 4-7,
    # 8-15, 16 or more times): after a trigram context, and after a bigram one (the trigram's was not there).
    trigram_weights: tuple[float, ...] = (0.0,) * COUNT_CLASSES
    bigram_weights: tuple[float, ...] = (0.0,) * COUNT_CLASSES
    # How many recent ids the token n-gram counts over (None: the cache's window).
    count_window: int | None = None

    def __post_init__(self) -> None:
        # JSON gives lists; the settings stay hashable and comparable as tuples.
        for name in ("trigram_weights", "bigram_weights"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def validate(self) -> None:
        if not (isinstance(self.weight, float | int) and 0.0 <= self.weight < 1.0):
            raise ValueError(f"cache weight must be a number in [0, 1), got {self.weight!r}")
        if not (
            isinstance(self.flatness, float | int) and math.isfinite(self.flatness) and self.flatness >= 0
        ):
            raise ValueError(f"cache flatness must be a finite number >= 0, got {self.flatness!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"cache window must be a positive integer, got {self.window!r}")
        if self.count_window is not None and (
            isinstance(self.count_window, bool)
            or not isinstance(self.count_window, int)
            or self.count_window < 1
        ):
            raise ValueError(f"count_window must be a positive integer, got {self.count_window!r}")
        for name in ("trigram_weights", "bigram_weights"):
            value = getattr(self, name)
            if not (
                isinstance(value, tuple)
                and len(value) == COUNT_CLASSES
                and all(
                    isinstance(v, float | int) and not isinstance(v, bool) and 0.0 <= v < 1.0 for v in value
                )
            ):
                raise ValueError(f"{name} must be {COUNT_CLASSES} numbers in [0, 1), got {value!r}")

    @property
    def ids_window(self) -> int:
        """How many recent ids the token n-gram counts over."""
        return self.window if self.count_window is None else self.count_window

    @property
    def counts_used(self) -> bool:
        """Whether the token n-gram gets any weight."""
        return any(self.trigram_weights) or any(self.bigram_weights)

    def class_weights(self) -> np.ndarray:
        """ν by context class as `ngram_stream` numbers them: 0 none, 1.. bigram, then trigram."""
        return np.array([0.0, *self.bigram_weights, *self.trigram_weights])

    def save(self, path: str | Path) -> None:
        data = asdict(self)
        if not self.counts_used:  # the file a program without the token n-gram reads too
            del data["trigram_weights"], data["bigram_weights"]
        if data.get("count_window") is None:
            data.pop("count_window", None)
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CacheSettings:
        """Read what save wrote; ValueError naming the file for anything else (missing or unknown fields,
        values out of range). The token n-gram's weights are optional (absent: ν = 0, as before them), and so
        is its window (absent: the cache's)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable cache settings file ({error})") from None
        names = {f.name for f in fields(cls)}
        required = {"weight", "flatness", "window"}
        if not isinstance(data, dict) or not required <= set(data) <= names:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"{path}: expected exactly the fields {sorted(required)} (and optionally "
                f"{sorted(names - required)}), found {found}"
            )
        settings = cls(**data)
        try:
            settings.validate()
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return settings


def unit_rows(outputs: np.ndarray) -> np.ndarray:
    """Head outputs (..., D) scaled to unit length (float32): the cache compares them by cosine."""
    outputs = np.asarray(outputs, dtype=np.float32)
    norms = np.sqrt(np.einsum("...d,...d->...", outputs, outputs))[..., None]
    return np.divide(outputs, norms, out=np.zeros_like(outputs), where=norms > 0)


class CacheHistory:
    """The remembered (unit output, next id) pairs of B sequences' prompts: one keys array (C_b, D) per row,
    ids (B, C) with -1 where a slot is empty (C the widest row's capacity), and how many pairs each row
    holds. A row's capacity C_b is the next power of two (at least 16) up to the window, so short prompts
    never pay for a full window (the cache is a set: the order of its slots does not matter). Beside them,
    `count_ids` (B, C'): the last `count_window` ids of each row's prompt in reading order (-1 past a row's
    count), what the token n-gram counts over.

    The keys are a list of per-row arrays, not one (B, C, D) block, because a batch changes shape on most
    ticks (a request joins, a candidate is pruned, a reply ends) and a block had to be copied whole each
    time: a grounded chat prompt keeps 256 slots of 200 floats, so a batch of 20 such rows copied 4 MB per
    change. Rows of one prompt (a request's candidates) share one keys array; selecting or stacking rows
    copies only the small ids and counts."""

    __slots__ = ("count_ids", "counts", "ids", "keys", "window")

    def __init__(
        self,
        keys: list[np.ndarray],
        ids: np.ndarray,
        counts: np.ndarray,
        window: int,
        count_ids: np.ndarray | None = None,
    ) -> None:
        self.keys, self.ids, self.counts, self.window = keys, ids, counts, window
        self.count_ids = ids if count_ids is None else count_ids

    @classmethod
    def of_text(
        cls, outputs: np.ndarray, next_ids: np.ndarray, window: int, count_window: int | None = None
    ) -> CacheHistory:
        """One row: the last `window` pairs of a text read at once (outputs (T, D) after each token and the
        token that followed each; a prompt gives T - 1 pairs, its last output has no successor yet), and
        the last `count_window` (default: `window`) of those next ids for the token n-gram."""
        count_window = window if count_window is None else count_window
        counted = np.asarray(next_ids[-count_window:], dtype=np.int64)
        outputs, next_ids = outputs[len(outputs) - min(len(outputs), window) :], next_ids[-window:]
        count = len(next_ids)
        capacity = _capacity(count, window)
        keys = np.zeros((capacity, outputs.shape[-1]), dtype=np.float32)
        ids = np.full((1, capacity), -1, dtype=np.int64)
        keys[:count] = unit_rows(outputs)
        ids[0, :count] = next_ids
        count_ids = np.full((1, _capacity(len(counted), count_window)), -1, dtype=np.int64)
        count_ids[0, : len(counted)] = counted
        return cls([keys], ids, np.array([count], dtype=np.int64), window, count_ids)

    def __len__(self) -> int:
        return len(self.counts)

    def select(self, rows: np.ndarray) -> CacheHistory:
        return CacheHistory(
            [self.keys[row] for row in rows.tolist()],
            self.ids[rows],
            self.counts[rows],
            self.window,
            self.count_ids[rows],
        )

    def stack(self, other: CacheHistory) -> CacheHistory:
        """These rows followed by other's (a sequence joining a batch)."""
        return CacheHistory.concatenate([self, other])

    @classmethod
    def concatenate(cls, histories: list[CacheHistory]) -> CacheHistory:
        """The rows of every history in order (sequences joining a batch together); the keys are shared."""
        return cls(
            [keys for history in histories for keys in history.keys],
            _stack_rows([history.ids for history in histories]),
            np.concatenate([history.counts for history in histories]),
            histories[0].window,
            _stack_rows([history.count_ids for history in histories]),
        )

    def similarities(self, unit: np.ndarray) -> np.ndarray:
        """(B, C) cosine of each row's unit query (B, D) with each of its remembered keys (0 in the slots a
        row does not have). One matrix-vector product per row: a row's numbers do not depend on the other
        rows of the batch (nor on how wide the widest row is). Reading the keys is most of the cache's cost
        in a tick."""
        found = np.zeros(self.ids.shape, dtype=np.float32)
        for row, keys in enumerate(self.keys):
            np.matmul(keys, unit[row], out=found[row, : len(keys)])
        return found


def _stack_rows(blocks: list[np.ndarray]) -> np.ndarray:
    """Id blocks (B_k, C_k) one under the other, padded with -1 to the widest."""
    stacked = np.full(
        (sum(len(block) for block in blocks), max(block.shape[1] for block in blocks)), -1, np.int64
    )
    at = 0
    for block in blocks:
        stacked[at : at + len(block), : block.shape[1]] = block
        at += len(block)
    return stacked


def stream_fill(n: int, window: int, start: int = 0) -> np.ndarray:
    """The fill of positions start .. start + n - 1 of a text read at once from an empty cache: position t
    remembers min(t, window) pairs."""
    return np.minimum(1.0, np.arange(start, start + n, dtype=np.float64) / window)


def _ngram_sparse(
    trigram: np.ndarray, bigram: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """p_dyn from occurrence blocks (n, K): whether column k holds a token that followed the row's two
    (trigram) or one (bigram) previous ids. The trigram's occurrences where it has any, else the bigram's,
    each 1 / their number: sparse (rows, columns, probabilities), and each row's context class (0: neither
    seen, 1 + count class after a bigram, 1 + COUNT_CLASSES + count class after a trigram)."""
    trigram_total, bigram_total = trigram.sum(axis=1), bigram.sum(axis=1)
    use_trigram = trigram_total > 0
    total = np.where(use_trigram, trigram_total, bigram_total)
    rows, columns = np.nonzero(np.where(use_trigram[:, None], trigram, bigram))
    values = 1.0 / total[rows]
    count_class = np.minimum(np.log2(np.maximum(total, 1)).astype(np.int64), COUNT_CLASSES - 1)
    classes = np.where(total > 0, np.where(use_trigram, 1 + COUNT_CLASSES, 1) + count_class, 0)
    return rows, columns, values, classes


def ngram_distribution(
    ids: np.ndarray, previous: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The token n-gram of a decoding batch: ids (B, C) each row's remembered ids in reading order (-1 past
    its count), previous (B, 2) each row's two last tokens (-1 where there is none). Sparse (rows, ids,
    probabilities) and each row's context class (`_ngram_sparse`)."""
    blank = np.full((len(ids), 2), -1, dtype=ids.dtype)
    before = np.concatenate([blank, ids], axis=1)  # before[:, k + 2 - j]: the id j places before slot k
    a, b = previous[:, :1], previous[:, 1:]
    bigram = (before[:, 1:-1] == b) & (b >= 0) & (ids >= 0)
    trigram = bigram & (before[:, :-2] == a) & (a >= 0)
    rows, columns, values, classes = _ngram_sparse(trigram, bigram)
    return rows, ids[rows, columns], values, classes


def ngram_stream(
    next_ids: np.ndarray, start: int, stop: int, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`ngram_distribution` at positions start..stop-1 of a text read at once (rows count from start):
    position t remembers next_ids[t - window .. t - 1], and its previous tokens are next_ids[t - 2] and
    next_ids[t - 1]."""
    next_ids = np.asarray(next_ids, dtype=np.int64)
    low = max(0, start - window)
    padded = np.concatenate([[-1, -1], next_ids[:stop]])
    remembered = np.arange(low, stop)[None, :]  # column r: the token next_ids[r]
    position = np.arange(start, stop)[:, None]
    a = padded[position]  # next_ids[t - 2]
    b = padded[position + 1]  # next_ids[t - 1]
    bigram = (
        (remembered < position)
        & (remembered - 1 >= position - window)
        & (padded[remembered + 1] == b)
        & (b >= 0)
    )
    trigram = bigram & (remembered - 2 >= position - window) & (padded[remembered] == a) & (a >= 0)
    rows, columns, values, classes = _ngram_sparse(trigram, bigram)
    return rows, next_ids[low + columns], values, classes


def ngram_target_probabilities(next_ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """p_dyn(next_ids[t]) and the context class at every position t of a text: what a choice of ν needs."""
    next_ids = np.asarray(next_ids, dtype=np.int64)
    found, classes = np.zeros(len(next_ids)), np.zeros(len(next_ids), dtype=np.int64)
    for start in range(0, len(next_ids), STREAM_CHUNK):
        stop = min(start + STREAM_CHUNK, len(next_ids))
        rows, ids, values, classes[start:stop] = ngram_stream(next_ids, start, stop, window)
        hit = ids == next_ids[start + rows]
        found[start:stop] = np.bincount(rows[hit], weights=values[hit], minlength=stop - start)
    return found, classes


def _capacity(count: int, window: int) -> int:
    """Slots for `count` pairs: the next power of two (at least 16), at most the window."""
    return min(window, max(16, 1 << max(0, count - 1).bit_length()))


class ContinuousCache:
    """Mixes the cache's distribution into next-token probabilities, for a decoding batch (`mix`) or for a
    whole text read at once (`mix_stream`, `target_probabilities`)."""

    def __init__(self, settings: CacheSettings) -> None:
        settings.validate()
        self.settings = settings

    @property
    def window(self) -> int:
        return self.settings.window

    def fill(self, pairs: np.ndarray) -> np.ndarray:
        """min(1, pairs / window): the part of μ a cache holding that many pairs gets (0 when empty)."""
        return np.minimum(1.0, np.asarray(pairs, dtype=np.float64) / self.settings.window)

    def _weights(self, similarities: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """exp(θ·cos) over the valid slots of each row, normalised (rows without any stay all zero)."""
        scores = np.where(valid, self.settings.flatness * similarities, -np.inf)
        top = scores.max(axis=-1, keepdims=True)
        top[~np.isfinite(top)] = 0.0
        weights = np.exp(scores - top)
        totals = weights.sum(axis=-1, keepdims=True)
        return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)

    def distribution(
        self, queries: np.ndarray, history: CacheHistory
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """p_cache for each row of a batch, sparse: (rows, ids, probabilities), one entry per slot of the
        history, with repeats to be summed (a word that followed several remembered positions) and empty
        slots as probability 0 on id 0 (cheaper to add than to filter out); and each row's `fill` (B,)."""
        similarities = history.similarities(unit_rows(queries))
        valid = history.ids >= 0
        weights = self._weights(similarities, valid)
        rows = np.repeat(np.arange(len(valid)), valid.shape[1])
        fill = self.fill(valid.sum(axis=1))
        return rows, np.maximum(history.ids, 0).reshape(-1), weights.reshape(-1), fill

    def mix(
        self,
        probabilities: np.ndarray,
        queries: np.ndarray,
        history: CacheHistory,
        recent: Sequence[Sequence[int]] = (),
    ) -> np.ndarray:
        """(1 − μ·fill)·p + μ·fill·p_cache, in place on probabilities (B, V); a row with an empty cache keeps
        p (fill 0: an empty cache proposes nothing). Then, with token n-gram weights, (1 − ν)·that + ν·p_dyn
        given each row's `recent` ids (its last tokens, prompt then generated; at least the last two)."""
        rows, ids, values, fill = self.distribution(queries, history)
        self._add(probabilities, rows, ids, values, self.settings.weight * fill)
        if self.settings.counts_used:
            previous = np.full((len(probabilities), 2), -1, dtype=np.int64)
            for row, tokens in enumerate(recent):
                tail = list(tokens[-2:])
                previous[row, 2 - len(tail) :] = tail
            rows, ids, values, classes = ngram_distribution(history.count_ids, previous)
            self._add(probabilities, rows, ids, values, self.settings.class_weights()[classes])
        return probabilities

    def _add(
        self,
        probabilities: np.ndarray,
        rows: np.ndarray,
        ids: np.ndarray,
        values: np.ndarray,
        share: np.ndarray,
    ) -> np.ndarray:
        """(1 − share)·p + share·(the sparse distribution), each row its own share (B,)."""
        # One in-place multiply by a per-row factor: `probabilities[rows] *= …` would gather the rows into a
        # copy and scatter them back (measured 15x slower on a (1024, 6975) block).
        probabilities *= (1.0 - share).astype(probabilities.dtype)[:, None]
        added = (share[rows] * values).astype(probabilities.dtype)
        if probabilities.flags.c_contiguous:  # flat indices: np.add.at is about 3x faster on one axis
            flat = probabilities.reshape(-1)  # a view, so the sums land in probabilities
            np.add.at(flat, rows * probabilities.shape[1] + ids, added)
        else:  # a head may hand back its logits in Fortran order: reshaping would add into a copy
            np.add.at(probabilities, (rows, ids), added)
        return probabilities

    def stream_sparse(
        self, unit: np.ndarray, next_ids: np.ndarray, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """p_cache at positions start..stop-1 of a text read at once, sparse as in `distribution` (rows count
        from start), and each position's fill: unit (T, D) are the unit outputs after each token, next_ids
        (T,) the token that followed each; position t remembers the pairs of positions t - window .. t - 1."""
        low = max(0, start - self.window)
        similarities = unit[start:stop] @ unit[low:stop].T  # (n, stop - low)
        position = np.arange(start, stop)[:, None]
        remembered = np.arange(low, stop)[None, :]
        valid = (remembered < position) & (remembered >= position - self.window)
        weights = self._weights(similarities, valid)
        rows, columns = np.nonzero(valid)
        fill = stream_fill(stop - start, self.window, start)
        return rows, np.asarray(next_ids)[low + columns], weights[rows, columns], fill

    def mix_stream(
        self, probabilities: np.ndarray, unit: np.ndarray, next_ids: np.ndarray, start: int
    ) -> np.ndarray:
        """`mix` for positions start .. start + len(probabilities) - 1 of a text read at once (in place)."""
        stop = start + len(probabilities)
        rows, ids, values, fill = self.stream_sparse(unit, next_ids, start, stop)
        self._add(probabilities, rows, ids, values, self.settings.weight * fill)
        if self.settings.counts_used:
            rows, ids, values, classes = ngram_stream(next_ids, start, stop, self.settings.ids_window)
            self._add(probabilities, rows, ids, values, self.settings.class_weights()[classes])
        return probabilities

    def target_probabilities(self, unit: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
        """p_cache(next_ids[t]) at every position t of a text (0 where the cache is still empty): all that a
        choice of μ needs, without the (T, V) distributions."""
        next_ids = np.asarray(next_ids)
        result = np.zeros(len(next_ids))
        for start in range(0, len(next_ids), STREAM_CHUNK):
            stop = min(start + STREAM_CHUNK, len(next_ids))
            rows, ids, values, _ = self.stream_sparse(unit, next_ids, start, stop)
            hit = ids == next_ids[start + rows]
            result[start:stop] = np.bincount(rows[hit], weights=values[hit], minlength=stop - start)
        return result
