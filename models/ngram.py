"""Interpolated modified Kneser-Ney n-grams over integer symbols, and the LSTM + n-gram mixture served.

`KneserNey` (Chen & Goodman 1998) counts with NumPy over int64 n-gram keys (sort + unique + searchsorted), so
a token trigram over the whole of 红楼梦 fits in seconds; no Python loop runs per n-gram. It gives
log2 P(target | history) for a text (the evaluation) and the whole next-symbol distribution after each of a
batch of histories (decoding). It is stored as plain arrays (`arrays` / `from_arrays`, np.savez without
pickle).

`Mixture` is what a model with an n-gram serves and what its bits per character measure:
P(w | h) = λ·softmax(LSTM scores)(w) + (1 − λ)·P_KN(w | h), a proper distribution over the same vocabulary.
λ is chosen on the validation tail of the training chapters (training/fit.py), never on the held-out text.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np


def _modified_discounts(counts: np.ndarray) -> np.ndarray:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts n1..n4, clipped to [0, k] for count k, with the
    single absolute discount Y = n1/(n1+2 n2) where a count-of-count is missing (small texts)."""
    n = [int(np.sum(counts == k)) for k in range(1, 5)]
    if n[0] == 0:
        return np.array([0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    discounts = [
        1 - 2 * y * n[1] / n[0],
        2 - 3 * y * n[2] / n[1] if n[1] else y,
        3 - 4 * y * n[3] / n[2] if n[2] else y,
    ]
    # The floor keeps some mass for the lower order (ultimately the uniform) on tiny texts, where the
    # estimate can reach 0 and leave unseen symbols with probability 0; on a novel it is far above the floor.
    return np.clip(np.array(discounts), [0.1, 0.2, 0.3], [1.0, 2.0, 3.0])


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each query in sorted_keys."""
    if not len(sorted_keys):
        return np.zeros(len(queries), dtype=np.int64), np.zeros(len(queries), dtype=bool)
    index = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return index, sorted_keys[index] == queries


class _Level:
    """The n-grams of one order: sorted keys with their discounted counts, and per context the total count
    and the discount mass D1·N1 + D2·N2 + D3·N3+."""

    def __init__(
        self,
        keys: np.ndarray,
        numerators: np.ndarray,
        contexts: np.ndarray,
        context_total: np.ndarray,
        context_mass: np.ndarray,
    ) -> None:
        self.keys, self.numerators = keys, numerators
        self.contexts, self.context_total, self.context_mass = contexts, context_total, context_mass

    @classmethod
    def count(cls, keys: np.ndarray, counts: np.ndarray, base: int, discounts: np.ndarray | None) -> _Level:
        discounts = _modified_discounts(counts) if discounts is None else np.asarray(discounts, float)
        discount = discounts[np.minimum(counts, 3) - 1]
        contexts, inverse = np.unique(keys // base, return_inverse=True)
        return cls(
            keys,
            np.maximum(counts - discount, 0.0),
            contexts,
            np.bincount(inverse, weights=counts.astype(np.float64)),
            np.bincount(inverse, weights=discount),
        )


class KneserNey:
    """Interpolated modified Kneser-Ney of a given order over integer symbols 1..alphabet-1 (0 = unknown).

    P_k(w | h) = max(c_k(hw) − D_k(c_k(hw)), 0) / c_k(h·) + γ_k(h) · P_{k−1}(w | h'),
    γ_k(h) = (D1 N1(h·) + D2 N2(h·) + D3 N3+(h·)) / c_k(h·), and P_k = P_{k−1} for a context never seen.
    c_k is the raw count at the highest order and the continuation count N1+(·hw) below it; P_0 is uniform
    over the alphabet (training symbols + the unknown symbol)."""

    def __init__(self, alphabet: int, order: int, levels: list[_Level]) -> None:
        self.alphabet, self.order, self.levels = alphabet, order, levels

    @classmethod
    def fit(
        cls, train: np.ndarray, alphabet: int, order: int, discounts: np.ndarray | None = None
    ) -> KneserNey:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if alphabet**order >= 2**63:
            raise ValueError(f"alphabet {alphabet} too large for int64 keys of order {order}")
        train = np.asarray(train, dtype=np.int64)
        levels = []
        for k in range(1, order + 1):
            grams = _keys(train, k, alphabet)
            if k == order:
                keys, counts = np.unique(grams, return_counts=True)
            else:  # continuation count: how many distinct symbols precede the k-gram
                longer = np.unique(_keys(train, k + 1, alphabet))
                keys, counts = np.unique(longer % alphabet**k, return_counts=True)
            levels.append(_Level.count(keys, counts, alphabet, discounts))
        return cls(alphabet, order, levels)

    # ------------------------------------------------------------------------------------------ storage
    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Plain arrays for np.savez (no objects, loadable with allow_pickle=False)."""
        result = {f"{prefix}meta": np.array([self.alphabet, self.order], dtype=np.int64)}
        for k, level in enumerate(self.levels, start=1):
            for name in ("keys", "numerators", "contexts", "context_total", "context_mass"):
                result[f"{prefix}{k}.{name}"] = getattr(level, name)
        return result

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str = "") -> KneserNey:
        alphabet, order = (int(v) for v in arrays[f"{prefix}meta"])
        names = ("keys", "numerators", "contexts", "context_total", "context_mass")
        levels = [
            _Level(*(np.asarray(arrays[f"{prefix}{k}.{n}"]) for n in names)) for k in range(1, order + 1)
        ]
        for k, level in enumerate(levels, start=1):
            if len(level.keys) != len(level.numerators) or len(level.contexts) != len(level.context_total):
                raise ValueError(f"n-gram level {k}: array lengths disagree")
        return cls(alphabet, order, levels)

    # ------------------------------------------------------------------------------------------ scoring
    def log2_probs(self, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log2 P(targets[i] | history + targets[:i]) : the held-out text read after the training text."""
        history = np.asarray(history, dtype=np.int64)
        history = history[len(history) - min(len(history), self.order - 1) :]  # only the context that matters
        stream = np.concatenate([history, np.asarray(targets, dtype=np.int64)])
        n, offset = len(targets), len(history)
        prob = np.full(n, 1.0 / self.alphabet)
        for k, level in enumerate(self.levels, start=1):
            # Positions with at least k-1 symbols of context (others keep the lower order's estimate).
            first = max(0, k - 1 - offset)
            grams = _keys(stream, k, self.alphabet)[offset + first - (k - 1) :]
            ctx_index, ctx_found = _lookup(level.contexts, grams // self.alphabet)
            gram_index, gram_found = _lookup(level.keys, grams)
            total = np.where(ctx_found, level.context_total[ctx_index], 1.0)
            mass = np.where(ctx_found, level.context_mass[ctx_index], 1.0)
            count = np.where(gram_found, level.numerators[gram_index], 0.0)
            updated = (count + mass * prob[first:]) / total
            prob[first:] = np.where(ctx_found, updated, prob[first:])
        return np.log2(prob)

    @cached_property
    def unigram(self) -> np.ndarray:
        """P_1 (alphabet,): order 1 has a single (empty) context, so every history's recursion ends in this
        one vector (computed once; read-only)."""
        first, a = self.levels[0], self.alphabet
        unigram = np.full(a, 1.0 / a)
        unigram *= first.context_mass[0] if len(first.context_mass) else 1.0
        unigram[first.keys] += first.numerators
        unigram /= first.context_total[0] if len(first.context_total) else 1.0
        unigram.flags.writeable = False
        return unigram

    def distributions(self, histories: np.ndarray) -> np.ndarray:
        """(B, alphabet) next-symbol distributions after each history row (B, order-1), oldest symbol first;
        rows shorter than order-1 are left-padded with -1 (no symbol)."""
        weights, unigram, levels = self.decompose(histories)
        prob = weights[:, None] * unigram
        for rows, symbols, values in levels:
            prob[rows, symbols] += values
        return prob

    def decompose(
        self, histories: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """`distributions` as weights (B,), the unigram (alphabet,) and sparse (rows, symbols, values) terms:
        P(· | row b) = weights[b]·unigram + the terms of row b (within one term no (row, symbol) repeats).

        Unrolling the recursion P_k = c_k(h·)/c(h) + γ_k(h)·P_{k−1} gives that form: the dense unigram is
        scaled once by the product of a row's γs, and each order's few observed successors by the γs of the
        orders above it. A batch's distributions then cost one dense pass over (B, alphabet) instead of one
        per order, which is what a decoding tick pays for (Mixture.log_probs)."""
        histories = np.asarray(histories, dtype=np.int64).reshape(len(histories), -1)
        rows = len(histories)
        a = self.alphabet
        unigram = self.unigram
        terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        gammas: list[np.ndarray] = []  # per order above 1: each row's γ (1 where its context was unseen)
        for k, level in enumerate(self.levels[1:], start=2):
            context_len = k - 1
            if histories.shape[1] < context_len:
                break
            ctx = histories[:, histories.shape[1] - context_len :]
            valid = np.all(ctx >= 0, axis=1)
            context_key = np.zeros(rows, dtype=np.int64)
            for column in range(context_len):
                context_key = context_key * a + np.maximum(ctx[:, column], 0)
            index, found = _lookup(level.contexts, context_key)
            found &= valid
            chosen = np.nonzero(found)[0]
            total = level.context_total[index[chosen]]
            gamma = np.ones(rows)
            gamma[chosen] = level.context_mass[index[chosen]] / total
            # The n-grams of one context are a contiguous run of the sorted keys: [ctx·a, ctx·a + a).
            starts = np.searchsorted(level.keys, context_key[chosen] * a)
            ends = np.searchsorted(level.keys, context_key[chosen] * a + a)
            lengths = ends - starts
            row_of = np.repeat(chosen, lengths)
            positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            values = level.numerators[positions] / np.repeat(total, lengths)
            for term in range(len(terms)):  # the lower orders' terms are scaled by this order's γ
                lower_rows, lower_symbols, lower_values = terms[term]
                terms[term] = (lower_rows, lower_symbols, lower_values * gamma[lower_rows])
            terms.append((row_of, level.keys[positions] % a, values))
            gammas.append(gamma)
        weights = np.prod(gammas, axis=0) if gammas else np.ones(rows)
        return weights, unigram, terms


def _keys(ids: np.ndarray, k: int, alphabet: int) -> np.ndarray:
    """Key of the k-gram ending at each position i >= k-1 (base-alphabet digits, oldest first)."""
    keys = ids[k - 1 :].copy()
    for back in range(1, k):
        keys += ids[k - 1 - back : len(ids) - back] * alphabet**back
    return keys


class Mixture:
    """λ·LSTM + (1 − λ)·token Kneser-Ney over the model's vocabulary (ids 0..V-1; the n-gram's symbol is the
    id + 1, since its symbol 0 is "unknown", which the open vocabulary never produces)."""

    def __init__(self, ngram: KneserNey, lstm_weight: float) -> None:
        if not 0.0 <= lstm_weight <= 1.0:
            raise ValueError(f"mixture weight {lstm_weight} outside [0, 1]")
        self.ngram, self.lstm_weight = ngram, float(lstm_weight)

    def save(self, path: str | Path) -> None:
        """The n-gram's arrays and λ in one .npz (plain arrays: loadable with allow_pickle=False)."""
        np.savez(path, lstm_weight=np.array([self.lstm_weight]), **self.ngram.arrays("ngram."))

    @classmethod
    def load(cls, path: str | Path, vocab_size: int) -> Mixture:
        """Read what save wrote; ValueError naming the file if it does not fit a vocabulary of vocab_size."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                mixture = cls(KneserNey.from_arrays(arrays, "ngram."), float(arrays["lstm_weight"][0]))
        except (OSError, KeyError, ValueError, IndexError) as error:
            raise ValueError(f"{path}: not a readable n-gram mixture ({error})") from None
        if mixture.ngram.alphabet != vocab_size + 1:
            raise ValueError(
                f"{path}: n-gram over {mixture.ngram.alphabet - 1} words, the vocabulary has {vocab_size}"
            )
        return mixture

    @cached_property
    def _real_unigram_mass(self) -> float:
        return float(self.ngram.unigram[1:].sum())

    @property
    def context(self) -> int:
        return self.ngram.order - 1

    def log_probs(self, logits: np.ndarray, histories: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """(B, V) LSTM logits and (B, order-1) previous ids (-1 = none) -> (B, V) log P_mixture in `dtype`
        (float64 for the evaluation; decoding asks for float32, which halves the memory traffic of the
        (B, V) passes that dominate a tick, and samples in float32 anyway)."""
        mixed = self.probabilities(logits, histories, dtype)
        with np.errstate(divide="ignore"):
            return np.log(mixed, out=mixed)

    def probabilities(
        self, logits: np.ndarray, histories: np.ndarray, dtype: type = np.float64
    ) -> np.ndarray:
        """`log_probs` before the log: (B, V) P_mixture (a new array), for a caller that mixes in more."""
        mixed = np.array(logits, dtype=dtype)  # a copy: the caller's logits are left alone
        mixed -= mixed.max(axis=-1, keepdims=True)
        np.exp(mixed, out=mixed)
        mixed *= (self.lstm_weight / mixed.sum(axis=-1, keepdims=True, dtype=np.float64)).astype(dtype)
        histories = np.asarray(histories, dtype=np.int64)
        weights, unigram, terms = self.ngram.decompose(np.where(histories >= 0, histories + 1, -1))
        # Symbol 0 ("unknown") keeps a sliver of the uniform base and never has a term (the n-gram was fit on
        # ids + 1): renormalise over the real vocabulary, whose mass per row is computed without a dense pass.
        real = unigram[1:]
        mass = weights * self._real_unigram_mass
        for rows, _, values in terms:
            mass += np.bincount(rows, weights=values, minlength=len(mass))
        scale = (1.0 - self.lstm_weight) / mass
        mixed += np.multiply.outer((scale * weights).astype(dtype), real.astype(dtype))
        for rows, symbols, values in terms:
            mixed[rows, symbols - 1] += (values * scale[rows]).astype(dtype)
        return mixed

    def target_log_probs(self, logits: np.ndarray, histories: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log P_mixture(target) of each row (float64): `log_probs(logits, histories)[rows, targets]` without
        the dense (B, V) mixture, for scoring given texts (chat's ranking and its evaluation) rather than
        sampling. The LSTM's part needs each row's normaliser (one pass over the logits); the n-gram's, only
        the target's unigram share and the sparse terms that name it."""
        targets = np.asarray(targets, dtype=np.int64)
        rows = np.arange(len(targets))
        top = logits.max(axis=-1, keepdims=True)
        # The normaliser in the logits' own precision (float32 from a network), summed in float64.
        total = np.exp(logits - top).sum(axis=-1, dtype=np.float64)
        lstm = np.exp(logits[rows, targets].astype(np.float64) - top[:, 0]) / total
        histories = np.asarray(histories, dtype=np.int64)
        weights, unigram, terms = self.ngram.decompose(np.where(histories >= 0, histories + 1, -1))
        mass = weights * self._real_unigram_mass
        ngram = weights * unigram[targets + 1]
        for term_rows, symbols, values in terms:
            mass += np.bincount(term_rows, weights=values, minlength=len(mass))
            named = symbols == targets[term_rows] + 1
            ngram += np.bincount(term_rows[named], weights=values[named], minlength=len(mass))
        mixed = self.lstm_weight * lstm + (1.0 - self.lstm_weight) * ngram / mass
        with np.errstate(divide="ignore"):
            return np.log(mixed)

    def histories(self, sequences: list[list[int]]) -> np.ndarray:
        """The last order-1 ids of each sequence, left-padded with -1."""
        n = self.context
        rows = np.full((len(sequences), n), -1, dtype=np.int64)
        for row, ids in enumerate(sequences):
            tail = ids[len(ids) - min(len(ids), n) :] if n else []
            if len(tail):
                rows[row, n - len(tail) :] = tail
        return rows
