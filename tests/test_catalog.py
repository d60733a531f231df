"""The catalog: datasets by name, and the frames a run saved read back without reading them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from segmentation.catalog import Catalog


def frame(values: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [str(v) for v in values], "feature_x": values})


def test_a_saved_frame_is_loaded_without_reading_the_file(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    saved = frame([1, 2, 3])
    catalog.save("prepared", saved)
    assert catalog.load("prepared") is saved
    assert Catalog(tmp_path).load("prepared") is saved  # another stage's catalog of the folder


def test_a_file_replaced_since_it_was_saved_is_read(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.save("prepared", frame([1, 2, 3]))
    replacement = tmp_path / "other.parquet"
    frame([7, 8]).write_parquet(replacement)
    replacement.replace(catalog.path("prepared"))  # as a cached result is linked in
    assert_frame_equal(catalog.load("prepared"), frame([7, 8]))


def test_saving_into_another_folder_forgets_the_first_folders_frames(tmp_path: Path) -> None:
    first, second = Catalog(tmp_path / "a"), Catalog(tmp_path / "b")
    first.path("prepared").parent.mkdir()
    second.path("prepared").parent.mkdir()
    kept = frame([1, 2])
    first.save("prepared", kept)
    second.save("assignments", frame([3]))
    loaded = first.load("prepared")
    assert loaded is not kept
    assert_frame_equal(loaded, kept)
