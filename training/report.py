"""report.png: the training curve and the held-out table of a model, for people who would rather look.

Left: train and validation loss per epoch. Right: the held-out table (bits per character, acc@1, acc@10 and
perplexity of the model and its baselines) and, below it, what was trained on what. The figure uses
constrained layout, so the title, the table and the notes never overlap; its text is drawn with the fonts of
training/fonts.py, so a novel's Chinese name is readable.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from training.fonts import CJK_FAMILIES, ReportFonts, report_fonts

matplotlib.use("Agg")  # files only: no display on servers or in containers

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen before pyplot loads

TABLE_FONT_SIZE = 12
HEADER_COLOUR = "#e6e6e6"
SERVED_COLOUR = "#d6e6f5"  # the row of the model the server decodes with
DPI = 100

# (key in the evaluation, row label), in the order a reader compares them: counting baselines, then the model.
_ROWS = (
    ("unigram", "unigram"),
    ("bigram", "bigram (KN)"),
    ("char_5gram_kn", "char 5-gram (KN)"),
    ("ppmd", "PPMd order 6"),
    ("token_ngram", "token n-gram (KN)"),
    ("lstm", "LSTM alone"),
)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table_rows(evaluation: dict) -> tuple[list[list[str]], int | None]:
    """The table's cells, and the index of the served model's row (drawn bold)."""
    model = evaluation.get("model") or {}
    parts = "LSTM + n-gram" if model.get("mixture") else "LSTM"
    served_label = f"served: {parts} + cache" if model.get("cache") else f"served: {parts}"
    rows, served = [], None
    for key, label in (*_ROWS, ("without_cache", f"{parts}, no cache"), ("model", served_label)):
        metrics = evaluation.get(key)
        if not metrics:
            continue
        if key == "model":
            served = len(rows)
        rows.append(
            [
                label,
                _number(metrics.get("bpc"), 2),
                _percent(metrics.get("acc@1")),
                _percent(metrics.get("acc@10")),
                _number(metrics.get("perplexity"), 1),
            ]
        )
    return rows, served


def _draw_curve(axis: plt.Axes, training: dict, network: dict) -> None:
    train_loss = training.get("train_loss") or []
    val_loss = training.get("val_loss") or []
    if train_loss:
        axis.plot(range(1, len(train_loss) + 1), train_loss, marker="o", label="train (with dropout)")
    if val_loss:
        axis.plot(range(1, len(val_loss) + 1), val_loss, marker="s", label="validation (training tail)")
    best = training.get("best_epoch")
    if best:
        axis.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"loss ({network.get('loss', '?')})")
    axis.set_title("training curve")
    axis.grid(alpha=0.3)
    if train_loss or val_loss:
        axis.legend()


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _details(manifest: dict, fonts: ReportFonts) -> str:
    training = manifest.get("training") or {}
    corpus = manifest.get("corpus") or {}
    network = manifest.get("network") or {}
    split = (manifest.get("evaluation") or {}).get("split") or {}
    lines = [
        f"corpus: {fonts.displayable(str(corpus.get('name', '?')))}, {_count(corpus.get('tokens'))} tokens",
        f"network: {network.get('layers', '?')} × LSTM {network.get('hidden', '?')}, "
        f"loss {network.get('loss', '?')}",
        f"training: {training.get('epochs', '?')} epochs, {training.get('seconds', '?')} s, "
        f"{_count(training.get('tokens_per_second'))} tokens/s",
        f"held out: {_count(split.get('targets'))} tokens, {_count(split.get('held_out_chars'))} characters",
    ]
    if fonts.cjk is None:
        lines.append("no CJK font on this machine: Chinese is shown as ?; install fonts-wqy-microhei")
    return "\n".join(lines)


def draw_report(manifest: dict, cjk_families: tuple[str, ...] = CJK_FAMILIES) -> Figure:
    """The report as a matplotlib Figure (write_report saves it); cjk_families: the CJK fonts to look for."""
    fonts = report_fonts(cjk_families)
    evaluation = manifest.get("evaluation") or {}
    corpus = manifest.get("corpus") or {}
    with plt.rc_context({"font.family": list(fonts.families)}):
        figure = plt.figure(figsize=(14, 6.5), layout="constrained")
        axes = figure.subplot_mosaic(
            [["curve", "table"], ["curve", "details"]], width_ratios=[1, 1.15], height_ratios=[2, 1]
        )
        name = fonts.displayable(str(corpus.get("name", "model")))
        figure.suptitle(f"{name}: training and held-out evaluation", fontsize=15)
        _draw_curve(axes["curve"], manifest.get("training") or {}, manifest.get("network") or {})

        table_axis = axes["table"]
        table_axis.axis("off")
        table_axis.set_title("held-out next-word prediction (last 10% of chapters)")
        rows, served = _table_rows(evaluation)
        if rows:
            table = table_axis.table(
                cellText=rows,
                colLabels=["method", "bits/char", "acc@1", "acc@10", "perplexity"],
                colWidths=[0.36, 0.16, 0.14, 0.16, 0.18],
                loc="upper center",
                cellLoc="center",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(TABLE_FONT_SIZE)
            table.scale(1, 1.7)
            for (row, column), cell in table.get_celld().items():
                if column == 0 and row > 0:
                    cell.set_text_props(ha="left")
                    cell.PAD = 0.04
                # Shaded rather than bold: a bold weight the CJK font lacks makes matplotlib log a warning.
                if row == 0:
                    cell.set_facecolor(HEADER_COLOUR)
                elif served is not None and row == served + 1:
                    cell.set_facecolor(SERVED_COLOUR)
        else:
            table_axis.text(0.5, 0.5, "no held-out evaluation", ha="center", va="center", fontsize=12)

        details_axis = axes["details"]
        details_axis.axis("off")
        details_axis.text(
            0.0, 1.0, _details(manifest, fonts), va="top", ha="left", fontsize=11, linespacing=1.5
        )
    return figure


def write_report(path: Path, manifest: dict) -> None:
    """Draw the report of this manifest into path (PNG)."""
    figure = draw_report(manifest)
    try:
        figure.savefig(path, dpi=DPI)
    finally:
        plt.close(figure)
