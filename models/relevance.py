"""How much a reply takes up what was said to it, read off the words alone (chat's lexical relevance).

Replies in the novel take up the words said to them, often partly (林妹妹 / 妹妹) or by a related word
(吃药 / 服药), which the LSTM barely conditions on (models/rerank.py). The relevance of a reply to a turn
is a weighted sum of cosines between the two texts:

* `characters`: TF-IDF over single characters (letters and digits; punctuation dropped),
* `character_pairs`: TF-IDF over adjacent character pairs,
* `words`: TF-IDF over jieba words,
* `word2vec`: the model's own word vectors, each word's unit vector weighted by its idf, summed per text,
* `character_vectors`: the same over the text's characters that the model's vocabulary holds as tokens
  (the characters it spells rare words with): related characters count, not only the same ones,
* `word2vec_bilinear`: u(turn)ᵀ M u(reply), u the `word2vec` feature's unit vector and M a matrix learned at
  training time on the training chapters' adjacent quotes (training/bilinear.py, a small dual encoder): which
  directions of a turn's meaning the answers to it take up (a question about health, an answer about
  medicine), where the plain cosine only sees the same direction; one small mat-vec per candidate,
* `length`: log(1 + the reply's letters and digits), not a cosine: the cosines of a long reply meet more
  of the turn by chance, and its learned weight takes that back,
* `character_grams`: characters and pairs in one TF-IDF (what chat scored by before the weights were
  learned; a memory.json without learned weights scores with it alone, weight 1),
* the person features (PERSON_FEATURES): whether the turn says 你 or 我 and the reply 你 or 我, each pair
  a 0/1 feature, and whether the reply says 你 or 我 at all. An answer speaks as the one addressed: a turn
  that says 你 is answered with 我 (你身上可好些了？ / 我也不过这么着), which no overlap of words sees,
  and a reply that addresses or speaks of someone is more often an answer to anything. On the training
  chapters' exchanges these six raised the cross-validated R10@1 of the relevance with the bilinear feature
  by 0.5 points on 红楼梦 and 1.2 points on its first 300,000 characters (training/relevance.py).

TF-IDF is raw counts times log2(N / df), unit length (gensim's TfidfModel defaults), the document
frequencies those of the training chapters' exchanges (every turn and every answer a document, stored in
memory.json). A gram or word never seen there has no weight, unless `unseen_idf` is given: then it weighs
as a gram seen in a single document, log2(N), since a rare name or phrase shared by a turn and a reply says
most about them (the learned weights record which rule they were learned with). The weights are learned at
training time on the training chapters' exchanges, each real answer against the answers of other exchanges
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

FEATURES = (
    "characters",
    "character_pairs",
    "words",
    "word2vec",
    "character_vectors",
    "length",
    "character_grams",
    "word2vec_bilinear",
    "you_answered_by_me",
    "me_answered_by_you",
    "you_answered_by_you",
    "me_answered_by_me",
    "reply_says_you",
    "reply_says_me",
)
# Per person feature: the pronoun the turn must say (None: any turn) and the one the reply must say.
PERSON_FEATURES = {
    "you_answered_by_me": ("你", "我"),
    "me_answered_by_you": ("我", "你"),
    "you_answered_by_you": ("你", "你"),
    "me_answered_by_me": ("我", "我"),
    "reply_says_you": (None, "你"),
    "reply_says_me": (None, "我"),
}
PERSONS = ("你", "我")
LEARNED_FEATURES = (*FEATURES[:6], *PERSON_FEATURES)
# Learned only where its matrix was (and where it helped in cross-validation: training/relevance.py).
BILINEAR = "word2vec_bilinear"
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


def tfidf_vector(
    grams: Sequence[str], idf: Mapping[str, float], unseen_idf: float | None = None
) -> dict[str, float]:
    """Unit-length TF-IDF weights of the grams that have an idf, or of all with `unseen_idf` for those
    without (an empty dict when none has a weight)."""
    weights = {
        gram: count * weight
        for gram, count in Counter(grams).items()
        if (weight := idf.get(gram, unseen_idf))
    }
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


# One text as the features read it: per feature name, its unit TF-IDF vector (a dict), for `word2vec` and
# `character_vectors` its unit vector (None when no token of the text has both a vector and an idf), for
# `length` a number, for a person feature the PERSONS the text says. Computed once per text.
TextVectors = dict[str, "dict[str, float] | np.ndarray | float | frozenset[str] | None"]
_EMBEDDINGS = ("word2vec", "character_vectors")


class LexicalRelevance:
    """The weighted sum of the module docstring's features between a turn and each reply."""

    def __init__(
        self,
        character_idf: Mapping[str, float],
        word_idf: Mapping[str, float],
        weights: Mapping[str, float],
        vectors: WordVectors | None = None,
        cut: Callable[[str], list[str]] | None = None,
        unseen_idf: bool = False,
        bilinear: np.ndarray | None = None,
    ) -> None:
        """`unseen_idf`: a gram or word without a document frequency weighs as one seen in a single
        document (the largest idf of its table), instead of not at all. `bilinear`: the (dim, dim) matrix
        M of `word2vec_bilinear` (needed when that feature has a weight)."""
        unknown = sorted(set(weights) - set(FEATURES))
        if unknown:
            raise ValueError(f"relevance weights name unknown features {unknown}; known: {list(FEATURES)}")
        if any(weights.get(name) for name in ("words", "word2vec")) and cut is None:
            raise ValueError("the word features need the tokenizer's cut")
        if weights.get(BILINEAR) and bilinear is None:
            raise ValueError(f"a weight for {BILINEAR} needs its matrix")
        if bilinear is not None:
            bilinear = np.asarray(bilinear, dtype=np.float64)
            dim = None if vectors is None else vectors.unit.shape[1]
            if (
                bilinear.ndim != 2
                or bilinear.shape[0] != bilinear.shape[1]
                or dim not in (None, len(bilinear))
            ):
                raise ValueError(
                    f"the {BILINEAR} matrix must be (dim, dim) for {dim}-dimensional word vectors, "
                    f"got shape {bilinear.shape}"
                )
            if not np.all(np.isfinite(bilinear)):
                raise ValueError(f"the {BILINEAR} matrix holds NaN or infinite values")
        self.character_idf = dict(character_idf)
        self.word_idf = dict(word_idf)
        self.weights = {name: float(weight) for name, weight in weights.items()}
        self.vectors = vectors
        self.cut = cut
        self.unseen_idf = unseen_idf
        self.bilinear = bilinear
        self._unseen_character = max(self.character_idf.values(), default=None) if unseen_idf else None
        self._unseen_word = max(self.word_idf.values(), default=None) if unseen_idf else None

    def words(self, text: str) -> list[str]:
        """The words the word features count: jieba's, letters and digits only."""
        if self.cut is None:
            return []
        return [word for word in self.cut(text) if _WORD.search(word)]

    def text_vectors(self, text: str, names: Sequence[str] = FEATURES) -> TextVectors:
        """The text's vectors of the named features (only those: a served candidate pays for what is
        weighted)."""
        found: TextVectors = {}
        wanted = set(names)
        chars = characters_of(text)
        if {"characters", "character_pairs", "character_grams"} & wanted:
            pairs = [a + b for a, b in itertools.pairwise(chars)]
            grams = {"characters": chars, "character_pairs": pairs, "character_grams": chars + pairs}
            for name in grams.keys() & wanted:
                found[name] = tfidf_vector(grams[name], self.character_idf, self._unseen_character)
        if {"words", "word2vec", BILINEAR} & wanted:
            words = self.words(text)
            if "words" in wanted:
                found["words"] = tfidf_vector(words, self.word_idf, self._unseen_word)
            if {"word2vec", BILINEAR} & wanted:
                embedding = self._embedding(words, self.word_idf, self._unseen_word)
                found.update({name: embedding for name in ("word2vec", BILINEAR) if name in wanted})
        if "character_vectors" in wanted:
            found["character_vectors"] = self._embedding(chars, self.character_idf, self._unseen_character)
        if "length" in wanted:
            found["length"] = math.log1p(len(chars))
        persons = PERSON_FEATURES.keys() & wanted
        if persons:
            said = frozenset(person for person in PERSONS if person in text)
            found.update(dict.fromkeys(persons, said))
        return found

    def sentence_vector(self, words: list[str]) -> np.ndarray | None:
        """The `word2vec` feature's unit vector of a text's words (`words`), None without a known word."""
        return self._embedding(words, self.word_idf, self._unseen_word)

    def _embedding(
        self, tokens: list[str], idf: Mapping[str, float], unseen: float | None
    ) -> np.ndarray | None:
        """The unit direction of the idf-weighted sum of the tokens' unit vectors (tokens the vocabulary
        holds and that have a weight)."""
        if self.vectors is None:
            return None
        index = self.vectors.index
        known = [
            (index[token], weight)
            for token in tokens
            if token in index and (weight := idf.get(token, unseen))
        ]
        if not known:
            return None
        rows, weights = zip(*known, strict=True)
        total = np.asarray(weights, dtype=np.float64) @ self.vectors.unit[list(rows)].astype(np.float64)
        norm = float(np.linalg.norm(total))
        return total / norm if norm > 0 else None

    def compare(self, turn: TextVectors, reply: TextVectors, names: Sequence[str]) -> list[float]:
        """The named features of a reply to a turn (both read with at least those names)."""
        found = []
        for name in names:
            first, second = turn[name], reply[name]
            if name == "length":
                found.append(float(second))  # type: ignore[arg-type]
            elif name in PERSON_FEATURES:
                in_turn, in_reply = PERSON_FEATURES[name]
                turn_says = in_turn is None or in_turn in first  # type: ignore[operator]
                found.append(float(turn_says and in_reply in second))  # type: ignore[operator]
            elif name == BILINEAR:
                both = first is not None and second is not None and self.bilinear is not None
                found.append(float(first @ self.bilinear @ second) if both else 0.0)  # type: ignore[operator]
            elif name in _EMBEDDINGS:
                both = first is not None and second is not None
                found.append(float(first @ second) if both else 0.0)  # type: ignore[operator]
            else:
                found.append(sparse_cosine(first, second))  # type: ignore[arg-type]
        return found

    def scores(self, turn: str, replies: Sequence[str]) -> np.ndarray:
        """The relevance of each reply to the turn (a candidate's words are the tokenizer's cut of its
        text, not its tokens: the model spells the words it does not hold with their characters)."""
        if not replies:
            return np.zeros(0)
        names = [name for name, weight in self.weights.items() if weight]
        if not names:
            return np.zeros(len(replies))
        first = self.text_vectors(turn, names)
        features = [self.compare(first, self.text_vectors(reply, names), names) for reply in replies]
        return np.asarray(features) @ np.asarray([self.weights[name] for name in names])
