"""Baselines for the held-out table (DESIGN §8): what the LSTM must beat, measured on the same text.

* ``unigram_log2_probs``: token unigram, add-one smoothed over the vocabulary (no token gets probability 0).
* ``KneserNey``: interpolated modified Kneser-Ney (Chen & Goodman 1998) of any order over integer sequences.
  Order 2 over the token ids is the token bigram; order 5 over the characters is the character 5-gram.
* ``ppmd_bits_per_char``: PPMd's conditional cost of the held-out text given the training text,
  compressed(train + held) − compressed(train), in bits per held-out character.

All counting is NumPy over int64 n-gram keys (sort + unique + searchsorted), so a character 5-gram over the
whole of 红楼梦 fits and scores in seconds on one core; no Python loop runs per n-gram.

Unknown symbols: the model's alphabet is the training symbols plus one "unknown" symbol (id 0) that takes the
base uniform's share. A held-out character never seen in training gets the unknown symbol's probability times
a stated uniform over the characters it may stand for (``UNKNOWN_CHARACTER_CHOICES``), so every model in the
table is charged the same way for what it cannot name.
"""

from __future__ import annotations

import math

import numpy as np
import pyppmd

# The characters an unknown symbol may stand for: the CJK Unified Ideographs block U+4E00–U+9FFF. An unknown
# character costs its unknown-symbol probability times 1/this (log2 20992 = 14.36 bits on top).
UNKNOWN_CHARACTER_CHOICES = 0x9FFF - 0x4E00 + 1
UNKNOWN_CHARACTER_BITS = math.log2(UNKNOWN_CHARACTER_CHOICES)

PPMD_ORDER = 6
PPMD_MEMORY = 256 << 20


def unigram_log2_probs(train: np.ndarray, targets: np.ndarray, vocab_size: int) -> np.ndarray:
    """log2 P(target) under the add-one smoothed unigram of the training ids: (c(w) + 1) / (N + V)."""
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    return np.log2((counts[np.asarray(targets, dtype=np.int64)] + 1.0) / (len(train) + vocab_size))


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
    return np.clip(np.array(discounts), [0.0, 0.0, 0.0], [1.0, 2.0, 3.0])


class _Level:
    """The n-grams of one order: sorted keys with their (raw or continuation) counts, and per context the
    total count and the discount mass D1·N1 + D2·N2 + D3·N3+."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, base: int, discounts: np.ndarray | None) -> None:
        self.keys, self.counts = keys, counts.astype(np.float64)
        self.discounts = _modified_discounts(counts) if discounts is None else np.asarray(discounts, float)
        discount = self.discounts[np.minimum(counts, 3) - 1]
        self.gram_discount = discount
        self.contexts, inverse = np.unique(keys // base, return_inverse=True)
        self.context_total = np.bincount(inverse, weights=self.counts)
        self.context_mass = np.bincount(inverse, weights=discount)

    def lookup(self, sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, found) of each query in sorted_keys."""
        index = np.searchsorted(sorted_keys, queries)
        index = np.minimum(index, len(sorted_keys) - 1)
        return index, sorted_keys[index] == queries if len(sorted_keys) else np.zeros(len(queries), bool)


class KneserNey:
    """Interpolated modified Kneser-Ney of a given order over integer symbols 1..alphabet-1 (0 = unknown).

    P_k(w | h) = max(c_k(hw) − D_k(c_k(hw)), 0) / c_k(h·) + γ_k(h) · P_{k−1}(w | h'),
    γ_k(h) = (D1 N1(h·) + D2 N2(h·) + D3 N3+(h·)) / c_k(h·), and P_k = P_{k−1} for a context never seen.
    c_k is the raw count at the highest order and the continuation count N1+(·hw) below it; P_0 is uniform
    over the alphabet (training symbols + the unknown symbol)."""

    def __init__(self, train: np.ndarray, alphabet: int, order: int, discounts: np.ndarray | None = None):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if alphabet**order >= 2**63:
            raise ValueError(f"alphabet {alphabet} too large for int64 keys of order {order}")
        self.alphabet, self.order = alphabet, order
        train = np.asarray(train, dtype=np.int64)
        self.levels: list[_Level] = []
        for k in range(1, order + 1):
            grams = self._keys(train, k)
            if k == order:
                keys, counts = np.unique(grams, return_counts=True)
            else:  # continuation count: how many distinct symbols precede the k-gram
                longer = np.unique(self._keys(train, k + 1))
                keys, counts = np.unique(longer % alphabet**k, return_counts=True)
            self.levels.append(_Level(keys, counts, alphabet, discounts))

    def _keys(self, ids: np.ndarray, k: int) -> np.ndarray:
        """Key of the k-gram ending at each position i >= k-1 (base-alphabet digits, oldest first)."""
        keys = ids[k - 1 :].copy()
        for back in range(1, k):
            keys += ids[k - 1 - back : len(ids) - back] * self.alphabet**back
        return keys

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
            grams = self._keys(stream, k)[offset + first - (k - 1) :]
            ctx_index, ctx_found = level.lookup(level.contexts, grams // self.alphabet)
            gram_index, gram_found = level.lookup(level.keys, grams)
            total = np.where(ctx_found, level.context_total[ctx_index], 1.0)
            mass = np.where(ctx_found, level.context_mass[ctx_index], 1.0)
            count = np.where(gram_found, level.counts[gram_index] - level.gram_discount[gram_index], 0.0)
            updated = (np.maximum(count, 0.0) + mass * prob[first:]) / total
            prob[first:] = np.where(ctx_found, updated, prob[first:])
        return np.log2(prob)


def char_ids(train_text: str, held_text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Training and held-out characters as ids 1..A (training alphabet, sorted), 0 for a character unseen in
    training; returns (train_ids, held_ids, alphabet size including the unknown symbol)."""
    alphabet = sorted(set(train_text))
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    train_ids = np.fromiter((index[ch] for ch in train_text), dtype=np.int64, count=len(train_text))
    held_ids = np.fromiter((index.get(ch, 0) for ch in held_text), dtype=np.int64, count=len(held_text))
    return train_ids, held_ids, len(alphabet) + 1


def char_kneser_ney_bits_per_char(train_text: str, held_text: str, order: int = 5) -> float:
    """Bits per held-out character of the character n-gram (modified KN) trained on train_text, reading the
    held-out text after the training text; unseen characters charged UNKNOWN_CHARACTER_BITS extra."""
    train_ids, held_ids, alphabet = char_ids(train_text, held_text)
    log2_p = KneserNey(train_ids, alphabet, order).log2_probs(train_ids, held_ids)
    bits = -float(np.sum(log2_p)) + UNKNOWN_CHARACTER_BITS * int(np.sum(held_ids == 0))
    return bits / len(held_text)


def ppmd_bits_per_char(train_text: str, held_text: str, order: int = PPMD_ORDER) -> float:
    """PPMd (variant H, UTF-8) conditional cost of held_text after train_text, in bits per held-out char."""

    def size(text: str) -> int:
        return len(pyppmd.compress(text.encode("utf-8"), max_order=order, mem_size=PPMD_MEMORY, variant="H"))

    return 8.0 * (size(train_text + held_text) - size(train_text)) / len(held_text)
