"""The vocabulary and a vector for every entry: chosen and trained on the training chapters, or read from
--vectors, or (with --resume) the very vectors the interrupted run trained.

Checkpoints for --resume live in the hidden sibling `.<out name>.checkpoint/` next to --out. It keeps the
word2vec vectors because multi-threaded word2vec is not bit-reproducible and a resumed network must see the
very vectors it started with. The whole directory is removed once the model directory has been written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.vectors import WordVectors
from models.vocabulary import UNKNOWN_TOKEN, choose_vocabulary, with_unknown
from training.errors import UsageError
from training.segment import Segmentation
from training.split import TokenStream, split_held_out, token_stream
from training.word2vec import Word2VecConfig, Word2VecResult, load_vectors, train_word2vec

CHECKPOINT_VECTORS = "vectors.bin"
CHECKPOINT_W2V_SETTINGS = "word2vec.json"


def checkpoint_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoint"


def word2vec_config(args: argparse.Namespace) -> Word2VecConfig:
    """The word2vec settings of the command line; UsageError for a bad one."""
    # --min-count and --min-char-count decide the vocabulary (models/vocabulary.py); word2vec then keeps every
    # token of the finished stream (min_count 1), so every vocabulary entry gets a vector.
    for name in ("min_count", "min_char_count"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)!r}: out of range")
    config = Word2VecConfig(
        dim=args.dim,
        window=args.window,
        negative=args.negative,
        epochs=args.w2v_epochs,
        min_count=1,
        sample=args.sample,
        cbow=not args.skip_gram,
        alpha=0.025 if args.skip_gram else 0.05,  # the C tool's defaults for each architecture
        seed=args.seed,
        workers=args.workers,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return config


def _recount(result: Word2VecResult, stream: TokenStream) -> Word2VecResult:
    """Counts from the training stream (a vectors file stores none), plus the <unk> row if missing."""
    frequency = Counter(t for chapter in stream.train for t in chapter)
    loaded = result.vectors
    counts = np.array([frequency.get(word, 0) for word in loaded.words], dtype=np.int64)
    result.vectors = with_unknown(WordVectors(loaded.words, loaded.matrix, counts))
    return result


def _resumed_vectors(
    args: argparse.Namespace, segmentation: Segmentation, checkpoint_dir: Path
) -> tuple[Word2VecResult, TokenStream]:
    """The vectors the interrupted run saved, refused when the word2vec options changed since."""
    saved = checkpoint_dir / CHECKPOINT_VECTORS
    train_raw, _, _ = split_held_out(segmentation.chapters)
    result = load_vectors(saved, train_raw)
    stream = token_stream(segmentation.chapters, set(result.vectors.words) | {UNKNOWN_TOKEN})
    result = _recount(result, stream)
    settings_file = checkpoint_dir / CHECKPOINT_W2V_SETTINGS
    if settings_file.is_file():
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        requested = asdict(word2vec_config(args))
        changed = [k for k in requested if k != "workers" and k in settings and settings[k] != requested[k]]
        if changed:
            raise UsageError(
                f"--resume: the vectors in {saved} were trained with "
                + ", ".join(f"{k}={settings[k]!r}" for k in changed)
                + "; rerun with those word2vec options, or without --resume to start over"
            )
        result.settings = {**settings, "reused": str(saved)}
    print(f"--resume: reusing the word2vec vectors in {saved}", file=sys.stderr)
    return result, stream


def _save_for_resume(vectors: WordVectors, settings: dict, checkpoint_dir: Path) -> None:
    """Kept beside the network checkpoints so that --resume continues with these exact vectors."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint_dir / f".{CHECKPOINT_VECTORS}.tmp"
    vectors.save_word2vec_format(tmp, binary=True)
    os.replace(tmp, checkpoint_dir / CHECKPOINT_VECTORS)
    (checkpoint_dir / CHECKPOINT_W2V_SETTINGS).write_text(json.dumps(settings), encoding="utf-8")


def vectors_stage(
    args: argparse.Namespace, segmentation: Segmentation, checkpoint_dir: Path
) -> tuple[Word2VecResult, TokenStream]:
    """The vocabulary, the token stream it implies, and a vector for every vocabulary entry.

    With --vectors (or --resume and saved vectors) the file's words are the vocabulary; otherwise it is
    chosen from the training chapters. Either way only the training chapters are counted and embedded."""
    train_raw, _, _ = split_held_out(segmentation.chapters)
    if args.vectors is not None:
        try:
            result = load_vectors(args.vectors, train_raw)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        stream = token_stream(segmentation.chapters, set(result.vectors.words) | {UNKNOWN_TOKEN})
        return _recount(result, stream), stream
    if args.resume and (checkpoint_dir / CHECKPOINT_VECTORS).is_file():
        return _resumed_vectors(args, segmentation, checkpoint_dir)
    config = word2vec_config(args)
    try:
        vocabulary = choose_vocabulary(train_raw, args.min_count, args.min_char_count)
        stream = token_stream(segmentation.chapters, vocabulary)
        result = train_word2vec(stream.train, config)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    result.vectors = with_unknown(result.vectors)
    if not args.vectors_only:
        _save_for_resume(result.vectors, result.settings, checkpoint_dir)
    return result, stream
