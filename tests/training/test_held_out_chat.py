"""What chat learns for its ranking reads nothing of the held-out chapters (real tiny model, real jieba)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.decoding import Decoder
from models.trained import TrainedModel
from training.characters import extract_characters
from training.corpus import load_corpus
from training.held_out_chat import chat_memory


def test_changing_the_held_out_chapters_changes_nothing_learnt(tiny_model_dir: Path) -> None:
    model = TrainedModel.load(tiny_model_dir)
    recorded = model.manifest["corpus"]
    chapters = load_corpus(recorded["input"], recorded["strip_brackets"], recorded["max_chars"]).chapters
    held_out = model.manifest["vocabulary"]["held_out_chapters"]
    training = len(chapters) - held_out
    utterances = extract_characters(chapters).utterances
    decoder = Decoder(model.network, model.vectors, model.tokenizer)
    learnt = chat_memory(decoder, model.tokenizer, model.characters, chapters, utterances, held_out)

    # The held-out chapters rewritten: other text, and every attributed answer there says something else.
    changed_chapters = chapters[:training] + [text[::-1] for text in chapters[training:]]
    changed_utterances = [
        u if u.chapter < training else replace(u, text="我不知道，你问别人去。") for u in utterances
    ]
    assert changed_utterances != utterances
    again = chat_memory(
        decoder, model.tokenizer, model.characters, changed_chapters, changed_utterances, held_out
    )
    assert again.to_json() == learnt.to_json()
    # And the learnt part is there to compare: the relevance's weights and the ranking's settings.
    assert learnt.settings["relevance"].get("weights") and learnt.settings["rerank"]["measured"]
