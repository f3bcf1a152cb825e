"""The playground in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), keyboard only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from headless_chromium import REQUIRES_CHROMIUM, launched_chromium

pytestmark = REQUIRES_CHROMIUM


@pytest.fixture(scope="module")
def browser():
    with launched_chromium(["--disable-quic", "--disable-sync"]) as instance:
        yield instance


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_generate_with_the_keyboard_streams_text_and_shows_candidates(
    browser, server_url: str, tmp_path: Path, width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.goto(server_url + "/")
    page.wait_for_selector("#model-card dl")  # the model card came from /info
    # The held-out table leads with bits per character, the model's figure as /info reports it.
    evaluation = page.evaluate("fetch('/info').then(r => r.json()).then(info => info.evaluation)")
    header = page.locator("#model-card table tr").first.inner_text()
    assert "bpc" in header.split()
    model_row = page.locator("#model-card table tr", has_text="model").first.inner_text().split()
    assert model_row[1] == f"{evaluation['model']['bpc']:.2f}"

    # Keyboard only: the skip link leads to the prompt, Ctrl+Enter generates.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    page.locator("#prompt").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("黛玉听了")
    page.keyboard.press("Control+Enter")

    page.wait_for_selector("#output .token", timeout=30_000)
    page.wait_for_selector("#candidates .candidate", timeout=30_000)
    page.wait_for_function("document.querySelector('#status').textContent.includes('length')", timeout=30_000)
    tokens = page.locator("#output .token").count()
    assert tokens == int(page.locator("#max_new_tokens").input_value())
    assert page.locator("#output .prompt-text").inner_text() == "黛玉听了"
    bars = page.locator("#candidates .candidate .bar")
    assert bars.count() == 10
    widths = [
        float(bars.nth(i).evaluate("e => e.getBoundingClientRect().width")) for i in range(bars.count())
    ]
    assert widths[0] > 0 and widths == sorted(widths, reverse=True)

    # A candidate is a button: Enter appends its word to the prompt.
    first_word = page.locator("#candidates .candidate .word").first.inner_text()
    page.locator("#candidates .candidate").first.focus()
    page.keyboard.press("Enter")
    assert page.locator("#prompt").input_value() == "黛玉听了" + first_word

    # Nothing wider than the viewport (readable on a phone without sideways scrolling).
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot = tmp_path / f"playground-{width}.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    assert problems == []
    page.close()


def test_errors_are_shown_on_the_page(browser, server_url: str) -> None:
    page = browser.new_page()
    page.goto(server_url + "/")
    page.locator("#prompt").fill("   ")
    page.locator("#prompt").focus()
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "inputs is empty" in page.locator("#error").inner_text()
    page.close()


def test_the_min_p_control_is_sent_with_the_sampling_parameters(browser, server_url: str) -> None:
    page = browser.new_page()
    sent: list[dict] = []
    page.on("request", lambda r: r.url.endswith("/generate_stream") and sent.append(json.loads(r.post_data)))
    page.goto(server_url + "/")
    page.locator("#min_p").focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.locator("#min_p-value").inner_text() == "0.1"
    page.locator("#prompt").fill("黛玉听了")
    page.locator("#prompt").focus()
    page.keyboard.press("Control+Enter")
    page.locator("#status", has_text="length").wait_for(timeout=30_000)
    assert sent[-1]["parameters"]["min_p"] == 0.1
    page.locator("#greedy").check()  # greedy takes the best word: min-p, like top-p, is off and disabled
    assert page.locator("#min_p").is_disabled()
    page.close()


def test_chat_tab_holds_a_three_turn_conversation_with_a_chosen_character(browser, server_url: str) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.goto(server_url + "/")
    page.locator("#tab-chat").click()
    assert page.locator("#continue-view").is_hidden() and page.locator("#chat-view").is_visible()
    page.wait_for_selector("#chat-character option", state="attached")
    characters = page.evaluate("fetch('/characters').then(r => r.json())")
    names = [option.split("（")[0] for option in page.locator("#chat-character option").all_inner_texts()]
    assert names == [c["name"] for c in characters["characters"]]
    chosen = characters["characters"][1]["name"]  # not the default one
    page.locator("#chat-character").select_option(chosen)
    page.locator("#chat-seed").fill("3")

    said = ["妹妹今日可好？", "我们去园子里逛逛罢", "明儿再来看你"]
    for turn, text in enumerate(said, start=1):
        if turn == 3:  # greedy: one candidate, streamed token by token (a sampled pool arrives ranked)
            page.locator("#chat-temperature").fill("0")
        page.locator("#chat-input").fill(text)
        if turn % 2:  # Enter in the input field sends, and so does the button
            page.locator("#chat-input").press("Enter")
        else:
            page.locator("#chat-send").click()
        page.wait_for_function(
            f"() => document.querySelectorAll('#chat-log .bubble.assistant').length === {turn} && "
            "!document.querySelector('#chat-log .streaming') && "
            "!document.querySelector('#chat-send').disabled",
            timeout=30_000,
        )
    users = page.locator("#chat-log .bubble.user .words").all_inner_texts()
    bots = page.locator("#chat-log .bubble.assistant")
    assert users == said and bots.count() == 3
    for i in range(3):
        assert bots.nth(i).locator(".speaker").inner_text() == chosen
        reply = bots.nth(i).locator(".words").inner_text()
        assert reply and "”" not in reply
    # The greedy reply arrived as a stream of chunks (one per released token or so), not as one piece.
    chunks = int(bots.nth(2).get_attribute("data-chunks") or 0)
    assert chunks > 1 or len(bots.nth(2).locator(".words").inner_text()) <= 1, chunks

    # The novel's lines that grounded the first reply: a closed "from the novel" list, opened by a click.
    grounding = bots.nth(0).locator("details.grounding")
    assert grounding.count() == 1 and not grounding.evaluate("element => element.open")
    assert "from the novel" in grounding.locator("summary").inner_text()
    assert grounding.locator("li").first.is_hidden()
    grounding.locator("summary").click()
    lines = grounding.locator("li").all_inner_texts()
    assert lines and all(line.startswith("第") and "回" in line and "“" in line for line in lines)
    assert grounding.locator("li").first.is_visible()
    assert "done" in page.locator("#chat-status").inner_text()
    assert problems == []
    page.close()


def test_chat_stop_button_ends_a_reply_in_progress(browser, server_url: str) -> None:
    page = browser.new_page()
    page.goto(server_url + "/#chat")
    page.wait_for_selector("#chat-character option", state="attached")
    page.locator("#chat-input").fill("你好")
    # Send and stop in one task: the tiny model answers in milliseconds, faster than a second click lands.
    page.evaluate(
        "() => { document.querySelector('#chat-send').click(); "
        "document.querySelector('#chat-stop').click(); }"
    )
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled", timeout=30_000)
    assert "stopped" in page.locator("#chat-status").inner_text()
    assert page.locator("#chat-log .bubble.user").count() == 1
    assert page.locator("#chat-log .bubble.assistant").count() == 0  # nothing arrived: no empty bubble
    # The conversation goes on after a stop.
    page.locator("#chat-input").fill("再说一遍")
    page.locator("#chat-send").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chat-log .bubble.assistant').length === 1 && "
        "!document.querySelector('#chat-send').disabled",
        timeout=30_000,
    )
    assert page.locator("#chat-log .bubble.assistant .words").inner_text()
    page.close()
