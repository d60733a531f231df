"""Every dataset a stage reads or writes, by name: the one place that knows files and formats.

Stages ask the catalog for "prepared" or "k_selection" rather than building paths and reading
files by hand, so a change of storage touches this module, not every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segmentation import artifacts

Format = Literal["parquet", "csv", "json"]

PROFILES = "profiles.csv"
CUSTOMERS = "customers.parquet"
CUSTOMERS_SUMMARY = "customers_summary.json"
CHART_SAMPLE = "chart_sample.parquet"
"""On Spark: the customers kept for the charts (the driver never holds them all)."""


@dataclass(frozen=True)
class Dataset:
    path: str
    """Relative to the version folder."""
    format: Format


DATASETS: dict[str, Dataset] = {
    "customers": Dataset(CUSTOMERS, "parquet"),
    "customers_summary": Dataset(CUSTOMERS_SUMMARY, "json"),
    "prepared": Dataset(artifacts.PREPARED, "parquet"),
    "prepare_summary": Dataset(artifacts.PREPARE_SUMMARY, "json"),
    "rejects": Dataset(artifacts.REJECTS, "csv"),
    "k_selection": Dataset(artifacts.K_SELECTION, "json"),
    "segments": Dataset(artifacts.SEGMENTS, "csv"),
    "profiles": Dataset(PROFILES, "csv"),
    "assignments": Dataset(artifacts.ASSIGNMENTS_PARQUET, "parquet"),
    "assignments_csv": Dataset(artifacts.ASSIGNMENTS_CSV, "csv"),
    "model": Dataset(artifacts.MODEL, "json"),
    "chart_sample": Dataset(CHART_SAMPLE, "parquet"),
    "chart_index": Dataset(f"{artifacts.CHARTS}/index.json", "json"),
}
TEXT_COLUMNS = (
    "customer_id",
    "name",
    "segment_name",
    "category",
    "column",
    "action",
    "traits",
    "reason",
)
"""Columns read as text from CSV whatever they hold (ids like 00042 keep their zeros)."""


_SAVED_FRAMES: dict[Path, tuple[tuple[int, int, int], Any]] = {}
"""The Parquet frames this process saved, by path, with the file's (inode, size, mtime) just after.
The stages of one run read each other's tables in the same process: a load of a file still as it
was saved returns the frame instead of reading it back (at 1M customers three reads of the
prepared table took 0.3 s). Polars frames are immutable, so sharing one is safe; a file replaced
since (a cached result linked in, another run) no longer matches and is read. Only the frames of
one version folder are kept: saving into another one forgets them."""


def _identity(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


@dataclass(frozen=True)
class Catalog:
    """The datasets of one version folder."""

    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / DATASETS[name].path

    def load(self, name: str) -> Any:
        import polars as pl

        dataset, path = DATASETS[name], self.path(name)
        if dataset.format == "json":
            return artifacts.read_json(path)
        if dataset.format == "parquet":
            # The Spark engine writes a folder of parts where the Polars engine writes one file.
            if path.is_dir():
                return pl.read_parquet(path / "*.parquet")
            saved = _SAVED_FRAMES.get(path)
            if saved is not None and saved[0] == _identity(path):
                return saved[1]
            return pl.read_parquet(path)
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {column: pl.String for column in TEXT_COLUMNS if column in header}
        return pl.read_csv(path, schema_overrides=overrides, infer_schema_length=None)

    def save(self, name: str, data: Any) -> None:
        dataset, path = DATASETS[name], self.path(name)
        if dataset.format == "json":
            artifacts.write_json(path, data)
        elif dataset.format == "parquet":
            artifacts.write_parquet(path, data)
            for other in [kept for kept in _SAVED_FRAMES if kept.parent != self.folder]:
                del _SAVED_FRAMES[other]
            _SAVED_FRAMES[path] = (_identity(path), data)
        else:
            artifacts.write_csv(path, data)
