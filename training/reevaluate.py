"""`python -m training evaluate DIR`: rebuild a saved model's held-out stream from its corpus (same tokenizer,
same vectors, same split) and evaluate it again, as training did."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from models.artifacts import ArtifactError
from models.cache import ContinuousCache
from models.decoding import Decoder
from models.trained import TrainedModel
from training.characters import extract_characters
from training.corpus import CorpusError, load_corpus
from training.errors import UsageError
from training.evaluate import evaluate, format_table
from training.held_out_chat import chat_figures, chat_memory
from training.segment import segment_corpus
from training.split import ids_and_split, token_stream
from training.threads import single_blas_thread


def run_evaluate(args: argparse.Namespace) -> dict:
    """The held-out table (and chat figures) of args.model_dir, printed as text or JSON and returned."""
    with single_blas_thread():  # the stages after the fit, as training runs them (training/threads.py)
        return _evaluate_model(args)


def _evaluate_model(args: argparse.Namespace) -> dict:
    try:
        model = TrainedModel.load(args.model_dir)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from exc
    recorded = model.manifest.get("corpus") or {}
    source = args.corpus or recorded.get("input")
    if not source:
        raise UsageError(
            f"{args.model_dir}: the manifest does not say which corpus it was trained on; pass --corpus"
        )
    try:
        kept = bool((recorded.get("cleaning") or {}).get("kept", False))
        corpus = load_corpus(source, recorded.get("strip_brackets"), recorded.get("max_chars"), kept)
    except CorpusError as exc:
        raise UsageError(f"{exc} (needed to re-evaluate {args.model_dir}; pass --corpus)") from exc
    if corpus.sha256 != recorded.get("sha256"):
        raise UsageError(
            f"{corpus.source}: sha256 differs from the one {args.model_dir} was trained on; "
            "pass --corpus with the original file"
        )
    segmentation = segment_corpus(corpus.chapters, model.tokenizer, args.cache_dir)
    stream = token_stream(segmentation.chapters, model.vectors.index)
    token_ids, split_index = ids_and_split(stream, model.vectors)
    cache = ContinuousCache(model.cache) if model.cache is not None else None
    decoder = Decoder(model.network, model.vectors, model.tokenizer, model.mixture, cache)
    result = evaluate(decoder, token_ids, split_index, stream.text(held=False), stream.text(held=True))
    held_out = (model.manifest.get("vocabulary") or {}).get("held_out_chapters", 0)
    memory, utterances = model.memory, None
    if args.rebuild_memory and held_out > 0 and model.characters.characters:
        utterances = extract_characters(corpus.chapters, user_dict=model.tokenizer.user_dict).utterances
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # the JSON stays parseable
            memory = chat_memory(
                decoder, model.tokenizer, model.characters, corpus.chapters, utterances, held_out
            )
    # Printed before the held-out table: scripts read the bpc from the table's last line.
    chat = chat_figures(
        decoder,
        model.characters,
        corpus.chapters,
        held_out,
        model.tokenizer.user_dict,
        quiet=args.json,
        memory=memory,
        utterances=utterances,
        memory_source="rebuilt for this evaluation" if utterances is not None else "the model's memory.json",
    )
    result = {**result, "chat": chat}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_table(result))
    return result
