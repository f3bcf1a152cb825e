"""The chat figures on the held-out chapters, as the training summary and `evaluate DIR` print them."""

from __future__ import annotations

from pathlib import Path

from models.characters import CharacterList
from models.chat import Chat
from models.decoding import Decoder
from training.chat_evaluation import evaluate_chat, format_chat_table


def chat_figures(
    decoder: Decoder,
    characters: CharacterList,
    chapters: list[str],
    held_out: int,
    user_dict: Path | None,
    quiet: bool = False,
) -> dict:
    """Chat figures on the held-out chapters (training/chat_evaluation.py), printed unless quiet; decoded as
    the server decodes (with the model's n-gram mixture and continuous cache, when it has them)."""
    chat = Chat(decoder, characters)
    result = evaluate_chat(chat, chapters, held_out, user_dict)
    if not quiet:
        print(format_chat_table(result))
    return result
