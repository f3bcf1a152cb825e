"""The stages after the fit run NumPy's BLAS on one thread, and the limit is lifted after them."""

from __future__ import annotations

import numpy as np  # noqa: F401  (loads the BLAS library threadpoolctl limits)
from threadpoolctl import threadpool_info, threadpool_limits

from training.threads import single_blas_thread


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_single_blas_thread_limits_blas_and_restores_it() -> None:
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-core machine starts with
        before = _blas_threads()
        assert before and all(threads == 2 for threads in before)
        with single_blas_thread():
            assert all(threads == 1 for threads in _blas_threads())
        assert _blas_threads() == before
