"""The per-sequence Sampler on its own: what a batched decoding loop relies on."""

from __future__ import annotations

import math

import numpy as np

from models.sampling import Sampler, SamplingParams


def _logits(seed: int, vocab: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(vocab).astype(np.float32) * 3


def test_interleaved_samplers_choose_exactly_what_they_choose_alone() -> None:
    params = SamplingParams(do_sample=True, temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.3)
    rows = [_logits(seed) for seed in range(30)]
    single = Sampler(params, seed=7, vocab_size=50, seen=[1, 2])
    alone = [single.choose(row.copy()).id for row in rows]
    first = Sampler(params, seed=7, vocab_size=50, seen=[1, 2])
    other = Sampler(params, seed=8, vocab_size=50, seen=[3])
    together = []
    for row in rows:  # the other sequence draws between every two draws of the first
        other.choose(row.copy())
        together.append(first.choose(row.copy()).id)
    assert together == alone


def test_greedy_choice_is_the_argmax_with_its_log_softmax() -> None:
    row = _logits(3)
    choice = Sampler(SamplingParams(), seed=0, vocab_size=row.size).choose(row.copy())
    shifted = row.astype(np.float64) - row.max()
    assert choice.id == int(np.argmax(row))
    assert math.isclose(choice.logprob, -math.log(np.exp(shifted).sum()), rel_tol=1e-6)


def test_repetition_penalty_remembers_what_was_chosen() -> None:
    row = np.zeros(5, dtype=np.float32)
    row[2] = 1.0
    row[3] = 0.9
    sampler = Sampler(SamplingParams(repetition_penalty=2.0), seed=0, vocab_size=5)
    assert sampler.choose(row.copy()).id == 2
    assert sampler.choose(row.copy()).id == 3  # 2's logit is now 0.5 < 0.9


def test_subnormal_temperature_is_finite_and_greedy() -> None:
    # Issue 12 item 3: 5e-324 overflowed (logits / T = inf, inf - inf = NaN): garbage words, logprob -1e30.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50).astype(np.float32) * 5
    logits[7] = 40.0  # the clear winner
    logits[3] = -1e30  # a masked entry, as the network uses for words never generated
    for temperature in (5e-324, 1e-308, 1e-30):
        sampler = Sampler(SamplingParams(do_sample=True, temperature=temperature), seed=1, vocab_size=50)
        for _ in range(5):
            choice = sampler.choose(logits.copy())
            assert choice.id == 7
            assert math.isfinite(choice.logprob) and choice.logprob == 0.0
