"""training.word2vec: real gensim training, C-tool defaults, vectors.bin round trip, --vectors loading."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from training.word2vec import (
    Word2VecConfig,
    load_vectors,
    looks_binary,
    sentences,
    train_word2vec,
)

WORDS = [
    "渔夫",
    "小船",
    "河里",
    "山歌",
    "柳树",
    "白鹭",
    "孩子",
    "书包",
    "学校",
    "女儿",
    "早饭",
    "太阳",
    "母亲",
]
WORDS += ["厨房", "咸菜", "，", "。"]


def _chapters(n_chapters: int = 4, length: int = 600, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(length)] for _ in range(n_chapters)]


SMALL = Word2VecConfig(dim=16, epochs=2, min_count=2, workers=1, negative=5)


def test_defaults_are_the_reference_c_tool_command_line() -> None:
    config = Word2VecConfig()
    assert (config.cbow, config.dim, config.window, config.negative, config.hs) == (True, 200, 8, 25, 0)
    assert (config.sample, config.epochs, config.min_count) == (1e-4, 15, 5)
    assert config.alpha == 0.05  # word2vec.c's default for CBOW


def test_sentences_are_cut_like_the_c_tool() -> None:
    pieces = sentences([["字"] * 2500, ["词"] * 10])
    assert [len(p) for p in pieces] == [1000, 1000, 500, 10]


def test_training_returns_frequency_ordered_vectors_with_counts() -> None:
    chapters = _chapters()
    result = train_word2vec(chapters, SMALL, progress=False)
    vectors = result.vectors
    frequency = Counter(token for chapter in chapters for token in chapter)
    assert set(vectors.words) == set(WORDS)
    assert vectors.dim == 16 and vectors.matrix.dtype == np.float32
    assert [int(c) for c in vectors.counts] == [frequency[w] for w in vectors.words]
    assert list(vectors.counts) == sorted(vectors.counts, reverse=True)
    assert result.settings["dim"] == 16 and result.settings["source"] == "trained"


def test_min_count_drops_rare_words() -> None:
    chapters = [*_chapters(), ["独一无二"]]
    vectors = train_word2vec(chapters, SMALL, progress=False).vectors
    assert "独一无二" not in vectors


def test_single_worker_training_is_reproducible() -> None:
    first = train_word2vec(_chapters(), SMALL, progress=False).vectors
    second = train_word2vec(_chapters(), SMALL, progress=False).vectors
    assert first.words == second.words
    np.testing.assert_array_equal(first.matrix, second.matrix)


def test_round_trip_through_vectors_bin_loads_in_gensim(tmp_path: Path) -> None:
    vectors = train_word2vec(_chapters(), SMALL, progress=False).vectors
    path = tmp_path / "vectors.bin"
    vectors.save_word2vec_format(path, binary=True)
    loaded = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert list(loaded.index_to_key) == vectors.words
    np.testing.assert_array_equal(loaded.vectors, vectors.matrix)


@pytest.mark.parametrize(("name", "binary"), [("v.bin", True), ("v.txt", False), ("v.vec", False)])
def test_load_vectors_by_extension(tmp_path: Path, name: str, binary: bool) -> None:
    chapters = _chapters()
    trained = train_word2vec(chapters, SMALL, progress=False).vectors
    path = tmp_path / name
    trained.save_word2vec_format(path, binary=binary)
    result = load_vectors(path, chapters)
    assert result.settings == {"source": "file", "file": str(path), "binary": binary, "dim": 16, "words": 17}
    assert result.vectors.words == trained.words
    np.testing.assert_allclose(result.vectors.matrix, trained.matrix, atol=1e-5)  # text keeps 6 decimals
    frequency = Counter(token for chapter in chapters for token in chapter)
    assert [int(c) for c in result.vectors.counts] == [frequency[w] for w in trained.words]


@pytest.mark.parametrize("binary", [True, False])
def test_binary_is_detected_from_content_without_extension(tmp_path: Path, binary: bool) -> None:
    trained = train_word2vec(_chapters(), SMALL, progress=False).vectors
    path = tmp_path / "vectors"
    trained.save_word2vec_format(path, binary=binary)
    assert looks_binary(path) is binary
    assert load_vectors(path, _chapters()).vectors.words == trained.words


def test_vectors_sharing_no_word_with_the_corpus_are_rejected(tmp_path: Path) -> None:
    trained = train_word2vec(_chapters(), SMALL, progress=False).vectors
    path = tmp_path / "other.bin"
    trained.save_word2vec_format(path)
    with pytest.raises(ValueError, match="none of its 17 words occurs in the corpus"):
        load_vectors(path, [["完全", "不同", "的", "词"]])


def test_missing_or_broken_vectors_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.bin"):
        load_vectors(tmp_path / "absent.bin", _chapters())
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"3 4\n\xff\xfe garbage")
    with pytest.raises(ValueError, match=r"broken\.bin"):
        load_vectors(broken, _chapters())


@pytest.mark.parametrize(
    ("change", "message"),
    [({"dim": 0}, "--dim"), ({"min_count": 0}, "--min-count"), ({"epochs": 0}, "--w2v")],
)
def test_invalid_settings_are_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Word2VecConfig(**change).validate()


def test_min_count_above_every_frequency_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="lower --min-count"):
        train_word2vec([["只", "出现", "一次"]], SMALL, progress=False)
