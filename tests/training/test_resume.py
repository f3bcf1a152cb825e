"""kill -9 during epoch 3, then --resume: same epoch count, a valid artifact, and the very same parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from models.trained import TrainedModel
from training.fit import CHECKPOINT_NAME

# Small and single-threaded (BLAS and word2vec) so that an uninterrupted run and a killed-and-resumed run are
# bit-for-bit comparable.
ARGS = [
    "--corpus", "hongloumeng",
    "--max-chars", "40000",
    "--min-count", "3",
    "--dim", "16",
    "--w2v-epochs", "2",
    "--workers", "1",
    "--epochs", "4",
    "--hidden", "48",
    "--seq-len", "16",
    "--batch-size", "4",
    "--time-budget-minutes", "0",
    "--patience", "10",
]  # fmt: skip
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _command(out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training", *ARGS, "--out", str(out), "--cache-dir", str(cache), *extra]


def _checkpoint_epoch(checkpoint: Path) -> int:
    with np.load(checkpoint, allow_pickle=False) as archive:
        return json.loads(str(archive["meta"]))["progress"]["epoch"]


def test_kill_during_epoch_3_then_resume(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference = tmp_path / "reference"
    done = subprocess.run(_command(reference, cache), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "model"
    checkpoint = tmp_path / ".model.checkpoint" / CHECKPOINT_NAME
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(_command(out, cache), env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 600
        while "epoch 3/4" not in log.read_text(errors="replace"):
            assert process.poll() is None, "training ended before epoch 3:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline, "epoch 3 never started"
            time.sleep(0.02)
        process.kill()  # SIGKILL: no cleanup handlers run
        process.wait()
    assert process.returncode == -9
    assert not out.exists(), "a killed run must not leave a model directory"
    assert _checkpoint_epoch(checkpoint) == 2, "the kill was meant to land inside epoch 3"

    resumed = subprocess.run(
        _command(out, cache, "--resume"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 2 of 4" in resumed.stderr
    assert "epoch 1:" not in resumed.stderr and "epoch 3:" in resumed.stderr  # epochs 1-2 were not redone

    model = TrainedModel.load(out)  # hashes, shapes, vectors and tokenizer all valid
    expected = TrainedModel.load(reference)
    assert model.manifest["training"]["epochs"] == 4 == expected.manifest["training"]["epochs"]
    assert model.manifest["training"]["val_loss"] == expected.manifest["training"]["val_loss"]
    for name, value in expected.network.params.items():
        np.testing.assert_array_equal(model.network.params[name], value, err_msg=name)


def test_kill_right_after_the_epoch_line_then_resume(tmp_path: Path) -> None:
    # The "epoch 1:" line used to be printed before checkpoint.npz was durably renamed into
    # place, so a kill at that instant left only checkpoint.npz.tmp and --resume failed.
    cache = tmp_path / "cache"
    out = tmp_path / "model"
    checkpoint = tmp_path / ".model.checkpoint" / CHECKPOINT_NAME
    process = subprocess.Popen(
        _command(out, cache), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen = []
    for line in process.stderr:  # line by line, so the kill follows the epoch line at once
        seen.append(line)
        if line.startswith("epoch 1:"):
            process.kill()
            break
    process.wait()
    assert process.returncode == -9, "".join(seen)[-3000:]
    assert _checkpoint_epoch(checkpoint) == 1

    resumed = subprocess.run(
        _command(out, cache, "--resume"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1 of 4" in resumed.stderr
    assert TrainedModel.load(out).manifest["training"]["epochs"] == 4
