"""memory.json built at training time: the training chapters' exchanges and their BM25 index (real jieba,
real gensim at training; serving's NumPy scoring checked against the BM25 formula computed here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.artifacts import read_manifest
from models.memory import MEMORY_FILE, ExchangeMemory, index_terms
from models.relevance import BILINEAR, LEARNED_FEATURES, LexicalRelevance
from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from training.characters import extract_characters
from training.memory import BM25_B, BM25_K1, build_memory

CHAPTERS = [
    "第一回\n宝玉笑道：“妹妹可吃了药？”黛玉道：“吃了药，身上好些了。”宝玉道：“明日去看花。”"
    "黛玉冷笑道：“看什么花，我不去。”宝玉道：“妹妹又恼了。”黛玉道：“我恼什么。”"
    "宝玉道：“妹妹可吃了药？”黛玉道：“又问。”宝玉道：“明日去看花。”黛玉道：“不去。”",
    "第二回\n凤姐笑道：“老太太可吃了饭？”贾母道：“吃了饭了。”凤姐道：“今日看戏去。”贾母笑道：“看戏也好。”"
    "凤姐道：“明日看花去。”贾母道：“明日再说。”凤姐道：“老太太可吃了饭？”贾母道：“吃了。”",
    "第三回\n宝玉道：“妹妹看花去？”黛玉道：“不去。”\n黛玉叫宝玉来，和凤姐说话，向贾母笑，问黛玉好。",
]


@pytest.fixture(scope="module")
def memory() -> ExchangeMemory:
    extraction = extract_characters(CHAPTERS, min_utterances=2)
    return build_memory(CHAPTERS, extraction.utterances, 2, Tokenizer())


def test_only_the_training_chapters_exchanges_are_indexed(memory: ExchangeMemory) -> None:
    assert len(memory) > 0
    assert {exchange.chapter for exchange in memory.exchanges} <= {1, 2}  # chapter 3 is held out
    first = memory.exchanges[0]
    assert (first.asker, first.said) == ("宝玉", "妹妹可吃了药？")
    assert (first.answerer, first.answer) == ("黛玉", "吃了药，身上好些了。")
    assert first.how == "黛玉道："  # the novel's own narration between the two quotes


def test_scores_are_okapi_bm25_of_what_was_said(memory: ExchangeMemory) -> None:
    tokenizer = Tokenizer()
    documents = [index_terms(tokenizer.cut(exchange.said)) for exchange in memory.exchanges]
    average = sum(map(len, documents)) / len(documents)
    query = tokenizer.cut("明日去不去看花？")

    def bm25(document: list[str]) -> float:
        total = 0.0
        for term in set(index_terms(query)):
            frequency = document.count(term)
            if not frequency:
                continue
            having = sum(term in d for d in documents)
            idf = math.log(len(documents) - having + 0.5) - math.log(having + 0.5)
            # gensim lifts a negative idf to a quarter of the average idf; not exercised by these terms.
            assert idf > 0
            length = BM25_K1 * (1 - BM25_B + BM25_B * len(document) / average)
            total += idf * frequency * (BM25_K1 + 1) / (frequency + length)
        return total

    assert memory.scores(query).tolist() == pytest.approx([bm25(d) for d in documents], abs=1e-3)


def test_recall_prefers_the_characters_own_answers(memory: ExchangeMemory) -> None:
    terms = Tokenizer().cut("明日去看花")
    plain = memory.recall(terms, k=4, own_weight=1.0)
    assert "看花" in plain[0].exchange.said
    assert all(any(word in found.exchange.said for word in ("明日", "看花", "去")) for found in plain)
    own = memory.recall(terms, k=1, character="贾母", own_weight=10.0)
    assert own[0].exchange.answerer == "贾母"
    assert memory.recall(Tokenizer().cut("火车站在哪里"), k=3) == []  # nothing shared: nothing recalled


def test_round_trip_and_bad_files(memory: ExchangeMemory, tmp_path: Path) -> None:
    path = tmp_path / MEMORY_FILE
    memory.save(path)
    loaded = ExchangeMemory.load(path)
    assert loaded.exchanges == memory.exchanges
    query = Tokenizer().cut("妹妹可吃了药")
    assert loaded.scores(query).tolist() == pytest.approx(memory.scores(query).tolist(), abs=1e-3)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["postings"]["妹妹"] = [[999, 1.0]]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="outside"):
        ExchangeMemory.load(path)
    data["memory_version"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="memory_version"):
        ExchangeMemory.load(path)


def test_without_chapters_keeps_the_weights_of_the_rest(memory: ExchangeMemory) -> None:
    rest = memory.without_chapters({1})
    assert rest.exchanges and all(exchange.chapter == 2 for exchange in rest.exchanges)
    query = Tokenizer().cut("老太太可吃了饭")
    kept = [i for i, exchange in enumerate(memory.exchanges) if exchange.chapter == 2]
    assert rest.scores(query).tolist() == pytest.approx(memory.scores(query)[kept].tolist())


def test_the_tiny_model_has_a_memory_listed_in_its_manifest(tiny_model_dir: Path) -> None:
    manifest = read_manifest(tiny_model_dir)
    assert MEMORY_FILE in manifest["files"]
    memory = ExchangeMemory.load(tiny_model_dir / MEMORY_FILE)
    held_out = manifest["vocabulary"]["held_out_chapters"]
    last_training = manifest["corpus"]["chapters"] - held_out
    assert len(memory) > 10 and max(e.chapter for e in memory.exchanges) <= last_training
    assert manifest["memory"]["exchanges"] == len(memory)
    assert 1 <= memory.rerank.candidates <= 16 and 0 <= memory.rerank.beta <= 2
    # What the tuning chose is what chat ranks with: every one of the three settings is stored.
    chosen = manifest["memory"]["rerank"]
    assert (chosen["candidates"], chosen["beta"], chosen["lexical"]) == (
        memory.rerank.candidates,
        memory.rerank.beta,
        memory.rerank.lexical,
    )
    assert chosen["lexical"] >= 0 and 0 <= chosen["beta"] <= 2
    assert chosen["measured"]["logit_weights"]["with_turn"] > 0  # the fit β and γ are read from
    # The lexical relevance's weights were learned on the training chapters and are what chat scores with.
    learned = manifest["memory"]["relevance"]
    kept = learned["bilinear"]["kept"]  # tried on the tiny novel's quotes, kept only if it helped
    assert set(learned["weights"]) == set(LEARNED_FEATURES) | ({BILINEAR} if kept else set())
    assert learned["unseen_idf"] is True and learned["bilinear"]["quote_pairs"] > 0
    assert memory.relevance_weights == learned["weights"]
    # The manifest names the matrix by its shape; memory.json holds it.
    stored = memory.settings["relevance"]["bilinear"]
    assert ("matrix" in stored) is kept and (not kept or learned["bilinear"]["matrix"].endswith(MEMORY_FILE))
    assert learned["measured"]["groups"] >= 10 and memory.word_idf


def test_a_bilinear_matrix_is_stored_read_back_and_checked(memory: ExchangeMemory, tmp_path: Path) -> None:
    matrix = [[2.0, 0.5], [0.0, 3.0]]
    learned = {"weights": {"characters": 1.0, BILINEAR: 0.5}, "bilinear": {"matrix": matrix, "kept": True}}
    with_matrix = ExchangeMemory(
        memory.exchanges, memory.postings, {**memory.settings, "relevance": learned},
        memory.character_idf, memory.word_idf,
    )  # fmt: skip
    path = tmp_path / MEMORY_FILE
    with_matrix.save(path)
    loaded = ExchangeMemory.load(path)
    vectors = WordVectors(["妹妹", "吃药"], np.asarray([[1.0, 0.0], [0.0, 1.0]]))
    relevance = loaded.lexical_relevance(vectors, Tokenizer().cut)
    assert isinstance(relevance, LexicalRelevance) and relevance.bilinear.tolist() == matrix
    assert relevance.weights == {"characters": 1.0, BILINEAR: 0.5}
    # Without word vectors there is no sentence vector to multiply: the feature is left out, not an error.
    assert BILINEAR not in loaded.lexical_relevance(None, Tokenizer().cut).weights
    # The manifest's summary names the matrix instead of listing 40,000 numbers.
    assert loaded.summary()["relevance"]["bilinear"]["matrix"] == f"2x2 in {MEMORY_FILE}"
    assert loaded.summary()["exchanges"] == len(loaded)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["relevance"]["bilinear"]["matrix"] = [[1.0, 2.0]]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="square"):
        ExchangeMemory.load(path)
    del data["relevance"]["bilinear"]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="matrix is missing"):
        ExchangeMemory.load(path)
