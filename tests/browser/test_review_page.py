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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "04_threshold_review.ipynb"
OUTPUT = ROOT / "test-output" / "browser"
#: Debian's Chromium and its driver (``CHROMIUM`` and ``CHROMEDRIVER`` name others).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Headless Chromium as root on a closed network: no sandbox, no GPU, and none of the
#: background connections (updates, sync, QUIC) that are refused here.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800")  # fmt: skip
#: How the page states a sample size, whatever the data's (``1,000 users x 30 days``).
SIZE = r"\d[\d,]* users x [\d.]+ days per setting"
#: The longest wait for one thing to appear in the page (the whole test stays under 2 minutes).
WAIT_S = 45

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _require_browser() -> None:
    """Skip when this machine has no Chromium, or fail when ``REQUIRE_BROWSER=1`` says it must."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"no browser to test the review page: {', '.join(missing)} not found"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and REQUIRE_BROWSER=1 (apt-get install chromium chromium-driver)")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """Voilà serving notebook 04 on a free port (the command of ``make review``), stopped with
    its kernel whatever happens."""
    _require_browser()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    port = _free_port()
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


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, closed at the end."""
    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(WAIT_S)
            yield driver
        finally:
            driver.quit()


def _wait(browser: webdriver.Chrome) -> WebDriverWait:
    """An explicit wait that retries when a widget redraws the element being read."""
    return WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))


def _find(browser: webdriver.Chrome, css: str) -> WebElement:
    """The element ``css`` once the page shows it."""
    return _wait(browser).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def _read(browser: webdriver.Chrome, css: str, attribute: str = "innerText") -> str:
    """The text (or attribute) of ``css`` now, read again if a redraw replaced the element."""
    return (
        _wait(browser)
        .until(lambda b: b.find_element(By.CSS_SELECTOR, css).get_attribute(attribute) or " ")
        .strip()
    )


def _changed(browser: webdriver.Chrome, css: str, before: str, attribute: str = "innerText"
             ) -> str:  # fmt: skip
    """The text (or attribute) of ``css`` once it differs from ``before``."""
    return _wait(browser).until(
        lambda b: (now := (b.find_element(By.CSS_SELECTOR, css).get_attribute(attribute) or "")
                   .strip()) != before and now
    )  # fmt: skip


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
    field = _find(browser, f"{css} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.ENTER)


def test_the_page_answers_the_controls(page_url: str, browser: webdriver.Chrome) -> None:
    """The page shows the notebook without code, then the explorer: its recommendation and
    figure follow the top-up limit, its figures follow the threshold, and its button runs."""
    started = time.monotonic()
    browser.get(page_url)
    recommendation = _read(browser, ".review-advice .review-recommendation")
    assert "from sim import" not in _read(browser, "body")
    assert re.search(SIZE, _read(browser, ".review-figures"))
    image = _read(browser, ".review-image img", "src")
    assert image.startswith("data:image/png;base64,") and recommendation
    _screenshot(browser, "before")

    _type(browser, ".review-max-topups", "1")
    strict = _changed(browser, ".review-recommendation", recommendation)
    assert "No setting meets the limits (at most 1 top-ups per user per month)" in strict
    assert "at most 1 top-ups per user per month" in _read(browser, ".review-advice")
    assert _read(browser, ".review-image img", "alt") == strict
    strict_image = _read(browser, ".review-image img", "src")

    _type(browser, ".review-max-topups", "10000")
    loose = _changed(browser, ".review-recommendation", strict)
    assert "No setting meets the limits" not in loose
    assert loose.startswith("regular, 4% failing cards (40/day), 1 h cooldown: top up below")
    loose_image = _changed(browser, ".review-image img", strict_image, "src")  # no hatching
    _screenshot(browser, "after-limit")

    setting, figures = _read(browser, ".review-setting"), _read(browser, ".review-figures")
    Select(_find(browser, ".review-threshold select")).select_by_visible_text("5,000")
    assert "top up below 5,000 credits" in _changed(browser, ".review-setting", setting)
    assert _changed(browser, ".review-figures", figures) != figures
    _changed(browser, ".review-image img", loose_image, "src")  # the dashed frame moved

    _type(browser, ".review-users", "5")
    _type(browser, ".review-days", "1")
    _find(browser, ".review-button").click()
    status = _wait(browser).until(
        lambda b: (now := _read(b, ".review-status")).startswith(("done", "failed")) and now
    )
    assert status == "done: 5 users x 1 days"
    assert "5 users x 1 days per setting" in _read(browser, ".review-fresh")
    _screenshot(browser, "after-rerun")
    assert time.monotonic() - started < 90
