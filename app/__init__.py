"""The FastAPI service: loads one model directory and serves generation, prediction and similarity."""

import os

# One BLAS thread per process, set before NumPy is first imported (by app.main through models). Serving does
# many small matrix-vector products per token, where OpenBLAS's thread pool costs far more than it gains
# (measured 2.1 ms vs 12 ms per scores() on a busy 2-core machine), and concurrency comes from requests and
# worker processes instead. An explicit OPENBLAS_NUM_THREADS / OMP_NUM_THREADS in the environment wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# The server's version: the OpenAPI document's and TGI's /info `version`.
__version__ = "0.1.0"
