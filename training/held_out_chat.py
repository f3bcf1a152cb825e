"""Chat's memory (its ranking chosen on the training chapters' tail) and the chat figures on the held-out
chapters, as the training summary and `evaluate DIR` print them."""

from __future__ import annotations

import math
from pathlib import Path

from models.characters import CharacterList
from models.chat import Chat
from models.decoding import Decoder
from models.memory import ExchangeMemory
from models.relevance import BILINEAR
from models.tokenizer import Tokenizer
from training.characters import Utterance, adjacent_quotes, exchanges
from training.chat_evaluation import evaluate_chat, format_chat_table, tune_rerank
from training.fit import VALIDATION_FRACTION
from training.memory import build_memory
from training.relevance import learn_relevance


def chat_memory(
    decoder: Decoder,
    tokenizer: Tokenizer,
    characters: CharacterList,
    chapters: list[str],
    utterances: list[Utterance],
    held_out: int,
) -> ExchangeMemory:
    """memory.json: the training chapters' exchanges (training/memory.py), the weights of chat's lexical
    relevance learned on those before the tail (training/relevance.py), and the number of candidates, β and
    γ of chat's ranking chosen on the exchanges of the training chapters' tail (the chapters the fit's
    validation slice comes from, where the LSTM's probabilities are those of unseen text), never on the
    held-out ones."""
    training_chapters = len(chapters) - held_out
    memory = build_memory(chapters, utterances, training_chapters, tokenizer)
    tail = max(1, math.ceil(training_chapters * VALIDATION_FRACTION))
    tail_chapters = set(range(training_chapters - tail, training_chapters))
    before_tail = [e for e in memory.exchanges if e.chapter - 1 not in tail_chapters]
    quotes = [
        (chapter + 1, first, second)
        for chapter, first, second in adjacent_quotes(chapters, set(range(training_chapters - tail)))
    ]
    memory.settings["relevance"] = learn_relevance(before_tail, tokenizer.cut, decoder.vectors, quotes)
    chat = Chat(decoder, characters, memory=memory)
    pairs = [pair for pair in exchanges(utterances, tail_chapters) if characters.find(pair[1].speaker)]
    config, measured = tune_rerank(chat, memory, pairs)
    memory.settings["rerank"] = {
        "candidates": config.candidates,
        "beta": config.beta,
        "lexical": config.lexical,
        "prune_after": config.prune_after,
        "prune_lexical": config.prune_lexical,
        "measured": measured,
    }
    learned = memory.settings["relevance"]
    if "bilinear" in learned:
        trial = learned["bilinear"]
        print(
            f"chat relevance, {BILINEAR} (learned on {trial['quote_pairs']:,} adjacent quotes): "
            f"{'kept' if trial['kept'] else 'left out'}, R10@1 cross-validated "
            f"{trial['r10_at_1_cross_validated_with_it']:.1%} with it, "
            f"{trial['r10_at_1_cross_validated_without_it']:.1%} without "
            f"(paired standard error {trial['paired_standard_error']:.1%})"
        )
    if "weights" in learned:
        weights = ", ".join(f"{name} {weight:g}" for name, weight in learned["weights"].items())
        print(
            f"chat relevance: weights {weights} (learned on {learned['measured']['groups']:,} exchanges "
            f"before the tail; R10@1 cross-validated {learned['measured']['r10_at_1_cross_validated']:.1%}, "
            f"the character cosine alone {learned['measured']['r10_at_1_character_grams']:.1%})"
        )
    else:
        print(f"chat relevance: the character cosine alone ({learned['reason']})")
    print(
        f"chat memory: {len(memory):,} exchanges of the training chapters; rerank {config.candidates} "
        f"candidates"
        + (f" (the best kept after {config.prune_after} tokens)" if config.prune_after else "")
        + f", beta {config.beta:g}, gamma {config.lexical:g} (chosen on "
        f"{measured.get('exchanges', len(pairs))} exchanges of the last {tail} training chapters)"
    )
    return memory


def chat_figures(
    decoder: Decoder,
    characters: CharacterList,
    chapters: list[str],
    held_out: int,
    user_dict: Path | None,
    quiet: bool = False,
    memory: ExchangeMemory | None = None,
    utterances: list[Utterance] | None = None,
    memory_source: str = "the model's memory.json",
) -> dict:
    """Chat figures on the held-out chapters (training/chat_evaluation.py), printed unless quiet; decoded as
    the server decodes (with the model's n-gram mixture, continuous cache and memory, when it has them)."""
    chat = Chat(decoder, characters, memory=memory)
    result = evaluate_chat(chat, chapters, held_out, user_dict, utterances, memory_source)
    if not quiet:
        print(format_chat_table(result))
    return result
