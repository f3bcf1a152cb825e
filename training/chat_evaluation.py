"""Chat evaluation on the held-out chapters: does the model hold a conversation, and does it
answer what was said?

Real two-turn exchanges come from the held-out chapters' attributed dialogue (training/characters.py): one
character speaks (A) and another answers (B) right after, with at most a short stretch of narration
between. Each exchange becomes a chat request exactly as the server sees it (models/chat.py: A's words as
the user's turn with user_character A, B as the character; the memory's exchanges of the *training*
chapters recalled for it), and we measure:

* **closed within 60 tokens**: the share of generated replies that close their quote (finish "stop")
  within 60 tokens, seeded sampling at the playground's settings (temperature 0.8, top-k 20); the target is
  at least 95%, since an unclosed reply is cut at max_tokens mid-sentence;
* **median reply length** of the generated replies, in tokens and in characters, next to the real replies';
* **does the conversation help**: the model's cost (bits per token, natural-probability softmax at
  temperature 1) of B's *real* reply, closing quote included, given the rendered previous turn
  (`A道：“…”B道：“`) versus given no previous turn (`B道：“`). Both costs are over the same tokens (the
  tokens the model's vocabulary covers, as the decoder reads them), so the difference is the context's;
* **response selection, R10@1**: B's real reply among itself and the real replies of 9 other held-out
  exchanges; the share of exchanges where a scorer ranks the real one first (a k-way tie for first counts
  1/k, so chance is 10%). The served scorer (models/rerank.py: mutual information of the reply with the
  grounded prompt plus γ times the lexical relevance, β and γ as served) beside its lexical relevance alone
  (models/relevance.py), TF-IDF cosines between turn and reply over jieba words (gensim) and over characters
  and character pairs (document frequencies of the training chapters' exchanges), and the ungrounded
  pointwise mutual information (β = 1, no recalled lines: what chat scored before it had a memory). It
  decodes nothing, so it reads up to SELECTION_EXCHANGES of the held-out exchanges (the real replies' cost
  above too), more than the generated replies' MAX_EXCHANGES;
* **relevance of generated replies**: a judge reads a reply and picks, among the user's turn and the turns of
  9 other held-out exchanges, the one it answers (the highest TF-IDF cosine; ties split): the share picked
  right, for the real replies, the plain replies (no memory, one candidate) and the served ones (recalled
  lines, candidates ranked). The judge is lexical and never sees the model, so the served scorer cannot
  flatter itself through it; and since copying the turn would fool it, a **copy guard** stands beside it:
* **longest copy**: the median longest verbatim run of characters a reply shares with the user's turn and
  with the recalled lines, for real and generated replies: grounding must not turn into pasting or parroting.
"""

from __future__ import annotations

import difflib
import math
import statistics
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from gensim.corpora import Dictionary
from gensim.models import TfidfModel

from models.chat import Chat, ChatPrompt, ChatReply, Message
from models.decoding import Generation, SamplingParams
from models.memory import ExchangeMemory, index_terms
from models.relevance import CharacterTfidf
from models.rerank import Evidence, RerankConfig, many_continuation_log_probs, rank
from training.characters import Utterance, exchanges, extract_characters
from training.memory import build_memory
from training.response_selection import (
    CHOICES,
    comparison_groups,
    first_share,
    fit_conditional_logit,
    r10_at_1,
    shrinkage_by_cross_validation,
)

MAX_TOKENS = 60
MAX_EXCHANGES = 100  # generated: evenly spread over the held-out chapters, to bound the time (± 5 points)
# Response selection and the real replies' cost decode nothing (they score real replies), so they read more
# of the held-out exchanges (± 4 points). Scoring is what the chat evaluation spends most on (a reply is read
# after its grounded prompt, after the opening alone and after the plain prompt): all 297 of 红楼梦's would
# triple the stage.
SELECTION_EXCHANGES = 150
TEMPERATURE = 0.8
TOP_K = 20
CLOSED_TARGET = 0.95
# The weight of log p(reply | prompt) in the logit that fits β and γ, at least (per token, in nats).
MIN_WITH_TURN_WEIGHT = 1e-3
CANDIDATE_COUNTS = (1, 2, 4)
# A served pool keeps only its best candidate once each has said this many tokens (RerankConfig.prune_after):
# four rows then cost three ticks, the survivor the rest, so a grounded turn stays within about twice a plain
# one's decoding. Measured on the default model's held-out exchanges (judge picking the turn, served
# replies; plain 13.2%, real 36.2%): unpruned 32.1%, after 2 tokens 19.1%, 3: 25.1%, 4: 24.1%, 6: 28.1%.
PRUNE_AFTER = 3
# γ of the early ranking, chosen by the judge on the tail (a start says less than a whole reply, so its
# lexical relevance may weigh more than a whole reply's).
PRUNE_LEXICAL_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
# For β and γ (no generation): every exchange of the tail up to this many (红楼梦's last 4 training chapters
# hold 126, those of 300k 180; scoring one costs about 0.1-0.3 s).
VALIDATION_EXCHANGES = 300
# L2 penalties of the model's terms in the fit of β and γ (per standardised weight; inf: left out), the
# strongest within one standard error of the best chosen by cross-validation on the tail (`fit_beta_gamma`).
MODEL_TERM_PENALTIES = (1e-3, 1e-2, 0.1, 1.0, math.inf)
VALIDATION_GENERATED = 30  # for the number of candidates (generates max(CANDIDATE_COUNTS) per exchange)
Pair = tuple[Utterance, Utterance]


def _spread(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


class TfidfCosine:
    """Cosine between two texts' TF-IDF vectors over jieba words (gensim's TfidfModel, document frequencies
    from the training chapters' exchanges): the lexical baseline of response selection and the judge."""

    def __init__(self, chat: Chat, memory: ExchangeMemory) -> None:
        self.cut = chat.decoder.tokenizer.cut
        documents = [self.terms(e.said) for e in memory.exchanges] + [
            self.terms(e.answer) for e in memory.exchanges
        ]
        self.dictionary = Dictionary(documents or [[]])
        self.model = TfidfModel(dictionary=self.dictionary) if documents else None

    def terms(self, text: str) -> list[str]:
        return index_terms(self.cut(text))

    def vector(self, text: str) -> dict[int, float]:
        if self.model is None:
            return {}
        return dict(self.model[self.dictionary.doc2bow(self.terms(text))])

    @staticmethod
    def cosine(a: dict[int, float], b: dict[int, float]) -> float:
        # TfidfModel's vectors are unit length already.
        return float(sum(weight * b.get(term, 0.0) for term, weight in a.items()))


def _longest_copy(text: str, source: str) -> int:
    if not text or not source:
        return 0
    match = difflib.SequenceMatcher(None, text, source, autojunk=False).find_longest_match(
        0, len(text), 0, len(source)
    )
    return match.size


def _request(pair: Pair) -> tuple[list[Message], str, str]:
    first, second = pair
    return [Message("user", first.text)], second.speaker, first.speaker


def _groups(pairs: Sequence[Pair]) -> list[list[Pair]]:
    return [[pairs[i] for i in group] for group in comparison_groups(len(pairs))]


def selection_evidence(chat: Chat, pairs: Sequence[Pair], grounded: bool) -> list[Evidence]:
    """Per exchange, the served scorer's evidence for its real reply (first) and the 9 others' (every
    exchange's scored together: models/rerank.py reads each prompt and each opening once)."""
    replies, texts = _reply_ids(chat, pairs), _reply_texts(chat, pairs)
    pools = [
        chat.pool(
            chat.render(*_request(pair), grounded=grounded),
            [replies[i] for i in group],
            texts=[texts[i] for i in group],
        )
        for pair, group in zip(pairs, comparison_groups(len(pairs)), strict=True)
    ]
    return chat.evidence_of(pools)


def _reply_texts(chat: Chat, pairs: Sequence[Pair]) -> list[str]:
    """The text of what `_reply_ids` scores of each real reply (its first MAX_TOKENS tokens), as the novel
    wrote it: the lexical relevance reads a rare character itself, not the "<unk>" the model reads it as
    (a served candidate never holds <unk>, so the tokens' text is the reply's)."""
    found = []
    for _, second in pairs:
        text = second.text + chat.close
        pieces = chat.decoder.pieces(text)[:MAX_TOKENS]
        found.append(text[: pieces[-1].stop] if pieces else "")
    return found


def _reply_ids(chat: Chat, pairs: Sequence[Pair]) -> list[list[int]]:
    """Each exchange's real reply as the model reads it, closing quote included, as a served candidate
    can be: at most MAX_TOKENS tokens (a longer real reply is scored on its first MAX_TOKENS; its TF-IDF
    cosine still reads all of it)."""
    return [chat.decoder.encode(second.text + chat.close).ids[:MAX_TOKENS] for _, second in pairs]


def _without_memory(chat: Chat, pairs: Sequence[Pair], grounded: Sequence[Evidence]) -> list[Evidence]:
    """`selection_evidence` without recalled lines: only log p(reply | prompt) differs (p(reply) after the
    character's opening, the token counts and the turn's cosine are the grounded evidence's)."""
    replies = _reply_ids(chat, pairs)
    items = [
        (
            chat.decoder.encode(chat.render(*_request(pair), grounded=False).text).ids,
            [replies[i] for i in group],
        )
        for pair, group in zip(pairs, comparison_groups(len(pairs)), strict=True)
    ]
    given = many_continuation_log_probs(chat.decoder, items)
    return [
        replace(evidence, with_turn=np.asarray([values.sum() for values in found]))
        for evidence, found in zip(grounded, given, strict=True)
    ]


def _tfidf_scores(tfidf: TfidfCosine, pairs: Sequence[Pair]) -> list[list[float]]:
    return [
        [tfidf.cosine(tfidf.vector(pair[0].text), tfidf.vector(second.text)) for _, second in group]
        for pair, group in zip(pairs, _groups(pairs), strict=True)
    ]


def _character_scores(memory: ExchangeMemory, pairs: Sequence[Pair]) -> list[list[float]]:
    """The TF-IDF cosine over characters and character pairs (the memory's document frequencies)."""
    tfidf = CharacterTfidf(memory.character_idf)
    return [
        [tfidf.cosine(pair[0].text, second.text) for _, second in group]
        for pair, group in zip(pairs, _groups(pairs), strict=True)
    ]


def _params(index: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=MAX_TOKENS, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, seed=index
    )


def _generate(chat: Chat, pairs: Sequence[Pair], grounded: bool, candidates: int) -> list[ChatReply]:
    """The reply `Chat.respond` gives each exchange (seed = its index), all exchanges decoded in shared
    batches and their pools ranked together."""
    prompts = [chat.render(*_request(pair), grounded=grounded) for pair in pairs]
    params = [chat.sampling(_params(index)) for index in range(len(pairs))]
    pools = chat.draw_many(prompts, params, max(1, candidates))
    if candidates <= 1:
        return [chat.reply(prompt, pool[0]) for prompt, pool in zip(prompts, pools, strict=True)]
    return [ranked[0] for ranked in chat.rank_many(prompts, pools)]


def _recalled_text(prompt: ChatPrompt, chat: Chat) -> str:
    return "".join(chat.render_exchange(recalled) for recalled in prompt.grounding)


def _judge(tfidf: TfidfCosine, pairs: Sequence[Pair], replies: Sequence[str]) -> float | None:
    """Share of replies whose own turn the judge picks among CHOICES turns (ties split); None with fewer
    than CHOICES exchanges."""
    if len(pairs) < CHOICES:
        return None
    turns = [tfidf.vector(first.text) for first, _ in pairs]
    total = 0.0
    for reply, group in zip(replies, comparison_groups(len(pairs)), strict=True):
        vector = tfidf.vector(reply)
        total += first_share([tfidf.cosine(vector, turns[i]) for i in group])
    return round(total / len(pairs), 4)


def _replies_figures(
    chat: Chat, tfidf: TfidfCosine, pairs: Sequence[Pair], texts: Sequence[str], recalled: Sequence[str]
) -> dict:
    return {
        "relevance_judge": _judge(tfidf, pairs, texts),
        "median_longest_copy_from_turn": statistics.median(
            _longest_copy(text, first.text) for text, (first, _) in zip(texts, pairs, strict=True)
        ),
        "median_longest_copy_from_recalled": statistics.median(
            _longest_copy(text, lines) for text, lines in zip(texts, recalled, strict=True)
        ),
        "words_from_turn": _echo(tfidf, pairs, texts),
        "median_chars": statistics.median(len(text) for text in texts),
    }


def _echo(tfidf: TfidfCosine, pairs: Sequence[Pair], texts: Sequence[str]) -> float:
    """The share of the replies' words (jieba, letters and digits) that their turn holds too: a reply that
    echoes the turn word by word fools the judge without copying a long run, so the guard counts words."""
    taken = total = 0
    for text, (first, _) in zip(texts, pairs, strict=True):
        turn = set(tfidf.terms(first.text))
        words = tfidf.terms(text)
        taken += sum(word in turn for word in words)
        total += len(words)
    return round(taken / total, 4) if total else 0.0


def _generated_figures(
    chat: Chat,
    tfidf: TfidfCosine,
    pairs: Sequence[Pair],
    replies: Sequence[ChatReply],
    recalled: Sequence[str],
) -> dict:
    return {
        **_replies_figures(chat, tfidf, pairs, [r.text for r in replies], recalled),
        "closed": round(sum(r.finish_reason == "stop" for r in replies) / len(replies), 4),
        "median_tokens": statistics.median(len(r.generation.tokens) for r in replies),
    }


def fit_beta_gamma(found: Sequence[Evidence]) -> tuple[float, float, dict]:
    """β and γ of the served score from response selection's groups (each exchange's real reply first).
    The lexical relevance is already a conditional logit's score, learned on the thousands of exchanges
    before the tail (training/relevance.py), so it enters with weight 1; on the tail's hundred or so groups
    the logit fits only the weights of log p(reply | prompt) and log p(reply), both per token, shrunk towards
    zero by an L2 penalty of MODEL_TERM_PENALTIES chosen by cross-validation on the same groups
    (`shrinkage_by_cross_validation`). Read back as β = −w_alone / w_with and γ = 1 / w_with. The weight
    of log p(reply | prompt) is at least MIN_WITH_TURN_WEIGHT (the score ranks the reply the model finds
    likelier after the turn higher); when the model's terms add nothing measurable it is just that, β 0:
    the lexical relevance ranks and the model's likelihood only breaks its ties. β is clipped to 0..2.

    Why: fitted freely on 120 tail groups (β, γ and the relevance's weight together), the served scorer
    picked the real reply among 10 less often on the held-out chapters than its lexical relevance alone
    (`--max-chars 300000` of 红楼梦: 40.3% against 43.1%, 144 groups), the model's terms fitted to noise:
    their cross-validated log-likelihood on the tail is within one standard error of the relevance's alone
    on 红楼梦 and at 300k."""
    per_token = [np.maximum(e.tokens, 1) for e in found]
    features = np.asarray(
        [np.stack([e.with_turn / n, e.alone / n], axis=1) for e, n in zip(found, per_token, strict=True)]
    )
    lexical = np.asarray([e.lexical for e in found], dtype=np.float64)
    bounds = [MIN_WITH_TURN_WEIGHT, None]
    penalty, cross_validated = shrinkage_by_cross_validation(features, lexical, MODEL_TERM_PENALTIES, bounds)
    if math.isinf(penalty):
        with_turn, alone = MIN_WITH_TURN_WEIGHT, 0.0
    else:
        with_turn, alone = fit_conditional_logit(features, bounds, penalty, lexical)
    beta = float(np.clip(-alone / with_turn, 0.0, 2.0))
    gamma = 1.0 / float(with_turn)
    logit = {
        "with_turn": round(float(with_turn), 4),
        "alone": round(float(alone), 4),
        "lexical": 1.0,
        "penalty": f"{penalty:g}",
        "cross_validated_log_likelihood_by_penalty": cross_validated,
    }
    return round(beta, 4) + 0.0, round(gamma, 4), logit  # + 0.0: β 0, not −0


def tune_rerank(chat: Chat, memory: ExchangeMemory, pairs: Sequence[Pair]) -> tuple[RerankConfig, dict]:
    """β and γ by response selection (`fit_beta_gamma`), then the number of candidates by the judge, on
    exchanges of the training chapters' tail (recalling from the memory without those chapters, so nothing
    is recalled verbatim). Returns the config and what was measured for each setting."""
    tail = {first.chapter + 1 for first, _ in pairs}
    tuning = Chat(chat.decoder, chat.characters, chat.max_prompt_chars, memory.without_chapters(tail),
                  chat.grounding, chat.rerank)  # fmt: skip
    pairs = _spread(list(pairs), VALIDATION_EXCHANGES)
    if len(pairs) < CHOICES:
        return chat.rerank, {"reason": f"only {len(pairs)} exchanges in the validation tail"}
    found = selection_evidence(tuning, pairs, grounded=True)
    beta, gamma, logit = fit_beta_gamma(found)
    selection = {
        "fitted": r10_at_1([e.scores(beta, gamma) for e in found]),
        "lexical relevance alone": r10_at_1([e.lexical for e in found]),
        "mutual information alone (beta 1)": r10_at_1([e.scores(1.0, 0.0) for e in found]),
    }
    tuning.rerank = RerankConfig(candidates=max(CANDIDATE_COUNTS), beta=beta, lexical=gamma)
    tfidf = TfidfCosine(tuning, tuning.memory)
    generated = _spread(pairs, VALIDATION_GENERATED)
    # One batch of the most candidates per exchange; n candidates are its first n (the seeds the server
    # would draw for n), each ranked by the served scorer.
    picked: dict[int, list[str]] = {count: [] for count in CANDIDATE_COUNTS}
    prompts = [tuning.render(*_request(pair)) for pair in generated]
    params = [tuning.sampling(_params(index)) for index in range(len(generated))]
    pools = tuning.draw_many(prompts, params, max(CANDIDATE_COUNTS))
    pooled = tuning.evidence_of(
        [
            tuning.pool(prompt, [tuning.candidate_ids(g) for g in pool], pool[0])
            for prompt, pool in zip(prompts, pools, strict=True)
        ]
    )
    for prompt, pool, evidence in zip(prompts, pools, pooled, strict=True):
        replies = [tuning.reply(prompt, generation) for generation in pool]
        scores = evidence.scores(beta, gamma).tolist()
        closed = [reply.finish_reason == "stop" for reply in replies]
        for count in CANDIDATE_COUNTS:
            picked[count].append(replies[rank(scores[:count], closed[:count])[0]].text)
    relevance = {str(count): _judge(tfidf, generated, texts) for count, texts in picked.items()}
    # The fewest candidates within one point of the best: more cost latency for nothing measurable.
    top = max(value or 0.0 for value in relevance.values())
    count = min(c for c in CANDIDATE_COUNTS if (relevance[str(c)] or 0.0) >= top - 0.01)
    pruned = _prune_relevance(tuning, tfidf, generated, prompts, pools, count, beta)
    prune_lexical = max(PRUNE_LEXICAL_WEIGHTS, key=lambda weight: pruned[f"gamma {weight:g}"] or 0.0)
    measured = {
        "exchanges": len(pairs),
        "generated_exchanges": len(generated),
        "chapters": sorted(tail),
        "logit_weights": logit,
        "r10_at_1": selection,
        "relevance_judge_by_candidates": relevance,
        f"relevance_judge_pruned_after_{PRUNE_AFTER}_tokens": pruned,
    }
    config = RerankConfig(
        candidates=count,
        beta=beta,
        lexical=gamma,
        prune_after=PRUNE_AFTER if count > 1 else None,
        prune_lexical=prune_lexical if count > 1 else None,
    )
    return config, measured


def _prune_relevance(
    chat: Chat,
    tfidf: TfidfCosine,
    pairs: Sequence[Pair],
    prompts: Sequence[ChatPrompt],
    pools: Sequence[Sequence[Generation]],
    count: int,
    beta: float,
) -> dict[str, float | None]:
    """The judge's value of the served replies when the first `count` candidates of each pool are pruned
    after PRUNE_AFTER tokens with each weight of PRUNE_LEXICAL_WEIGHTS. No new decoding: a candidate's first
    tokens and its whole reply are the same pruned or not (its own seed; rows share nothing), so the survivor
    is the candidate whose start ranks first, and the reply is its whole text."""
    starts = chat.evidence_of(
        [
            chat.pool(prompt, [chat.candidate_ids(g)[:PRUNE_AFTER] for g in pool[:count]], pool[0])
            for prompt, pool in zip(prompts, pools, strict=True)
        ]
    )
    found = {}
    for weight in PRUNE_LEXICAL_WEIGHTS:
        texts = [
            chat.reply(prompt, pool[rank(evidence.scores(beta, weight).tolist(), [True] * count)[0]]).text
            for prompt, pool, evidence in zip(prompts, pools, starts, strict=True)
        ]
        found[f"gamma {weight:g}"] = _judge(tfidf, pairs, texts)
    return found


def evaluate_chat(
    chat: Chat,
    chapters: list[str],
    held_out_chapters: int,
    user_dict: str | None = None,
    utterances: list[Utterance] | None = None,
    memory_source: str = "the model's memory.json",
) -> dict:
    """The chat figures of the module docstring, as a JSON-ready dict (the manifest's `chat_evaluation`).
    A model without a memory (written before chat had one) is evaluated with the memory its training
    chapters give, built here; the result says so."""
    if held_out_chapters <= 0 or not chat.characters.characters:
        return {
            "exchanges": 0,
            "reason": "no held-out chapters" if held_out_chapters <= 0 else "no characters",
        }
    if utterances is None:  # `evaluate DIR`: found again as training found them (training passes its own)
        utterances = extract_characters(chapters, user_dict=user_dict).utterances
    training_chapters = len(chapters) - held_out_chapters
    if chat.memory is None:
        memory_source = "built for this evaluation from the training chapters (the model has none)"
        chat = Chat(chat.decoder, chat.characters, chat.max_prompt_chars,
                    build_memory(chapters, utterances, training_chapters, chat.decoder.tokenizer),
                    chat.grounding, chat.rerank)  # fmt: skip
    held = set(range(training_chapters, len(chapters)))
    # B must be a character the chat can play (the extraction keeps speakers with enough utterances).
    found = [pair for pair in exchanges(utterances, held) if chat.characters.find(pair[1].speaker)]
    chosen = _spread(found, MAX_EXCHANGES)
    if not chosen:
        return {"exchanges": 0, "reason": "no two-turn exchanges in the held-out chapters"}
    assert chat.memory is not None
    tfidf = TfidfCosine(chat, chat.memory)

    plain = _generate(chat, chosen, grounded=False, candidates=1)
    served = _generate(chat, chosen, grounded=True, candidates=chat.rerank.candidates)
    grounded_prompts = [chat.render(*_request(pair)) for pair in chosen]
    recalled = [_recalled_text(prompt, chat) for prompt in grounded_prompts]

    # One scoring pass serves the reply costs and response selection: the real reply is the first candidate
    # of its exchange's group, after the plain prompt (previous turn only) and after `B道：“` alone.
    selected = _spread(found, SELECTION_EXCHANGES)
    with_memory = selection_evidence(chat, selected, grounded=True)
    without_memory = _without_memory(chat, selected, with_memory)
    bits_with = np.asarray([-e.with_turn[0] / np.log(2) for e in without_memory])
    bits_without = np.asarray([-e.alone[0] / np.log(2) for e in with_memory])
    tokens = int(sum(e.tokens[0] for e in with_memory))
    helped = int((bits_with < bits_without).sum())
    per_token_with = bits_with.sum() / tokens if tokens else None
    per_token_without = bits_without.sum() / tokens if tokens else None
    real_lengths = [len(chat.decoder.encode(second.text).tokens) for _, second in chosen]
    selection: dict[str, float] = {}
    if len(selected) >= CHOICES:
        rerank = chat.rerank
        selection = {
            "served": r10_at_1([e.scores(rerank.beta, rerank.lexical) for e in with_memory]),
            "tfidf": r10_at_1(_tfidf_scores(tfidf, selected)),
            "character_tfidf": r10_at_1(_character_scores(chat.memory, selected)),
            "lexical_relevance": r10_at_1([e.lexical for e in with_memory]),
            "pmi_without_memory": r10_at_1([e.scores(1.0, 0.0) for e in without_memory]),
        }
    real_texts = [second.text for _, second in chosen]
    return {
        "exchanges": len(chosen),
        "exchanges_found": len(found),
        "held_out_chapters": held_out_chapters,
        "max_tokens": MAX_TOKENS,
        "sampling": {"temperature": TEMPERATURE, "top_k": TOP_K, "seeds": f"0..{len(chosen) - 1}"},
        "closed_within_max_tokens": round(sum(r.finish_reason == "stop" for r in served) / len(chosen), 4),
        "closed_target": CLOSED_TARGET,
        "median_reply_tokens": statistics.median(len(r.generation.tokens) for r in served),
        "median_reply_chars": statistics.median(len(r.text) for r in served),
        "median_real_reply_tokens": statistics.median(real_lengths),
        "real_reply_bits_per_token_with_previous_turn": round(per_token_with, 4) if tokens else None,
        "real_reply_bits_per_token_without_previous_turn": round(per_token_without, 4) if tokens else None,
        "share_of_exchanges_where_the_previous_turn_helped": round(helped / len(selected), 4),
        "selection_exchanges": len(selected),
        "real_reply_tokens": tokens,
        "real_reply_tokens_scored_at_most": MAX_TOKENS,
        "memory": {
            "source": memory_source,
            "exchanges": len(chat.memory),
            "recalled_per_turn": chat.grounding.exchanges,
            "turns_with_recalled_lines": round(
                sum(bool(p.grounding) for p in grounded_prompts) / len(chosen), 4
            ),
        },
        "rerank": {
            "candidates": chat.rerank.candidates,
            "beta": chat.rerank.beta,
            "lexical": chat.rerank.lexical,
            "prune_after": chat.rerank.prune_after,
            "prune_lexical": chat.rerank.prune_lexical,
        },
        "response_selection_r10_at_1": selection,
        "replies": {
            "real": _replies_figures(chat, tfidf, chosen, real_texts, recalled),
            "plain": _generated_figures(chat, tfidf, chosen, plain, recalled),
            "served": _generated_figures(chat, tfidf, chosen, served, recalled),
        },
    }


def format_chat_table(result: dict) -> str:
    if not result.get("exchanges"):
        return f"chat evaluation: none ({result.get('reason', 'no exchanges')})"
    closed = result["closed_within_max_tokens"]
    verdict = "meets" if closed >= result["closed_target"] else "below"
    lines = [
        f"chat evaluation on {result['exchanges']} real two-turn exchanges of the held-out chapters "
        f"(of {result['exchanges_found']} found):",
        f"  replies closing their quote within {result['max_tokens']} tokens  {closed:.1%} "
        f"({verdict} the {result['closed_target']:.0%} target)",
        f"  median reply length                          {result['median_reply_tokens']:g} tokens, "
        f"{result['median_reply_chars']:g} chars (real replies: {result['median_real_reply_tokens']:g} "
        "tokens)",
        "  cost of the real reply, bits per token       "
        f"{result['real_reply_bits_per_token_with_previous_turn']:.3f} with the previous turn, "
        f"{result['real_reply_bits_per_token_without_previous_turn']:.3f} without "
        f"(context helped in {result['share_of_exchanges_where_the_previous_turn_helped']:.0%})",
    ]
    selection = result.get("response_selection_r10_at_1")
    if selection:
        lines.append(
            f"  response selection R10@1 (chance 10%)        served {selection['served']:.1%}"
            + (
                f", its lexical relevance alone {selection['lexical_relevance']:.1%}"
                if "lexical_relevance" in selection
                else ""
            )
            + f"; TF-IDF {selection['tfidf']:.1%} (words), {selection['character_tfidf']:.1%} (characters); "
            f"PMI without memory {selection['pmi_without_memory']:.1%}"
            + (f" ({result['selection_exchanges']} exchanges)" if "selection_exchanges" in result else "")
        )
    replies = result.get("replies")
    if replies:
        memory, rerank = result["memory"], result["rerank"]
        lines += [
            f"  memory: {memory['exchanges']:,} exchanges ({memory['source']}); lines recalled for "
            f"{memory['turns_with_recalled_lines']:.0%} of turns; {rerank['candidates']} candidates"
            + (f" (best kept after {rerank['prune_after']} tokens)" if rerank.get("prune_after") else "")
            + f", beta {rerank['beta']:g}, gamma {rerank['lexical']:g}",
            "  replies            judge picks the turn  copy from turn  copy from recalled  words from turn"
            "  closed  chars",
        ]
        for name in ("real", "plain", "served"):
            row = replies[name]
            closed_cell = f"{row['closed']:.1%}" if "closed" in row else "-"
            judge = "-" if row["relevance_judge"] is None else f"{row['relevance_judge']:.1%}"
            lines.append(
                f"  {name:<18} {judge:>20}  "
                f"{row['median_longest_copy_from_turn']:>14g}  "
                f"{row['median_longest_copy_from_recalled']:>18g}  {row['words_from_turn']:>15.1%}  "
                f"{closed_cell:>6}  {row['median_chars']:>5g}"
            )
    return "\n".join(lines)
