"""The per-sequence Sampler on its own: what a batched decoding loop relies on."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from models.sampling import (
    NUCLEUS_SHORTLIST,
    NUCLEUS_SHORTLISTS,
    Sampler,
    SamplingParams,
    choose_batch,
    nucleus_sorted,
    top_k_ascending,
)


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
    # 5e-324 overflowed (logits / T = inf, inf - inf = NaN): garbage words, logprob -1e30.
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


def _mixed_params(i: int) -> SamplingParams:
    """A different decoding mode per i: greedy, penalties, temperatures, top-k (multiples of the SIMD width
    and not), top-p, both together, and the frequency/presence penalties."""
    modes = [
        SamplingParams(),
        SamplingParams(repetition_penalty=1.4),
        SamplingParams(do_sample=True, temperature=0.7 + 0.1 * (i % 5)),
        SamplingParams(do_sample=True, temperature=1.1, top_k=40),
        SamplingParams(do_sample=True, temperature=0.9, top_k=7, repetition_penalty=1.2),
        SamplingParams(do_sample=True, top_p=0.5 + 0.04 * (i % 10)),
        SamplingParams(do_sample=True, temperature=1.3, top_k=40, top_p=0.8),
        SamplingParams(do_sample=True, top_k=1),
        # Per-row penalties before the grouped steps (TGI's frequency, OpenAI's presence).
        SamplingParams(frequency_penalty=1.5),
        SamplingParams(
            do_sample=True, temperature=0.8, top_k=40, presence_penalty=0.7, frequency_penalty=-0.5
        ),
    ]
    return modes[i % len(modes)]


def test_choose_batch_is_each_row_alone_bit_for_bit() -> None:
    vocab, batch = 300, 48
    rows = [_logits(1000 + i, vocab) for i in range(batch)]
    rows[5][[3, 9, 200]] = rows[5].max() + 1.0  # ties at the top of one row
    together = [Sampler(_mixed_params(i), seed=i, vocab_size=vocab, seen=[i, 2 * i]) for i in range(batch)]
    alone = [Sampler(_mixed_params(i), seed=i, vocab_size=vocab, seen=[i, 2 * i]) for i in range(batch)]
    for step in range(6):
        logits = np.stack([np.roll(row, 17 * step) for row in rows])
        batched = choose_batch(together, logits.copy())
        for i, sampler in enumerate(alone):  # the one-row reference, one sequence at a time
            row = logits[i].copy()
            sampler._penalise(row)
            chosen, logprob, _ = sampler._choose_row(row)
            sampler._remember(chosen)
            assert (batched[i].id, batched[i].logprob) == (chosen, logprob), (step, i)


def test_top_k_candidates_are_the_k_largest_in_id_order_and_ties_keep_the_lowest_ids() -> None:
    rows = np.stack([_logits(seed, 200) for seed in range(5)])
    candidates = top_k_ascending(rows, 13)
    for row, chosen in zip(rows, candidates, strict=True):
        assert chosen.tolist() == sorted(np.argsort(-row, kind="stable")[:13].tolist())
    tied = np.zeros(10, dtype=np.float32)
    tied[[2, 6]] = 1.0
    assert top_k_ascending(tied, 4).tolist() == [0, 1, 2, 6]  # 2 and 6, then the lowest ids of the zeros
    assert top_k_ascending(np.stack([tied, tied[::-1]]), 4).tolist() == [[0, 1, 2, 6], [0, 1, 3, 7]]


def test_a_control_the_batched_path_does_not_know_is_never_ignored() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithNewControl(SamplingParams):
        new_control: float | None = None  # e.g. a parameter another change adds to SamplingParams

    assert Sampler(WithNewControl(do_sample=True), seed=0, vocab_size=50)._group is not None
    assert Sampler(WithNewControl(do_sample=True, new_control=0.5), seed=0, vocab_size=50)._group is None


def test_extreme_repetition_penalties_are_finite_and_keep_their_meaning() -> None:
    # Found by the extreme-parameter walk (no NaN anywhere): 5e-324 overflowed the penalised logits to inf,
    # inf - inf = NaN, and /generate answered a repeated word with logprob -1e30 per token.
    logits = _logits(5)
    seen = [4, 9]
    logits[4], logits[9] = 0.5, -0.5  # one seen word with a positive logit, one with a negative
    for do_sample in (False, True):
        tiny = Sampler(SamplingParams(do_sample=do_sample, repetition_penalty=5e-324), 1, 50, seen=seen)
        choice = tiny.choose(logits.copy())
        assert choice.id == 4 and math.isfinite(choice.logprob)  # a tiny penalty favours seen words
        for penalty in (1e-308, 1e308):
            sampler = Sampler(
                SamplingParams(do_sample=do_sample, repetition_penalty=penalty), 1, 50, seen=seen
            )
            for _ in range(5):
                choice = sampler.choose(logits.copy())
                assert math.isfinite(choice.logprob)
        huge = Sampler(SamplingParams(do_sample=do_sample, repetition_penalty=1e308), 1, 50, seen=seen)
        assert huge.choose(logits.copy()).id not in seen


def test_extreme_repetition_penalty_keeps_a_masked_word_masked() -> None:
    # Found by Schemathesis (seed 7): a prompt of <unk> tokens made the network's -inf for <unk> a seen
    # word; -inf * 5e-324 was NaN, and top-k over a row with a NaN failed (424 "could not broadcast").
    logits = _logits(6)
    logits[3] = -np.inf  # masked, as the network masks <unk>
    for do_sample, top_k in ((False, None), (True, 1), (True, 5), (True, None)):
        for penalty in (5e-324, 1e308):
            params = SamplingParams(do_sample=do_sample, top_k=top_k, repetition_penalty=penalty)
            sampler = Sampler(params, 1, 50, seen=[3, 7])
            choice = sampler.choose(logits.copy())
            assert choice.id != 3 and math.isfinite(choice.logprob), (do_sample, top_k, penalty)


def test_suppressed_ids_are_never_chosen_before_min_new_tokens() -> None:
    logits = np.array([5.0, 1.0, 0.0], dtype=np.float32)
    sampler = Sampler(SamplingParams(min_new_tokens=2, suppress_ids=(0,)), seed=0, vocab_size=3)
    assert [sampler.choose(logits.copy()).id for _ in range(3)] == [1, 1, 0]


def test_suppression_chooses_the_same_alone_and_in_a_batch() -> None:
    from models.sampling import choose_batch

    rng = np.random.default_rng(0)
    steps = [rng.normal(size=(4, 50)).astype(np.float32) for _ in range(6)]
    params = [
        SamplingParams(do_sample=True, top_k=10, min_new_tokens=1, suppress_ids=(3,), seed=1),
        SamplingParams(do_sample=True, top_k=10, min_new_tokens=3, suppress_ids=(1, 2)),
        SamplingParams(min_new_tokens=2, suppress_ids=tuple(range(25))),
        SamplingParams(do_sample=True, temperature=0.7, repetition_penalty=1.3),
    ]
    batched = [Sampler(p, seed=i, vocab_size=50) for i, p in enumerate(params)]
    alone = [Sampler(p, seed=i, vocab_size=50) for i, p in enumerate(params)]
    for logits in steps:
        together = choose_batch(batched, logits.copy())
        assert together == [sampler.choose(logits[i].copy()) for i, sampler in enumerate(alone)]
    assert all(choice.id >= 25 for choice in choose_batch([Sampler(params[2], 0, 50)], steps[0][:1].copy()))


def test_banned_ids_are_never_chosen_alone_or_in_a_batch() -> None:
    from models.sampling import choose_batch

    rng = np.random.default_rng(1)
    banned = tuple(range(0, 50, 2))
    params = [
        SamplingParams(banned_ids=banned),
        SamplingParams(do_sample=True, top_k=5, banned_ids=banned, seed=2),
        SamplingParams(do_sample=True, banned_ids=banned, min_new_tokens=1, suppress_ids=(1,), seed=3),
        SamplingParams(do_sample=True, top_k=5, seed=4),  # the same group as row 1, without a ban
    ]
    batched = [Sampler(p, seed=i, vocab_size=50) for i, p in enumerate(params)]
    alone = [Sampler(p, seed=i, vocab_size=50) for i, p in enumerate(params)]
    chosen = []
    for _ in range(30):
        logits = rng.normal(size=(4, 50)).astype(np.float32)
        logits[:, banned] += 3.0  # the banned words are the likeliest ones
        together = choose_batch(batched, logits.copy())
        assert together == [sampler.choose(logits[i].copy()) for i, sampler in enumerate(alone)]
        chosen.append([choice.id for choice in together])
    assert all(ids[row] % 2 == 1 for ids in chosen for row in range(3))
    assert any(ids[3] % 2 == 0 for ids in chosen)  # without the ban the likeliest words are drawn


def test_suppression_survives_an_extreme_repetition_penalty_on_a_seen_id() -> None:
    # Found by the schema fuzzer: repetition_penalty 5e-324 is 0 in float32, and -inf * 0 was NaN.
    logits = np.array([3.0, 2.0, 1.0, -1.0], dtype=np.float32)
    params = SamplingParams(
        do_sample=True, top_k=1, repetition_penalty=5e-324, min_new_tokens=1, suppress_ids=(0,), seed=1
    )
    sampler = Sampler(params, seed=1, vocab_size=4, seen=[0, 3])
    choice = sampler.choose(logits.copy())
    assert choice.id != 0 and np.isfinite(choice.logprob)


def test_a_masked_seen_word_stays_masked_under_a_zero_float32_repetition_penalty() -> None:
    # Found by the schema fuzzer through chat: <unk> (-inf, masked) in the prompt, penalty 5e-324 -> 0.
    logits = np.array([2.0, -np.inf, 1.0], dtype=np.float32)
    sampler = Sampler(SamplingParams(do_sample=True, top_k=1, repetition_penalty=5e-324), 0, 3, seen=[1, 2])
    choice = sampler.choose(logits.copy())
    assert choice.id != 1 and np.isfinite(choice.logprob)


def test_min_p_keeps_the_words_at_least_min_p_times_as_probable_as_the_best() -> None:
    logits = _logits(3, 60) / 3  # standard normal: several words within a factor 5 of the best
    probabilities = np.exp(logits.astype(np.float64) - logits.max())
    probabilities /= probabilities.sum()
    kept = probabilities >= 0.2 * probabilities.max()
    assert 1 < kept.sum() < 60  # the cut matters for this row
    chosen = set()
    for seed in range(300):
        choice = Sampler(SamplingParams(do_sample=True, min_p=0.2), seed=seed, vocab_size=60).choose(
            logits.copy()
        )
        assert kept[choice.id], choice
        # Drawn from the kept words renormalised.
        assert math.isclose(choice.logprob, math.log(probabilities[choice.id] / probabilities[kept].sum()))
        chosen.add(choice.id)
    assert chosen == set(np.flatnonzero(kept).tolist())
    # min_p 1 keeps only the best word; 0 (and null) is off: the same draws as without it.
    best = Sampler(SamplingParams(do_sample=True, min_p=1.0), seed=1, vocab_size=60).choose(logits.copy())
    assert best.id == int(np.argmax(logits)) and best.logprob == 0.0
    for seed in range(20):
        off = Sampler(SamplingParams(do_sample=True, min_p=0.0), seed=seed, vocab_size=60).choose(
            logits.copy()
        )
        plain = Sampler(SamplingParams(do_sample=True), seed=seed, vocab_size=60).choose(logits.copy())
        assert off == plain


def test_min_p_chooses_the_same_alone_and_in_a_batch() -> None:
    vocab, batch = 200, 24
    modes = [
        SamplingParams(do_sample=True, min_p=0.05),
        SamplingParams(do_sample=True, temperature=1.4, min_p=0.1, top_k=50),
        SamplingParams(do_sample=True, top_p=0.9, min_p=0.3, repetition_penalty=1.2),
        SamplingParams(do_sample=True, temperature=0.8),  # batched rows in between
        SamplingParams(),
    ]
    rows = [_logits(2000 + i, vocab) for i in range(batch)]
    together = [Sampler(modes[i % len(modes)], seed=i, vocab_size=vocab, seen=[i]) for i in range(batch)]
    alone = [Sampler(modes[i % len(modes)], seed=i, vocab_size=vocab, seen=[i]) for i in range(batch)]
    for step in range(8):
        logits = np.stack([np.roll(row, 13 * step) for row in rows])
        batched = choose_batch(together, logits.copy())
        for i, sampler in enumerate(alone):
            assert batched[i] == sampler.choose(logits[i].copy()), (step, i)


def test_min_p_is_validated() -> None:
    for value in (-0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="min_p"):
            SamplingParams(min_p=value).validate()
    SamplingParams(min_p=0.0).validate()
    SamplingParams(min_p=1.0).validate()


def _full_sort(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ordered = np.take_along_axis(probabilities, order, axis=1)
    return order, ordered, np.cumsum(ordered, axis=1)


@pytest.mark.parametrize("shape", ["peaked", "flat", "ties at the edge", "zeros", "one wide row"])
def test_top_p_sorts_a_shortlist_that_is_exactly_the_full_sorts_prefix(shape: str) -> None:
    rng = np.random.default_rng(3)
    vocab, rows = 7000, 6
    if shape == "flat":  # the nucleus holds thousands of words: no shortlist can hold it
        probabilities = rng.dirichlet(np.full(vocab, 50.0), size=rows)
    else:
        probabilities = rng.dirichlet(np.full(vocab, 0.005), size=rows)
    if shape == "ties at the edge":
        edge = np.sort(probabilities[2])[-NUCLEUS_SHORTLIST]
        probabilities[2, np.argsort(probabilities[2])[:40]] = edge  # 40 more words tie with the 256th
    if shape == "zeros":
        probabilities[:, ::2] = 0.0
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    if shape == "one wide row":  # 256 words hold 24% of row 0, 1,024 hold 76%: the longer shortlist does
        probabilities[0] = 0.0
        probabilities[0, :2000] = np.arange(2000, 0, -1) / (2000 * 2001 / 2)
    top_p = np.linspace(0.5, 0.95, rows)
    order, ordered, cumulative = nucleus_sorted(probabilities, top_p)
    full_order, full_ordered, full_cumulative = _full_sort(probabilities)
    width = order.shape[1]
    expected = {"flat": vocab, "ties at the edge": vocab, "one wide row": NUCLEUS_SHORTLISTS[1]}
    assert width == expected.get(shape, NUCLEUS_SHORTLIST)
    assert np.array_equal(order, full_order[:, :width])
    assert np.array_equal(ordered, full_ordered[:, :width])
    assert np.array_equal(cumulative, full_cumulative[:, :width])  # bit for bit: the same draws follow
    assert (cumulative[:, -1] >= top_p).all()


def test_a_shortlisted_top_p_draws_what_a_full_sort_draws() -> None:
    vocab = 7000
    params = SamplingParams(do_sample=True, temperature=0.8, top_p=0.9)
    for seed in range(20):
        logits = (np.random.default_rng(seed).standard_normal(vocab) * 4).astype(np.float32)
        sampler = Sampler(params, seed=seed, vocab_size=vocab)
        chosen = sampler.choose(logits.copy())
        # The reference: temperature, the whole row sorted, the smallest prefix reaching p, one draw.
        scaled = logits.astype(np.float64) - logits.max()
        probabilities = np.exp(scaled / 0.8)
        probabilities /= probabilities.sum()
        order = np.argsort(-probabilities, kind="stable")
        cumulative = np.cumsum(probabilities[order])
        keep = int(np.searchsorted(cumulative, 0.9, side="left")) + 1
        kept = probabilities[order[:keep]] / cumulative[keep - 1]
        uniform = np.random.default_rng(seed).random()
        running = np.cumsum(kept)
        position = min(int(np.searchsorted(running, uniform * running[-1], "right")), keep - 1)
        assert chosen.id == int(order[position])
        assert chosen.logprob == pytest.approx(math.log(kept[position]))
