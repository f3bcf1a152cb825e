"""Learning the weights of chat's lexical relevance (models/relevance.py) on the training chapters' exchanges.

Each exchange's real answer is one of CHOICES answers (itself and those of other exchanges, response
selection's groups; training/response_selection.py), and the weights of the features (cosines over
characters, character pairs, words, word vectors and character vectors, the reply's length, and whether
turn and reply say 你 or 我) are those of the conditional logit that picks the real answer. The
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
49.1% against 46.3% for the four cosines before. The person features (models/relevance.py: a turn that
says 你 is answered with 我) came out with weights that say so (红楼梦: 你 -> 我 +0.50, 我 -> 你 +0.49,
你 -> 你 -0.38) and raised the cross-validated R10@1 with the bilinear feature from 51.7% to 52.2% on
红楼梦's training chapters and from 50.9% to 52.1% on those of its first 300,000 characters (the six
features alone: 49.7% -> 50.4%, 50.0% -> 50.1%). The reported R10@1 is cross-validated the same way
(weights fitted on the other folds).

One more feature, `word2vec_bilinear` (training/bilinear.py), is learned from the adjacent quotes of the
same chapters: its matrix for a fold's groups is trained only on the quotes of the other folds' chapters
(with their idf), so the cross-validated figures never score a pair M was trained on. It is kept only when
the cross-validated R10@1 with it beats the LEARNED_FEATURES alone by more than twice the paired standard
error (per group, the difference of the first-place shares): on 红楼梦's training chapters 50.4% -> 52.2%
(+1.9, standard error 0.7; kept), at 300k 50.1% -> 52.1% (+2.0, standard error 0.8; kept; without the
person features it was +0.9 ± 0.8 there and left out).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np

from models.memory import Exchange
from models.relevance import BILINEAR, LEARNED_FEATURES, LexicalRelevance, character_grams
from models.vectors import WordVectors
from training.bilinear import BilinearConfig, train_bilinear
from training.response_selection import (
    CHOICES,
    comparison_groups,
    first_share,
    fit_conditional_logit,
    r10_at_1,
)

FOLDS = 5
UNSEEN_IDF = True
# What the learned weights are measured against: the one cosine chat ranked by before they were learned.
BASELINE = "character_grams"
BILINEAR_SETTINGS = BilinearConfig()
# The bilinear feature is kept when it adds more than this many paired standard errors of R10@1.
BILINEAR_STANDARD_ERRORS = 2.0
# A quote as its (1-based) chapter, the quote and the one after it (training/characters.py `adjacent_quotes`).
QuotePair = tuple[int, str, str]


def _idf(document_frequencies: Counter[str], documents: int) -> dict[str, float]:
    """log2(N / df), gensim TfidfModel's default, for the grams seen in at least one document."""
    return {gram: math.log2(documents / df) for gram, df in document_frequencies.items() if df > 0}


def relevance_features(
    exchanges: Sequence[Exchange],
    cut: Callable[[str], list[str]],
    vectors: WordVectors | None,
    folds: int = FOLDS,
    quotes: Sequence[QuotePair] = (),
    bilinear: BilinearConfig = BILINEAR_SETTINGS,
) -> list[np.ndarray]:
    """Per fold of chapters with at least CHOICES exchanges: (groups, CHOICES, features) of LEARNED_FEATURES
    and BASELINE, each group's real answer first, idf from the other folds' exchanges; with `vectors` and
    `quotes`, one more column: BILINEAR, its matrix trained on the quotes outside the fold's chapters."""
    chapters = sorted({exchange.chapter for exchange in exchanges})
    fold_of = {chapter: position * folds // len(chapters) for position, chapter in enumerate(chapters)}
    words = _cached_words(cut)
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
        groups = comparison_groups(len(inside))
        features = np.asarray(
            [[relevance.compare(turns[group[0]], answers[j], names) for j in group] for group in groups]
        )
        if vectors is not None and quotes:
            chapters_inside = [exchanges[i].chapter for i in inside]
            low, high = min(chapters_inside), max(chapters_inside)
            training = [(first, second) for chapter, first, second in quotes if not low <= chapter <= high]
            matrix = _train_matrix(relevance, words, training, bilinear)
            said = _sentence_vectors(relevance, words, [exchanges[i].said for i in inside])
            answered = _sentence_vectors(relevance, words, [exchanges[i].answer for i in inside])
            scores = said @ matrix @ answered.T
            column = np.asarray([[scores[group[0], j] for j in group] for group in groups])
            features = np.concatenate([features, column[:, :, None]], axis=2)
        found.append(features)
    return found


def _cached_words(cut: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The relevance's words of a text, each text cut once (the folds read the same texts again)."""
    words = LexicalRelevance({}, {}, {}, cut=cut).words
    cache: dict[str, list[str]] = {}

    def cached(text: str) -> list[str]:
        if text not in cache:
            cache[text] = words(text)
        return cache[text]

    return cached


def _sentence_vectors(
    relevance: LexicalRelevance, words: Callable[[str], list[str]], texts: Sequence[str]
) -> np.ndarray:
    """(texts, dim): each text's `word2vec` unit vector, zeros without a known word."""
    assert relevance.vectors is not None
    rows = np.zeros((len(texts), relevance.vectors.unit.shape[1]))
    for row, text in enumerate(texts):
        found = relevance.sentence_vector(words(text))
        if found is not None:
            rows[row] = found
    return rows


def _train_matrix(
    relevance: LexicalRelevance,
    words: Callable[[str], list[str]],
    pairs: Sequence[tuple[str, str]],
    config: BilinearConfig,
) -> np.ndarray:
    """M of the bilinear feature, from pairs of quotes read with this relevance's idf."""
    first = _sentence_vectors(relevance, words, [a for a, _ in pairs])
    second = _sentence_vectors(relevance, words, [b for _, b in pairs])
    return train_bilinear(first, second, config)


def _held_out_shares(by_fold: Sequence[np.ndarray]) -> np.ndarray:
    """Per group, its first-place share under weights fitted on the other folds' groups."""
    shares = []
    for features in by_fold:
        weights = fit_conditional_logit(np.concatenate([f for f in by_fold if f is not features]))
        shares.extend(first_share(list(row)) for row in features @ weights)
    return np.asarray(shares)


def learn_relevance(
    exchanges: Sequence[Exchange],
    cut: Callable[[str], list[str]],
    vectors: WordVectors | None,
    quotes: Sequence[QuotePair] = (),
    bilinear: BilinearConfig = BILINEAR_SETTINGS,
) -> dict:
    """The relevance's weights and what was measured to learn them (memory.json's `relevance`); without
    enough exchanges, no weights (chat then scores by the character cosine alone) and the reason. With
    `vectors` and `quotes` (the adjacent quotes of the same chapters), the bilinear feature is tried too
    and kept with its matrix (`relevance.bilinear.matrix`) when it helps beyond noise (module docstring)."""
    by_fold = relevance_features(exchanges, cut, vectors, quotes=quotes, bilinear=bilinear)
    if len(by_fold) < 2:
        return {"reason": f"too few exchanges to learn from ({len(exchanges)} in the training chapters)"}
    learned = len(LEARNED_FEATURES)
    without = [features[:, :, :learned] for features in by_fold]
    shares = _held_out_shares(without)
    names, chosen, extra = list(LEARNED_FEATURES), without, {}
    if by_fold[0].shape[2] > learned + 1:  # the bilinear column was computed
        with_it = [np.concatenate([f[:, :, :learned], f[:, :, learned + 1 :]], axis=2) for f in by_fold]
        with_bilinear = _held_out_shares(with_it)
        difference = with_bilinear - shares
        error = float(difference.std(ddof=1) / math.sqrt(len(difference)))
        kept = bool(difference.mean() > BILINEAR_STANDARD_ERRORS * error)
        trial = {
            "kept": kept,
            "quote_pairs": len(quotes),
            "r10_at_1_cross_validated_with_it": round(float(with_bilinear.mean()), 4),
            "r10_at_1_cross_validated_without_it": round(float(shares.mean()), 4),
            "paired_standard_error": round(error, 4),
            f"r10_at_1_{BILINEAR}": r10_at_1(np.concatenate([f[:, :, -1] for f in by_fold])),
            "settings": asdict(bilinear),
        }
        if kept:
            names, chosen, shares = [*names, BILINEAR], with_it, with_bilinear
            extra["bilinear"] = {"matrix": _final_matrix(exchanges, cut, vectors, quotes, bilinear), **trial}
        else:
            extra["bilinear"] = trial
    weights = fit_conditional_logit(np.concatenate(chosen))
    groups = sum(len(features) for features in by_fold)
    return {
        "weights": {name: round(float(w), 4) for name, w in zip(names, weights, strict=True)},
        "unseen_idf": UNSEEN_IDF,
        **extra,
        "measured": {
            "exchanges": len(exchanges),
            "groups": groups,
            "folds": len(by_fold),
            "r10_at_1_cross_validated": round(float(shares.mean()), 4),
            f"r10_at_1_{BASELINE}": r10_at_1(np.concatenate([f[:, :, learned] for f in by_fold])),
            **{
                f"r10_at_1_{name}": r10_at_1(np.concatenate([f[:, :, column] for f in by_fold]))
                for column, name in enumerate(LEARNED_FEATURES)
            },
        },
    }


def _final_matrix(
    exchanges: Sequence[Exchange],
    cut: Callable[[str], list[str]],
    vectors: WordVectors | None,
    quotes: Sequence[QuotePair],
    config: BilinearConfig,
) -> list[list[float]]:
    """The served matrix: trained on every quote pair, read with the idf of all the exchanges (as chat
    reads a turn with the training chapters' idf), as plain nested lists for memory.json."""
    words = _cached_words(cut)
    documents = [document for e in exchanges for document in (set(words(e.said)), set(words(e.answer)))]
    word_df = Counter(word for document in documents for word in document)
    relevance = LexicalRelevance({}, _idf(word_df, len(documents)), {}, vectors, cut, UNSEEN_IDF)
    matrix = _train_matrix(relevance, words, [(first, second) for _, first, second in quotes], config)
    return np.round(matrix, 5).tolist()
