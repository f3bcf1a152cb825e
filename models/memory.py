"""memory.json: the novel's own exchanges (what was said to a character, and how it answered), for chat.

A chat reply from the LSTM alone barely depends on what the user said. The memory lets it answer: at
training time every attributed exchange of the *training* chapters (one speaker's quote, then another
speaker's answer right after it) is stored with a BM25 index over the words of what was said; at chat
time the exchanges whose first turn is most like the user's turn are rendered before the conversation in
the novel's dialogue form, so the network continues in that direction (as ChatHaruhi grounds a character
in its classic lines).

The index is Okapi BM25 (k1 1.5, b 0.75, as gensim's `OkapiBM25Model` computes it at training time):
every (term, exchange) pair already carries its document-side weight idf·tf·(k1+1)/(tf + k1·(1−b+b·dl/avgdl)),
so scoring a turn is a sum of stored weights over the turn's distinct words: one NumPy `add.at` per query,
no gensim or scipy when serving. With them the document frequencies of chat's lexical relevance
(`character_idf`, `word_idf`) and its weights learned at training time (`relevance`; models/relevance.py),
and the ranking settings (`rerank`; models/rerank.py). Plain JSON, read with `json` (no pickle), listed
with its sha256 in the manifest like every other file of a model directory.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.artifacts import MEMORY_FILE, read_json_file
from models.relevance import BILINEAR, FEATURES, UNLEARNED_WEIGHTS, LexicalRelevance
from models.rerank import RerankConfig
from models.vectors import WordVectors

__all__ = ["MEMORY_FILE", "Exchange", "ExchangeMemory", "Recalled", "index_terms"]

MEMORY_VERSION = 1
MAX_CANDIDATES = 16
# A word is a term of the index only if it holds a letter or a digit: punctuation says nothing about topic.
_WORD = re.compile(r"\w")


def index_terms(tokens: list[str]) -> list[str]:
    """The tokens of a text that the index counts (punctuation dropped, order and repeats kept)."""
    return [token for token in tokens if _WORD.search(token)]


@dataclass(frozen=True)
class Exchange:
    """One exchange of the novel: `asker` said `said`; `answerer` answered `answer`, introduced by the
    novel's own narration `how` (e.g. `黛玉冷笑道：`, what stands between the two quotes)."""

    asker: str
    said: str
    answerer: str
    how: str
    answer: str
    chapter: int  # 1-based, as readers count chapters


@dataclass(frozen=True)
class Recalled:
    exchange: Exchange
    score: float
    index: int


class ExchangeMemory:
    """Exchanges plus their BM25 postings: term -> (exchange indices, weights)."""

    def __init__(
        self,
        exchanges: list[Exchange],
        postings: dict[str, tuple[np.ndarray, np.ndarray]],
        settings: dict | None = None,
        character_idf: dict[str, float] | None = None,
        word_idf: dict[str, float] | None = None,
    ) -> None:
        self.exchanges = exchanges
        self.postings = postings
        self.settings = dict(settings or {})
        self.character_idf = dict(character_idf or {})
        self.word_idf = dict(word_idf or {})
        self._answerers = np.asarray([e.answerer for e in exchanges], dtype=object)

    def __len__(self) -> int:
        return len(self.exchanges)

    @property
    def rerank(self) -> RerankConfig:
        """The candidates, β and γ chosen for this model at training time (stored with the memory)."""
        chosen = self.settings.get("rerank") or {}
        return RerankConfig(
            candidates=int(chosen.get("candidates", RerankConfig.candidates)),
            beta=float(chosen.get("beta", RerankConfig.beta)),
            lexical=float(chosen.get("lexical", RerankConfig.lexical)),
            prune_after=None if chosen.get("prune_after") is None else int(chosen["prune_after"]),
            prune_lexical=None if chosen.get("prune_lexical") is None else float(chosen["prune_lexical"]),
        )

    @property
    def relevance_weights(self) -> dict[str, float]:
        """The lexical relevance's weights learned at training time (models/relevance.py); a memory written
        before they were learned scores by the character cosine alone."""
        learned = (self.settings.get("relevance") or {}).get("weights")
        return (
            {str(name): float(weight) for name, weight in learned.items()}
            if learned
            else dict(UNLEARNED_WEIGHTS)
        )

    def lexical_relevance(
        self, vectors: WordVectors | None = None, cut: Callable[[str], list[str]] | None = None
    ) -> LexicalRelevance | None:
        """The lexical relevance of chat's ranking (idf of the training chapters' exchanges), with the
        model's word vectors and tokenizer; None for a memory without document frequencies."""
        if not self.character_idf:
            return None
        learned = self.settings.get("relevance") or {}
        unseen_idf = bool(learned.get("unseen_idf", False))
        matrix = (learned.get("bilinear") or {}).get("matrix")
        weights = self.relevance_weights
        if matrix is not None and vectors is None:
            weights.pop(BILINEAR, None)  # its sentence vectors need the word vectors, as `word2vec` does
        return LexicalRelevance(
            self.character_idf,
            self.word_idf,
            weights,
            vectors,
            cut,
            unseen_idf,
            None if matrix is None or vectors is None else np.asarray(matrix, dtype=np.float64),
        )

    # --------------------------------------------------------------------------------------- retrieval
    def scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every exchange's first turn for a query (its distinct index terms)."""
        total = np.zeros(len(self.exchanges), dtype=np.float64)
        for term in dict.fromkeys(index_terms(terms)):
            found = self.postings.get(term)
            if found is not None:
                np.add.at(total, found[0], found[1])
        return total

    def recall(
        self,
        terms: list[str],
        k: int = 3,
        character: str | None = None,
        own_weight: float = 2.0,
    ) -> list[Recalled]:
        """The k exchanges most like the query, best first. An exchange answered by `character` counts
        `own_weight` times its score, so the character's own answers are preferred when they fit about as
        well as another's. Exchanges without a single shared word are never recalled."""
        if k <= 0 or not self.exchanges:
            return []
        scores = self.scores(terms)
        ranked = scores.copy()
        if character is not None and own_weight != 1.0:
            ranked[self._answerers == character] *= own_weight
        candidates = np.flatnonzero(ranked > 0)
        if candidates.size == 0:
            return []
        order = candidates[np.argsort(-ranked[candidates], kind="stable")][:k]
        return [Recalled(self.exchanges[i], float(scores[i]), int(i)) for i in order]

    def without_chapters(self, chapters: set[int]) -> ExchangeMemory:
        """The same memory minus the exchanges of these chapters (1-based), with the same weights: tuning
        on the training chapters' tail must not recall the very exchanges it asks."""
        keep = [i for i, exchange in enumerate(self.exchanges) if exchange.chapter not in chapters]
        new_index = np.full(len(self.exchanges), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        postings = {}
        for term, (docs, weights) in self.postings.items():
            mapped = new_index[docs]
            if (mapped >= 0).any():
                postings[term] = (mapped[mapped >= 0], weights[mapped >= 0])
        return ExchangeMemory(
            [self.exchanges[i] for i in keep], postings, self.settings, self.character_idf, self.word_idf
        )

    def summary(self) -> dict:
        """The settings and the number of exchanges, for the manifest: the bilinear feature's matrix (tens of
        thousands of numbers) is named by its shape, it lives in memory.json."""
        settings = dict(self.settings)
        learned = settings.get("relevance")
        bilinear = (learned or {}).get("bilinear") or {}
        if "matrix" in bilinear:
            rows = len(bilinear["matrix"])
            shape = f"{rows}x{len(bilinear['matrix'][0]) if rows else 0} in {MEMORY_FILE}"
            settings["relevance"] = {**learned, "bilinear": {**bilinear, "matrix": shape}}
        return {**settings, "exchanges": len(self)}

    # ------------------------------------------------------------------------------------------ storage
    def to_json(self) -> dict:
        return {
            "memory_version": MEMORY_VERSION,
            **self.settings,
            "exchanges": [asdict(exchange) for exchange in self.exchanges],
            "character_idf": {gram: round(idf, 4) for gram, idf in self.character_idf.items()},
            "word_idf": {word: round(idf, 4) for word, idf in self.word_idf.items()},
            "postings": {
                term: [
                    [int(i), round(float(w), 4)] for i, w in zip(docs.tolist(), weights.tolist(), strict=True)
                ]
                for term, (docs, weights) in self.postings.items()
            },
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: dict) -> ExchangeMemory:
        if not isinstance(data, dict) or data.get("memory_version") != MEMORY_VERSION:
            raise ValueError(
                f"memory_version {data.get('memory_version') if isinstance(data, dict) else None!r}, "
                f"this program reads {MEMORY_VERSION}"
            )
        exchanges = []
        for item in data.get("exchanges", []):
            try:
                exchanges.append(
                    Exchange(
                        asker=str(item["asker"]),
                        said=str(item["said"]),
                        answerer=str(item["answerer"]),
                        how=str(item["how"]),
                        answer=str(item["answer"]),
                        chapter=int(item["chapter"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"exchange entry {item!r} lacks asker/said/answerer/how/answer/chapter"
                ) from None
        postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        raw = data.get("postings", {})
        if not isinstance(raw, dict):
            raise ValueError("postings must be an object of term -> [[exchange, weight], ...]")
        for term, pairs in raw.items():
            array = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
            docs = array[:, 0].astype(np.int64)
            if docs.size and (docs.min() < 0 or docs.max() >= len(exchanges)):
                raise ValueError(f"postings of {term!r} point outside the {len(exchanges)} exchanges")
            postings[term] = (docs, array[:, 1])
        tables = {}
        for name in ("character_idf", "word_idf"):  # word_idf: absent from a memory written before it
            idf = data.get(name, {})
            if not isinstance(idf, dict) or not all(isinstance(v, (int, float)) for v in idf.values()):
                raise ValueError(f"{name} must be an object of gram or word -> idf")
            tables[name] = {str(k): float(v) for k, v in idf.items()}
        skip = ("exchanges", "postings", "character_idf", "word_idf", "memory_version")
        settings = {key: value for key, value in data.items() if key not in skip}
        memory = cls(exchanges, postings, settings, tables["character_idf"], tables["word_idf"])
        learned = settings.get("relevance")  # {"reason": ...} alone when training had too few exchanges
        if learned is not None and not isinstance(learned, dict):
            raise ValueError(
                "relevance must be an object holding the learned weights (or why there are none)"
            )
        weights = learned.get("weights") if learned else None
        if weights is not None and not (
            isinstance(weights, dict)
            and set(weights) <= set(FEATURES)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in weights.values())
        ):
            raise ValueError(f"relevance.weights must map some of {list(FEATURES)} to finite numbers")
        if learned and not isinstance(learned.get("unseen_idf", False), bool):
            raise ValueError("relevance.unseen_idf must be true or false (absent: false)")
        matrix = ((learned or {}).get("bilinear") or {}).get("matrix")
        if weights and weights.get(BILINEAR) and matrix is None:
            raise ValueError(f"relevance.weights has {BILINEAR} but relevance.bilinear.matrix is missing")
        if matrix is not None:
            try:
                array = np.asarray(matrix, dtype=np.float64)
            except (TypeError, ValueError):
                array = np.zeros(0)
            if array.ndim != 2 or array.shape[0] != array.shape[1] or not np.all(np.isfinite(array)):
                raise ValueError("relevance.bilinear.matrix must be a square list of lists of finite numbers")
        try:
            rerank = memory.rerank
        except (TypeError, ValueError):
            raise ValueError("rerank must hold a whole number of candidates and a number beta") from None
        if not (1 <= rerank.candidates <= MAX_CANDIDATES and 0.0 <= rerank.beta <= 2.0):
            raise ValueError(f"rerank {rerank}: candidates must be 1..{MAX_CANDIDATES} and beta 0..2")
        if rerank.prune_after is not None and rerank.prune_after < 1:
            raise ValueError(f"rerank {rerank}: prune_after must be a positive number of tokens or null")
        return memory

    @classmethod
    def load(cls, path: str | Path) -> ExchangeMemory:
        """Read memory.json; ValueError (with the reason) for a file that is not one."""
        data = read_json_file(path)
        return cls.from_json(data)
