"""The chat evaluation on the real tiny model and its held-out chapter (real jieba, LSTM, extraction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifacts import read_manifest
from models.rerank import Evidence
from training.characters import MAX_GAP_CHARS, Utterance, exchanges
from training.chat_evaluation import MIN_WITH_TURN_WEIGHT, fit_beta_gamma
from training.cli import main
from training.response_selection import CHOICES, r10_at_1


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


def test_evaluate_with_a_rebuilt_memory_builds_what_training_built(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny model's memory was built by this code: rebuilt, it ranks and scores exactly the same."""
    assert main(["evaluate", str(tiny_model_dir), "--json", "--rebuild-memory"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)["chat"]
    assert "chat relevance: weights" in err and "chat memory:" in err  # the JSON on stdout stays parseable
    assert result["memory"].pop("source") == "rebuilt for this evaluation"
    recorded = read_manifest(tiny_model_dir)["chat_evaluation"]
    assert recorded["memory"].pop("source") == "the model's memory.json"
    assert result == recorded


def test_reply_cost_is_scored_with_the_served_mixture(tiny_model_dir: Path) -> None:
    """With an n-gram mixture, the chat evaluation charges the reply what the served λ·LSTM + (1 − λ)·n-gram
    distribution gives it (as the held-out bpc does), not what the LSTM alone would."""
    import numpy as np

    from models.chat import Chat
    from models.decoding import Decoder
    from models.ngram import KneserNey, Mixture
    from models.rerank import continuation_log_probs
    from models.trained import TrainedModel

    model = TrainedModel.load(tiny_model_dir)
    plain = Decoder(model.network, model.vectors, model.tokenizer)
    stream = np.asarray(plain.encode("宝玉笑道：“你们又来了。”黛玉道：“我不去。”" * 20).ids) + 1
    mixture = Mixture(KneserNey.fit(stream, len(model.vectors) + 1, 3), 0.4)
    mixed = Decoder(model.network, model.vectors, model.tokenizer, mixture)
    context, reply = "宝玉笑道：“你们又来了。”黛玉道：“", "我不去"

    context_ids = mixed.encode(context).ids
    reply_ids = mixed.encode(reply + Chat(mixed, model.characters).close).ids
    bits = -continuation_log_probs(mixed, context_ids, [reply_ids])[0].sum() / np.log(2)
    ids = context_ids + reply_ids
    outputs, _ = model.network.forward_sequence(np.asarray(ids[:-1])[None, :])
    # As the held-out bpc counts it: the mixture's own distribution, <unk> keeping its probability.
    histories = mixture.histories([ids[:i] for i in range(len(context_ids), len(ids))])
    log_p = mixture.log_probs(model.network.scores(outputs[0, len(context_ids) - 1 :]), histories)
    expected = -sum(log_p[i, t] for i, t in enumerate(ids[len(context_ids) :])) / np.log(2)
    assert bits == pytest.approx(expected, rel=1e-4)
    alone = -continuation_log_probs(plain, context_ids, [reply_ids])[0].sum() / np.log(2)
    assert abs(alone - bits) > 1e-3  # the mixture changes the charge: the test can tell the two apart


def test_response_selection_relevance_and_copy_figures_with_enough_exchanges(tiny_model_dir: Path) -> None:
    """With three held-out chapters the tiny model has enough exchanges for R10@1 and the judge."""
    from models.chat import Chat
    from models.decoding import Decoder
    from models.trained import TrainedModel
    from training.chat_evaluation import evaluate_chat, format_chat_table
    from training.corpus import load_corpus

    model = TrainedModel.load(tiny_model_dir)
    recorded = model.manifest["corpus"]
    chapters = load_corpus(recorded["input"], recorded["strip_brackets"], recorded["max_chars"]).chapters
    chat = Chat(Decoder(model.network, model.vectors, model.tokenizer), model.characters, memory=model.memory)
    result = evaluate_chat(chat, chapters, 3)
    assert result["exchanges"] >= 10
    selection = result["response_selection_r10_at_1"]
    assert set(selection) == {"served", "tfidf", "character_tfidf", "lexical_relevance", "pmi_without_memory"}
    assert result["selection_exchanges"] >= result["exchanges"]
    assert all(0 <= value <= 1 for value in selection.values())
    for name in ("real", "plain", "served"):
        row = result["replies"][name]
        assert 0 <= row["relevance_judge"] <= 1 and row["median_longest_copy_from_turn"] >= 0
    assert 0 <= result["replies"]["served"]["closed"] <= 1
    table = format_chat_table(result)
    assert "R10@1" in table and "judge picks the turn" in table


def test_response_selection_reads_a_real_reply_by_its_own_characters(tiny_model_dir: Path) -> None:
    """A real reply's rare character is <unk> to the model, never to the lexical relevance: the served scorer
    reads generated replies, which never hold <unk>, so a real one is read as the novel wrote it."""
    from models.chat import Chat
    from models.decoding import Decoder
    from models.trained import TrainedModel
    from training.chat_evaluation import selection_evidence

    model = TrainedModel.load(tiny_model_dir)
    chat = Chat(Decoder(model.network, model.vectors, model.tokenizer), model.characters, memory=model.memory)
    assert chat.relevance is not None
    first, second = (c.name for c in model.characters.characters[:2])
    said = [f"你可认得这个龘字{k}？" for k in range(10)]
    answers = ["龘字我认得。", *(f"今日天气{k}好。" for k in range(1, 10))]
    pairs = [
        (Utterance(first, turn, 0, 0, 0), Utterance(second, answer, 0, 0, 0))
        for turn, answer in zip(said, answers, strict=True)
    ]
    assert model.tokenizer.cut("龘")[0] not in model.vectors.index  # the model reads it as <unk>
    found = selection_evidence(chat, pairs, grounded=False)[0]
    own = chat.relevance.scores(said[0], answers[:1])[0]
    as_the_model_reads_it = chat.relevance.scores(said[0], ["<unk>字我认得。"])[0]
    assert found.lexical[0] == pytest.approx(own) and own != pytest.approx(as_the_model_reads_it)


def _evidence(groups: int, pmi_weight: float, seed: int) -> list[Evidence]:
    """Response selection's groups whose real reply (first) was chosen by the softmax of the lexical
    relevance plus `pmi_weight` times the per-token mutual information; the replies' costs otherwise noise."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(groups):
        tokens = rng.integers(5, 30, size=CHOICES).astype(float)
        alone = -rng.uniform(2, 6, size=CHOICES) * tokens
        with_turn = alone + rng.normal(0, 0.5, size=CHOICES) * tokens
        lexical = rng.normal(0, 1.5, size=CHOICES)
        score = lexical + pmi_weight * (with_turn - alone) / tokens
        chosen = rng.choice(CHOICES, p=np.exp(score - score.max()) / np.exp(score - score.max()).sum())
        order = [chosen, *(i for i in range(CHOICES) if i != chosen)]
        found.append(Evidence(with_turn[order], alone[order], tokens[order], lexical[order]))
    return found


def test_beta_and_gamma_leave_out_the_model_when_it_adds_nothing_to_the_relevance() -> None:
    found = _evidence(150, pmi_weight=0.0, seed=1)
    beta, gamma, logit = fit_beta_gamma(found)
    assert logit["penalty"] == "inf" and beta == 0.0 and gamma == pytest.approx(1 / MIN_WITH_TURN_WEIGHT)
    # The served score then ranks as the lexical relevance does.
    assert r10_at_1([e.scores(beta, gamma) for e in found]) == r10_at_1([e.lexical for e in found])


def test_beta_and_gamma_keep_the_mutual_information_when_it_helps() -> None:
    found = _evidence(300, pmi_weight=3.0, seed=2)
    beta, gamma, logit = fit_beta_gamma(found)
    assert logit["penalty"] != "inf" and beta == pytest.approx(1.0, abs=0.2) and 0.1 < gamma < 1.0
    assert r10_at_1([e.scores(beta, gamma) for e in found]) > r10_at_1([e.lexical for e in found]) + 0.05
