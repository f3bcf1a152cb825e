"""Everything before the network: corpus -> tokenizer tokens -> held-out split -> vocabulary and vectors ->
token ids. This is all that --vectors-only runs, and what the network stages start from."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.tokenizer import Tokenizer
from models.vectors import WordVectors
from models.vocabulary import UNKNOWN_TOKEN
from training.characters import Extraction
from training.corpus import Corpus, CorpusError, load_corpus
from training.errors import UsageError
from training.name_words import write_name_dictionary
from training.segment import Segmentation, segment_corpus
from training.split import TokenStream, ids_and_split
from training.timings import StageTimings
from training.vectors_stage import checkpoint_dir_for, vectors_stage


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
    timings: StageTimings = field(default_factory=StageTimings)
    # The dictionary the tokenizer used (the user's, plus the speakers' names with --name-words), and the
    # speakers found for it (None when names were not looked for: then the characters stage finds them).
    user_dict: Path | None = None
    extraction: Extraction | None = None
    name_words: list[str] = field(default_factory=list)

    def vocabulary(self) -> dict:
        """The manifest's "vocabulary" section."""
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
            "split_index": self.split_index,
            "held_out_chapters": self.held_out_chapters,
            "held_out_tokens": len(self.token_ids) - self.split_index,
            "train": self.stream.train_shares,
            "held_out": self.stream.held_shares,
        }


def make_tokenizer(args: argparse.Namespace, user_dict: Path | None) -> Tokenizer:
    """The tokenizer of the command line, with `user_dict` as its dictionary (--user-dict, or the file that
    adds the speakers' names to it)."""
    try:
        tokenizer = Tokenizer(user_dict, hmm=args.hmm, mode=args.tokenizer)
        if user_dict is not None:
            # A bad user dictionary fails here, as a usage error, not inside a worker. Without one the
            # dictionary is loaded only when there is something to cut (not on a cache hit: it takes ~1 s).
            tokenizer.cut("")
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return tokenizer


def prepare(args: argparse.Namespace) -> Prepared:
    """Corpus, segmentation, vectors and the id stream: everything --vectors-only needs."""
    timings = StageTimings()
    with timings.stage("corpus"):
        try:
            corpus = load_corpus(
                args.corpus,
                strip_brackets=args.strip_brackets,
                max_chars=args.max_chars,
                keep_markup=args.keep_markup,
            )
        except CorpusError as exc:
            raise UsageError(str(exc)) from exc
    user_dict, extraction, names = args.user_dict, None, []
    if args.tokenizer == "jieba" and args.name_words:
        with timings.stage("characters"):
            # The speakers first, so that their names are words of the segmentation (training/name_words.py).
            path = checkpoint_dir_for(args.out) / "segmentation_dict.txt"
            user_dict, extraction, names = write_name_dictionary(corpus.chapters, args.user_dict, path)
    with timings.stage("segmentation"):
        tokenizer = make_tokenizer(args, user_dict)
        segmentation = segment_corpus(corpus.chapters, tokenizer, args.cache_dir, args.workers)
    if segmentation.tokens == 0:
        raise UsageError(f"{corpus.source}: segmentation produced no tokens")
    with timings.stage("word2vec"):
        w2v, stream = vectors_stage(args, segmentation, checkpoint_dir_for(args.out))
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
        user_dict,
        extraction,
        names,
    )
