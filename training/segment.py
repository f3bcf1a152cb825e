"""Segmentation of a corpus into jieba tokens, in parallel, with an on-disk cache.

The cache file is keyed by the sha256 of the chapter texts plus everything that changes the cut: the
tokenizer settings, the user dictionary's content and the jieba version. It is JSON lines (a header object,
then one JSON array of tokens per chapter), never pickle, and is written to a temporary file and renamed, so a
killed run never leaves a truncated cache behind. The default cache directory is ~/.cache/novel-lstm (or
$XDG_CACHE_HOME/novel-lstm): shared by every checkout and working directory of the same user, like other
tools' caches. An unwritable cache directory only costs the cache, never the run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from models.tokenizer import Tokenizer

CACHE_FORMAT = 1
# Work is cut into pieces of about this many characters: small enough to balance the cores and move the bar,
# large enough that inter-process traffic stays negligible next to jieba's own time.
CHUNK_CHARS = 20_000
# Below this size a process pool costs more than it saves.
PARALLEL_MIN_CHARS = 50_000


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "novel-lstm"


@dataclass
class Segmentation:
    chapters: list[list[str]]  # tokens of each chapter, in order
    settings: dict  # Tokenizer.settings() plus the user dictionary's sha256
    cache_hit: bool
    cache_path: Path | None
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(chapter) for chapter in self.chapters)

    def flat(self) -> Iterator[str]:
        for chapter in self.chapters:
            yield from chapter


def cache_key(chapters: list[str], tokenizer: Tokenizer) -> str:
    digest = hashlib.sha256()
    options = {
        "cache_format": CACHE_FORMAT,
        "tokenizer": tokenizer.settings(),
        "user_dict_sha256": _user_dict_sha256(tokenizer),
        "jieba": metadata.version("jieba"),
    }
    digest.update(json.dumps(options, sort_keys=True).encode("utf-8"))
    for chapter in chapters:
        # Length-prefixed, so moving a chapter boundary changes the key even if the characters do not.
        encoded = chapter.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.hexdigest()


def _user_dict_sha256(tokenizer: Tokenizer) -> str | None:
    if tokenizer.user_dict is None:
        return None
    return hashlib.sha256(tokenizer.user_dict.read_bytes()).hexdigest()


# One Tokenizer per worker process. With fork (Linux) the workers inherit the parent's already loaded
# tokenizer: loading jieba's 350k-word dictionary takes 1-3 s per process, about a third of the cutting.
# With spawn the initializer builds one per worker.
_worker_tokenizer: Tokenizer | None = None


def _init_worker(user_dict: str | None, hmm: bool, mode: str) -> None:
    global _worker_tokenizer
    if _worker_tokenizer is None:
        _worker_tokenizer = Tokenizer(user_dict, hmm=hmm, mode=mode)
        _worker_tokenizer.cut("")  # load the dictionary now, not inside the first task


def _cut_piece(piece: tuple[int, str]) -> tuple[int, list[str]]:
    chapter_index, text = piece
    assert _worker_tokenizer is not None
    return chapter_index, _worker_tokenizer.cut(text)


def _pieces(chapters: list[str]) -> Iterator[tuple[int, str]]:
    # Pieces end at line breaks, so no word is cut in two: jieba never joins across a newline anyway.
    for index, chapter in enumerate(chapters):
        start = 0
        while start < len(chapter):
            end = chapter.find("\n", start + CHUNK_CHARS)
            end = len(chapter) if end < 0 else end + 1
            yield index, chapter[start:end]
            start = end


def _segment(chapters: list[str], tokenizer: Tokenizer, workers: int, progress: bool) -> list[list[str]]:
    result: list[list[str]] = [[] for _ in chapters]
    total = sum(len(chapter) for chapter in chapters)
    pieces = list(_pieces(chapters))
    bar = tqdm(
        total=total, unit="char", unit_scale=True, desc="segment", disable=not progress, file=sys.stderr
    )
    with bar:
        # Cutting characters is far cheaper than shipping them to another process.
        if workers <= 1 or total < PARALLEL_MIN_CHARS or tokenizer.mode == "char":
            for index, text in pieces:
                result[index].extend(tokenizer.cut(text))
                bar.update(len(text))
        else:
            user_dict = str(tokenizer.user_dict) if tokenizer.user_dict is not None else None
            # fork keeps start-up cheap on Linux; where it is unavailable the platform default works too.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            context = multiprocessing.get_context(method)
            global _worker_tokenizer
            if method == "fork":
                tokenizer.cut("")  # load the dictionary once, here; the forked workers share it
                _worker_tokenizer = tokenizer
            try:
                with context.Pool(
                    workers, initializer=_init_worker, initargs=(user_dict, tokenizer.hmm, tokenizer.mode)
                ) as pool:
                    # imap keeps the pieces in order, so tokens come back in reading order.
                    for (index, tokens), (_, text) in zip(pool.imap(_cut_piece, pieces), pieces, strict=True):
                        result[index].extend(tokens)
                        bar.update(len(text))
            finally:
                _worker_tokenizer = None
    return result


def _read_cache(path: Path, key: str, n_chapters: int) -> list[list[str]] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            header = json.loads(handle.readline())
            if header.get("key") != key or header.get("chapters") != n_chapters:
                return None
            chapters = [json.loads(line) for line in handle]
    except (OSError, ValueError, AttributeError):
        return None  # missing or damaged: segment again and overwrite it
    if len(chapters) != n_chapters or not all(isinstance(chapter, list) for chapter in chapters):
        return None
    return chapters


def _write_cache(path: Path, key: str, settings: dict, chapters: list[list[str]]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        print(f"warning: segmentation cache not written ({path.parent}: {exc.strerror})", file=sys.stderr)
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            header = {"key": key, "chapters": len(chapters), "settings": settings, "format": CACHE_FORMAT}
            handle.write(json.dumps(header, ensure_ascii=False) + "\n")
            for chapter in chapters:
                handle.write(json.dumps(chapter, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        print(f"warning: segmentation cache not written ({path}: {exc.strerror})", file=sys.stderr)
        return False
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def segment_corpus(
    chapters: list[str],
    tokenizer: Tokenizer,
    cache_dir: Path | None,
    workers: int | None = None,
    progress: bool = True,
) -> Segmentation:
    """Tokens of every chapter; read from the cache when this text was cut with these options before."""
    started = time.perf_counter()
    workers = workers or available_cores()
    settings = {**tokenizer.settings(), "user_dict_sha256": _user_dict_sha256(tokenizer)}
    key = cache_key(chapters, tokenizer)
    cache_path = Path(cache_dir) / f"tokens-{key[:32]}.jsonl" if cache_dir is not None else None
    if cache_path is not None:
        cached = _read_cache(cache_path, key, len(chapters))
        if cached is not None:
            return Segmentation(cached, settings, True, cache_path, time.perf_counter() - started)
    tokens = _segment(chapters, tokenizer, workers, progress)
    if cache_path is not None and not _write_cache(cache_path, key, settings, tokens):
        cache_path = None
    return Segmentation(tokens, settings, False, cache_path, time.perf_counter() - started)
