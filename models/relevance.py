"""How much a reply takes up what was said to it, read off the words alone (chat's lexical relevance).

Replies in the novel take up the words said to them, often partly (林妹妹 / 妹妹) or by a related word
(吃药 / 服药), which the LSTM barely conditions on (models/rerank.py). The relevance of a reply to a turn
is a weighted sum of cosines between the two texts:

* `characters`: TF-IDF over single characters (letters and digits; punctuation dropped),
* `character_pairs`: TF-IDF over adjacent character pairs,
* `words`: TF-IDF over jieba words,
* `word2vec`: the model's own word vectors, each word's unit vector weighted by its idf, summed per text,
* `character_grams`: characters and pairs in one TF-IDF (what chat scored by before the weights were
  learned; a memory.json without learned weights scores with it alone, weight 1).

TF-IDF is raw counts times log2(N / df), unit length (gensim's TfidfModel defaults), the document
frequencies those of the training chapters' exchanges (every turn and every answer a document, stored in
memory.json); a gram or word never seen there has no weight. The weights are learned at training time on
the training chapters' exchanges, each real answer against the answers of other exchanges
(training/relevance.py), and stored with the memory. Pure Python and NumPy: a candidate costs one jieba cut
and a few small dictionaries.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from models.vectors import WordVectors

FEATURES = ("characters", "character_pairs", "words", "word2vec", "character_grams")
LEARNED_FEATURES = FEATURES[:4]
# What a memory.json without learned weights scores by: the character cosine chat used before.
UNLEARNED_WEIGHTS = {"character_grams": 1.0}
# A word counts only if it holds a letter or a digit (as the memory's BM25 index counts words).
_WORD = re.compile(r"\w")


def characters_of(text: str) -> list[str]:
    """The letters and digits of a text, in order (punctuation says nothing about topic)."""
    return [char for char in text if char.isalnum()]


def character_pairs(text: str) -> list[str]:
    chars = characters_of(text)
    return [a + b for a, b in itertools.pairwise(chars)]


def character_grams(text: str) -> list[str]:
    """The characters and adjacent character pairs of a text's letters and digits (punctuation dropped)."""
    return characters_of(text) + character_pairs(text)


def tfidf_vector(grams: Sequence[str], idf: Mapping[str, float]) -> dict[str, float]:
    """Unit-length TF-IDF weights of the grams that have an idf (an empty dict when none has)."""
    weights = {gram: count * idf[gram] for gram, count in Counter(grams).items() if gram in idf}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {gram: w / norm for gram, w in weights.items()} if norm > 0 else {}


def sparse_cosine(first: Mapping[str, float], second: Mapping[str, float]) -> float:
    if len(second) < len(first):
        first, second = second, first
    return float(sum(weight * second.get(gram, 0.0) for gram, weight in first.items()))


class CharacterTfidf:
    """TF-IDF cosine over `character_grams` (characters and pairs in one vector)."""

    def __init__(self, idf: Mapping[str, float]) -> None:
        self.idf = dict(idf)

    def vector(self, text: str) -> dict[str, float]:
        return tfidf_vector(character_grams(text), self.idf)

    def cosine(self, a: str, b: str) -> float:
        return sparse_cosine(self.vector(a), self.vector(b))


# One text as the features read it: per feature name, its unit TF-IDF vector (a dict) or, for `word2vec`,
# its unit vector (None when no word of the text has both a vector and an idf). Computed once per text.
TextVectors = dict[str, "dict[str, float] | np.ndarray | None"]


class LexicalRelevance:
    """The weighted sum of the module docstring's cosines between a turn and each reply."""

    def __init__(
        self,
        character_idf: Mapping[str, float],
        word_idf: Mapping[str, float],
        weights: Mapping[str, float],
        vectors: WordVectors | None = None,
        cut: Callable[[str], list[str]] | None = None,
    ) -> None:
        unknown = sorted(set(weights) - set(FEATURES))
        if unknown:
            raise ValueError(f"relevance weights name unknown features {unknown}; known: {list(FEATURES)}")
        if any(weights.get(name) for name in ("words", "word2vec")) and cut is None:
            raise ValueError("the word features need the tokenizer's cut")
        self.character_idf = dict(character_idf)
        self.word_idf = dict(word_idf)
        self.weights = {name: float(weight) for name, weight in weights.items()}
        self.vectors = vectors
        self.cut = cut

    def words(self, text: str) -> list[str]:
        """The words the word features count: jieba's, letters and digits only."""
        if self.cut is None:
            return []
        return [word for word in self.cut(text) if _WORD.search(word)]

    def text_vectors(
        self, text: str, names: Sequence[str] = FEATURES, words: Sequence[str] | None = None
    ) -> TextVectors:
        """The text's vectors of the named features (only those: a served candidate pays for what is
        weighted). `words`: the text's words when they are known already (a candidate's tokens), else
        the tokenizer cuts it."""
        found: TextVectors = {}
        if {"characters", "character_pairs", "character_grams"} & set(names):
            chars = characters_of(text)
            pairs = [a + b for a, b in itertools.pairwise(chars)]
            grams = {"characters": chars, "character_pairs": pairs, "character_grams": chars + pairs}
            for name in grams.keys() & set(names):
                found[name] = tfidf_vector(grams[name], self.character_idf)
        if {"words", "word2vec"} & set(names):
            words = self.words(text) if words is None else [word for word in words if _WORD.search(word)]
            if "words" in names:
                found["words"] = tfidf_vector(words, self.word_idf)
            if "word2vec" in names:
                found["word2vec"] = self._embedding(words)
        return found

    def _embedding(self, words: list[str]) -> np.ndarray | None:
        if self.vectors is None:
            return None
        index = self.vectors.index
        known = [
            (index[word], self.word_idf[word]) for word in words if word in index and word in self.word_idf
        ]
        if not known:
            return None
        rows, idf = zip(*known, strict=True)
        total = np.asarray(idf, dtype=np.float64) @ self.vectors.unit[list(rows)].astype(np.float64)
        norm = float(np.linalg.norm(total))
        return total / norm if norm > 0 else None

    @staticmethod
    def compare(turn: TextVectors, reply: TextVectors, names: Sequence[str]) -> list[float]:
        """The named cosines between a turn and a reply (both read with at least those names)."""
        found = []
        for name in names:
            first, second = turn[name], reply[name]
            if name == "word2vec":
                both = first is not None and second is not None
                found.append(float(first @ second) if both else 0.0)  # type: ignore[operator]
            else:
                found.append(sparse_cosine(first, second))  # type: ignore[arg-type]
        return found

    def scores(
        self, turn: str, replies: Sequence[str], reply_words: Sequence[Sequence[str]] | None = None
    ) -> np.ndarray:
        """The relevance of each reply to the turn. `reply_words`: each reply's words when known (a
        candidate's tokens are the model's words: no second cut per candidate)."""
        if not replies:
            return np.zeros(0)
        names = [name for name, weight in self.weights.items() if weight]
        if not names:
            return np.zeros(len(replies))
        first = self.text_vectors(turn, names)
        words = reply_words if reply_words is not None else [None] * len(replies)
        features = np.asarray(
            [
                self.compare(first, self.text_vectors(reply, names, known), names)
                for reply, known in zip(replies, words, strict=True)
            ]
        )
        return features @ np.asarray([self.weights[name] for name in names])
