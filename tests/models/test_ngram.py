"""models/ngram.py: Kneser-Ney distributions that agree with its own text scores, stored without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.ngram import KneserNey, Mixture

RNG = np.random.default_rng(0)
TRAIN = RNG.integers(1, 30, size=5000)
TRAIN[::4] = 7  # some structure: frequent contexts with many successors
HELD = RNG.integers(1, 30, size=300)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_are_normalised_and_match_the_text_scores(order: int) -> None:
    model = KneserNey.fit(TRAIN, 31, order)
    log2_p = model.log2_probs(TRAIN, HELD)
    stream = np.concatenate([TRAIN[len(TRAIN) - (order - 1) :], HELD])
    histories = np.stack([stream[i : i + order - 1] for i in range(len(HELD))])
    distributions = model.distributions(histories)
    assert distributions.shape == (len(HELD), 31)
    assert np.allclose(distributions.sum(axis=1), 1.0)
    assert np.allclose(np.log2(distributions[np.arange(len(HELD)), HELD]), log2_p)


def test_short_histories_back_off_to_lower_orders() -> None:
    model = KneserNey.fit(TRAIN, 31, 3)
    bigram = KneserNey.fit(TRAIN, 31, 3).distributions(np.array([[-1, 7]]))
    assert np.allclose(bigram.sum(), 1.0)
    unigram = model.distributions(np.array([[-1, -1]]))
    assert np.allclose(unigram, model.distributions(np.array([[-1, -1]])))
    assert not np.allclose(bigram, unigram)


def test_mixture_is_the_weighted_sum_and_survives_a_pickle_free_round_trip(tmp_path: Path) -> None:
    vocab = 30  # ids 0..29 are n-gram symbols 1..30
    mixture = Mixture(KneserNey.fit(TRAIN, vocab + 1, 3), 0.7)
    logits = RNG.standard_normal((4, vocab))
    recent = [[3, 5], [6], [], [28, 2, 9]]
    histories = mixture.histories(recent)
    assert histories.tolist() == [[3, 5], [-1, 6], [-1, -1], [2, 9]]
    mixed = np.exp(mixture.log_probs(logits, histories))
    lstm = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ngram = mixture.ngram.distributions(np.where(histories >= 0, histories + 1, -1))[:, 1:]
    ngram /= ngram.sum(axis=1, keepdims=True)  # over the real vocabulary (symbol 0 is "unknown")
    assert np.allclose(mixed, 0.7 * lstm + 0.3 * ngram)
    assert np.allclose(mixed.sum(axis=1), 1.0)
    # Decoding asks for float32 (half the memory traffic per tick): the same distribution to float32 rounding.
    mixed32 = mixture.log_probs(logits.astype(np.float32), histories, np.float32)
    assert mixed32.dtype == np.float32 and np.allclose(np.exp(mixed32), mixed, rtol=1e-5, atol=1e-7)
    path = tmp_path / "ngram.npz"
    mixture.save(path)
    with np.load(path, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    loaded = Mixture.load(path, vocab)
    assert loaded.lstm_weight == 0.7 and np.allclose(np.exp(loaded.log_probs(logits, histories)), mixed)
    with pytest.raises(ValueError, match="vocabulary has 12"):
        Mixture.load(path, 12)


def test_a_targets_mixture_probability_is_its_entry_of_the_dense_distribution() -> None:
    vocab = 30
    mixture = Mixture(KneserNey.fit(TRAIN, vocab + 1, 3), 0.6)
    recent = [[int(a), int(b)] for a, b in RNG.integers(-1, vocab, size=(200, 2))] + [[], [7], [7, 7]]
    histories = mixture.histories(recent)
    logits = RNG.standard_normal((len(recent), vocab)) * 3
    targets = RNG.integers(0, vocab, size=len(recent))
    dense = mixture.log_probs(logits, histories)[np.arange(len(recent)), targets]
    assert np.allclose(mixture.target_log_probs(logits, histories, targets), dense, rtol=0, atol=1e-12)
