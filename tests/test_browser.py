"""The report in a real browser: headless Chromium with no network draws every chart, cleanly."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from segmentation.cli import main

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "reports" / "browser-test.png"
"""Kept after the run (git ignores reports/), for CI to publish."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); "
    ".ci/run installs them",
)


@dataclass(frozen=True)
class Page:
    driver: object
    report: Path
    segment_names: list[str]
    seconds_to_draw: float


@pytest.fixture(scope="module")
def page(
    tmp_path_factory: pytest.TempPathFactory,
    make_project: Callable[..., Path],
    blobs4: pl.DataFrame,
) -> Iterator[Page]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path_factory.mktemp("browser")
    make_project(root, blobs4)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    report = (root / "reports" / "latest" / "index.html").resolve()
    names = pl.read_csv(root / "artifacts" / "latest" / "segments.csv")["name"].to_list()

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        # No network: every host name fails to resolve, so any request would fail (and show).
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={root / 'chromium-profile'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        started = time.perf_counter()
        driver.get(report.as_uri())
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.body.dataset.chartsDrawn !== undefined")
        )
        drawn_in = time.perf_counter() - started
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        yield Page(driver=driver, report=report, segment_names=names, seconds_to_draw=drawn_in)
    finally:
        driver.quit()


def _js(page: Page, script: str) -> object:
    return page.driver.execute_script(script)  # type: ignore[attr-defined]


def test_every_chart_is_drawn(page: Page) -> None:
    holders = _js(page, "return document.querySelectorAll('.chart[data-spec]').length")
    drawn = _js(page, "return document.querySelectorAll('.chart[data-drawn] svg.marks').length")
    assert holders == 9
    assert drawn == holders
    assert _js(page, "return document.body.dataset.chartsDrawn") == str(holders)


def test_the_page_logs_no_errors(page: Page) -> None:
    logs = page.driver.get_log("browser")  # type: ignore[attr-defined]
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []


def test_no_request_leaves_the_page(page: Page) -> None:
    import json

    events = [
        json.loads(entry["message"])["message"] for entry in page.driver.get_log("performance")
    ]  # type: ignore[attr-defined]
    urls = {
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    }
    schemes = {url.split(":", 1)[0] for url in urls}
    assert "file" in schemes
    assert not schemes & {"http", "https", "ws", "wss", "ftp"}


def test_every_segment_is_named_on_the_page(page: Page) -> None:
    text = str(_js(page, "return document.body.innerText"))
    for name in page.segment_names:
        assert name in text


def test_picking_a_segment_fades_the_others(page: Page) -> None:
    faded = "return document.querySelectorAll('#figure-segments svg [opacity=\"0.12\"]').length"
    assert _js(page, faded) == 0
    _js(page, "document.querySelector('button[data-segment^=\"1 \"]').click()")
    time.sleep(0.5)
    pressed = _js(page, "return document.querySelector('button[data-segment^=\"1 \"]').ariaPressed")
    assert pressed == "true"
    assert int(str(_js(page, faded))) > 0
    _js(page, "document.querySelector('button[data-segment=\"\"]').click()")
    time.sleep(0.5)
    assert _js(page, faded) == 0


def test_charts_have_alternative_text(page: Page) -> None:
    labels = _js(
        page,
        "return [...document.querySelectorAll('.chart-frame')].map(c => c.getAttribute('aria-label'))",
    )
    assert isinstance(labels, list)
    assert len(labels) == 9
    assert all(isinstance(label, str) and len(label) > 30 for label in labels), labels


def test_the_screenshot_is_kept(page: Page) -> None:
    assert SCREENSHOT.stat().st_size > 50_000
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_charts_draw_within_seconds(page: Page) -> None:
    # Not a benchmark: a guard against a page that hangs (a missing script would never finish).
    assert page.seconds_to_draw < 60
