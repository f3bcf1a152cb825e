"""`python -m training --corpus ... --out DIR`: the stages in order, then one atomically written model
directory.

prepare (training/prepare.py: corpus, segmentation, split, vocabulary, word2vec) -> speakers
(training/characters.py) -> fit (training/fit.py) -> n-gram mixture (training/mixture.py) -> held-out and chat
evaluation (training/evaluate.py, training/held_out_chat.py) -> the model directory (models/artifacts.py).
docs/architecture.md follows a novel through these stages and describes every file of the model directory.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict
from pathlib import Path

from models.artifacts import (
    CACHE_FILE,
    CHARACTERS_FILE,
    MEMORY_FILE,
    NETWORK_FILE,
    NGRAM_FILE,
    REPORT_FILE,
    USER_DICT_FILE,
    VECTORS_FILE,
    ArtifactError,
    check_writable,
    write_model_dir,
)
from models.cache import ContinuousCache
from models.characters import CharacterList
from models.decoding import Decoder
from models.memory import ExchangeMemory
from models.network import Network
from models.ngram import Mixture
from models.tokenizer import Tokenizer
from training.cache import choose_cache
from training.characters import extract_characters
from training.errors import UsageError
from training.evaluate import evaluate, format_table
from training.fit import FitConfig, train_network
from training.held_out_chat import chat_figures, chat_memory
from training.mixture import choose_mixture
from training.prepare import Prepared, prepare
from training.summary import print_summary
from training.threads import single_blas_thread
from training.vectors_stage import checkpoint_dir_for, word2vec_config


def check_options(args: argparse.Namespace) -> FitConfig | None:
    """Fail on bad options before minutes of segmentation and training; the FitConfig, or None for
    --vectors-only."""
    try:
        # Writable, and nothing foreign to replace; write_model_dir checks again at the end.
        check_writable(args.out)
    except ArtifactError as exc:
        raise UsageError(f"--out {exc}") from exc
    if args.user_dict is not None and not args.user_dict.is_file():
        raise UsageError(f"--user-dict {args.user_dict}: no such file")
    if args.vectors is None:
        word2vec_config(args)
    if args.tokenizer == "char" and args.user_dict is not None:
        raise UsageError("--user-dict applies to the jieba tokenizer only; drop it with --tokenizer char")
    if args.vectors_only:
        return None
    try:
        return FitConfig.from_args(args)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc


def _fit(args: argparse.Namespace, prepared: Prepared, config: FitConfig) -> tuple[Network, dict]:
    if prepared.split_index < 2 or len(prepared.token_ids) - prepared.split_index < 3:
        raise UsageError(
            f"{prepared.corpus.source}: too little text for a training/held-out split "
            f"({len(prepared.token_ids)} tokens); use a longer corpus"
        )
    try:
        result = train_network(
            prepared.token_ids,
            prepared.split_index,
            prepared.vectors,
            config,
            checkpoint_dir_for(args.out),
            args.resume,
        )
    except (ValueError, FloatingPointError) as exc:
        # A missing or mismatched checkpoint, a corpus too short for the settings, or a diverging run
        # (FloatingPointError, "lower --lr"): all the user's to fix, so one line, not a traceback.
        raise UsageError(str(exc)) from exc
    return result.network, result.summary


def _write(
    args: argparse.Namespace,
    manifest: dict,
    prepared: Prepared,
    characters: CharacterList | None,
    network: Network | None,
    mixture: Mixture | None,
    cache: ContinuousCache | None,
    memory: ExchangeMemory | None = None,
) -> None:
    """The model directory, written atomically (models/artifacts.py)."""

    def build(tmp: Path) -> dict:
        with prepared.timings.stage("write"):
            prepared.vectors.save_word2vec_format(tmp / VECTORS_FILE, binary=True)
            if characters is not None:
                characters.save(tmp / CHARACTERS_FILE)
            if memory is not None:
                memory.save(tmp / MEMORY_FILE)
            if network is not None:
                network.save(tmp / NETWORK_FILE)
            if mixture is not None:
                mixture.save(tmp / NGRAM_FILE)
            if cache is not None:
                cache.settings.save(tmp / CACHE_FILE)
            if prepared.user_dict is not None:
                shutil.copyfile(prepared.user_dict, tmp / USER_DICT_FILE)
            if network is not None:
                # Imported here: matplotlib takes a while to load and --vectors-only draws no report.
                from training.report import write_report

                write_report(tmp / REPORT_FILE, manifest)
        return manifest

    try:
        write_model_dir(args.out, build)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from exc


def run_training(args: argparse.Namespace) -> dict:
    """The whole pipeline; returns the manifest written to args.out."""
    fit_config = check_options(args)
    prepared = prepare(args)
    timings = prepared.timings
    manifest: dict = {
        "corpus": {**prepared.corpus.manifest(), "tokens": prepared.segmentation.tokens},
        "segmentation": {
            **prepared.segmentation.settings,
            "cache_hit": prepared.segmentation.cache_hit,
            "name_words": len(prepared.name_words),
        },
        "word2vec": prepared.word2vec,
        "vocabulary": prepared.vocabulary(),
    }
    characters = network = mixture = cache = memory = None
    if fit_config is not None:  # a servable model (--vectors-only writes vectors for other tools)
        # Who speaks, for chat: a novel without quoted dialogue simply has no characters. Found before
        # segmentation when their names became words (--name-words).
        extraction = prepared.extraction
        if extraction is None:
            with timings.stage("characters"):
                extraction = extract_characters(prepared.corpus.chapters, user_dict=args.user_dict)
        characters = extraction.characters
        manifest["characters"] = {
            **characters.summary(),
            "top": [{"name": c.name, "utterances": c.utterances} for c in characters.characters[:10]],
        }
        with timings.stage("fit"):
            network, training_summary = _fit(args, prepared, fit_config)
        manifest["network"] = asdict(network.config)
        manifest["training"] = training_summary
        # After the fit, one BLAS thread (training/threads.py): a second one gains these stages nothing on a
        # quiet machine (evaluate, memory and chat evaluation of 红楼梦: 61.9 s on two, 61.8 s on one), and
        # beside another job OpenBLAS's threads wait for each other (85.4 s against 61.3 s). The fit keeps
        # its threads: there two are faster when the machine is quiet.
        with single_blas_thread():
            if args.ngram_mixture:
                with timings.stage("mixture"):
                    mixture, manifest["mixture"] = choose_mixture(
                        network, prepared.token_ids, prepared.split_index
                    )
            if args.cache:
                with timings.stage("cache"):
                    settings, manifest["cache"] = choose_cache(
                        network, prepared.token_ids, prepared.split_index, mixture
                    )
                    cache = ContinuousCache(settings) if settings is not None else None
            # The model as the server will decode it, for the held-out samples and the chat figures.
            tokenizer = Tokenizer(prepared.user_dict, hmm=args.hmm, mode=args.tokenizer)
            decoder = Decoder(network, prepared.vectors, tokenizer, mixture, cache)
            with timings.stage("evaluate"):
                manifest["evaluation"] = evaluate(
                    decoder,
                    prepared.token_ids,
                    prepared.split_index,
                    prepared.stream.text(held=False),
                    prepared.stream.text(held=True),
                )
            print(format_table(manifest["evaluation"]))
            with timings.stage("memory"):
                utterances = extraction.utterances
                if prepared.user_dict != args.user_dict:
                    # The speakers' names are dictionary words now: read the dialogue with the model's own
                    # dictionary, as `python -m training evaluate` will (the names were found without it).
                    chapters = prepared.corpus.chapters
                    utterances = extract_characters(chapters, user_dict=prepared.user_dict).utterances
                memory = chat_memory(
                    decoder, tokenizer, characters, prepared.corpus.chapters, utterances,
                    prepared.held_out_chapters,
                )  # fmt: skip
                manifest["memory"] = memory.summary()
            with timings.stage("chat_evaluation"):
                manifest["chat_evaluation"] = chat_figures(
                    decoder, characters, prepared.corpus.chapters, prepared.held_out_chapters,
                    prepared.user_dict, memory=memory, utterances=utterances,
                )  # fmt: skip
    # The same dicts, so the "write" stage timed while the directory is built is in manifest.json too.
    manifest["timings"] = timings.seconds
    manifest["cpu_seconds"] = timings.cpu_seconds
    _write(args, manifest, prepared, characters, network, mixture, cache, memory)
    if network is not None:
        shutil.rmtree(checkpoint_dir_for(args.out), ignore_errors=True)  # finished: nothing left to resume
    print_summary(args.out, manifest)
    return manifest
