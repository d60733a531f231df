"""The prepare stage on Spark against the Polars engine, through the Python API (one local
session): how a reason writes a number, the lines of a CSV with blank lines, the order of the
reasons of a row."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession
from pyspark.sql.functions import col

from segmentation.spark.prepare import _python_g, _python_repr


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    # The Python workers run this interpreter, as the pipeline's session has them do.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def seeded_values(seed: int) -> list[float]:
    """Whole numbers, numbers with a few decimals, and magnitudes from 1e-10 to 1e30, both signs."""
    rng = random.Random(seed)
    values = [float(rng.randint(-(10**8), 10**8)) for _ in range(200)]
    values += [round(rng.uniform(-1000, 1000), rng.randint(0, 5)) for _ in range(200)]
    values += [rng.choice((-1, 1)) * 10 ** rng.uniform(-10, 30) for _ in range(200)]
    return values


EDGES = [
    *(0.0, -5.0, 100.5, 0.25, -1.0, 150.0, 1e300, -1e20, 12345678.5, -0.0001, 0.00001),
    *(1e16, 1e15, 9999999.0, 1e7, 1e-7, 1.5e-7, 999999.5, 999995.0, 1 / 3),
    # Java 17's Double.toString writes these with more digits than needed.
    *(1e23, 2e23, 8.41e21, -3.917221042248757e18, 1.7976931348623157e308),
]


def written(spark: SparkSession, values: list[float]) -> list[tuple[float, str, str]]:
    frame = spark.createDataFrame([(v,) for v in values], "v double")
    rows = frame.select("v", _python_repr(col("v")), _python_g(col("v"))).collect()
    return [(float(row[0]), str(row[1]), str(row[2])) for row in rows]


def test_a_value_in_a_reason_is_written_as_python_repr_writes_it(spark: SparkSession) -> None:
    values = EDGES + seeded_values(1)
    wrong = [(v, text, repr(v)) for v, text, _ in written(spark, values) if text != repr(v)]
    assert wrong == []


def test_a_value_under_log1p_is_written_as_python_g_writes_it(spark: SparkSession) -> None:
    values = [*EDGES, *seeded_values(2), -5734605.0, 9782925.0, -999999.5, -983.3005]
    wrong = [(v, text, format(v, "g")) for v, _, text in written(spark, values)]
    assert [w for w in wrong if w[1] != w[2]] == []
