"""Baselines for the held-out table (training/evaluate.py): what the LSTM must beat, on the same text.

* ``unigram_log2_probs``: token unigram, add-one smoothed over the vocabulary (no token gets probability 0).
* ``KneserNey`` (models/ngram.py, shared with serving): interpolated modified Kneser-Ney (Chen & Goodman 1998)
  of any order over integer sequences. Order 2 over the token ids is the token bigram; order 5 over the
  characters is the character 5-gram.
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

from models.ngram import KneserNey

__all__ = [
    "UNKNOWN_CHARACTER_BITS",
    "UNKNOWN_CHARACTER_CHOICES",
    "KneserNey",
    "char_ids",
    "char_kneser_ney_bits_per_char",
    "ppmd_bits_per_char",
    "unigram_log2_probs",
]

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
    log2_p = KneserNey.fit(train_ids, alphabet, order).log2_probs(train_ids, held_ids)
    bits = -float(np.sum(log2_p)) + UNKNOWN_CHARACTER_BITS * int(np.sum(held_ids == 0))
    return bits / len(held_text)


def ppmd_bits_per_char(train_text: str, held_text: str, order: int = PPMD_ORDER) -> float:
    """PPMd (variant H, UTF-8) conditional cost of held_text after train_text, in bits per held-out char."""

    def size(text: str) -> int:
        return len(pyppmd.compress(text.encode("utf-8"), max_order=order, mem_size=PPMD_MEMORY, variant="H"))

    return 8.0 * (size(train_text + held_text) - size(train_text)) / len(held_text)
