"""`python -m training`: novel -> corpus -> jieba tokens -> word2vec -> NumPy LSTM -> one model directory.

Stages and where they live: training/corpus.py (read, detect encoding, chapters), training/segment.py (jieba,
cached), training/word2vec.py (gensim or --vectors), training/fit.py and training/evaluate.py (the network),
models/artifacts.py (the atomic model directory). User errors print one line `error: ...` and exit with 2.

Held-out split (DESIGN §8): the last 10% of chapters (at least one when there are two or more); a corpus
without chapter headings holds out its last 10% of tokens. Token ids are the word2vec row of each token, in
reading order, with out-of-vocabulary tokens removed (as the reference article does).

Checkpoints for --resume live in the hidden sibling `.<out name>.checkpoint/` next to --out. It also keeps the
word2vec vectors, because multi-threaded word2vec is not bit-reproducible and a resumed network must see the
very vectors it started with. It is removed once the model directory has been written.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.artifacts import ArtifactError, check_writable, write_model_dir
from models.tokenizer import USER_DICT_FILENAME, Tokenizer
from models.vectors import WordVectors
from training.corpus import BUILTIN_CORPORA, Corpus, CorpusError, load_corpus
from training.segment import Segmentation, default_cache_dir, segment_corpus
from training.word2vec import Word2VecConfig, Word2VecResult, load_vectors, train_word2vec

HELD_OUT_FRACTION = 0.1
VECTORS_FILE = "vectors.bin"
NETWORK_FILE = "lstm.npz"
REPORT_FILE = "report.png"
CHECKPOINT_VECTORS = "vectors.bin"
CHECKPOINT_W2V_SETTINGS = "word2vec.json"


class UsageError(Exception):
    """A problem with the user's input or options; reported as one line, exit code 2, no traceback."""


# --------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    w2v = Word2VecConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a next-word model on a Chinese novel: jieba segmentation, gensim word2vec and a "
        "NumPy LSTM, written atomically to one model directory. `python -m training evaluate DIR` "
        "re-evaluates a saved model.",
    )
    data = parser.add_argument_group("corpus and segmentation")
    data.add_argument(
        "--corpus",
        required=True,
        help="a .txt file (any of UTF-8, UTF-8 BOM, UTF-16, GB18030/GBK, Big5), a directory of .txt files "
        f"(read in name order), or a built-in corpus: {', '.join(BUILTIN_CORPORA)}",
    )
    data.add_argument(
        "--out", required=True, type=Path, help="model directory to write (replaced atomically)"
    )
    data.add_argument(
        "--max-chars", type=int, help="use only the first N characters (after normalisation), for quick runs"
    )
    brackets = data.add_mutually_exclusive_group()
    brackets.add_argument(
        "--strip-brackets",
        dest="strip_brackets",
        action="store_const",
        const=True,
        default=None,
        help="remove bracketed commentary 【…】 (default for hongloumeng)",
    )
    brackets.add_argument(
        "--keep-brackets",
        dest="strip_brackets",
        action="store_const",
        const=False,
        help="keep 【…】 text (default for other corpora)",
    )
    data.add_argument(
        "--user-dict", type=Path, help="jieba user dictionary (UTF-8, 'word [freq] [tag]' lines)"
    )
    data.add_argument(
        "--hmm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="jieba HMM discovery of unknown words (default on)",
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where segmented token files are cached (default %(default)s)",
    )
    vectors = parser.add_argument_group("word2vec (defaults: the reference C tool's command line)")
    vectors.add_argument(
        "--vectors", type=Path, help="use this word2vec C-format .bin/.txt instead of training"
    )
    vectors.add_argument("--dim", type=int, default=w2v.dim, help="vector size (default %(default)s)")
    vectors.add_argument(
        "--window", type=int, default=w2v.window, help="context window (default %(default)s)"
    )
    vectors.add_argument(
        "--negative", type=int, default=w2v.negative, help="negative samples (default %(default)s)"
    )
    vectors.add_argument(
        "--w2v-epochs", type=int, default=w2v.epochs, help="word2vec iterations (default %(default)s)"
    )
    vectors.add_argument(
        "--min-count", type=int, default=w2v.min_count, help="drop rarer words (default %(default)s)"
    )
    vectors.add_argument(
        "--sample", type=float, default=w2v.sample, help="down-sampling threshold (default %(default)s)"
    )
    vectors.add_argument(
        "--skip-gram", action="store_true", help="skip-gram instead of CBOW (the C tool's -cbow 0)"
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--seed", type=int, default=1, help="random seed for word2vec and the network (default 1)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes/threads for segmentation and word2vec (0 = all cores)",
    )
    run.add_argument(
        "--vectors-only", action="store_true", help="stop after word2vec (vectors.bin and manifest.json)"
    )
    try:
        from training.fit import add_fit_arguments
    except ImportError:  # the network stage is optional for --vectors-only work
        run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    else:
        add_fit_arguments(parser)
    return parser


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training evaluate",
        description="Re-evaluate a saved model directory on its corpus's held-out chapters (DESIGN §8).",
    )
    parser.add_argument("model_dir", type=Path, help="model directory written by `python -m training`")
    parser.add_argument(
        "--corpus", help="the corpus, if it moved since training (its sha256 must match the manifest)"
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="segmentation cache")
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    return parser


# ------------------------------------------------------------------------------------------------ stages
@dataclass
class Prepared:
    """Everything up to the network: text, tokens, vectors and the id stream with its split."""

    corpus: Corpus
    segmentation: Segmentation
    vectors: WordVectors
    word2vec: dict
    token_ids: np.ndarray
    split_index: int
    held_out_chapters: int
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def vocabulary(self) -> dict:
        tokens = self.segmentation.tokens
        return {
            "size": len(self.vectors),
            "dim": self.vectors.dim,
            "tokens_in_vocab": len(self.token_ids),
            "oov_rate": round(1 - len(self.token_ids) / tokens, 5) if tokens else None,
            "split_index": self.split_index,
            "held_out_chapters": self.held_out_chapters,
            "held_out_tokens": len(self.token_ids) - self.split_index,
        }


def ids_and_split(chapters: list[list[str]], vectors: WordVectors) -> tuple[np.ndarray, int, int]:
    """Token ids in reading order (OOV removed), the index of the first held-out id, held-out chapters."""
    index = vectors.index
    per_chapter = [
        np.array([index[t] for t in chapter if t in index], dtype=np.int32) for chapter in chapters
    ]
    token_ids = np.concatenate(per_chapter) if per_chapter else np.zeros(0, dtype=np.int32)
    if len(chapters) >= 2:
        held = max(1, round(HELD_OUT_FRACTION * len(chapters)))
        split_index = int(sum(len(ids) for ids in per_chapter[: len(chapters) - held]))
    else:
        held = 0
        split_index = int(len(token_ids) * (1 - HELD_OUT_FRACTION))
    return token_ids, split_index, held


def _now() -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds of this process and its finished children (segmentation workers)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return time.perf_counter(), sum(usage.ru_utime + usage.ru_stime for usage in usages)


def _timed(timings: dict[str, dict[str, float]], name: str, started: tuple[float, float]) -> None:
    # CPU seconds are recorded next to wall seconds because this machine is often shared: they show what a
    # stage costs independently of what else was running.
    wall, cpu = _now()
    timings["seconds"][name] = round(wall - started[0], 2)
    timings["cpu_seconds"][name] = round(cpu - started[1], 2)


def checkpoint_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoint"


def _word2vec_config(args: argparse.Namespace) -> Word2VecConfig:
    config = Word2VecConfig(
        dim=args.dim,
        window=args.window,
        negative=args.negative,
        epochs=args.w2v_epochs,
        min_count=args.min_count,
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


def _vectors_stage(
    args: argparse.Namespace, segmentation: Segmentation, checkpoint_dir: Path
) -> Word2VecResult:
    saved = checkpoint_dir / CHECKPOINT_VECTORS
    if args.vectors is not None:
        try:
            return load_vectors(args.vectors, segmentation.chapters)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    if args.resume and saved.is_file():
        result = load_vectors(saved, segmentation.chapters)
        settings_file = checkpoint_dir / CHECKPOINT_W2V_SETTINGS
        if settings_file.is_file():
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
            requested = asdict(_word2vec_config(args))
            changed = [
                k for k in requested if k != "workers" and k in settings and settings[k] != requested[k]
            ]
            if changed:
                raise UsageError(
                    f"--resume: the vectors in {saved} were trained with "
                    + ", ".join(f"{k}={settings[k]!r}" for k in changed)
                    + "; rerun with those word2vec options, or without --resume to start over"
                )
            result.settings = {**settings, "reused": str(saved)}
        print(f"--resume: reusing the word2vec vectors in {saved}", file=sys.stderr)
        return result
    try:
        result = train_word2vec(segmentation.chapters, _word2vec_config(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not args.vectors_only:
        # Kept beside the network checkpoints so that --resume continues with these exact vectors.
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_dir / f".{CHECKPOINT_VECTORS}.tmp"
        result.vectors.save_word2vec_format(tmp, binary=True)
        os.replace(tmp, saved)
        (checkpoint_dir / CHECKPOINT_W2V_SETTINGS).write_text(json.dumps(result.settings), encoding="utf-8")
    return result


def prepare(args: argparse.Namespace, progress: bool = True) -> Prepared:
    """Corpus, segmentation, vectors and the id stream: everything --vectors-only needs."""
    timings: dict[str, dict[str, float]] = {"seconds": {}, "cpu_seconds": {}}
    started = _now()
    try:
        corpus = load_corpus(args.corpus, strip_brackets=args.strip_brackets, max_chars=args.max_chars)
    except CorpusError as exc:
        raise UsageError(str(exc)) from exc
    _timed(timings, "corpus", started)

    started = _now()
    try:
        tokenizer = Tokenizer(args.user_dict, hmm=args.hmm)
        if args.user_dict is not None:
            # A bad user dictionary fails here, as a usage error, not inside a worker. Without one the
            # dictionary is loaded only when there is something to cut (not on a cache hit: it takes ~1 s).
            tokenizer.cut("")
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    segmentation = segment_corpus(corpus.chapters, tokenizer, args.cache_dir, args.workers, progress)
    _timed(timings, "segmentation", started)
    if segmentation.tokens == 0:
        raise UsageError(f"{corpus.source}: segmentation produced no tokens")

    started = _now()
    w2v = _vectors_stage(args, segmentation, checkpoint_dir_for(args.out))
    _timed(timings, "word2vec", started)

    token_ids, split_index, held = ids_and_split(segmentation.chapters, w2v.vectors)
    return Prepared(corpus, segmentation, w2v.vectors, w2v.settings, token_ids, split_index, held, timings)


def _check_output(out: Path) -> None:
    # Checked before minutes of segmentation and training (writable, and nothing foreign to replace), and
    # again by write_model_dir at the end.
    try:
        check_writable(out)
    except ArtifactError as exc:
        raise UsageError(f"--out {exc}") from exc


def run_training(args: argparse.Namespace) -> dict:
    """The whole pipeline; returns the manifest written to args.out."""
    _check_output(args.out)
    if args.user_dict is not None and not args.user_dict.is_file():
        raise UsageError(f"--user-dict {args.user_dict}: no such file")
    if args.vectors is None:
        _word2vec_config(args)  # bad word2vec options fail now, not after segmentation
    fit_config = None
    if not args.vectors_only:
        from training.fit import FitConfig

        try:
            fit_config = FitConfig.from_args(args)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from exc

    prepared = prepare(args)
    timings = prepared.timings
    manifest: dict = {
        "corpus": {**prepared.corpus.manifest(), "tokens": prepared.segmentation.tokens},
        "segmentation": {**prepared.segmentation.settings, "cache_hit": prepared.segmentation.cache_hit},
        "word2vec": prepared.word2vec,
        "vocabulary": prepared.vocabulary(),
    }
    network = None
    checkpoint_dir = checkpoint_dir_for(args.out)
    if fit_config is not None:
        from training.evaluate import evaluate, format_table
        from training.fit import train_network

        if prepared.split_index < 2 or len(prepared.token_ids) - prepared.split_index < 3:
            raise UsageError(
                f"{prepared.corpus.source}: too little text for a training/held-out split "
                f"({len(prepared.token_ids)} in-vocabulary tokens); use a longer corpus or lower --min-count"
            )
        started = _now()
        try:
            result = train_network(
                prepared.token_ids,
                prepared.split_index,
                prepared.vectors,
                fit_config,
                checkpoint_dir,
                args.resume,
            )
        except (ValueError, FloatingPointError) as exc:
            # A missing or mismatched checkpoint, a corpus too short for the settings, or a diverging run
            # (FloatingPointError, "lower --lr"): all the user's to fix, so one line, not a traceback.
            raise UsageError(str(exc)) from exc
        _timed(timings, "fit", started)
        network = result.network
        manifest["network"] = asdict(network.config)
        manifest["training"] = result.summary

        started = _now()
        manifest["evaluation"] = evaluate(network, prepared.token_ids, prepared.split_index, prepared.vectors)
        _timed(timings, "evaluate", started)
        print(format_table(manifest["evaluation"]))
    manifest["timings"] = timings["seconds"]
    manifest["cpu_seconds"] = timings["cpu_seconds"]

    def build(tmp: Path) -> dict:
        started = _now()
        prepared.vectors.save_word2vec_format(tmp / VECTORS_FILE, binary=True)
        if network is not None:
            network.save(tmp / NETWORK_FILE)
        if args.user_dict is not None:
            shutil.copyfile(args.user_dict, tmp / USER_DICT_FILENAME)
        if network is not None:
            from training.report import write_report

            write_report(tmp / REPORT_FILE, manifest)
        _timed(timings, "write", started)
        return manifest

    try:
        write_model_dir(args.out, build)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from exc
    if network is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # finished: nothing left to resume
    print_summary(args.out, manifest)
    return manifest


def print_summary(out: Path, manifest: dict) -> None:
    corpus, vocabulary, timings = manifest["corpus"], manifest["vocabulary"], manifest["timings"]
    cached = " (cached)" if manifest["segmentation"].get("cache_hit") else ""
    held = vocabulary["held_out_chapters"]
    held_out = f"last {held} chapter{'s' if held > 1 else ''}" if held else "last 10% of the only chapter"
    lines = [
        f"corpus      {corpus['name']}: encoding {corpus['encoding']}, {corpus['chars']:,} chars, "
        f"{corpus['chapters']} chapters, commentary {'stripped' if corpus['strip_brackets'] else 'kept'}",
        f"tokens      {corpus['tokens']:,} jieba tokens{cached}, "
        f"{vocabulary['tokens_in_vocab']:,} in vocabulary (OOV rate {vocabulary['oov_rate']:.1%})",
        f"vocabulary  {vocabulary['size']:,} words x {vocabulary['dim']} dims; held out: {held_out}, "
        f"{vocabulary['held_out_tokens']:,} tokens",
        "seconds     " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items()),
        "cpu seconds "
        + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in manifest["cpu_seconds"].items()),
        f"model       {out}",
    ]
    print("\n".join(lines))


# -------------------------------------------------------------------------------------------- evaluate DIR
def run_evaluate(args: argparse.Namespace) -> dict:
    """Rebuild the id stream of a saved model's corpus (same tokenizer, same vectors) and evaluate again."""
    from models.trained import TrainedModel
    from training.evaluate import evaluate, format_table

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
        corpus = load_corpus(source, recorded.get("strip_brackets"), recorded.get("max_chars"))
    except CorpusError as exc:
        raise UsageError(f"{exc} (needed to re-evaluate {args.model_dir}; pass --corpus)") from exc
    if corpus.sha256 != recorded.get("sha256"):
        raise UsageError(
            f"{corpus.source}: sha256 differs from the one {args.model_dir} was trained on; "
            "pass --corpus with the original file"
        )
    segmentation = segment_corpus(corpus.chapters, model.tokenizer, args.cache_dir)
    token_ids, split_index, _ = ids_and_split(segmentation.chapters, model.vectors)
    result = evaluate(model.network, token_ids, split_index, model.vectors)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_table(result))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["evaluate"]:
            run_evaluate(build_evaluate_parser().parse_args(argv[1:]))
        else:
            run_training(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; rerun with --resume to continue from the last finished epoch",
            file=sys.stderr,
        )
        return 130
    return 0
