"""The report in a real browser: headless Chromium with no network draws every chart, cleanly.

Three reports, each from a run other tests read too: the Mall-shaped synthetic project (the
versioned project's latest version), the credit-card example (examples/cc_general.yaml: no
categorical column, log1p money columns, names from the labels) and the CDNOW purchase log
(examples/cdnow.yaml: RFM names and the R x F grid), both on their pinned files as the end-to-end
tests run them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest

if TYPE_CHECKING:
    from conftest import ShippedRun, VersionedProject

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
    charts: int
    """Charts the visualize stage wrote (charts/index.json)."""


@contextmanager
def _opened(report: Path, profile: Path, screenshot: Path | None) -> Iterator[tuple[object, float]]:
    """Headless Chromium with no network on `report`, once every chart has been drawn, its window
    as tall as the page; a full-page screenshot is saved to `screenshot` if one is given. Yields
    the driver and the seconds to draw."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

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
        f"--user-data-dir={profile}",
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
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        yield driver, drawn_in
    finally:
        driver.quit()


def _page_of(root: Path) -> tuple[Path, list[str], int]:
    """The latest report of a project, its segment names and the number of charts it has."""
    folder = root / "artifacts" / "latest"
    names = pl.read_csv(folder / "segments.csv")["name"].to_list()
    charts = len(json.loads((folder / "charts" / "index.json").read_text(encoding="utf-8")))
    return (root / "reports" / "latest" / "index.html").resolve(), names, charts


@pytest.fixture(scope="module")
def page(
    tmp_path_factory: pytest.TempPathFactory, versioned_project: VersionedProject
) -> Iterator[Page]:
    report, names, charts = _page_of(versioned_project.root)
    profile = tmp_path_factory.mktemp("browser") / "chromium-profile"
    with _opened(report, profile, SCREENSHOT) as (driver, drawn_in):
        yield Page(driver, report, names, seconds_to_draw=drawn_in, charts=charts)


def _js(page: Page, script: str) -> object:
    return page.driver.execute_script(script)  # type: ignore[attr-defined]


def test_every_chart_is_drawn(page: Page) -> None:
    holders = _js(page, "return document.querySelectorAll('.chart[data-spec]').length")
    drawn = _js(page, "return document.querySelectorAll('.chart[data-drawn] svg.marks').length")
    assert holders == page.charts > 0
    assert drawn == holders
    assert _js(page, "return document.body.dataset.chartsDrawn") == str(holders)


def test_the_page_logs_no_errors(page: Page) -> None:
    logs = page.driver.get_log("browser")  # type: ignore[attr-defined]
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []


def _requested_schemes(page: Page) -> set[str]:
    """The URL schemes of every request the page made."""
    events = [
        json.loads(entry["message"])["message"] for entry in page.driver.get_log("performance")
    ]  # type: ignore[attr-defined]
    urls = {
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    }
    return {url.split(":", 1)[0] for url in urls}


def test_no_request_leaves_the_page(page: Page) -> None:
    schemes = _requested_schemes(page)
    assert "file" in schemes
    assert not schemes & {"http", "https", "ws", "wss", "ftp"}


def test_every_segment_is_named_on_the_page(page: Page) -> None:
    text = str(_js(page, "return document.body.innerText"))
    for name in page.segment_names:
        assert name in text


def _wait_until(page: Page, condition: Callable[[], bool], what: str) -> None:
    """Wait for the page to reach a state (charts redraw after an event), failing after 10 s."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(page.driver, 10).until(lambda _driver: condition())
    except TimeoutException:
        pytest.fail(f"after 10 s: {what}")


def test_picking_a_segment_fades_the_others(page: Page) -> None:
    faded = "return document.querySelectorAll('#figure-segments svg [opacity=\"0.12\"]').length"
    assert _js(page, faded) == 0
    _js(page, "document.querySelector('button[data-segment^=\"1 \"]').click()")
    pressed = _js(page, "return document.querySelector('button[data-segment^=\"1 \"]').ariaPressed")
    assert pressed == "true"
    _wait_until(page, lambda: int(str(_js(page, faded))) > 0, "no other segment faded")
    _js(page, "document.querySelector('button[data-segment=\"\"]').click()")
    _wait_until(page, lambda: _js(page, faded) == 0, "the segments did not all come back")


def test_charts_have_alternative_text(page: Page) -> None:
    labels = _js(
        page,
        "return [...document.querySelectorAll('.chart-frame')].map(c => c.getAttribute('aria-label'))",
    )
    assert isinstance(labels, list)
    assert len(labels) == page.charts
    assert all(isinstance(label, str) and len(label) > 30 for label in labels), labels


def test_the_screenshot_is_kept(page: Page) -> None:
    assert SCREENSHOT.stat().st_size > 50_000
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_charts_draw_within_seconds(page: Page) -> None:
    # Not a benchmark: a guard against a page that hangs (a missing script would never finish).
    assert page.seconds_to_draw < 60


# --- the credit-card example, small ---------------------------------------------------------------


@dataclass(frozen=True)
class CreditCardPage:
    page: Page
    labels: list[str]
    """The clustered columns' labels, as the config declares them."""


@pytest.fixture(scope="module")
def cc_page(
    tmp_path_factory: pytest.TempPathFactory, cc_run: ShippedRun
) -> Iterator[CreditCardPage]:
    assert cc_run.result.exit_code == 0, cc_run.result.output
    report, names, charts = _page_of(cc_run.root)
    by_name = {column["name"]: column for column in cc_run.config["columns"]}
    labels = [by_name[feature]["label"] for feature in cc_run.config["features"]]
    scratch = tmp_path_factory.mktemp("browser-cc")
    # No screenshot: only the Mall page's is kept (for CI) and checked.
    with _opened(report, scratch / "chromium-profile", None) as (driver, drawn_in):
        page = Page(driver, report, names, seconds_to_draw=drawn_in, charts=charts)
        yield CreditCardPage(page=page, labels=labels)


def test_credit_card_report_draws_every_chart(cc_page: CreditCardPage) -> None:
    page = cc_page.page
    holders = _js(page, "return document.querySelectorAll('.chart[data-spec]').length")
    drawn = _js(page, "return document.querySelectorAll('.chart[data-drawn] svg.marks').length")
    assert holders == page.charts > 0
    assert drawn == holders
    assert _js(page, "return document.body.dataset.chartsDrawn") == str(holders)
    assert page.seconds_to_draw < 60


def test_credit_card_report_logs_no_errors(cc_page: CreditCardPage) -> None:
    logs = cc_page.page.driver.get_log("browser")  # type: ignore[attr-defined]
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []


def test_credit_card_report_makes_no_request(cc_page: CreditCardPage) -> None:
    schemes = _requested_schemes(cc_page.page)
    assert "file" in schemes
    assert not schemes & {"http", "https", "ws", "wss", "ftp"}


def test_credit_card_segments_are_named_from_the_labels(cc_page: CreditCardPage) -> None:
    text = str(_js(cc_page.page, "return document.body.innerText"))
    levels = ("Very low", "Low", "Mid", "High", "Very high")
    for name in cc_page.page.segment_names:
        assert name in text
        parts = name.split(" (")[0].split(" · ")
        named = []
        for part in parts:
            label = next((f for f in cc_page.labels if part.endswith(f" {f}")), None)
            assert label is not None, (part, cc_page.labels)
            assert part.removesuffix(f" {label}") in levels, part
            named.append(label)
        # Some of the clustered columns, each once, in the config's order.
        assert named == [label for label in cc_page.labels if label in named]


SAVE_FROM_THE_PAGE = """
const [figure, done] = arguments;
const saved = [];
// Each download is an anchor clicked by the page: record it instead of leaving the page.
HTMLAnchorElement.prototype.click = function () { saved.push([this.download, this.href]); };
const buttons = document.querySelectorAll(`#figure-${figure} button[data-export]`);
buttons.forEach((button) => button.click());
const wait = () => (saved.length === buttons.length ? done(saved) : setTimeout(wait, 50));
wait();
"""


def test_without_image_files_the_page_saves_a_chart_as_png_and_svg(
    cc_page: CreditCardPage,
) -> None:
    # examples/cc_general.yaml leaves visualize.images off: no PNG or SVG beside the report.
    charts = cc_page.page.report.parent / "charts"
    assert not list(charts.glob("*.png")) and not list(charts.glob("*.svg"))
    driver = cc_page.page.driver
    saved = dict(driver.execute_async_script(SAVE_FROM_THE_PAGE, "elbow"))  # type: ignore[attr-defined]
    assert sorted(saved) == ["elbow.png", "elbow.svg"]
    assert saved["elbow.png"].startswith("data:image/png;base64,")
    assert saved["elbow.svg"].startswith("blob:")
    svg = driver.execute_async_script(  # type: ignore[attr-defined]
        "fetch(arguments[0]).then((r) => r.text()).then(arguments[1]);", saved["elbow.svg"]
    )
    assert svg.startswith("<svg") and "Elbow: inertia against k" in svg


RFM_NAMES = {
    "Champions",
    "Loyal customers",
    "Potential loyalists",
    "New customers",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
}


@pytest.fixture(scope="module")
def cdnow_page(tmp_path_factory: pytest.TempPathFactory, cdnow_run: ShippedRun) -> Iterator[Page]:
    assert cdnow_run.result.exit_code == 0, cdnow_run.result.output
    report, names, charts = _page_of(cdnow_run.root)
    scratch = tmp_path_factory.mktemp("browser-cdnow")
    with _opened(report, scratch / "chromium-profile", None) as (driver, drawn_in):
        yield Page(driver, report, names, seconds_to_draw=drawn_in, charts=charts)


def test_purchase_log_report_draws_every_chart_with_the_rfm_grid(cdnow_page: Page) -> None:
    holders = _js(cdnow_page, "return document.querySelectorAll('.chart[data-spec]').length")
    drawn = _js(
        cdnow_page, "return document.querySelectorAll('.chart[data-drawn] svg.marks').length"
    )
    assert holders == cdnow_page.charts > 0
    assert drawn == holders
    assert (
        _js(cdnow_page, "return document.querySelectorAll('#figure-rfm_grid svg.marks').length")
        == 1
    )
    logs = cdnow_page.driver.get_log("browser")  # type: ignore[attr-defined]
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert not _requested_schemes(cdnow_page) & {"http", "https", "ws", "wss", "ftp"}


def test_purchase_log_segments_carry_rfm_names(cdnow_page: Page) -> None:
    text = str(_js(cdnow_page, "return document.body.innerText"))
    for name in cdnow_page.segment_names:
        assert name in text
        assert name.split(" · ")[0] in RFM_NAMES
