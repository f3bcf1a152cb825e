"""Toy task from the reference articles, reproduced with models/lstm.py: the "next prime" regression.

Each example is a window of 50 consecutive primes divided by 100, fed one number per step; a linear head on
the last hidden state predicts the next (51st) prime, also divided by 100. The windows slide over the first
100 primes (2 .. 541), giving 50 windows, trained as one full batch. Reported: the mean squared error on those
training windows in the /100 scale, the figure the reference quotes (~1e-6); like the reference, this is a
fit, not a forecast of unseen primes.

How it is trained, and why: the windows overlap and all rise almost the same way, so the last hidden states of
different windows differ by only ~1% while the targets differ by the irregular prime gaps. Plain gradient
descent on head and LSTM together stalls near 1e-4 here (the head would need very large weights along
directions where the features hardly vary). So the linear head is solved exactly at every iteration by
(ridge-regularised) least squares on the current features, and Adam trains the LSTM through that optimal
head: variable projection (Golub & Pereyra), the standard method for models that are linear in their last
layer. By the envelope theorem the gradient at the optimal head is the gradient of the projected loss, so no
extra terms are needed.

    .venv/bin/python examples/next_prime.py [--seed 0] [--iterations 800]
"""

import os

# The matrices here are tiny: BLAS threads only add wake-up latency (badly so on a busy machine), so one
# thread, set before NumPy loads OpenBLAS. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from models.lstm import LSTM
from training.fit import Adam

WINDOW = 50
SCALE = 100.0


@dataclass
class PrimeConfig:
    seed: int = 0
    primes: int = 100
    hidden: int = 32
    iterations: int = 800
    lr: float = 0.005
    final_lr_fraction: float = 0.01
    ridge: float = 1e-6  # keeps the head's normal equations well posed when two features nearly coincide


def first_primes(n: int) -> np.ndarray:
    """The first n primes, by a sieve over a bound that is large enough (n (ln n + ln ln n) for n >= 6)."""
    bound = max(15, int(n * (math.log(n) + math.log(math.log(n)))) + 1) if n >= 6 else 15
    sieve = np.ones(bound + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(bound**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    return np.flatnonzero(sieve)[:n]


def prime_windows(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 50, 1) windows of consecutive primes / 100 and the (N,) next prime / 100."""
    primes = first_primes(count).astype(np.float32) / SCALE
    starts = np.arange(len(primes) - WINDOW)
    x = primes[starts[:, None] + np.arange(WINDOW)][..., None]
    return x, primes[starts + WINDOW]


class PrimeRegressor:
    """LSTM(1 -> H), then a linear head (weights and bias) on the last hidden state."""

    def __init__(self, config: PrimeConfig, rng: np.random.Generator) -> None:
        self.lstm = LSTM(1, config.hidden, rng)
        self.head = np.zeros(config.hidden + 1)  # [weights..., bias], float64: solved, not trained
        self.ridge = config.ridge

    def _features(self, h_last: np.ndarray) -> np.ndarray:
        return np.concatenate([h_last, np.ones((len(h_last), 1), dtype=h_last.dtype)], axis=1).astype(
            np.float64
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        h, _ = self.lstm.forward(x)
        return self._features(h[:, -1]) @ self.head

    def loss_and_grads(self, x: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Solve the head for the current features, then the MSE and its gradient for the LSTM."""
        h, cache = self.lstm.forward(x)
        features = self._features(h[:, -1])
        gram = features.T @ features + self.ridge * np.eye(features.shape[1])
        self.head = np.linalg.solve(gram, features.T @ target)
        error = features @ self.head - target
        dy = (2.0 / len(target)) * error  # d(mean squared error)/d(prediction)
        dh = np.zeros(h.shape, dtype=np.float32)  # only the last step is supervised
        dh[:, -1] = dy[:, None] * self.head[:-1]
        grads, _, _ = self.lstm.backward(dh, cache)
        return float(np.mean(error**2)), grads


def train(config: PrimeConfig) -> tuple[PrimeRegressor, float]:
    """Returns the model and its mean squared error on the training windows (/100 scale)."""
    rng = np.random.default_rng(config.seed)
    x, y = prime_windows(config.primes)
    model = PrimeRegressor(config, rng)
    params = model.lstm.params()
    optimiser = Adam(params)
    for i in range(config.iterations):
        # Cosine decay: large steps to find the fit, tiny ones at the end to settle to ~1e-6.
        fraction = config.final_lr_fraction + (1 - config.final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * i / config.iterations)
        )
        _, grads = model.loss_and_grads(x, y)
        optimiser.update(params, grads, config.lr * fraction)
    model.loss_and_grads(x, y)  # re-solve the head for the final LSTM weights
    return model, float(np.mean((model.predict(x) - y) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Fit a NumPy LSTM to predict the next prime from the last 50."
    )
    parser.add_argument("--seed", type=int, default=PrimeConfig.seed)
    parser.add_argument("--iterations", type=int, default=PrimeConfig.iterations)
    args = parser.parse_args()
    config = PrimeConfig(seed=args.seed, iterations=args.iterations)
    start = time.perf_counter()
    model, mse = train(config)
    x, y = prime_windows(config.primes)
    print(
        f"trained {config.iterations} iterations in {time.perf_counter() - start:.1f} s on {len(y)} windows"
    )
    print(f"training-window MSE (primes / {SCALE:.0f}): {mse:.2e}")
    predicted = model.predict(x[-1:])[0] * SCALE
    last_input = round(float(x[-1, -1, 0]) * SCALE)
    print(f"after ... {last_input}: predicted {predicted:.2f}, actual {y[-1] * SCALE:.0f}")


if __name__ == "__main__":
    main()
