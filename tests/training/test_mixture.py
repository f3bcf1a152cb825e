"""training/mixture.py: order and λ chosen on the validation tail of the training chapters only."""

from __future__ import annotations

import numpy as np

from models.network import Network, NetworkConfig
from training.mixture import ORDERS, choose_mixture

V = 20


def _uniform_network() -> Network:
    """A real softmax network whose head ignores the LSTM: every prediction is uniform over V words."""
    rng = np.random.default_rng(0)
    network = Network(NetworkConfig(V, 4, hidden=3, loss="softmax"), rng.standard_normal((V, 4)), rng)
    network.params["head.W"][...] = 0.0
    network.params["head.b"][...] = 0.0
    return network


def test_a_predictable_text_gives_the_ngram_the_weight_and_the_held_out_part_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    cycle = np.array([3, 1, 4, 1, 5, 9, 2, 6])  # a text the n-gram learns exactly, the uniform LSTM never
    train = np.tile(cycle, 400)
    held_a, held_b = np.tile(cycle, 20), rng.integers(0, V, size=160)
    mixture_a, report_a = choose_mixture(_uniform_network(), np.concatenate([train, held_a]), len(train))
    mixture_b, report_b = choose_mixture(_uniform_network(), np.concatenate([train, held_b]), len(train))
    assert report_a == report_b and mixture_a.lstm_weight == mixture_b.lstm_weight
    assert report_a["order"] in ORDERS and report_a["lstm_weight"] < 0.1
    assert report_a["validation_mixture_nats"] < report_a["validation_lstm_nats"] - 1.0
    assert report_a["validation_tokens"] == 160  # 5% of the 3,200 training tokens
