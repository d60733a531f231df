"""Data on a cluster file system is identified through Spark's Hadoop file system, never
downloaded: each file's name, size, modification time and checksum, in sorted order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from segmentation.config import Config, SparkConfig, parse_config
from segmentation.dataset import RawData
from segmentation.errors import DataError
from segmentation.spark.io import remote_data

MALL = Path(__file__).resolve().parents[2] / "config.yaml"
SPARK = SparkConfig(master="local[1]", partitions=2)


def config_for(location: str, sha256: str | None = None) -> Config:
    config = parse_config(MALL.read_text(encoding="utf-8"))
    data = config.data.model_copy(update={"path": location, "url": None, "sha256": sha256})
    return config.model_copy(update={"data": data, "engine": "spark", "spark": SPARK})


def identify(location: str, sha256: str | None = None) -> RawData:
    # The driver's log beside the lake: the session starts once per test process.
    return remote_data(
        config_for(location, sha256), Path(location[7:]).parent.parent / "driver.log"
    )


@pytest.fixture
def parts(tmp_path: Path) -> Path:
    folder = tmp_path / "lake"
    folder.mkdir()
    for name in ("b.csv", "a.csv"):
        (folder / name).write_text("CustomerID,Age\n1,20\n", encoding="utf-8")
    return folder


def test_every_matched_file_is_listed_in_order_and_identified(parts: Path) -> None:
    found = identify(f"file://{parts}/*.csv")
    assert [uri.rsplit("/", 1)[1] for uri in found.uris] == ["a.csv", "b.csv"]
    assert found.files == ()
    assert not found.pinned
    again = identify(f"file://{parts}/*.csv", sha256=found.sha256)
    assert again.sha256 == found.sha256 and again.pinned


def test_a_changed_file_changes_the_identity(parts: Path) -> None:
    before = identify(f"file://{parts}/*.csv").sha256
    (parts / "a.csv").write_text("CustomerID,Age\n1,21\n2,30\n", encoding="utf-8")
    os.utime(parts / "a.csv", (1, 1))
    assert identify(f"file://{parts}/*.csv").sha256 != before


def test_a_pinned_identity_that_differs_is_refused(parts: Path) -> None:
    with pytest.raises(DataError, match=r"data\.sha256 pins"):
        identify(f"file://{parts}/*.csv", sha256="0" * 64)


def test_a_pattern_matching_nothing_is_refused(parts: Path) -> None:
    shutil.rmtree(parts)
    with pytest.raises(DataError, match="matches no file"):
        identify(f"file://{parts}/*.csv")
