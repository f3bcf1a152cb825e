"""Debian's headless Chromium driven by Playwright, for the browser tests of tests/app (playground, /docs)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# What every browser test wants: no sandbox (containers), no GPU, and no first-run or background traffic of
# Chromium's own; each test module adds its own flags to these.
BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]

# The pytestmark of a browser test module: marked `browser`, and skipped, saying how to install
# Chromium, where it is missing.
REQUIRES_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
        reason="Chromium is not installed at /usr/bin/chromium: `make browser` (apt-get install chromium) "
        "installs it; .ci/run does so on CI",
    ),
]


@contextmanager
def launched_chromium(extra_args: list[str]) -> Iterator:
    """A Playwright Browser on CHROMIUM with BASE_ARGS + extra_args, closed on leaving."""
    # Imported here: collecting (and skipping) these tests must not need Playwright.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS + extra_args)
        yield instance
        instance.close()
