"""The vocabulary and its word2vec matrix, with cosine search that is batched and vectorised.

Files are the word2vec C tool format read and written by gensim (no pickle anywhere). That format holds words
and vectors only; corpus counts travel in an optional side file with one "word count" line per word (gensim's
`fvocab` format), so `counts` is None after loading unless that file is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class WordVectors:
    """Words in row order (gensim's: most frequent first), their vectors, and unit vectors for cosine."""

    def __init__(self, words: list[str], matrix: np.ndarray, counts: np.ndarray | None = None) -> None:
        matrix = np.asarray(matrix)
        if matrix.ndim != 2:
            raise ValueError(f"WordVectors: matrix must be 2-D (words, dim), got shape {matrix.shape}")
        if len(words) != matrix.shape[0]:
            raise ValueError(f"WordVectors: {len(words)} words but the matrix has {matrix.shape[0]} rows")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("WordVectors: the matrix contains NaN or infinite values")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            duplicates = sorted({w for w in self.words if self.words.count(w) > 1})[:5]
            raise ValueError(f"WordVectors: duplicate words, e.g. {duplicates}")
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        # Zero rows stay zero: their cosine with anything is 0 rather than NaN.
        self.unit = np.divide(self.matrix, norms, out=np.zeros_like(self.matrix), where=norms > 0)
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64)
            if counts.shape != (len(self.words),):
                raise ValueError(
                    f"WordVectors: counts has shape {counts.shape}, expected ({len(self.words)},)"
                )
        self.counts = counts
        self._words_by_char: dict[str, list[int]] | None = None  # built on the first suggest()

    # ------------------------------------------------------------------ files
    @classmethod
    def load_word2vec_format(
        cls, path: str | Path, binary: bool = True, counts_path: str | Path | None = None
    ) -> WordVectors:
        """Read a word2vec C-format file with gensim (no pickle); counts_path: optional "word count" file."""
        from gensim.models import (
            KeyedVectors,
        )  # imported here: gensim is slow to import and only files need it

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: word-vector file not found; train vectors first or fix the path"
            )
        if counts_path is not None and not Path(counts_path).is_file():
            raise FileNotFoundError(f"{counts_path}: word-count file not found; fix the path or omit it")
        kind = "binary" if binary else "text"
        try:
            kv = KeyedVectors.load_word2vec_format(
                str(path), binary=binary, fvocab=None if counts_path is None else str(counts_path)
            )
        except (ValueError, EOFError, UnicodeDecodeError, IndexError, KeyError) as error:
            raise ValueError(
                f"{path}: not a readable word2vec {kind} file ({type(error).__name__}: {error}); "
                "regenerate it with the training pipeline"
            ) from None
        counts = None
        if counts_path is not None:
            counts = np.array([kv.get_vecattr(word, "count") for word in kv.index_to_key], dtype=np.int64)
        return cls(list(kv.index_to_key), kv.vectors, counts)

    @classmethod
    def read_binary(cls, path: str | Path) -> WordVectors:
        """Read the binary word2vec C format with NumPy alone: what a server loads (TrainedModel.load).

        The same words and float32 vectors as `load_word2vec_format(path, binary=True)`, without importing
        gensim, which costs a serving process ~70 MB of memory (with scipy) for this one read (measured: a
        worker's RSS was 295 MB of its 300 MB limit). The format is simple and fixed: a "count dim" line,
        then per word its UTF-8 bytes, a space and dim little-endian float32s (gensim writes nothing
        after them, the original C tool a newline; both are read). Training keeps using gensim."""
        path = Path(path)
        data = path.read_bytes()
        try:
            header_end = data.index(b"\n")
            count, dim = (int(field) for field in data[:header_end].split())
            if count < 1 or dim < 1:
                raise ValueError(f"header says {count} words of {dim} dimensions")
            words: list[str] = []
            matrix = np.empty((count, dim), dtype=np.float32)
            position, size = header_end + 1, 4 * dim
            for row in range(count):
                while data[position : position + 1] == b"\n":
                    position += 1
                space = data.index(b" ", position)
                words.append(data[position:space].decode("utf-8"))
                if space + 1 + size > len(data):
                    raise ValueError(f"the file ends inside the vector of word {row + 1} of {count}")
                matrix[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
                position = space + 1 + size
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path}: not a readable word2vec binary file ({type(error).__name__}: {error}); "
                "regenerate it with the training pipeline"
            ) from None
        return cls(words, matrix)

    def save_word2vec_format(
        self, path: str | Path, binary: bool = True, counts_path: str | Path | None = None
    ) -> None:
        """Write the word2vec C format via gensim, in this row order; counts to counts_path if given."""
        from gensim.models import KeyedVectors

        bad = [w for w in self.words if not w or any(ch.isspace() for ch in w)]
        if bad:
            raise ValueError(
                f"{path}: the word2vec format cannot store empty or whitespace words, e.g. {bad[:3]!r}"
            )
        kv = KeyedVectors(vector_size=self.dim, count=0, dtype=np.float32)
        kv.add_vectors(self.words, self.matrix)
        # gensim writes rows sorted by the "count" attribute; descending ranks keep our row order exactly.
        kv.expandos["count"] = np.arange(len(self), 0, -1, dtype=np.int64)
        kv.save_word2vec_format(str(path), binary=binary)
        if counts_path is not None:
            if self.counts is None:
                raise ValueError(f"{counts_path}: these vectors have no counts to save")
            with open(counts_path, "w", encoding="utf-8") as out:
                out.writelines(f"{w} {int(n)}\n" for w, n in zip(self.words, self.counts, strict=True))

    # ------------------------------------------------------------------ basics
    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    # ------------------------------------------------------------------ search
    def _top_k(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices of the k highest scores per row, best first: argpartition, then sort only those k.
        Equal scores go to the lower index (the more frequent word), so the order is deterministic."""
        V = scores.shape[1]
        k = min(k, V)
        if k < V:
            part = np.argpartition(scores, V - k, axis=1)[:, V - k :]  # no negated (B, V) copy needed
        else:
            part = np.broadcast_to(np.arange(V), scores.shape)
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        return np.take_along_axis(part, order, axis=1)

    def nearest_ids(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Arrays behind nearest(): row ids (B, k) and cosines (B, k), best first, for callers that want
        indices rather than words."""
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(
                f"nearest: expected vectors of shape (D,) or (B, D) with D={self.dim}, "
                f"got {np.shape(vectors)}"
            )
        if k < 1:
            raise ValueError(f"nearest: k must be at least 1, got {k}")
        if not np.all(np.isfinite(queries)):
            raise ValueError("nearest: the query contains NaN or infinite values")
        # Rank by the raw dot products with the unit rows (the query's own norm does not change the order) and
        # divide only the k winners by it: one GEMM for the whole batch, no normalised copy of the queries.
        scores = queries @ self.unit.T
        top = self._top_k(scores, k)
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        top_scores = np.take_along_axis(scores, top, axis=1)
        np.divide(top_scores, norms, out=top_scores, where=norms > 0)
        top_scores[(norms == 0)[:, 0]] = 0.0  # a zero query has cosine 0 with everything
        return top, top_scores

    def nearest(self, vectors: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """The k words most cosine-similar to each query. vectors (D,) or (B, D); always returns one list per
        query (a single list inside a list for a 1-D query), each [(word, cosine), ...] best first."""
        top, top_scores = self.nearest_ids(vectors, k)
        words = self.words
        return [
            [(words[i], s) for i, s in zip(row, row_scores, strict=True)]
            for row, row_scores in zip(top.tolist(), top_scores.tolist(), strict=True)
        ]

    def most_similar(
        self, positive: Sequence[str] | str, negative: Sequence[str] | str = (), topn: int = 10
    ) -> list[tuple[str, float]]:
        """gensim's KeyedVectors.most_similar: the mean of the input words' unit vectors (weight +1 positive,
        -1 negative, divided by the number of words), normalised; cosine against every word; the input words
        themselves left out. KeyError(word) for an unknown word."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise ValueError("most_similar: give at least one positive or negative word")
        if topn < 1:
            return []
        for word in positive + negative:
            if word not in self.index:
                raise KeyError(word)
        ids = [self.index[w] for w in positive + negative]
        weights = np.array([1.0] * len(positive) + [-1.0] * len(negative), dtype=np.float32)
        mean = weights @ self.unit[ids] / len(ids)
        norm = np.linalg.norm(mean)
        if norm > 0:
            mean /= norm
        scores = (self.unit @ mean)[None, :]
        exclude = sorted(set(ids))
        top = self._top_k(scores, topn + len(exclude))[0]
        result = [(self.words[i], float(scores[0, i])) for i in top if i not in exclude]
        return result[:topn]

    def suggest(self, word: str, k: int = 5) -> list[str]:
        """Known words sharing characters with an (unknown) word, for "did you mean" messages: words sharing
        more distinct characters first, then the more frequent (by counts when known, else row order, which is
        gensim's frequency order)."""
        if self._words_by_char is None:
            by_char: dict[str, list[int]] = {}
            for i, known in enumerate(self.words):
                for ch in set(known):
                    by_char.setdefault(ch, []).append(i)
            self._words_by_char = by_char
        shared: dict[int, int] = {}
        for ch in set(word):
            for i in self._words_by_char.get(ch, ()):
                shared[i] = shared.get(i, 0) + 1
        shared.pop(self.index.get(word, -1), None)
        if self.counts is not None:
            counts = self.counts

            def frequency_rank(i: int) -> float:
                return -float(counts[i])
        else:

            def frequency_rank(i: int) -> float:
                return float(i)

        best = sorted(shared, key=lambda i: (-shared[i], frequency_rank(i), i))[:k]
        return [self.words[i] for i in best]

    def ids(self, words: Iterable[str]) -> np.ndarray:
        """Row indices of known words as int32; KeyError(word) for the first unknown one."""
        try:
            return np.array([self.index[w] for w in words], dtype=np.int32)
        except KeyError as error:
            raise KeyError(error.args[0]) from None
