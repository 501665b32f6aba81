"""The review page (``make review``) in a real browser, used as a person uses it.

Voilà serves notebook 04 on a free port, as ``make review`` does; headless Chromium (Debian's
``chromium`` and ``chromium-driver``) opens it through Selenium, waits for the explorer, reads the
recommendation and the figure, changes the rule's limit on top-ups and the threshold looked at,
and checks that the recommendation, the figures and the image follow; then re-runs one point
from the page. Screenshots before and after go to ``test-output/browser/`` (git-ignored).

The assertions hold for any size of the saved data: a limit of one top-up a month is beyond
every setting of the grid's population (40 requests a day need several), and a limit of 10,000
is within all of them. Without Chromium the test is skipped, unless ``REQUIRE_BROWSER=1`` (CI)
makes that a failure. The test takes about 30 s (Voilà runs the notebook, one point re-runs).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from .conftest import (
    OUTPUT,
    ROOT,
    WAIT_S,
    changed,
    find,
    free_port,
    read,
    require_browser,
    wait,
)  # fmt: skip

NOTEBOOK = ROOT / "notebooks" / "04_threshold_review.ipynb"
#: How the page states a sample size, whatever the data's (``1,000 users x 30 days``).
SIZE = r"\d[\d,]* users x [\d.]+ days per setting"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """Voilà serving notebook 04 on a free port (the command of ``make review``), stopped with
    its kernel whatever happens."""
    require_browser()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={port}", "--no-browser",
               "--Voila.ip=127.0.0.1"]  # fmt: skip
    with (OUTPUT / "voila.log").open("w") as log:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Voilà did not start: see {OUTPUT / 'voila.log'}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # Voilà and the kernel it started
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _screenshot(browser: webdriver.Chrome, name: str) -> Path:
    """The explorer scrolled into view, saved as ``name``.png; the path is printed."""
    browser.execute_script(
        "arguments[0].scrollIntoView();", browser.find_element(By.CSS_SELECTOR, ".review-segment")
    )
    path = OUTPUT / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _type(browser: webdriver.Chrome, css: str, value: str) -> None:
    """Type into a number field as a person does: select what is there, type, Enter."""
    field = find(browser, f"{css} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.ENTER)


def test_the_page_answers_the_controls(page_url: str, browser: webdriver.Chrome) -> None:
    """The page shows the notebook without code, then the explorer: its recommendation and
    figure follow the top-up limit, its figures follow the threshold, and its button runs."""
    started = time.monotonic()
    browser.get(page_url)
    recommendation = read(browser, ".review-advice .review-recommendation")
    assert "from sim import" not in read(browser, "body")
    assert re.search(SIZE, read(browser, ".review-figures"))
    image = read(browser, ".review-image img", "src")
    assert image.startswith("data:image/png;base64,") and recommendation
    _screenshot(browser, "before")

    _type(browser, ".review-max-topups", "1")
    strict = changed(browser, ".review-recommendation", recommendation)
    assert "No setting meets the limits (at most 1 top-ups per user per month)" in strict
    assert "at most 1 top-ups per user per month" in read(browser, ".review-advice")
    assert read(browser, ".review-image img", "alt") == strict
    strict_image = read(browser, ".review-image img", "src")

    _type(browser, ".review-max-topups", "10000")
    loose = changed(browser, ".review-recommendation", strict)
    assert "No setting meets the limits" not in loose
    assert loose.startswith("regular, 4% failing cards (40/day), 1 h cooldown: top up below")
    loose_image = changed(browser, ".review-image img", strict_image, "src")  # no hatching
    _screenshot(browser, "after-limit")

    setting, figures = read(browser, ".review-setting"), read(browser, ".review-figures")
    Select(find(browser, ".review-threshold select")).select_by_visible_text("5,000")
    assert "top up below 5,000 credits" in changed(browser, ".review-setting", setting)
    assert changed(browser, ".review-figures", figures) != figures
    changed(browser, ".review-image img", loose_image, "src")  # the dashed frame moved

    _type(browser, ".review-users", "5")
    _type(browser, ".review-days", "1")
    find(browser, ".review-button").click()
    status = wait(browser).until(
        lambda b: (now := read(b, ".review-status")).startswith(("done", "failed")) and now
    )
    assert status == "done: 5 users x 1 days"
    assert "5 users x 1 days per setting" in read(browser, ".review-fresh")
    _screenshot(browser, "after-rerun")
    assert time.monotonic() - started < 90
