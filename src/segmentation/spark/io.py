"""Where the Spark engine reads and writes: URIs for Spark, and outputs whose bytes repeat.

Parquet parts are written by the executors with pyarrow, one per partition, named by the
partition; a CSV goes through Spark's writer in one task, its part renamed and Spark's marker and
checksum files removed: the same partitions give the same folder byte for byte.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.config import Config
from segmentation.dataset import RawData
from segmentation.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa
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
    """The frame as a folder of Parquet parts, `part-<partition>.parquet`, each written by the
    executor that holds the partition, with pyarrow and fixed settings. (Spark's own writer lists
    each column's encodings in an order that changes from one JVM to the next, so equal data
    would not give equal bytes.) Empty partitions write no part."""
    written = target.with_name(f".{target.name}.writing")
    shutil.rmtree(written, ignore_errors=True)
    written.mkdir(parents=True)
    folder = str(written)

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        context = TaskContext.get()
        part = 0 if context is None else context.partitionId()
        collected = list(batches)
        rows = sum(batch.num_rows for batch in collected)
        if rows:
            table = pa.Table.from_batches(collected)
            final = f"{folder}/part-{part:05d}.parquet"
            # A retried task rewrites its part: write beside it, then rename into place.
            temporary = f"{final}.{context.attemptNumber() if context else 0}.tmp"
            pq.write_table(
                table, temporary, compression="zstd", compression_level=3, write_statistics=True
            )
            Path(temporary).replace(final)
        yield pa.RecordBatch.from_pydict(
            {"part": [part], "rows": [rows]},
            schema=pa.schema([("part", pa.int32()), ("rows", pa.int64())]),
        )

    frame.mapInArrow(write_partition, "part int, rows long").collect()
    for leftover in written.glob("*.tmp"):
        leftover.unlink()  # a failed attempt's file, replaced by its retry
    if target.exists():
        shutil.rmtree(target)
    written.rename(target)


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


def data_uris(raw: RawData) -> list[str]:
    """The URIs Spark reads a run's data from."""
    return list(raw.uris) or files_as_uris(raw.files)


def remote_data(config: Config, driver_log: Path) -> RawData:
    """Data on a cluster file system, identified without reading it: the SHA-256 of each file's
    URI, size, modification time and the file system's own checksum (when it keeps one), in
    sorted order. `data.sha256` pins that identity."""
    import hashlib
    from pathlib import PurePosixPath

    from segmentation.spark.session import spark_session

    spark = spark_session(config.spark, driver_log)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    pattern = jvm.org.apache.hadoop.fs.Path(config.data.path)
    system = pattern.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    found = system.globStatus(pattern) or []
    statuses = sorted((s for s in found if s.isFile()), key=lambda s: str(s.getPath().toString()))
    if not statuses:
        raise DataError(
            f"{config.data.path}: data.path matches no file; check the URI and the credentials "
            "in spark.conf"
        )
    lines = []
    for status in statuses:
        checksum = system.getFileChecksum(status.getPath())
        lines.append(
            f"{status.getPath().getName()}\0{status.getLen()}\0{status.getModificationTime()}"
            f"\0{'' if checksum is None else checksum.toString()}\n"
        )
    identity = hashlib.sha256("".join(lines).encode()).hexdigest()
    expected = config.data.sha256
    if expected is not None and identity != expected:
        raise DataError(
            f"{config.data.path}: the files' identity (names, sizes, modification times) is "
            f"{identity} but data.sha256 pins {expected}; use the pinned files, or set "
            "data.sha256: null"
        )
    uris = tuple(str(s.getPath().toString()) for s in statuses)
    return RawData(
        path=Path(str(PurePosixPath(config.data.path))),
        sha256=identity,
        pinned=expected is not None,
        uris=uris,
    )
