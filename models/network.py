"""The next-word network: frozen word2vec input vectors -> stacked NumPy LSTM layers -> a head and its loss.

Heads and losses (DESIGN §5):

* ``mse``: the reference articles' recipe. A linear head ``H -> D`` regresses onto the next word's
  word2vec vector; the prediction is the vocabulary word nearest by cosine.
* ``cosine``: the same head trained with ``1 - cos(v̂, e_next)``.
* ``cos_softmax``: the same head trained *discriminatively*: a softmax over ``κ·cos(v̂, e_w) + b_w`` with a
  learned scale ``κ = exp(out.log_scale)``, an optional per-word bias ``b_w`` and output vectors ``e_w``
  that start at the word2vec vectors and are optionally trainable. The output stays a vector in the
  embedding space.
* ``softmax``: a one-hot head (``Linear H -> V`` + bias, like the reference articles' word-level LSTMs), so
  vector and one-hot models can be compared on the same split.

``scores(output)`` turns a head output into next-word logits; evaluation, ``/predict`` and sampling all use
it, so ``softmax(scores)`` is the one next-word distribution of the model. ``mse`` and ``cosine`` are not
trained as distributions, so their scores are a fixed-scale cosine (``VECTOR_SCORE_SCALE``): sampling works,
but their perplexity is not a property of the model and evaluation reports it as None."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.lstm import LSTM

LOSSES = ("mse", "cosine", "cos_softmax", "softmax")
DISTRIBUTION_LOSSES = (
    "cos_softmax",
    "softmax",
)  # losses trained as a next-word distribution (perplexity is real)

# Scale turning the cosine of an mse/cosine model into logits. With cosines in [-1, 1], 10 makes a word whose
# cosine is 0.1 higher e (≈2.7) times likelier: peaked enough that sampling follows the nearest words, flat
# enough that temperature still matters. It is a decoding convention, not a learned quantity.
VECTOR_SCORE_SCALE = 10.0
INITIAL_COS_SCALE = (
    10.0  # κ at initialisation for cos_softmax; learned afterwards (as log κ, so it stays positive)
)
NORM_EPS = 1e-8  # ||v|| = sqrt(sum v² + eps): smooth at zero, so the gradient check holds everywhere

FORMAT_KEY = "__config__"


@dataclass
class NetworkConfig:
    """Shape and loss of a Network. JSON-serialisable with dataclasses.asdict; stored inside lstm.npz."""

    vocab_size: int
    dim: int
    hidden: int = 256
    layers: int = 1
    loss: str = "cos_softmax"
    dropout: float = 0.0  # inverted dropout on every LSTM input and on the last LSTM output (training only)
    output_bias: bool = True  # cos_softmax: learn a per-word bias b_w (initialised to log unigram frequency)
    train_output: bool = True  # cos_softmax: output vectors e_w trainable (initialised from word2vec)
    # A learned per-word offset added to the frozen word2vec input vector ("input.offset", starts at 0).
    # word2vec puts similar words close together, which blurs exactly the identity of the previous word that a
    # bigram model exploits; the offset lets training separate them while the input stays word2vec-shaped.
    train_input: bool = False

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"network loss {self.loss!r} is unknown; choose one of {', '.join(LOSSES)}")
        for name in ("vocab_size", "dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"network {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.layers not in (1, 2):
            raise ValueError(f"network layers must be 1 or 2, got {self.layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"network dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"network config has unknown fields {unknown}; was it written by a newer version?"
            )
        return cls(**data)


State = list[tuple[np.ndarray, np.ndarray]]


def _row_norms(matrix: np.ndarray) -> np.ndarray:
    """Smooth row norms with keepdims, so the backward below is the exact derivative of normalising."""
    return np.sqrt(np.einsum("...d,...d->...", matrix, matrix)[..., None] + NORM_EPS)


def _normalise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit rows, norms with keepdims)."""
    norms = _row_norms(matrix)
    return matrix / norms, norms


def _normalise_backward(d_unit: np.ndarray, unit: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Gradient through unit = v / ||v||:  dv = (du - unit·<unit, du>) / ||v||."""
    return (d_unit - unit * np.einsum("...d,...d->...", unit, d_unit)[..., None]) / norms


def _log_unigram(counts: np.ndarray | None, vocab_size: int, dtype: type) -> np.ndarray:
    if counts is None:
        return np.zeros(vocab_size, dtype=dtype)
    smoothed = np.asarray(counts, dtype=np.float64) + 1.0
    log_p = np.log(smoothed / smoothed.sum())
    return (log_p - log_p.mean()).astype(dtype)


class Network:
    """Embedding lookup (frozen) + 1-2 LSTM layers + head. All arrays float32 unless built with
    dtype=float64."""

    def __init__(
        self,
        config: NetworkConfig,
        embedding: np.ndarray,
        rng: np.random.Generator,
        dtype: type = np.float32,
        unigram_counts: np.ndarray | None = None,
    ) -> None:
        config.validate()
        embedding = np.asarray(embedding)
        if embedding.shape != (config.vocab_size, config.dim):
            raise ValueError(
                f"embedding has shape {embedding.shape} but the network config expects "
                f"({config.vocab_size}, {config.dim}); the vectors and the network come from different models"
            )
        self.config = config
        self.dtype = np.dtype(dtype)
        self.embedding = np.ascontiguousarray(embedding, dtype=self.dtype)
        self._unit_embedding = _normalise_rows(self.embedding)[0]
        self._inference_unit_vectors: np.ndarray | None = None  # set by prepare_inference()
        V, D, H = config.vocab_size, config.dim, config.hidden

        self.lstms = [LSTM(D if k == 0 else H, H, rng, dtype=self.dtype) for k in range(config.layers)]
        self.params: dict[str, np.ndarray] = {}
        if config.train_input:
            self.params["input.offset"] = np.zeros((V, D), dtype=self.dtype)
        for k, lstm in enumerate(self.lstms):
            # The same array objects as the layer's, so in-place optimiser updates reach the layer.
            self.params[f"lstm{k}.W"] = lstm.W
            self.params[f"lstm{k}.b"] = lstm.b
        out_size = V if config.loss == "softmax" else D
        self.params["head.W"] = (rng.standard_normal((H, out_size)) / np.sqrt(H)).astype(self.dtype)
        if config.loss == "softmax":
            # Starting at the unigram distribution saves the first epoch from learning word frequencies.
            self.params["head.b"] = _log_unigram(unigram_counts, V, self.dtype)
        else:
            self.params["head.b"] = np.zeros(D, dtype=self.dtype)
        if config.loss == "cos_softmax":
            self.params["out.log_scale"] = np.full(1, np.log(INITIAL_COS_SCALE), dtype=self.dtype)
            if config.train_output:
                self.params["out.vectors"] = self.embedding.copy()
            if config.output_bias:
                self.params["out.bias"] = _log_unigram(unigram_counts, V, self.dtype)

    # -----------------------------------------------------------------------------------------------
    # inference
    def initial_state(self, batch: int = 1) -> State:
        return [lstm.initial_state(batch) for lstm in self.lstms]

    def _input(self, ids: np.ndarray) -> np.ndarray:
        x = self.embedding[ids]
        if self.config.train_input:
            x += self.params["input.offset"][ids]
        return x

    def _head(self, hidden: np.ndarray) -> np.ndarray:
        """Last LSTM output -> head output: predicted vector (.., D), or the hidden state itself for
        softmax."""
        if self.config.loss == "softmax":
            return hidden
        return hidden @ self.params["head.W"] + self.params["head.b"]

    def step(self, ids: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """Advance every sequence of the batch by one token in O(1); ids (B,) -> head output for the next
        token."""
        ids = np.asarray(ids)
        if state is None:
            state = self.initial_state(len(ids))
        x = self._input(ids)
        new_state = []
        for lstm, layer_state in zip(self.lstms, state, strict=True):
            x, layer_state = lstm.step(x, layer_state)
            new_state.append(layer_state)
        return self._head(x), new_state

    def forward_sequence(self, ids: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """ids (B, T) -> head outputs (B, T, .) for the token after each position, and the final state. No
        grads."""
        ids = np.asarray(ids)
        if state is None:
            state = self.initial_state(ids.shape[0])
        x = self._input(ids)
        final = []
        for lstm, layer_state in zip(self.lstms, state, strict=True):
            x, cache = lstm.forward(x, layer_state)
            final.append(cache.final_state)
        return self._head(x), final

    def prepare_inference(self) -> None:
        """Cache the unit output vectors for serving. Normalising the (V, D) output matrix dominated the
        cost of one generated token (about 2 of 3 ms at V=6k, D=200); a loaded model never changes, so it
        is done once. Training clears the cache, since it updates the vectors in place."""
        self._inference_unit_vectors = self.output_unit_vectors()
        for lstm in self.lstms:
            lstm.prepare_inference()

    def output_unit_vectors(self) -> np.ndarray:
        """(V, D) unit vectors the predicted vector is scored against (cached once prepare_inference ran);
        for the one-hot head, which predicts no vector, the unit word2vec vectors."""
        if self._inference_unit_vectors is not None:
            return self._inference_unit_vectors
        if self.config.loss == "cos_softmax" and self.config.train_output:
            return _normalise_rows(self.params["out.vectors"])[0]
        return self._unit_embedding

    def scores(self, output: np.ndarray) -> np.ndarray:
        """Head outputs (..., .) -> next-word logits (..., V); softmax of these is the next-word
        distribution."""
        loss = self.config.loss
        if loss == "softmax":
            logits = output @ self.params["head.W"]
            logits += self.params["head.b"]
        else:
            # The scale multiplies the (.., D) unit vectors before the product rather than the (.., V) cosines
            # after it: one pass over D numbers per row instead of V (a tick's scoring is the largest array
            # work of serving), and the bias is added in place.
            scale = np.exp(self.params["out.log_scale"][0]) if loss == "cos_softmax" else VECTOR_SCORE_SCALE
            logits = (output * (scale / _row_norms(output))) @ self.output_unit_vectors().T
            if loss == "cos_softmax" and self.config.output_bias:
                logits += self.params["out.bias"]
        return logits.astype(self.dtype, copy=False)

    def similarity(self, output: np.ndarray) -> np.ndarray | None:
        """Cosine between each predicted vector and every word's output vector: the vectors the prediction
        is scored against (word2vec's own vectors unless cos_softmax trained its output vectors, which then
        drift from word2vec, so a cosine to the word2vec vectors would no longer say how close the
        prediction is to a word). None for the one-hot head, which predicts no vector."""
        if self.config.loss == "softmax":
            return None
        return _normalise_rows(output)[0] @ self.output_unit_vectors().T

    # ------------------------------------------------------------------------------------------------
    # training
    def loss_and_state(self, ids: np.ndarray, state: State | None = None) -> tuple[float, State]:
        """Forward-only mean loss (no dropout) over ids (B, T+1) from `state`, and the final state: the
        stateful validation pass. For the distribution losses it is the cross-entropy of softmax(scores)."""
        ids = np.asarray(ids)
        outputs, final = self.forward_sequence(ids[:, :-1], state)
        targets = ids[:, 1:].reshape(-1)
        outputs = outputs.reshape(len(targets), -1)
        loss_name = self.config.loss
        if loss_name in DISTRIBUTION_LOSSES:
            logits = self.scores(outputs)
            logits -= logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits).sum(axis=1))
            return float(np.mean(log_norm - logits[np.arange(len(targets)), targets])), final
        if loss_name == "mse":
            diff = outputs - self.embedding[targets]
            return float(np.mean(diff * diff)), final
        unit = _normalise_rows(outputs)[0]
        return float(1.0 - np.mean(np.einsum("nd,nd->n", unit, self._unit_embedding[targets]))), final

    def _dropout_mask(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        keep = 1.0 - self.config.dropout
        return (
            rng.random(shape, dtype=np.float64 if self.dtype == np.float64 else np.float32) < keep
        ) / np.array(keep, dtype=self.dtype)

    def loss_and_grads(
        self, ids: np.ndarray, rng: np.random.Generator, train: bool = True
    ) -> tuple[float, dict[str, np.ndarray]]:
        """ids (B, T+1): mean next-token loss over all B·T positions and its exact gradient for every
        param."""
        loss, grads, _ = self.loss_grads_state(ids, rng, state=None, train=train)
        return loss, grads

    def loss_grads_state(
        self, ids: np.ndarray, rng: np.random.Generator, state: State | None = None, train: bool = True
    ) -> tuple[float, dict[str, np.ndarray], State]:
        """As loss_and_grads, starting from `state` (truncated BPTT: no gradient flows into it) and also
        returning the final state, so consecutive windows of a stream can carry their context."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] < 2:
            raise ValueError(f"ids must have shape (batch, time + 1) with time >= 1, got {ids.shape}")
        self._inference_unit_vectors = None  # training updates the output vectors in place
        for lstm in self.lstms:
            lstm.clear_inference()
        inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)
        B, T = inputs.shape
        use_dropout = train and self.config.dropout > 0
        if state is None:
            state = self.initial_state(B)

        x = self._input(inputs)
        masks, caches, final = [], [], []
        for lstm, layer_state in zip(self.lstms, state, strict=True):
            mask = self._dropout_mask(x.shape, rng) if use_dropout else None
            if mask is not None:
                x = x * mask
            x, cache = lstm.forward(x, layer_state)
            masks.append(mask)
            caches.append(cache)
            final.append(cache.final_state)
        out_mask = self._dropout_mask(x.shape, rng) if use_dropout else None
        if out_mask is not None:
            x = x * out_mask
        hidden = x.reshape(B * T, -1)

        grads: dict[str, np.ndarray] = {}
        loss, d_hidden = self._head_loss(hidden, targets, grads)

        dx = d_hidden.reshape(B, T, -1)
        if out_mask is not None:
            dx = dx * out_mask
        for k in reversed(range(len(self.lstms))):
            layer_grads, dx, _ = self.lstms[k].backward(dx, caches[k])
            grads[f"lstm{k}.W"] = layer_grads["W"]
            grads[f"lstm{k}.b"] = layer_grads["b"]
            if masks[k] is not None:
                dx = dx * masks[k]
        if self.config.train_input:
            grads["input.offset"] = _scatter_rows(
                inputs.reshape(-1), dx.reshape(B * T, -1), self.config.vocab_size
            )
        return loss, grads, final

    def _head_loss(
        self, hidden: np.ndarray, targets: np.ndarray, grads: dict[str, np.ndarray]
    ) -> tuple[float, np.ndarray]:
        """Loss over N = B·T positions from the last LSTM output (N, H); fills head grads, returns
        dL/dhidden."""
        loss_name = self.config.loss
        N = len(targets)
        W = self.params["head.W"]
        if loss_name == "softmax":
            logits = hidden @ W
            logits += self.params["head.b"]
            loss, d_logits = _cross_entropy(logits, targets)
            grads["head.W"] = hidden.T @ d_logits
            grads["head.b"] = d_logits.sum(axis=0)
            return loss, d_logits @ W.T

        predicted = hidden @ W + self.params["head.b"]
        if loss_name == "mse":
            diff = predicted - self.embedding[targets]
            loss = float(np.mean(diff * diff))
            d_predicted = diff * (2.0 / diff.size)
        elif loss_name == "cosine":
            unit, norms = _normalise_rows(predicted)
            target_unit = self._unit_embedding[targets]
            loss = float(1.0 - np.mean(np.einsum("nd,nd->n", unit, target_unit)))
            d_predicted = _normalise_backward(-target_unit / N, unit, norms)
        else:  # cos_softmax
            unit, norms = _normalise_rows(predicted)
            scale = np.exp(self.params["out.log_scale"][0])
            if self.config.train_output:
                out_unit, out_norms = _normalise_rows(self.params["out.vectors"])
            else:
                out_unit = self._unit_embedding
            # κ folded into the (N, D) side: one pass over the (N, V) logits fewer.
            logits = (unit * scale) @ out_unit.T
            if self.config.output_bias:
                logits += self.params["out.bias"]
            loss, d_logits = _cross_entropy(logits, targets)
            if self.config.output_bias:
                grads["out.bias"] = d_logits.sum(axis=0)
            d_cosine_unit = d_logits @ out_unit  # dL/d unit without κ
            # d/d log κ of Σ dL·κ·cos = κ Σ_n <unit_n, (dL @ Ê)_n>: no second pass over the (N, V) array.
            grads["out.log_scale"] = np.array([scale * np.vdot(unit, d_cosine_unit)], dtype=self.dtype)
            if self.config.train_output:
                d_out_unit = d_logits.T @ (unit * scale)
                grads["out.vectors"] = _normalise_backward(d_out_unit, out_unit, out_norms)
            d_predicted = _normalise_backward(d_cosine_unit * scale, unit, norms)
        grads["head.W"] = hidden.T @ d_predicted
        grads["head.b"] = d_predicted.sum(axis=0)
        return loss, d_predicted @ W.T

    # -------------------------------------------------------------------------------------------------
    # storage
    def save(self, path: str | Path) -> None:
        """np.savez of every param plus the config as JSON in a 0-d unicode array (no pickle needed to
        load)."""
        arrays = {FORMAT_KEY: np.array(json.dumps(asdict(self.config)))}
        arrays.update(self.params)
        with open(path, "wb") as handle:  # a file handle keeps np.savez from appending ".npz" to the name
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path, embedding: np.ndarray) -> Network:
        """Load a saved network; ValueError naming the file and the bad array when anything does not fit."""
        path = Path(path)
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{path}: not a readable .npz archive ({error}); retrain or restore the file"
            ) from None
        with archive:
            if FORMAT_KEY not in archive.files:
                raise ValueError(
                    f"{path}: no network config ({FORMAT_KEY}); this is not a novel-lstm network file"
                )
            try:
                config = NetworkConfig.from_dict(json.loads(str(read_array(archive, FORMAT_KEY, path))))
                network = cls(config, embedding, np.random.default_rng(0))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}: {error}") from None
            stored = set(archive.files) - {FORMAT_KEY}
            missing = sorted(set(network.params) - stored)
            extra = sorted(stored - set(network.params))
            if missing or extra:
                raise ValueError(
                    f"{path}: arrays do not match the config (missing {missing}, unexpected {extra}); "
                    "the file is damaged or was written by another version"
                )
            for name, target in network.params.items():
                value = read_array(archive, name, path)
                if value.shape != target.shape:
                    raise ValueError(
                        f"{path}: array {name!r} has shape {value.shape}, expected {target.shape} "
                        f"for the config {asdict(config)}; the file is damaged or belongs to other vectors"
                    )
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"{path}: array {name!r} contains NaN or infinity; retrain the model")
                target[...] = value  # in place: the LSTM layers hold the same arrays
        return network


def read_array(archive: Any, name: str, path: Path) -> np.ndarray:
    """archive[name] from an np.load(allow_pickle=False) archive; an array of Python objects (which only
    pickle could restore, and unpickling runs code) is a ValueError naming the file and the array."""
    try:
        return archive[name]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise ValueError(f"{path}: array {name!r} is unreadable ({error})") from None
        raise ValueError(
            f"{path}: array {name!r} holds Python objects, which only pickle could load and pickle is never "
            "used on loading paths; this is not a file novel-lstm wrote: retrain or restore it"
        ) from None


def _scatter_rows(ids: np.ndarray, rows: np.ndarray, vocab_size: int) -> np.ndarray:
    """(V, D) sums of `rows` grouped by id: the embedding gradient, via one sort and np.add.reduceat."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    unique, starts = np.unique(sorted_ids, return_index=True)
    result = np.zeros((vocab_size, rows.shape[1]), dtype=rows.dtype)
    result[unique] = np.add.reduceat(rows[order], starts, axis=0)
    return result


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against targets and its gradient; reuses the logits buffer."""
    N = len(targets)
    rows = np.arange(N)
    logits -= logits.max(axis=1, keepdims=True)
    target_logits = logits[rows, targets].copy()
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1)
    loss = float(np.mean(np.log(sums) - target_logits))
    logits *= (1.0 / (sums * N))[:, None]  # softmax and the 1/N of the mean in one pass
    logits[rows, targets] -= 1.0 / N
    return loss, logits
