"""Learning the lexical relevance's weights on exchanges (real jieba; idf cross-fitted by fold)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.memory import Exchange
from models.relevance import BILINEAR, LEARNED_FEATURES, LexicalRelevance, character_grams
from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from training.bilinear import BilinearConfig
from training.relevance import BASELINE, FOLDS, UNSEEN_IDF, learn_relevance, relevance_features

TOPICS = ["看花", "吃药", "下棋", "读书", "喝茶", "写字", "听戏", "骑马", "钓鱼", "放风筝", "赏月", "作诗"]
PEOPLE = ["宝玉", "黛玉", "宝钗", "湘云", "探春"]


def _exchanges(chapters: int = 10, per_chapter: int = 12) -> list[Exchange]:
    """Answers that take up their turn's topic (and so share its characters), over several chapters."""
    found = []
    for chapter in range(1, chapters + 1):
        for k in range(per_chapter):
            topic = TOPICS[(chapter * 5 + k) % len(TOPICS)]
            asker, answerer = PEOPLE[k % 5], PEOPLE[(k + 1) % 5]
            found.append(
                Exchange(
                    asker,
                    f"明日可去{topic}？",
                    answerer,
                    f"{answerer}道：",
                    f"{topic}也好，只是今日不得闲。",
                    chapter,
                )
            )
    return found


def test_features_of_a_fold_use_the_idf_of_the_other_folds_only() -> None:
    tokenizer = Tokenizer()
    exchanges = _exchanges()
    # A pair said only in chapter 1 (one fold): its own fold reads it as unseen, as chat reads a new turn.
    exchanges[0] = Exchange("宝玉", "明日可去踢毽？", "黛玉", "黛玉道：", "踢毽也好。", 1)
    by_fold = relevance_features(exchanges, tokenizer.cut, None)
    assert len(by_fold) == FOLDS and all(f.shape[1:] == (10, len(LEARNED_FEATURES) + 1) for f in by_fold)
    first = by_fold[0][0]  # the group of exchanges[0]: its real answer first
    pairs = list(LEARNED_FEATURES).index("character_pairs")
    # The other folds' idf: 4 folds of 12 exchanges each (2 documents per exchange), none with 踢毽.
    outside = [e for e in exchanges if e.chapter > 2]
    documents = [set(character_grams(t)) for e in outside for t in (e.said, e.answer)]
    idf = {g: math.log2(len(documents) / sum(g in d for d in documents)) for d in documents for g in d}
    assert "踢毽" not in idf
    relevance = LexicalRelevance(idf, {}, {}, unseen_idf=UNSEEN_IDF)
    turn, answer = relevance.text_vectors("明日可去踢毽？"), relevance.text_vectors("踢毽也好。")
    expected = relevance.compare(turn, answer, ["character_pairs"])[0]
    assert first[0, pairs] == pytest.approx(expected) and expected > 0


def test_learned_weights_pick_the_answer_that_takes_up_the_turn() -> None:
    tokenizer = Tokenizer()
    learned = learn_relevance(_exchanges(), tokenizer.cut, None)
    assert set(learned["weights"]) == set(LEARNED_FEATURES) and learned["unseen_idf"] is UNSEEN_IDF
    measured = learned["measured"]
    assert measured["groups"] == 120 and measured["folds"] == FOLDS
    # Every answer repeats its turn's topic, so the cosines find it far above chance (10%), cross-validated.
    assert measured["r10_at_1_cross_validated"] > 0.5 and measured[f"r10_at_1_{BASELINE}"] > 0.5
    weights = learned["weights"]
    relevance = LexicalRelevance(
        {"看": 1.0, "花": 1.0, "看花": 2.0, "书": 1.0}, {"看花": 1.0}, weights, None, tokenizer.cut
    )
    near, far = relevance.scores("明日可去看花？", ["看花也好。", "读书也好。"])
    assert near > far


def test_too_few_exchanges_learn_nothing_and_say_why() -> None:
    learned = learn_relevance(_exchanges(chapters=1, per_chapter=8), Tokenizer().cut, None)
    assert "weights" not in learned and "too few" in learned["reason"]


def _vectors(exchanges: list[Exchange], cut) -> WordVectors:
    words = sorted(
        {w for e in exchanges for text in (e.said, e.answer) for w in cut(text) if w.strip("？。，")}
    )
    return WordVectors(words, np.random.default_rng(0).normal(size=(len(words), 8)))


def test_a_folds_bilinear_column_never_learns_from_its_own_chapters_quotes() -> None:
    tokenizer = Tokenizer()
    exchanges = _exchanges()
    vectors = _vectors(exchanges, tokenizer.cut)
    quotes = [(e.chapter, e.said, e.answer) for e in exchanges]
    config = BilinearConfig(epochs=3)
    before = relevance_features(exchanges, tokenizer.cut, vectors, quotes=quotes, bilinear=config)
    assert all(f.shape[1:] == (10, len(LEARNED_FEATURES) + 2) for f in before)
    # Other quotes in chapters 1-2 (the first fold's): its column stays, the other folds' move.
    changed = [(c, a, b) if c > 2 else (c, b, "钓鱼。") for c, a, b in quotes]
    after = relevance_features(exchanges, tokenizer.cut, vectors, quotes=changed, bilinear=config)
    assert np.array_equal(before[0], after[0])
    assert all(not np.allclose(b[:, :, -1], a[:, :, -1]) for b, a in zip(before[1:], after[1:], strict=True))
    assert all(np.array_equal(b[:, :, :-1], a[:, :, :-1]) for b, a in zip(before, after, strict=True))


# Answers that take up their turn by a related word, never by a shared character (看花 / 牡丹).
RELATED = [
    ("看花", "牡丹"), ("吃药", "太医"), ("下棋", "黑白"), ("读书", "文章"), ("喝茶", "龙井"),
    ("写字", "笔墨"), ("听戏", "锣鼓"), ("骑马", "鞍辔"), ("钓鱼", "竿线"), ("赏月", "中秋"),
    ("作诗", "韵脚"), ("弹琴", "琵琶"),
]  # fmt: skip


def test_the_bilinear_feature_learns_what_no_cosine_sees_and_is_kept() -> None:
    tokenizer = Tokenizer()
    exchanges = [
        Exchange(PEOPLE[k % 5], f"明日可去{turn}？", PEOPLE[(k + 1) % 5], "道：", f"那{answer}也好。", number)
        for number in range(1, 11)
        for k in range(12)
        for turn, answer in [RELATED[(number * 5 + k) % len(RELATED)]]
    ]
    texts = [text for e in exchanges for text in (e.said, e.answer)]
    words = sorted({word for text in texts for word in tokenizer.cut(text) if word.strip("？。")})
    vectors = WordVectors(words, np.random.default_rng(0).normal(size=(len(words), 16)))
    quotes = [(e.chapter, e.said, e.answer) for e in exchanges]
    learned = learn_relevance(
        exchanges, tokenizer.cut, vectors, quotes, BilinearConfig(epochs=50, learning_rate=0.1)
    )
    trial = learned["bilinear"]
    # The six features find nothing beyond chance (every answer reads 那…也好); the matrix, trained on the
    # other folds' quotes, finds every answer.
    assert trial["r10_at_1_cross_validated_without_it"] < 0.2
    assert trial["r10_at_1_cross_validated_with_it"] > 0.9 and trial["kept"] is True
    assert trial["quote_pairs"] == len(quotes)
    assert learned["weights"][BILINEAR] > 0 and np.asarray(trial["matrix"]).shape == (16, 16)
    assert learned["measured"]["r10_at_1_cross_validated"] == trial["r10_at_1_cross_validated_with_it"]
    # What chat then scores with: the stored matrix, read back by the relevance.
    idf = {word: 1.0 for word in words}
    relevance = LexicalRelevance({}, idf, learned["weights"], vectors, tokenizer.cut, True, trial["matrix"])
    right, wrong = relevance.scores("明日可去吃药？", ["那太医也好。", "那锣鼓也好。"])
    assert right > wrong


def test_without_quotes_or_vectors_only_the_six_are_learned() -> None:
    tokenizer = Tokenizer()
    exchanges = _exchanges()
    learned = learn_relevance(exchanges, tokenizer.cut, _vectors(exchanges, tokenizer.cut))
    assert "bilinear" not in learned and set(learned["weights"]) == set(LEARNED_FEATURES)
