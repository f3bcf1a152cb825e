"""The one segmenter used by training and serving, so prompts are cut exactly like the novel was.

Two modes: ``jieba`` (words, the default) and ``char`` (every non-whitespace character is a token: the
char-RNN of the reference notes). Either way models/vocabulary.py then maps the tokens onto the model's
vocabulary (rare words spelled with their characters).
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import jieba

from models.artifacts import USER_DICT_FILE

# jieba logs "Building prefix dict ..." on every new Tokenizer; that is noise in CLI output and server logs.
jieba.setLogLevel(logging.WARNING)

TOKENIZER_MODES = ("jieba", "char")
# A Tokenizer remembers the cuts of its latest CUT_CACHE_SIZE texts of at most CUT_CACHE_MAX_CHARS characters
# as token boundaries (CPython's shared small ints: at most 4 KB of pointers for the longest text, plus the
# text itself), so the cache stays under about 20 MB whatever a server is sent.
CUT_CACHE_SIZE = 4096
CUT_CACHE_MAX_CHARS = 256
# A regular expression that finds a character the tokenizer keeps (str.isspace() is False), written so that
# Python's re, the Rust regex pydantic validates with and JavaScript (JSON Schema's dialect) agree: their \s
# differ on U+001C-U+001F and U+0085 (whitespace to Python, not to JavaScript; U+001C-U+001F not to Rust
# either) and on U+FEFF (whitespace to JavaScript only). As a JSON Schema `pattern` (a search) it means "not
# blank": the service answers 422 for a prompt or word that is empty after str.strip().
NON_BLANK = "[^\\s\\x1c-\\x1f\\x85]|\\ufeff"


class Tokenizer:
    """jieba precise mode (cut_all=False), HMM on by default, optional user dictionary; or characters.

    Uses its own jieba.Tokenizer instance (not the global one); punctuation is kept as tokens and
    whitespace-only tokens are dropped. mode="char" cuts every non-whitespace character (no jieba at all).
    """

    def __init__(self, user_dict: str | Path | None = None, hmm: bool = True, mode: str = "jieba") -> None:
        if mode not in TOKENIZER_MODES:
            raise ValueError(f"tokenizer {mode!r}: choose one of {', '.join(TOKENIZER_MODES)}")
        if mode == "char" and user_dict is not None:
            raise ValueError("a user dictionary only applies to the jieba tokenizer, not --tokenizer char")
        self.mode = mode
        self.user_dict = Path(user_dict) if user_dict is not None else None
        self.hmm = bool(hmm)
        if self.user_dict is not None and not self.user_dict.is_file():
            raise FileNotFoundError(
                f"user dictionary {self.user_dict}: no such file (pass an existing UTF-8 jieba dictionary)"
            )
        # A private instance: jieba.load_userdict on the global tokenizer would leak words into every other
        # user of jieba in the process (the app may hold several models, the tests several tokenizers).
        self._jieba = jieba.Tokenizer()
        self._ready = False
        self._lock = threading.Lock()
        # The same short texts are cut again and again (chat recalls the same lines of the novel for many
        # turns, and its evaluation scores every reply against several turns): remember the latest cuts.
        self._token_bounds = functools.lru_cache(maxsize=CUT_CACHE_SIZE)(self._bounds_uncached)

    def _ensure_initialized(self) -> None:
        # Loading the prefix dictionary takes ~0.5 s, so it happens on first use, once, even under threads.
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._jieba.initialize()
            if self.user_dict is not None:
                try:
                    self._jieba.load_userdict(str(self.user_dict))
                except (ValueError, AttributeError) as exc:
                    raise ValueError(
                        f"user dictionary {self.user_dict}: cannot be read ({exc}); "
                        "it must be UTF-8 with one 'word [freq] [tag]' per line"
                    ) from exc
            self._ready = True

    def cut(self, text: str) -> list[str]:
        """Segment text into tokens; punctuation tokens kept, whitespace tokens (incl. newlines) dropped."""
        if self.mode == "char":
            return [char for char in text if not char.isspace()]
        if len(text) > CUT_CACHE_MAX_CHARS:
            return self._cut_uncached(text)
        bounds = self._token_bounds(text)
        return [text[start:stop] for start, stop in zip(bounds[::2], bounds[1::2], strict=True)]

    def _cut_uncached(self, text: str) -> list[str]:
        self._ensure_initialized()
        return [token for token in self._jieba.cut(text, cut_all=False, HMM=self.hmm) if not token.isspace()]

    def _bounds_uncached(self, text: str) -> tuple[int, ...]:
        """start, stop, start, stop, ... of the kept tokens: jieba's pieces are consecutive and cover the
        text, whitespace pieces included."""
        self._ensure_initialized()
        bounds: list[int] = []
        stop = 0
        for token in self._jieba.cut(text, cut_all=False, HMM=self.hmm):
            start, stop = stop, stop + len(token)
            if not token.isspace():
                bounds += (start, stop)
        return tuple(bounds)

    def settings(self) -> dict:
        """What a model directory's manifest records so serving can rebuild this tokenizer."""
        if self.mode == "char":
            return {"tokenizer": "char", "mode": "char", "hmm": False, "user_dict": None}
        return {
            "tokenizer": "jieba",
            "mode": "precise",
            "hmm": self.hmm,
            "user_dict": USER_DICT_FILE if self.user_dict is not None else None,
        }
