"""word2vec with gensim, defaulting to the reference C tool's command line; or an existing C-format file.

The reference article ran `word2vec -cbow 1 -size 200 -window 8 -negative 25 -hs 0 -sample 1e-4 -iter 15`
(min_count 5 is the C tool's default). Settings gensim would otherwise choose differently are pinned to the
C tool's: for CBOW it starts at alpha 0.05 and decays to alpha * 1e-4, and it cuts the token stream into
"sentences" of at most 1000 words. gensim seeds each word's initial vector from hash(word + seed); Python's
str hash is randomised per process, so a stable hash is used instead. With several worker threads the result
is still not bit-reproducible (thread scheduling changes the update order), which is why --resume reuses the
saved vectors.bin instead of retraining.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.vectors import WordVectors
from training.segment import available_cores

C_TOOL_SENTENCE_WORDS = 1000  # MAX_SENTENCE_LENGTH in word2vec.c


@dataclass
class Word2VecConfig:
    dim: int = 200
    window: int = 8
    negative: int = 25
    hs: int = 0
    sample: float = 1e-4
    epochs: int = 15
    min_count: int = 5
    cbow: bool = True
    alpha: float = 0.05  # the C tool's default starting rate for CBOW (0.025 for skip-gram)
    seed: int = 1
    workers: int = 0  # 0 = every core

    def validate(self) -> None:
        checks = {
            "dim": self.dim >= 1,
            "window": self.window >= 1,
            "negative": self.negative >= 0,
            "w2v-epochs": self.epochs >= 1,
            "min-count": self.min_count >= 1,
            "sample": self.sample >= 0,
            "workers": self.workers >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            value = getattr(self, "epochs" if bad[0] == "w2v-epochs" else bad[0].replace("-", "_"))
            raise ValueError(f"--{bad[0]} {value!r}: out of range")
        if self.negative == 0 and self.hs == 0:
            raise ValueError("--negative 0 needs hierarchical softmax, which this pipeline does not expose")

    def effective_workers(self) -> int:
        return self.workers or available_cores()


def _stable_hash(text: str) -> int:
    # Replaces gensim's default `hash`, which differs between processes (PYTHONHASHSEED), so that the initial
    # vectors depend only on the seed.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "little")


def sentences(chapters: Iterable[list[str]]) -> list[list[str]]:
    """The token stream cut like the C tool cuts it: pieces of at most 1000 words, restarting per chapter."""
    pieces: list[list[str]] = []
    for chapter in chapters:
        for start in range(0, len(chapter), C_TOOL_SENTENCE_WORDS):
            pieces.append(chapter[start : start + C_TOOL_SENTENCE_WORDS])
    return pieces


class _EpochBar:
    """gensim callback moving a tqdm bar once per epoch."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self.bar = tqdm(total=epochs, unit="epoch", desc="word2vec", disable=not enabled, file=sys.stderr)

    # gensim calls these by name on every callback object (CallbackAny2Vec is only a no-op base class).
    def on_train_begin(self, model: object) -> None:
        pass

    def on_epoch_begin(self, model: object) -> None:
        pass

    def on_epoch_end(self, model: object) -> None:
        self.bar.update(1)

    def on_train_end(self, model: object) -> None:
        self.bar.close()


@dataclass
class Word2VecResult:
    vectors: WordVectors
    settings: dict  # for the manifest's "word2vec" section
    seconds: float


def train_word2vec(
    chapters: list[list[str]], config: Word2VecConfig, progress: bool = True
) -> Word2VecResult:
    """Train vectors on the segmented chapters; rows ordered by frequency (most frequent first)."""
    from gensim.models import Word2Vec  # imported here: gensim takes ~1 s to import and `--help` needs none

    config.validate()
    started = time.perf_counter()
    corpus = sentences(chapters)
    model = Word2Vec(
        vector_size=config.dim,
        window=config.window,
        negative=config.negative,
        hs=config.hs,
        sample=config.sample,
        min_count=config.min_count,
        sg=0 if config.cbow else 1,
        cbow_mean=1,
        alpha=config.alpha,
        min_alpha=config.alpha * 1e-4,
        seed=config.seed,
        workers=config.effective_workers(),
        hashfxn=_stable_hash,
        sorted_vocab=1,
    )
    model.build_vocab(corpus)
    if len(model.wv) == 0:
        raise ValueError(
            f"word2vec: no word occurs {config.min_count} times or more; "
            "lower --min-count or use a longer corpus"
        )
    bar = _EpochBar(config.epochs, progress)
    model.train(corpus, total_examples=model.corpus_count, epochs=config.epochs, callbacks=[bar])
    words = list(model.wv.index_to_key)
    counts = np.array([model.wv.get_vecattr(word, "count") for word in words], dtype=np.int64)
    vectors = WordVectors(words, model.wv.vectors, counts)
    settings = {
        "source": "trained",
        "tool": "gensim.models.Word2Vec",
        **asdict(config),
        "workers": config.effective_workers(),
        "min_alpha": config.alpha * 1e-4,
        "sentence_words": C_TOOL_SENTENCE_WORDS,
        "corpus_types": len(model.wv) + _dropped_types(chapters, model.wv.key_to_index),
    }
    return Word2VecResult(vectors, settings, time.perf_counter() - started)


def _dropped_types(chapters: list[list[str]], kept: dict[str, int]) -> int:
    return len({token for chapter in chapters for token in chapter if token not in kept})


def looks_binary(path: Path) -> bool:
    """.bin is binary, .txt/.vec text; otherwise the bytes after the header line decide."""
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return True
    if suffix in (".txt", ".vec"):
        return False
    with open(path, "rb") as handle:
        handle.readline()
        sample = handle.read(1 << 16)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start < len(sample) - 4
    return b"\x00" in sample


def load_vectors(path: Path, chapters: list[list[str]]) -> Word2VecResult:
    """Use an existing word2vec C-format file; counts come from this corpus (the format stores none)."""
    started = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--vectors {path}: no such file; pass a word2vec .bin or .txt file")
    binary = looks_binary(path)
    loaded = WordVectors.load_word2vec_format(path, binary=binary)
    frequency = Counter(_flat(chapters))
    counts = np.array([frequency.get(word, 0) for word in loaded.words], dtype=np.int64)
    if not counts.any():
        raise ValueError(
            f"--vectors {path}: none of its {len(loaded)} words occurs in the corpus; were the vectors "
            "trained on text segmented the same way (jieba, same user dictionary)?"
        )
    vectors = WordVectors(loaded.words, loaded.matrix, counts)
    settings = {
        "source": "file",
        "file": str(path),
        "binary": binary,
        "dim": vectors.dim,
        "words": len(vectors),
    }
    return Word2VecResult(vectors, settings, time.perf_counter() - started)


def _flat(chapters: Iterable[list[str]]) -> Iterator[str]:
    for chapter in chapters:
        yield from chapter
