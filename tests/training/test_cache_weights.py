"""training/cache.py: the cache's weight, flatness and window chosen on the validation tail only."""

from __future__ import annotations

import numpy as np

from models.network import Network, NetworkConfig
from training.cache import FLATNESS, WINDOWS, choose_cache

V = 20


def _uniform_network() -> Network:
    """A real softmax network whose head ignores the LSTM: every prediction is uniform over V words, while
    its hidden state (what the cache compares) still follows the text."""
    rng = np.random.default_rng(0)
    network = Network(NetworkConfig(V, 4, hidden=8, loss="softmax"), rng.standard_normal((V, 4)), rng)
    network.params["head.W"][...] = 0.0
    network.params["head.b"][...] = 0.0
    return network


def test_a_text_that_repeats_gives_the_cache_weight_and_the_held_out_part_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    cycle = np.array([3, 1, 4, 1, 5, 9, 2, 6])  # what came after each context comes again: the cache knows
    train = np.tile(cycle, 400)
    held_a, held_b = np.tile(cycle, 20), rng.integers(0, V, size=160)
    settings_a, report_a = choose_cache(_uniform_network(), np.concatenate([train, held_a]), len(train))
    settings_b, report_b = choose_cache(_uniform_network(), np.concatenate([train, held_b]), len(train))
    assert report_a == report_b and settings_a == settings_b
    assert settings_a is not None and settings_a.window in WINDOWS and settings_a.flatness in FLATNESS
    assert settings_a.weight > 0.3
    assert report_a["validation_gain_bits_per_token"] > 1.0
    assert report_a["validation_tokens"] == 160  # 5% of the 3,200 training tokens
    # The token n-gram's ν too: after (1, 4) the text always goes on with 1, which the counts know exactly.
    assert settings_a.counts_used and max(settings_a.trigram_weights) > 0.3
    assert report_a["validation_with_counts_nats"] < report_a["validation_with_cache_nats"]


def test_the_counts_weights_are_searched_class_by_class_on_the_validation_tail() -> None:
    from models.cache import ngram_target_probabilities
    from training.cache import COUNT_WEIGHTS, choose_counts

    rng = np.random.default_rng(5)
    validation = np.tile(rng.integers(0, V, size=30), 12)  # a 30-token phrase, repeated
    served = np.full(len(validation), 1.0 / V)
    trigram, bigram, nats = choose_counts(served, validation, window=100)
    found, classes = ngram_target_probabilities(validation, 100)
    nu = np.array([0.0, *bigram, *trigram])
    assert -np.mean(np.log((1 - nu[classes]) * served + nu[classes] * found)) == nats
    for c in np.unique(classes[classes > 0]):  # no grid value does better at its own positions
        at = classes == c
        best = -np.sum(np.log((1 - nu[c]) * served[at] + nu[c] * found[at]))
        assert all(
            best <= -np.sum(np.log((1 - w) * served[at] + w * found[at])) + 1e-9 for w in COUNT_WEIGHTS
        )
    assert max(trigram) == COUNT_WEIGHTS[-1] and nats < np.log(V) - 1.0


def test_no_cache_when_nothing_comes_back() -> None:
    # Independent uniform tokens, predicted by a uniform model: the true distribution, which any share of a
    # cache only makes worse.
    tokens = np.random.default_rng(2).integers(0, V, size=4000)
    settings, report = choose_cache(_uniform_network(), tokens, 3600)
    assert settings is None and report["weight"] == 0.0
    assert report["validation_gain_bits_per_token"] == 0.0


def test_the_grid_gives_what_the_cache_itself_gives_for_each_setting() -> None:
    from models.cache import CacheSettings, ContinuousCache, unit_rows
    from training.cache import cache_target_probabilities

    rng = np.random.default_rng(3)
    unit = unit_rows(rng.standard_normal((700, 6)))
    next_ids = rng.integers(0, 5, size=700)
    grid = cache_target_probabilities(unit, next_ids, windows=(3, 50, 300), flatness=(0.0, 4.0, 40.0))
    for (window, flatness), values in grid.items():
        cache = ContinuousCache(CacheSettings(0.1, flatness, window))
        np.testing.assert_allclose(values, cache.target_probabilities(unit, next_ids), rtol=1e-5, atol=1e-9)
