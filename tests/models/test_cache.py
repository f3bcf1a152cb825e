"""models/cache.py: the continuous cache's distribution, its batched history and its settings file."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from models.cache import (
    COUNT_CLASSES,
    CacheHistory,
    CacheSettings,
    ContinuousCache,
    ngram_distribution,
    ngram_target_probabilities,
    stream_fill,
    unit_rows,
)

V, D = 12, 6


def _dense(cache: ContinuousCache, queries: np.ndarray, history: CacheHistory) -> np.ndarray:
    """p_cache as a dense (B, V) array (rows with an empty history are all zero)."""
    rows, ids, values, _ = cache.distribution(queries, history)
    dense = np.zeros((len(queries), V))
    np.add.at(dense, (rows, ids), values)
    return dense


def _history(outputs: np.ndarray, next_ids: list[int], window: int = 50) -> CacheHistory:
    return CacheHistory.of_text(np.asarray(outputs, dtype=np.float32), np.asarray(next_ids), window)


def test_the_cache_is_a_distribution_over_the_words_that_followed() -> None:
    rng = np.random.default_rng(0)
    outputs = rng.standard_normal((9, D))
    next_ids = [3, 5, 3, 7, 1, 1, 1, 9, 3]
    cache = ContinuousCache(CacheSettings(weight=0.2, flatness=4.0, window=50))
    p = _dense(cache, rng.standard_normal((1, D)), _history(outputs, next_ids))[0]
    assert p.sum() == pytest.approx(1.0)
    assert set(np.nonzero(p)[0]) == set(next_ids)  # only words of the history, every one of them


def test_it_favours_the_word_whose_context_matched_the_current_one() -> None:
    basis = np.eye(D)
    # Three remembered positions: after an output like basis[0] came word 4, after basis[1] word 8 (twice).
    history = _history(basis[[0, 1, 1]], [4, 8, 8])
    query = (basis[0] + 0.1 * basis[2])[None, :]  # close to the first context, far from the others
    sharp = _dense(ContinuousCache(CacheSettings(0.1, flatness=20.0, window=50)), query, history)[0]
    assert sharp[4] > 0.99 and sharp[8] < 0.01
    # θ = 0 forgets the contexts: a unigram cache of the window (word 8 followed two of three positions).
    flat = _dense(ContinuousCache(CacheSettings(0.1, flatness=0.0, window=50)), query, history)[0]
    assert flat[8] == pytest.approx(2 / 3) and flat[4] == pytest.approx(1 / 3)


def test_mixing_keeps_a_distribution_and_leaves_rows_with_an_empty_cache_alone() -> None:
    rng = np.random.default_rng(1)
    cache = ContinuousCache(CacheSettings(weight=0.3, flatness=5.0, window=8))
    filled = _history(rng.standard_normal((5, D)), [2, 2, 6, 0, 11], window=8)
    empty = CacheHistory.of_text(np.zeros((0, D), dtype=np.float32), np.zeros(0, dtype=np.int64), 8)
    history = filled.stack(empty)
    model = rng.dirichlet(np.ones(V), size=2).astype(np.float32)
    queries = rng.standard_normal((2, D))
    mixed = cache.mix(model.copy(), queries, history)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(mixed[1], model[1])
    share = 0.3 * 5 / 8  # five pairs of a window of eight
    expected = (1 - share) * model[0] + share * _dense(cache, queries, history)[0]
    np.testing.assert_allclose(mixed[0], expected, rtol=1e-5)


def test_the_cache_earns_its_whole_weight_only_with_a_full_window() -> None:
    # A cache of one pair is one word with all of its mass: mixed at the full μ it would outrank whatever the
    # model is unsure about, and greedy decoding would repeat the prompt. Its share grows with what it holds.
    rng = np.random.default_rng(6)
    cache = ContinuousCache(CacheSettings(weight=0.4, flatness=5.0, window=10))
    model = np.full((1, V), 1.0 / V, dtype=np.float32)
    query = rng.standard_normal((1, D))
    kept = []
    for pairs in (1, 5, 10, 30):
        history = _history(rng.standard_normal((pairs, D)), [3] * pairs, window=10)
        mixed = cache.mix(model.copy(), query, history)[0]
        kept.append(mixed[0])
    # The words the cache never saw keep (1 − μ·fill) of their probability.
    np.testing.assert_allclose(np.array(kept) * V, [1 - 0.04, 1 - 0.2, 1 - 0.4, 1 - 0.4], rtol=1e-5)
    np.testing.assert_allclose(cache.fill(np.array([0, 1, 5, 10, 30])), [0, 0.1, 0.5, 1, 1])


def test_positions_older_than_the_window_are_forgotten() -> None:
    rng = np.random.default_rng(2)
    cache = ContinuousCache(CacheSettings(0.1, flatness=1.0, window=4))
    history = _history(rng.standard_normal((4, D)), [7, 1, 2, 3], window=4)
    assert _dense(cache, rng.standard_normal((1, D)), history)[0, 7] > 0
    history = _history(rng.standard_normal((5, D)), [7, 1, 2, 3, 5], window=4)  # word 7's pair is out
    p = _dense(cache, rng.standard_normal((1, D)), history)[0]
    assert p[7] == 0 and set(np.nonzero(p)[0]) == {1, 2, 3, 5}


def test_a_row_gets_the_same_numbers_alone_and_in_a_batch() -> None:
    rng = np.random.default_rng(3)
    cache = ContinuousCache(CacheSettings(0.25, flatness=7.0, window=40))
    texts = [rng.standard_normal((n, D)) for n in (3, 30, 1)]  # capacities 16, 32 and 16
    alone = [_history(t, list(rng.integers(0, V, len(t))), window=40) for t in texts]
    batch = alone[0].stack(alone[1]).stack(alone[2])
    queries = rng.standard_normal((3, D)).astype(np.float32)
    model = rng.dirichlet(np.ones(V), size=3).astype(np.float32)
    together = cache.mix(model.copy(), queries, batch)
    for row in range(3):
        single = cache.mix(model[row : row + 1].copy(), queries[row : row + 1], alone[row])
        np.testing.assert_array_equal(together[row], single[0])
    kept = batch.select(np.array([2, 0]))
    np.testing.assert_array_equal(cache.mix(model[[2, 0]].copy(), queries[[2, 0]], kept), together[[2, 0]])


def test_reading_a_text_at_once_is_reading_it_token_by_token() -> None:
    rng = np.random.default_rng(4)
    cache = ContinuousCache(CacheSettings(0.2, flatness=3.0, window=10))
    outputs = rng.standard_normal((40, D)).astype(np.float32)
    next_ids = rng.integers(0, V, 40)
    unit = unit_rows(outputs)
    model = rng.dirichlet(np.ones(V), size=40)
    at_once = cache.mix_stream(model.copy(), unit, next_ids, start=0)
    for t in range(40):  # position t: a prompt of t tokens read, the cache holding its pairs
        history = CacheHistory.of_text(outputs[:t], next_ids[:t], window=10)
        step = cache.mix(model[t : t + 1].copy(), outputs[t : t + 1], history)
        np.testing.assert_allclose(at_once[t], step[0], rtol=1e-5, atol=1e-7)
    # What the choice of weights reads: the cache's probability of the token that came, and the fill.
    targets = cache.target_probabilities(unit, next_ids)
    fill = stream_fill(40, 10)
    np.testing.assert_allclose(fill, np.minimum(1.0, np.arange(40) / 10))
    dense = cache.mix_stream(np.zeros((40, V)), unit, next_ids, start=0)
    np.testing.assert_allclose(targets[1:] * 0.2 * fill[1:], dense[np.arange(1, 40), next_ids[1:]], rtol=1e-6)
    assert targets[0] == 0.0  # nothing read yet


def test_settings_round_trip_and_a_bad_file_names_itself(tmp_path: Path) -> None:
    settings = CacheSettings(weight=0.15, flatness=12.5, window=500)
    settings.save(tmp_path / "cache.json")
    assert CacheSettings.load(tmp_path / "cache.json") == settings
    for content, message in (
        ("{", "not a readable"),
        (json.dumps({"weight": 0.1, "flatness": 1.0}), "exactly the fields"),
        (json.dumps({"weight": 0.1, "flatness": 1.0, "window": 5, "extra": 1}), "exactly the fields"),
        (json.dumps({"weight": 1.5, "flatness": 1.0, "window": 5}), "weight"),
        (json.dumps({"weight": 0.1, "flatness": 1.0, "window": 0}), "window"),
        (json.dumps({"weight": 0.1, "flatness": -1.0, "window": 5}), "flatness"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message) as error:
            CacheSettings.load(path)
        assert str(path) in str(error.value)


def test_mixing_works_in_place_whatever_the_memory_order_of_the_probabilities() -> None:
    # A head may return its logits in Fortran order (the transpose of a product), and probabilities built from
    # them keep it: the cache must land in them, not in a flattened copy.
    rng = np.random.default_rng(5)
    cache = ContinuousCache(CacheSettings(weight=0.4, flatness=2.0, window=10))
    one = _history(rng.standard_normal((10, D)), [1, 2, 3] * 3 + [1], window=10)  # full: μ whole
    history = one.stack(one)
    queries = rng.standard_normal((2, D))
    model = np.asfortranarray(rng.dirichlet(np.ones(V), size=2))
    assert not model.flags.c_contiguous
    expected = 0.6 * model + 0.4 * _dense(cache, queries, history)
    mixed = cache.mix(model, queries, history)
    assert mixed is model
    np.testing.assert_allclose(mixed, expected, rtol=1e-6)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)


def test_rows_joining_and_leaving_a_batch_share_their_keys_instead_of_copying_them() -> None:
    # A request's candidates read one prompt: their rows hold the same keys, and a batch changing shape
    # (a row joins, is pruned or ends) copies only ids and counts, not every row's (C, D) keys.
    rng = np.random.default_rng(5)
    prompt = _history(rng.standard_normal((20, D)), list(rng.integers(0, V, 20)))
    other = _history(rng.standard_normal((3, D)), list(rng.integers(0, V, 3)))
    batch = CacheHistory.concatenate([prompt, prompt, prompt, other])
    assert len(batch) == 4 and all(keys is prompt.keys[0] for keys in batch.keys[:3])
    kept = batch.select(np.array([3, 1]))
    assert kept.keys[0] is other.keys[0] and kept.keys[1] is prompt.keys[0]
    np.testing.assert_array_equal(kept.ids[0, :16], other.ids[0])


COUNTED = CacheSettings(
    0.2,
    flatness=3.0,
    window=10,
    trigram_weights=(0.1, 0.2, 0.3, 0.4, 0.5),
    bigram_weights=(0.05, 0.1, 0.15, 0.2, 0.25),
)


def test_the_token_counts_follow_the_trigram_context_else_the_bigram_one() -> None:
    # remembered: 1 2 3 1 2 4 2 5; after (1, 2) came 3 and 4 (trigram, seen twice: class 1); after (9, 2)
    # never, but after 2 came 3, 4 and 5 (bigram, 3 times: class 1); after 7 nothing.
    ids = np.array([[1, 2, 3, 1, 2, 4, 2, 5, -1, -1]] * 3)
    previous = np.array([[1, 2], [9, 2], [2, 7]])
    rows, found, values, classes = ngram_distribution(ids, previous)
    dense = np.zeros((3, V))
    np.add.at(dense, (rows, found), values)
    np.testing.assert_allclose(dense[0, [3, 4]], [0.5, 0.5])
    np.testing.assert_allclose(dense[1, [3, 4, 5]], [1 / 3] * 3)
    assert (
        dense[0].sum() == pytest.approx(1.0) and dense[1].sum() == pytest.approx(1.0) and dense[2].sum() == 0
    )
    assert classes.tolist() == [1 + COUNT_CLASSES + 1, 1 + 1, 0]


@pytest.mark.parametrize("count_window", [None, 40])
def test_with_token_counts_the_tick_and_the_stream_serve_the_same_distribution(
    count_window: int | None,
) -> None:
    rng = np.random.default_rng(6)
    settings = replace(COUNTED, count_window=count_window)
    cache = ContinuousCache(settings)
    outputs = rng.standard_normal((60, D)).astype(np.float32)
    next_ids = np.tile(rng.integers(0, V, size=7), 9)[:60]  # a phrase that comes back: the counts find it
    unit = unit_rows(outputs)
    model = rng.dirichlet(np.ones(V), size=60)
    at_once = np.concatenate(
        [cache.mix_stream(model[s : s + 16].copy(), unit, next_ids, start=s) for s in range(0, 60, 16)]
    )
    np.testing.assert_allclose(at_once.sum(axis=1), 1.0)
    without = ContinuousCache(CacheSettings(0.2, flatness=3.0, window=10)).mix_stream(
        model.copy(), unit, next_ids, 0
    )
    assert not np.allclose(at_once[20:], without[20:])  # the counts did move the distribution
    text = np.concatenate([[int(rng.integers(0, V))], next_ids])  # the token before the first target
    for t in range(60):  # a prompt of text[: t + 1]: t pairs remembered, its last two tokens the context
        history = CacheHistory.of_text(outputs[:t], next_ids[:t], 10, settings.ids_window)
        step = cache.mix(model[t : t + 1].copy(), outputs[t : t + 1], history, [text[: t + 1].tolist()])
        np.testing.assert_allclose(step.sum(), 1.0)
        np.testing.assert_allclose(at_once[t], step[0], rtol=1e-5, atol=1e-7)
    # In a batch (rows of different prompts), each row gets what it gets alone.
    histories = [
        CacheHistory.of_text(outputs[:t], next_ids[:t], 10, settings.ids_window) for t in (5, 30, 59)
    ]
    batch = cache.mix(
        model[[5, 30, 59]].copy(),
        outputs[[5, 30, 59]],
        CacheHistory.concatenate(histories),
        [text[: t + 1].tolist() for t in (5, 30, 59)],
    )
    np.testing.assert_allclose(batch, at_once[[5, 30, 59]], rtol=1e-5, atol=1e-7)
    # What the choice of ν reads: p_dyn of the token that came, and each position's class.
    found, classes = ngram_target_probabilities(next_ids, settings.ids_window)
    shares = COUNTED.class_weights()[classes]
    only_counts = ContinuousCache(replace(settings, weight=0.0)).mix_stream(
        np.zeros((60, V)), unit, next_ids, 0
    )
    np.testing.assert_allclose(only_counts[np.arange(60), next_ids], shares * found, atol=1e-12)


def test_counts_over_a_longer_window_find_what_came_back_beyond_the_cache() -> None:
    # The phrase 7 8 9 occurs once, 30 tokens before the end: a 10-id window has forgotten it, a 40-id one
    # still proposes 9 after 7 8 (a trigram seen once), while the cache's own pairs stay the last 10.
    rng = np.random.default_rng(8)
    next_ids = np.concatenate([[7, 8, 9], rng.integers(0, 7, size=30), [7, 8]])  # 7 and 8 once before
    outputs = rng.standard_normal((len(next_ids), D)).astype(np.float32)
    text = np.concatenate([[1], next_ids])
    model = np.full((1, V), 1.0 / V)
    found = {}
    for count_window in (None, 40):
        settings = replace(COUNTED, weight=0.0, count_window=count_window)
        history = CacheHistory.of_text(outputs, next_ids, 10, settings.ids_window)
        assert (history.ids >= 0).sum() == 10
        assert (history.count_ids >= 0).sum() == min(settings.ids_window, len(next_ids))
        cache = ContinuousCache(settings)
        found[count_window] = cache.mix(model.copy(), outputs[-1:], history, [text.tolist()])
    assert found[None][0, 9] == pytest.approx(1.0 / V)
    nu = COUNTED.trigram_weights[0]
    assert found[40][0, 9] == pytest.approx((1 - nu) / V + nu)


def test_the_count_window_is_saved_only_when_set_and_validated(tmp_path: Path) -> None:
    longer = replace(COUNTED, count_window=2000)
    longer.save(tmp_path / "cache.json")
    assert json.loads((tmp_path / "cache.json").read_text(encoding="utf-8"))["count_window"] == 2000
    assert CacheSettings.load(tmp_path / "cache.json") == longer
    COUNTED.save(tmp_path / "same.json")
    assert "count_window" not in json.loads((tmp_path / "same.json").read_text(encoding="utf-8"))
    assert CacheSettings.load(tmp_path / "same.json").ids_window == COUNTED.window
    for bad in (0, -5, 2.5, True):
        bad_file = tmp_path / "bad.json"
        bad_file.write_text(json.dumps({**asdict(COUNTED), "count_window": bad}), encoding="utf-8")
        with pytest.raises(ValueError, match=r"bad\.json: count_window must be a positive integer"):
            CacheSettings.load(bad_file)


def test_a_settings_file_without_the_counts_serves_exactly_as_before(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"weight": 0.1, "flatness": 10.0, "window": 500}), encoding="utf-8")
    old = CacheSettings.load(path)
    assert not old.counts_used and old.trigram_weights == (0.0,) * COUNT_CLASSES
    old.save(tmp_path / "again.json")  # and writes the same three fields back
    assert set(json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))) == {
        "weight",
        "flatness",
        "window",
    }
    COUNTED.save(path)
    assert CacheSettings.load(path) == COUNTED
    path.write_text(json.dumps({**json.loads(path.read_text()), "bigram_weights": [0.1, 2.0, 0, 0, 0]}))
    with pytest.raises(ValueError, match="bigram_weights"):
        CacheSettings.load(path)
