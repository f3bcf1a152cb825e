"""The FastAPI application: `uvicorn app.main:app` (model directory from MODEL_DIR), or create_app() in tests.

The model is loaded once, in the lifespan start-up, and shared by all requests (the decoder keeps per-request
state in each generation, never in the model). If the directory is missing or broken the server stops at
start-up with one line naming the directory, the problem and how to train a model, instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.engine.service import ModelLoadError, ModelService
from app.http.drain import DrainOnSigterm
from app.http.errors import install_error_handlers
from app.http.metrics import MetricsMiddleware
from app.http.openapi import install_openapi
from app.http.request_guard import RequestGuardMiddleware, install_header_timeout, install_json_parse_errors
from app.http.security_headers import SecurityHeadersMiddleware
from app.metrics import Metrics
from app.routes import chat, docs, generate, info, openai, playground, predict, similar
from app.routes.playground import STATIC_DIR
from app.settings import Settings

logger = logging.getLogger("app")

DESCRIPTION = """
Text generation from an LSTM trained on a Chinese novel (word2vec vectors in, next-word vector out).

* `POST /generate`, `POST /generate_stream`: Hugging Face text-generation-inference compatible.
* `POST /predict`: next-word candidates. `GET|POST /similar`: word2vec neighbours and analogies.
* `POST /v1/chat/completions`: chat with the novel's characters (OpenAI compatible); `GET /characters`.
* `GET /info`: the model card. `GET /health`, `GET /metrics` (Prometheus). `GET /`: the playground page.

Every error is JSON `{"error": "...", "error_type": "..."}`.
"""


class StartupErrorMiddleware:
    """Shortens a failed start-up to its one-line reason.

    Starlette reports a lifespan failure to the server with the full traceback, which uvicorn logs; for a
    ModelLoadError (a user error: wrong MODEL_DIR, no model trained yet) the message alone is what helps.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short_failure(message: Message) -> None:
            # Starlette sends the failure from inside its `except` block, so the exception is the current one.
            error = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(error, ModelLoadError):
                message = {**message, "message": f"cannot start: {error}"}
            await send(message)

        await self.app(scope, receive, send_short_failure)


def _configure_logging(level: str) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model directory is read when the app starts (lifespan), not here."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = ModelService.start(settings, metrics)
        drain = DrainOnSigterm(app.state.service, settings.drain_timeout)
        drain.install()
        try:
            yield
        finally:
            drain.uninstall()
            app.state.service.stop()

    app = FastAPI(
        title="novel-lstm",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by app/routes/docs.py with local, pinned assets instead of FastAPI's CDN links.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # No automatic trailing-slash redirects: Starlette builds their absolute Location from the request's Host
    # header (echoing whatever a client sent); without them /static and /generate/ are plain JSON 404s.
    app.router.redirect_slashes = False
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (generate, openai, chat, predict, similar, info, playground, docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")
    install_openapi(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    # Outermost last: the guard answers bad bodies before routing; metrics and headers see those answers too.
    app.add_middleware(
        RequestGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout=settings.body_read_timeout,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, docs_script_hashes=docs.inline_script_hashes())
    app.add_middleware(StartupErrorMiddleware)
    install_json_parse_errors()  # uvicorn imports this module before it serves, in every worker
    install_header_timeout(settings.header_read_timeout)
    return app


app = create_app()
