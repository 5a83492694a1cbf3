"""A real headless browser for the console tests: Debian's chromium driven by chromedriver (selenium).

Selenium blocks, and the daemon under test serves on the test's own event loop, so every call goes
through ``asyncio.to_thread`` (the ``Browser`` methods are synchronous; tests wrap them). Screenshots
land in ``test-artifacts/`` at the checkout's top (git-ignored), or in $MONITORD_ARTIFACTS.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ARTIFACTS = Path(os.environ.get("MONITORD_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
PHONE = (390, 844)
DESKTOP = (1366, 900)


def chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class Browser:
    def __init__(self, base_url: str, size: tuple[int, int]) -> None:
        found = chromium()
        assert found is not None
        options = webdriver.ChromeOptions()
        options.binary_location = found[0]
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        self.driver = webdriver.Chrome(options=options, service=Service(found[1]))
        self.driver.set_window_size(*size)
        self.base = base_url.rstrip("/")

    def open(self, path_or_url: str) -> None:
        self.driver.get(path_or_url if path_or_url.startswith("http") else self.base + path_or_url)

    def login(self, token: str) -> None:
        self.open("/console/login")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.ID, "login").click()
        self.wait_for("#live")

    def wait_live(self, timeout: float = 10) -> None:
        """Until the page's event stream is open (so what happens next reaches it)."""
        WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(
            lambda d: d.execute_script("return document.body.dataset.live === '1'")
        )

    def wait_for(self, css: str, timeout: float = 10) -> Any:
        """The first element matching ``css``, once there is one."""
        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css) and d.find_elements(By.CSS_SELECTOR, css)[0]
        )

    def seen_within(self, css: str, timeout: float) -> float:
        """Wall time (time.time) at which ``css`` matched; fails after ``timeout`` seconds."""
        self.wait_for(css, timeout)
        return time.time()

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def type(self, css: str, text: str) -> None:
        field = self.driver.find_element(By.CSS_SELECTOR, css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def width(self) -> int:
        return int(self.js("return document.documentElement.scrollWidth"))

    def close(self) -> None:
        self.driver.quit()
