"""The held-out split and the model's token stream, made on the tokenizer's output before anything is learnt.

Held out: the last 10% of chapters (at least one when there are two or more); a corpus without chapter
headings holds out its last 10% of tokens. The vocabulary (models/vocabulary.py: words >= --min-count in the
TRAINING chapters, the characters of the other words >= --min-char-count, else <unk>), word2vec and the
network see the training chapters only. Token ids are the word2vec row of each model token, in reading order;
nothing is deleted, so the held-out stream covers every non-whitespace character of the held-out chapters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.vectors import WordVectors
from models.vocabulary import spell, stream_shares

HELD_OUT_FRACTION = 0.1


@dataclass
class TokenStream:
    """The corpus as model tokens, split before anything is learnt; raw = the tokenizer's tokens."""

    train_raw: list[list[str]]
    held_raw: list[list[str]]
    train: list[list[str]]
    held: list[list[str]]
    held_chapters: int
    train_shares: dict
    held_shares: dict

    def text(self, held: bool) -> str:
        """The real text (every non-whitespace character) of one side of the split."""
        return "".join("".join(chapter) for chapter in (self.held_raw if held else self.train_raw))


def split_held_out(chapters: list[list[str]]) -> tuple[list[list[str]], list[list[str]], int]:
    """(training chapters, held-out chapters, held-out chapter count) of tokenizer output: the last 10% of
    chapters, or the last 10% of the tokens of a corpus that is one chapter."""
    if len(chapters) >= 2:
        held = max(1, round(HELD_OUT_FRACTION * len(chapters)))
        return chapters[: len(chapters) - held], chapters[len(chapters) - held :], held
    tokens = chapters[0] if chapters else []
    cut = int(len(tokens) * (1 - HELD_OUT_FRACTION))
    return [tokens[:cut]], [tokens[cut:]], 0


def token_stream(chapters: list[list[str]], vocabulary: set[str] | dict[str, int]) -> TokenStream:
    """Split, then spell both sides with the vocabulary (which the training side alone decided)."""
    train_raw, held_raw, held = split_held_out(chapters)
    train = [spell(chapter, vocabulary) for chapter in train_raw]
    held_out = [spell(chapter, vocabulary) for chapter in held_raw]

    def shares(raw: list[list[str]], spelled: list[list[str]]) -> dict:
        return stream_shares([t for c in raw for t in c], [t for c in spelled for t in c], vocabulary)

    return TokenStream(
        train_raw, held_raw, train, held_out, held, shares(train_raw, train), shares(held_raw, held_out)
    )


def ids_and_split(stream: TokenStream, vectors: WordVectors) -> tuple[np.ndarray, int]:
    """Token ids in reading order (every model token has one) and the index of the first held-out id."""
    index = vectors.index
    train = [index[t] for chapter in stream.train for t in chapter]
    held = [index[t] for chapter in stream.held for t in chapter]
    return np.array(train + held, dtype=np.int32), len(train)
