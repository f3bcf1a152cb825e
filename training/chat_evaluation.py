"""Chat evaluation on the held-out chapters: does the model hold a conversation in form?

Real two-turn exchanges come from the held-out chapters' attributed dialogue (training/characters.py): one
character speaks (A) and another answers (B) right after, with at most a short stretch of narration
between. Each exchange becomes a chat request exactly as the server sees it (models/chat.py: A's words as
the user's turn with user_character A, B as the character), and we measure:

* **closed within 60 tokens**: the share of generated replies that close their quote (finish "stop")
  within 60 tokens, seeded sampling at the playground's settings (temperature 0.8, top-k 20); the target is
  at least 95%, since an unclosed reply is cut at max_tokens mid-sentence;
* **median reply length** of the generated replies, in tokens and in characters, next to the real replies';
* **does the conversation help**: the model's cost (bits per token, natural-probability softmax at
  temperature 1) of B's *real* reply, closing quote included, given the rendered previous turn
  (`A道：“…”B道：“`) versus given no previous turn (`B道：“`). Both costs are over the same tokens (the
  tokens the model's vocabulary covers, as the decoder reads them), so the difference is the context's.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np

from models.chat import Chat, Message
from models.decoding import SamplingParams
from training.characters import Utterance, extract_characters

MAX_TOKENS = 60
MAX_GAP_CHARS = 30  # narration allowed between A's closing quote and B's opening quote
MAX_EXCHANGES = 200  # evenly spread over the held-out chapters, to bound the time (~10 s)
TEMPERATURE = 0.8
TOP_K = 20
CLOSED_TARGET = 0.95


def exchanges(utterances: list[Utterance], chapters: set[int]) -> list[tuple[Utterance, Utterance]]:
    """(A, B) pairs: consecutive attributed utterances in one held-out chapter, different speakers, B opened
    within MAX_GAP_CHARS after A closed."""
    pairs = []
    ordered = sorted((u for u in utterances if u.chapter in chapters), key=lambda u: (u.chapter, u.start))
    for first, second in itertools.pairwise(ordered):
        if (
            first.chapter == second.chapter
            and first.speaker != second.speaker
            and 0 <= second.start - first.end <= MAX_GAP_CHARS
            and first.text.strip()
            and second.text.strip()
        ):
            pairs.append((first, second))
    return pairs


def _spread(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _reply_bits(chat: Chat, context: str, reply: str) -> tuple[float, int]:
    """Total −log2 p of the reply's tokens after the context, and how many tokens that is."""
    decoder = chat.decoder
    context_ids = decoder.encode(context).ids
    reply_ids = decoder.encode(reply + chat.close).ids
    if not reply_ids:
        return 0.0, 0
    ids = np.asarray(context_ids + reply_ids, dtype=np.int64)[None, :]
    outputs, _ = decoder.network.forward_sequence(ids[:, :-1])
    logits = decoder.network.scores(outputs[0, len(context_ids) - 1 :]).astype(np.float64)
    if decoder.mixture is not None:
        # Score the reply with the distribution the server samples from (λ·LSTM + (1 − λ)·n-gram).
        history = ids[0].tolist()
        log_probabilities = decoder.mixture.log_probs(
            logits,
            decoder.mixture.histories([history[: len(context_ids) + i] for i in range(len(reply_ids))]),
        )
    else:
        logits -= logits.max(axis=1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = np.asarray(reply_ids)
    nats = -log_probabilities[np.arange(len(targets)), targets].sum()
    return float(nats / np.log(2)), len(targets)


def evaluate_chat(
    chat: Chat, chapters: list[str], held_out_chapters: int, user_dict: str | None = None
) -> dict:
    """The chat figures of the module docstring, as a JSON-ready dict (the manifest's `chat_evaluation`)."""
    if held_out_chapters <= 0 or not chat.characters.characters:
        return {
            "exchanges": 0,
            "reason": "no held-out chapters" if held_out_chapters <= 0 else "no characters",
        }
    extraction = extract_characters(chapters, user_dict=user_dict)
    held = set(range(len(chapters) - held_out_chapters, len(chapters)))
    # B must be a character the chat can play (the extraction keeps speakers with enough utterances).
    found = [pair for pair in exchanges(extraction.utterances, held) if chat.characters.find(pair[1].speaker)]
    chosen = _spread(found, MAX_EXCHANGES)
    if not chosen:
        return {"exchanges": 0, "reason": "no two-turn exchanges in the held-out chapters"}
    closed = 0
    lengths: list[int] = []
    reply_chars: list[int] = []
    with_context = without_context = 0.0
    tokens = 0
    helped = 0
    for index, (first, second) in enumerate(chosen):
        character = second.speaker
        reply = chat.respond(
            [Message("user", first.text)],
            SamplingParams(
                max_new_tokens=MAX_TOKENS, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, seed=index
            ),
            character=character,
            user_character=first.speaker,
        )
        closed += reply.finish_reason == "stop"
        lengths.append(len(reply.generation.tokens))
        reply_chars.append(len(reply.text))
        prompt = reply.prompt.text
        alone = chat.opening(chat.characters.find(character))  # only `B道：“`
        bits_with, n = _reply_bits(chat, prompt, second.text)
        bits_without, _ = _reply_bits(chat, alone, second.text)
        with_context += bits_with
        without_context += bits_without
        tokens += n
        helped += bits_with < bits_without
    real_lengths = [len(chat.decoder.encode(second.text).tokens) for _, second in chosen]
    per_token_with = with_context / tokens if tokens else None
    per_token_without = without_context / tokens if tokens else None
    return {
        "exchanges": len(chosen),
        "exchanges_found": len(found),
        "held_out_chapters": held_out_chapters,
        "max_tokens": MAX_TOKENS,
        "sampling": {"temperature": TEMPERATURE, "top_k": TOP_K, "seeds": f"0..{len(chosen) - 1}"},
        "closed_within_max_tokens": round(closed / len(chosen), 4),
        "closed_target": CLOSED_TARGET,
        "median_reply_tokens": statistics.median(lengths),
        "median_reply_chars": statistics.median(reply_chars),
        "median_real_reply_tokens": statistics.median(real_lengths),
        "real_reply_bits_per_token_with_previous_turn": round(per_token_with, 4) if tokens else None,
        "real_reply_bits_per_token_without_previous_turn": round(per_token_without, 4) if tokens else None,
        "share_of_exchanges_where_the_previous_turn_helped": round(helped / len(chosen), 4),
        "real_reply_tokens": tokens,
    }


def format_chat_table(result: dict) -> str:
    if not result.get("exchanges"):
        return f"chat evaluation: none ({result.get('reason', 'no exchanges')})"
    closed = result["closed_within_max_tokens"]
    verdict = "meets" if closed >= result["closed_target"] else "below"
    return "\n".join(
        [
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
    )
