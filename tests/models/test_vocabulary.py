"""The open-vocabulary rule (models/vocabulary.py): nothing deleted, counts from the training side only."""

from __future__ import annotations

import numpy as np
import pytest

from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from models.vocabulary import UNKNOWN_TOKEN, choose_vocabulary, spell, stream_shares, with_unknown


def test_frequent_words_keep_identity_rare_words_are_spelled_rare_characters_are_unk() -> None:
    train = [["宝玉", "笑道", "宝玉", "宝钗"], ["宝玉", "笑道", "钗", "笑道"]]
    vocabulary = choose_vocabulary(train, min_count=2, min_char_count=2)
    # 宝玉 (3) and 笑道 (3) are words; 宝钗 (1) is spelled: 宝 occurs once spelled (not enough), 钗 twice.
    assert vocabulary == {"宝玉", "笑道", "钗", UNKNOWN_TOKEN}
    assert spell(["宝玉", "宝钗", "笑道"], vocabulary) == ["宝玉", UNKNOWN_TOKEN, "钗", "笑道"]


def test_spelling_with_the_finished_vocabulary_reproduces_the_counted_stream() -> None:
    # What lets serving rebuild the training stream from the word list alone.
    train = [[*list("甲乙丙"), "甲乙", "甲乙", "丙丁", "戊"], ["甲乙", "丙丁", "丙丁"]]
    vocabulary = choose_vocabulary(train, min_count=3, min_char_count=2)
    stream = [spell(chapter, vocabulary) for chapter in train]
    again = [spell(chapter, set(vocabulary)) for chapter in train]
    assert stream == again
    assert sum(len("".join(c).replace(UNKNOWN_TOKEN, "?")) for c in stream) == sum(
        len("".join(c)) for c in train
    )


def test_every_character_is_covered_once() -> None:
    tokens = Tokenizer().cut("宝玉看见孙悟空，笑道：“好。”")
    model_tokens = spell(tokens, {"宝玉", "看见", "，", "：", "“", "”", "。", "孙", UNKNOWN_TOKEN})
    assert "".join(
        t if t != UNKNOWN_TOKEN else "?" for t in model_tokens
    ) == "宝玉看见孙??，笑道：“?。”".replace("笑道", "??")
    shares = stream_shares(tokens, model_tokens, set(model_tokens))
    assert shares["unk_tokens"] == 5


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min-count"):
        choose_vocabulary([["甲"]], min_count=0)


def test_with_unknown_appends_a_mean_row_once() -> None:
    vectors = WordVectors(["甲", "乙"], np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([3, 1]))
    extended = with_unknown(vectors)
    assert extended.words == ["甲", "乙", UNKNOWN_TOKEN] and extended.counts.tolist() == [3, 1, 0]
    assert np.allclose(extended.matrix[2], [0.5, 0.5])
    assert with_unknown(extended) is extended
