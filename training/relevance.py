"""Learning the weights of chat's lexical relevance (models/relevance.py) on the training chapters' exchanges.

Each exchange's real answer is one of CHOICES answers (itself and those of other exchanges, response
selection's groups; training/response_selection.py), and the weights of the features (cosines over
characters, character pairs, words, word vectors and character vectors, and the reply's length) are those
of the conditional logit that picks the real answer. The
training chapters hold thousands of exchanges (2,522 in 红楼梦's 72), far more than the few dozen of their
tail that fit β and γ, so the relevance's weights are fitted here and only the mixing with the model's mutual
information is fitted on the tail.

Document frequencies are cross-fitted: the chapters fall into FOLDS folds, and the features of a fold's
exchanges use the idf of the other folds' exchanges only (its groups stay within the fold), as chat reads a
new turn with the training chapters' idf. Otherwise a character pair seen only in one exchange's turn and
answer would count as rarely seen, where a new turn's unseen pair counts as unseen, and the pairs' weight
would be learned too high. Grams and words the other folds never saw weigh as seen once (UNSEEN_IDF, the
rule chat then scores by): on 红楼梦's training chapters that raised the cross-validated R10@1 of the
character cosines from 44.0% to 44.6%, and with the character vectors and the length all six features reach
49.1% against 46.3% for the four cosines before. The reported R10@1 is cross-validated the same way
(weights fitted on the other folds).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from models.memory import Exchange
from models.relevance import LEARNED_FEATURES, LexicalRelevance, character_grams
from models.vectors import WordVectors
from training.response_selection import CHOICES, comparison_groups, fit_conditional_logit, r10_at_1

FOLDS = 5
UNSEEN_IDF = True
# What the learned weights are measured against: the one cosine chat ranked by before they were learned.
BASELINE = "character_grams"


def _idf(document_frequencies: Counter[str], documents: int) -> dict[str, float]:
    """log2(N / df), gensim TfidfModel's default, for the grams seen in at least one document."""
    return {gram: math.log2(documents / df) for gram, df in document_frequencies.items() if df > 0}


def relevance_features(
    exchanges: Sequence[Exchange],
    cut: Callable[[str], list[str]],
    vectors: WordVectors | None,
    folds: int = FOLDS,
) -> list[np.ndarray]:
    """Per fold of chapters with at least CHOICES exchanges: (groups, CHOICES, features) of LEARNED_FEATURES
    and BASELINE, each group's real answer first, idf from the other folds' exchanges."""
    chapters = sorted({exchange.chapter for exchange in exchanges})
    fold_of = {chapter: position * folds // len(chapters) for position, chapter in enumerate(chapters)}
    words = LexicalRelevance({}, {}, {}, cut=cut).words
    grams = [(set(character_grams(e.said)), set(character_grams(e.answer))) for e in exchanges]
    terms = [(set(words(e.said)), set(words(e.answer))) for e in exchanges]
    names = [*LEARNED_FEATURES, BASELINE]
    found = []
    for fold in range(folds):
        inside = [i for i, e in enumerate(exchanges) if fold_of[e.chapter] == fold]
        outside = [i for i, e in enumerate(exchanges) if fold_of[e.chapter] != fold]
        if len(inside) < CHOICES or not outside:
            continue
        character_df = Counter(gram for i in outside for document in grams[i] for gram in document)
        word_df = Counter(word for i in outside for document in terms[i] for word in document)
        relevance = LexicalRelevance(
            _idf(character_df, 2 * len(outside)),
            _idf(word_df, 2 * len(outside)),
            {},
            vectors,
            cut,
            UNSEEN_IDF,
        )
        turns = [relevance.text_vectors(exchanges[i].said) for i in inside]
        answers = [relevance.text_vectors(exchanges[i].answer) for i in inside]
        found.append(
            np.asarray(
                [
                    [relevance.compare(turns[group[0]], answers[j], names) for j in group]
                    for group in comparison_groups(len(inside))
                ]
            )
        )
    return found


def learn_relevance(
    exchanges: Sequence[Exchange], cut: Callable[[str], list[str]], vectors: WordVectors | None
) -> dict:
    """The relevance's weights and what was measured to learn them (memory.json's `relevance`); without
    enough exchanges, no weights (chat then scores by the character cosine alone) and the reason."""
    by_fold = relevance_features(exchanges, cut, vectors)
    if len(by_fold) < 2:
        return {"reason": f"too few exchanges to learn from ({len(exchanges)} in the training chapters)"}
    learned = len(LEARNED_FEATURES)
    weights = fit_conditional_logit(np.concatenate([features[:, :, :learned] for features in by_fold]))
    held = [
        features[:, :, :learned]
        @ fit_conditional_logit(np.concatenate([f[:, :, :learned] for f in by_fold if f is not features]))
        for features in by_fold
    ]
    groups = sum(len(features) for features in by_fold)
    return {
        "weights": {name: round(float(w), 4) for name, w in zip(LEARNED_FEATURES, weights, strict=True)},
        "unseen_idf": UNSEEN_IDF,
        "measured": {
            "exchanges": len(exchanges),
            "groups": groups,
            "folds": len(by_fold),
            "r10_at_1_cross_validated": r10_at_1(np.concatenate(held)),
            f"r10_at_1_{BASELINE}": r10_at_1(np.concatenate([f[:, :, learned] for f in by_fold])),
            **{
                f"r10_at_1_{name}": r10_at_1(np.concatenate([f[:, :, column] for f in by_fold]))
                for column, name in enumerate(LEARNED_FEATURES)
            },
        },
    }
