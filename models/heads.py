"""Output heads of the next-word network: the last LSTM output -> the next-word distribution and its loss.

Each loss is one class behind one interface (``Head``), so models/network.py never asks which loss it has
and a new head is one class here plus its tests (every head runs through the same tests in tests/models/).

* ``mse``: the reference articles' recipe. A linear map ``H -> D`` regresses onto the next word's word2vec
  vector; the prediction is the vocabulary word nearest by cosine.
* ``cosine``: the same map trained with ``1 - cos(v̂, e_next)``.
* ``cos_softmax``: the same map trained *discriminatively*: a softmax over ``κ·cos(v̂, e_w) + b_w`` with a
  learned scale ``κ = exp(out.log_scale)``, an optional per-word bias ``b_w`` and output vectors ``e_w`` that
  start at the word2vec vectors and are optionally trainable. The output stays a vector in the embedding
  space. With ``prediction_norm`` the predicted vector keeps its length: ``κ·|v̂|·cos(v̂, e_w) + b_w``, so the
  network sets its own confidence at every position (sure of the next character of a name it is spelling,
  unsure after a comma) instead of one temperature for every context.
* ``adaptive_cos_softmax``: the same scores, factored as an adaptive softmax (Grave et al. 2017, "Efficient
  softmax approximation for GPUs"): the most frequent words and one token per tail cluster share a small
  softmax; a rarer word's probability is its cluster's times its share within the cluster. Training a
  position costs the head softmax plus, only for the positions whose target is rare, that target's cluster:
  on 红楼梦 the 1,000 or so words covering 80% of the training tokens instead of all 6,975. It is an exact
  distribution, so evaluation and serving use it unchanged.
* ``softmax``: a one-hot head (``Linear H -> V`` + bias, like the reference articles' word-level LSTMs), so
  vector and one-hot models can be compared on the same split.

``scores(output)`` turns a head output into next-word logits; evaluation, ``/predict`` and sampling all use
it, so ``softmax(scores)`` is the one next-word distribution of the model. ``mse`` and ``cosine`` are not
trained as distributions, so their scores are a fixed-scale cosine (``VECTOR_SCORE_SCALE``): sampling works,
but their perplexity is not a property of the model and evaluation reports it as None.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

# Scale turning the cosine of an mse/cosine model into logits. With cosines in [-1, 1], 10 makes a word whose
# cosine is 0.1 higher e (≈2.7) times likelier: peaked enough that sampling follows the nearest words, flat
# enough that temperature still matters. It is a decoding convention, not a learned quantity.
VECTOR_SCORE_SCALE = 10.0
# κ at initialisation for the cosine softmaxes; learned afterwards (as log κ, so it stays positive).
INITIAL_COS_SCALE = 10.0
NORM_EPS = 1e-8  # ||v|| = sqrt(sum v² + eps): smooth at zero, so the gradient check holds everywhere


def row_norms(matrix: np.ndarray) -> np.ndarray:
    """Smooth row norms with keepdims, so the backward below is the exact derivative of normalising."""
    return np.sqrt(np.einsum("...d,...d->...", matrix, matrix)[..., None] + NORM_EPS)


def normalise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit rows, norms with keepdims)."""
    norms = row_norms(matrix)
    return matrix / norms, norms


def normalise_backward(d_unit: np.ndarray, unit: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Gradient through unit = v / ||v||:  dv = (du - unit·<unit, du>) / ||v||.

    In one buffer: training runs it over the whole (V, D) output matrix every update, where each temporary
    of the plain expression is another pass over fresh memory."""
    dot = np.einsum("...d,...d->...", unit, d_unit)[..., None]
    result = np.multiply(unit, dot, dtype=np.result_type(d_unit, unit, norms))  # as wide as the expression
    np.subtract(d_unit, result, out=result)
    result /= norms
    return result


def log_unigram(counts: np.ndarray | None, vocab_size: int, dtype: Any) -> np.ndarray:
    """Centred log of add-one unigram frequencies: the bias a softmax starts from, so the first updates need
    not learn how frequent each word is."""
    if counts is None:
        return np.zeros(vocab_size, dtype=dtype)
    smoothed = np.asarray(counts, dtype=np.float64) + 1.0
    log_p = np.log(smoothed / smoothed.sum())
    return (log_p - log_p.mean()).astype(dtype)


def cross_entropy(logits: np.ndarray, targets: np.ndarray, denominator: int) -> tuple[float, np.ndarray]:
    """Summed cross-entropy of softmax(logits) against targets, divided by `denominator`, and its gradient;
    reuses the logits buffer. The denominator is the number of positions of the whole batch, so the losses
    of an adaptive softmax's parts add up to the batch mean."""
    rows = np.arange(len(targets))
    logits -= logits.max(axis=1, keepdims=True)
    target_logits = logits[rows, targets].copy()
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1)
    loss = float(np.sum(np.log(sums) - target_logits)) / denominator
    logits *= (1.0 / (sums * denominator))[:, None]  # softmax and the 1/N of the mean in one pass
    logits[rows, targets] -= 1.0 / denominator
    return loss, logits


def log_softmax_(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in place."""
    logits -= logits.max(axis=-1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return logits


class Head:
    """The interface every head implements; ``params`` are trained, ``buffers`` are fixed arrays saved with
    them (lstm.npz holds both)."""

    loss_name: ClassVar[str]
    is_distribution: ClassVar[bool] = True  # trained as a next-word distribution (perplexity is real)
    predicts_vector: ClassVar[bool] = True  # the head output is a vector in the word2vec space

    def __init__(
        self,
        config: Any,
        embedding: np.ndarray,
        unit_embedding: np.ndarray,
        rng: np.random.Generator,
        unigram_counts: np.ndarray | None,
    ) -> None:
        self.config = config
        self.dtype = embedding.dtype
        self.embedding = embedding
        self.unit_embedding = unit_embedding
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def output(self, hidden: np.ndarray) -> np.ndarray:
        """Last LSTM output (..., H) -> the head output that `scores` and `similarity` take."""
        raise NotImplementedError

    def scores(self, output: np.ndarray) -> np.ndarray:
        """Head outputs (..., .) -> next-word logits (..., V); softmax of these is the next-word
        distribution."""
        raise NotImplementedError

    def loss(self, output: np.ndarray, targets: np.ndarray) -> float:
        """Forward-only mean loss of head outputs (N, .) against targets (N,): the validation loss."""
        logits = self.scores(output)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        return float(np.mean(log_norm - logits[np.arange(len(targets)), targets]))

    def loss_and_grads(
        self, hidden: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        """Mean loss over N positions from the last LSTM output (N, H); fills grads for every param and
        returns dL/dhidden."""
        raise NotImplementedError

    def output_unit_vectors(self) -> np.ndarray:
        """(V, D) unit vectors a predicted vector is compared with (for the one-hot head, which predicts no
        vector, the unit word2vec vectors)."""
        return self.unit_embedding

    def similarity(self, output: np.ndarray) -> np.ndarray | None:
        """Cosine between each predicted vector and every word's output vector; None when the head predicts
        no vector."""
        if not self.predicts_vector:
            return None
        return normalise_rows(output)[0] @ self.output_unit_vectors().T

    def prepare_inference(self) -> None:
        """Cache what serving recomputes on every token (the weights never change once loaded)."""

    def clear_inference(self) -> None:
        """Forget those caches: training updates the weights in place."""

    def load_buffers(self, buffers: dict[str, np.ndarray]) -> None:
        """Take saved buffers (already shape-checked); ValueError when their values make no sense."""
        for name, value in buffers.items():
            self.buffers[name][...] = value


class _VectorHead(Head):
    """A linear map from the LSTM output to a predicted vector in the word2vec space (head.W, head.b)."""

    def __init__(
        self,
        config: Any,
        embedding: np.ndarray,
        unit_embedding: np.ndarray,
        rng: np.random.Generator,
        unigram_counts: np.ndarray | None,
    ) -> None:
        super().__init__(config, embedding, unit_embedding, rng, unigram_counts)
        H, D = config.hidden, config.dim
        self.params["head.W"] = (rng.standard_normal((H, D)) / np.sqrt(H)).astype(self.dtype)
        self.params["head.b"] = np.zeros(D, dtype=self.dtype)

    def output(self, hidden: np.ndarray) -> np.ndarray:
        return hidden @ self.params["head.W"] + self.params["head.b"]

    def loss_and_grads(
        self, hidden: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        W = self.params["head.W"]
        loss, d_predicted = self._vector_loss(self.output(hidden), targets, grads)
        grads["head.W"] = hidden.T @ d_predicted
        grads["head.b"] = d_predicted.sum(axis=0)
        return loss, d_predicted @ W.T

    def _vector_loss(
        self, predicted: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        """Mean loss of predicted vectors (N, D) and dL/dpredicted; fills the grads of this head's own
        params."""
        raise NotImplementedError

    def _fixed_scale_scores(self, output: np.ndarray) -> np.ndarray:
        # The scale multiplies the (.., D) unit vectors before the product rather than the (.., V) cosines
        # after it: one pass over D numbers per row instead of V.
        logits = (output * (VECTOR_SCORE_SCALE / row_norms(output))) @ self.unit_embedding.T
        return logits.astype(self.dtype, copy=False)


class MSEHead(_VectorHead):
    """Regress onto the next word's word2vec vector (the reference recipe); decoded by cosine."""

    loss_name = "mse"
    is_distribution = False

    def scores(self, output: np.ndarray) -> np.ndarray:
        return self._fixed_scale_scores(output)

    def loss(self, output: np.ndarray, targets: np.ndarray) -> float:
        diff = output - self.embedding[targets]
        return float(np.mean(diff * diff))

    def _vector_loss(
        self, predicted: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        diff = predicted - self.embedding[targets]
        return float(np.mean(diff * diff)), diff * (2.0 / diff.size)


class CosineHead(_VectorHead):
    """1 - cos(predicted, next word's word2vec vector); decoded by cosine."""

    loss_name = "cosine"
    is_distribution = False

    def scores(self, output: np.ndarray) -> np.ndarray:
        return self._fixed_scale_scores(output)

    def loss(self, output: np.ndarray, targets: np.ndarray) -> float:
        unit = normalise_rows(output)[0]
        return float(1.0 - np.mean(np.einsum("nd,nd->n", unit, self.unit_embedding[targets])))

    def _vector_loss(
        self, predicted: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        unit, norms = normalise_rows(predicted)
        target_unit = self.unit_embedding[targets]
        loss = float(1.0 - np.mean(np.einsum("nd,nd->n", unit, target_unit)))
        return loss, normalise_backward(-target_unit / len(targets), unit, norms)


class CosSoftmaxHead(_VectorHead):
    """Softmax over κ·cos(predicted, e_w) + b_w (see the module docstring)."""

    loss_name = "cos_softmax"

    def __init__(
        self,
        config: Any,
        embedding: np.ndarray,
        unit_embedding: np.ndarray,
        rng: np.random.Generator,
        unigram_counts: np.ndarray | None,
    ) -> None:
        super().__init__(config, embedding, unit_embedding, rng, unigram_counts)
        self.params["out.log_scale"] = np.full(1, np.log(INITIAL_COS_SCALE), dtype=self.dtype)
        if config.train_output:
            self.params["out.vectors"] = embedding.copy()
        if config.output_bias:
            self.params["out.bias"] = log_unigram(unigram_counts, config.vocab_size, self.dtype)
        self._inference_unit_vectors: np.ndarray | None = None

    def prepare_inference(self) -> None:
        # Normalising the (V, D) output matrix dominated the cost of one generated token (about 2 of 3 ms at
        # V=6k, D=200); a loaded model never changes, so it is done once.
        self._inference_unit_vectors = None
        self._inference_unit_vectors = self.output_unit_vectors()

    def clear_inference(self) -> None:
        self._inference_unit_vectors = None

    def output_unit_vectors(self) -> np.ndarray:
        if self._inference_unit_vectors is not None:
            return self._inference_unit_vectors
        if self.config.train_output:
            return normalise_rows(self.params["out.vectors"])[0]
        return self.unit_embedding

    def _scaled_unit(self, output: np.ndarray) -> np.ndarray:
        """κ · output / ||output|| (κ · output with prediction_norm): κ folded into the (.., D) side, one
        pass over D numbers per row instead of V."""
        if self.config.prediction_norm:
            return output * np.exp(self.params["out.log_scale"][0])
        return output * (np.exp(self.params["out.log_scale"][0]) / row_norms(output))

    def _predicted_direction(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What κ multiplies: the unit predicted vectors and their norms, or with prediction_norm the
        vectors themselves (norms None)."""
        if self.config.prediction_norm:
            return predicted, None
        return normalise_rows(predicted)

    @staticmethod
    def _direction_backward(
        d_direction: np.ndarray, direction: np.ndarray, norms: np.ndarray | None
    ) -> np.ndarray:
        """dL/dpredicted from dL/d(what _predicted_direction returned)."""
        if norms is None:
            return d_direction
        return normalise_backward(d_direction, direction, norms)

    def scores(self, output: np.ndarray) -> np.ndarray:
        logits = self._scaled_unit(output) @ self.output_unit_vectors().T
        if self.config.output_bias:
            logits += self.params["out.bias"]
        return logits.astype(self.dtype, copy=False)

    def _vector_loss(
        self, predicted: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        unit, norms = self._predicted_direction(predicted)
        scale = np.exp(self.params["out.log_scale"][0])
        if self.config.train_output:
            out_unit, out_norms = normalise_rows(self.params["out.vectors"])
        else:
            out_unit = self.unit_embedding
        logits = (unit * scale) @ out_unit.T
        if self.config.output_bias:
            logits += self.params["out.bias"]
        loss, d_logits = cross_entropy(logits, targets, len(targets))
        if self.config.output_bias:
            grads["out.bias"] = d_logits.sum(axis=0)
        d_cosine_unit = d_logits @ out_unit  # dL/d unit without κ
        # d/d log κ of Σ dL·κ·cos = κ Σ_n <unit_n, (dL @ Ê)_n>: no second pass over the (N, V) array.
        grads["out.log_scale"] = np.array([scale * np.vdot(unit, d_cosine_unit)], dtype=self.dtype)
        if self.config.train_output:
            grads["out.vectors"] = normalise_backward(d_logits.T @ (unit * scale), out_unit, out_norms)
        return loss, self._direction_backward(d_cosine_unit * scale, unit, norms)


def adaptive_clusters(counts: np.ndarray | None, vocab_size: int, coverage: tuple[float, ...]) -> np.ndarray:
    """(V,) cluster of every word: 0 for the head (the most frequent words covering coverage[0] of the
    training tokens), k for the words between coverage[k-1] and coverage[k] (the last cluster takes the
    rest). Every group gets at least one word."""
    groups = len(coverage) + 1
    if vocab_size < groups:
        raise ValueError(f"an adaptive softmax with {groups} groups needs at least {groups} words")
    counts = np.zeros(vocab_size) if counts is None else np.asarray(counts, dtype=np.float64)
    order = np.lexsort((np.arange(vocab_size), -counts))  # most frequent first, ties by id
    share = np.cumsum(counts[order] + 1.0) / np.sum(counts + 1.0)  # add-one, as the biases start from
    # Word r (by rank) belongs to the first group whose coverage its cumulative share has not passed yet.
    ends = [int(np.searchsorted(share, c, side="left")) + 1 for c in coverage]
    cluster = np.empty(vocab_size, dtype=np.int32)
    start = 0
    for group in range(groups):
        remaining_groups = groups - group - 1
        end = ends[group] if group < len(ends) else vocab_size
        end = min(max(end, start + 1), vocab_size - remaining_groups)
        cluster[order[start:end]] = group
        start = end
    return cluster


class AdaptiveCosSoftmaxHead(CosSoftmaxHead):
    """The cos_softmax distribution factored as an adaptive softmax (see the module docstring).

    Arrays beyond cos_softmax's: ``out.cluster`` (buffer, (V,) int32: 0 = head, k = tail cluster k), and one
    vector and bias per tail cluster (``out.cluster_vectors``, ``out.cluster_bias``), scored like words in the
    head softmax. Internally the words are kept sorted by group, so each group's scores are one contiguous
    slice."""

    loss_name = "adaptive_cos_softmax"

    def __init__(
        self,
        config: Any,
        embedding: np.ndarray,
        unit_embedding: np.ndarray,
        rng: np.random.Generator,
        unigram_counts: np.ndarray | None,
    ) -> None:
        super().__init__(config, embedding, unit_embedding, rng, unigram_counts)
        V, K = config.vocab_size, len(config.cluster_coverage)
        cluster = adaptive_clusters(unigram_counts, V, tuple(config.cluster_coverage))
        self.buffers["out.cluster"] = cluster
        self._index_clusters()
        # A cluster token starts as the frequency-weighted mean direction of its words, with the log of their
        # total frequency as its bias (centred like the word biases), so the factored distribution starts
        # close to the unfactored one.
        weights = np.ones(V) if unigram_counts is None else np.asarray(unigram_counts, np.float64) + 1.0
        vectors = np.zeros((K, config.dim))
        bias = np.zeros(K)
        word_bias = log_unigram(unigram_counts, V, np.float64)
        for k in range(1, K + 1):
            members = cluster == k
            vectors[k - 1] = (weights[members, None] * unit_embedding[members]).sum(axis=0)
            if unigram_counts is not None:
                bias[k - 1] = np.log(np.exp(word_bias[members]).sum())
        vectors += 1e-3 * rng.standard_normal(vectors.shape)  # never exactly zero
        self.params["out.cluster_vectors"] = vectors.astype(self.dtype)
        self.params["out.cluster_bias"] = bias.astype(self.dtype)
        self._inference_sorted: np.ndarray | None = None
        self._inference_sorted_columns: np.ndarray | None = None

    def _index_clusters(self) -> None:
        cluster = self.buffers["out.cluster"]
        groups = len(self.config.cluster_coverage) + 1
        self.order = np.argsort(cluster, kind="stable")  # word ids grouped by cluster
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order))  # where each word sits in that order
        sizes = np.bincount(cluster, minlength=groups)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.head_size = int(sizes[0])

    def load_buffers(self, buffers: dict[str, np.ndarray]) -> None:
        cluster = np.asarray(buffers["out.cluster"])
        groups = len(self.config.cluster_coverage) + 1
        if not np.issubdtype(cluster.dtype, np.integer) or np.any(cluster < 0) or np.any(cluster >= groups):
            raise ValueError(f"array 'out.cluster' must hold cluster numbers 0..{groups - 1}")
        if np.any(np.bincount(cluster, minlength=groups) == 0):
            raise ValueError("array 'out.cluster' leaves a cluster empty")
        self.buffers["out.cluster"] = cluster.astype(np.int32)
        self._index_clusters()
        self.clear_inference()

    def prepare_inference(self) -> None:
        super().prepare_inference()
        self._inference_sorted = self.output_unit_vectors()[self.order]
        # Stored (D, V) as well: OpenBLAS multiplies a few rows by a contiguous (D, V) matrix about twice as
        # fast as by the transposed view of (V, D) (measured at 2 to 32 rows, V 7k, D 200: what a decoding
        # tick scores), and decoding scores every tick.
        self._inference_sorted_columns = np.ascontiguousarray(self._inference_sorted.T)

    def clear_inference(self) -> None:
        super().clear_inference()
        self._inference_sorted = None
        self._inference_sorted_columns = None

    def _sorted_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit output vectors, word biases), both in cluster order."""
        unit = self._inference_sorted
        if unit is None:
            unit = self.output_unit_vectors()[self.order]
        return unit, self._sorted_bias()

    def _sorted_bias(self) -> np.ndarray:
        """The word biases in cluster order (zeros without output_bias)."""
        if self.config.output_bias:
            return self.params["out.bias"][self.order]
        return np.zeros(len(self.order), dtype=self.dtype)

    def scores(self, output: np.ndarray) -> np.ndarray:
        """Exact log-probabilities (..., V): head log-softmax, plus each cluster's own log-softmax."""
        scaled = self._scaled_unit(output)
        unit, bias = self._sorted_parts()
        Vh = self.head_size
        columns = self._inference_sorted_columns
        logits = scaled @ (columns if columns is not None else unit.T)
        logits += bias
        cluster_unit = normalise_rows(self.params["out.cluster_vectors"])[0]
        head = np.concatenate(
            [logits[..., :Vh], scaled @ cluster_unit.T + self.params["out.cluster_bias"]], axis=-1
        )
        log_softmax_(head)
        logits[..., :Vh] = head[..., :Vh]
        for k in range(1, len(self.offsets) - 1):
            part = logits[..., self.offsets[k] : self.offsets[k + 1]]
            log_softmax_(part)
            part += head[..., Vh + k - 1, None]
        return logits[..., self.position].astype(self.dtype, copy=False)

    def _vector_loss(
        self, predicted: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        N = len(targets)
        unit, norms = self._predicted_direction(predicted)
        scale = np.exp(self.params["out.log_scale"][0])
        scaled = unit * scale
        if self.config.train_output:
            out_unit, out_norms = normalise_rows(self.params["out.vectors"])
        else:
            out_unit = self.unit_embedding
        sorted_unit = out_unit[self.order]
        # The biases alone: _sorted_parts() would also normalise and reorder all V output vectors again.
        sorted_bias = self._sorted_bias()
        cluster_unit, cluster_norms = normalise_rows(self.params["out.cluster_vectors"])
        Vh = self.head_size
        position = self.position[targets]
        group = self.buffers["out.cluster"][targets]

        # The head softmax over the frequent words and the cluster tokens, for every position.
        head_matrix = np.concatenate([sorted_unit[:Vh], cluster_unit])
        head_logits = scaled @ head_matrix.T
        head_logits[:, :Vh] += sorted_bias[:Vh]
        head_logits[:, Vh:] += self.params["out.cluster_bias"]
        head_targets = np.where(group == 0, position, Vh + group - 1)
        loss, d_head = cross_entropy(head_logits, head_targets, N)
        d_scaled = d_head @ head_matrix
        d_head_matrix = d_head.T @ scaled
        # Every group's rows are written below (a tail cluster no position targets gets zeros), so no
        # zero-fill of the whole (V, D) matrix first.
        d_sorted_unit = np.empty_like(sorted_unit)
        d_sorted_unit[:Vh] = d_head_matrix[:Vh]
        d_sorted_bias = np.zeros_like(sorted_bias)
        d_sorted_bias[:Vh] = d_head[:, :Vh].sum(axis=0)
        grads["out.cluster_bias"] = d_head[:, Vh:].sum(axis=0)
        grads["out.cluster_vectors"] = normalise_backward(d_head_matrix[Vh:], cluster_unit, cluster_norms)

        # Each tail cluster's softmax, only for the positions whose target is in it.
        for k in range(1, len(self.offsets) - 1):
            rows = np.flatnonzero(group == k)
            lo, hi = self.offsets[k], self.offsets[k + 1]
            if len(rows) == 0:
                d_sorted_unit[lo:hi] = 0.0
                continue
            members = sorted_unit[lo:hi]
            logits = scaled[rows] @ members.T
            logits += sorted_bias[lo:hi]
            part_loss, d_logits = cross_entropy(logits, position[rows] - lo, N)
            loss += part_loss
            d_scaled[rows] += d_logits @ members
            d_sorted_unit[lo:hi] = d_logits.T @ scaled[rows]
            d_sorted_bias[lo:hi] = d_logits.sum(axis=0)

        if self.config.output_bias:
            grads["out.bias"] = d_sorted_bias[self.position]
        if self.config.train_output:
            grads["out.vectors"] = normalise_backward(d_sorted_unit[self.position], out_unit, out_norms)
        # scaled = κ·unit, so d/d log κ is <scaled, dL/dscaled>.
        grads["out.log_scale"] = np.array([np.vdot(scaled, d_scaled)], dtype=self.dtype)
        return loss, self._direction_backward(d_scaled * scale, unit, norms)


class SoftmaxHead(Head):
    """One-hot softmax over the vocabulary: logits = hidden @ head.W + head.b."""

    loss_name = "softmax"
    predicts_vector = False

    def __init__(
        self,
        config: Any,
        embedding: np.ndarray,
        unit_embedding: np.ndarray,
        rng: np.random.Generator,
        unigram_counts: np.ndarray | None,
    ) -> None:
        super().__init__(config, embedding, unit_embedding, rng, unigram_counts)
        H, V = config.hidden, config.vocab_size
        self.params["head.W"] = (rng.standard_normal((H, V)) / np.sqrt(H)).astype(self.dtype)
        self.params["head.b"] = log_unigram(unigram_counts, V, self.dtype)

    def output(self, hidden: np.ndarray) -> np.ndarray:
        return hidden

    def scores(self, output: np.ndarray) -> np.ndarray:
        logits = output @ self.params["head.W"]
        logits += self.params["head.b"]
        return logits.astype(self.dtype, copy=False)

    def loss_and_grads(
        self, hidden: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        W = self.params["head.W"]
        loss, d_logits = cross_entropy(self.scores(hidden), targets, len(targets))
        grads["head.W"] = hidden.T @ d_logits
        grads["head.b"] = d_logits.sum(axis=0)
        return loss, d_logits @ W.T


HEADS: dict[str, type[Head]] = {
    head.loss_name: head
    for head in (MSEHead, CosineHead, CosSoftmaxHead, AdaptiveCosSoftmaxHead, SoftmaxHead)
}
