"""A real browser for the dashboard's tests and benchmark: Debian's Chromium (apt; no browser
download works here), driven by Playwright for Python through `executable_path`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM_VARIABLE = "DASHBOARD_TEST_CHROMIUM"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# The flags that keep Chromium off the network (the machine has none, and refused connections
# would fill the log) and let it run as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPORTS_DIR = Path(__file__).resolve().parents[1] / ".localcloud" / "reports"


class NoChromium(RuntimeError):
    pass


def chromium_path() -> str:
    configured = os.environ.get(CHROMIUM_VARIABLE)
    candidates = [configured] if configured else list(CHROMIUM_CANDIDATES)
    for candidate in candidates:
        if candidate and shutil.which(candidate):
            return candidate
    raise NoChromium(
        f"no Chromium at {', '.join(c for c in candidates if c)}: apt-get install chromium "
        f"(.ci/run does), or set {CHROMIUM_VARIABLE}"
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page and every console error or page error it produced."""

    page: Page
    errors: list[str] = field(default_factory=list)
    closed: bool = False

    def state(self) -> str:
        return str(self.page.evaluate("document.body.dataset.state || ''"))

    def points(self) -> dict[str, int]:
        """Non-null values drawn per chart (the page's data-points hooks)."""
        found: dict[str, int] = self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')]
                .map(e => [e.dataset.chart, Number(e.dataset.points)]))"""
        )
        return found

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate("window.dashboardStats")
        return found

    def close(self) -> None:
        """Close the page's context (once): a page left open goes on polling the API."""
        if not self.closed:
            self.page.context.close()
            self.closed = True

    def screenshot(self, name: str) -> Path:
        REPORTS_DIR.mkdir(parents=True, exist_ok=True)
        path = REPORTS_DIR / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def open_page(
    browser: Browser, url: str, color_scheme: str = "light", width: int = 1400
) -> WatchedPage:
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        color_scheme=color_scheme,  # type: ignore[arg-type]
    )
    page = context.new_page()
    watched = WatchedPage(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    page.goto(url, wait_until="load")
    return watched
