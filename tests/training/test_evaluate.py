"""Evaluation on a hand-made token stream whose right answers are known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import training.evaluate
from models.cache import CacheSettings, ContinuousCache
from models.decoding import Decoder
from models.network import Network, NetworkConfig
from models.ngram import KneserNey, Mixture
from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from training.baselines import UNKNOWN_CHARACTER_BITS
from training.evaluate import (
    SAMPLING,
    bigram_table,
    continuations,
    evaluate,
    format_table,
    generation_quality,
    held_out_metrics,
    histories_before,
    longest_copy,
    unigram_top,
)

V = 12
TRAIN = np.array([0, 1, 2, 0, 1, 2, 0, 1, 3, 5, 0, 4])  # counts 0:4 1:3 2:2 3:1 4:1 5:1, the rest 0
HELD_OUT = np.array([0, 1, 3, 11, 2])  # every one a target: 0 after the last training token 4, then 1, 3, ...


def test_unigram_and_bigram_tables() -> None:
    assert list(unigram_top(TRAIN, V)) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    table = bigram_table(TRAIN, V)
    assert list(table[0]) == [1, 4, 0, 2, 3, 5, 6, 7, 8, 9]  # 0→1 three times, 0→4 once, then unigram
    assert list(table[1]) == [2, 3, 0, 1, 4, 5, 6, 7, 8, 9]
    assert list(table[2]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # the only successor is also unigram's first
    assert list(table[11]) == list(unigram_top(TRAIN, V))  # never seen: pure back-off


def _fixed_distribution_network(log_p: np.ndarray) -> Network:
    """A real softmax network whose head ignores the LSTM: every prediction is the distribution exp(log_p)."""
    rng = np.random.default_rng(0)
    network = Network(NetworkConfig(V, 4, hidden=3, loss="softmax"), rng.standard_normal((V, 4)), rng)
    network.params["head.W"][...] = 0.0
    network.params["head.b"][...] = log_p
    return network


def _decoder(network: Network, words: list[str]) -> Decoder:
    """The decoder the evaluation draws its samples with (the ids are given: the tokenizer never runs)."""
    return Decoder(network, WordVectors(words, network.embedding), Tokenizer(mode="char"))


def test_evaluate_baselines_and_model_on_known_answers() -> None:
    p = np.full(V, 0.01)
    p[3], p[2] = 0.5, 0.3
    p /= p.sum()
    network = _fixed_distribution_network(np.log(p))
    ids = np.concatenate([TRAIN, HELD_OUT])
    result = evaluate(_decoder(network, [f"w{i}" for i in range(V)]), ids, len(TRAIN))

    assert result["split"] == {
        "train_tokens": 12,
        "held_out_tokens": 5,
        "targets": 5,
        "held_out_chars": 11,  # w0 w1 w3 w11 w2: every held-out character
        "unk_targets": 0,
        "unk_share": 0.0,
        "unk_charge": "14.36 bits per <unk> (uniform over CJK Unified Ideographs)",
        "held_out": "last 10% of chapters, every character (open-vocabulary stream, nothing deleted)",
    }
    # Add-one unigram: (count + 1) / (12 training tokens + 12 words) for targets 0, 1, 3, 11, 2.
    unigram_bits = -np.log2(np.array([5, 4, 2, 1, 3]) / 24).sum()
    assert result["unigram"]["bpc"] == pytest.approx(unigram_bits / 11)
    assert result["unigram"]["perplexity"] == pytest.approx(2.0 ** (unigram_bits / 5))
    assert (result["unigram"]["acc@1"], result["unigram"]["acc@10"]) == (0.2, 0.8)
    # Contexts 4 (never followed: unigram, 0 first), 0 (→1), 1 (→2, 3), 3 (→5, then unigram), 11 (unigram).
    assert (result["bigram"]["acc@1"], result["bigram"]["acc@10"]) == (0.4, 0.8)
    assert all(result[key]["bpc"] > 0 for key in ("bigram", "char_5gram_kn", "ppmd"))
    model = result["model"]
    assert model["bpc"] == pytest.approx(-np.log2(p[HELD_OUT]).sum() / 11, rel=1e-5)
    assert model["acc@1"] == 0.2  # always answers 3: right once (target 3)
    assert model["acc@10"] == 1.0  # every word is in the top 10 except the 1 % words ranked after the 10th
    expected_perplexity = float(np.exp(-np.mean(np.log(p[HELD_OUT]))))
    assert model["perplexity"] == pytest.approx(expected_perplexity, rel=1e-5)
    assert len(result["samples"]) == 3 and all(s["generated"] for s in result["samples"])
    table = format_table(result)
    assert "bigram" in table and "40.0%" in table
    assert table.splitlines()[-1] == f"held-out bits per character: {model['bpc']:.2f}"


def test_unknown_target_is_a_miss_charged_one_character_and_the_stated_uniform() -> None:
    p = np.full(V, 1.0 / V)
    network = _fixed_distribution_network(np.log(p))
    words = [f"w{i}" for i in range(V - 1)] + ["<unk>"]
    held = np.array([0, 11, 11, 1])  # targets w0, <unk>, <unk>, w1: 2 + 1 + 1 + 2 characters
    result = evaluate(_decoder(network, words), np.concatenate([TRAIN, held]), len(TRAIN))
    assert result["split"]["held_out_chars"] == 6 and result["split"]["unk_targets"] == 2
    expected = (4 * np.log2(V) + 2 * UNKNOWN_CHARACTER_BITS) / 6
    assert result["model"]["bpc"] == pytest.approx(expected, rel=1e-5)
    # Every word ties, so each target ranks first, but the two <unk> targets count as misses.
    assert result["model"]["acc@1"] == pytest.approx(1 / 2)


def test_mse_models_get_no_perplexity() -> None:
    rng = np.random.default_rng(0)
    network = Network(NetworkConfig(V, 4, hidden=3, loss="mse"), rng.standard_normal((V, 4)), rng)
    decoder = _decoder(network, [f"w{i}" for i in range(V)])
    result = evaluate(decoder, np.concatenate([TRAIN, HELD_OUT]), len(TRAIN))
    assert result["model"]["perplexity"] is None
    assert 0.0 <= result["model"]["acc@1"] <= result["model"]["acc@10"] <= 1.0


def test_write_report_draws_curve_and_table(tmp_path) -> None:
    from training.report import write_report

    network = _fixed_distribution_network(np.zeros(V))
    decoder = _decoder(network, [f"w{i}" for i in range(V)])
    manifest = {
        "corpus": {"name": "hand-made", "tokens": 17},
        "network": {"loss": "softmax", "layers": 1, "hidden": 3},
        "training": {
            "train_loss": [3.0, 2.5, 2.2],
            "val_loss": [3.1, 2.8, 2.9],
            "best_epoch": 2,
            "epochs": 3,
        },
        "evaluation": evaluate(decoder, np.concatenate([TRAIN, HELD_OUT]), len(TRAIN)),
    }
    path = tmp_path / "report.png"
    write_report(path, manifest)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    write_report(tmp_path / "empty.png", {})  # a manifest without training still gives a picture
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_longest_copy_finds_the_longest_shared_passage() -> None:
    assert longest_copy("甲乙丙丁戊", "丙丁戊己 乙丙") == 3
    assert longest_copy("xyz", "abc") == 0
    assert longest_copy("", "abc") == 0


def test_generation_quality_counts_distinct_bigrams_of_seeded_samples() -> None:
    p = np.full(V, 1e-6)
    p[3] = 1.0  # a network that always says w3: one distinct bigram in every sample
    network = _fixed_distribution_network(np.log(p / p.sum()))
    decoder = _decoder(network, [f"w{i}" for i in range(V)])
    quality = generation_quality(decoder, np.arange(10), train_text="w3w3w3w3")
    assert quality["samples"] == 20 and quality["tokens"] == 200
    assert quality["distinct_2"] == pytest.approx(1 / (20 * 199))
    assert quality["longest_copy_chars"] == 8  # the training text is w3 four times


def test_samples_are_what_the_server_decoder_generates_for_the_same_prompt_and_seed() -> None:
    rng = np.random.default_rng(3)
    words = list("甲乙丙丁戊己庚辛壬癸子丑")
    network = Network(NetworkConfig(V, 4, hidden=5, loss="softmax"), rng.standard_normal((V, 4)), rng)
    decoder = _decoder(network, words)
    prompts = [[0, 1, 2], [5, 4, 3, 2, 1, 0], [11]]
    together = continuations(decoder, prompts, 40, seed=7)
    for row, prompt in enumerate(prompts):
        text = "".join(words[i] for i in prompt)
        alone = decoder.generate(text, replace(SAMPLING, max_new_tokens=40, seed=7 + row)).run()
        assert together[row] == [token.id for token in alone.tokens]
    assert len({tuple(ids) for ids in together}) == 3  # seeded per prompt: three different continuations


def test_held_out_scoring_in_parallel_threads_gives_the_serial_numbers_bit_for_bit(monkeypatch) -> None:
    """held_out_metrics scores its chunks in threads; every figure must be what one thread computes (the
    chunks write disjoint targets, the hit counts are summed under a lock)."""
    rng = np.random.default_rng(5)
    vocab = 40
    config = NetworkConfig(vocab, 6, hidden=5, loss="adaptive_cos_softmax", prediction_norm=True)
    network = Network(config, rng.standard_normal((vocab, 6)), rng, unigram_counts=np.arange(1, vocab + 1))
    ids = rng.integers(0, vocab, size=6000)  # the held-out part spans several chunks of EVAL_WINDOW streams
    split = 1500
    mixture = Mixture(KneserNey.fit(ids[:split] + 1, vocab + 1, 3), 0.6)
    cache = ContinuousCache(CacheSettings(weight=0.2, flatness=5.0, window=100))
    histories = histories_before(ids, split, len(ids) - split, mixture.context)
    runs = {}
    for threads in (1, 2):
        monkeypatch.setattr(training.evaluate, "SCORING_THREADS", threads)
        runs[threads] = held_out_metrics(network, ids[split - 1 :], vocab - 1, mixture, histories, cache)
    assert len(ids) - split > 2 * training.evaluate.EVAL_WINDOW * training.evaluate.EVAL_STREAMS
    assert set(runs[1]) == {"lstm", "mixture", "cached"}
    for name, serial in runs[1].items():
        parallel = runs[2][name]
        np.testing.assert_array_equal(parallel["log_probs"], serial["log_probs"])
        assert (parallel["bits"], parallel["acc@1"], parallel["acc@10"]) == (
            serial["bits"],
            serial["acc@1"],
            serial["acc@10"],
        )
        assert 0 < serial["acc@10"] < 1
