"""The chat evaluation on the real tiny model and its held-out chapter (real jieba, LSTM, extraction)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artifacts import read_manifest
from training.characters import Utterance
from training.chat_evaluation import MAX_GAP_CHARS, exchanges
from training.pipeline import main


def test_exchanges_pair_consecutive_turns_of_different_speakers() -> None:
    def said(speaker: str, chapter: int, start: int, end: int) -> Utterance:
        return Utterance(speaker, "话", chapter, start, end)

    utterances = [
        said("宝玉", 5, 0, 10),
        said("黛玉", 5, 15, 30),  # answers 宝玉
        said("黛玉", 5, 32, 40),  # same speaker again: no exchange
        said("宝钗", 5, 40 + MAX_GAP_CHARS + 1, 80),  # too much narration between
        said("宝玉", 6, 0, 10),  # another chapter
        said("袭人", 4, 0, 10),
        said("麝月", 4, 12, 20),  # not a held-out chapter
    ]
    pairs = exchanges(utterances, {5, 6})
    assert [(a.speaker, b.speaker) for a, b in pairs] == [("宝玉", "黛玉")]


def test_training_keeps_the_chat_evaluation_in_the_manifest(tiny_model_dir: Path) -> None:
    chat = read_manifest(tiny_model_dir)["chat_evaluation"]
    assert chat["exchanges"] >= 1 and chat["max_tokens"] == 60
    assert 0 <= chat["closed_within_max_tokens"] <= 1
    assert chat["real_reply_bits_per_token_with_previous_turn"] > 0
    assert chat["real_reply_bits_per_token_without_previous_turn"] > 0
    assert chat["median_reply_tokens"] <= 60


def test_evaluate_prints_the_chat_figures(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny_model_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Seeded sampling on the same model and chapters: the same figures as at training time.
    assert result["chat"] == read_manifest(tiny_model_dir)["chat_evaluation"]
