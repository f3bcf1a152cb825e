"""The real app on the tiny real model: in-process (TestClient) and as a real uvicorn server (subprocess)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from live_server import running_server

from app.main import create_app
from app.settings import Settings

# Small limits so the limit checks are cheap to hit.
TEST_LIMITS = {"max_prompt_chars": 200, "max_new_tokens": 64, "top_k_limit": 50, "max_topn": 20}


@pytest.fixture(scope="session")
def app_settings(tiny_model_dir: Path) -> Settings:
    return Settings(model_dir=tiny_model_dir, **TEST_LIMITS)


@pytest.fixture(scope="session")
def client(app_settings: Settings) -> Iterator[TestClient]:
    """One started app (lifespan ran, model loaded) for the whole session."""
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def vocabulary(client: TestClient) -> list[str]:
    return client.app.state.service.model.vectors.words


@pytest.fixture(scope="session")
def server_url(tiny_model_dir: Path) -> Iterator[str]:
    """A real server shared by the tests that need real sockets (streaming, concurrency, the browser)."""
    limits = {name.upper(): str(value) for name, value in TEST_LIMITS.items()}
    # Long generations to observe concurrency with: the tiny model decodes thousands of tokens per second, so
    # a generation that must still be running seconds later asks for up to a million.
    limits["MAX_NEW_TOKENS"] = "1000000"
    with running_server(tiny_model_dir, **limits) as url:
        yield url
