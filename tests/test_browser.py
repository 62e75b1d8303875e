"""Headless-browser test of the combined demo app: open the page, pick a digit, read the predictions.

It drives Debian's Chromium through Playwright. Every request to a host other than the
app's own 127.0.0.1 address is aborted and reported, so the page is shown to work offline.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABEL_NAMES = ["digits 01234", "digits 56789"]
# The first request loads both models and preprocesses the training split.
PREDICTION_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.browser
def test_browser_shows_predictions(tmp_path, monkeypatch):
    if not CHROMIUM.is_file():
        pytest.skip(f"chromium not installed at {CHROMIUM}; .ci/run installs it with apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")

    from spaces import app as combined_app
    from zoo.models import ImageClassifier, RealPatch

    torch.manual_seed(0)
    RealPatch(num_classes=2, label_names=LABEL_NAMES, subgroup_names=("red", "green")).save_pretrained(
        tmp_path / "realpatch"
    )
    ImageClassifier(num_classes=2, label_names=LABEL_NAMES).save_pretrained(tmp_path / "erm")

    app = combined_app.build_app(realpatch=str(tmp_path / "realpatch"), erm=str(tmp_path / "erm"))
    _, url, _ = combined_app.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    origin = url.rstrip("/")
    blocked: list[str] = []

    def allow_only_app(route):
        if route.request.url.startswith(origin + "/") or route.request.url == origin:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route("**/*", allow_only_app)
                page.goto(url)
                page.get_by_role("tab", name="RealPatch").click()
                page.locator("#realpatch-gallery img").nth(3).click()

                erm = page.locator("#realpatch-erm-label [data-testid='label-output-value']")
                realpatch = page.locator("#realpatch-realpatch-label [data-testid='label-output-value']")
                erm.wait_for(timeout=PREDICTION_TIMEOUT_MS)
                realpatch.wait_for(timeout=PREDICTION_TIMEOUT_MS)
                assert erm.inner_text().strip() in LABEL_NAMES
                assert realpatch.inner_text().strip() in LABEL_NAMES
                assert page.locator("#realpatch-index input[type='number']").input_value() == "3"
                assert "handwritten" in page.get_by_text("Test digit 3:").inner_text()

                # The Compare button reruns the comparison in the other colour.
                page.locator("#realpatch-colour").get_by_text("green", exact=True).click()
                page.locator("#realpatch-compare").click()
                page.get_by_text("query, green").wait_for(timeout=PREDICTION_TIMEOUT_MS)

                screenshot = tmp_path / "realpatch.png"
                page.screenshot(path=str(screenshot), full_page=True)
                assert screenshot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        app.close()
    assert blocked == [], f"the page requested hosts other than {origin}: {blocked}"
