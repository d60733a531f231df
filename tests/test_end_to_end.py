"""The whole pipeline on real files: the Mall Customers file with the repository's default config,
and the credit-card customers file with examples/cc_general.yaml."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from segmentation.cli import main

REPO = Path(__file__).resolve().parent.parent
MALL_CSV = REPO.parent / "shared" / "data" / "Mall_Customers.csv"


@dataclass(frozen=True)
class MallRun:
    root: Path
    result: Result

    @property
    def folder(self) -> Path:
        return self.root / "artifacts" / "latest"

    def read_json(self, name: str) -> Any:
        return json.loads((self.folder / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mall(tmp_path_factory: pytest.TempPathFactory) -> MallRun:
    if not MALL_CSV.is_file():
        pytest.skip(f"{MALL_CSV} is absent")
    root = tmp_path_factory.mktemp("mall")
    shutil.copy(REPO / "config.yaml", root / "config.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy(MALL_CSV, root / "data" / "raw" / "Mall_Customers.csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(main, ["run"])
    return MallRun(root=root, result=result)


@pytest.fixture(scope="module")
def segments(mall: MallRun) -> pl.DataFrame:
    return pl.read_csv(mall.folder / "segments.csv")


def test_run_succeeds(mall: MallRun) -> None:
    assert mall.result.exit_code == 0, mall.result.output


def test_the_data_matches_the_pinned_hash(mall: MallRun) -> None:
    assert mall.read_json("manifest.json")["inputs"]["data"]["pinned"] is True


def test_five_segments_are_chosen(mall: MallRun) -> None:
    assert mall.read_json("k_selection.json")["chosen_k"] == 5


def test_silhouette_at_five_is_about_0_555(mall: MallRun) -> None:
    candidates = mall.read_json("k_selection.json")["candidates"]
    (five,) = [c for c in candidates if c["k"] == 5]
    assert five["silhouette"] == pytest.approx(0.555, abs=1e-3)


def test_every_segment_holds_under_resampling(mall: MallRun) -> None:
    # Resamples are refitted with cluster.n_init starts, as the segments were; with one start
    # each, the lowest mean Jaccard was 0.84.
    jaccard = mall.read_json("k_selection.json")["stability"]["per_segment_jaccard"]
    assert len(jaccard) == 5
    assert min(jaccard.values()) >= 0.95


def test_segment_sizes(segments: pl.DataFrame) -> None:
    assert segments["size"].to_list() == [81, 39, 35, 23, 22]


def test_segment_names(segments: pl.DataFrame) -> None:
    names = segments["name"].to_list()
    assert "High income · Low spending" in names
    assert "Low income · High spending" in names
    assert len(set(names)) == 5


def test_report_shows_every_segment(mall: MallRun, segments: pl.DataFrame) -> None:
    html = (mall.root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    for name in segments["name"]:
        assert name in html


# --- the credit-card example (examples/cc_general.yaml) on the shared file ------------------------

CC_CSV = REPO.parent / "shared" / "data" / "cc_general" / "CC GENERAL.csv"
CC_CONFIG = REPO / "examples" / "cc_general.yaml"
LEVELS = ("Very low", "Low", "Mid", "High", "Very high")


@dataclass(frozen=True)
class CreditCardRun:
    run: MallRun
    config: dict[str, Any]


@pytest.fixture(scope="module")
def cc(tmp_path_factory: pytest.TempPathFactory) -> CreditCardRun:
    if not CC_CSV.is_file():
        pytest.skip(f"{CC_CSV} is absent")
    root = tmp_path_factory.mktemp("cc")
    config_text = CC_CONFIG.read_text(encoding="utf-8")
    (root / "examples").mkdir()
    (root / "examples" / "cc_general.yaml").write_text(config_text, encoding="utf-8")
    config = yaml.safe_load(config_text)
    raw = root / config["data"]["path"]
    raw.parent.mkdir(parents=True)
    shutil.copy(CC_CSV, raw)  # as .ci/run does: no download
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(main, ["run", "--config", "examples/cc_general.yaml"])
    return CreditCardRun(run=MallRun(root=root, result=result), config=config)


@pytest.fixture(scope="module")
def cc_segments(cc: CreditCardRun) -> pl.DataFrame:
    return pl.read_csv(cc.run.folder / "segments.csv")


def test_cc_run_succeeds_on_the_pinned_file(cc: CreditCardRun) -> None:
    assert cc.run.result.exit_code == 0, cc.run.result.output
    data = cc.run.read_json("manifest.json")["inputs"]["data"]
    assert data["pinned"] is True
    assert data["sha256"] == cc.config["data"]["sha256"]
    summary = cc.run.read_json("prepare_summary.json")
    assert (summary["rows_valid"], summary["rows_rejected"]) == (8950, 0)
    assert summary["missing"]["minimum_payments"]["missing"] == 313
    assert summary["missing"]["credit_limit"]["missing"] == 1


def test_cc_five_segments_are_chosen_by_silhouette(cc: CreditCardRun) -> None:
    selection = cc.run.read_json("k_selection.json")
    assert selection["chosen_k"] == 5
    assert selection["choices"]["silhouette"] == 5
    (five,) = [c for c in selection["candidates"] if c["k"] == 5]
    assert five["silhouette"] == pytest.approx(0.293, abs=2e-3)


def test_cc_every_k_passed_over_has_a_segment_below_the_share(cc: CreditCardRun) -> None:
    selection = cc.run.read_json("k_selection.json")
    share = cc.config["select_k"]["min_segment_share"]
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
    cc: CreditCardRun, cc_segments: pl.DataFrame
) -> None:
    by_name = {column["name"]: column for column in cc.config["columns"]}
    labels = [by_name[feature]["label"] for feature in cc.config["features"]]
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


def test_cc_report_shows_every_segment(cc: CreditCardRun, cc_segments: pl.DataFrame) -> None:
    report = cc.run.root / "reports" / "latest" / "index.html"
    html = report.read_text(encoding="utf-8")
    assert cc.config["report"]["title"] in html
    for name in cc_segments["name"]:
        assert name in html


# --- the CDNOW purchase log (examples/cdnow.yaml) on the shared file ------------------------------

CDNOW_TXT = REPO.parent / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
CDNOW_CONFIG = REPO / "examples" / "cdnow.yaml"


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> MallRun:
    if not CDNOW_TXT.is_file():
        pytest.skip(f"{CDNOW_TXT} is absent")
    root = tmp_path_factory.mktemp("cdnow")
    config_text = CDNOW_CONFIG.read_text(encoding="utf-8")
    (root / "examples").mkdir()
    (root / "examples" / "cdnow.yaml").write_text(config_text, encoding="utf-8")
    raw = root / yaml.safe_load(config_text)["data"]["path"]
    raw.parent.mkdir(parents=True)
    shutil.copy(CDNOW_TXT, raw)  # no download
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(main, ["run", "--config", "examples/cdnow.yaml"])
    return MallRun(root=root, result=result)


def test_cdnow_run_succeeds_on_the_pinned_file(cdnow: MallRun) -> None:
    assert cdnow.result.exit_code == 0, cdnow.result.output
    assert cdnow.read_json("manifest.json")["inputs"]["data"]["pinned"] is True


def test_cdnow_has_23570_customers_as_of_1998_07_01(cdnow: MallRun) -> None:
    summary = cdnow.read_json("customers_summary.json")
    assert summary["customers"] == 23_570
    assert summary["rows"] == 69_659
    assert summary["as_of"] == "1998-07-01"
    assert (summary["first_purchase"], summary["last_purchase"]) == ("1997-01-01", "1998-06-30")
    assert cdnow.read_json("prepare_summary.json")["rows_valid"] == 23_570


def test_cdnow_report_exists(cdnow: MallRun) -> None:
    html = (cdnow.root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "CDNOW customers: RFM segments" in html
    segments = pl.read_csv(cdnow.folder / "segments.csv")
    assert segments["size"].sum() == 23_570
    for name in segments["name"]:
        assert name in html
