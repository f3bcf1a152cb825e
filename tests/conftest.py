"""Shared fixtures: one real small model per test session (real jieba, gensim and the NumPy LSTM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TINY_MODEL_ARGS = [
    "--corpus", "hongloumeng",
    "--max-chars", "60000",
    "--min-count", "3",
    "--dim", "32",
    "--w2v-epochs", "5",
    "--epochs", "2",
    "--hidden", "32",
    "--seq-len", "16",
    "--batch-size", "32",
    # The LSTM alone: the app tests check decoding controls against the network's own scores. The served
    # mixture and cache (the defaults) are covered by tests/models/test_decoding.py,
    # tests/app/test_cache_serving.py, tests/training/test_cli.py and the char-mode model of
    # tests/training/test_pipeline.py, which is trained and served with them.
    "--no-ngram-mixture",
    "--no-cache",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train a small real model once (about 10 s) and return its artifact directory."""
    root = tmp_path_factory.mktemp("tiny-model")
    out = root / "tiny"
    command = [
        sys.executable,
        "-m",
        "training",
        *TINY_MODEL_ARGS,
        "--out",
        str(out),
        "--cache-dir",
        str(root / "cache"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(
            f"training the tiny test model failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return out
