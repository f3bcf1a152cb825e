"""Baselines on hand-made sequences whose right answers can be computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import (
    UNKNOWN_CHARACTER_BITS,
    KneserNey,
    char_ids,
    char_kneser_ney_bits_per_char,
    ppmd_bits_per_char,
    unigram_log2_probs,
)

TRAIN = np.array([1, 2, 1, 3, 1, 2])  # bigrams 1→2 ×2, 2→1, 1→3, 3→1; alphabet {0 unknown, 1, 2, 3}
HALF = np.array([0.5, 0.5, 0.5])


def test_unigram_is_add_one_smoothed() -> None:
    log2_p = unigram_log2_probs(TRAIN, np.array([1, 0, 2]), vocab_size=4)
    assert 2.0**log2_p == pytest.approx([4 / 10, 1 / 10, 3 / 10])


def test_kneser_ney_bigram_matches_hand_computation() -> None:
    model = KneserNey.fit(TRAIN, alphabet=4, order=2, discounts=HALF)
    # Continuation counts: 1 follows {2, 3} → 2; 2 follows {1} → 1; 3 follows {1} → 1; total 4, 3 types.
    # P1(w) = (max(N1+(·w) − ½, 0) + ½·3·¼) / 4
    p1 = {0: 0.375 / 4, 1: 1.875 / 4, 2: 0.875 / 4, 3: 0.875 / 4}
    # After 1: c(1·) = 3 over 2 types, so P(2|1) = (2 − ½ + ½·2·P1(2)) / 3.
    got = 2.0 ** model.log2_probs(np.array([1]), np.array([2]))
    assert got[0] == pytest.approx((1.5 + 1.0 * p1[2]) / 3)
    # A context never seen (0) backs off entirely to P1; the first target uses the history's last symbol.
    got = 2.0 ** model.log2_probs(np.array([0]), np.array([1, 3]))
    assert got == pytest.approx([p1[1], (0.5 + 1.0 * p1[3]) / 3])


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_kneser_ney_is_a_distribution_in_every_context(order: int) -> None:
    rng = np.random.default_rng(order)
    train = rng.integers(1, 6, size=400)  # discounts estimated from the data
    model = KneserNey.fit(train, alphabet=6, order=order)
    for context in (train[-4:], np.array([5, 5, 5, 5]), np.array([0, 0, 1, 2]), np.array([], dtype=np.int64)):
        total = sum(2.0 ** model.log2_probs(context, np.array([w]))[0] for w in range(6))
        assert total == pytest.approx(1.0)


def test_character_model_charges_unknown_characters_the_stated_uniform() -> None:
    train, held = "甲乙丙甲乙丁甲乙丙" * 20, "甲乙戊"
    train_ids, held_ids, alphabet = char_ids(train, held)
    assert list(held_ids[-1:]) == [0] and alphabet == 5
    log2_p = KneserNey.fit(train_ids, alphabet, 5).log2_probs(train_ids, held_ids)
    expected = (-log2_p.sum() + UNKNOWN_CHARACTER_BITS) / 3
    assert char_kneser_ney_bits_per_char(train, held) == pytest.approx(expected)
    # A text that repeats its training text costs far less than one bit per character.
    assert char_kneser_ney_bits_per_char(train, "甲乙丙甲乙丁") < 0.5


def test_ppmd_conditional_cost_rewards_known_text() -> None:
    rng = np.random.default_rng(0)
    train = "".join(chr(0x4E00 + int(i)) for i in rng.integers(0, 50, size=3000))
    repeated = train[:500]
    fresh = "".join(chr(0x4E00 + int(i)) for i in rng.integers(0, 50, size=500))
    # Uniform over 50 symbols is log2 50 = 5.64 bits; PPMd cannot do much better on fresh random text, while a
    # passage it has already seen costs far less.
    assert 5.0 < ppmd_bits_per_char(train, fresh) < 9.0
    assert ppmd_bits_per_char(train, repeated) < ppmd_bits_per_char(train, fresh) - 2.0
