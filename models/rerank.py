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
mutual information alone picks the real reply among ten 27% of the time (β = 1; below 1 the generic-reply
term wins and it is chance), a TF-IDF cosine over characters and character pairs 43%: replies in the novel
take up the very words of what was said to them, often partly (林妹妹 / 妹妹), which the LSTM barely
conditions on. So the relevance score adds γ times that cosine (`CharacterTfidf`, document frequencies of
the training chapters' exchanges, stored in memory.json); β and γ are chosen on the training chapters' tail.

A candidate that never closed its quote (cut at max_tokens) ranks after every closed one. Pure functions
of the model and the candidates: the chat route, the in-process `Chat.respond` and the chat evaluation all
rank with these.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.decoding import Decoder, PromptState


@dataclass(frozen=True)
class RerankConfig:
    """How many candidates a chat turn draws and how much of p(reply) is subtracted (chosen on the
    validation tail by the chat evaluation, see training/chat_evaluation.py)."""

    candidates: int = 4
    beta: float = 1.0
    lexical: float = 2.0  # γ: weight of the character TF-IDF cosine between the turn and the reply


def character_grams(text: str) -> list[str]:
    """The characters and adjacent character pairs of a text's letters and digits (punctuation dropped)."""
    chars = [char for char in text if char.isalnum()]
    return chars + [a + b for a, b in itertools.pairwise(chars)]


class CharacterTfidf:
    """TF-IDF cosine over `character_grams`: raw counts times log2(N / df), unit length (gensim's
    TfidfModel defaults, which computed the idf at training time); grams never seen have no weight."""

    def __init__(self, idf: Mapping[str, float]) -> None:
        self.idf = dict(idf)

    def vector(self, text: str) -> dict[str, float]:
        weights = {
            gram: count * self.idf[gram] for gram, count in Counter(character_grams(text)).items()
            if gram in self.idf
        }  # fmt: skip
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {gram: w / norm for gram, w in weights.items()} if norm > 0 else {}

    def cosine(self, a: str, b: str) -> float:
        first, second = self.vector(a), self.vector(b)
        return float(sum(weight * second.get(gram, 0.0) for gram, weight in first.items()))


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
    if not context_ids:
        raise ValueError("the context must hold at least one token")
    lengths = [len(c) for c in continuations]
    if not continuations or max(lengths) == 0:
        return [np.zeros(0) for _ in continuations]
    network = decoder.network
    if context_state is None:
        context = np.asarray(context_ids, dtype=np.int64)[None, :]
        outputs, state = network.forward_sequence(context)
        last = outputs[:, -1]
    else:
        last, state = context_state.output, context_state.state
    rows = len(continuations)
    longest = max(lengths)
    padded = np.zeros((rows, longest), dtype=np.int64)
    for row, ids in enumerate(continuations):
        padded[row, : len(ids)] = ids
    first = np.repeat(last[:, None], rows, axis=0)  # (B, 1, .) predicts each continuation's first token
    if longest > 1:
        tiled = [tuple(np.repeat(part, rows, axis=0) for part in layer) for layer in state]
        rest, _ = network.forward_sequence(padded[:, :-1], tiled)
        heads = np.concatenate([first, rest], axis=1)
    else:
        heads = first
    valid = [(row, position) for row in range(rows) for position in range(lengths[row])]
    index_rows = np.asarray([r for r, _ in valid])
    index_positions = np.asarray([p for _, p in valid])
    logits = network.scores(heads[index_rows, index_positions]).astype(np.float64)
    if decoder.mixture is not None:
        history = list(context_ids)
        histories = decoder.mixture.histories([history + list(continuations[r][:p]) for r, p in valid])
        log_p = decoder.mixture.log_probs(logits, histories)
    else:
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = padded[index_rows, index_positions]
    values = log_p[np.arange(len(valid)), targets]
    result, at = [], 0
    for length in lengths:
        result.append(values[at : at + length])
        at += length
    return result


@dataclass(frozen=True)
class Evidence:
    """What the relevance of each candidate is computed from: its log-probability after the prompt and
    after the character's opening alone (sums over its tokens), its number of tokens, and its character
    TF-IDF cosine with the turn. Kept apart from β and γ so a tuning pass scores every setting at once."""

    with_turn: np.ndarray
    alone: np.ndarray
    tokens: np.ndarray
    lexical: np.ndarray

    def scores(self, beta: float, lexical: float) -> np.ndarray:
        """(log p(c | prompt) − β·log p(c)) / len(c) + γ·cos(turn, c); -inf for an empty candidate."""
        scores = np.full(len(self.tokens), -np.inf)
        filled = self.tokens > 0
        scores[filled] = (self.with_turn[filled] - beta * self.alone[filled]) / self.tokens[filled]
        return scores + lexical * self.lexical


def evidence(
    decoder: Decoder,
    prompt_ids: Sequence[int],
    prior_ids: Sequence[int],
    candidates: Sequence[Sequence[int]],
    turn: str,
    texts: Sequence[str],
    tfidf: CharacterTfidf | None,
    prompt_state: PromptState | None = None,
) -> Evidence:
    """The Evidence of candidates (token ids, and their reply texts) for a prompt whose last turn is `turn`;
    `prior_ids` is the context of p(reply): the character's opening alone; `prompt_state` the network after
    the prompt when the decoding already read it."""
    given_turn = continuation_log_probs(decoder, prompt_ids, candidates, prompt_state)
    alone = continuation_log_probs(decoder, prior_ids, candidates)
    return Evidence(
        with_turn=np.asarray([values.sum() for values in given_turn]),
        alone=np.asarray([values.sum() for values in alone]),
        tokens=np.asarray([len(values) for values in given_turn]),
        lexical=np.asarray([tfidf.cosine(turn, text) if tfidf is not None else 0.0 for text in texts]),
    )


def rank(scores: Sequence[float], closed: Sequence[bool]) -> list[int]:
    """Candidate indices, best first: closed replies before unclosed ones, then by score (stable)."""
    return sorted(range(len(scores)), key=lambda i: (not closed[i], -scores[i]))
