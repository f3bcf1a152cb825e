"""Build memory.json (models/memory.py): the training chapters' exchanges and their BM25 index.

An exchange is two consecutive attributed utterances of different speakers in one chapter with at most a
short stretch of narration between them (training/characters.py `exchanges`). Only the training chapters
are indexed: the held-out chapters' exchanges are what the chat evaluation asks, so they must not be
recalled verbatim. gensim's `OkapiBM25Model` computes the document-side weights here; serving only adds
them up (NumPy).
"""

from __future__ import annotations

import numpy as np
from gensim.corpora import Dictionary
from gensim.models import OkapiBM25Model, TfidfModel

from models.memory import Exchange, ExchangeMemory, index_terms
from models.relevance import character_grams
from models.tokenizer import Tokenizer
from training.characters import Utterance, exchanges

BM25_K1 = 1.5
BM25_B = 0.75


def build_memory(
    chapters: list[str], utterances: list[Utterance], training_chapters: int, tokenizer: Tokenizer
) -> ExchangeMemory:
    """Every exchange of chapters [0, training_chapters), indexed by the words of its first turn."""
    pairs = exchanges(utterances, set(range(training_chapters)))
    items = [
        Exchange(
            asker=first.speaker,
            said=first.text,
            answerer=second.speaker,
            how=chapters[first.chapter][first.end : second.start],
            answer=second.text,
            chapter=first.chapter + 1,
        )
        for first, second in pairs
    ]
    documents = [index_terms(tokenizer.cut(item.said)) for item in items]
    settings = {
        "index": "okapi-bm25 over the words of what was said",
        "k1": BM25_K1,
        "b": BM25_B,
        "training_chapters": training_chapters,
    }
    if not items:
        return ExchangeMemory([], {}, settings)
    dictionary = Dictionary(documents)
    model = OkapiBM25Model(dictionary=dictionary, k1=BM25_K1, b=BM25_B)
    by_term: dict[int, list[tuple[int, float]]] = {}
    for number, document in enumerate(documents):
        for term_id, weight in model[dictionary.doc2bow(document)]:
            by_term.setdefault(term_id, []).append((number, weight))
    postings = {
        dictionary[term_id]: (
            np.asarray([number for number, _ in pairs_], dtype=np.int64),
            np.asarray([weight for _, weight in pairs_], dtype=np.float64),
        )
        for term_id, pairs_ in by_term.items()
    }
    # Document frequencies of the character TF-IDF that chat's relevance score uses (models/relevance.py):
    # every turn and every answer of the training chapters' exchanges is a document.
    texts = [item.said for item in items] + [item.answer for item in items]
    grams = Dictionary(character_grams(text) for text in texts)
    tfidf = TfidfModel(dictionary=grams)
    character_idf = {grams[term_id]: float(idf) for term_id, idf in tfidf.idfs.items()}
    # And of its word features (jieba words, as the BM25 index counts them; models/relevance.py).
    words = Dictionary(index_terms(tokenizer.cut(text)) for text in texts)
    word_idf = {words[term_id]: float(idf) for term_id, idf in TfidfModel(dictionary=words).idfs.items()}
    return ExchangeMemory(items, postings, settings, character_idf, word_idf)
