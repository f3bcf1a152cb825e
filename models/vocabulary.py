"""The open-vocabulary rule: which tokens the model reads and writes, in ONE place.

Training, evaluation and serving all turn tokenizer output into model tokens with `spell`, so a prompt is read
exactly as the novel was:

* a token that is in the vocabulary keeps its identity;
* any other token is spelled with its characters, each kept if it is in the vocabulary;
* a character that is not in the vocabulary either becomes ``<unk>`` (one token per character).

Nothing is deleted: every non-whitespace character of the text is covered by exactly one model token, and
``<unk>`` stands for exactly one character. Which entries form the vocabulary is decided once, from the
training chapters only (`choose_vocabulary`): words seen at least ``min_count`` times, and the characters of
the remaining words seen at least ``min_char_count`` times when spelled out. Because the vocabulary holds no
multi-character word below ``min_count``, applying `spell` with the finished vocabulary reproduces exactly the
stream the counts were taken on, so the model directory only needs its word list (vectors.bin).

``<unk>`` is always in a model's vocabulary (with a vector), so any prompt maps to ids; decoding never samples
it (it names no character).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable

import numpy as np

from models.vectors import WordVectors

UNKNOWN_TOKEN = "<unk>"
DEFAULT_MIN_COUNT = 5
DEFAULT_MIN_CHAR_COUNT = 3


def spell(tokens: Iterable[str], vocabulary: Container[str]) -> list[str]:
    """Tokenizer output -> model tokens: known tokens as they are, others as their characters, unknown
    characters as <unk>."""
    result: list[str] = []
    for token in tokens:
        if token in vocabulary:
            result.append(token)
            continue
        for char in token:
            if char.isspace():  # jieba keeps no whitespace tokens; a stray space inside one is not text
                continue
            result.append(char if char in vocabulary else UNKNOWN_TOKEN)
    return result


def choose_vocabulary(
    train_chapters: Iterable[list[str]],
    min_count: int = DEFAULT_MIN_COUNT,
    min_char_count: int = DEFAULT_MIN_CHAR_COUNT,
) -> set[str]:
    """The vocabulary from the training chapters' tokens: frequent words, then the frequent characters of the
    rest, then <unk>."""
    if min_count < 1 or min_char_count < 1:
        raise ValueError(f"--min-count {min_count} and --min-char-count {min_char_count} must be at least 1")
    word_counts: Counter[str] = Counter()
    for chapter in train_chapters:
        word_counts.update(chapter)
    words = {word for word, count in word_counts.items() if count >= min_count}
    char_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        if word not in words:
            for char in word:
                if not char.isspace():
                    char_counts[char] += count
    chars = {char for char, count in char_counts.items() if count >= min_char_count and char not in words}
    return words | chars | {UNKNOWN_TOKEN}


def with_unknown(vectors: WordVectors) -> WordVectors:
    """The same vectors with an <unk> row appended if it has none (the training stream may hold no rare
    character, or the vectors came from a file): the mean vector, count 0, so every prompt maps to ids."""
    if UNKNOWN_TOKEN in vectors.index:
        return vectors
    mean = vectors.matrix.mean(axis=0, keepdims=True) if len(vectors) else np.zeros((1, vectors.dim))
    counts = None if vectors.counts is None else np.append(vectors.counts, 0)
    return WordVectors([*vectors.words, UNKNOWN_TOKEN], np.vstack([vectors.matrix, mean]), counts)


def stream_shares(raw_tokens: list[str], model_tokens: list[str], vocabulary: Container[str]) -> dict:
    """What the rule did to a stretch of text: how many tokenizer tokens kept their identity, how many model
    tokens are characters of spelled-out words, how many are <unk> (nothing is ever deleted)."""
    kept = sum(1 for token in raw_tokens if token in vocabulary)
    unk = sum(1 for token in model_tokens if token == UNKNOWN_TOKEN)
    total = len(model_tokens)
    return {
        "tokenizer_tokens": len(raw_tokens),
        "model_tokens": total,
        "words_kept": kept,
        "spelled_tokens": total - kept,  # model tokens from spelling words out (<unk> included)
        "unk_tokens": unk,
        "spelled_share": round((total - kept) / total, 5) if total else None,
        "unk_share": round(unk / total, 5) if total else None,
    }
