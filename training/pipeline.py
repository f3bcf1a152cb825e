"""`python -m training`: novel -> corpus -> jieba tokens -> word2vec -> NumPy LSTM -> one model directory.

Stages and where they live: training/corpus.py (read, detect encoding, chapters), training/segment.py (jieba,
cached), training/word2vec.py (gensim or --vectors), training/fit.py and training/evaluate.py (the network),
models/artifacts.py (the atomic model directory). User errors print one line `error: ...` and exit with 2.

Held-out split (DESIGN §8): the last 10% of chapters (at least one when there are two or more); a corpus
without chapter headings holds out its last 10% of tokens. The split is made on the tokenizer's output, before
anything is learnt: the vocabulary (models/vocabulary.py: words >= --min-count in the TRAINING chapters, the
characters of the other words >= --min-char-count, else <unk>), word2vec and the network see the training
chapters only. Token ids are the word2vec row of each model token, in reading order; nothing is deleted, so
the held-out stream covers every non-whitespace character of the held-out chapters.

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
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.artifacts import ArtifactError, check_writable, write_model_dir
from models.characters import CHARACTERS_FILE, CharacterList
from models.network import Network
from models.ngram import Mixture
from models.tokenizer import TOKENIZER_MODES, USER_DICT_FILENAME, Tokenizer
from models.vectors import WordVectors
from models.vocabulary import (
    DEFAULT_MIN_CHAR_COUNT,
    UNKNOWN_TOKEN,
    choose_vocabulary,
    spell,
    stream_shares,
    with_unknown,
)
from training.corpus import BUILTIN_CORPORA, Corpus, CorpusError, load_corpus
from training.segment import Segmentation, default_cache_dir, segment_corpus
from training.word2vec import Word2VecConfig, Word2VecResult, load_vectors, train_word2vec

HELD_OUT_FRACTION = 0.1
VECTORS_FILE = "vectors.bin"
NETWORK_FILE = "lstm.npz"
NGRAM_FILE = "ngram.npz"
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
        "--tokenizer",
        choices=TOKENIZER_MODES,
        default="jieba",
        help="jieba: words (default); char: every character a token (a char-RNN through the same pipeline)",
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
        "--min-count",
        type=int,
        default=w2v.min_count,
        help="words seen fewer times in the training chapters are spelled with their characters "
        "(default %(default)s)",
    )
    vectors.add_argument(
        "--min-char-count",
        type=int,
        default=DEFAULT_MIN_CHAR_COUNT,
        help="characters of spelled words seen fewer times become <unk> (default %(default)s)",
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
    run.add_argument(
        "--ngram-mixture",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve and evaluate λ·LSTM + (1-λ)·token Kneser-Ney n-gram, order and λ chosen on the "
        "validation tail of the training chapters (default on)",
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
    stream: TokenStream
    min_count: int
    min_char_count: int
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def vocabulary(self) -> dict:
        unk = self.vectors.index.get(UNKNOWN_TOKEN)
        words = self.vectors.words
        return {
            "size": len(self.vectors),
            "dim": self.vectors.dim,
            "rule": "words >= min_count in the training chapters keep their identity; other words are "
            "spelled with their characters; characters < min_char_count become <unk> (never generated)",
            "min_count": self.min_count,
            "min_char_count": self.min_char_count,
            "words": sum(1 for w in words if len(w) > 1 and w != UNKNOWN_TOKEN),
            "single_characters": sum(1 for w in words if len(w) == 1),
            "unk_id": unk,
            "tokens": len(self.token_ids),
            "oov_rate": 0.0,  # deleted tokens: none since the open-vocabulary stream (DESIGN §2)
            "split_index": self.split_index,
            "held_out_chapters": self.held_out_chapters,
            "held_out_tokens": len(self.token_ids) - self.split_index,
            "train": self.stream.train_shares,
            "held_out": self.stream.held_shares,
        }


@dataclass
class TokenStream:
    """The corpus as model tokens, split before anything is learnt; raw = the tokenizer's tokens."""

    train_raw: list[list[str]]
    held_raw: list[list[str]]
    train: list[list[str]]
    held: list[list[str]]
    held_chapters: int
    train_shares: dict
    held_shares: dict

    def text(self, held: bool) -> str:
        """The real text (every non-whitespace character) of one side of the split."""
        return "".join("".join(chapter) for chapter in (self.held_raw if held else self.train_raw))


def split_chapters(chapters: list[list[str]]) -> tuple[list[list[str]], list[list[str]], int]:
    """(training chapters, held-out chapters, held-out chapter count) of tokenizer output: the last 10% of
    chapters, or the last 10% of the tokens of a corpus that is one chapter."""
    if len(chapters) >= 2:
        held = max(1, round(HELD_OUT_FRACTION * len(chapters)))
        return chapters[: len(chapters) - held], chapters[len(chapters) - held :], held
    tokens = chapters[0] if chapters else []
    cut = int(len(tokens) * (1 - HELD_OUT_FRACTION))
    return [tokens[:cut]], [tokens[cut:]], 0


def token_stream(chapters: list[list[str]], vocabulary: set[str] | dict[str, int]) -> TokenStream:
    """Split, then spell both sides with the vocabulary (which the training side alone decided)."""
    train_raw, held_raw, held = split_chapters(chapters)
    train = [spell(chapter, vocabulary) for chapter in train_raw]
    held_out = [spell(chapter, vocabulary) for chapter in held_raw]

    def shares(raw: list[list[str]], spelled: list[list[str]]) -> dict:
        return stream_shares([t for c in raw for t in c], [t for c in spelled for t in c], vocabulary)

    return TokenStream(
        train_raw, held_raw, train, held_out, held, shares(train_raw, train), shares(held_raw, held_out)
    )


def ids_and_split(stream: TokenStream, vectors: WordVectors) -> tuple[np.ndarray, int]:
    """Token ids in reading order (every model token has one) and the index of the first held-out id."""
    index = vectors.index
    train = [index[t] for chapter in stream.train for t in chapter]
    held = [index[t] for chapter in stream.held for t in chapter]
    return np.array(train + held, dtype=np.int32), len(train)


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


def _vectors_stage(
    args: argparse.Namespace, segmentation: Segmentation, checkpoint_dir: Path
) -> tuple[Word2VecResult, TokenStream]:
    """The vocabulary, the token stream it implies, and a vector for every vocabulary entry.

    With --vectors (or --resume and saved vectors) the file's words are the vocabulary; otherwise it is
    chosen from the training chapters. Either way only the training chapters are counted and embedded."""
    saved = checkpoint_dir / CHECKPOINT_VECTORS
    train_raw, _, _ = split_chapters(segmentation.chapters)
    if args.vectors is not None:
        try:
            result = load_vectors(args.vectors, train_raw)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        stream = token_stream(segmentation.chapters, set(result.vectors.words) | {UNKNOWN_TOKEN})
        return _recount(result, stream), stream
    if args.resume and saved.is_file():
        result = load_vectors(saved, train_raw)
        stream = token_stream(segmentation.chapters, set(result.vectors.words) | {UNKNOWN_TOKEN})
        result = _recount(result, stream)
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
        return result, stream
    config = _word2vec_config(args)
    try:
        vocabulary = choose_vocabulary(train_raw, args.min_count, args.min_char_count)
        stream = token_stream(segmentation.chapters, vocabulary)
        result = train_word2vec(stream.train, config)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    result.vectors = with_unknown(result.vectors)
    if not args.vectors_only:
        # Kept beside the network checkpoints so that --resume continues with these exact vectors.
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_dir / f".{CHECKPOINT_VECTORS}.tmp"
        result.vectors.save_word2vec_format(tmp, binary=True)
        os.replace(tmp, saved)
        (checkpoint_dir / CHECKPOINT_W2V_SETTINGS).write_text(json.dumps(result.settings), encoding="utf-8")
    return result, stream


def make_tokenizer(args: argparse.Namespace) -> Tokenizer:
    try:
        tokenizer = Tokenizer(args.user_dict, hmm=args.hmm, mode=args.tokenizer)
        if args.user_dict is not None:
            # A bad user dictionary fails here, as a usage error, not inside a worker. Without one the
            # dictionary is loaded only when there is something to cut (not on a cache hit: it takes ~1 s).
            tokenizer.cut("")
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return tokenizer


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
    tokenizer = make_tokenizer(args)
    segmentation = segment_corpus(corpus.chapters, tokenizer, args.cache_dir, args.workers, progress)
    _timed(timings, "segmentation", started)
    if segmentation.tokens == 0:
        raise UsageError(f"{corpus.source}: segmentation produced no tokens")

    started = _now()
    w2v, stream = _vectors_stage(args, segmentation, checkpoint_dir_for(args.out))
    _timed(timings, "word2vec", started)

    token_ids, split_index = ids_and_split(stream, w2v.vectors)
    return Prepared(
        corpus,
        segmentation,
        w2v.vectors,
        w2v.settings,
        token_ids,
        split_index,
        stream.held_chapters,
        stream,
        args.min_count,
        args.min_char_count,
        timings,
    )


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
    if args.tokenizer == "char" and args.user_dict is not None:
        raise UsageError("--user-dict applies to the jieba tokenizer only; drop it with --tokenizer char")
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
    characters = None
    if fit_config is not None:  # a servable model (--vectors-only writes vectors for other tools)
        started = _now()
        from training.characters import extract_characters

        # Who speaks (for chat, DESIGN §10): a novel without quoted dialogue simply has no characters.
        characters = extract_characters(prepared.corpus.chapters, user_dict=args.user_dict).characters
        manifest["characters"] = {
            **characters.summary(),
            "top": [{"name": c.name, "utterances": c.utterances} for c in characters.characters[:10]],
        }
        _timed(timings, "characters", started)
    network = None
    mixture = None
    checkpoint_dir = checkpoint_dir_for(args.out)
    if fit_config is not None:
        from training.evaluate import evaluate, format_table
        from training.fit import train_network

        if prepared.split_index < 2 or len(prepared.token_ids) - prepared.split_index < 3:
            raise UsageError(
                f"{prepared.corpus.source}: too little text for a training/held-out split "
                f"({len(prepared.token_ids)} tokens); use a longer corpus"
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
        if args.ngram_mixture:
            from training.mixture import choose_mixture

            started = _now()
            mixture, manifest["mixture"] = choose_mixture(network, prepared.token_ids, prepared.split_index)
            _timed(timings, "mixture", started)

        started = _now()
        manifest["evaluation"] = evaluate(
            network,
            prepared.token_ids,
            prepared.split_index,
            prepared.vectors,
            prepared.stream.text(held=False),
            prepared.stream.text(held=True),
            mixture,
        )
        _timed(timings, "evaluate", started)
        print(format_table(manifest["evaluation"]))
        if characters is not None:
            started = _now()
            tokenizer = Tokenizer(args.user_dict, hmm=args.hmm, mode=args.tokenizer)
            manifest["chat_evaluation"] = _chat_evaluation(
                network, prepared.vectors, tokenizer, characters, prepared.corpus.chapters,
                prepared.held_out_chapters, args.user_dict, mixture=mixture,
            )  # fmt: skip
            _timed(timings, "chat_evaluation", started)
    manifest["timings"] = timings["seconds"]
    manifest["cpu_seconds"] = timings["cpu_seconds"]

    def build(tmp: Path) -> dict:
        started = _now()
        prepared.vectors.save_word2vec_format(tmp / VECTORS_FILE, binary=True)
        if characters is not None:
            characters.save(tmp / CHARACTERS_FILE)
        if network is not None:
            network.save(tmp / NETWORK_FILE)
        if mixture is not None:
            mixture.save(tmp / NGRAM_FILE)
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
        f"tokens      {corpus['tokens']:,} {manifest['segmentation'].get('tokenizer', 'jieba')} tokens"
        f"{cached} -> {vocabulary['tokens']:,} model tokens, OOV (deleted) rate {vocabulary['oov_rate']:.1%}",
        f"vocabulary  {vocabulary['size']:,} entries x {vocabulary['dim']} dims ({vocabulary['words']:,} "
        f"words, {vocabulary['single_characters']:,} characters, <unk>): words >= {vocabulary['min_count']} "
        f"in the training chapters, characters >= {vocabulary['min_char_count']}",
        f"held out    {held_out}, {vocabulary['held_out_tokens']:,} tokens: "
        f"{vocabulary['held_out']['spelled_share']:.1%} characters of spelled-out words, "
        f"{vocabulary['held_out']['unk_share']:.2%} <unk>",
        "seconds     " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items()),
        "cpu seconds "
        + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in manifest["cpu_seconds"].items()),
        *([_characters_line(manifest["characters"])] if "characters" in manifest else []),
        f"model       {out}",
    ]
    print("\n".join(lines))


def _characters_line(characters: dict) -> str:
    if not characters.get("characters"):
        return "characters  none (no attributed dialogue: chat uses a neutral narrator form)"
    top = ", ".join(f"{c['name']} {c['utterances']:,}" for c in characters["top"])
    share = characters["attributed_share"]
    return (
        f"characters  {characters['characters']} speakers, {characters['attributed']:,} of "
        f"{characters['quoted']:,} quotes attributed ({share:.0%}); top: {top}"
    )


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
    stream = token_stream(segmentation.chapters, model.vectors.index)
    token_ids, split_index = ids_and_split(stream, model.vectors)
    result = evaluate(
        model.network,
        token_ids,
        split_index,
        model.vectors,
        stream.text(held=False),
        stream.text(held=True),
        model.mixture,
    )
    held_out = (model.manifest.get("vocabulary") or {}).get("held_out_chapters", 0)
    user_dict = model.tokenizer.user_dict
    # Printed before the held-out table: scripts read the bpc from the table's last line.
    chat = _chat_evaluation(
        model.network, model.vectors, model.tokenizer, model.characters, corpus.chapters, held_out, user_dict,
        quiet=args.json, mixture=model.mixture,
    )  # fmt: skip
    result = {**result, "chat": chat}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_table(result))
    return result


def _chat_evaluation(
    network: Network,
    vectors: WordVectors,
    tokenizer: Tokenizer,
    characters: CharacterList,
    chapters: list[str],
    held_out: int,
    user_dict: Path | None,
    quiet: bool = False,
    mixture: Mixture | None = None,
) -> dict:
    """Chat figures on the held-out chapters (training/chat_evaluation.py), printed unless quiet; with the
    model's n-gram mixture, as the server decodes."""
    from models.chat import Chat
    from models.decoding import Decoder
    from training.chat_evaluation import evaluate_chat, format_chat_table

    chat = Chat(Decoder(network, vectors, tokenizer, mixture), characters)
    result = evaluate_chat(chat, chapters, held_out, user_dict)
    if not quiet:
        print(format_chat_table(result))
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
