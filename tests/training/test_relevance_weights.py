"""Learning the lexical relevance's weights on exchanges (real jieba; idf cross-fitted by fold)."""

from __future__ import annotations

import math

import pytest

from models.memory import Exchange
from models.relevance import LEARNED_FEATURES, LexicalRelevance, character_grams
from models.tokenizer import Tokenizer
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
