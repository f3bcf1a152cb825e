"""The command line: `python -m training --corpus FILE --out DIR [options]` trains a model, and
`python -m training evaluate DIR` re-evaluates a saved one.

Parsing and exit codes live here; the stages live in training/train.py (and the modules it names) and
training/reevaluate.py. A user's error (UsageError) prints one line `error: ...` and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.tokenizer import TOKENIZER_MODES
from models.vocabulary import DEFAULT_MIN_CHAR_COUNT
from training.corpus import BUILTIN_CORPORA
from training.errors import UsageError
from training.fit import add_fit_arguments
from training.reevaluate import run_evaluate
from training.segment import default_cache_dir
from training.train import run_training
from training.word2vec import Word2VecConfig


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
        "--keep-markup",
        action="store_true",
        help="keep HTML tags and the lines download sites add (本书由…整理制作, www.…); removed by default",
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
        default=False,
        help="jieba's HMM discovery of words missing from its dictionary (default off: it glues names to the "
        "verb after them, 袭人道, and such rare words are spelled out character by character)",
    )
    data.add_argument(
        "--name-words",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the speakers found in the novel's quoted dialogue to jieba's dictionary, so that each "
        "name is one token (default on; jieba tokenizer only)",
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
    run.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve and evaluate a continuous cache over the text read so far (the prompt and the generated "
        "text when serving), mixed into the served distribution; weight, flatness and window chosen on the "
        "validation tail of the training chapters (default on)",
    )
    add_fit_arguments(parser)
    return parser


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training evaluate",
        description="Re-evaluate a saved model directory on its corpus's held-out chapters.",
    )
    parser.add_argument("model_dir", type=Path, help="model directory written by `python -m training`")
    parser.add_argument(
        "--corpus", help="the corpus, if it moved since training (its sha256 must match the manifest)"
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="segmentation cache")
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    parser.add_argument(
        "--rebuild-memory",
        action="store_true",
        help="evaluate chat with the memory this program builds for the model (its exchanges, relevance "
        "weights and ranking, as training would write them now) instead of its memory.json; nothing is "
        "written",
    )
    return parser


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
