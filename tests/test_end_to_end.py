"""The whole pipeline on real files: the Mall Customers file with the repository's default config,
the credit-card customers file with examples/cc_general.yaml and the CDNOW purchase log with
examples/cdnow.yaml (the runs are conftest's, shared with the browser tests).

Each file is taken from ../shared/data/ beside the checkout, else from where its config reads it
(data/raw/, where `make data CONFIG=...` downloads it); a test whose file is in neither is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import pytest

if TYPE_CHECKING:
    from conftest import ShippedRun


@pytest.fixture(scope="module")
def segments(mall_run: ShippedRun) -> pl.DataFrame:
    return pl.read_csv(mall_run.folder / "segments.csv")


def test_run_succeeds(mall_run: ShippedRun) -> None:
    assert mall_run.result.exit_code == 0, mall_run.result.output


def test_the_data_matches_the_pinned_hash(mall_run: ShippedRun) -> None:
    assert mall_run.read_json("manifest.json")["inputs"]["data"]["pinned"] is True


def test_five_segments_are_chosen(mall_run: ShippedRun) -> None:
    assert mall_run.read_json("k_selection.json")["chosen_k"] == 5


def test_silhouette_at_five_is_about_0_555(mall_run: ShippedRun) -> None:
    candidates = mall_run.read_json("k_selection.json")["candidates"]
    (five,) = [c for c in candidates if c["k"] == 5]
    assert five["silhouette"] == pytest.approx(0.555, abs=1e-3)


def test_every_segment_holds_under_resampling(mall_run: ShippedRun) -> None:
    # Resamples are refitted with cluster.n_init starts, as the segments were; with one start
    # each, the lowest mean Jaccard was 0.84.
    jaccard = mall_run.read_json("k_selection.json")["stability"]["per_segment_jaccard"]
    assert len(jaccard) == 5
    assert min(jaccard.values()) >= 0.95


def test_segment_sizes(segments: pl.DataFrame) -> None:
    assert segments["size"].to_list() == [81, 39, 35, 23, 22]


def test_segment_names(segments: pl.DataFrame) -> None:
    names = segments["name"].to_list()
    assert "High income · Low spending" in names
    assert "Low income · High spending" in names
    assert len(set(names)) == 5


def test_report_shows_every_segment(mall_run: ShippedRun, segments: pl.DataFrame) -> None:
    html = (mall_run.root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    for name in segments["name"]:
        assert name in html


# --- the credit-card example (examples/cc_general.yaml) on the pinned file ------------------------

LEVELS = ("Very low", "Low", "Mid", "High", "Very high")


@pytest.fixture(scope="module")
def cc_segments(cc_run: ShippedRun) -> pl.DataFrame:
    return pl.read_csv(cc_run.folder / "segments.csv")


def test_cc_run_succeeds_on_the_pinned_file(cc_run: ShippedRun) -> None:
    assert cc_run.result.exit_code == 0, cc_run.result.output
    data = cc_run.read_json("manifest.json")["inputs"]["data"]
    assert data["pinned"] is True
    assert data["sha256"] == cc_run.config["data"]["sha256"]
    summary = cc_run.read_json("prepare_summary.json")
    assert (summary["rows_valid"], summary["rows_rejected"]) == (8950, 0)
    assert summary["missing"]["minimum_payments"]["missing"] == 313
    assert summary["missing"]["credit_limit"]["missing"] == 1


def test_cc_five_segments_are_chosen_by_silhouette(cc_run: ShippedRun) -> None:
    selection = cc_run.read_json("k_selection.json")
    assert selection["chosen_k"] == 5
    assert selection["choices"]["silhouette"] == 5
    (five,) = [c for c in selection["candidates"] if c["k"] == 5]
    assert five["silhouette"] == pytest.approx(0.293, abs=2e-3)


def test_cc_every_k_passed_over_has_a_segment_below_the_share(cc_run: ShippedRun) -> None:
    selection = cc_run.read_json("k_selection.json")
    share = cc_run.config["select_k"]["min_segment_share"]
    assert selection["min_segment_share"] == share
    passed = {entry["k"]: entry["smallest_share"] for entry in selection["passed_over"]}
    assert all(smallest < share for smallest in passed.values())
    small = {
        c["k"]
        for c in selection["candidates"]
        if c["smallest_share"] is not None and c["smallest_share"] < share
    }
    assert set(passed) == small
    assert selection["chosen_k"] not in passed


def test_cc_segment_sizes(cc_segments: pl.DataFrame) -> None:
    assert cc_segments["size"].to_list() == [2870, 1984, 1674, 1258, 1164]


def test_cc_names_are_built_from_the_declared_labels(
    cc_run: ShippedRun, cc_segments: pl.DataFrame
) -> None:
    by_name = {column["name"]: column for column in cc_run.config["columns"]}
    labels = [by_name[feature]["label"] for feature in cc_run.config["features"]]
    names = cc_segments["name"].to_list()
    assert len(set(names)) == len(names)
    for name in names:
        named = []
        for part in name.split(" (")[0].split(" · "):
            label = next((item for item in labels if part.endswith(f" {item}")), None)
            assert label is not None, (part, labels)
            assert part.removesuffix(f" {label}") in LEVELS, part
            named.append(label)
        assert named == [label for label in labels if label in named]
    # No vocabulary (naming: null): traits instead of actions.
    assert cc_segments["action"].is_null().all()
    assert cc_segments["traits"].str.len_chars().min() > 0


def test_cc_report_shows_every_segment(cc_run: ShippedRun, cc_segments: pl.DataFrame) -> None:
    report = cc_run.root / "reports" / "latest" / "index.html"
    html = report.read_text(encoding="utf-8")
    assert cc_run.config["report"]["title"] in html
    for name in cc_segments["name"]:
        assert name in html


# --- the CDNOW purchase log (examples/cdnow.yaml) on the pinned file ------------------------------


def test_cdnow_run_succeeds_on_the_pinned_file(cdnow_run: ShippedRun) -> None:
    assert cdnow_run.result.exit_code == 0, cdnow_run.result.output
    assert cdnow_run.read_json("manifest.json")["inputs"]["data"]["pinned"] is True


def test_cdnow_has_23570_customers_as_of_1998_07_01(cdnow_run: ShippedRun) -> None:
    summary = cdnow_run.read_json("customers_summary.json")
    assert summary["customers"] == 23_570
    assert summary["rows"] == 69_659
    assert summary["as_of"] == "1998-07-01"
    assert (summary["first_purchase"], summary["last_purchase"]) == ("1997-01-01", "1998-06-30")
    assert cdnow_run.read_json("prepare_summary.json")["rows_valid"] == 23_570


def test_cdnow_report_exists(cdnow_run: ShippedRun) -> None:
    html = (cdnow_run.root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "CDNOW customers: RFM segments" in html
    segments = pl.read_csv(cdnow_run.folder / "segments.csv")
    assert segments["size"].sum() == 23_570
    for name in segments["name"]:
        assert name in html
