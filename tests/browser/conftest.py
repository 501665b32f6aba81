"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``
driven through Selenium, and the waits every page test reads with.

Without Chromium a browser test is skipped, unless ``REQUIRE_BROWSER=1`` (CI) makes that a
failure. Screenshots go to ``test-output/browser/`` (git-ignored).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
#: Debian's Chromium and its driver (``CHROMIUM`` and ``CHROMEDRIVER`` name others).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Headless Chromium as root on a closed network: no sandbox, no GPU, and none of the
#: background connections (updates, sync, QUIC) that are refused here.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800")  # fmt: skip
#: The longest wait for one thing to appear in a page.
WAIT_S = 45


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_browser() -> None:
    """Skip when this machine has no Chromium, or fail when ``REQUIRE_BROWSER=1`` says it must."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"no browser to test the pages: {', '.join(missing)} not found"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and REQUIRE_BROWSER=1 (apt-get install chromium chromium-driver)")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, closed at the end."""
    require_browser()
    OUTPUT.mkdir(parents=True, exist_ok=True)
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


def wait(browser: webdriver.Chrome) -> WebDriverWait:
    """An explicit wait that retries when a redraw replaced the element being read."""
    return WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))


def find(browser: webdriver.Chrome, css: str) -> WebElement:
    """The element ``css`` once the page shows it."""
    return wait(browser).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def read(browser: webdriver.Chrome, css: str, attribute: str = "innerText") -> str:
    """The text (or attribute) of ``css`` now, read again if a redraw replaced the element."""
    return (
        wait(browser)
        .until(lambda b: b.find_element(By.CSS_SELECTOR, css).get_attribute(attribute) or " ")
        .strip()
    )


def changed(browser: webdriver.Chrome, css: str, before: str, attribute: str = "innerText"
            ) -> str:  # fmt: skip
    """The text (or attribute) of ``css`` once it differs from ``before``."""
    return wait(browser).until(
        lambda b: (now := (b.find_element(By.CSS_SELECTOR, css).get_attribute(attribute) or "")
                   .strip()) != before and now
    )  # fmt: skip
