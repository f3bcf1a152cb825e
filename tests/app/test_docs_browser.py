"""/docs and /redoc in headless Chromium with the network off: both render every operation
from assets this server serves; no request leaves 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest
from headless_chromium import REQUIRES_CHROMIUM, launched_chromium

pytestmark = REQUIRES_CHROMIUM


@pytest.fixture(scope="module")
def offline_browser():
    # Name resolution off for every host but the loopback server: a CDN link could not load even if it tried.
    with launched_chromium(["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]) as instance:
        yield instance


def _offline_page(browser, server_url: str):
    """A page whose every request outside the server is refused and recorded, with page errors recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    problems: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(server_url) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_local)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on(
        "response",
        lambda response: response.status >= 400 and problems.append(f"{response.status} {response.url}"),
    )
    return page, outside, problems


def _operations(server_url: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{server_url}/openapi.json", timeout=30).json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


def test_swagger_ui_renders_every_operation_offline(offline_browser, server_url: str) -> None:
    page, outside, problems = _offline_page(offline_browser, server_url)
    page.goto(f"{server_url}/docs")
    operations = _operations(server_url)
    page.wait_for_function(
        f"document.querySelectorAll('.opblock').length >= {len(operations)}", timeout=30_000
    )
    shown = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").inner_text().strip().replace("\u200b", ""),
        )
        for block in page.locator(".opblock").all()
    }
    assert set(operations) <= shown
    # "Try it out" on an operation works against this server with its Chinese example.
    block = page.locator(".opblock-post", has_text="/predict").first
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    assert outside == [], f"/docs tried to load {outside}"
    assert problems == [], problems
    page.close()


def test_redoc_renders_offline(offline_browser, server_url: str) -> None:
    page, outside, problems = _offline_page(offline_browser, server_url)
    page.goto(f"{server_url}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", state="attached", timeout=30_000)
    sections = page.locator("[data-section-id^='operation/']").count()
    assert sections >= len(_operations(server_url))
    assert "novel-lstm" in page.title()
    assert outside == [], f"/redoc tried to load {outside}"
    assert problems == [], problems
    page.close()
