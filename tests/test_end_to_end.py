"""The whole pipeline on the real Mall Customers file, with the repository's default config."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result

from segmentation.cli import main

REPO = Path(__file__).resolve().parent.parent
MALL_CSV = REPO.parent / "shared" / "data" / "Mall_Customers.csv"

pytestmark = pytest.mark.skipif(not MALL_CSV.is_file(), reason=f"{MALL_CSV} is absent")


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
