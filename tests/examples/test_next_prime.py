"""The "next prime" toy task (examples/next_prime.py) trained with the NumPy LSTM.

Run as a subprocess, exactly as a user runs the script: the script pins BLAS to one thread before NumPy loads
(tiny matrices; on a busy machine a second BLAS thread makes each step wait for a core), which cannot be done
inside this already-running test process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "next_prime.py"


def test_fits_the_next_prime_to_reference_precision() -> None:
    """Measured: the mean squared error, in the primes/100 scale, of the predicted 51st prime over the 50
    training windows (each 50 consecutive primes / 100, sliding over the first 100 primes 2 .. 541), after
    800 iterations with seed 0. The reference reports ~1e-6; asserted: <= 1e-5 (seeds 0-4 measured 5.6e-8 to
    1.1e-6). Also: the prediction after the last window (..., 521, 523) rounds to the true next prime, 541."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "0"], capture_output=True, text=True, timeout=120, check=True
    )
    mse = re.search(r"training-window MSE \(primes / 100\): ([\d.e+-]+)", result.stdout)
    assert mse, result.stdout
    assert float(mse.group(1)) <= 1e-5, result.stdout
    prediction = re.search(r"after \.\.\. 523: predicted ([\d.]+), actual 541", result.stdout)
    assert prediction, result.stdout
    assert round(float(prediction.group(1))) == 541, result.stdout
