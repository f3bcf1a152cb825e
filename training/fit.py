"""Fit the next-word network on the training token stream: stateful truncated BPTT, Adam, checkpoints, resume.

Batches (why this layout): the training stream ``token_ids[:split_index]`` is cut into ``batch_size``
contiguous sub-streams that are read in parallel, ``seq_len`` tokens at a time, with dense next-token
supervision at every position. The LSTM state is carried from one window to the next (truncated BPTT, as in
Zaremba et al.'s PTB models), so the model learns to use context longer than a window, and evaluation runs the
held-out text the same stateful way. Each epoch starts the sub-streams at a random offset in ``[0, seq_len)``
so window boundaries move between epochs.

Weights: Adam with global gradient-norm clipping, optional decoupled weight decay towards the initial values
(AdamW; for the output word vectors that is word2vec's) and a cosine learning-rate decay over the planned
updates. An exponential moving average of the weights (``--average``, decay ramped up from 0 over the first
updates) is what gets validated, selected and saved; like averaged SGD in AWD-LSTM it generalises better than
the last iterate. A second, long average (``--long-average``: over about the last two thirds of the updates,
taken every few updates) is validated beside it, and whichever scores the lower validation loss is the epoch's
weights: a novel that stops on its validation loss stops with its learning rate still high, and there the long
average is the better model (120k characters of 红楼梦: LSTM alone 7.72 bpc against 7.76, README
"Ablation"); a run the time budget ends has decayed its learning rate, and there the long one lags behind.

The plan (how long to train) fits the novel and the machine instead of a fixed epoch count: the first 10
updates measure the seconds per update, and the plan is the number of updates that fits into the time budget
(``--time-budget-minutes``), at most ``--epochs`` epochs; it is re-made from the measured speed after every
epoch, and the learning-rate schedule follows it (the last epoch may be cut short). After every epoch the
validation loss decides: a better one is kept as the best weights; ``--patience`` validations in a row without
a better one stop the run (optionally the learning rate is cut at each, ``--plateau-lr-factor``). So a small
novel trains until it stops improving, and a large one gets every update the budget allows. The plan and the
reason the run stopped are printed and kept in the summary (manifest.json "training").

Validation: after every epoch the loss is measured on a validation slice, the last 5% of the training stream
(the end of the training chapters, just before the held-out ones), by the same stateful pass the evaluation
uses. It drives the early stopping and the choice of the best epoch. The held-out split (the last 10% of
chapters, training/split.py) is never seen in training or selection, so its numbers are an honest estimate.

Checkpoints: after every epoch ``checkpoint_dir/checkpoint.npz`` (written to a temporary name, then renamed)
holds the parameters, their moving average, the best average so far, Adam's moments and step count, the RNG
state (``bit_generator.state`` as JSON), the epoch, the history and a fingerprint of the data and settings.
``resume=True`` loads it and continues with the next epoch; since every epoch starts from a fresh LSTM state
and all randomness comes from the saved RNG, a resumed run ends with the same parameters as an uninterrupted
one (as long as no time budget cut the plan short)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.network import LOSSES, Network, NetworkConfig, State, read_array
from models.vectors import WordVectors

CHECKPOINT_NAME = "checkpoint.npz"
VALIDATION_STREAMS = 8  # parallel sub-streams for the stateful validation pass
VALIDATION_FRACTION = 0.05  # tail of the training stream used for validation (never the held-out split)
VALIDATION_WINDOW = 128


# Regularisation by the size of the novel (training tokens). A small novel gives the plan many epochs and
# the network overfits it: the AWD-LSTM set (locked dropout 0.4, embedding dropout, DropConnect on W_h)
# measured best at 120k characters of 红楼梦 (LSTM alone 7.79 bpc against 7.87 with the light set, both
# trained until the validation loss stopped improving). A large novel gets few epochs within the time
# budget, and there the same set only slows learning: on all of 红楼梦, 5 epochs each, LSTM alone 6.31 bpc
# (validation 5.05 nats per token) against the light set's 6.26 (4.94) (README, "Ablation").
# Tied input and output vectors (--tie-vectors) are off for every size: on a 117k-character novel without
# chapters they held the network near the unigram for its first 3-5 epochs (its input vectors are the output
# vectors, which every update of the softmax moves), so within the time budget it reached 7.18 bpc against
# 6.97 with separate vectors; trained until the validation loss stopped, tied 6.93, separate 6.87 (README,
# "Small novels").
# Every novel pulls its separate vectors towards each other (--tie-pull 10: the gap between a word's input
# and output vector shrinks by 3% per update at the peak learning rate): each keeps its own updates, so the
# input does not move with every softmax update as a tied one does, while what the output vectors learn
# reaches the input vectors of words read too rarely to learn an offset of their own. Trained until the
# validation loss stopped: 120k characters of 红楼梦 LSTM alone 7.764 (separate, mean of 2 seeds) -> 7.668
# (tied: 7.717), the diary 6.870 (tied 6.93) -> 6.795; 300k in 13 epochs 5.951 -> 5.921; pulls of 3 and 30 did
# nearly as well. On all of 红楼梦, 6 epochs each, two seeds per arm: 6.213 and 6.214 -> 6.188 and 6.191. Its
# first epochs learn more slowly (validation after epoch 2: 4.948 against 4.915 nats per token), so a run cut
# to two or three epochs gains nothing from it (README, "Small novels").
# A small novel's epochs are short (85 updates at 120k characters), and its short average's validation loss
# can stall for two epochs before the long average takes over: with other word2vec vectors of the same 120k
# characters, patience 2 stopped after epoch 12 (best 10) at 7.747 bpc, patience 4 went on to epoch 23 (best
# 19) and 7.684. So a small novel waits 4 validations, a large one (few, long epochs in its budget) 2.
SMALL_NOVEL_TOKENS = 300_000
REGULARISATION = {
    "small": {
        "dropout": 0.4,
        "locked_dropout": True,
        "embedding_dropout": 0.1,
        "recurrent_dropout": 0.3,
        "patience": 4,
    },
    "large": {
        "dropout": 0.3,
        "locked_dropout": False,
        "embedding_dropout": 0.0,
        "recurrent_dropout": 0.0,
        "patience": 2,
    },
}


@dataclass
class FitConfig:
    """Training settings. The defaults fit a fresh `make serve` on 红楼梦 into 5 minutes on 2 cores: the plan
    spends at most ``time_budget_minutes`` fitting, and a small novel stops earlier, when the validation loss
    stops improving."""

    # The most epochs the plan may hold: the time budget (large novels) or the validation loss (small ones)
    # stops it first. 120k characters of 红楼梦 stop improving after about 11 epochs with the defaults.
    epochs: int = 50
    hidden: int = 256
    layers: int = 1
    seq_len: int = 32
    batch_size: int = 32
    # Chosen on the validation loss (README, Ablation): on full 红楼梦 with a fixed 6-epoch plan, 0.002,
    # 0.003, 0.0045, 0.006 and 0.008 ended at 4.810, 4.768, 4.745, 4.741 and 4.750 nats per token; under the
    # time budget 0.006 beat 0.003 at 300k characters and on a small novel in GB18030, and tied at 120k (the
    # two seeds' held-out bpc averaged 7.571 against 7.557, within their spread).
    lr: float = 6e-3
    final_lr_fraction: float = 0.05  # cosine decay from lr to lr * this over the planned steps
    loss: str = "adaptive_cos_softmax"
    # None = chosen by the size of the novel (REGULARISATION below, for_corpus); a value overrides it.
    dropout: float | None = None
    locked_dropout: bool | None = None
    embedding_dropout: float | None = None
    recurrent_dropout: float | None = None
    weight_decay: float = 0.0  # decoupled, towards the initial values (see decay_targets)
    output_bias: bool = True
    train_output: bool = True
    # The predicted vector's length scales its logits (models/network.py). Fit-and-score on 红楼梦 (6 epochs,
    # same plan): LSTM alone 6.191 → 6.139 bpc; at 120,000 characters 7.668 → 7.633.
    prediction_norm: bool = True
    train_input: bool = True
    tie_vectors: bool = False  # see REGULARISATION: measured slower to learn on a small novel
    # Soft tying: after every update each word's input vector (word2vec + offset) and output vector are pulled
    # towards each other, their gap shrinking by lr * tie_pull (see pull_vectors_together).
    tie_pull: float = 10.0
    clip: float = 5.0  # global gradient-norm clipping
    average: float = 0.995  # decay of the parameter average used for validation and the saved model; 0 = off
    # Cap of the long average's decay (per update; 0 = off), validated beside the short one.
    long_average: float = 0.9995
    # Stop after this many validations without a better loss (None: by size, REGULARISATION)...
    patience: int | None = None
    # ...but never before this many updates: a network leaves the unigram-like start only after a few hundred
    # (at 40k characters of 红楼梦, 5 epochs of 29 updates left the validation loss flat, then worse), and a
    # small novel's first epochs are short.
    min_updates: int = 1000
    # Each validation that does not improve multiplies the learning rate by this (1 = keep the schedule).
    plateau_lr_factor: float = 1.0
    # The plan's time budget: `make serve` on a fresh clone (segmentation, word2vec, fit, mixture,
    # evaluation) has to finish within 5 minutes on 2 cores.
    time_budget_minutes: float | None = 2.75
    seed: int = 0

    def validate(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "hidden": self.hidden >= 1,
            "layers": self.layers in (1, 2),
            "seq-len": self.seq_len >= 1,
            "batch-size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "dropout": self.dropout is None or 0.0 <= self.dropout < 1.0,
            "embedding-dropout": self.embedding_dropout is None or 0.0 <= self.embedding_dropout < 1.0,
            "recurrent-dropout": self.recurrent_dropout is None or 0.0 <= self.recurrent_dropout < 1.0,
            "weight-decay": self.weight_decay >= 0.0 and self.weight_decay * self.lr < 1.0,
            "tie-pull": 0.0 <= self.tie_pull * self.lr <= 1.0,
            "clip": self.clip > 0,
            "patience": self.patience is None or self.patience >= 1,
            "min-updates": self.min_updates >= 0,
            "plateau-lr-factor": 0.0 < self.plateau_lr_factor <= 1.0,
            "average": 0.0 <= self.average < 1.0,
            "long-average": 0.0 <= self.long_average < 1.0,
            "loss": self.loss in LOSSES,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid fit setting --{bad[0]}={getattr(self, bad[0].replace('-', '_'))!r}")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise ValueError(
                "--time-budget-minutes must be positive (or 0 on the command line for no budget)"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FitConfig:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        if values.get("time_budget_minutes") == 0:
            values["time_budget_minutes"] = None
        config = cls(**values)
        config.validate()
        return config

    def for_corpus(self, train_tokens: int) -> FitConfig:
        """A copy with every regularisation setting left at None filled in for a novel of this many training
        tokens (REGULARISATION)."""
        size = "small" if train_tokens < SMALL_NOVEL_TOKENS else "large"
        chosen = {
            name: value if getattr(self, name) is None else getattr(self, name)
            for name, value in REGULARISATION[size].items()
        }
        return dataclasses.replace(self, **chosen)

    def network_config(self, vocab_size: int, dim: int) -> NetworkConfig:
        # Tying needs trained output vectors: the cosine-softmax heads with --train-output; the other heads
        # (and --no-train-output) read word2vec plus the offset, as before.
        tie = self.tie_vectors and "cos_softmax" in self.loss and self.train_output
        return NetworkConfig(
            vocab_size=vocab_size,
            dim=dim,
            hidden=self.hidden,
            layers=self.layers,
            loss=self.loss,
            dropout=self.dropout,
            output_bias=self.output_bias,
            train_output=self.train_output,
            prediction_norm=self.prediction_norm,
            train_input=self.train_input and not tie,  # the tied vector replaces the offset
            tie_vectors=tie,
            locked_dropout=self.locked_dropout,
            embedding_dropout=self.embedding_dropout,
            recurrent_dropout=self.recurrent_dropout,
        )


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The network/training options of `python -m training` (defaults from FitConfig)."""
    d = FitConfig()
    group = parser.add_argument_group("network and training")
    group.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help="the most epochs the plan may hold; the time budget and the validation loss usually stop it "
        "sooner (default %(default)s)",
    )
    group.add_argument("--hidden", type=int, default=d.hidden, help="LSTM hidden size (default %(default)s)")
    group.add_argument("--layers", type=int, default=d.layers, choices=(1, 2), help="stacked LSTM layers")
    group.add_argument(
        "--seq-len", type=int, default=d.seq_len, help="BPTT window in tokens (default %(default)s)"
    )
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="parallel streams per update")
    group.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default %(default)s)")
    group.add_argument(
        "--loss",
        choices=LOSSES,
        default=d.loss,
        help="cos_softmax: softmax over scaled cosine to output vectors; adaptive_cos_softmax: the same "
        "distribution as an adaptive softmax (frequent words first, rare ones in clusters: cheaper to "
        "train); mse: the reference recipe (regress onto the next word vector); cosine; softmax: one-hot "
        "head over the vocabulary (default %(default)s)",
    )
    group.add_argument(
        "--dropout",
        type=float,
        default=d.dropout,
        help="dropout rate on every LSTM input and output (default: 0.4 for a novel under 300,000 "
        "training tokens, else 0.3)",
    )
    group.add_argument(
        "--locked-dropout",
        action=argparse.BooleanOptionalAction,
        default=d.locked_dropout,
        help="one dropout mask per sequence, shared by all its time steps (default: on for a novel under "
        "300,000 training tokens)",
    )
    group.add_argument(
        "--embedding-dropout",
        type=float,
        default=d.embedding_dropout,
        help="share of word types dropped from each batch's inputs (default: 0.1 for a novel under 300,000 "
        "training tokens, else 0)",
    )
    group.add_argument(
        "--recurrent-dropout",
        type=float,
        default=d.recurrent_dropout,
        help="DropConnect rate on the recurrent LSTM weights (default: 0.3 for a novel under 300,000 "
        "training tokens, else 0)",
    )
    group.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help="decoupled weight decay towards the initial values (word2vec for the word vectors) "
        "(default %(default)s)",
    )
    group.add_argument(
        "--output-bias",
        action=argparse.BooleanOptionalAction,
        default=d.output_bias,
        help="cos_softmax: learn a per-word bias (default on)",
    )
    group.add_argument(
        "--train-output",
        action=argparse.BooleanOptionalAction,
        default=d.train_output,
        help="cos_softmax: let the output word vectors move from word2vec (default on)",
    )
    group.add_argument(
        "--prediction-norm",
        action=argparse.BooleanOptionalAction,
        default=d.prediction_norm,
        help="cosine-softmax heads: the predicted vector's length scales its logits, a confidence the "
        "network sets per position (off: one learned scale for every position) (default on)",
    )
    group.add_argument(
        "--train-input",
        action=argparse.BooleanOptionalAction,
        default=d.train_input,
        help="learn a per-word offset to the frozen word2vec input vectors (default %(default)s)",
    )
    group.add_argument(
        "--tie-vectors",
        action=argparse.BooleanOptionalAction,
        default=d.tie_vectors,
        help="cosine-softmax heads: read each word through its trained output vector (tied input and "
        "output vectors) instead of word2vec plus a learned offset (default off: it slows the start of "
        "training)",
    )
    group.add_argument(
        "--tie-pull",
        type=float,
        default=d.tie_pull,
        help="separate vectors: after every update pull each word's input vector (word2vec + offset) and "
        "output vector towards each other, shrinking their gap by lr times this (soft tying; 0 = off, "
        "1 / lr = tied) (default %(default)s)",
    )
    group.add_argument(
        "--clip", type=float, default=d.clip, help="gradient-norm clipping (default %(default)s)"
    )
    group.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="stop after this many validations without a better loss (default: 4 for a novel under 300,000 "
        "training tokens, whose epochs are short, else 2)",
    )
    group.add_argument(
        "--min-updates",
        type=int,
        default=d.min_updates,
        help="never stop for the validation loss before this many updates (default %(default)s)",
    )
    group.add_argument(
        "--plateau-lr-factor",
        type=float,
        default=d.plateau_lr_factor,
        help="multiply the learning rate by this after a validation without a better loss "
        "(default %(default)s)",
    )
    group.add_argument(
        "--average",
        type=float,
        default=d.average,
        help="decay of the exponential moving average of the weights that is validated and saved "
        "(0 = use the raw weights; default %(default)s)",
    )
    group.add_argument(
        "--long-average",
        type=float,
        default=d.long_average,
        help="per-update decay (at most) of a second, long average of the weights, over about the last two "
        "thirds of the updates; validated beside --average's and kept when better (0 = off; default "
        "%(default)s)",
    )
    group.add_argument(
        "--time-budget-minutes",
        type=float,
        default=d.time_budget_minutes,
        help="plan the training steps that fit into this many minutes at the measured speed; 0 = no "
        "budget (default %(default)s)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last epoch checkpoint (same data and settings)",
    )


@dataclass
class FitResult:
    network: Network
    summary: dict


# Adam walks each parameter in blocks of this many numbers: its dozen passes over a block then find it in the
# CPU's L2 cache instead of streaming the (V, D) word matrices from memory a dozen times. The same operations
# in the same order, so bit-identical; measured on the default network (V 6,975, D 200, H 256), one thread:
# 14.8-15.1 -> 10.4-10.7 ms per update (8k to 128k numbers per block all within 1 ms of that). The moving
# averages' three passes measured no faster in blocks, so they stay whole-array.
UPDATE_BLOCK = 1 << 15


def _blocks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """Aligned flat views of same-shaped arrays, UPDATE_BLOCK numbers at a time (the whole arrays at once
    when one is not C-contiguous: its flat view would be a copy, and writes to it would be lost)."""
    if not all(array.flags.c_contiguous for array in arrays):
        yield arrays
        return
    flat = [array.reshape(-1) for array in arrays]
    for start in range(0, flat[0].size, UPDATE_BLOCK):
        yield tuple(array[start : start + UPDATE_BLOCK] for array in flat)


@dataclass(frozen=True)
class VectorPull:
    """Soft tying folded into Adam's blocks (see pull_vectors_together): after the step, each word's input
    vector (`embedding` + the `offset` param) and its `output` vector move towards each other, their gap
    shrinking by `amount`."""

    offset: str
    output: str
    embedding: np.ndarray
    amount: float


class Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updated in place; moments are part of the checkpoint.

    Every operation writes into preallocated arrays (one scratch array per param): a temporary the size of
    the (V, D) word matrices would be a fresh allocation, and its page faults, on every update."""

    def __init__(
        self, params: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.scratch = {name: np.empty_like(p) for name, p in params.items()}
        self.t = 0

    def update(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        lr: float,
        average: dict[str, np.ndarray] | None = None,
        average_cap: float = 0.0,
        pull: VectorPull | None = None,
    ) -> None:
        """One step. With `average`, each param's moving average (decay average_decay(average_cap, t)) also
        takes its new value, block by block while both are in cache: for a caller that changes the params no
        further after the step (bit-identical to its own pass after it; 2 ms of the default network's 15).
        With `pull`, the two word matrices are stepped block by block together and pulled towards each other
        before their average takes them (bit-identical to pull_vectors_together after the step, then the
        average: about 2 ms of an update saved on 红楼梦, one thread)."""
        self.t += 1
        step = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        decay = average_decay(average_cap, self.t)
        paired = (pull.offset, pull.output) if pull is not None else ()
        for name, param in params.items():
            if name in paired:
                continue
            for g, m, v, s, p, *mean in _blocks(*self._arrays(name, param, grads, average)):
                self._step(g, m, v, s, p, step)
                if mean:
                    _average_into(mean[0], p, s, decay)
        if pull is None:
            return
        offset = self._arrays(pull.offset, params[pull.offset], grads, average)
        output = self._arrays(pull.output, params[pull.output], grads, average)
        for blocks in _blocks(*offset, *output, pull.embedding):
            (go, mo, vo, so, po, *mean_o), (gu, mu, vu, su, pu, *mean_u) = (
                blocks[: len(offset)],
                blocks[len(offset) : -1],
            )
            self._step(go, mo, vo, so, po, step)
            self._step(gu, mu, vu, su, pu, step)
            _pull_into(po, pu, blocks[-1], pull.amount, su)
            if mean_o:
                _average_into(mean_o[0], po, so, decay)
                _average_into(mean_u[0], pu, su, decay)

    def _arrays(
        self,
        name: str,
        param: np.ndarray,
        grads: dict[str, np.ndarray],
        average: dict[str, np.ndarray] | None,
    ) -> tuple[np.ndarray, ...]:
        arrays = (grads[name], self.m[name], self.v[name], self.scratch[name], param)
        return (*arrays, average[name]) if average is not None else arrays

    def _step(
        self, g: np.ndarray, m: np.ndarray, v: np.ndarray, s: np.ndarray, p: np.ndarray, step: float
    ) -> None:
        b1, b2 = self.beta1, self.beta2
        m *= b1
        np.multiply(g, 1 - b1, out=s)
        m += s
        v *= b2
        np.multiply(g, g, out=s)
        s *= 1 - b2
        v += s
        np.sqrt(v, out=s)
        s += self.eps
        np.divide(m, s, out=s)
        s *= step
        p -= s


def _average_into(mean: np.ndarray, param: np.ndarray, scratch: np.ndarray, decay: float) -> None:
    """mean = decay·mean + (1 − decay)·param, in place."""
    mean *= decay
    np.multiply(param, 1 - decay, out=scratch)
    mean += scratch


def average_decay(cap: float, t: int) -> float:
    """The moving average's decay at update t: early on a long average would mostly remember the
    initialisation, so it ramps up to cap."""
    return min(cap, (1 + t) / (10 + t))


# The long average is updated every this many updates (each update reads and writes every parameter, which
# would cost a few percent of a training step), with the decay of that many updates.
LONG_AVERAGE_EVERY = 4
# Its decay ramps as (1 + n) / (LONG_AVERAGE_RAMP + n) over its n-th update (before the cap): every update
# then weighs (RAMP - 1) / (RAMP + n), so the average spans about the last 1 / (RAMP - 1) = two thirds of the
# updates so far (10 for the short average: about the last ninth).
LONG_AVERAGE_RAMP = 2.5


def _update_long_average(
    long_average: dict[str, np.ndarray], params: dict[str, np.ndarray], adam: Adam, cap: float
) -> None:
    n = adam.t // LONG_AVERAGE_EVERY
    decay = min(cap**LONG_AVERAGE_EVERY, (1 + n) / (LONG_AVERAGE_RAMP + n))
    for name, param in params.items():
        _average_into(long_average[name], param, adam.scratch[name], decay)


def clip_gradients(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; returns the norm before."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm:
        factor = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= factor
    return norm


def planned_lr(config: FitConfig, step: int, planned_steps: int) -> float:
    """Cosine decay per update (step counted from 0) from lr down to lr * final_lr_fraction at the last
    planned one."""
    if planned_steps <= 1:
        return config.lr
    progress = min(step / (planned_steps - 1), 1.0)
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# Parameters that weight decay leaves alone: biases (a bias is a level, not a weight to shrink) and the cosine
# scale κ; the per-word biases do decay, towards the log unigram frequencies they start from.
_UNDECAYED = ("lstm0.b", "lstm1.b", "head.b", "out.log_scale", "out.cluster_bias")


def decay_targets(network: Network) -> dict[str, np.ndarray]:
    """{name: what weight decay pulls the param towards}: its initial value. For the word vectors that is
    word2vec's (the output vectors) or no change to it (the input offsets start at 0), so a rare word whose
    vectors see few updates stays near what word2vec knows about it instead of memorising its few contexts."""
    return {name: p.copy() for name, p in network.params.items() if name not in _UNDECAYED}


def pull_vectors_together(network: Network, amount: float, scratch: np.ndarray) -> None:
    """Soft tying: move each word's input vector (frozen word2vec + the learned offset) and its output vector
    towards each other, each by amount / 2 of the gap between them, in place (the gap shrinks by `amount`,
    their mean stays). Both start equal (the offset at 0, the output vectors at word2vec), so amount 0 keeps
    them separate and amount 1 after every update keeps them tied. `scratch` is a (V, D) work array."""
    params = network.params
    _pull_into(params["input.offset"], params["out.vectors"], network.embedding, amount, scratch)


def _pull_into(
    offset: np.ndarray, output: np.ndarray, embedding: np.ndarray, amount: float, scratch: np.ndarray
) -> None:
    """pull_vectors_together on aligned arrays (whole matrices or blocks of them), in place."""
    np.subtract(output, offset, out=scratch)
    scratch -= embedding
    scratch *= amount / 2
    output -= scratch
    offset += scratch


def validation_size(training_tokens: int) -> int:
    """Tokens at the end of the training chapters that validate instead of train (also what the n-gram
    mixture is chosen on, training/mixture.py)."""
    return max(int(training_tokens * VALIDATION_FRACTION), VALIDATION_STREAMS * 2)


def stream_windows(stream: np.ndarray, batch_size: int, seq_len: int) -> np.ndarray:
    """(windows, batch, seq_len + 1) ids: batch contiguous sub-streams cut into consecutive windows that
    overlap by one token (the last target of a window is the first input of the next)."""
    length = (len(stream) - 1) // batch_size
    n_windows = length // seq_len
    if n_windows < 1:
        raise ValueError(
            f"the training split has {len(stream)} tokens, too few for --batch-size {batch_size} × --seq-len "
            f"{seq_len}; use a larger corpus or smaller values"
        )
    rows = np.stack([stream[b * length : b * length + n_windows * seq_len + 1] for b in range(batch_size)])
    starts = np.arange(n_windows) * seq_len
    return np.stack([rows[:, s : s + seq_len + 1] for s in starts])


def validation_loss(network: Network, tokens: np.ndarray) -> float:
    """Mean loss (without dropout) over a token stream, read statefully in parallel sub-streams."""
    streams = max(1, min(VALIDATION_STREAMS, (len(tokens) - 1) // 2))
    length = (len(tokens) - 1) // streams
    rows = np.stack([tokens[s * length : s * length + length + 1] for s in range(streams)])
    state: State | None = None
    total, count = 0.0, 0
    for start in range(0, length, VALIDATION_WINDOW):
        window = rows[:, start : start + VALIDATION_WINDOW + 1]
        if window.shape[1] < 2:
            break
        loss, state = network.loss_and_state(window, state)
        n = window.shape[0] * (window.shape[1] - 1)
        total += loss * n
        count += n
    return total / count


@contextlib.contextmanager
def _swapped_in(network: Network, values: dict[str, np.ndarray]) -> Iterator[None]:
    """Temporarily give the network other weights (in place, since the LSTM layers hold the arrays)."""
    if values is network.params:
        yield
        return
    saved = {name: p.copy() for name, p in network.params.items()}
    for name, param in network.params.items():
        param[...] = values[name]
    try:
        yield
    finally:
        for name, param in network.params.items():
            param[...] = saved[name]


def _fingerprint(token_ids: np.ndarray, split_index: int, vectors: WordVectors, config: FitConfig) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(token_ids, dtype=np.int32).tobytes())
    digest.update(str(split_index).encode())
    digest.update(np.ascontiguousarray(vectors.matrix).tobytes())
    settings = asdict(config)
    settings.pop("epochs")  # --resume may raise or keep the epoch count; everything else must match
    settings.pop("time_budget_minutes")
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class _Progress:
    epoch: int = 0  # completed epochs (the last one may have been cut short by the plan)
    steps: int = 0  # updates done
    steps_per_epoch: int = 0
    planned_steps: int = 0
    plan: dict = dataclasses.field(default_factory=dict)  # how planned_steps was decided, for the manifest
    history: dict = dataclasses.field(
        default_factory=lambda: {
            "train_loss": [],
            "val_loss": [],
            "long_average_val_loss": [],
            "lr": [],
            "steps": [],
        }
    )
    best_epoch: int = 0
    best_val: float = math.inf
    stale: int = 0  # validations in a row without a better loss
    lr_scale: float = 1.0  # plateau_lr_factor ** (validations that did not improve)
    seconds: float = 0.0
    tokens: int = 0
    stopped: str = ""

    @property
    def planned_epochs(self) -> int:
        return math.ceil(self.planned_steps / max(self.steps_per_epoch, 1))


def _save_checkpoint(
    path: Path,
    network: Network,
    copies: dict[str, dict[str, np.ndarray]],
    adam: Adam,
    rng: np.random.Generator,
    progress: _Progress,
    fingerprint: str,
) -> None:
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(
            json.dumps(
                {
                    "fingerprint": fingerprint,
                    "rng_state": rng.bit_generator.state,
                    "adam_t": adam.t,
                    "progress": asdict(progress),
                    "network": asdict(network.config),
                }
            )
        )
    }
    for name, param in network.params.items():
        arrays[f"param/{name}"] = param
        for group, arrays_of_group in copies.items():
            arrays[f"{group}/{name}"] = arrays_of_group[name]
        arrays[f"adam_m/{name}"] = adam.m[name]
        arrays[f"adam_v/{name}"] = adam.v[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    # atomic: a kill leaves either the old or the new checkpoint, never half of one; the directory fsync
    # makes the rename itself durable before the caller announces the epoch
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _load_checkpoint(
    path: Path,
    network: Network,
    copies: dict[str, dict[str, np.ndarray]],
    adam: Adam,
    rng: np.random.Generator,
    fingerprint: str,
) -> _Progress:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: unreadable checkpoint ({error}); delete it and train without --resume"
        ) from None
    with archive:
        try:
            meta = json.loads(str(read_array(archive, "meta", path)))
            arrays = {name: read_array(archive, name, path) for name in archive.files if name != "meta"}
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"{error}; the checkpoint is damaged: delete {path} and train without --resume"
            ) from None
        if meta["fingerprint"] != fingerprint:
            raise ValueError(
                f"{path}: the checkpoint was made with other data or settings; "
                "rerun with the same options, or "
                "train without --resume to start over"
            )
        for name, param in network.params.items():
            param[...] = arrays[f"param/{name}"]
            for group, arrays_of_group in copies.items():
                arrays_of_group[name][...] = arrays[f"{group}/{name}"]
            adam.m[name][...] = arrays[f"adam_m/{name}"]
            adam.v[name][...] = arrays[f"adam_v/{name}"]
    adam.t = int(meta["adam_t"])
    rng.bit_generator.state = meta["rng_state"]
    return _Progress(**meta["progress"])


def _replan(config: FitConfig, progress: _Progress, seconds: float, max_steps: int) -> None:
    """Plan the updates that fit into the time budget at the measured seconds per update (`seconds` spent on
    progress.steps updates), never more than max_steps (the --epochs limit)."""
    per_step = seconds / max(progress.steps, 1)
    budget = None if config.time_budget_minutes is None else config.time_budget_minutes * 60.0
    affordable = max_steps if budget is None else progress.steps + int(max(budget - seconds, 0.0) // per_step)
    progress.planned_steps = max(min(max_steps, affordable), progress.steps, 1)
    limit = "the time budget" if progress.planned_steps < max_steps else f"--epochs {config.epochs}"
    progress.plan = {
        "planned_steps": progress.planned_steps,
        "planned_epochs": round(progress.planned_steps / progress.steps_per_epoch, 2),
        "steps_per_epoch": progress.steps_per_epoch,
        "seconds_per_step": round(per_step, 4),
        "time_budget_minutes": config.time_budget_minutes,
        "max_epochs": config.epochs,
        "limited_by": limit,
    }


def _plan_line(progress: _Progress, config: FitConfig) -> str:
    plan = progress.plan
    budget = plan["time_budget_minutes"]
    return (
        f"plan: {plan['planned_steps']} updates = {plan['planned_epochs']:g} epochs of "
        f"{plan['steps_per_epoch']} ({1000 * plan['seconds_per_step']:.0f} ms each measured; "
        + (f"time budget {budget:g} min" if budget is not None else "no time budget")
        + f", at most {plan['max_epochs']} epochs: limited by {plan['limited_by']}); validating after every "
        f"epoch, stopping after {config.patience} without a better loss"
    )


def train_network(
    token_ids: np.ndarray,
    split_index: int,
    vectors: WordVectors,
    config: FitConfig,
    checkpoint_dir: Path,
    resume: bool,
) -> FitResult:
    """Train on token_ids[:split_index] minus its last 5%, which validates; token_ids[split_index:] (held out
    for evaluation) is not touched. See the module docstring."""
    config.validate()
    token_ids = np.asarray(token_ids, dtype=np.int64)
    training_chapters, held_out = token_ids[:split_index], token_ids[split_index:]
    if len(held_out) < 3:
        raise ValueError(f"the held-out split has {len(held_out)} tokens; the corpus needs more chapters")
    size = validation_size(len(training_chapters))
    train, validation = training_chapters[:-size], training_chapters[-size:]
    config = config.for_corpus(len(train))
    regularisation = "small" if len(train) < SMALL_NOVEL_TOKENS else "large"
    vocab_size, dim = vectors.matrix.shape
    rng = np.random.default_rng(config.seed)
    counts = np.bincount(training_chapters, minlength=vocab_size)
    network = Network(config.network_config(vocab_size, dim), vectors.matrix, rng, unigram_counts=counts)
    # Soft tying needs both separate vectors: the offset and trained output vectors.
    pull = config.tie_pull if network.config.train_input and "out.vectors" in network.params else 0.0
    print(
        f"regularisation for a {regularisation} novel ({len(train):,} training tokens): dropout "
        f"{config.dropout:g}{' locked' if config.locked_dropout else ''}, embedding dropout "
        f"{config.embedding_dropout:g}, DropConnect {config.recurrent_dropout:g}, "
        f"{'tied' if network.config.tie_vectors else 'separate'} input and output vectors"
        + (f" pulled together (--tie-pull {pull:g})" if pull else ""),
        file=sys.stderr,
    )
    anchors = decay_targets(network) if config.weight_decay else {}
    adam = Adam(network.params)
    best = {name: p.copy() for name, p in network.params.items()}
    # Polyak-style moving average of the weights (as averaged SGD does for AWD-LSTM): it smooths the noise of
    # the last updates away and generalises better than the final iterate; validated and saved instead of it.
    average = {name: p.copy() for name, p in network.params.items()}
    # Without weight decay (which must come between the step and the pull), the pull and the moving average
    # are done inside Adam's blocks instead of in passes of their own after them.
    fold = not anchors
    copies = {"best": best, "average": average}
    if config.long_average:
        copies["long_average"] = {name: p.copy() for name, p in network.params.items()}
    fingerprint = _fingerprint(token_ids, split_index, vectors, config)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME

    steps_per_epoch = len(stream_windows(train, config.batch_size, config.seq_len))
    max_steps = config.epochs * steps_per_epoch
    progress = _Progress(steps_per_epoch=steps_per_epoch, planned_steps=max_steps)
    if resume:
        if not checkpoint.is_file():
            raise ValueError(f"--resume: no checkpoint at {checkpoint}; train once without --resume first")
        progress = _load_checkpoint(checkpoint, network, copies, adam, rng, fingerprint)
        _replan(config, progress, progress.seconds, max_steps)  # --epochs or the budget may have changed
        print(f"resuming after epoch {progress.epoch} of {progress.planned_epochs}", file=sys.stderr)
    # The first updates of this run measure the speed the plan is made from (again after every epoch).
    measure_after = min(10, steps_per_epoch) if progress.steps == 0 else 0
    if not measure_after:
        print(_plan_line(progress, config), file=sys.stderr)

    budget = None if config.time_budget_minutes is None else config.time_budget_minutes * 60.0
    # --epochs counts epochs, not updates: an epoch starts at a random offset and so has one window fewer or
    # more than steps_per_epoch, and the update count alone would let a last epoch of a few windows run.
    while progress.steps < progress.planned_steps and progress.epoch < config.epochs and not progress.stopped:
        epoch = progress.epoch
        started = time.perf_counter()
        offset = int(rng.integers(0, config.seq_len))
        windows = stream_windows(train[offset:], config.batch_size, config.seq_len)
        state: State | None = None
        total = 0.0
        bar = tqdm(
            total=min(len(windows), progress.planned_steps - progress.steps),
            desc=f"epoch {epoch + 1}/{progress.planned_epochs}",
            unit="win",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        done = 0
        for window in windows:
            lr = planned_lr(config, progress.steps, progress.planned_steps) * progress.lr_scale
            loss, grads, state = network.loss_grads_state(window, rng, state=state)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss {loss}); lower --lr or --clip"
                )
            clip_gradients(grads, config.clip)
            if fold:
                folded_pull = (
                    VectorPull("input.offset", "out.vectors", network.embedding, lr * pull) if pull else None
                )
                averaged = average if config.average else None
                adam.update(network.params, grads, lr, averaged, config.average, folded_pull)
            else:
                adam.update(network.params, grads, lr)
            if anchors:
                # Decoupled weight decay (AdamW): a pull towards the initial values, scaled by the lr.
                shrink = lr * config.weight_decay
                for name, anchor in anchors.items():
                    param, scratch = network.params[name], adam.scratch[name]
                    np.subtract(param, anchor, out=scratch)
                    scratch *= shrink
                    param -= scratch
            if pull and not fold:
                pull_vectors_together(network, lr * pull, adam.scratch["out.vectors"])
            if config.average and not fold:
                decay = average_decay(config.average, adam.t)
                for name, param in network.params.items():
                    _average_into(average[name], param, adam.scratch[name], decay)
            if config.long_average and adam.t % LONG_AVERAGE_EVERY == 0:
                _update_long_average(copies["long_average"], network.params, adam, config.long_average)
            total += loss
            done += 1
            progress.steps += 1
            bar.update(1)
            if done == measure_after:
                measure_after = 0
                _replan(config, progress, progress.seconds + time.perf_counter() - started, max_steps)
                bar.total = min(len(windows), progress.planned_steps - progress.steps + done)
                bar.set_description(f"epoch {epoch + 1}/{progress.planned_epochs}")
                print(_plan_line(progress, config), file=sys.stderr)
            if done % 10 == 0 or done == len(windows):
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{total / done:.3f}", tok_s=f"{done * window.size / elapsed:,.0f}")
            if progress.steps >= progress.planned_steps:
                break
            if budget is not None and progress.seconds + time.perf_counter() - started >= budget:
                # The plan was made from the speed measured so far; when the machine slows down mid-epoch
                # (other jobs), the budget still holds: this epoch ends here, is validated, and the plan is
                # complete (`_replan` affords no more updates).
                progress.planned_steps = progress.steps
                break
        bar.close()
        train_loss = total / done
        evaluated = average if config.average else network.params
        chosen = ""
        with _swapped_in(network, evaluated):
            val_loss = validation_loss(network, validation)
        if config.long_average:
            with _swapped_in(network, copies["long_average"]):
                long_loss = validation_loss(network, validation)
            progress.history["long_average_val_loss"].append(round(long_loss, 5))
            if long_loss < val_loss:
                evaluated, val_loss, chosen = copies["long_average"], long_loss, " (long average)"
        seconds = time.perf_counter() - started

        progress.epoch += 1
        progress.seconds += seconds
        progress.tokens += int(done * config.batch_size * config.seq_len)
        progress.history["train_loss"].append(round(train_loss, 5))
        progress.history["val_loss"].append(round(val_loss, 5))
        progress.history["lr"].append(lr)
        progress.history["steps"].append(progress.steps)
        if val_loss < progress.best_val:
            progress.best_val, progress.best_epoch, progress.stale = val_loss, progress.epoch, 0
            for name, value in evaluated.items():
                best[name][...] = value
        else:
            progress.stale += 1
            progress.lr_scale *= config.plateau_lr_factor
            if progress.stale >= config.patience and progress.steps >= config.min_updates:
                progress.stopped = (
                    f"the validation loss stopped improving: no better loss for {config.patience} "
                    f"validations after epoch {progress.best_epoch}"
                )
        planned_before = progress.planned_steps
        if not progress.stopped:
            _replan(config, progress, progress.seconds, max_steps)
            if progress.steps >= progress.planned_steps or progress.epoch >= config.epochs:
                progress.stopped = (
                    f"completed the plan: {progress.steps} updates, limited by {progress.plan['limited_by']}"
                )
        # Durable before the epoch is announced: whoever sees "epoch N:" and kills the run can --resume it.
        _save_checkpoint(checkpoint, network, copies, adam, rng, progress, fingerprint)
        print(
            f"epoch {progress.epoch}: train loss {train_loss:.4f}  validation loss {val_loss:.4f}{chosen}  "
            f"lr {lr:.2e}  {seconds:.0f} s",
            file=sys.stderr,
        )
        # The plan is re-made after every epoch; it is printed again only when it changed by more than 5%
        # (a few updates either way is the noise of the speed measurement).
        if abs(progress.planned_steps - planned_before) > 0.05 * planned_before and not progress.stopped:
            print(_plan_line(progress, config), file=sys.stderr)
    if not progress.stopped:
        progress.stopped = f"completed the plan: {progress.steps} updates"
    print(f"stopped: {progress.stopped}; keeping epoch {progress.best_epoch}", file=sys.stderr)

    for name, param in network.params.items():
        param[...] = best[name]
    summary = {
        "epochs": progress.epoch,
        "planned_epochs": progress.planned_epochs,
        "plan": progress.plan,
        "steps": progress.steps,
        "best_epoch": progress.best_epoch,
        "stopped": progress.stopped,
        "train_loss": progress.history["train_loss"],
        "val_loss": progress.history["val_loss"],
        "long_average_val_loss": progress.history["long_average_val_loss"],
        "lr": progress.history["lr"],
        "steps_at_validation": progress.history["steps"],
        "validation": "last 5% of the training chapters, stateful, no dropout; selects the best epoch",
        "seconds": round(progress.seconds, 1),
        "tokens_per_second": round(progress.tokens / progress.seconds) if progress.seconds else None,
        "train_tokens": len(train),
        "validation_tokens": len(validation),
        "held_out_tokens": len(held_out),
        "regularisation": f"{regularisation} novel: {len(train):,} training tokens "
        f"({'<' if regularisation == 'small' else '>='} {SMALL_NOVEL_TOKENS:,})",
        "settings": asdict(config),
    }
    return FitResult(network=network, summary=summary)
