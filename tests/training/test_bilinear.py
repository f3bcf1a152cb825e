"""The dual encoder's matrix: learned from pairs, it ranks a held-out pair's reply above the plain cosine."""

from __future__ import annotations

import numpy as np
import pytest

from training.bilinear import BilinearConfig, train_bilinear


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _pairs(count: int, seed: int, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replies that answer in another direction than their turn: the turn rotated, plus noise (the cosine
    of turn and reply says little; u(turn) M u(reply) with M the rotation says much)."""
    rng = np.random.default_rng(seed)
    turns = _unit(rng.normal(size=(count, len(rotation))))
    replies = _unit(turns @ rotation + 0.3 * rng.normal(size=turns.shape))
    return turns, replies


def _first_of_ten(turns: np.ndarray, replies: np.ndarray, matrix: np.ndarray) -> float:
    """Share of pairs whose own reply outscores those of the next 9 pairs (R10@1)."""
    scores = turns @ matrix @ replies.T
    count = len(turns)
    wins = [all(scores[i, i] > scores[i, (i + j) % count] for j in range(1, 10)) for i in range(count)]
    return float(np.mean(wins))


def test_the_learned_matrix_ranks_unseen_pairs_better_than_the_cosine() -> None:
    dim = 8
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))[0]
    turns, replies = _pairs(600, 1, rotation)
    matrix = train_bilinear(turns, replies, BilinearConfig(epochs=30))
    assert matrix.shape == (dim, dim)
    held_turns, held_replies = _pairs(200, 2, rotation)
    cosine = _first_of_ten(held_turns, held_replies, np.eye(dim))
    learned = _first_of_ten(held_turns, held_replies, matrix)
    assert learned > cosine + 0.3, (learned, cosine)


def test_the_penalty_keeps_the_matrix_near_the_scaled_identity() -> None:
    dim = 6
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(dim, dim)))[0]
    turns, replies = _pairs(300, 4, rotation)
    loose = train_bilinear(turns, replies, BilinearConfig(l2=1e-5))
    tight = train_bilinear(turns, replies, BilinearConfig(l2=10.0))
    off_diagonal = ~np.eye(dim, dtype=bool)
    assert np.abs(tight[off_diagonal]).max() < 0.1 * np.abs(loose[off_diagonal]).max()


def test_same_seed_same_matrix_and_bad_shapes_are_refused() -> None:
    rotation = np.eye(4)
    turns, replies = _pairs(100, 5, rotation)
    config = BilinearConfig(epochs=3)
    assert np.array_equal(train_bilinear(turns, replies, config), train_bilinear(turns, replies, config))
    with pytest.raises(ValueError, match="alike"):
        train_bilinear(turns, replies[:, :3], config)
    # One pair teaches nothing: the starting point, the cosine scaled.
    assert np.array_equal(train_bilinear(turns[:1], replies[:1], config), config.initial_scale * np.eye(4))
