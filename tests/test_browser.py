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


DIGIT_NAMES = [f"digits {digit}" for digit in range(10)]
TINY_WIDTHS = (4, 8)


def save_tab_checkpoints(folder: Path) -> dict[str, str]:
    """Save random Okapi, Support Matching and ERM checkpoints on the data their tabs rebuild."""
    from zoo.models import ImageClassifier, Okapi, SupportMatching

    domains = {"name": "coloured-digits", "protocol": "domains", "seed": 0}
    missing_source = {"name": "coloured-digits", "protocol": "missing-source", "seed": 0}
    torch.manual_seed(0)
    # Both calipers off, so every query is matched and the table shows images.
    Okapi(
        num_classes=10, label_names=DIGIT_NAMES, widths=TINY_WIDTHS, binary=False, num_groups=7,
        fixed_caliper=None, std_caliper=None, data=domains,
    ).save_pretrained(folder / "okapi")
    ImageClassifier(num_classes=10, label_names=DIGIT_NAMES, widths=TINY_WIDTHS, data=domains).save_pretrained(
        folder / "okapi-erm"
    )
    for name in ("supmatch", "supmatch-erm"):
        SupportMatching(
            label_names=["digits 2", "digits 4"], widths=TINY_WIDTHS, zy_dim=4, bag_size=16, data=missing_source
        ).save_pretrained(folder / name)
    return {
        "okapi": str(folder / "okapi"),
        "okapi_erm": str(folder / "okapi-erm"),
        "supmatch": str(folder / "supmatch"),
        "supmatch_erm": str(folder / "supmatch-erm"),
    }


@pytest.fixture
def served_tabs(tmp_path, monkeypatch):
    """Serve the combined app with random checkpoints for the Okapi and Support Matching tabs.

    Yields (url, blocked), where `blocked` lists every request to another host than the app's.
    """
    if not CHROMIUM.is_file():
        pytest.skip(f"chromium not installed at {CHROMIUM}; .ci/run installs it with apt-get install chromium")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from spaces import app as combined_app

    app = combined_app.build_app(**save_tab_checkpoints(tmp_path))
    _, url, _ = combined_app.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    blocked: list[str] = []
    try:
        yield url, blocked
    finally:
        app.close()
    assert blocked == [], f"the page requested hosts other than {url}: {blocked}"


def open_page(playwright, url: str, blocked: list[str]):
    origin = url.rstrip("/")

    def allow_only_app(route):
        if route.request.url.startswith(origin + "/") or route.request.url == origin:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.route("**/*", allow_only_app)
    page.goto(url)
    return browser, page


@pytest.mark.slow
@pytest.mark.browser
def test_browser_okapi_tab_shows_matches(served_tabs, tmp_path):
    from playwright.sync_api import sync_playwright

    url, blocked = served_tabs
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, url, blocked)
        try:
            # Selecting the tab loads the models, fills the examples and matches the first one.
            page.get_by_role("tab", name="Okapi").click()
            okapi = page.locator("#okapi-okapi-label [data-testid='label-output-value']")
            okapi.wait_for(timeout=PREDICTION_TIMEOUT_MS)
            assert page.locator("#okapi-gallery img").count() == 18

            page.locator("#okapi-gallery img").nth(9).click()
            page.get_by_text("Example 9:").wait_for(timeout=PREDICTION_TIMEOUT_MS)
            assert "from the test split" in page.get_by_text("Example 9:").inner_text()
            domain = page.locator("#okapi-domain input").input_value()
            # The table names the query's domain once the matching for example 9 is done.
            page.locator("#okapi-matches").get_by_text(f"Query: domain {domain} (test only)").wait_for(
                timeout=PREDICTION_TIMEOUT_MS
            )
            assert okapi.inner_text().strip() in DIGIT_NAMES
            erm = page.locator("#okapi-erm-label [data-testid='label-output-value']")
            assert erm.inner_text().strip() in DIGIT_NAMES
            # Six other domains, each with three matches, since the checkpoint's calipers are off.
            assert page.locator("#okapi-matches table tr").count() == 7
            assert page.locator("#okapi-matches table img").count() == 18
            # The accuracy plot comes from its own event, which may finish after the matches.
            page.locator("#okapi-accuracy img").wait_for(timeout=PREDICTION_TIMEOUT_MS)

            screenshot = tmp_path / "okapi.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_browser_supmatch_tab_draws_bags(served_tabs, tmp_path):
    from playwright.sync_api import sync_playwright

    url, blocked = served_tabs
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, url, blocked)
        try:
            page.get_by_role("tab", name="Support Matching").click()
            summary = page.locator("#supmatch-bag-summary")
            summary.get_by_text("oracle").first.wait_for(timeout=PREDICTION_TIMEOUT_MS)
            page.locator("#supmatch-gallery img").first.wait_for(timeout=PREDICTION_TIMEOUT_MS)
            assert "digits 4, red (missing in training)" in page.locator("#supmatch-source input").input_value()
            assert "SM " in page.locator("#supmatch-gallery").inner_text()
            assert page.locator("#supmatch-bag-plot img").count() == 1
            assert page.locator("#supmatch-accuracy img").count() == 1

            # Another labeller redraws the bags at once.
            page.locator("#supmatch-labeller").get_by_text("k-means", exact=True).click()
            summary.get_by_text("cluster").first.wait_for(timeout=PREDICTION_TIMEOUT_MS)
            assert "k-means clusters of the raw deployment pixels" in summary.inner_text()

            screenshot = tmp_path / "supmatch.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()
