"""Held-out quality on three sizes of novel in one table; optionally bpc against training time.

    .venv/bin/python benchmarks/quality.py                 # `make quality`: full 红楼梦, 300k and 120k chars
    .venv/bin/python benchmarks/quality.py --minutes 1 2.75 10 30 --plot docs/quality_minutes.png

Each size is a real `python -m training` run (a subprocess, exactly what a user runs) on the built-in 红楼梦,
with `--max-chars N` for the smaller ones and no other option, so the numbers are the defaults' (the plan,
the regularisation, the head, the n-gram mixture). The table reads every run's manifest.json: the LSTM alone,
the served distribution (the mixture the server decodes with), and the count baselines of the same run and
split (KN bigram over the same tokens, the token n-gram of the mixture, the character 5-gram, PPMd). Every
run also prints its own evaluation table, whose last line is `held-out bits per character: X.XX`.

--minutes trains the full novel once per time budget (`--time-budget-minutes M --epochs 100`: the plan fills
the budget unless the validation loss stops improving first) and draws held-out bpc against the minutes for
the LSTM alone and the served model, with the count baselines as horizontal lines.

Models go to --work (default /tmp/novel-lstm-quality), never into the repository. Timings depend on the
machine and its load: say both when quoting the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("full", "300000", "120000")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="hongloumeng", help="the novel (default %(default)s)")
    parser.add_argument(
        "--sizes", nargs="+", default=list(SIZES), help="'full' or a --max-chars value (default: %(default)s)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/novel-lstm-quality"), help="where the models are written"
    )
    parser.add_argument(
        "--minutes", nargs="+", type=float, help="instead: the full novel once per time budget, in minutes"
    )
    parser.add_argument("--plot", type=Path, help="with --minutes: write the bpc-against-minutes PNG here")
    parser.add_argument("--reuse", action="store_true", help="read existing models in --work, train none")
    parser.add_argument("extra", nargs="*", help="more `python -m training` options after --, for every run")
    return parser.parse_args()


def train(corpus: str, out: Path, options: list[str], reuse: bool) -> dict:
    manifest = out / "manifest.json"
    if not (reuse and manifest.is_file()):
        command = [sys.executable, "-m", "training", "--corpus", corpus, "--out", str(out), *options]
        print("$ " + " ".join(command), file=sys.stderr, flush=True)
        started = time.perf_counter()
        # stderr (progress bars, the plan, the epochs) goes to the terminal; stdout is the run's own table.
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(f"trained in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(manifest.read_text(encoding="utf-8"))


def row(label: str, manifest: dict) -> dict:
    evaluation, training = manifest["evaluation"], manifest["training"]
    served = evaluation["model"]
    lstm = evaluation.get("lstm", served)
    mixture = served.get("mixture") or {}
    return {
        "novel": label,
        "chars": manifest["corpus"]["chars"],
        "epochs": training["epochs"],
        "fit_s": manifest["timings"].get("fit"),
        "stopped": training.get("stopped", ""),
        "lstm": lstm["bpc"],
        "served": served["bpc"],
        "lambda": mixture.get("lstm_weight"),
        "bigram": evaluation["bigram"]["bpc"],
        "token_ngram": (evaluation.get("token_ngram") or {}).get("bpc"),
        "token_order": (evaluation.get("token_ngram") or {}).get("order"),
        "char_5gram": evaluation["char_5gram_kn"]["bpc"],
        "ppmd": evaluation["ppmd"]["bpc"],
    }


def _bpc(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def print_table(rows: list[dict]) -> None:
    print(
        "| novel | chars | epochs | fit s | LSTM alone | served (λ) | KN bigram | token n-gram | char 5-gram "
        "| PPMd | served − char 5-gram |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lam = "" if r["lambda"] is None else f" ({r['lambda']:.2f})"
        token = "–" if r["token_ngram"] is None else f"{r['token_ngram']:.2f} ({r['token_order']}-gram)"
        print(
            f"| {r['novel']} | {r['chars']:,} | {r['epochs']} | {r['fit_s']:.0f} | {_bpc(r['lstm'])} | "
            f"{_bpc(r['served'])}{lam} | {_bpc(r['bigram'])} | {token} | {_bpc(r['char_5gram'])} | "
            f"{_bpc(r['ppmd'])} | {r['served'] - r['char_5gram']:+.2f} |"
        )
    for r in rows:
        print(f"{r['novel']}: stopped: {r['stopped']}")


def plot(path: Path, rows: list[dict], minutes: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    axis.plot(minutes, [r["lstm"] for r in rows], "o-", color="tab:blue", label="LSTM alone")
    axis.plot(
        minutes, [r["served"] for r in rows], "s-", color="tab:red", label="served (LSTM + n-gram + cache)"
    )
    last = rows[-1]
    for key, label, style in (
        ("bigram", "KN bigram", ":"),
        ("token_ngram", f"token {last['token_order']}-gram", "--"),
        ("char_5gram", "char 5-gram", "-."),
    ):
        if last[key] is not None:
            axis.axhline(last[key], color="gray", linestyle=style, linewidth=1)
            axis.annotate(label, (minutes[-1], last[key]), textcoords="offset points", xytext=(-4, 3),
                          ha="right", fontsize=8, color="dimgray")  # fmt: skip
    axis.set_xscale("log")
    axis.set_xticks(minutes)
    axis.set_xticklabels([f"{m:g}" for m in minutes])
    axis.set_xlabel("training time budget (minutes, log scale)")
    axis.set_ylabel("held-out bits per character")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    # Room below the lowest point for the legend: clear of both lines and of the baselines' labels at the top.
    low, high = axis.get_ylim()
    axis.set_ylim(low - 0.12 * (high - low), high)
    axis.legend(fontsize=8, loc="lower left", ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.minutes:
        for minutes in args.minutes:
            options = ["--time-budget-minutes", f"{minutes:g}", "--epochs", "100", *args.extra]
            manifest = train(args.corpus, args.work / f"minutes-{minutes:g}", options, args.reuse)
            rows.append(row(f"{args.corpus}, {minutes:g} min", manifest))
        print_table(rows)
        if args.plot:
            plot(args.plot, rows, args.minutes, f"{args.corpus}: held-out bpc against training time")
            print(f"wrote {args.plot}")
        return
    for size in args.sizes:
        options = [] if size == "full" else ["--max-chars", size]
        manifest = train(args.corpus, args.work / f"size-{size}", [*options, *args.extra], args.reuse)
        label = args.corpus if size == "full" else f"{args.corpus}, --max-chars {int(size):,}"
        rows.append(row(label, manifest))
    print_table(rows)


if __name__ == "__main__":
    main()
