"""Held-out evaluation: the model next to its baselines on the same held-out text.

Split: held-out = ``token_ids[split_index:]``, the last 10% of chapters as the open-vocabulary stream of
models/vocabulary.py (nothing deleted: every non-whitespace character of those chapters is covered). Every
method predicts every held-out token from the text before it (the first one from the end of the training
chapters), so all rows of the table are measured on exactly the same text.

Bits per character: the total −log2 probability of the held-out tokens over the number of held-out
characters. An ``<unk>`` token stands for one character; it is charged its probability times a uniform over
the CJK Unified Ideographs (training/baselines.py, 14.36 bits on top). The character baselines (5-gram
Kneser-Ney, PPMd) read the real characters, trained on the real training text.

* unigram: always the 10 most frequent training words.
* bigram: the most frequent successors of the previous token in training, backed off to the unigram list to
fill
  the top 10 (ties broken by overall frequency).
* model: a stateful pass over the held-out stream, cut into a few contiguous sub-streams read in parallel with
their
  LSTM state carried from window to window; each sub-stream starts one token early, so it covers exactly its
  own targets. Perplexity is exp(mean cross-entropy of softmax(scores)), reported only for the losses trained
  as a distribution (cos_softmax, softmax); for mse/cosine the scores are a fixed-scale cosine and it is None.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import numpy as np

from models.cache import ContinuousCache, unit_rows
from models.decoding import Decoder, DecodingBatch, Generation, Prompt
from models.network import DISTRIBUTION_LOSSES, Network, State
from models.ngram import Mixture
from models.sampling import SamplingParams
from models.vocabulary import UNKNOWN_TOKEN
from training.baselines import (
    UNKNOWN_CHARACTER_BITS,
    KneserNey,
    char_kneser_ney_bits_per_char,
    ppmd_bits_per_char,
    unigram_log2_probs,
)

# How an <unk> token is written when the character baselines read the token stream back as text: a
# private-use character, so it is one character that no real text contains.
UNKNOWN_AS_CHARACTER = "\ue000"

EVAL_STREAMS = 8
SCORING_THREADS = 2  # held_out_metrics scores its chunks in this many threads
EVAL_WINDOW = 128
TOP_K = 10
SAMPLE_PROMPT_TOKENS = 6
SAMPLE_NEW_TOKENS = 30
# How the report's samples are drawn: the server's sampler with a moderate temperature and top-k, so they show
# what the model writes without the rare-word tail.
SAMPLING = SamplingParams(do_sample=True, temperature=0.8, top_k=20)
SAMPLE_SEED = 0
QUALITY_SAMPLES = 20
QUALITY_NEW_TOKENS = 200


def unigram_top(train: np.ndarray, vocab_size: int, k: int = TOP_K) -> np.ndarray:
    """The k most frequent training ids, most frequent first (ties: lower id first)."""
    counts = np.bincount(train, minlength=vocab_size)
    return np.lexsort((np.arange(vocab_size), -counts))[:k]


def bigram_table(train: np.ndarray, vocab_size: int, k: int = TOP_K) -> np.ndarray:
    """(V, k): row p lists the k most frequent training successors of p, then the unigram list fills the
    rest."""
    counts = np.bincount(train, minlength=vocab_size)
    unigram = unigram_top(train, vocab_size, k)
    pairs, pair_counts = np.unique(train[:-1].astype(np.int64) * vocab_size + train[1:], return_counts=True)
    prev, succ = pairs // vocab_size, pairs % vocab_size
    # Per previous word: higher pair count first, then the more frequent word, then the lower id.
    order = np.lexsort((succ, -counts[succ], -pair_counts, prev))
    prev, succ = prev[order], succ[order]
    table = np.tile(unigram, (vocab_size, 1))
    starts = np.searchsorted(prev, np.arange(vocab_size), side="left")
    ends = np.searchsorted(prev, np.arange(vocab_size), side="right")
    for p in np.nonzero(ends > starts)[0]:
        successors = list(succ[starts[p] : min(ends[p], starts[p] + k)])
        for word in unigram:
            if len(successors) == k:
                break
            if word not in successors:
                successors.append(word)
        table[p] = successors
    return table


def _accuracy(predictions: np.ndarray, targets: np.ndarray, unk_id: int | None = None) -> dict[str, float]:
    """predictions (N, k) ranked best first; an <unk> target is always a miss."""
    known = targets != (-1 if unk_id is None else unk_id)
    return {
        "acc@1": float(np.mean((predictions[:, 0] == targets) & known)),
        "acc@10": float(np.mean(np.any(predictions[:, :TOP_K] == targets[:, None], axis=1) & known)),
    }


def histories_before(token_ids: np.ndarray, start: int, n: int, context: int) -> np.ndarray:
    """(n, context) ids before each of token_ids[start : start + n] (oldest first, -1 before the text)."""
    padded = np.concatenate([np.full(context, -1, dtype=np.int64), np.asarray(token_ids, dtype=np.int64)])
    columns = [padded[start + c : start + c + n] for c in range(context)]
    return np.stack(columns, axis=1) if context else np.zeros((n, 0), dtype=np.int64)


class _Tally:
    """acc@1, acc@10 and the log probability of each target under one distribution, accumulated chunk by
    chunk over the held-out targets."""

    def __init__(self, n_targets: int, unk_id: int | None) -> None:
        self.unk_id = unk_id
        self.hits1 = self.hits10 = 0
        self.log_probs = np.zeros(n_targets)
        self._counting = threading.Lock()  # chunks are scored in parallel threads (held_out_metrics)

    def add(self, logits: np.ndarray, wanted: np.ndarray, where: np.ndarray) -> None:
        """logits (n, V): log-probabilities or unnormalised scores of targets `wanted` at positions `where`
        (overwritten: they are normalised in place)."""
        rows = np.arange(len(wanted))
        target_logit = logits[rows, wanted].astype(np.float64)
        # Rank = number of words scored strictly higher than the target: acc@k without sorting the vocabulary.
        rank = np.sum(logits > target_logit[:, None], axis=1)
        if self.unk_id is not None:  # <unk> is a miss: predicting "some rare character" names nothing
            rank[wanted == self.unk_id] = len(logits[0])
        hits1, hits10 = int(np.sum(rank == 0)), int(np.sum(rank < TOP_K))
        with self._counting:
            self.hits1 += hits1
            self.hits10 += hits10
        top = logits.max(axis=1, keepdims=True)
        logits -= top
        np.exp(logits, out=logits)
        log_norm = np.log(logits.sum(axis=1, dtype=np.float64)) + top[:, 0]
        self.log_probs[where] = target_logit - log_norm

    def metrics(self, distribution: bool) -> dict:
        n_targets = len(self.log_probs)
        nll = -float(np.sum(self.log_probs))
        return {
            "acc@1": self.hits1 / n_targets,
            "acc@10": self.hits10 / n_targets,
            "perplexity": float(np.exp(nll / n_targets)) if distribution else None,
            # Total bits of the targets under softmax(scores): what the decoder samples from at temperature 1.
            "bits": nll / math.log(2),
            "log_probs": self.log_probs,
        }


def held_out_outputs(network: Network, held_out: np.ndarray) -> np.ndarray:
    """(len(held_out) - 1, .) the network's outputs predicting held_out[1:], read statefully in
    EVAL_STREAMS sub-streams (pass the last training token first to score every held-out token)."""
    n_targets = len(held_out) - 1
    streams = max(1, min(EVAL_STREAMS, n_targets))
    bounds = np.linspace(0, n_targets, streams + 1).astype(int)
    # Sub-stream s predicts targets held_out[bounds[s]+1 : bounds[s+1]+1] from inputs starting one token
    # earlier; the sub-streams are read in parallel and their outputs put back in reading order.
    length = int(np.max(np.diff(bounds)))
    collected: np.ndarray | None = None
    state: State | None = None
    for start in range(0, length, EVAL_WINDOW):
        stop = min(start + EVAL_WINDOW, length)
        inputs = np.zeros((streams, stop - start), dtype=np.int64)
        positions = np.full((streams, stop - start), -1, dtype=np.int64)
        for s in range(streams):
            a, b = bounds[s] + start, min(bounds[s] + stop, bounds[s + 1])
            if b > a:
                inputs[s, : b - a] = held_out[a:b]
                positions[s, : b - a] = np.arange(a, b)
        outputs, state = network.forward_sequence(inputs, state)
        valid = positions.reshape(-1) >= 0
        if collected is None:
            collected = np.zeros((n_targets, outputs.shape[-1]), dtype=outputs.dtype)
        collected[positions.reshape(-1)[valid]] = outputs.reshape(-1, outputs.shape[-1])[valid]
    assert collected is not None
    return collected


def held_out_metrics(
    network: Network,
    held_out: np.ndarray,
    unk_id: int | None = None,
    mixture: Mixture | None = None,
    histories: np.ndarray | None = None,
    cache: ContinuousCache | None = None,
) -> dict[str, dict]:
    """acc@1, acc@10, perplexity, bits and the natural log P of each target held_out[1:] (see
    `held_out_outputs`), for each distribution the decoder can serve, all from ONE pass of the network and
    one scoring of its outputs: "lstm" (softmax of the network's scores); with a mixture, "mixture"
    (λ·LSTM + (1 − λ)·n-gram, histories[i] the ids before target i); with a cache, "cached"
    ((1 − μ)·that + μ·p_cache, the cache remembering the held-out positions read before each target, empty
    at the first held-out token)."""
    n_targets = len(held_out) - 1
    all_targets = np.asarray(held_out[1:], dtype=np.int64)
    outputs = held_out_outputs(network, held_out)
    unit = unit_rows(outputs) if cache is not None else None
    tallies = {"lstm": _Tally(n_targets, unk_id)}
    if mixture is not None:
        tallies["mixture"] = _Tally(n_targets, unk_id)
    if cache is not None:
        tallies["cached"] = _Tally(n_targets, unk_id)
    chunk = EVAL_WINDOW * EVAL_STREAMS

    def score(start: int) -> None:
        where = np.arange(start, min(start + chunk, n_targets))
        wanted = all_targets[where]
        logits = network.scores(outputs[where])
        if mixture is not None:
            assert histories is not None
            probabilities = mixture.probabilities(logits, histories[where])
        else:
            probabilities = logits.astype(np.float64)
            probabilities -= probabilities.max(axis=1, keepdims=True)
            np.exp(probabilities, out=probabilities)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        if cache is not None:
            assert unit is not None
            cached = cache.mix_stream(probabilities.copy(), unit, all_targets, start=start)
            with np.errstate(divide="ignore"):
                tallies["cached"].add(np.log(cached, out=cached), wanted, where)
        if mixture is not None:
            with np.errstate(divide="ignore"):
                tallies["mixture"].add(np.log(probabilities, out=probabilities), wanted, where)
        tallies["lstm"].add(logits, wanted, where)

    # The chunks are independent (each writes its own targets' log probabilities; the hit counts are summed
    # under a lock), so two threads score them: NumPy releases the GIL in the (chunk, V) passes that are
    # most of the evaluation: 红楼梦's held-out scoring (mixture and cache) took 13.3-13.5 s in two threads
    # against 20.7-24.9 s in one (quiet 2-core machine, one BLAS thread). The same numbers, bit for bit.
    with ThreadPoolExecutor(max_workers=SCORING_THREADS) as pool:
        list(pool.map(score, range(0, n_targets, chunk)))
    distribution = network.config.loss in DISTRIBUTION_LOSSES
    return {name: tally.metrics(distribution or name != "lstm") for name, tally in tallies.items()}


def continuations(
    decoder: Decoder, prompts: Sequence[Sequence[int]], n_new: int, seed: int
) -> list[list[int]]:
    """n_new seeded tokens after each prompt (model ids), all decoded together through the decoder's batch
    path (`DecodingBatch`, the sampler the server runs) at temperature 0.8 and top-k 20; prompt i draws with
    seed + i, so a continuation does not depend on the others. <unk> is never drawn, as in serving."""
    words = decoder.vectors.words
    batch = DecodingBatch(decoder)
    generations = []
    for row, ids in enumerate(prompts):
        ids = [int(i) for i in ids]
        params = replace(SAMPLING, max_new_tokens=n_new, seed=seed + row)
        params.validate()
        text = "".join(words[i] for i in ids)
        prompt = Prompt(text=text, tokens=[words[i] for i in ids], ids=ids, unknown=[])
        generation = Generation(prompt=prompt, params=params, seed=seed + row)
        batch.add(generation)
        generations.append(generation)
    while batch:
        batch.tick()
    return [[token.id for token in generation.tokens] for generation in generations]


def longest_copy(text: str, source: str) -> int:
    """Length in characters of the longest substring of text that occurs verbatim in source (two pointers:
    O(len(text)) substring searches)."""
    best = start = 0
    for end in range(1, len(text) + 1):
        while start < end and text[start:end] not in source:
            start += 1
        best = max(best, end - start)
    return best


def generation_quality(
    decoder: Decoder, held_out: np.ndarray, train_text: str
) -> dict[str, float | int | None]:
    """QUALITY_SAMPLES seeded samples of QUALITY_NEW_TOKENS tokens, prompted by held-out openings spread
    evenly over the held-out text: distinct-2 (share of distinct token bigrams) and the longest passage copied
    verbatim from the training text (characters), so looping and memorisation are visible."""
    if len(held_out) < SAMPLE_PROMPT_TOKENS:
        return {"samples": 0, "tokens": 0, "distinct_2": None, "longest_copy_chars": None}
    starts = np.linspace(0, len(held_out) - SAMPLE_PROMPT_TOKENS, QUALITY_SAMPLES).astype(int)
    prompts = [held_out[s : s + SAMPLE_PROMPT_TOKENS] for s in starts]
    generated = continuations(decoder, prompts, QUALITY_NEW_TOKENS, SAMPLE_SEED)
    words = decoder.vectors.words
    return {
        "samples": QUALITY_SAMPLES,
        "tokens": QUALITY_NEW_TOKENS,
        "distinct_2": distinct_n(generated, 2),
        "longest_copy_chars": max(
            longest_copy("".join(words[i] for i in row), train_text) for row in generated
        ),
    }


def distinct_n(tokens: list[list[int]], n: int) -> float | None:
    grams = [tuple(seq[i : i + n]) for seq in tokens for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def samples(decoder: Decoder, held_out: np.ndarray) -> list[dict]:
    """Three seeded continuations of fixed prompts: the opening tokens at 0%, 33% and 67% of the held-out
    text, which works for any corpus (no hand-picked words that might be out of vocabulary)."""
    prompts = []
    for fraction in (0.0, 1 / 3, 2 / 3):
        start = int(fraction * max(0, len(held_out) - SAMPLE_PROMPT_TOKENS))
        prompt = held_out[start : start + SAMPLE_PROMPT_TOKENS]
        if len(prompt):
            prompts.append(prompt)
    words = decoder.vectors.words
    return [
        {
            "prompt": "".join(words[i] for i in prompt),
            "generated": "".join(words[i] for i in generated),
            "ids": generated,
        }
        for prompt, generated in zip(
            prompts, continuations(decoder, prompts, SAMPLE_NEW_TOKENS, SAMPLE_SEED), strict=True
        )
    ]


def evaluate(
    decoder: Decoder,
    token_ids: np.ndarray,
    split_index: int,
    train_text: str | None = None,
    held_text: str | None = None,
) -> dict:
    """The held-out table as a dict for manifest.json: split sizes, model and baseline metrics, samples.

    The model is what the decoder serves: its network, and with a mixture λ·LSTM + (1 − λ)·n-gram, in which
    case "model" is the mixture and "lstm" / "token_ngram" are its two parts alone; with a continuous cache,
    "model" is what is served (the cache mixed in) and "without_cache" the same without it. train_text /
    held_text: the real text of each side (for the character baselines); by default the token stream read
    back as text, with <unk> as one private-use character."""
    network, vectors, mixture, cache = decoder.network, decoder.vectors, decoder.mixture, decoder.cache
    token_ids = np.asarray(token_ids, dtype=np.int64)
    train, held_out = token_ids[:split_index], token_ids[split_index:]
    if len(held_out) < 2 or len(train) < 2:
        raise ValueError(
            f"evaluation needs at least 2 training and 2 held-out tokens, "
            f"got {len(train)} and {len(held_out)}"
        )
    vocab_size = network.config.vocab_size
    # Every held-out token is a target; the first is predicted from the last training token.
    context = token_ids[split_index - 1 :]
    targets = held_out
    unigram = unigram_top(train, vocab_size)
    bigram = bigram_table(train, vocab_size)
    generated = samples(decoder, held_out)
    sample_ids = [s.pop("ids") for s in generated]

    unk_id = vectors.index.get(UNKNOWN_TOKEN)
    words = [UNKNOWN_AS_CHARACTER if w == UNKNOWN_TOKEN else w for w in vectors.words]
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    held_chars = int(lengths[targets].sum())
    unk_targets = int(np.sum(targets == unk_id)) if unk_id is not None else 0
    unk_bits = UNKNOWN_CHARACTER_BITS * unk_targets

    def bpc(log2_p: np.ndarray) -> float:
        return (-float(np.sum(log2_p)) + unk_bits) / held_chars

    def token_row(predictions: np.ndarray, log2_p: np.ndarray) -> dict:
        return {
            **_accuracy(predictions, targets, unk_id),
            "perplexity": float(2.0 ** -np.mean(log2_p)),
            "bpc": bpc(log2_p),
        }

    histories = None
    if mixture is not None:
        histories = histories_before(token_ids, split_index, len(targets), mixture.context)
    measured = held_out_metrics(network, context, unk_id, mixture, histories, cache)
    for row in measured.values():
        row.pop("log_probs")
    lstm = measured["lstm"]
    lstm_bits = lstm.pop("bits")
    lstm = {"loss": network.config.loss, **lstm, "bpc": (lstm_bits + unk_bits) / held_chars}
    rows: dict[str, dict] = {"model": lstm}
    if mixture is not None:
        mixed = measured["mixture"]
        mixed_bits = mixed.pop("bits")
        ngram_log2 = mixture.ngram.log2_probs(train[len(train) - mixture.context :] + 1, targets + 1)
        rows = {
            "model": {
                "loss": network.config.loss,
                "mixture": {"order": mixture.ngram.order, "lstm_weight": mixture.lstm_weight},
                **mixed,
                "bpc": (mixed_bits + unk_bits) / held_chars,
            },
            "lstm": lstm,
            "token_ngram": {
                "order": mixture.ngram.order,
                "perplexity": float(2.0 ** -np.mean(ngram_log2)),
                "bpc": bpc(ngram_log2),
            },
        }
    if cache is not None:
        cached = measured["cached"]
        cached_bits = cached.pop("bits")
        rows["without_cache"] = rows["model"]
        rows["model"] = {
            **rows["model"],
            "cache": asdict(cache.settings),
            **cached,
            "bpc": (cached_bits + unk_bits) / held_chars,
        }
    unigram_log2 = unigram_log2_probs(train, targets, vocab_size)
    # Token ids are 0..V-1; KneserNey reserves 0 for "unknown", so shift by one (V+1 symbols).
    bigram_log2 = KneserNey.fit(train + 1, vocab_size + 1, 2).log2_probs(train[-1:] + 1, targets + 1)
    stream_train_text = "".join(words[i] for i in train)
    if train_text is None or held_text is None:
        train_text, held_text = stream_train_text, "".join(words[i] for i in targets)
    return {
        "split": {
            "train_tokens": len(train),
            "held_out_tokens": len(held_out),
            "targets": len(targets),
            "held_out_chars": held_chars,
            "unk_targets": unk_targets,
            "unk_share": unk_targets / len(targets),
            "unk_charge": f"{UNKNOWN_CHARACTER_BITS:.2f} bits per <unk> "
            "(uniform over CJK Unified Ideographs)",
            "held_out": "last 10% of chapters, every character (open-vocabulary stream, nothing deleted)",
        },
        **rows,
        "unigram": token_row(np.tile(unigram, (len(targets), 1)), unigram_log2),
        # Accuracy from the most-frequent-successor table; bpc and perplexity from interpolated KN.
        "bigram": token_row(bigram[context[:-1]], bigram_log2),
        "char_5gram_kn": {"bpc": char_kneser_ney_bits_per_char(train_text, held_text, 5)},
        "ppmd": {"bpc": ppmd_bits_per_char(train_text, held_text)},
        "samples": generated,
        "distinct_1": distinct_n(sample_ids, 1),
        "distinct_2": distinct_n(sample_ids, 2),
        "generation": generation_quality(decoder, held_out, stream_train_text),
    }


def _model_label(model: dict, cache: bool = True) -> str:
    if cache and model.get("cache"):
        # Printed under the row of the same model without the cache.
        label = f"  + continuous cache, μ={model['cache']['weight']:.2f}"
        counts = [*model["cache"].get("trigram_weights", ()), *model["cache"].get("bigram_weights", ())]
        if any(counts):  # the token n-gram over the cache's window (models/cache.py)
            label += f" + token counts, ν≤{max(counts):.2f}"
        return label
    mixture = model.get("mixture")
    if not mixture:
        return f"LSTM ({model['loss']})"
    return f"LSTM + {mixture['order']}-gram, λ={mixture['lstm_weight']:.2f}"


def format_table(result: dict) -> str:
    """The evaluation as a plain-text table (printed at the end of training and by `evaluate DIR`)."""
    lines = [
        f"held-out: {result['split']['targets']} next-token predictions "
        f"(train {result['split']['train_tokens']} tokens)",
    ]
    rows = [
        (key, label)
        for key, label in (
            ("unigram", "unigram (add-one)"),
            ("bigram", "bigram (KN)"),
            ("char_5gram_kn", "char 5-gram (mod. KN)"),
            ("ppmd", "PPMd order 6"),
            ("token_ngram", f"token {(result.get('token_ngram') or {}).get('order')}-gram (KN)"),
            ("lstm", f"LSTM ({result['model']['loss']}) alone"),
            ("without_cache", _model_label(result["model"], cache=False)),
            ("model", _model_label(result["model"])),
        )
        if result.get(key)
    ]
    # The label column fits the longest label (a head's name can be long: adaptive_cos_softmax).
    width = max(30, *(len(label) + 1 for _, label in rows))
    lines.append(f"{'method':<{width}}{'bpc':>7}{'acc@1':>8}{'acc@10':>9}{'perplexity':>12}")
    for key, label in rows:
        row = result[key]
        ppl = "–" if row.get("perplexity") is None else f"{row['perplexity']:.1f}"
        acc1 = "–" if row.get("acc@1") is None else f"{row['acc@1']:.1%}"
        acc10 = "–" if row.get("acc@10") is None else f"{row['acc@10']:.1%}"
        bpc = "–" if row.get("bpc") is None else f"{row['bpc']:.2f}"
        lines.append(f"{label:<{width}}{bpc:>7}{acc1:>8}{acc10:>9}{ppl:>12}")
    for sample in result.get("samples", []):
        lines.append(f"  {sample['prompt']} | {sample['generated']}")
    quality = result.get("generation") or {}
    if quality.get("distinct_2") is not None:
        lines.append(
            f"generation: {quality['samples']} seeded samples × {quality['tokens']} tokens, "
            f"distinct-2 {quality['distinct_2']:.3f}, "
            f"longest verbatim copy from the training text {quality['longest_copy_chars']} chars"
        )
    if result["model"].get("bpc") is not None:
        lines.append(f"held-out bits per character: {result['model']['bpc']:.2f}")
    return "\n".join(lines)
