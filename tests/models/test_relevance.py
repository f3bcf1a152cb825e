"""Chat's lexical relevance: each cosine computed by hand, the weights applied, bad weights refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.memory import ExchangeMemory
from models.relevance import FEATURES, PERSON_FEATURES, LexicalRelevance, character_grams
from models.trained import TrainedModel
from models.vectors import WordVectors

CHARACTER_IDF = {"妹": 1.0, "去": 2.0, "看": 1.5, "花": 2.5, "妹妹": 3.0, "看花": 4.0}
WORD_IDF = {"妹妹": 2.0, "看花": 3.0, "去": 1.0}


def _cut(text: str) -> list[str]:
    """A fixed segmentation, so the expected values are written out by hand."""
    words = {"妹妹去看花": ["妹妹", "去", "看花"], "我去看花。": ["我", "去", "看花", "。"], "看": ["看"]}
    return words[text]


def _vectors() -> WordVectors:
    return WordVectors(
        ["妹妹", "去", "看花", "我"], np.asarray([[1, 0], [0, 1], [1, 1], [3, 4]], dtype=np.float32)
    )


def test_each_feature_is_the_cosine_written_out_by_hand() -> None:
    relevance = LexicalRelevance(CHARACTER_IDF, WORD_IDF, {}, _vectors(), _cut)
    turn, reply = relevance.text_vectors("妹妹去看花"), relevance.text_vectors("我去看花。")
    found = dict(zip(FEATURES, relevance.compare(turn, reply, FEATURES), strict=True))
    # characters: turn 妹×2, 去, 看, 花; reply (我 has no idf) 去, 看, 花.
    turn_chars = math.sqrt(2.0**2 + 2.0**2 + 1.5**2 + 2.5**2)
    reply_chars = math.sqrt(2.0**2 + 1.5**2 + 2.5**2)
    assert found["characters"] == pytest.approx((2.0**2 + 1.5**2 + 2.5**2) / (turn_chars * reply_chars))
    # character pairs: only 妹妹 and 看花 have an idf; the reply has 看花 alone.
    assert found["character_pairs"] == pytest.approx(4.0 / math.sqrt(3.0**2 + 4.0**2))
    # words: turn 妹妹 2, 去 1, 看花 3; reply 去 1, 看花 3 (我 unknown, 。 is no word).
    assert found["words"] == pytest.approx((1 + 9) / (math.sqrt(4 + 1 + 9) * math.sqrt(1 + 9)))
    # word2vec: idf-weighted sums of unit vectors; 我 has no idf, so it does not count.
    unit = {
        "妹妹": np.array([1.0, 0.0]),
        "去": np.array([0.0, 1.0]),
        "看花": np.array([1.0, 1.0]) / math.sqrt(2),
    }
    first = 2 * unit["妹妹"] + 1 * unit["去"] + 3 * unit["看花"]
    second = 1 * unit["去"] + 3 * unit["看花"]
    expected = first @ second / (np.linalg.norm(first) * np.linalg.norm(second))
    assert found["word2vec"] == pytest.approx(expected, abs=1e-6)
    # character_grams: characters and pairs in one vector.
    grams = LexicalRelevance(CHARACTER_IDF, {}, {}).text_vectors("妹妹去看花")["character_grams"]
    assert set(grams) == {g for g in character_grams("妹妹去看花") if g in CHARACTER_IDF}


def test_the_score_is_the_weighted_sum_and_unseen_text_scores_zero() -> None:
    weights = {"characters": 2.0, "character_pairs": 0.5, "words": 1.0, "word2vec": -0.25}
    relevance = LexicalRelevance(CHARACTER_IDF, WORD_IDF, weights, _vectors(), _cut)
    turn, reply = relevance.text_vectors("妹妹去看花"), relevance.text_vectors("我去看花。")
    features = relevance.compare(turn, reply, list(weights))
    expected = sum(w * f for w, f in zip(weights.values(), features, strict=True))
    scores = relevance.scores("妹妹去看花", ["我去看花。", "看"])
    assert scores[0] == pytest.approx(expected)
    # 看 shares a character with the turn, nothing else.
    only_character = relevance.compare(turn, relevance.text_vectors("看"), ["characters"])[0]
    assert scores[1] == pytest.approx(2.0 * only_character) and only_character > 0
    assert relevance.scores("妹妹去看花", []).shape == (0,)


def test_character_vectors_and_length_written_out_by_hand() -> None:
    vectors = WordVectors(
        ["妹", "去", "看", "花"], np.asarray([[1, 0], [0, 1], [1, 1], [2, 1]], dtype=np.float32)
    )
    names = ["character_vectors", "length"]
    relevance = LexicalRelevance(CHARACTER_IDF, {}, {}, vectors)
    turn, reply = relevance.text_vectors("妹妹去看花", names), relevance.text_vectors("我去看花。", names)
    vectors_cosine, length = relevance.compare(turn, reply, names)
    unit = {
        char: np.asarray(row, dtype=np.float64) / np.linalg.norm(row)
        for char, row in zip("妹去看花", [[1, 0], [0, 1], [1, 1], [2, 1]], strict=True)
    }
    # Each character's unit vector weighted by its idf (妹 twice); 我 has neither a vector nor an idf.
    first = 2 * 1.0 * unit["妹"] + 2.0 * unit["去"] + 1.5 * unit["看"] + 2.5 * unit["花"]
    second = 2.0 * unit["去"] + 1.5 * unit["看"] + 2.5 * unit["花"]
    expected = first @ second / (np.linalg.norm(first) * np.linalg.norm(second))
    assert vectors_cosine == pytest.approx(expected, abs=1e-6)
    assert length == pytest.approx(math.log1p(4))  # the reply's letters 我去看花; punctuation does not count
    # Without the model's vectors the feature is 0, not an error (a relevance built for tests or tools).
    bare = LexicalRelevance(CHARACTER_IDF, {}, {})
    assert bare.compare(bare.text_vectors("妹妹", names), bare.text_vectors("妹妹", names), names)[0] == 0.0


def test_person_features_read_who_the_turn_and_the_reply_speak_of() -> None:
    relevance = LexicalRelevance({}, {}, {})
    names = list(PERSON_FEATURES)

    def features(turn: str, reply: str) -> dict[str, float]:
        read = relevance.text_vectors(turn, names), relevance.text_vectors(reply, names)
        return dict(zip(names, relevance.compare(*read, names), strict=True))

    # 你 in the turn, 我 in the reply: the answer speaks as the one addressed.
    assert features("你身上可好些了？", "我也不过这么着。") == {
        "you_answered_by_me": 1.0, "me_answered_by_you": 0.0, "you_answered_by_you": 0.0,
        "me_answered_by_me": 0.0, "reply_says_you": 0.0, "reply_says_me": 1.0,
    }  # fmt: skip
    assert features("我给你带了点心来", "你我都知道。") == dict.fromkeys(names, 1.0)
    # A reply that says neither pronoun, or a turn that says neither, sets only what the reply says.
    assert set(features("我给你带了点心来", "好姐姐。").values()) == {0.0}
    assert features("点心来了", "你吃罢。") == {**dict.fromkeys(names, 0.0), "reply_says_you": 1.0}
    # They are weighted like every feature.
    weighted = LexicalRelevance({}, {}, {"you_answered_by_me": 2.0, "reply_says_you": -0.5})
    assert weighted.scores("你来了", ["我来了", "你也来了", "来了"]).tolist() == [2.0, -0.5, 0.0]


def test_unseen_grams_and_words_weigh_as_the_rarest_seen_only_when_asked() -> None:
    names = ["characters", "words"]
    dropped = LexicalRelevance(CHARACTER_IDF, WORD_IDF, {}, None, _cut)
    counted = LexicalRelevance(CHARACTER_IDF, WORD_IDF, {}, None, _cut, unseen_idf=True)
    before, after = dropped.text_vectors("我去看花。", names), counted.text_vectors("我去看花。", names)
    assert "我" not in before["characters"] and "我" not in before["words"]
    # 我 was never seen: it weighs as the rarest gram of its table (看花, idf 4) and rarest word (看花, 3).
    chars = math.sqrt(4.0**2 + 2.0**2 + 1.5**2 + 2.5**2)
    assert after["characters"]["我"] == pytest.approx(4.0 / chars)
    assert after["characters"]["去"] == pytest.approx(2.0 / chars)
    assert after["words"]["我"] == pytest.approx(3.0 / math.sqrt(3.0**2 + 1.0**2 + 3.0**2))
    # So a reply's unseen words lower its cosines (they are part of what it says), where they did not.
    turn = counted.text_vectors("妹妹去看花", names)
    assert counted.compare(turn, after, names)[0] < dropped.compare(dropped.text_vectors("妹妹去看花", names),
                                                                    before, names)[0]  # fmt: skip


def test_unknown_features_and_word_features_without_a_tokenizer_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown features"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, {"rhymes": 1.0})
    with pytest.raises(ValueError, match="cut"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, {"words": 1.0})


def test_a_memory_without_learned_weights_scores_by_the_character_cosine(tiny_model_dir: Path) -> None:
    model = TrainedModel.load(tiny_model_dir)
    assert model.memory is not None
    data = model.memory.to_json()
    data.pop("relevance", None)
    data.pop("word_idf")
    older = ExchangeMemory.from_json(data)
    assert older.relevance_weights == {"character_grams": 1.0} and older.word_idf == {}
    # A novel with too few exchanges to learn from records why, and scores the same way.
    unlearned = ExchangeMemory.from_json({**data, "relevance": {"reason": "too few exchanges"}})
    assert unlearned.relevance_weights == {"character_grams": 1.0}
    relevance = older.lexical_relevance(model.vectors, model.tokenizer.cut)
    assert relevance is not None
    assert relevance.scores("妹妹去看花", ["我去看花。"])[0] == pytest.approx(
        relevance.compare(relevance.text_vectors("妹妹去看花"), relevance.text_vectors("我去看花。"),
                          ["character_grams"])[0]
    )  # fmt: skip


def test_the_memory_says_whether_unseen_grams_weigh(tiny_model_dir: Path) -> None:
    model = TrainedModel.load(tiny_model_dir)
    assert model.memory is not None
    data = model.memory.to_json()
    assert data["relevance"]["unseen_idf"] is True  # what training learns the weights with
    relevance = model.memory.lexical_relevance(model.vectors, model.tokenizer.cut)
    assert relevance is not None and relevance.unseen_idf
    # A memory learned before the rule scores unseen grams as before: not at all.
    older = ExchangeMemory.from_json({**data, "relevance": {**data["relevance"], "unseen_idf": False}})
    before = older.lexical_relevance(model.vectors, model.tokenizer.cut)
    assert before is not None and not before.unseen_idf
    with pytest.raises(ValueError, match=r"relevance\.unseen_idf"):
        ExchangeMemory.from_json({**data, "relevance": {**data["relevance"], "unseen_idf": "yes"}})


@pytest.mark.parametrize(
    "weights",
    [{"rhymes": 1.0}, {"characters": "much"}, {"characters": float("inf")}, ["characters"]],
)
def test_memory_json_with_bad_relevance_weights_is_refused(tiny_model_dir: Path, weights: object) -> None:
    model = TrainedModel.load(tiny_model_dir)
    assert model.memory is not None
    data = {**model.memory.to_json(), "relevance": {"weights": weights}}
    with pytest.raises(ValueError, match=r"relevance\.weights"):
        ExchangeMemory.from_json(data)


def test_the_bilinear_feature_is_the_turns_vector_times_m_times_the_replys() -> None:
    matrix = np.asarray([[2.0, 1.0], [0.0, 3.0]])
    relevance = LexicalRelevance(CHARACTER_IDF, WORD_IDF, {}, _vectors(), _cut, bilinear=matrix)
    names = ["word2vec", "word2vec_bilinear"]
    turn, reply = relevance.text_vectors("妹妹去看花", names), relevance.text_vectors("我去看花。", names)
    first, second = turn["word2vec"], reply["word2vec"]
    cosine, bilinear = relevance.compare(turn, reply, names)
    assert bilinear == pytest.approx(float(first @ matrix @ second))
    assert bilinear != pytest.approx(cosine)  # not symmetric in turn and reply, unlike the cosine
    assert relevance.compare(reply, turn, names)[1] == pytest.approx(float(second @ matrix @ first))
    # M = a·I is the plain cosine scaled: what the learned matrix starts from.
    scaled = LexicalRelevance(CHARACTER_IDF, WORD_IDF, {}, _vectors(), _cut, bilinear=10 * np.eye(2))
    assert scaled.compare(turn, reply, names)[1] == pytest.approx(10 * cosine)
    # Weighted, it enters the score like any feature; a text without a known word scores 0.
    weighted = LexicalRelevance(
        CHARACTER_IDF, WORD_IDF, {"word2vec_bilinear": 0.5}, _vectors(), _cut, bilinear=matrix
    )
    assert weighted.scores("妹妹去看花", ["我去看花。", "看"]).tolist() == pytest.approx(
        [0.5 * bilinear, 0.0]
    )


def test_a_bilinear_weight_needs_a_square_finite_matrix_of_the_vectors_size() -> None:
    weights = {"word2vec_bilinear": 1.0}
    with pytest.raises(ValueError, match="needs its matrix"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, weights, _vectors(), _cut)
    with pytest.raises(ValueError, match=r"\(dim, dim\) for 2-dimensional"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, weights, _vectors(), _cut, bilinear=np.eye(3))
    with pytest.raises(ValueError, match=r"\(dim, dim\)"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, weights, _vectors(), _cut, bilinear=np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        LexicalRelevance(CHARACTER_IDF, WORD_IDF, weights, _vectors(), _cut, bilinear=np.full((2, 2), np.nan))
