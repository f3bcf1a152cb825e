"""Choosing a chat reply among candidates by its relevance to the turn (maximum mutual information).

A language model's most probable replies are its most generic ones; Li et al. (2016) rank candidate replies
by mutual information with the message instead: log p(reply | turn) − β·log p(reply). Here both terms come
from the served model (the LSTM, with its n-gram mixture when it has one):

* p(reply | turn): the reply's tokens after the whole rendered prompt (grounding lines, conversation, the
  character's opening `黛玉道：“`);
* p(reply): the same tokens after the character's opening alone, so what is subtracted is how likely the
  reply is from this character whatever was said to it.

Both are sums over the reply's tokens, closing quote included, divided by the number of tokens (a long reply
is not penalised for having more tokens to pay for). Measured on 红楼梦's held-out exchanges, the model's
mutual information alone picks the real reply among ten 23-31% of the time, a TF-IDF cosine over characters
and character pairs 42-44%: replies in the novel take up the very words of what was said to them, often
partly (林妹妹 / 妹妹), which the LSTM barely conditions on. So the relevance score adds γ times the lexical
relevance of models/relevance.py (cosines over characters, character pairs, words, word and character
vectors, and the reply's length, their weights learned on the training chapters' exchanges); β and γ are
fitted on the training chapters' tail.

A candidate that never closed its quote (cut at max_tokens) ranks after every closed one. Pure functions
of the model and the candidates: the chat route, the in-process `Chat.respond` and the chat evaluation all
rank with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.decoding import Decoder, PromptState
from models.relevance import LexicalRelevance


@dataclass(frozen=True)
class RerankConfig:
    """How many candidates a chat turn draws and how much of p(reply) is subtracted (chosen on the
    validation tail by the chat evaluation, see training/chat_evaluation.py)."""

    candidates: int = 4
    beta: float = 1.0
    lexical: float = 2.0  # γ: weight of the lexical relevance of the reply to the turn (models/relevance.py)
    # After this many tokens the pool keeps only its best (as many as the request's choices) by the same
    # score over what each candidate has said so far, and the rest stop: the pool's rows cost a few ticks
    # instead of as many as its longest reply. None: every candidate runs to its end.
    prune_after: int | None = None
    # γ of that early ranking (None: `lexical`): judging a reply by its first few tokens is another task
    # than choosing among whole replies, so it is chosen on its own.
    prune_lexical: float | None = None


def continuation_log_probs(
    decoder: Decoder,
    context_ids: Sequence[int],
    continuations: Sequence[Sequence[int]],
    context_state: PromptState | None = None,
) -> list[np.ndarray]:
    """Natural-log probability of each continuation's tokens after the context (temperature 1, no
    penalties: the model's own distribution, the n-gram mixture included; a real text's <unk> is charged
    the model's probability of <unk>), one array per continuation.
    The context runs through the LSTM once (not at all when `context_state`, the network after exactly these
    ids, is given: a chat pool's prefill already read its prompt); the continuations run from its state as
    one padded batch."""
    return many_continuation_log_probs(decoder, [(context_ids, continuations)], [context_state])[0]


# Continuations run through the LSTM together by many_continuation_log_probs (bounds the (rows, longest, .)
# arrays), and positions scored together (bounds the (positions, V) float64 logits to about 16 MB).
CONTINUATION_CHUNK = 128
SCORED_POSITIONS = 256


def many_continuation_log_probs(
    decoder: Decoder,
    items: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    states: Sequence[PromptState | None] | None = None,
) -> list[list[np.ndarray]]:
    """`continuation_log_probs` of many (context, continuations) items at once: each distinct context is
    read once, and every continuation of every item runs from its context's state in batches of rows of
    similar length (a chat evaluation scores thousands of replies after a hundred prompts; one padded
    batch per prompt would pay the per-step cost of the longest reply a hundred times)."""
    network = decoder.network
    states = list(states) if states is not None else [None] * len(items)
    read: dict[tuple[int, ...], PromptState] = {}
    starts: list[PromptState] = []
    for (context_ids, _), state in zip(items, states, strict=True):
        if not context_ids:
            raise ValueError("the context must hold at least one token")
        key = tuple(context_ids)
        if state is None and key not in read:
            outputs, final = network.forward_sequence(np.asarray(key, dtype=np.int64)[None, :])
            read[key] = PromptState(outputs[:, -1], final)
        starts.append(state if state is not None else read[key])
    rows = [(item, row) for item, (_, continuations) in enumerate(items) for row in range(len(continuations))]
    results = [[np.zeros(0)] * len(continuations) for _, continuations in items]
    by_length = sorted(
        (r for r in rows if len(items[r[0]][1][r[1]])), key=lambda r: -len(items[r[0]][1][r[1]])
    )
    for at in range(0, len(by_length), CONTINUATION_CHUNK):
        chunk = by_length[at : at + CONTINUATION_CHUNK]
        values = _chunk_log_probs(decoder, [(items[i][0], items[i][1][r], starts[i]) for i, r in chunk])
        for (item, row), found in zip(chunk, values, strict=True):
            results[item][row] = found
    return results


def _chunk_log_probs(
    decoder: Decoder, rows: Sequence[tuple[Sequence[int], Sequence[int], PromptState]]
) -> list[np.ndarray]:
    """Log-probabilities of each row's continuation after its context, from the state after that context
    (rows longest first)."""
    network = decoder.network
    lengths = [len(ids) for _, ids, _ in rows]
    longest = lengths[0]
    padded = np.zeros((len(rows), longest), dtype=np.int64)
    for row, (_, ids, _) in enumerate(rows):
        padded[row, : len(ids)] = ids
    first = np.concatenate([start.output for _, _, start in rows])[:, None]  # predicts each first token
    if longest > 1:
        layers = len(rows[0][2].state)
        state = [
            tuple(np.concatenate([start.state[layer][part] for _, _, start in rows]) for part in range(2))
            for layer in range(layers)
        ]
        rest, _ = network.forward_sequence(padded[:, :-1], state)
        heads = np.concatenate([first, rest], axis=1)
    else:
        heads = first
    index_rows = np.repeat(np.arange(len(rows)), lengths)
    index_positions = np.concatenate([np.arange(length) for length in lengths])
    targets = padded[index_rows, index_positions]
    recent = None
    if decoder.mixture is not None:
        n = decoder.mixture.context  # the n-gram reads only the last n ids before each position
        recent = decoder.mixture.histories(
            [
                list(context[max(0, len(context) - n) :] if n else []) + list(ids[:position])
                for context, ids, _ in rows
                for position in range(len(ids))
            ]
        )
    values = np.empty(len(targets))
    for at in range(0, len(targets), SCORED_POSITIONS):  # (positions, V) float64 blocks stay small
        block = slice(at, at + SCORED_POSITIONS)
        logits = network.scores(heads[index_rows[block], index_positions[block]])
        if recent is not None:
            values[block] = decoder.mixture.target_log_probs(logits, recent[block], targets[block])
        else:
            top = logits.max(axis=1, keepdims=True)
            norms = np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
            values[block] = logits[np.arange(len(logits)), targets[block]].astype(np.float64) - norms
    return np.split(values, np.cumsum(lengths)[:-1])


@dataclass(frozen=True)
class Evidence:
    """What the relevance of each candidate is computed from: its log-probability after the prompt and
    after the character's opening alone (sums over its tokens), its number of tokens, and its lexical
    relevance to the turn (models/relevance.py). Kept apart from β and γ so a tuning pass scores every
    setting at once. `alone` is zeros when it was not computed (`evidence` without `prior`: β 0)."""

    with_turn: np.ndarray
    alone: np.ndarray
    tokens: np.ndarray
    lexical: np.ndarray

    def scores(self, beta: float, lexical: float) -> np.ndarray:
        """(log p(c | prompt) − β·log p(c)) / len(c) + γ·relevance(turn, c); -inf for an empty candidate."""
        scores = np.full(len(self.tokens), -np.inf)
        filled = self.tokens > 0
        scores[filled] = (self.with_turn[filled] - beta * self.alone[filled]) / self.tokens[filled]
        return scores + lexical * self.lexical


@dataclass(frozen=True)
class Candidates:
    """Candidate replies of one prompt, as `evidence` reads them: the prompt's ids (and the network after
    them, when a decoding already read them), the ids of p(reply)'s context (the character's opening
    alone), the replies' ids and texts, and the turn they answer."""

    prompt_ids: Sequence[int]
    prior_ids: Sequence[int]
    replies: Sequence[Sequence[int]]
    texts: Sequence[str]
    turn: str
    prompt_state: PromptState | None = None
    # Each reply's tokens' log-probabilities after the prompt, when the decoding that drew them recorded
    # them (Generation.model_logprobs): p(reply | prompt) is then not computed again.
    reply_log_probs: Sequence[Sequence[float]] | None = None


def evidence(
    decoder: Decoder, pools: Sequence[Candidates], relevance: LexicalRelevance | None, prior: bool = True
) -> list[Evidence]:
    """The Evidence of each pool of candidates, every pool's log-probabilities computed together
    (`many_continuation_log_probs`: each prompt and each opening read once). `prior` False: log p(reply)
    is not computed (zeros), for a ranking whose β is 0 and so never reads it."""
    # Both terms in one pass: the continuations after the prompts (unless recorded), then the same ones after
    # the openings.
    unknown = [pool for pool in pools if pool.reply_log_probs is None]
    openings = pools if prior else []
    found = many_continuation_log_probs(
        decoder,
        [(pool.prompt_ids, pool.replies) for pool in unknown]
        + [(pool.prior_ids, pool.replies) for pool in openings],
        [pool.prompt_state for pool in unknown] + [None] * len(openings),
    )
    computed = iter(found[: len(unknown)])
    alone = (
        found[len(unknown) :] if prior else [[np.zeros(len(ids)) for ids in pool.replies] for pool in pools]
    )
    given_turn = [
        [np.asarray(values, dtype=np.float64) for values in pool.reply_log_probs]
        if pool.reply_log_probs is not None
        else next(computed)
        for pool in pools
    ]
    # A candidate's words for the relevance are jieba's cut of its text, not its tokens: the model spells a
    # word outside its vocabulary with characters, which jieba reads as the word again, as the relevance's
    # weights were learned (training/relevance.py). On 红楼梦's held-out exchanges with the tokens as words
    # the served scorer picked the real reply 43.3% of the time, with the cut 46.7% (the cut of a pool of 4
    # costs about 0.3 ms on a loaded machine).
    return [
        Evidence(
            with_turn=np.asarray([values.sum() for values in given]),
            alone=np.asarray([values.sum() for values in prior]),
            tokens=np.asarray([len(values) for values in given]),
            lexical=(relevance.scores(pool.turn, pool.texts) if relevance else np.zeros(len(pool.texts))),
        )
        for pool, given, prior in zip(pools, given_turn, alone, strict=True)
    ]


def rank(scores: Sequence[float], closed: Sequence[bool]) -> list[int]:
    """Candidate indices, best first: closed replies before unclosed ones, then by score (stable)."""
    return sorted(range(len(scores)), key=lambda i: (not closed[i], -scores[i]))
