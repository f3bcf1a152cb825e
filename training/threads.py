"""How many threads NumPy's BLAS may use in the training stages.

OpenBLAS runs every matrix product on all cores by default. For the training fit that is a gain on a quiet
machine (one update of the default 红楼梦 network: 57 ms on two threads, 68 on one), but beside another
CPU-heavy job its threads wait for each other (196 against 74 ms), and for the small products of the
evaluation and chat stages a second thread gains nothing even on a quiet machine. Those stages run under
`single_blas_thread()`; the README's Troubleshooting section has the measurements.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import threadpool_limits


def single_blas_thread() -> AbstractContextManager[Any]:
    """A context in which NumPy's BLAS uses one thread (restored after it)."""
    return threadpool_limits(limits=1, user_api="blas")
