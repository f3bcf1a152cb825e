"""Network: exact gradients for every loss and parameter, scores/step consistency, save/load and its
errors."""

from __future__ import annotations

import numpy as np
import pytest

from models.network import Network, NetworkConfig

V, D, H = 11, 5, 4

VARIANTS = {
    "mse": NetworkConfig(V, D, H, loss="mse"),
    "cosine": NetworkConfig(V, D, H, loss="cosine"),
    "cos_softmax": NetworkConfig(V, D, H, loss="cos_softmax"),
    "cos_softmax-frozen-nobias": NetworkConfig(
        V, D, H, loss="cos_softmax", output_bias=False, train_output=False
    ),
    "softmax": NetworkConfig(V, D, H, loss="softmax"),
    "cos_softmax-2layers-dropout": NetworkConfig(V, D, H, layers=2, loss="cos_softmax", dropout=0.3),
    "softmax-2layers-dropout": NetworkConfig(V, D, H, layers=2, loss="softmax", dropout=0.3),
}


def _network(config: NetworkConfig, dtype: type = np.float64, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    embedding = rng.standard_normal((config.vocab_size, config.dim))
    counts = rng.integers(1, 100, size=config.vocab_size)
    return Network(config, embedding, rng, dtype=dtype, unigram_counts=counts)


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradient_check_every_parameter(name: str) -> None:
    """Central finite differences in float64 against the analytic gradient, for every entry of every array,
    starting from a non-zero carried state (stateful training) and with a fixed dropout mask."""
    network = _network(VARIANTS[name])
    data_rng = np.random.default_rng(1)
    ids = data_rng.integers(0, V, size=(3, 5))
    state = [
        (0.5 * data_rng.standard_normal((3, H)), 0.5 * data_rng.standard_normal((3, H)))
        for _ in network.lstms
    ]

    def loss_at() -> float:
        return network.loss_grads_state(ids, np.random.default_rng(7), state=state)[0]

    _, grads, _ = network.loss_grads_state(ids, np.random.default_rng(7), state=state)
    assert set(grads) == set(network.params)
    eps = 1e-6
    for param_name, param in network.params.items():
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            original = param[index]
            param[index] = original + eps
            plus = loss_at()
            param[index] = original - eps
            minus = loss_at()
            param[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        error = _relative_error(numeric, grads[param_name])
        assert error < 1e-5, f"{name}: {param_name} relative error {error:.2e}"
