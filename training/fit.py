"""Fit the next-word network on the training token stream: stateful truncated BPTT, Adam, checkpoints, resume.

Batches (why this layout): the training stream ``token_ids[:split_index]`` is cut into ``batch_size``
contiguous sub-streams that are read in parallel, ``seq_len`` tokens at a time, with dense next-token
supervision at every position. The LSTM state is carried from one window to the next (truncated BPTT, as in
Zaremba et al.'s PTB models), so the model learns to use context longer than a window, and evaluation runs the
held-out text the same stateful way. Each epoch starts the sub-streams at a random offset in ``[0, seq_len)``
so window boundaries move between epochs.

Weights: Adam with global gradient-norm clipping and a cosine learning-rate decay over the planned epochs.
An exponential moving average of the weights (``--average``, decay ramped up from 0 over the first updates)
is what gets validated, selected and saved; like averaged SGD in AWD-LSTM it generalises better than the
last iterate. A time budget measures the first epochs and, if the planned epochs would not fit, plans fewer
(the learning-rate schedule follows the new plan).

Validation: after every epoch the loss is measured on a validation slice, the last 5% of the training stream
(the end of the training chapters, just before the held-out ones), by the same stateful pass the evaluation
uses. It drives the early stopping and the choice of the best epoch. The held-out split (the last 10% of
chapters, DESIGN §8) is never seen during training or selection, so its numbers are an honest estimate.

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


@dataclass
class FitConfig:
    """Training settings; the defaults fit a fresh `make serve` on 红楼梦 into 5 minutes on 2 cores: one
    epoch of the default network is ~90 CPU-seconds there (381 windows of 32 x 32 tokens, V = 6,975)."""

    # 3 epochs measured on 红楼梦 (2-core machine, 47 s each): 6.06 held-out bpc served, vs 6.13 after 2.
    epochs: int = 3
    hidden: int = 256
    layers: int = 1
    seq_len: int = 32
    batch_size: int = 32
    lr: float = 3e-3
    final_lr_fraction: float = 0.05  # cosine decay from lr to lr * this over the planned epochs
    loss: str = "cos_softmax"
    dropout: float = 0.3
    output_bias: bool = True
    train_output: bool = True
    train_input: bool = True
    clip: float = 5.0  # global gradient-norm clipping
    average: float = 0.995  # decay of the parameter average used for validation and the saved model; 0 = off
    patience: int = 2  # stop after this many epochs without a better validation loss
    # Fewer epochs when the measured epoch time would exceed this: `make serve` on a fresh clone
    # (segmentation, word2vec, fit, mixture, evaluation) has to finish within 5 minutes on 2 cores.
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
            "dropout": 0.0 <= self.dropout < 1.0,
            "clip": self.clip > 0,
            "patience": self.patience >= 1,
            "average": 0.0 <= self.average < 1.0,
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

    def network_config(self, vocab_size: int, dim: int) -> NetworkConfig:
        return NetworkConfig(
            vocab_size=vocab_size,
            dim=dim,
            hidden=self.hidden,
            layers=self.layers,
            loss=self.loss,
            dropout=self.dropout,
            output_bias=self.output_bias,
            train_output=self.train_output,
            train_input=self.train_input,
        )


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The network/training options of `python -m training` (defaults from FitConfig)."""
    d = FitConfig()
    group = parser.add_argument_group("network and training")
    group.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (default %(default)s)")
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
        help="cos_softmax: softmax over scaled cosine to output vectors (default); mse: the reference recipe "
        "(regress onto the next word vector); cosine; softmax: one-hot head over the vocabulary",
    )
    group.add_argument("--dropout", type=float, default=d.dropout, help="dropout rate (default %(default)s)")
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
        "--train-input",
        action=argparse.BooleanOptionalAction,
        default=d.train_input,
        help="learn a per-word offset to the frozen word2vec input vectors (default %(default)s)",
    )
    group.add_argument(
        "--clip", type=float, default=d.clip, help="gradient-norm clipping (default %(default)s)"
    )
    group.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs")
    group.add_argument(
        "--average",
        type=float,
        default=d.average,
        help="decay of the exponential moving average of the weights that is validated and saved "
        "(0 = use the raw weights; default %(default)s)",
    )
    group.add_argument(
        "--time-budget-minutes",
        type=float,
        default=d.time_budget_minutes,
        help="plan fewer epochs if the measured epoch time would exceed this; 0 = no budget "
        "(default %(default)s)",
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


class Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updated in place; moments are part of the checkpoint."""

    def __init__(
        self, params: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for name, param in params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            param -= step * m / (np.sqrt(v) + self.eps)


def clip_gradients(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; returns the norm before."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm:
        factor = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= factor
    return norm


def planned_lr(config: FitConfig, epoch: int, planned_epochs: int) -> float:
    """Cosine decay per epoch (epoch counted from 0) from lr down to lr * final_lr_fraction at the last
    one."""
    if planned_epochs <= 1:
        return config.lr
    progress = min(epoch / (planned_epochs - 1), 1.0)
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


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
    epoch: int = 0  # completed epochs
    planned_epochs: int = 0
    history: dict = dataclasses.field(default_factory=lambda: {"train_loss": [], "val_loss": [], "lr": []})
    best_epoch: int = 0
    best_val: float = math.inf
    seconds: float = 0.0
    tokens: int = 0
    stopped: str = ""


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
    vocab_size, dim = vectors.matrix.shape
    rng = np.random.default_rng(config.seed)
    counts = np.bincount(training_chapters, minlength=vocab_size)
    network = Network(config.network_config(vocab_size, dim), vectors.matrix, rng, unigram_counts=counts)
    adam = Adam(network.params)
    best = {name: p.copy() for name, p in network.params.items()}
    # Polyak-style moving average of the weights (as averaged SGD does for AWD-LSTM): it smooths the noise of
    # the last updates away and generalises better than the final iterate; validated and saved instead of it.
    average = {name: p.copy() for name, p in network.params.items()}
    copies = {"best": best, "average": average}
    fingerprint = _fingerprint(token_ids, split_index, vectors, config)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME

    progress = _Progress(planned_epochs=config.epochs)
    if resume:
        if not checkpoint.is_file():
            raise ValueError(f"--resume: no checkpoint at {checkpoint}; train once without --resume first")
        progress = _load_checkpoint(checkpoint, network, copies, adam, rng, fingerprint)
        print(f"resuming after epoch {progress.epoch} of {progress.planned_epochs}", file=sys.stderr)

    budget = None if config.time_budget_minutes is None else config.time_budget_minutes * 60.0
    while progress.epoch < progress.planned_epochs and not progress.stopped:
        epoch = progress.epoch
        started = time.perf_counter()
        lr = planned_lr(config, epoch, progress.planned_epochs)
        offset = int(rng.integers(0, config.seq_len))
        windows = stream_windows(train[offset:], config.batch_size, config.seq_len)
        state: State | None = None
        total = 0.0
        bar = tqdm(
            windows,
            desc=f"epoch {epoch + 1}/{progress.planned_epochs}",
            unit="win",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        for step, window in enumerate(bar, start=1):
            loss, grads, state = network.loss_grads_state(window, rng, state=state)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss {loss}); lower --lr or --clip"
                )
            clip_gradients(grads, config.clip)
            adam.update(network.params, grads, lr)
            if config.average:
                # Early on a long average would mostly remember the initialisation: ramp the decay up.
                decay = min(config.average, (1 + adam.t) / (10 + adam.t))
                for name, param in network.params.items():
                    average[name] *= decay
                    average[name] += (1 - decay) * param
            total += loss
            if step % 10 == 0 or step == len(windows):
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{total / step:.3f}", tok_s=f"{step * window.size / elapsed:,.0f}")
        bar.close()
        train_loss = total / len(windows)
        evaluated = average if config.average else network.params
        with _swapped_in(network, evaluated):
            val_loss = validation_loss(network, validation)
        seconds = time.perf_counter() - started

        progress.epoch += 1
        progress.seconds += seconds
        progress.tokens += int(windows.shape[0] * windows.shape[1] * config.seq_len)
        progress.history["train_loss"].append(round(train_loss, 5))
        progress.history["val_loss"].append(round(val_loss, 5))
        progress.history["lr"].append(lr)
        if val_loss < progress.best_val:
            progress.best_val, progress.best_epoch = val_loss, progress.epoch
            for name, value in evaluated.items():
                best[name][...] = value
        elif progress.epoch - progress.best_epoch >= config.patience:
            progress.stopped = f"early stopping: no better validation loss for {config.patience} epochs"
        replanned = None
        if budget is not None and not progress.stopped:
            per_epoch = progress.seconds / progress.epoch
            affordable = progress.epoch + int((budget - progress.seconds) // per_epoch)
            if affordable < progress.planned_epochs:
                # Shrink the plan (the lr schedule follows it) so training ends inside the budget.
                replanned = max(progress.epoch, affordable)
        if replanned is not None:
            progress.planned_epochs = replanned
        # Durable before the epoch is announced: whoever sees "epoch N:" and kills the run can --resume it.
        _save_checkpoint(checkpoint, network, copies, adam, rng, progress, fingerprint)
        print(
            f"epoch {progress.epoch}: train loss {train_loss:.4f}  validation loss {val_loss:.4f}  "
            f"lr {lr:.2e}  {seconds:.0f} s",
            file=sys.stderr,
        )
        if replanned is not None:
            print(
                f"time budget {config.time_budget_minutes:g} min: planning {progress.planned_epochs} epochs",
                file=sys.stderr,
            )

    for name, param in network.params.items():
        param[...] = best[name]
    summary = {
        "epochs": progress.epoch,
        "planned_epochs": progress.planned_epochs,
        "best_epoch": progress.best_epoch,
        "stopped": progress.stopped or "completed the planned epochs",
        "train_loss": progress.history["train_loss"],
        "val_loss": progress.history["val_loss"],
        "lr": progress.history["lr"],
        "validation": "last 5% of the training chapters, stateful, no dropout; selects the best epoch",
        "seconds": round(progress.seconds, 1),
        "tokens_per_second": round(progress.tokens / progress.seconds) if progress.seconds else None,
        "train_tokens": len(train),
        "validation_tokens": len(validation),
        "held_out_tokens": len(held_out),
        "settings": asdict(config),
    }
    return FitResult(network=network, summary=summary)
