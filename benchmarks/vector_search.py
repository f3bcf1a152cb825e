"""Vocabulary search: WordVectors.nearest vs the reference article's `vector2word` loop and vs gensim.

    .venv/bin/python benchmarks/vector_search.py [--vectors artifacts/hongloumeng/vectors.bin] [--threads 1]

The reference article turns a predicted vector into a word with a Python loop over the whole vocabulary,
computing one cosine per word and keeping the best (`vector2word`, written out below as the baseline).
gensim's KeyedVectors.similar_by_vector does one query per call with a full matrix-vector product.
WordVectors.nearest takes a batch of queries, does one GEMM against the precomputed unit vectors and
np.argpartition for the top k. Vectors: the trained model's vectors.bin if present (or --vectors), else
V=6300, D=200 synthetic vectors shaped like word2vec output (a shared mean direction plus anisotropic noise,
norms varying with frequency rank).
All timings are medians of interleaved repetitions; the last line is the headline ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=Path, default=ROOT / "artifacts" / "hongloumeng" / "vectors.bin")
    parser.add_argument("--vocab", type=int, default=6300, help="synthetic vocabulary size (no vectors file)")
    parser.add_argument("--dim", type=int, default=200, help="synthetic dimension (no vectors file)")
    parser.add_argument("--batch", type=int, default=64, help="queries per batched nearest() call")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS threads (env vars, set before NumPy loads)"
    )
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402  (after the thread variables on purpose)

from models.vectors import WordVectors  # noqa: E402


def vector2word(words: list[str], matrix: np.ndarray, vector: np.ndarray) -> tuple[str, float]:
    """The reference article's approach: one cosine per vocabulary word in a Python loop, keep the best."""
    best_word, best_similarity = "", -2.0
    vector_norm = np.linalg.norm(vector)
    for word, row in zip(words, matrix, strict=True):
        similarity = float(np.dot(vector, row) / (vector_norm * np.linalg.norm(row)))
        if similarity > best_similarity:
            best_word, best_similarity = word, similarity
    return best_word, best_similarity


def synthetic_vectors(vocab: int, dim: int, rng: np.random.Generator) -> WordVectors:
    """word2vec-like: a common offset direction, a decaying spectrum, and larger norms for frequent words."""
    spectrum = np.linspace(1.0, 0.2, dim)
    matrix = rng.standard_normal((vocab, dim)) * spectrum + 0.3 * rng.standard_normal(dim)
    matrix *= (1.5 - 0.5 * np.arange(vocab) / vocab)[:, None]
    return WordVectors([f"w{i}" for i in range(vocab)], matrix.astype(np.float32))


def median_ms(samples: list[float]) -> float:
    return float(np.median(samples) * 1e3)


def main() -> None:
    args = ARGS or parse_args()
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    if args.vectors.is_file():
        vectors = WordVectors.load_word2vec_format(args.vectors)
        source = str(args.vectors)
    else:
        vectors = synthetic_vectors(args.vocab, args.dim, rng)
        source = "synthetic (no vectors file; pass --vectors to use a trained one)"
    kv = KeyedVectors(vector_size=vectors.dim, count=0, dtype=np.float32)
    kv.add_vectors(vectors.words, vectors.matrix)
    kv.fill_norms()

    # Queries: vocabulary vectors plus noise, like a model's predicted next-word vectors.
    picks = rng.integers(0, len(vectors), size=args.batch)
    queries = (vectors.matrix[picks] + 0.5 * rng.standard_normal((args.batch, vectors.dim))).astype(
        np.float32
    )

    # Same answers first (top-1 of every method for the first few queries).
    for query in queries[:5]:
        ours = vectors.nearest(query, k=args.k)[0][0][0]
        assert ours == vector2word(vectors.words, vectors.matrix, query)[0]
        assert ours == kv.similar_by_vector(query, topn=args.k)[0][0]

    times: dict[str, list[float]] = {"reference": [], "gensim": [], "nearest_single": [], "nearest_batch": []}
    reference_queries = queries[:3]  # the Python loop is slow; 3 queries per run is plenty for a median
    for run in range(args.runs):
        query = queries[run % len(queries)]
        start = time.perf_counter()
        for q in reference_queries:
            vector2word(vectors.words, vectors.matrix, q)
        times["reference"].append((time.perf_counter() - start) / len(reference_queries))
        start = time.perf_counter()
        for q in queries:
            kv.similar_by_vector(q, topn=args.k)
        times["gensim"].append((time.perf_counter() - start) / len(queries))
        start = time.perf_counter()
        for q in queries:
            vectors.nearest(q, k=args.k)
        times["nearest_single"].append((time.perf_counter() - start) / len(queries))
        start = time.perf_counter()
        vectors.nearest(queries, k=args.k)
        times["nearest_batch"].append((time.perf_counter() - start) / len(queries))

    med = {name: median_ms(samples) for name, samples in times.items()}
    print(f"vectors: {source}; V={len(vectors)}, D={vectors.dim}, top-{args.k}, BLAS threads={args.threads}")
    print(f"median time per query over {args.runs} interleaved runs (numpy {np.__version__}):")
    print(f"  reference vector2word (Python loop, top-1 only)  {med['reference']:9.3f} ms")
    print(f"  gensim similar_by_vector (one query per call)    {med['gensim']:9.3f} ms")
    print(f"  WordVectors.nearest (one query per call)         {med['nearest_single']:9.3f} ms")
    print(f"  WordVectors.nearest (batch of {args.batch:3d})              {med['nearest_batch']:9.3f} ms")
    print(f"gensim/nearest(single) time ratio: {med['gensim'] / med['nearest_single']:.2f}")
    print(f"gensim/nearest(batched) time ratio: {med['gensim'] / med['nearest_batch']:.2f}")
    print(f"vector2word/nearest(batched) per-query time ratio: {med['reference'] / med['nearest_batch']:.1f}")


if __name__ == "__main__":
    main()
