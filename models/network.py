"""The next-word network: frozen word2vec input vectors (+ a learned per-word offset) -> stacked NumPy LSTM
layers -> an output head and its loss (models/heads.py: one class per loss, behind one interface).

Regularisation during training (all off at inference; the AWD-LSTM recipe of Merity, Keskar & Socher 2018,
"Regularizing and optimizing LSTM language models", adapted to what this network learns per word):

* ``dropout``: inverted dropout on every LSTM input and on the last LSTM output; with ``locked_dropout`` one
  mask per sequence is shared by all its time steps (variational dropout), so the network cannot route around
  a dropped unit by waiting a step.
* ``embedding_dropout``: whole word types are dropped from a batch's inputs (every occurrence of the word at
  once), so no word's meaning can rest on its own input vector and offset alone.
* ``recurrent_dropout``: DropConnect on the recurrent weights ``W_h`` of every layer, one mask per batch: it
  regularises the hidden-to-hidden transition without touching the fast per-step code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.heads import HEADS, Head, normalise_rows
from models.lstm import LSTM

LOSSES = tuple(HEADS)
# losses trained as a next-word distribution (perplexity is real)
DISTRIBUTION_LOSSES = tuple(name for name, head in HEADS.items() if head.is_distribution)

FORMAT_KEY = "__config__"


@dataclass
class NetworkConfig:
    """Shape, loss and regularisation of a Network. JSON-serialisable with dataclasses.asdict; stored inside
    lstm.npz."""

    vocab_size: int
    dim: int
    hidden: int = 256
    layers: int = 1
    loss: str = "cos_softmax"
    dropout: float = 0.0  # inverted dropout on every LSTM input and on the last LSTM output (training only)
    output_bias: bool = True  # cosine softmaxes: learn a per-word bias b_w (starts at log unigram frequency)
    train_output: bool = True  # cosine softmaxes: output vectors e_w trainable (initialised from word2vec)
    # Cosine softmaxes: the predicted vector's length multiplies its logits (κ·|v̂|·cos + b_w), a confidence
    # the network sets per position. Off (κ·cos + b_w) in models trained before it, which load unchanged.
    prediction_norm: bool = False
    # A learned per-word offset added to the frozen word2vec input vector ("input.offset", starts at 0).
    # word2vec puts similar words close together, which blurs exactly the identity of the previous word that a
    # bigram model exploits; the offset lets training separate them while the input stays word2vec-shaped.
    train_input: bool = False
    # Tied input and output word vectors (Press & Wolf 2017; Inan et al. 2017): the input vector of a word is
    # its output vector ("out.vectors", which starts at word2vec), so every word has one learned vector that
    # both reading and predicting it train, half the per-word parameters of separate ones.
    tie_vectors: bool = False
    locked_dropout: bool = False  # one dropout mask per sequence for all its time steps
    embedding_dropout: float = 0.0  # share of word types dropped from a batch's inputs
    recurrent_dropout: float = 0.0  # DropConnect rate on the recurrent weights W_h
    # adaptive_cos_softmax: the head holds the most frequent words covering the first share of the training
    # tokens; each further share closes one tail cluster (the last takes the rest).
    cluster_coverage: list[float] = field(default_factory=lambda: [0.8, 0.95])

    def __post_init__(self) -> None:
        self.cluster_coverage = [float(c) for c in self.cluster_coverage]  # as JSON gives it back

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"network loss {self.loss!r} is unknown; choose one of {', '.join(LOSSES)}")
        if self.tie_vectors and (self.train_input or not self.train_output or "cos_softmax" not in self.loss):
            raise ValueError(
                "network tie_vectors needs trained output vectors (a cosine-softmax loss with train_output) "
                "and replaces the input offset (train_input off)"
            )
        for name in ("vocab_size", "dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"network {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.layers not in (1, 2):
            raise ValueError(f"network layers must be 1 or 2, got {self.layers!r}")
        for name in ("dropout", "embedding_dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"network {name} must be in [0, 1), got {getattr(self, name)!r}")
        coverage = self.cluster_coverage
        increasing = list(coverage) == sorted(set(coverage))
        if not coverage or not increasing or any(not 0.0 < c < 1.0 for c in coverage):
            raise ValueError(
                f"network cluster_coverage must be increasing shares in (0, 1), got {list(coverage)!r}"
            )

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


class Network:
    """Embedding lookup (frozen, plus the optional learned offset) + 1-2 LSTM layers + head. All arrays
    float32 unless built with dtype=float64."""

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
        unit_embedding = normalise_rows(self.embedding)[0]
        V, D, H = config.vocab_size, config.dim, config.hidden

        self.lstms = [LSTM(D if k == 0 else H, H, rng, dtype=self.dtype) for k in range(config.layers)]
        self.params: dict[str, np.ndarray] = {}
        if config.train_input:
            self.params["input.offset"] = np.zeros((V, D), dtype=self.dtype)
        for k, lstm in enumerate(self.lstms):
            # The same array objects as the layer's, so in-place optimiser updates reach the layer.
            self.params[f"lstm{k}.W"] = lstm.W
            self.params[f"lstm{k}.b"] = lstm.b
        self.head: Head = HEADS[config.loss](config, self.embedding, unit_embedding, rng, unigram_counts)
        self.params.update(self.head.params)  # the same arrays again: updates reach the head
        self.buffers = self.head.buffers  # fixed arrays saved with the params (never trained)

    # -----------------------------------------------------------------------------------------------
    # inference
    def initial_state(self, batch: int = 1) -> State:
        return [lstm.initial_state(batch) for lstm in self.lstms]

    def _input(self, ids: np.ndarray) -> np.ndarray:
        if self.config.tie_vectors:
            return self.params["out.vectors"][ids]
        x = self.embedding[ids]
        if self.config.train_input:
            x += self.params["input.offset"][ids]
        return x

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
        return self.head.output(x), new_state

    def forward_sequence(
        self, ids: np.ndarray, state: State | None = None, lengths: np.ndarray | None = None
    ) -> tuple[np.ndarray, State]:
        """ids (B, T) -> head outputs (B, T, .) for the token after each position, and the final state. No
        grads. With `lengths` (B,), row b holds lengths[b] real tokens followed by padding (several prompts
        read in one pass): its state is the one after its own last token, and its outputs past its length
        are never to be read (the LSTM reads left to right, so padding changes nothing before it)."""
        ids = np.asarray(ids)
        if state is None:
            state = self.initial_state(ids.shape[0])
        x = self._input(ids)
        final = []
        for lstm, layer_state in zip(self.lstms, state, strict=True):
            x, cache = lstm.forward(x, layer_state)
            if lengths is None:
                final.append(cache.final_state)
            else:  # h[t] is the state after t tokens (h[0] the initial one)
                rows = np.arange(ids.shape[0])
                final.append((cache.h[lengths, rows], cache.c[lengths, rows]))
        return self.head.output(x), final

    def prepare_inference(self) -> None:
        """Cache what serving would otherwise recompute per token (a loaded model never changes): the head's
        unit output vectors and the LSTM layers' gate-scaled weights. Training clears the caches, since it
        updates the weights in place."""
        self.head.prepare_inference()
        for lstm in self.lstms:
            lstm.prepare_inference()

    def output_unit_vectors(self) -> np.ndarray:
        """(V, D) unit vectors the predicted vector is scored against (cached once prepare_inference ran);
        for the one-hot head, which predicts no vector, the unit word2vec vectors."""
        return self.head.output_unit_vectors()

    def scores(self, output: np.ndarray) -> np.ndarray:
        """Head outputs (..., .) -> next-word logits (..., V); softmax of these is the next-word
        distribution."""
        return self.head.scores(output)

    def similarity(self, output: np.ndarray) -> np.ndarray | None:
        """Cosine between each predicted vector and every word's output vector: the vectors the prediction
        is scored against (word2vec's own vectors unless training moved the output vectors, which then
        drift from word2vec, so a cosine to the word2vec vectors would no longer say how close the
        prediction is to a word). None for the one-hot head, which predicts no vector."""
        return self.head.similarity(output)

    # ------------------------------------------------------------------------------------------------
    # training
    def loss_and_state(self, ids: np.ndarray, state: State | None = None) -> tuple[float, State]:
        """Forward-only mean loss (no dropout) over ids (B, T+1) from `state`, and the final state: the
        stateful validation pass. For the distribution losses it is the cross-entropy of softmax(scores)."""
        ids = np.asarray(ids)
        outputs, final = self.forward_sequence(ids[:, :-1], state)
        targets = ids[:, 1:].reshape(-1)
        return self.head.loss(outputs.reshape(len(targets), -1), targets), final

    def _keep_mask(self, shape: tuple[int, ...], rate: float, rng: np.random.Generator) -> np.ndarray:
        """Inverted-dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
        keep = 1.0 - rate
        return (
            rng.random(shape, dtype=np.float64 if self.dtype == np.float64 else np.float32) < keep
        ) / np.array(keep, dtype=self.dtype)

    def _dropout_mask(self, batch: int, time: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """(B, T, width) mask, or (B, 1, width) shared by all steps with locked dropout."""
        steps = 1 if self.config.locked_dropout else time
        return self._keep_mask((batch, steps, width), self.config.dropout, rng)

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
        returning the final state, so consecutive windows of a stream can carry their context. With
        train=True every regulariser of the config is applied (dropout masks drawn from rng)."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] < 2:
            raise ValueError(f"ids must have shape (batch, time + 1) with time >= 1, got {ids.shape}")
        self.head.clear_inference()  # training updates the output vectors in place
        for lstm in self.lstms:
            lstm.clear_inference()
        config = self.config
        inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)
        B, T = inputs.shape
        use_dropout = train and config.dropout > 0
        if state is None:
            state = self.initial_state(B)

        x = self._input(inputs)
        word_mask = None
        if train and config.embedding_dropout > 0:
            kept = self._keep_mask((config.vocab_size,), config.embedding_dropout, rng)
            word_mask = kept[inputs][..., None]  # every occurrence of a dropped word type at once
            x *= word_mask
        masks, caches, final = [], [], []
        for lstm, layer_state in zip(self.lstms, state, strict=True):
            mask = self._dropout_mask(B, T, x.shape[2], rng) if use_dropout else None
            if mask is not None:
                x = x * mask
            recurrent = None
            if train and config.recurrent_dropout > 0:
                recurrent = self._keep_mask(
                    (lstm.hidden_size, 4 * lstm.hidden_size), config.recurrent_dropout, rng
                )
            x, cache = lstm.forward(x, layer_state, recurrent_mask=recurrent)
            masks.append(mask)
            caches.append(cache)
            final.append(cache.final_state)
        out_mask = self._dropout_mask(B, T, x.shape[2], rng) if use_dropout else None
        if out_mask is not None:
            x = x * out_mask
        hidden = x.reshape(B * T, -1)

        grads: dict[str, np.ndarray] = {}
        loss, d_hidden = self.head.loss_and_grads(hidden, targets, grads)

        dx = d_hidden.reshape(B, T, -1)
        if out_mask is not None:
            dx = dx * out_mask
        for k in reversed(range(len(self.lstms))):
            layer_grads, dx, _ = self.lstms[k].backward(dx, caches[k])
            grads[f"lstm{k}.W"] = layer_grads["W"]
            grads[f"lstm{k}.b"] = layer_grads["b"]
            if masks[k] is not None:
                dx = dx * masks[k]
        if config.train_input or config.tie_vectors:
            if word_mask is not None:
                dx = dx * word_mask
            d_input = _scatter_rows(inputs.reshape(-1), dx.reshape(B * T, -1), config.vocab_size)
            if config.tie_vectors:
                grads["out.vectors"] += d_input
            else:
                grads["input.offset"] = d_input
        return loss, grads, final

    # -------------------------------------------------------------------------------------------------
    # storage
    def save(self, path: str | Path) -> None:
        """np.savez of every param and buffer plus the config as JSON in a 0-d unicode array (no pickle
        needed to load)."""
        arrays = {FORMAT_KEY: np.array(json.dumps(asdict(self.config)))}
        arrays.update(self.params)
        arrays.update(self.buffers)
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
            expected = {**network.params, **network.buffers}
            stored = set(archive.files) - {FORMAT_KEY}
            missing = sorted(set(expected) - stored)
            extra = sorted(stored - set(expected))
            if missing or extra:
                raise ValueError(
                    f"{path}: arrays do not match the config (missing {missing}, unexpected {extra}); "
                    "the file is damaged or was written by another version"
                )
            buffers = {}
            for name, target in expected.items():
                value = read_array(archive, name, path)
                if value.shape != target.shape:
                    raise ValueError(
                        f"{path}: array {name!r} has shape {value.shape}, expected {target.shape} "
                        f"for the config {asdict(config)}; the file is damaged or belongs to other vectors"
                    )
                if name in network.buffers:
                    buffers[name] = value
                    continue
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"{path}: array {name!r} contains NaN or infinity; retrain the model")
                target[...] = value  # in place: the LSTM layers and the head hold the same arrays
            try:
                network.head.load_buffers(buffers)
            except ValueError as error:
                raise ValueError(f"{path}: {error}; the file is damaged") from None
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
