"""The whole-text pipeline end to end: no leak from the held-out chapters, and the character-level mode."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from river_novel import LINES, river_chapters

from app.main import create_app
from app.settings import Settings
from models.trained import TrainedModel
from models.vocabulary import UNKNOWN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
OTHER_LINES = [
    "城里的钟楼敲了三下，卖糖葫芦的老汉推着车穿过熙熙攘攘的集市。",
    "邮差骑着自行车，把一封盖着外省邮戳的信塞进了铁皮信箱。",
]
FIT = ["--min-count", "2", "--dim", "16", "--w2v-epochs", "2", "--workers", "1", "--epochs", "2"]
FIT += ["--hidden", "12", "--seq-len", "8", "--batch-size", "4", "--time-budget-minutes", "0"]


def _novel(path: Path, held_out_lines: list[str]) -> Path:
    """Eleven training chapters that never change and a twelfth (the held-out one) from held_out_lines."""
    chapters = river_chapters(11)
    held_rng = random.Random(1)
    chapters.append("第12回　尾声\n\n" + "\n".join(held_rng.choice(held_out_lines) for _ in range(12)))
    path.write_text("\n".join(chapters), encoding="utf-8")
    return path


def _train(corpus: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training", "--corpus", str(corpus), "--out", str(out), *FIT, *extra]
    command += ["--cache-dir", str(out.parent / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result


def test_changing_the_held_out_chapters_changes_nothing_learnt(tmp_path: Path) -> None:
    # Up to 6 epochs, stopping at the first validation without a better loss: the plan and the stop are
    # decided on the validation tail of the training chapters, so they too must not change.
    plan = ["--epochs", "6", "--patience", "1", "--min-updates", "0"]
    a = _train(_novel(tmp_path / "a.txt", LINES), tmp_path / "a", *plan)
    _train(_novel(tmp_path / "b.txt", OTHER_LINES), tmp_path / "b", *plan)
    assert "model tokens (rarer words spelled with their characters, none deleted)" in a.stdout
    model_a, model_b = TrainedModel.load(tmp_path / "a"), TrainedModel.load(tmp_path / "b")
    # Vocabulary, word vectors and every network array are identical...
    assert model_a.vectors.words == model_b.vectors.words
    assert np.array_equal(model_a.vectors.matrix, model_b.vectors.matrix)
    with np.load(tmp_path / "a" / "lstm.npz") as arrays_a, np.load(tmp_path / "b" / "lstm.npz") as arrays_b:
        assert sorted(arrays_a.files) == sorted(arrays_b.files)
        for name in arrays_a.files:
            assert np.array_equal(arrays_a[name], arrays_b[name]), name
    # The n-gram mixture too: chosen on the validation tail, its n-gram counted on the training chapters.
    with np.load(tmp_path / "a" / "ngram.npz") as arrays_a, np.load(tmp_path / "b" / "ngram.npz") as arrays_b:
        assert sorted(arrays_a.files) == sorted(arrays_b.files)
        for name in arrays_a.files:
            assert np.array_equal(arrays_a[name], arrays_b[name]), name
    manifest_a, manifest_b = model_a.manifest, model_b.manifest
    assert manifest_a["mixture"] == manifest_b["mixture"]
    # And the continuous cache's weights, chosen on the same tail.
    assert manifest_a["cache"] == manifest_b["cache"] and model_a.cache == model_b.cache
    for key in ("train_loss", "val_loss", "epochs", "best_epoch", "stopped", "steps"):
        # validation is the tail of the training chapters
        assert manifest_a["training"][key] == manifest_b["training"][key], key
    for key in ("min_count", "min_char_count", "size", "words", "split_index", "train"):
        assert manifest_a["vocabulary"][key] == manifest_b["vocabulary"][key], key
    # ...while the evaluation, which reads the held-out chapter, does change.
    assert manifest_a["evaluation"]["model"]["bpc"] != manifest_b["evaluation"]["model"]["bpc"]
    # The second held-out chapter is written in characters the training chapters never use: <unk>, not gone.
    assert manifest_b["evaluation"]["split"]["unk_targets"] > 0
    # Every non-whitespace character of the held-out chapter is scored (the heading's ideographic space
    # is whitespace, which the tokenizer drops).
    held_text = "".join(_held(tmp_path / "b.txt"))
    assert manifest_b["evaluation"]["split"]["held_out_chars"] == sum(not c.isspace() for c in held_text)


def _held(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line for line in text[text.index("第12回") :].splitlines() if line.strip()]


@pytest.fixture(scope="module")
def char_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("char")
    out = root / "model"
    result = _train(_novel(root / "novel.txt", LINES), out, "--tokenizer", "char")
    assert "char tokens" in result.stdout
    return out


def test_char_mode_trains_a_model_of_single_characters(char_model: Path) -> None:
    model = TrainedModel.load(char_model)
    assert model.manifest["segmentation"]["tokenizer"] == "char"
    assert all(len(word) == 1 for word in model.vectors.words if word != UNKNOWN_TOKEN)
    assert model.tokenizer.cut("渔夫 笑了") == list("渔夫笑了")
    evaluation = model.manifest["evaluation"]
    assert evaluation["split"]["targets"] == evaluation["split"]["held_out_chars"]  # a token per character
    assert 0 < evaluation["model"]["bpc"] < 20


def test_char_mode_serves_end_to_end(char_model: Path) -> None:
    with TestClient(create_app(Settings(model_dir=char_model))) as client:
        body = client.post(
            "/generate",
            json={"inputs": "渔夫的孙悟空", "parameters": {"max_new_tokens": 8, "details": True, "seed": 1}},
        ).json()
        assert body["details"]["generated_tokens"] == 8
        assert [token["text"] for token in body["details"]["prefill"]][:3] == ["渔", "夫", "的"]
        assert all(len(token["text"]) == 1 for token in body["details"]["tokens"])
        assert client.get("/info").status_code == 200


def test_evaluate_dir_ends_with_the_bpc_line(char_model: Path) -> None:
    command = [sys.executable, "-m", "training", "evaluate", str(char_model)]
    command += ["--cache-dir", str(char_model.parent / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    recorded = json.loads((char_model / "manifest.json").read_text(encoding="utf-8"))["evaluation"]
    assert last == f"held-out bits per character: {recorded['model']['bpc']:.2f}"
    assert sum(line.startswith("held-out bits per character:") for line in result.stdout.splitlines()) == 1
