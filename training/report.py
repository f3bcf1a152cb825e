"""report.png: the training curve and the held-out table of a model, for people who would rather look."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.ticker import MaxNLocator

matplotlib.use("Agg")  # files only: no display on servers or in containers

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen before pyplot loads


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def write_report(path: Path, manifest: dict) -> None:
    """Left: train and validation loss per epoch. Right: bits per character, acc@1, acc@10 and perplexity of
    the model and the baselines."""
    training = manifest.get("training") or {}
    evaluation = manifest.get("evaluation") or {}
    corpus = manifest.get("corpus") or {}
    network = manifest.get("network") or {}

    figure, (curve, table_axis) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    train_loss = training.get("train_loss") or []
    val_loss = training.get("val_loss") or []
    epochs = range(1, len(train_loss) + 1)
    if train_loss:
        curve.plot(epochs, train_loss, marker="o", label="train (with dropout)")
    if val_loss:
        curve.plot(range(1, len(val_loss) + 1), val_loss, marker="s", label="validation (training tail)")
    best = training.get("best_epoch")
    if best:
        curve.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
    curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve.set_xlabel("epoch")
    curve.set_ylabel(f"loss ({network.get('loss', '?')})")
    curve.set_title("training curve")
    curve.grid(alpha=0.3)
    if train_loss or val_loss:
        curve.legend()

    table_axis.axis("off")
    rows = []
    for key, label in (
        ("unigram", "unigram"),
        ("bigram", "bigram (KN)"),
        ("char_5gram_kn", "char 5-gram KN"),
        ("ppmd", "PPMd order 6"),
        ("token_ngram", "token n-gram KN"),
        ("lstm", "LSTM alone"),
        ("model", "LSTM + n-gram" if (evaluation.get("model") or {}).get("mixture") else "LSTM"),
    ):
        metrics = evaluation.get(key)
        if metrics:
            perplexity = metrics.get("perplexity")
            bpc = metrics.get("bpc")
            rows.append(
                [
                    label,
                    "–" if bpc is None else f"{bpc:.2f}",
                    _percent(metrics.get("acc@1")),
                    _percent(metrics.get("acc@10")),
                    "–" if perplexity is None else f"{perplexity:.1f}",
                ]
            )
    if rows:
        table = table_axis.table(
            cellText=rows,
            colLabels=["held-out", "bits/char", "acc@1", "acc@10", "perplexity"],
            loc="center",
            cellLoc="center",
        )
        table.scale(1, 1.8)
    split = evaluation.get("split") or {}
    details = [
        f"corpus: {corpus.get('name', '?')}  ({corpus.get('tokens', '?')} tokens)",
        f"network: {network.get('loss', '?')}, "
        f"{network.get('layers', '?')} × LSTM {network.get('hidden', '?')}",
        f"epochs: {training.get('epochs', '?')}, {training.get('seconds', '?')} s, "
        f"{training.get('tokens_per_second', '?')} tokens/s",
        f"held-out targets: {split.get('targets', '?')} tokens, {split.get('held_out_chars', '?')} chars",
    ]
    table_axis.text(0.0, 0.02, "\n".join(details), transform=table_axis.transAxes, fontsize=9, va="bottom")
    table_axis.set_title("held-out next-word prediction (DESIGN §8)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
