"""The 8-bit binary adder toy task (examples/binary_adder.py) trained with the NumPy LSTM.

Run as a subprocess, exactly as a user runs the script: the script pins BLAS to one thread before NumPy loads
(tiny matrices; on a busy machine a second BLAS thread makes each step wait for a core), which cannot be done
inside this already-running test process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "binary_adder.py"


def test_learns_addition_exactly_on_all_128x128_sums() -> None:
    """Measured: after 1500 Adam steps on random 7-bit pairs (seed 0), the fraction of ALL 16384 sums a + b
    (0 <= a, b < 128, evaluated as one batch) whose 8 output bits are all correct. Asserted: exactly 100%."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "0"], capture_output=True, text=True, timeout=120, check=True
    )
    accuracy = re.search(r"all 128x128 sums of 7-bit operands: ([\d.]+)% exactly right", result.stdout)
    assert accuracy, result.stdout
    assert float(accuracy.group(1)) == 100.0, result.stdout
    assert "97 + 58 = 155" in result.stdout
