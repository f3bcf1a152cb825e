"""Response selection: a real reply among itself and the replies of other exchanges.

R10@1 is the share of exchanges whose real reply a scorer ranks first among CHOICES (itself and the replies
of CHOICES - 1 other exchanges, spread over the list; a k-way tie for first counts 1/k, so chance is 10%).
The chat evaluation reports it (training/chat_evaluation.py), and chat's ranking is fitted to it at training
time (training/relevance.py, `tune_rerank`): the weights of a linear score over features are those of a
conditional logit, the softmax over each group with the real reply's log-probability maximised. Unlike
R10@1 itself the likelihood is smooth, so a few weights fitted on a hundred exchanges do not chase ties of
a grid's argmax. `shrinkage_by_cross_validation` chooses how strongly some of those weights are pulled to
zero, so that features which carry nothing measurable on few groups are left out rather than fitted to noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

CHOICES = 10
L2 = 1e-3  # per standardised feature: keeps collinear features (characters and pairs) from drifting apart


def comparison_groups(count: int) -> list[list[int]]:
    """Per item of a list of `count`, itself first and then the CHOICES - 1 others it is compared with
    (spread over the list, deterministic)."""
    step = max(1, count // CHOICES)
    return [[index, *((index + j * step) % count for j in range(1, CHOICES))] for index in range(count)]


def first_share(scores: Sequence[float]) -> float:
    """1/k when the first of the scores ties k ways for the maximum (itself included), else 0."""
    best = max(scores)
    if scores[0] < best:
        return 0.0
    return 1.0 / sum(1 for score in scores if score == best)


def r10_at_1(scores: Sequence[Sequence[float]]) -> float:
    """Share of groups whose first (real) item scores highest (ties split)."""
    return round(sum(first_share(list(group)) for group in scores) / len(scores), 4) if len(scores) else 0.0


# A feature whose spread is below this share of its size is constant (fit_conditional_logit).
CONSTANT_SPREAD = 1e-9


def fit_conditional_logit(
    features: np.ndarray,
    lower_bounds: Sequence[float | None] | None = None,
    l2: float = L2,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Weights w of score = features @ w (+ offset) maximising the mean log-probability of each group's first
    item under the softmax over its group, minus l2 times the squared weights of the standardised features.
    `features`: (groups, items, features); `lower_bounds`: per weight, in the original units, or None;
    `offset`: (groups, items), a score already known, added with weight 1 (not fitted)."""
    count = features.shape[2]
    flat = features.reshape(-1, count)
    scale = flat.std(axis=0)
    # A feature constant up to rounding (a spread of 1e-17 around 0.3) says nothing; standardising its
    # rounding noise would give it a weight of 1e16, so it keeps its own units and the penalty holds it at 0.
    scale[scale <= CONSTANT_SPREAD * np.maximum(np.abs(flat).max(axis=0), 1.0)] = 1.0
    standard = features / scale  # centring changes nothing within a group's softmax
    known = np.zeros(features.shape[:2]) if offset is None else np.asarray(offset, dtype=np.float64)

    def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        scores = standard @ weights + known
        scores = scores - scores.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scores).sum(axis=1))
        probabilities = np.exp(scores - log_norm[:, None])
        value = -(scores[:, 0] - log_norm).mean() + l2 * weights @ weights
        expected = (probabilities[:, :, None] * standard).sum(axis=1)
        gradient = -(standard[:, 0] - expected).mean(axis=0) + 2 * l2 * weights
        return float(value), gradient

    bounds = None
    if lower_bounds is not None:
        bounds = [
            (None if low is None else low * s, None) for low, s in zip(lower_bounds, scale, strict=True)
        ]
    found = minimize(loss, np.zeros(count), jac=True, method="L-BFGS-B", bounds=bounds)
    return found.x / scale


def first_log_probabilities(scores: np.ndarray) -> np.ndarray:
    """Per group (a row of `scores`), the log-probability of its first item under the softmax over the row."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted[:, 0] - np.log(np.exp(shifted).sum(axis=1))


def shrinkage_by_cross_validation(
    features: np.ndarray,
    offset: np.ndarray,
    penalties: Sequence[float],
    lower_bounds: Sequence[float | None] | None = None,
    folds: int = 5,
) -> tuple[float, dict[str, float]]:
    """The L2 penalty of `fit_conditional_logit(features, offset=offset)` among `penalties` (math.inf: the
    weights are zero, the offset alone), chosen by the one-standard-error rule (Hastie, Tibshirani and
    Friedman, The Elements of Statistical Learning, 7.10): the strongest penalty whose cross-validated mean
    log-probability of the groups' first items is within one standard error of the best one's. The groups
    fall into `folds` contiguous blocks (neighbouring groups share a scene). A feature that adds nothing
    measurable to the offset is then left out instead of fitted to the noise of a few groups. Returns the
    penalty and each penalty's cross-validated mean log-probability."""
    groups = len(features)
    if groups < 2 or math.inf not in penalties:
        raise ValueError(
            f"needs at least 2 groups and math.inf among the penalties, got {groups} and {penalties}"
        )
    blocks = np.array_split(np.arange(groups), min(folds, groups))
    held: dict[float, np.ndarray] = {}
    for penalty in penalties:
        found = np.empty(groups)
        for block in blocks:
            rest = np.setdiff1d(np.arange(groups), block)
            weights = (
                np.zeros(features.shape[2])
                if math.isinf(penalty)
                else fit_conditional_logit(features[rest], lower_bounds, penalty, offset[rest])
            )
            found[block] = first_log_probabilities(features[block] @ weights + offset[block])
        held[penalty] = found
    best = max(penalties, key=lambda penalty: held[penalty].mean())

    def within_one_error(penalty: float) -> bool:
        difference = held[best] - held[penalty]
        error = difference.std(ddof=1) / math.sqrt(groups)  # groups >= 2: checked above
        return difference.mean() <= error

    chosen = max(penalty for penalty in penalties if within_one_error(penalty))
    return chosen, {f"{penalty:g}": round(float(held[penalty].mean()), 4) for penalty in penalties}
