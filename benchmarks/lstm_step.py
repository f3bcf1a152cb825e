"""NumPy LSTM forward+backward vs PyTorch CPU nn.LSTM on the same shapes, threads and data.

    .venv/bin/python benchmarks/lstm_step.py [--threads 1] [--runs 30]

Run it the way a user's machine runs it: some shared machines export OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
(older OpenBLAS builds needed them there), which pin NumPy's OpenBLAS to slower kernels; unset both for this
command alone (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/lstm_step.py`),
never in tests or CI. The script prints whether they were set.

torch is a benchmark-only extra (`pip install torch==2.13.0`), never imported by app/, models/ or training/.

Each arm runs in a process of its own, as a user's training runs NumPy without torch beside it: in one process
the two libraries' thread pools fight (OpenBLAS's idle workers spin on the cores torch's OpenMP threads need:
at 2 threads torch's LSTM measured 112 ms there against 25 ms alone), and torch's allocations keep the heap
warm for NumPy, which hid the page faults a NumPy-only process pays. The parent tells the workers in turn to
run once, alternating which goes first, so load from other processes on a shared machine hits all alike; we
report medians. With more than one thread it pauses `--pause` seconds after each run, so the workers that
just ran have put their spinning threads to sleep before the next one starts.
Threads: the BLAS thread count of NumPy (OpenBLAS) is fixed by the environment variables
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, set below *before* NumPy is imported (they are read
once at load time); torch gets the same number through torch.set_num_threads. Both do the same work: forward
over all steps, then backward giving the weight and bias gradients and the input gradient dx (torch's input
requires grad); on x86 torch runs oneDNN's fused LSTM.
A third arm times the matrix products alone: the six GEMMs models/lstm.py makes (input projection of all
steps, one recurrent product per step, one W_h^T product per step back, then dW_x and db, dW_h and dx over
all rows) with the same shapes and memory layouts on data of the same size, nothing else. Its ratio to torch
is the floor of any NumPy LSTM that calls OpenBLAS this way: what is above it is elementwise work and
Python dispatch.
The last line is exactly `numpy/torch forward+backward time ratio: X.XX` (ratio of the medians).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ARMS = ("numpy", "torch", "gemms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--input", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads for both (default 1)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each (median reported; >= 20)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--pause",
        type=float,
        default=None,
        help="seconds to wait after each run (default 0.25 with more than one thread, else 0)",
    )
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)  # set by the parent for its workers
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402  (after the thread variables on purpose)

from models.lstm import LSTM  # noqa: E402


def gemms_alone(B: int, T: int, D: int, H: int, rng: np.random.Generator):
    """A runner doing only the matrix products of LSTM.forward + LSTM.backward, in their layouts: forward
    writes the gates gate-major (4, T*B, H) from x with a bias column (T*B, D+1) and the gate-major weights
    (4, D+1, H), then per step (B, H) @ (4, H, H); backward per step (B, 4H) @ a contiguous W_h^T (4H, H),
    then [x | 1]^T and h^T (transposed views) @ the (T*B, 4H) gate gradients, and those @ W_x^T (a view)."""

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    xs, W_xb4, W_h4 = normal(T * B, D + 1), normal(4, D + 1, H), normal(4, H, H)
    hs, dgates, W_h_T, W_x = normal(T + 1, B, H), normal(T, B, 4 * H), normal(4 * H, H), normal(D, 4 * H)
    gates = np.empty((4, T * B, H), dtype=np.float32)
    recurrent = np.empty((4, B, H), dtype=np.float32)
    dh_next = np.empty((B, H), dtype=np.float32)
    dW_h = np.empty((H, 4 * H), dtype=np.float32)
    flat = dgates.reshape(T * B, 4 * H)

    def run() -> None:
        np.matmul(xs, W_xb4, out=gates)
        for t in range(T):
            np.matmul(hs[t], W_h4, out=recurrent)
        for t in range(T - 1, -1, -1):
            np.matmul(dgates[t], W_h_T, out=dh_next)
        _ = xs.T @ flat
        np.matmul(hs[:-1].reshape(T * B, H).T, flat, out=dW_h)
        _ = flat @ W_x.T

    return run


def build_runner(arm: str, args: argparse.Namespace) -> Callable[[], None]:
    """This worker's one run: the NumPy LSTM's, torch's or the GEMMs' forward + backward."""
    B, T, D, H = args.batch, args.steps, args.input, args.hidden
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    dh = rng.standard_normal((B, T, H)).astype(np.float32)
    if arm == "gemms":
        return gemms_alone(B, T, D, H, rng)
    if arm == "numpy":
        lstm = LSTM(D, H, rng)

        def run_numpy() -> None:
            _, cache = lstm.forward(x)
            lstm.backward(dh, cache)

        return run_numpy
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch_lstm = torch.nn.LSTM(D, H, batch_first=True)
    tx = torch.from_numpy(x).requires_grad_(True)  # dx is computed by both, as our backward always returns it
    tdh = torch.from_numpy(dh)

    def run_torch() -> None:
        torch_lstm.zero_grad(set_to_none=True)
        tx.grad = None
        out, _ = torch_lstm(tx)
        out.backward(tdh)

    return run_torch


def work(arm: str, args: argparse.Namespace) -> None:
    """A worker: warm up, say `ready`, then time one run for every `run` line read, printing its seconds."""
    runner = build_runner(arm, args)
    for _ in range(args.warmup):
        runner()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        runner()
        print(time.perf_counter() - start, flush=True)


def main() -> None:
    args = ARGS or parse_args()
    if args.worker is not None:
        work(args.worker, args)
        return
    if importlib.util.find_spec("torch") is None:
        sys.exit(
            "error: torch is not installed; run `.venv/bin/pip install torch==2.13.0` (benchmark-only extra)"
        )
    pause = args.pause if args.pause is not None else (0.25 if args.threads > 1 else 0.0)
    workers = {
        arm: subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:], "--worker", arm],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for arm in ARMS
    }
    try:
        for arm, worker in workers.items():
            if worker.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                sys.exit(f"error: the {arm} worker failed to start (its error is above)")
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for i in range(max(args.runs, 20)):
            for arm in ARMS if i % 2 == 0 else tuple(reversed(ARMS)):
                worker = workers[arm]
                worker.stdin.write("run\n")  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                times[arm].append(float(worker.stdout.readline()))  # type: ignore[union-attr]
                time.sleep(pause)
    finally:
        for worker in workers.values():
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait()

    B, T, D, H = args.batch, args.steps, args.input, args.hidden
    flops = 2 * B * T * 4 * H * (3 * D + 3 * H)  # forward x@Wx, h@Wh; backward dWx, dx, dWh, dh_prev
    print(
        f"LSTM B={B} T={T} D={D} H={H} float32, {len(times['numpy'])} interleaved runs each, one process each"
    )
    print("gemms = the numpy LSTM's six matrix products alone (its floor with OpenBLAS)")
    print(f"threads={args.threads} (numpy: OPENBLAS/OMP/MKL_NUM_THREADS env; torch: set_num_threads)")
    torch_version = importlib.metadata.version("torch")  # the parent itself never imports torch
    print(f"numpy {np.__version__}, torch {torch_version}; GEMM work per run {flops / 1e9:.2f} GFLOP")
    forced = {name: os.environ.get(name, "unset") for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print("OpenBLAS kernel choice: " + ", ".join(f"{name}={value}" for name, value in forced.items()))
    medians = {}
    for name, samples in times.items():
        ms = np.array(samples) * 1e3
        medians[name] = float(np.median(ms))
        p90 = np.percentile(ms, 90)
        rate = flops / (medians[name] / 1e3) / 1e9
        print(
            f"  {name:6s} median {medians[name]:7.2f} ms   min {ms.min():7.2f}   p90 {p90:7.2f}"
            f"   ({rate:.0f} GFLOP/s)"
        )
    print(f"numpy GEMMs alone/torch time ratio (the floor): {medians['gemms'] / medians['torch']:.2f}")
    print(f"numpy/torch forward+backward time ratio: {medians['numpy'] / medians['torch']:.2f}")


if __name__ == "__main__":
    main()
