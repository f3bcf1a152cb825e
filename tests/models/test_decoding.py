"""Decoding against real components: the real Network (untrained, random weights), WordVectors and jieba.

Random weights are enough to check the sampling pipeline exactly (every expectation is recomputed from the
network's own scores); behaviour on a trained model is covered by the app tests with the tiny model fixture.
"""

from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest

from models.decoding import (
    Decoder,
    DecodingBatch,
    EmptyPromptError,
    Prompt,
    SamplingParams,
    candidates,
    prefill_groups,
)
from models.network import Network, NetworkConfig
from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from models.vocabulary import UNKNOWN_TOKEN, spell

SENTENCES = [
    "宝玉笑道：“好妹妹，你今日可好？”",
    "黛玉听了，便说道：“我不过是一个人罢了。”",
    "凤姐儿笑道：“老祖宗也去逛逛。”",
    "贾母便命人去请宝钗来吃饭。",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def _build(tokenizer: Tokenizer, loss: str = "cos_softmax", seed: int = 0) -> Decoder:
    words = list(dict.fromkeys(token for sentence in SENTENCES for token in tokenizer.cut(sentence)))
    words.append(UNKNOWN_TOKEN)  # every model has one (models/vocabulary.py)
    rng = np.random.default_rng(seed)
    vectors = WordVectors(words, rng.standard_normal((len(words), 16)).astype(np.float32))
    network = Network(NetworkConfig(vocab_size=len(words), dim=16, hidden=24, loss=loss), vectors.matrix, rng)
    return Decoder(network, vectors, tokenizer)


@pytest.fixture(scope="module")
def decoder(tokenizer: Tokenizer) -> Decoder:
    return _build(tokenizer)


def _scores(decoder: Decoder, output: np.ndarray) -> np.ndarray:
    """The network's logits as decoding uses them: <unk> (never generated) at -inf."""
    logits = decoder.network.scores(output).astype(np.float64)
    logits[..., decoder.vectors.index[UNKNOWN_TOKEN]] = -np.inf
    return logits


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits = logits - logits.max()
    return logits - math.log(np.exp(logits).sum())


def _refed_output(decoder: Decoder, ids: list[int]) -> np.ndarray:
    """The head output after `ids`, computed the slow way: the whole window through the network again."""
    outputs, _ = decoder.network.forward_sequence(np.asarray(ids)[None, :])
    return outputs[:, -1]


def test_greedy_matches_refeeding_the_window_and_reports_log_softmax(decoder: Decoder) -> None:
    generation = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=8)).run()
    assert len(generation.tokens) == 8 and generation.finish_reason == "length"
    ids = list(generation.prompt.ids)
    for token in generation.tokens:
        output = _refed_output(decoder, ids)
        logits = _scores(decoder, output)[0]
        assert token.id == int(np.argmax(logits))
        assert token.logprob == pytest.approx(_log_softmax(logits)[token.id], abs=1e-5)
        expected_similarity = decoder.network.similarity(output)[0, token.id]
        assert token.similarity == pytest.approx(float(expected_similarity), abs=1e-4)
        assert token.text == decoder.vectors.words[token.id]
        ids.append(token.id)
    assert generation.text == "".join(token.text for token in generation.tokens)


def test_prompt_runs_once_then_one_step_per_token(tokenizer: Tokenizer) -> None:
    decoder = _build(tokenizer)
    calls: list[tuple[str, tuple[int, ...]]] = []
    network = decoder.network
    forward, step = network.forward_sequence, network.step

    def counting_forward(ids, state=None):
        calls.append(("forward", np.shape(ids)))
        return forward(ids, state)

    def counting_step(ids, state=None):
        calls.append(("step", np.shape(ids)))
        return step(ids, state)

    network.forward_sequence, network.step = counting_forward, counting_step
    decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=5)).run()
    assert calls == [("forward", (1, 3))] + [("step", (1,))] * 4  # no step after the last token


def test_same_seed_same_text_different_seeds_differ(decoder: Decoder) -> None:
    def sample(seed: int) -> list[int]:
        params = SamplingParams(max_new_tokens=30, do_sample=True, temperature=1.5, seed=seed)
        return [token.id for token in decoder.generate("黛玉听了", params).run().tokens]

    assert sample(7) == sample(7)
    assert len({tuple(sample(seed)) for seed in range(5)}) > 1


def test_seed_is_drawn_and_reported_when_absent(decoder: Decoder) -> None:
    first = decoder.generate("黛玉", SamplingParams(max_new_tokens=20, do_sample=True, temperature=2.0)).run()
    replay = decoder.generate(
        "黛玉", SamplingParams(max_new_tokens=20, do_sample=True, temperature=2.0, seed=first.seed)
    ).run()
    assert [t.id for t in replay.tokens] == [t.id for t in first.tokens]


def test_temperature_sampling_logprob_is_under_the_tempered_distribution(decoder: Decoder) -> None:
    generation = decoder.generate("宝玉", SamplingParams(max_new_tokens=1, temperature=0.7, seed=3)).run()
    logits = _scores(decoder, _refed_output(decoder, generation.prompt.ids))[0]
    token = generation.tokens[0]
    assert token.logprob == pytest.approx(_log_softmax(logits / 0.7)[token.id], abs=1e-5)


def test_top_k_only_draws_among_the_k_best_and_renormalises(decoder: Decoder) -> None:
    logits = _scores(decoder, _refed_output(decoder, [decoder.vectors.index["宝玉"]]))[0]
    best3 = set(np.argsort(-logits)[:3].tolist())
    drawn = set()
    for seed in range(60):
        token = decoder.generate("宝玉", SamplingParams(max_new_tokens=1, top_k=3, seed=seed)).run().tokens[0]
        drawn.add(token.id)
        kept = logits[sorted(best3)]
        assert token.logprob == pytest.approx(logits[token.id] - np.log(np.exp(kept).sum()), abs=1e-4)
    assert drawn <= best3 and len(drawn) > 1


def test_top_k_one_and_tiny_top_p_are_greedy(decoder: Decoder) -> None:
    greedy = [t.id for t in decoder.generate("贾母", SamplingParams(max_new_tokens=10)).run().tokens]
    top1 = decoder.generate("贾母", SamplingParams(max_new_tokens=10, top_k=1, seed=5)).run()
    nucleus = decoder.generate("贾母", SamplingParams(max_new_tokens=10, top_p=1e-6, seed=5)).run()
    assert [t.id for t in top1.tokens] == greedy
    assert [t.id for t in nucleus.tokens] == greedy
    assert all(t.logprob == pytest.approx(0.0, abs=1e-9) for t in nucleus.tokens)


def test_top_p_keeps_the_smallest_set_reaching_p(decoder: Decoder) -> None:
    logits = _scores(decoder, _refed_output(decoder, [decoder.vectors.index["宝玉"]]))[0]
    probabilities = np.exp(_log_softmax(logits))
    order = np.argsort(-probabilities)
    p = float(probabilities[order[:4]].sum()) - 1e-6  # the nucleus is exactly the 4 most probable words
    nucleus = set(order[:4].tolist())
    drawn = {
        decoder.generate("宝玉", SamplingParams(max_new_tokens=1, top_p=p, seed=seed)).run().tokens[0].id
        for seed in range(80)
    }
    assert drawn <= nucleus and len(drawn) > 1


def test_repetition_penalty_follows_ctrl_semantics(decoder: Decoder) -> None:
    penalty = 3.0
    generation = decoder.generate(
        "宝玉笑道", SamplingParams(max_new_tokens=6, repetition_penalty=penalty)
    ).run()
    ids = list(generation.prompt.ids)
    for token in generation.tokens:
        logits = _scores(decoder, _refed_output(decoder, ids))[0].astype(np.float64)
        seen = np.unique(ids)
        logits[seen] = np.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
        assert token.id == int(np.argmax(logits))
        ids.append(token.id)


def test_stop_sequence_spanning_two_tokens_ends_generation(decoder: Decoder) -> None:
    free = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12)).run()
    texts = [t.text for t in free.tokens]
    # A stop string made of the end of token 3 and the start of token 4 must be found across the boundary.
    stop = texts[2][-1] + texts[3][0]
    expected_end = next(i for i in range(12) if stop in "".join(texts[: i + 1]))
    stopped = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12, stop=("不会出现", stop))).run()
    assert stopped.finish_reason == "stop_sequence"
    assert [t.text for t in stopped.tokens] == texts[: expected_end + 1]
    assert stop in stopped.text


def test_tokens_are_yielded_one_by_one_with_finish_reason_set_before_the_last(decoder: Decoder) -> None:
    generation = decoder.generate("宝玉", SamplingParams(max_new_tokens=4))
    seen_reasons = [generation.finish_reason for _ in generation]
    assert seen_reasons == [None, None, None, "length"]
    with pytest.raises(RuntimeError):
        iter(generation)


def test_unknown_words_are_read_through_their_characters(decoder: Decoder) -> None:
    generation = decoder.generate("宝玉看见孙悟空", SamplingParams(max_new_tokens=3)).run()
    prompt = generation.prompt
    assert "孙悟空" in prompt.unknown and "孙悟空" not in decoder.vectors.index
    assert prompt.ids[0] == decoder.vectors.index["宝玉"]
    # Nothing deleted: one id per character of every unknown word (the character, or <unk>).
    assert [decoder.vectors.words[i] for i in prompt.ids] == spell(prompt.tokens, decoder.vectors.index)
    assert len(prompt.ids) >= len(prompt.tokens) + 2
    assert len(generation.tokens) == 3


def test_a_prompt_of_unseen_characters_is_read_as_unk_and_still_generates(decoder: Decoder) -> None:
    unk = decoder.vectors.index[UNKNOWN_TOKEN]
    generation = decoder.generate("龘靐", SamplingParams(max_new_tokens=5, seed=1)).run()
    assert generation.prompt.ids == [unk, unk]
    assert len(generation.tokens) == 5 and unk not in [token.id for token in generation.tokens]


def test_unk_is_never_predicted_or_generated_even_when_it_scores_highest(tokenizer: Tokenizer) -> None:
    decoder = _build(tokenizer)
    unk = decoder.vectors.index[UNKNOWN_TOKEN]
    decoder.network.params["out.bias"][unk] = 1e4  # <unk> now dominates every raw distribution
    logits = decoder.network.scores(decoder._run_prompt(decoder.encode("宝玉"))[0])
    assert int(np.argmax(logits)) == unk
    _, candidates = decoder.predict_next("宝玉", top_k=decoder.vocab_size)
    assert [c.probability for c in candidates if c.id == unk] == [0.0]
    assert candidates[0].id != unk
    for params in (
        SamplingParams(max_new_tokens=20),
        SamplingParams(max_new_tokens=20, do_sample=True, seed=3),
    ):
        generated = decoder.generate("宝玉", params).run()
        assert unk not in [token.id for token in generated.tokens]


def test_empty_prompt_raises(decoder: Decoder) -> None:
    with pytest.raises(EmptyPromptError):
        decoder.generate("  \n ", SamplingParams())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SamplingParams(do_sample=True, temperature=0.0), "temperature must be > 0"),
        (SamplingParams(temperature=-1.0), "temperature must be > 0"),
        (SamplingParams(top_p=0.0), "top_p must be in (0, 1]"),
        (SamplingParams(top_p=1.5), "top_p must be in (0, 1]"),
        (SamplingParams(top_k=0), "top_k must be at least 1"),
        (SamplingParams(max_new_tokens=0), "max_new_tokens must be at least 1"),
        (SamplingParams(temperature=float("nan")), "temperature must be a finite number"),
        (SamplingParams(repetition_penalty=float("inf")), "repetition_penalty must be a finite number"),
        (SamplingParams(repetition_penalty=0.0), "repetition_penalty must be > 0"),
        (SamplingParams(stop=("",)), "stop sequences must be non-empty"),
        (SamplingParams(typical_p=0.0), "typical_p must be in (0, 1]"),
        (SamplingParams(frequency_penalty=2.5), "frequency_penalty must be in [-2, 2]"),
        (SamplingParams(presence_penalty=float("nan")), "presence_penalty must be a finite number"),
        (SamplingParams(top_n_tokens=-1), "top_n_tokens must be >= 0"),
        (SamplingParams(truncate=0), "truncate must be at least 1"),
    ],
)
def test_invalid_parameters_name_the_parameter(
    decoder: Decoder, params: SamplingParams, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        decoder.generate("宝玉", params)


def test_sampling_switches_on_like_tgi() -> None:
    assert not SamplingParams().sampling
    assert not SamplingParams(temperature=1.0, top_p=1.0).sampling
    assert SamplingParams(temperature=0.5).sampling
    assert SamplingParams(top_k=5).sampling
    assert SamplingParams(top_p=0.9).sampling
    assert SamplingParams(do_sample=True).sampling


def test_predict_next_is_the_softmax_of_the_scores(decoder: Decoder) -> None:
    prompt, candidates = decoder.predict_next("黛玉听了", top_k=5)
    output = _refed_output(decoder, prompt.ids)
    probabilities = np.exp(_log_softmax(_scores(decoder, output)[0]))
    similarity = decoder.network.similarity(output)[0]
    expected = np.argsort(-probabilities, kind="stable")[:5]
    assert [c.id for c in candidates] == expected.tolist()
    for candidate in candidates:
        assert candidate.probability == pytest.approx(probabilities[candidate.id], rel=1e-5)
        assert candidate.similarity == pytest.approx(float(similarity[candidate.id]), abs=1e-6)
        assert candidate.word == decoder.vectors.words[candidate.id]
    greedy = decoder.generate("黛玉听了", SamplingParams(max_new_tokens=1)).run().tokens[0]
    assert candidates[0].id == greedy.id


def test_one_hot_head_has_no_similarity(tokenizer: Tokenizer) -> None:
    decoder = _build(tokenizer, loss="softmax")
    generation = decoder.generate("宝玉", SamplingParams(max_new_tokens=3, do_sample=True, seed=1)).run()
    assert all(token.similarity is None for token in generation.tokens)
    _, candidates = decoder.predict_next("宝玉", top_k=3)
    assert all(candidate.similarity is None for candidate in candidates)


def test_concurrent_generations_do_not_share_state(decoder: Decoder) -> None:
    params = SamplingParams(max_new_tokens=25, do_sample=True, temperature=1.3, seed=11)
    expected = [t.id for t in decoder.generate("凤姐儿笑道", params).run().tokens]
    results: list[list[int]] = []
    lock = threading.Lock()

    def run() -> None:
        ids = [t.id for t in decoder.generate("凤姐儿笑道", params).run().tokens]
        with lock:
            results.append(ids)

    # Interleaved in one thread first (two generators advanced alternately), then on real threads.
    first, second = iter(decoder.generate("凤姐儿笑道", params)), iter(decoder.generate("凤姐儿笑道", params))
    interleaved = [(a.id, b.id) for a, b in zip(first, second, strict=True)]
    assert [a for a, _ in interleaved] == expected == [b for _, b in interleaved]
    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 6


def test_token_similarity_follows_trained_output_vectors(tokenizer: Tokenizer) -> None:
    """After training, cos_softmax output vectors differ from word2vec; generated tokens must report the
    same cosine as Network.similarity (and /predict), not one against the word2vec vectors."""
    decoder = _build(tokenizer, seed=3)
    network = decoder.network
    network.params["out.vectors"][...] = np.random.default_rng(9).standard_normal(
        network.params["out.vectors"].shape
    )
    network.prepare_inference()
    generation = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=6)).run()
    ids = list(generation.prompt.ids)
    for token in generation.tokens:
        output = _refed_output(decoder, ids)
        assert token.similarity == pytest.approx(float(network.similarity(output)[0, token.id]), abs=1e-4)
        ids.append(token.id)


# ------------------------------------------------------------------------------------------------------------
# DecodingBatch: many sequences, one step and one scoring per tick


def _run_batch(decoder: Decoder, generations: list, joining: dict[int, list] | None = None) -> int:
    """Tick a batch until empty; `joining` maps a tick to generations added before it. Returns ticks."""
    batch = DecodingBatch(decoder)
    for generation in generations:
        batch.add(generation)
    joining = dict(joining or {})
    ticks = 0
    while batch or joining:
        for generation in joining.pop(ticks, []):
            batch.add(generation)
        batch.tick()
        ticks += 1
    return ticks


def _sampled(seed: int, **extra: object) -> SamplingParams:
    return SamplingParams(max_new_tokens=30, do_sample=True, temperature=1.2, top_k=12, seed=seed, **extra)


def _varied(seed: int) -> SamplingParams:
    """Every control in turn, so the batch mixes all of them (each row with its own)."""
    kinds = [
        {},
        {"typical_p": 0.7},
        {"frequency_penalty": 1.5, "top_n_tokens": 3},
        {"presence_penalty": 0.8, "top_p": 0.9},
        {"typical_p": 0.9, "top_p": 0.95, "frequency_penalty": -0.5, "prefill_logprobs": True},
        {"truncate": 2, "top_n_tokens": 5},
    ]
    return _sampled(seed, **kinds[seed % len(kinds)])


def test_a_seeded_sequence_is_the_same_alone_and_among_31_others(decoder: Decoder) -> None:
    prompts = ["宝玉笑道", "黛玉听了", "凤姐儿笑道", "贾母便命人"]
    params = [
        _varied(seed) if seed % 3 else SamplingParams(max_new_tokens=30, repetition_penalty=1.3)
        for seed in range(32)
    ]
    alone = [decoder.generate(prompts[i % 4], params[i]).run() for i in range(32)]
    together = [decoder.generate(prompts[i % 4], params[i]) for i in range(32)]
    # Half start together, the rest join at different ticks, so batch shapes and row positions all change.
    _run_batch(decoder, together[:16], joining={tick: [together[16 + tick]] for tick in range(16)})
    for single, batched in zip(alone, together, strict=True):
        assert [t.id for t in batched.tokens] == [t.id for t in single.tokens]
        assert batched.text == single.text and batched.finish_reason == single.finish_reason
        assert [t.logprob for t in batched.tokens] == pytest.approx(
            [t.logprob for t in single.tokens], abs=1e-4
        )
        assert [[i for i, _ in t.top] for t in batched.tokens] == [
            [i for i, _ in t.top] for t in single.tokens
        ]
        assert batched.prefill_logprobs == pytest.approx(single.prefill_logprobs, abs=1e-5)


def test_stop_sequences_and_max_new_tokens_end_each_sequence_on_its_own(decoder: Decoder) -> None:
    free = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12)).run()
    stop = free.tokens[3].text
    short = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=2))
    stopped = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12, stop=(stop,)))
    long = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12))
    batch = DecodingBatch(decoder)
    for generation in (short, stopped, long):
        batch.add(generation)
    sizes = []
    while batch:
        sizes.append(len(batch))
        batch.tick()
    assert short.finish_reason == "length" and len(short.tokens) == 2
    assert stopped.finish_reason == "stop_sequence"
    assert stop in stopped.text and len(stopped.tokens) < 12
    assert long.finish_reason == "length" and [t.id for t in long.tokens] == [t.id for t in free.tokens]
    # Each one left the batch the tick it finished: at tick t the batch holds those with more than t tokens.
    lengths = [len(g.tokens) for g in (short, stopped, long)]
    assert sizes == [sum(n > tick for n in lengths) for tick in range(12)]


def test_a_removed_sequence_leaves_at_once_and_the_others_continue(decoder: Decoder) -> None:
    expected = decoder.generate("黛玉听了", _sampled(7)).run()
    kept = decoder.generate("黛玉听了", _sampled(7))
    dropped = decoder.generate("宝玉笑道", _sampled(8))
    batch = DecodingBatch(decoder)
    batch.add(dropped)
    batch.add(kept)
    for _ in range(3):
        batch.tick()
    batch.remove([dropped])
    assert batch.generations == [kept]
    while batch:
        batch.tick()
    assert len(dropped.tokens) == 3 and dropped.finish_reason is None
    assert [t.id for t in kept.tokens] == [t.id for t in expected.tokens]


def test_one_scoring_per_tick_for_the_whole_batch(decoder: Decoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    original = decoder.network.scores
    monkeypatch.setattr(
        decoder.network, "scores", lambda output: calls.append(output.shape) or original(output)
    )
    ticks = _run_batch(
        decoder, [decoder.generate("宝玉", SamplingParams(max_new_tokens=5)) for _ in range(6)]
    )
    assert ticks == 5 and [shape[0] for shape in calls] == [6] * 5


# ------------------------------------------------------------------------------------------------------------
# TGI's remaining controls: typical_p, frequency/presence penalty, top_n_tokens, prefill logprobs, truncate


def _first_logits(decoder: Decoder, word: str = "宝玉") -> np.ndarray:
    """The logits decoding chooses from after `word` (<unk> masked, as DecodingBatch does)."""
    logits = decoder.network.scores(_refed_output(decoder, [decoder.vectors.index[word]]))[0]
    return decoder.mask_unknown(logits.astype(np.float64))


def _typical_set(probabilities: np.ndarray, mass: float) -> set[int]:
    """The locally typical set recomputed independently: words ordered by |surprisal - entropy| (words of
    probability 0, like the masked <unk>, are never in it)."""
    possible = [i for i in range(probabilities.size) if probabilities[i] > 0]
    entropy = -sum(probabilities[i] * math.log(probabilities[i]) for i in possible)
    order = sorted(possible, key=lambda i: abs(-math.log(probabilities[i]) - entropy))
    kept, total = [], 0.0
    for i in order:
        kept.append(i)
        total += probabilities[i]
        if total >= mass:
            break
    return set(kept)


def test_typical_p_draws_only_from_the_typical_set(decoder: Decoder) -> None:
    probabilities = np.exp(_log_softmax(_first_logits(decoder)))
    # The smallest mass whose typical set holds several words but not all (the random weights decide).
    mass = next(float(m) for m in np.arange(0.3, 1.0, 0.05) if len(_typical_set(probabilities, m)) > 2)
    typical = _typical_set(probabilities, mass)
    assert len(typical) < probabilities.size
    drawn = set()
    for seed in range(80):
        params = SamplingParams(max_new_tokens=1, typical_p=mass, seed=seed)
        token = decoder.generate("宝玉", params).run().tokens[0]
        drawn.add(token.id)
        kept = probabilities[sorted(typical)]
        assert token.logprob == pytest.approx(math.log(probabilities[token.id] / kept.sum()), abs=1e-6)
    assert drawn <= typical and len(drawn) > 1
    # typical_p alone turns sampling on (as in TGI); 1 is off.
    assert SamplingParams(typical_p=0.9).sampling and not SamplingParams(typical_p=1.0).sampling


def test_frequency_and_presence_penalties_lower_seen_words_by_their_share(decoder: Decoder) -> None:
    prompt = decoder.encode("宝玉宝玉笑道")
    ids = prompt.ids
    logits = decoder.mask_unknown(decoder.network.scores(_refed_output(decoder, ids))[0].astype(np.float64))
    counts = np.bincount(ids, minlength=logits.size)
    for penalty, name in ((1.5, "frequency_penalty"), (-2.0, "frequency_penalty"), (0.9, "presence_penalty")):
        params = SamplingParams(max_new_tokens=1, top_n_tokens=len(counts), **{name: penalty})
        token = decoder.generate("宝玉宝玉笑道", params).run().tokens[0]
        if name == "frequency_penalty":
            expected = logits - penalty * counts / len(ids)
        else:
            expected = logits - penalty * (counts > 0)
        assert token.id == int(np.argmax(expected))
        assert token.logprob == pytest.approx(_log_softmax(expected)[token.id], abs=1e-5)
        reported = dict(token.top)
        for word, logprob in reported.items():
            assert logprob == pytest.approx(_log_softmax(expected)[word], abs=1e-5)


def test_frequency_penalty_counts_generated_tokens_too(decoder: Decoder) -> None:
    """Over many steps the share is of every token so far: the prompt and each token generated before."""
    generation = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12, frequency_penalty=2.0)).run()
    ids = list(generation.prompt.ids)
    for token in generation.tokens:
        logits = decoder.network.scores(_refed_output(decoder, ids))[0].astype(np.float64)
        logits = decoder.mask_unknown(logits)
        expected = logits - 2.0 * np.bincount(ids, minlength=logits.size) / len(ids)
        assert token.id == int(np.argmax(expected))
        assert token.logprob == pytest.approx(_log_softmax(expected)[token.id], abs=1e-4)
        ids.append(token.id)
    # The repeated word (these random weights repeat one) is less certain than without the penalty.
    plain = decoder.generate("宝玉笑道", SamplingParams(max_new_tokens=12)).run()
    assert generation.tokens[-1].logprob < plain.tokens[-1].logprob


def test_top_n_tokens_are_the_best_of_the_distribution_drawn_from(decoder: Decoder) -> None:
    logits = _first_logits(decoder)
    greedy = decoder.generate("宝玉", SamplingParams(max_new_tokens=1, top_n_tokens=4)).run().tokens[0]
    expected = np.argsort(-logits)[:4].tolist()
    assert [i for i, _ in greedy.top] == expected and greedy.top[0][0] == greedy.id
    assert [lp for _, lp in greedy.top] == pytest.approx(_log_softmax(logits)[expected].tolist(), abs=1e-5)
    # Under top_k=2 only two words can be drawn: only they are listed, renormalised.
    sampled = decoder.generate(
        "宝玉", SamplingParams(max_new_tokens=1, top_k=2, top_n_tokens=4, seed=1)
    ).run()
    top = sampled.tokens[0].top
    assert [i for i, _ in top] == expected[:2]
    assert sum(math.exp(lp) for _, lp in top) == pytest.approx(1.0)
    assert dict(top)[sampled.tokens[0].id] == pytest.approx(sampled.tokens[0].logprob)
    assert decoder.generate("宝玉", SamplingParams(max_new_tokens=1)).run().tokens[0].top == ()


def test_prefill_logprobs_are_the_model_probabilities_of_each_prompt_token(decoder: Decoder) -> None:
    generation = decoder.generate(
        "宝玉笑道：好妹妹", SamplingParams(max_new_tokens=2, prefill_logprobs=True)
    ).run()
    ids = generation.prompt.ids
    assert len(generation.prefill_logprobs) == len(ids) and generation.prefill_logprobs[0] is None
    for position in range(1, len(ids)):
        logits = decoder.network.scores(_refed_output(decoder, ids[:position]))[0].astype(np.float64)
        expected = _log_softmax(decoder.mask_unknown(logits))[ids[position]]
        assert generation.prefill_logprobs[position] == pytest.approx(expected, abs=1e-5)
    assert decoder.generate("宝玉", SamplingParams(max_new_tokens=1)).run().prefill_logprobs is None


def test_truncate_reads_only_the_last_tokens_of_the_prompt(decoder: Decoder) -> None:
    full = decoder.encode("黛玉听了，宝玉笑道")
    truncated = decoder.generate("黛玉听了，宝玉笑道", SamplingParams(max_new_tokens=8, truncate=2)).run()
    assert truncated.prompt.ids == full.ids[-2:]
    # Exactly what the last two tokens alone give.
    text = "".join(decoder.vectors.words[i] for i in full.ids[-2:])
    assert [t.id for t in truncated.tokens] == [
        t.id for t in decoder.generate(text, SamplingParams(max_new_tokens=8)).run().tokens
    ]
    untouched = decoder.generate("宝玉", SamplingParams(max_new_tokens=1, truncate=50)).run()
    assert untouched.prompt.ids == decoder.encode("宝玉").ids


def test_with_a_mixture_every_token_comes_from_lambda_lstm_plus_ngram(tokenizer: Tokenizer) -> None:
    from models.ngram import KneserNey, Mixture

    decoder = _build(tokenizer)
    index = decoder.vectors.index
    stream = np.array([index[t] for s in SENTENCES for t in spell(tokenizer.cut(s), index)]) + 1
    mixture = Mixture(KneserNey.fit(stream, len(index) + 1, 3), 0.4)
    mixed = Decoder(decoder.network, decoder.vectors, decoder.tokenizer, mixture)
    generation = mixed.generate("宝玉笑道", SamplingParams(max_new_tokens=6)).run()
    ids = list(generation.prompt.ids)
    unk = index[UNKNOWN_TOKEN]
    for token in generation.tokens:
        logits = decoder.network.scores(_refed_output(decoder, ids))[0].astype(np.float64)
        lstm = np.exp(logits - logits.max())
        lstm /= lstm.sum()
        ngram = mixture.ngram.distributions(np.array([[i + 1 for i in ids[-2:]]]))[0, 1:]
        ngram /= ngram.sum()
        p = 0.4 * lstm + 0.6 * ngram
        p[unk] = 0.0  # never generated
        assert token.id == int(np.argmax(p))  # greedy over the mixture, not over the LSTM alone
        assert token.logprob == pytest.approx(math.log(p[token.id] / p.sum()), abs=1e-5)
        ids.append(token.id)
    _, candidates = mixed.predict_next("宝玉笑道", top_k=3)
    assert candidates[0].id == generation.tokens[0].id


def _cached(decoder: Decoder, weight: float = 0.3, flatness: float = 5.0, window: int = 6) -> Decoder:
    """The same network and vectors served with a continuous cache (a small window, so it is full)."""
    from models.cache import CacheSettings, ContinuousCache

    cache = ContinuousCache(CacheSettings(weight=weight, flatness=flatness, window=window))
    return Decoder(decoder.network, decoder.vectors, decoder.tokenizer, decoder.mixture, cache)


def _cache_distribution(decoder: Decoder, ids: list[int], prompt_tokens: int | None = None) -> np.ndarray:
    """(1 − μ·fill)·softmax(scores) + μ·fill·p_cache after `ids`, of which the first `prompt_tokens` (all by
    default) are the prompt, recomputed the slow way: every position's head output by re-running the
    network, the cache formula written out over the prompt's last `window` pairs, fill = pairs / window."""
    settings = decoder.cache.settings
    prompt_tokens = len(ids) if prompt_tokens is None else prompt_tokens
    outputs, _ = decoder.network.forward_sequence(np.asarray(ids)[None, :])
    outputs = outputs[0].astype(np.float64)
    unit = outputs / np.linalg.norm(outputs, axis=1, keepdims=True)
    lstm = np.exp(_log_softmax(decoder.network.scores(outputs[-1:])[0]))
    remembered = range(max(0, prompt_tokens - 1 - settings.window), prompt_tokens - 1)
    cache = np.zeros_like(lstm)
    for i in remembered:
        cache[ids[i + 1]] += math.exp(settings.flatness * float(unit[i] @ unit[-1]))
    if cache.sum() == 0:
        return lstm
    share = settings.weight * min(1.0, len(remembered) / settings.window)
    return (1 - share) * lstm + share * cache / cache.sum()


def test_with_a_cache_every_token_comes_from_the_model_mixed_with_the_prompt(decoder: Decoder) -> None:
    cached = _cached(decoder)
    unk = decoder.vectors.index[UNKNOWN_TOKEN]
    generation = cached.generate("宝玉笑道：好妹妹", SamplingParams(max_new_tokens=12)).run()
    ids = list(generation.prompt.ids)
    for token in generation.tokens:  # the cache holds the prompt's last 6 pairs, never a generated token
        p = _cache_distribution(cached, ids, len(generation.prompt.ids))
        p[unk] = 0.0
        assert token.id == int(np.argmax(p))
        assert token.logprob == pytest.approx(math.log(p[token.id] / p.sum()), abs=1e-5)
        ids.append(token.id)
    # /predict and the prefill details read the same distribution.
    _, candidates = cached.predict_next("宝玉笑道：好妹妹", top_k=3)
    p = _cache_distribution(cached, cached.encode("宝玉笑道：好妹妹").ids)
    p[unk] = 0.0
    assert candidates[0].probability == pytest.approx(p.max() / p.sum(), abs=1e-5)
    detailed = cached.generate(
        "宝玉笑道：好妹妹，好妹妹", SamplingParams(max_new_tokens=1, prefill_logprobs=True)
    )
    detailed.run()
    ids = detailed.prompt.ids
    for position in range(1, len(ids)):  # the fill grows along the prompt: 0, 1/6, 2/6, ...
        p = _cache_distribution(cached, ids[:position])
        p[unk] = 0.0
        expected = math.log(p[ids[position]] / p.sum())
        assert detailed.prefill_logprobs[position] == pytest.approx(expected, abs=1e-5)


def test_the_cache_brings_back_the_words_of_the_prompt(decoder: Decoder) -> None:
    prompt = "凤姐儿笑道：“老祖宗也去逛逛。”凤姐儿"
    plain = dict((c.word, c.probability) for c in decoder.predict_next(prompt, top_k=decoder.vocab_size)[1])
    pairs = len(decoder.encode(prompt).ids) - 1
    cached = _cached(decoder, weight=0.5, flatness=1.0, window=pairs)  # a full window: the whole μ
    boosted = dict((c.word, c.probability) for c in cached.predict_next(prompt, top_k=decoder.vocab_size)[1])
    followed = {decoder.vectors.words[i] for i in decoder.encode(prompt).ids[1:]}
    assert {"老祖宗", "逛逛", "凤姐儿"} <= followed
    # Half the mass now goes to the words that followed a position of the prompt (up to the renormalisation
    # after <unk> is taken out)...
    expected = 0.5 * sum(plain[w] for w in followed) + 0.5
    assert sum(boosted[w] for w in followed) == pytest.approx(expected, rel=1e-2)
    for word in ("老祖宗", "逛逛"):  # ...which the untrained model gave little
        assert boosted[word] > 2 * plain[word]
    absent = decoder.vectors.words[decoder.encode("宝玉").ids[0]]
    assert absent not in followed  # absent from the prompt: only the model's share is left
    assert boosted[absent] == pytest.approx(0.5 * plain[absent], rel=1e-2)


def test_with_a_cache_a_seeded_sequence_is_the_same_alone_and_in_a_batch(decoder: Decoder) -> None:
    cached = _cached(decoder, window=8)
    prompts = ["宝玉笑道", "黛玉听了，便说道：“我不过是一个人罢了。”", "凤姐儿笑道", "贾母"]
    params = [_varied(seed) for seed in range(12)]
    alone = [cached.generate(prompts[i % 4], params[i]).run() for i in range(12)]
    together = [cached.generate(prompts[i % 4], params[i]) for i in range(12)]
    _run_batch(cached, together[:6], joining={tick: [together[6 + tick]] for tick in range(6)})
    for single, batched in zip(alone, together, strict=True):
        assert [t.id for t in batched.tokens] == [t.id for t in single.tokens]
        assert [t.logprob for t in batched.tokens] == pytest.approx(
            [t.logprob for t in single.tokens], abs=1e-4
        )
        assert batched.prefill_logprobs == pytest.approx(single.prefill_logprobs, abs=1e-5)


def test_candidates_of_one_prompt_share_one_prefill_and_draw_what_they_draw_alone(decoder: Decoder) -> None:
    params = _sampled(11, prefill_logprobs=True, top_p=0.9)
    pool = candidates(decoder.generate("宝玉笑道", params), 4)
    alone = [decoder.generate("宝玉笑道", g.params).run() for g in pool]
    other = decoder.generate("黛玉听了", _sampled(5))
    batch = DecodingBatch(decoder)
    batch.add(other)
    batch.add(*pool)
    while batch:
        batch.tick()
    # One pass over the prompt: every candidate holds the same PromptState; the other prompt its own.
    assert all(g.prompt_state is pool[0].prompt_state for g in pool)
    assert other.prompt_state is not pool[0].prompt_state
    assert len({g.seed for g in pool}) == 4
    for shared, single in zip(pool, alone, strict=True):
        assert [t.id for t in shared.tokens] == [t.id for t in single.tokens]
        assert shared.prefill_logprobs == pytest.approx(single.prefill_logprobs, abs=1e-6)
    # The prompt state kept for ranking is the network after the prompt, untouched by the ticks.
    output, _ = decoder.network.forward_sequence(np.asarray(pool[0].prompt.ids)[None, :])
    np.testing.assert_allclose(pool[0].prompt_state.output, output[:, -1], atol=1e-6)


def test_prompts_joining_together_are_read_in_one_pass_and_give_what_each_gives_alone(
    tokenizer: Tokenizer,
) -> None:
    decoder = _build(tokenizer)  # its own: the passes are counted
    texts = [
        "宝玉笑道：“好妹妹，你今日可好？”",
        "黛玉听了，便说道：“我不过是一个人罢了。”",
        "凤姐儿笑道：“老祖宗也去逛逛。”贾母便命人",
    ]
    lengths = [len(decoder.encode(text).ids) for text in texts]
    assert prefill_groups(lengths) == [sorted(range(3), key=lambda i: -lengths[i])]  # similar lengths
    params = [_sampled(seed, prefill_logprobs=True, top_p=0.9) for seed in range(3)]
    alone = [candidates(decoder.generate(text, p), 2) for text, p in zip(texts, params, strict=True)]
    for pool in alone:
        _run_batch(decoder, pool)
    together = [candidates(decoder.generate(text, p), 2) for text, p in zip(texts, params, strict=True)]
    network = decoder.network
    forward, passes = network.forward_sequence, []

    def counting_forward(ids, state=None, lengths=None):
        passes.append(np.shape(ids))
        return forward(ids, state, lengths)

    network.forward_sequence = counting_forward
    batch = DecodingBatch(decoder)
    batch.add(*(g for pool in together for g in pool))
    assert passes == [(3, max(lengths))]  # one padded pass for the three prompts (and their candidates)
    while batch:
        batch.tick()
    for pool, single_pool in zip(together, alone, strict=True):
        assert pool[0].prompt_state is pool[1].prompt_state
        for batched, single in zip(pool, single_pool, strict=True):
            read, own = batched.prompt_state, single.prompt_state
            np.testing.assert_allclose(read.output, own.output, rtol=1e-5, atol=1e-6)
            for (h, c), (h1, c1) in zip(read.state, own.state, strict=True):
                np.testing.assert_allclose(h, h1, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(c, c1, rtol=1e-5, atol=1e-6)
            assert batched.prefill_logprobs == pytest.approx(single.prefill_logprobs, abs=1e-5)
            assert [t.id for t in batched.tokens] == [t.id for t in single.tokens]
            assert batched.finish_reason == single.finish_reason


def test_prompts_of_very_different_lengths_are_read_in_separate_passes() -> None:
    # A 17-token prompt padded to 160 would pay for 143 steps of a row it does not need.
    assert prefill_groups([17, 160, 150, 121, 100, 16]) == [[1, 2, 3], [4], [0, 5]]
    assert prefill_groups([5]) == [[0]] and prefill_groups([]) == []


def test_a_pools_first_distribution_is_computed_once_for_all_its_candidates(
    decoder: Decoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Candidates that have not drawn yet stand after the same prompt: one row is scored for the four of
    # them (their own penalties and draws still differ), and each draws what it draws alone.
    params = _sampled(3, repetition_penalty=1.4, top_p=0.9)
    pool = candidates(decoder.generate("宝玉笑道", params), 4)
    alone = [decoder.generate("宝玉笑道", g.params).run() for g in pool]
    other = decoder.generate("黛玉听了", _sampled(8))
    calls: list[int] = []
    original = decoder.network.scores
    monkeypatch.setattr(
        decoder.network, "scores", lambda output: calls.append(len(output)) or original(output)
    )
    batch = DecodingBatch(decoder)
    batch.add(other)
    batch.tick()  # `other` has drawn: it is scored on its own row from now on
    batch.add(*pool)
    sizes = []
    while batch:
        sizes.append(len(batch))
        batch.tick()
    assert calls[1] == 2 and sizes[0] == 5  # the pool's first tick: one row for it, one for `other`
    assert calls[2:] == sizes[1:]  # afterwards every row is its own
    for shared, single in zip(pool, alone, strict=True):
        assert [t.id for t in shared.tokens] == [t.id for t in single.tokens]
        assert [t.logprob for t in shared.tokens] == pytest.approx(
            [t.logprob for t in single.tokens], abs=1e-5
        )


@pytest.mark.parametrize("served", ["network", "mixture", "mixture and cache"])
def test_a_generation_records_its_first_tokens_model_probabilities_as_the_ranking_computes_them(
    tokenizer: Tokenizer, served: str
) -> None:
    from models.ngram import KneserNey, Mixture
    from models.rerank import continuation_log_probs

    decoder = _build(tokenizer)
    if served != "network":
        index = decoder.vectors.index
        stream = np.array([index[t] for s in SENTENCES for t in spell(tokenizer.cut(s), index)]) + 1
        mixture = Mixture(KneserNey.fit(stream, len(index) + 1, 3), 0.4)
        decoder = Decoder(decoder.network, decoder.vectors, decoder.tokenizer, mixture)
    if served == "mixture and cache":
        decoder = _cached(decoder)  # the cache is served, never scored: the records leave it out
    first = decoder.generate("宝玉笑道：好妹妹", _sampled(4, repetition_penalty=1.3))
    first.model_logprob_tokens = 3
    pool = candidates(first, 3)
    batch = DecodingBatch(decoder)
    batch.add(decoder.generate("黛玉听了", _sampled(1)), *pool)
    while batch:
        batch.tick()
    for generation in pool:
        start = [token.id for token in generation.tokens[:3]]
        expected = continuation_log_probs(decoder, generation.prompt.ids, [start])[0]
        assert generation.model_logprobs == pytest.approx(expected.tolist(), abs=1e-5)
        # Not the sampled distribution's (temperature and penalty apply there).
        assert generation.model_logprobs != pytest.approx([t.logprob for t in generation.tokens[:3]])


def test_with_token_counts_a_tick_serves_what_the_prompt_read_at_once_gives(decoder: Decoder) -> None:
    # The counts read the prompt's remembered ids and the row's last two tokens: the first generated token's
    # probability is the one the prefill (the evaluation's stream rule) gives it at the end of the prompt.
    from models.cache import CacheSettings, ContinuousCache

    settings = CacheSettings(0.2, 5.0, 16, trigram_weights=(0.3,) * 5, bigram_weights=(0.2,) * 5)
    counted = Decoder(decoder.network, decoder.vectors, decoder.tokenizer, cache=ContinuousCache(settings))
    assert counted.context == 2  # the last two tokens are kept even without an n-gram mixture
    plain = _cached(decoder, weight=0.2, flatness=5.0, window=16)
    text = "宝玉笑道：好妹妹，宝玉笑道：好妹妹，宝玉笑道"
    first = counted.generate(text, SamplingParams(max_new_tokens=1)).run().tokens[0]
    without = plain.generate(text, SamplingParams(max_new_tokens=1)).run().tokens[0]
    assert first.logprob != pytest.approx(without.logprob, abs=1e-3)  # the counts moved the distribution
    words = decoder.vectors.words
    ids = [*counted.encode(text).ids, first.id]
    prompt = Prompt(text="".join(words[i] for i in ids), tokens=[words[i] for i in ids], ids=ids, unknown=[])
    detailed = counted.start(prompt, SamplingParams(max_new_tokens=1, prefill_logprobs=True))
    detailed.run()
    assert detailed.prefill_logprobs[-1] == pytest.approx(first.logprob, abs=1e-5)
