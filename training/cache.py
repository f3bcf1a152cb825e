"""Choose the continuous cache's weights (models/cache.py) on the validation tail, never the held-out text.

The validation tail is the one the network was early-stopped on and the n-gram mixture chosen on (the last 5%
of the training chapters, training/fit.py). It is read as the held-out text is in evaluation: one stateful
pass, the cache starting empty at its first token and remembering the last `window` positions. For each
window and flatness θ the cache's probability of every validation token is computed once; the weight μ is
then a one-dimensional search over (1 − μ·fill)·p_served + μ·fill·p_cache (fill: how full the cache is,
models/cache.py), where p_served is what the model serves
without the cache (the LSTM, or its mixture with the n-gram refitted on the training stream without the tail,
exactly as training/mixture.py measures it). The (window, θ, μ) with the lowest validation cross-entropy
win, except that a shorter window within WINDOW_TOLERANCE of the best is preferred (it is cheaper to serve); a
μ of 0 means the cache does not help this model, and none is served. Then, on top of the chosen cache, the
token n-gram's ν per context class (models/cache.py), each on its own positions of the tail, for each of
COUNT_WINDOWS at least as long as the cache's window: the shortest count window within
COUNT_WINDOW_TOLERANCE of the best wins.
"""

from __future__ import annotations

import math

import numpy as np

from models.cache import (
    COUNT_CLASSES,
    STREAM_CHUNK,
    CacheSettings,
    ngram_target_probabilities,
    stream_fill,
    unit_rows,
)
from models.network import Network
from models.ngram import KneserNey, Mixture
from training.fit import validation_size

WINDOWS = (100, 200, 500, 1000, 2000)
FLATNESS = (0.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)
WEIGHTS = np.round(np.linspace(0.0, 0.5, 51), 2)
# Validation nats per token a shorter window may lose against the best one and still be chosen (0.002 nats is
# about 0.002 bits per character on 红楼梦's held-out chapters).
WINDOW_TOLERANCE = 0.002
# ν of the token n-gram (counts over the cache's window), searched per context class.
COUNT_WEIGHTS = np.round(np.linspace(0.0, 0.6, 61), 2)
# How many recent ids the token n-gram may count over (those shorter than the chosen cache window are
# skipped; the cache's own window is always a candidate). Remembering ids is cheap: these reach further.
COUNT_WINDOWS = (1000, 2000, 5000, 10000)
# A longer count window costs a tick little (one comparison per remembered id), so it needs to gain less.
COUNT_WINDOW_TOLERANCE = 0.0005
# Tokens read per network pass over the tail: bounds the memory of one LSTM forward (its gates are kept).
PASS_TOKENS = 2048


def stream_outputs(network: Network, context: np.ndarray) -> np.ndarray:
    """(T - 1, D) head outputs after each of context[:-1], read as one stream (the state carried across
    passes)."""
    outputs, state = [], None
    for start in range(0, len(context) - 1, PASS_TOKENS):
        ids = np.asarray(context[start : min(start + PASS_TOKENS, len(context) - 1)])[None, :]
        output, state = network.forward_sequence(ids, state)
        outputs.append(output[0])
    return np.concatenate(outputs)


def target_probabilities(network: Network, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """softmax(scores)[target] for each output row."""
    result = np.zeros(len(targets))
    for start in range(0, len(targets), 1024):
        logits = network.scores(outputs[start : start + 1024]).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        rows = np.arange(len(logits))
        result[start : start + 1024] = np.exp(logits[rows, targets[start : start + 1024]] - log_norm)
    return result


def cache_target_probabilities(
    unit: np.ndarray,
    next_ids: np.ndarray,
    windows: tuple[int, ...] = WINDOWS,
    flatness: tuple[float, ...] = FLATNESS,
) -> dict[tuple[int, float], np.ndarray]:
    """{(window, θ): p_cache(next_ids[t]) at every position t}: what `ContinuousCache.target_probabilities`
    gives for each setting, for the whole grid with one similarity block per chunk of positions and one exp
    per θ (each window then sums its own band of that block)."""
    next_ids = np.asarray(next_ids)
    n, longest = len(next_ids), max(windows)
    result = {(w, f): np.zeros(n) for w in windows for f in flatness}
    for start in range(0, n, STREAM_CHUNK):
        stop = min(start + STREAM_CHUNK, n)
        low = max(0, start - longest)
        similarities = unit[start:stop] @ unit[low:stop].T
        position = np.arange(start, stop)[:, None]
        remembered = np.arange(low, stop)[None, :]
        same = next_ids[low:stop][None, :] == next_ids[start:stop, None]
        # Each window's band (positions t − window .. t − 1), on the columns it can reach.
        bands = {}
        for window in windows:
            first = max(low, start - window) - low
            band = (remembered[:, first:] < position) & (remembered[:, first:] >= position - window)
            bands[window] = (first, band, band & same[:, first:])
        for theta in flatness:
            # θ·(cos − 1) ≤ 0 never overflows, and the constant factor cancels in the ratio.
            weights = np.exp(theta * (similarities.astype(np.float64) - 1.0))
            for window, (first, band, hit_band) in bands.items():
                block = weights[:, first:]
                total = np.einsum("ij,ij->i", block, band)
                hit = np.einsum("ij,ij->i", block, hit_band)
                result[(window, theta)][start:stop] = np.divide(
                    hit, total, out=np.zeros(stop - start), where=total > 0
                )
    return result


def choose_counts(
    served: np.ndarray, validation: np.ndarray, window: int
) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """The token n-gram's ν per context class (models/cache.py) on top of `served` (the cached distribution's
    probability of each validation token): each class's ν only changes the loss at its own positions, so each
    is a one-dimensional search. Returns the trigram and bigram weights and the validation nats with them."""
    found, classes = ngram_target_probabilities(validation, window)
    nu = np.zeros(1 + 2 * COUNT_CLASSES)
    for c in range(1, len(nu)):
        at = classes == c
        if at.any():
            losses = [-float(np.sum(np.log((1.0 - w) * served[at] + w * found[at]))) for w in COUNT_WEIGHTS]
            nu[c] = float(COUNT_WEIGHTS[int(np.argmin(losses))])
    mixed = (1.0 - nu[classes]) * served + nu[classes] * found
    bigram = tuple(float(w) for w in nu[1 : 1 + COUNT_CLASSES])
    return tuple(float(w) for w in nu[1 + COUNT_CLASSES :]), bigram, -float(np.mean(np.log(mixed)))


def choose_cache(
    network: Network, token_ids: np.ndarray, split_index: int, mixture: Mixture | None = None
) -> tuple[CacheSettings | None, dict]:
    """The cache weights with the lowest validation loss (None when no weight beats μ = 0), and what was
    measured (for the manifest)."""
    token_ids = np.asarray(token_ids, dtype=np.int64)
    training = token_ids[:split_index]
    size = validation_size(len(training))
    fitted, validation = training[:-size], training[-size:]
    outputs = stream_outputs(network, np.concatenate([fitted[-1:], validation]))
    served = target_probabilities(network, outputs, validation)
    lstm_nats = -float(np.mean(np.log(served)))
    if mixture is not None:
        order, vocab = mixture.ngram.order, network.config.vocab_size
        ngram = KneserNey.fit(fitted + 1, vocab + 1, order)
        ngram_p = 2.0 ** ngram.log2_probs(fitted[len(fitted) - (order - 1) :] + 1, validation + 1)
        served = mixture.lstm_weight * served + (1.0 - mixture.lstm_weight) * ngram_p
    served_nats = -float(np.mean(np.log(served)))
    unit = unit_rows(outputs)
    cache_p = cache_target_probabilities(unit, validation)
    measured: list[dict] = []
    for (window, flatness), cached in cache_p.items():
        # μ·fill at each position, as served and evaluated: the cache starts empty at the tail's first token.
        fill = stream_fill(len(validation), window)
        losses = [-float(np.mean(np.log((1.0 - mu * fill) * served + mu * fill * cached))) for mu in WEIGHTS]
        k = int(np.argmin(losses))
        measured.append(
            {"window": window, "flatness": flatness, "weight": float(WEIGHTS[k]), "nats": losses[k]}
        )
    lowest = min(entry["nats"] for entry in measured)
    # Every tick reads each sequence's remembered outputs, so a longer window costs serving time: the
    # shortest window within WINDOW_TOLERANCE of the best is kept (then the best θ and μ for it).
    chosen = min(
        (entry for entry in measured if entry["nats"] <= lowest + WINDOW_TOLERANCE),
        key=lambda entry: (entry["window"], entry["nats"]),
    )
    loss, window, flatness, weight = chosen["nats"], chosen["window"], chosen["flatness"], chosen["weight"]
    trigram_weights = bigram_weights = (0.0,) * COUNT_CLASSES
    counted, count_window, count_grid = loss, window, []
    if weight > 0:  # the counts are read from the cache's history: without a cache, none are served
        cached = (1.0 - weight * stream_fill(len(validation), window)) * served
        cached += weight * stream_fill(len(validation), window) * cache_p[(window, flatness)]
        candidates = [window, *(w for w in COUNT_WINDOWS if w > window)]
        fits = {w: choose_counts(cached, validation, w) for w in candidates}
        count_grid = [{"count_window": w, "nats": fit[2]} for w, fit in fits.items()]
        best = min(fit[2] for fit in fits.values())
        count_window = min(w for w, fit in fits.items() if fit[2] <= best + COUNT_WINDOW_TOLERANCE)
        trigram_weights, bigram_weights, counted = fits[count_window]
    settings = (
        CacheSettings(
            weight,
            flatness,
            window,
            trigram_weights,
            bigram_weights,
            count_window if count_window != window else None,
        )
        if weight > 0
        else None
    )
    report = {
        "weight": weight,
        "flatness": flatness,
        "window": window,
        "on": "the served distribution (the n-gram mixture when there is one)" if mixture else "the LSTM",
        "chosen_on": f"validation: the last {size} tokens of the training chapters (never the held-out ones)",
        "validation_tokens": int(size),
        "validation_lstm_nats": lstm_nats,
        "validation_without_cache_nats": served_nats,
        "validation_with_cache_nats": loss,
        "validation_gain_bits_per_token": (served_nats - loss) / math.log(2),
        "validation_best_nats": lowest,
        "trigram_weights": list(trigram_weights),
        "bigram_weights": list(bigram_weights),
        "count_window": count_window,
        "validation_with_counts_nats": counted,
        "count_grid": count_grid,
        "grid": measured,
    }
    return settings, report
