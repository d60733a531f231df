"""Where the Spark engine reads and writes: URIs for Spark, and outputs whose bytes repeat.

Spark names its part files with a random job id and adds marker and checksum files; the project
renames the parts `part-00000.parquet`, `part-00001.parquet`, ... in Spark's order and removes the
rest, so that the same partitions give the same folder byte for byte.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PART_GLOB = "part-*"


def uri(path: Path | str) -> str:
    """A path as Spark reads it: URIs (s3a://, hdfs://, file://) as given, local paths absolute."""
    text = str(path)
    if "://" in text:
        return text
    return Path(text).absolute().as_uri()


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def _finish_parts(written: Path, target: Path, suffix: str) -> list[Path]:
    """Spark's part files renamed in order, everything else (markers, checksums) removed."""
    parts = sorted(written.glob(PART_GLOB))
    for path in written.iterdir():
        if path not in parts:
            path.unlink()
    renamed = []
    for index, part in enumerate(parts):
        final = written / f"part-{index:05d}{suffix}"
        part.rename(final)
        renamed.append(final)
    if target.exists():
        shutil.rmtree(target)
    written.rename(target)
    return [target / path.name for path in renamed]


def write_parquet_parts(frame: DataFrame, target: Path) -> None:
    """The frame as a folder of Parquet parts (one per partition), written by the executors."""
    written = target.with_name(f".{target.name}.writing")
    shutil.rmtree(written, ignore_errors=True)
    frame.write.mode("overwrite").option("compression", "zstd").parquet(uri(written))
    _finish_parts(written, target, ".parquet")


def write_csv_file(frame: DataFrame, target: Path) -> None:
    """The frame as one CSV file with a header (for small outputs: it goes through one task)."""
    written = target.with_name(f".{target.name}.writing")
    shutil.rmtree(written, ignore_errors=True)
    (
        frame.coalesce(1)
        .write.mode("overwrite")
        .option("header", "true")
        .option("lineSep", "\n")
        .option("emptyValue", "")
        .csv(uri(written))
    )
    parts = _finish_parts(written, written.with_name(f".{target.name}.done"), ".csv")
    if not parts:
        raise DataError(f"{target}: Spark wrote no CSV part")
    parts[0].replace(target)
    shutil.rmtree(parts[0].parent)


def read_parquet_parts(spark: SparkSession, folder: Path) -> DataFrame:
    return spark.read.parquet(uri(folder))


def first_line(spark: SparkSession, location: str) -> str:
    """The first line of a text file, locally or through Spark for remote files."""
    if is_local(location):
        from segmentation.reading import header_line

        return header_line(local_path(location))
    row = spark.read.text(location).first()
    return "" if row is None else str(row[0]).lstrip("\ufeff").rstrip("\r")


def files_as_uris(files: Sequence[Path | str]) -> list[str]:
    return [uri(path) for path in files]
