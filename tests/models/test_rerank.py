"""Reranking chat candidates on the real tiny model: the scores are the model's own probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.chat import PRUNED, Chat, Message
from models.decoding import Decoder, SamplingParams
from models.relevance import LexicalRelevance
from models.rerank import (
    Candidates,
    RerankConfig,
    continuation_log_probs,
    evidence,
    many_continuation_log_probs,
    rank,
)
from models.trained import TrainedModel


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> TrainedModel:
    return TrainedModel.load(tiny_model_dir)


@pytest.fixture(scope="module")
def decoder(model: TrainedModel) -> Decoder:
    return Decoder(model.network, model.vectors, model.tokenizer)


def _one_by_one(decoder: Decoder, context: list[int], continuation: list[int]) -> list[float]:
    """log p of each token, running the whole text through the network for every token (no batching)."""
    values = []
    for position, target in enumerate(continuation):
        ids = np.asarray(context + continuation[:position])[None, :]
        outputs, _ = decoder.network.forward_sequence(ids)
        logits = decoder.network.scores(outputs[0, -1]).astype(np.float64)
        values.append(float(logits[target] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()))
    return values


def test_batched_log_probs_equal_scoring_each_token_alone(decoder: Decoder) -> None:
    context = decoder.encode("宝玉笑道：“妹妹往那里去？”黛玉道：“").ids
    continuations = [decoder.encode(text).ids for text in ("我去看花。”", "不去”", "”")]
    batched = continuation_log_probs(decoder, context, continuations)
    for values, continuation in zip(batched, continuations, strict=True):
        assert values.tolist() == pytest.approx(_one_by_one(decoder, context, continuation), abs=1e-4)


def test_relevance_is_mutual_information_plus_gamma_times_the_lexical_relevance(decoder: Decoder) -> None:
    prompt = decoder.encode("宝玉笑道：“妹妹往那里去？”黛玉道：“").ids
    prior = decoder.encode("黛玉道：“").ids
    texts = ["我去看花。", "你又来了。"]
    candidates = [decoder.encode(text + "”").ids for text in texts]
    # Unlearned weights (a memory written before they were learned): the character cosine alone.
    idf = {"妹": 1.0, "去": 2.0, "看": 1.5, "你": 0.5, "妹妹": 3.0}
    relevance = LexicalRelevance(idf, {}, {"character_grams": 1.0})
    found = evidence(decoder, [Candidates(prompt, prior, candidates, texts, "妹妹往那里去？")], relevance)[0]
    with_turn = continuation_log_probs(decoder, prompt, candidates)
    alone = continuation_log_probs(decoder, prior, candidates)
    scores = found.scores(beta=0.5, lexical=2.0)
    for row, (given, base) in enumerate(zip(with_turn, alone, strict=True)):
        expected = (given.sum() - 0.5 * base.sum()) / len(given) + 2.0 * found.lexical[row]
        assert scores[row] == pytest.approx(expected)
    # 去 is the only gram the first reply shares with the turn: cos = (2·2) / (|turn| |reply|).
    turn_norm = np.sqrt(3.0**2 + (2 * 1.0) ** 2 + 2.0**2)  # 妹妹; 妹 twice (count 2 × idf 1); 去
    reply_norm = np.sqrt(2.0**2 + 1.5**2)  # 去, 看
    assert found.lexical[0] == pytest.approx(2.0 * 2.0 / (turn_norm * reply_norm))
    assert found.lexical[1] == 0.0  # 你 is not in the turn


def test_rank_puts_closed_replies_first() -> None:
    assert rank([3.0, 1.0, 2.0], [False, True, True]) == [2, 1, 0]


def test_n_candidates_are_ranked_distinct_and_reproducible(model: TrainedModel, decoder: Decoder) -> None:
    chat = Chat(decoder, model.characters, memory=model.memory, rerank=RerankConfig(candidates=4))
    messages = [Message("user", "妹妹往那里去？")]
    params = chat.sampling(SamplingParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=7))
    prompt = chat.render(messages, character="黛玉")
    ranked = chat.rank_replies(prompt, chat.draw(prompt, params, 4))
    assert len({reply.text for reply in ranked}) == len(ranked) >= 2
    scores = [reply.score for reply in ranked]
    closed = [reply.finish_reason == "stop" for reply in ranked]
    assert rank(scores, closed) == list(range(len(ranked)))  # best first
    again = chat.respond(messages, SamplingParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=7),
                         character="黛玉")  # fmt: skip
    assert again.text == ranked[0].text


def test_ranking_from_the_pools_prefill_scores_what_reading_the_prompt_again_scores(
    model: TrainedModel, decoder: Decoder
) -> None:
    chat = Chat(decoder, model.characters, memory=model.memory, rerank=RerankConfig(candidates=3))
    prompt = chat.render([Message("user", "妹妹往那里去？")], character="黛玉")
    params = chat.sampling(SamplingParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=3))
    pool = chat.draw(prompt, params, 3)
    assert pool[0].prompt_state is not None and all(g.prompt_state is pool[0].prompt_state for g in pool)
    ids = [chat.candidate_ids(g) for g in pool]
    reused = chat.score(prompt, ids, read=pool[0])
    read_again = chat.score(prompt, ids)
    assert reused == pytest.approx(read_again, abs=1e-5)


def test_many_contexts_score_what_each_context_scores_alone(decoder: Decoder) -> None:
    contexts = [
        decoder.encode(text).ids for text in ("宝玉笑道：“妹妹往那里去？”黛玉道：“", "黛玉道：“", "“")
    ]
    replies = [decoder.encode(text).ids for text in ("我去看花。”", "不去”", "”", "妹妹，你往那里去？”")]
    items = [
        (contexts[0], replies),
        (contexts[1], replies[1:]),
        (contexts[0], replies[:1]),
        (contexts[2], []),
    ]
    together = many_continuation_log_probs(decoder, items)
    for (context, continuations), found in zip(items, together, strict=True):
        alone = [_one_by_one(decoder, context, ids) for ids in continuations]
        assert [values.tolist() for values in found] == [pytest.approx(values, abs=1e-4) for values in alone]


def test_a_pruned_pool_keeps_its_best_start_and_stops_the_others(
    model: TrainedModel, decoder: Decoder
) -> None:
    config = RerankConfig(candidates=4, beta=1.0, lexical=2.0, prune_after=2)
    chat = Chat(decoder, model.characters, memory=model.memory, rerank=config)
    prompt = chat.render([Message("user", "妹妹往那里去？")], character="黛玉")
    params = chat.sampling(SamplingParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=9))
    pool = chat.draw(prompt, params, 4)
    survivors = [g for g in pool if g.finish_reason != PRUNED]
    assert len(survivors) == 1
    # The others stopped once all four had 2 tokens (or had ended), and the survivor was the best start.
    assert all(len(g.tokens) <= 2 for g in pool if g.finish_reason == PRUNED)
    starts = [[t.id for t in g.tokens[:2]] for g in pool]
    scores = chat.score(prompt, starts)  # a scoring pass after the prompt
    assert pool.index(survivors[0]) == int(np.argmax(scores))
    # The pruning itself read each start's probabilities off the decoding that drew it.
    assert [len(g.model_logprobs) for g in pool] == [len(start) for start in starts]
    assert chat.rank_replies(prompt, pool)[0].generation is survivors[0]


def test_a_ranking_with_beta_0_skips_the_prior_and_ranks_as_with_it(
    model: TrainedModel, decoder: Decoder
) -> None:
    config = RerankConfig(candidates=4, beta=0.0, lexical=1000.0, prune_after=2, prune_lexical=0.5)
    chat = Chat(decoder, model.characters, memory=model.memory, rerank=config)
    prompt = chat.render([Message("user", "妹妹往那里去？")], character="黛玉")
    params = chat.sampling(SamplingParams(max_new_tokens=20, do_sample=True, temperature=1.0, seed=5))
    pool = chat.draw(prompt, params, 4)
    replies = [chat.candidate_ids(g) for g in pool]
    candidates = chat.pool(prompt, replies)
    skipped, computed = chat.evidence_of([candidates], prior=False)[0], chat.evidence_of([candidates])[0]
    assert not skipped.alone.any() and computed.alone.all()  # log p(reply) < 0 for every reply
    assert skipped.with_turn.tolist() == pytest.approx(computed.with_turn.tolist())
    assert skipped.scores(0.0, 1000.0).tolist() == pytest.approx(computed.scores(0.0, 1000.0).tolist())
    assert chat.score(prompt, replies) == pytest.approx(computed.scores(0.0, 1000.0).tolist())
    # With β ≠ 0 the prior is read: the score is the full mutual information's.
    with_prior = Chat(decoder, model.characters, memory=model.memory, rerank=RerankConfig(beta=1.0))
    assert with_prior.score(prompt, replies) == pytest.approx(computed.scores(1.0, 2.0).tolist())
