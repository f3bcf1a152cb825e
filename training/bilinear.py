"""A small dual encoder for chat's relevance: score(turn, reply) = u(turn)ᵀ M u(reply).

In the spirit of Lowe et al. (2015)'s dual encoder, sized for one novel: u is a sentence representation the
model already has (the idf-weighted sum of its unit word vectors, unit length: the `word2vec` feature of
models/relevance.py), and only M is learned, from pairs of adjacent quotes of the training chapters (one
quote and the next within a short stretch of narration: 5,100 in 红楼梦's chapters before the tail, twice the
attributed exchanges, and on 红楼梦's training chapters they taught M more than the exchanges alone did:
cross-validated R10@1 +2.1 points against +1.1). Each pair's second quote must win a softmax over the
second quotes of the other pairs of its minibatch (in-batch negatives, what R10@1 asks of a ranking), with
M = a·I + W: it starts as the plain cosine scaled (a = 10) and W, the part learned beyond it, is shrunk by
an L2 penalty. Adam (Kingma and Ba, 2015) on minibatches: a full-batch fit over all pairs' softmax costs
minutes, this one about a second.

The settings were chosen by the cross-validated R10@1 of the relevance with this feature on 红楼梦's
training chapters' exchanges (2,396 groups; M never trained on the chapters of the fold it scored; gains
over the six features' 49.7%, measured with a copy of this fit that skipped each epoch's last short
minibatch, where the chosen settings read +2.1 and here +2.0): L2 1e-4 (1e-3 +1.4, 1e-5 +2.0), 20 epochs
(10: +1.6, 40: +2.0), minibatches of 128 (64: +1.5, 256: +1.9), learning rate 0.01 (0.03: +1.3); word
vectors rather than the LSTM's mean output or both (+0.4 and −0.2 at 300k), narration gaps of at most 30
characters (100 or 1,000: +0.2, +0.0 at 300k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.threads import single_blas_thread


@dataclass(frozen=True)
class BilinearConfig:
    l2: float = 1e-4
    epochs: int = 20
    batch: int = 128
    learning_rate: float = 0.01
    initial_scale: float = 10.0  # a of M = a·I + W at the start: the cosine, sharp enough for a softmax
    seed: int = 0


_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8


def train_bilinear(
    turns: np.ndarray, replies: np.ndarray, config: BilinearConfig = BilinearConfig()
) -> np.ndarray:
    """M (dim, dim) such that turns[i] @ M @ replies[i] beats turns[i] @ M @ replies[j] for the other j of
    its minibatch. `turns`, `replies`: (pairs, dim), row i of each one pair (zero rows allowed: a text
    without a known word). Deterministic for a given seed."""
    turns = np.asarray(turns, dtype=np.float64)
    replies = np.asarray(replies, dtype=np.float64)
    if turns.shape != replies.shape or turns.ndim != 2:
        raise ValueError(
            f"turns and replies must be (pairs, dim) alike, got {turns.shape} and {replies.shape}"
        )
    count, dim = turns.shape
    scale, extra = config.initial_scale, np.zeros((dim, dim))
    if count < 2:
        return scale * np.eye(dim)
    rng = np.random.default_rng(config.seed)
    # Adam's moments, of the scale and of W.
    scale_moments = [0.0, 0.0]
    extra_first, extra_second = np.zeros_like(extra), np.zeros_like(extra)
    step = 0
    # The matrices are small: BLAS threads only wait on each other (about fifty times slower on a loaded
    # 2-core machine than one thread).
    with single_blas_thread():
        for _ in range(config.epochs):
            order = rng.permutation(count)
            for start in range(0, count, config.batch):
                batch = order[start : start + config.batch]
                if len(batch) < 2:
                    continue
                first, second = turns[batch], replies[batch]
                cosines = first @ second.T
                logits = scale * cosines + (first @ extra) @ second.T
                logits -= logits.max(axis=1, keepdims=True)
                probabilities = np.exp(logits)
                probabilities /= probabilities.sum(axis=1, keepdims=True)
                # d(mean cross-entropy of the diagonal)/d(logits)
                probabilities[np.arange(len(batch)), np.arange(len(batch))] -= 1.0
                probabilities /= len(batch)
                scale_gradient = float((probabilities * cosines).sum())
                extra_gradient = first.T @ probabilities @ second + 2.0 * config.l2 * extra
                step += 1
                correction_1, correction_2 = 1 - _BETA1**step, 1 - _BETA2**step
                scale_moments[0] = _BETA1 * scale_moments[0] + (1 - _BETA1) * scale_gradient
                scale_moments[1] = _BETA2 * scale_moments[1] + (1 - _BETA2) * scale_gradient**2
                # The scale lives on another order of magnitude than W's entries: ten times the step.
                scale -= (10 * config.learning_rate * (scale_moments[0] / correction_1)
                          / (np.sqrt(scale_moments[1] / correction_2) + _EPSILON))  # fmt: skip
                extra_first = _BETA1 * extra_first + (1 - _BETA1) * extra_gradient
                extra_second = _BETA2 * extra_second + (1 - _BETA2) * extra_gradient**2
                extra -= (config.learning_rate * (extra_first / correction_1)
                          / (np.sqrt(extra_second / correction_2) + _EPSILON))  # fmt: skip
    return scale * np.eye(dim) + extra
