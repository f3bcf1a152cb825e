"""Toy task from the reference articles, reproduced with models/lstm.py: an LSTM learns binary addition.

The LSTM reads the two operands' bits least-significant first, two inputs per step (a_t, b_t), and a sigmoid
head on every step's hidden state emits the sum bit s_t; it has to learn to carry. Training sees random pairs
of 7-bit operands (so the 8-bit sum never overflows); evaluation runs all 128 x 128 pairs as one batch and
counts the sums whose 8 bits are all right.

    .venv/bin/python examples/binary_adder.py [--seed 0] [--iterations 1500]
"""

from __future__ import annotations

import os

# The matrices here are tiny: BLAS threads only add wake-up latency (badly so on a busy machine), so one
# thread, set before NumPy loads OpenBLAS. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from dataclasses import dataclass

import numpy as np

from models.lstm import LSTM
from training.fit import Adam

BITS = 8


@dataclass
class AdderConfig:
    seed: int = 0
    hidden: int = 16
    batch: int = 64
    iterations: int = 1500
    lr: float = 0.02


def to_bits(numbers: np.ndarray) -> np.ndarray:
    """(N,) ints -> (N, BITS) float32 bits, least significant first."""
    return ((numbers[:, None] >> np.arange(BITS)) & 1).astype(np.float32)


def make_batch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Operands -> inputs (N, BITS, 2) and target sum bits (N, BITS)."""
    return np.stack([to_bits(a), to_bits(b)], axis=2), to_bits(a + b)


class Adder:
    """LSTM(2 -> H) followed by a per-step logistic head H -> 1."""

    def __init__(self, config: AdderConfig, rng: np.random.Generator) -> None:
        self.lstm = LSTM(2, config.hidden, rng)
        self.head_W = (rng.standard_normal((config.hidden, 1)) / np.sqrt(config.hidden)).astype(np.float32)
        self.head_b = np.zeros(1, dtype=np.float32)

    def params(self) -> dict[str, np.ndarray]:
        return {"lstm.W": self.lstm.W, "lstm.b": self.lstm.b, "head.W": self.head_W, "head.b": self.head_b}

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
        h, cache = self.lstm.forward(x)
        return (h @ self.head_W)[..., 0] + self.head_b[0], h, cache

    def loss_and_grads(self, x: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean binary cross-entropy over every bit of every sum, and its gradients."""
        z, h, cache = self.logits(x)
        p = 1.0 / (1.0 + np.exp(-z))
        loss = float(np.mean(np.logaddexp(0.0, z) - target * z))
        dz = ((p - target) / target.size).astype(np.float32)  # d(BCE)/dz = sigmoid(z) - target
        grads_lstm, _, _ = self.lstm.backward(dz[..., None] @ self.head_W.T, cache)
        return loss, {
            "lstm.W": grads_lstm["W"],
            "lstm.b": grads_lstm["b"],
            "head.W": np.einsum("bth,bt->h", h, dz)[:, None],
            "head.b": np.array([dz.sum()], dtype=np.float32),
        }

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The model's sums, decoded from its thresholded output bits."""
        z, _, _ = self.logits(make_batch(a, b)[0])
        return ((z > 0).astype(np.int64) << np.arange(BITS)).sum(axis=1)


def train(config: AdderConfig) -> tuple[Adder, list[float]]:
    rng = np.random.default_rng(config.seed)
    model = Adder(config, rng)
    optimiser = Adam(model.params())
    losses = []
    for _ in range(config.iterations):
        a, b = rng.integers(0, 128, size=(2, config.batch))
        loss, grads = model.loss_and_grads(*make_batch(a, b))
        optimiser.update(model.params(), grads, config.lr)
        losses.append(loss)
    return model, losses


def exhaustive_accuracy(model: Adder) -> float:
    """Fraction of all 128 x 128 sums of 7-bit operands that the model gets exactly right, in one batch."""
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(128), np.arange(128), indexing="ij"))
    return float(np.mean(model.add(a, b) == a + b))


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a NumPy LSTM to add 8-bit binary numbers.")
    parser.add_argument("--seed", type=int, default=AdderConfig.seed)
    parser.add_argument("--iterations", type=int, default=AdderConfig.iterations)
    args = parser.parse_args()
    start = time.perf_counter()
    model, losses = train(AdderConfig(seed=args.seed, iterations=args.iterations))
    accuracy = exhaustive_accuracy(model)
    seconds = time.perf_counter() - start
    print(f"trained {args.iterations} iterations in {seconds:.1f} s, final loss {losses[-1]:.5f}")
    print(f"all 128x128 sums of 7-bit operands: {accuracy:.2%} exactly right")
    print(f"e.g. 97 + 58 = {model.add(np.array([97]), np.array([58]))[0]}")


if __name__ == "__main__":
    main()
