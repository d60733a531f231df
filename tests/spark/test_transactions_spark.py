"""The customers stage on Spark: the same table and summary as the Polars engine builds, on the
CDNOW log and on seeded synthetic logs (CSV, whitespace text, Parquet, globs), and the same
refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession

from conftest import ROOT, pinned_data
from segmentation import transactions as polars_engine
from segmentation.config import TransactionsConfig
from segmentation.errors import ConfigError, DataError
from segmentation.spark import transactions as spark_engine

SOURCE = "data/log.csv"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        # As the pipeline's session: the stage must not depend on the session's ANSI setting.
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def config(**keys: Any) -> TransactionsConfig:
    return TransactionsConfig(**{"customer": "customer", "time": "date", **keys})


def spark_build(
    spark: SparkSession,
    files: list[Path],
    whitespace: bool = False,
    as_of: str | None = None,
    **keys: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    frame, summary = spark_engine.build_customers(
        spark, [str(path) for path in files], config(**keys), whitespace, as_of, SOURCE
    )
    return pl.DataFrame(pl.from_arrow(frame.toArrow())), summary


def same_as_polars(
    spark: SparkSession,
    files: list[Path],
    whitespace: bool = False,
    as_of: str | None = None,
    **keys: Any,
) -> pl.DataFrame:
    """The Spark table, checked against the Polars engine's on the same files: the same columns,
    types, rows and summary."""
    expected = polars_engine.build_customers(files, config(**keys), whitespace, as_of, SOURCE)
    built, summary = spark_build(spark, files, whitespace, as_of, **keys)
    assert_frame_equal(built, expected.customers, check_exact=False, rel_tol=1e-12, abs_tol=0)
    assert summary == expected.summary
    return built


def same_refusal(
    spark: SparkSession,
    files: list[Path],
    as_of: str | None = None,
    **keys: Any,
) -> str:
    """The refusal of both engines, word for word."""
    with pytest.raises(DataError) as polars_refusal:
        polars_engine.build_customers(files, config(**keys), False, as_of, SOURCE)
    with pytest.raises(DataError) as spark_refusal:
        spark_build(spark, files, as_of=as_of, **keys)
    assert str(spark_refusal.value) == str(polars_refusal.value)
    return str(spark_refusal.value)


# --- seeded purchase logs -------------------------------------------------------------------------


def purchase_log(seed: int, rows: int = 600, customers: int = 60) -> pl.DataFrame:
    """A log of text columns: orders of one or more lines on 2023's days (dates with and without a
    time of day), about one line in ten a return, a few lines without a customer id."""
    rng = np.random.default_rng(seed)
    order_of_line = np.sort(rng.integers(0, rows // 3, rows))
    order_customer = rng.integers(0, customers, rows // 3)
    order_day = rng.integers(0, 365, rows // 3)
    start = dt.datetime(2023, 1, 1)
    shapes = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
    dates, ids = [], []
    for line, order in enumerate(order_of_line):
        moment = start + dt.timedelta(days=int(order_day[order]), seconds=int(rng.integers(86400)))
        dates.append(moment.strftime(shapes[line % 3]))
        ids.append("" if rng.random() < 0.02 else f"C{order_customer[order]:03d}")
    quantity = rng.integers(1, 6, rows) * np.where(rng.random(rows) < 0.1, -1, 1)
    quantity[rng.random(rows) < 0.05] = 0
    price = rng.integers(50, 5000, rows) / 100
    return pl.DataFrame(
        {
            "customer": ids,
            "date": dates,
            "order": [f"o{order}" for order in order_of_line],
            "product": [f"P{value}" for value in rng.integers(0, 5, rows)],
            "quantity": [str(value) for value in quantity],
            "unit_price": [f"{value:.2f}" for value in price],
            "amount": [f"{q * p:.2f}" for q, p in zip(quantity, price, strict=True)],
        }
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The same seeded log as one CSV, three CSV parts, whitespace text (no blank id), Parquet
    parts of text columns, and Parquet with typed columns."""
    folder = tmp_path_factory.mktemp("logs")
    frame = purchase_log(seed=7)
    frame.write_csv(folder / "log.csv")
    (folder / "parts").mkdir()
    (folder / "typed").mkdir()
    for index, start in enumerate((0, 200, 450)):
        part = frame.slice(start, (200, 250, 150)[index])
        part.write_csv(folder / "parts" / f"part-{index}.csv")
        part.write_parquet(folder / "parts" / f"part-{index}.parquet")
        part.with_columns(
            pl.col("date").str.to_datetime(),
            pl.col("amount").cast(pl.Float64),
            pl.col("quantity").cast(pl.Int64),
        ).write_parquet(folder / "typed" / f"part-{index}.parquet")
    # Whitespace text: the day only (a time of day would be a field of its own), fields apart by
    # runs of spaces or tabs, leading and trailing blanks.
    gaps = ("  ", " \t ", " ")
    lines = [" customer date order amount"] + [
        " " + gaps[index % 3].join([row[0], row[1][:10], row[2], row[6]]) + " "
        for index, row in enumerate(frame.filter(pl.col("customer") != "").iter_rows())
    ]
    (folder / "log.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return {
        "csv": [folder / "log.csv"],
        "csv parts": sorted((folder / "parts").glob("*.csv")),
        "parquet parts": sorted((folder / "parts").glob("*.parquet")),
        "typed parquet": sorted((folder / "typed").glob("*.parquet")),
        "whitespace": [folder / "log.txt"],
    }


def test_cdnow_gives_the_polars_table_exactly(spark: SparkSession) -> None:
    cdnow = pinned_data(ROOT / "examples" / "cdnow.yaml", "cdnow/CDNOW_master.txt")
    keys = {"customer": "customer_id", "time_format": "%Y%m%d", "amount": "dollar_value"}
    expected = polars_engine.build_customers([cdnow], config(**keys), True, None, SOURCE)
    built, summary = spark_build(spark, [cdnow], whitespace=True, **keys)
    assert built.equals(expected.customers)
    assert built.schema == expected.customers.schema
    assert summary == expected.summary
    assert summary["customers"] == 23570


@pytest.mark.parametrize(
    "keys",
    [
        {"amount": "amount", "order": "order"},
        {"amount": "amount"},
        {"amount": "amount", "order": "order", "returns": "drop"},
        {"amount": "amount", "returns": "drop"},
        {"quantity": "quantity", "unit_price": "unit_price", "order": "order"},
        {"amount": "amount", "where": "amount >= 20 AND product <> 'P1'"},
        {"quantity": "quantity", "unit_price": "unit_price", "where": "quantity <> 0"},
    ],
    ids=[
        "orders",
        "customer-days",
        "orders, returns dropped",
        "customer-days, returns dropped",
        "quantity x unit price",
        "a numeric where on text",
        "quantity x unit price, where",
    ],
)
def test_a_csv_log_gives_the_polars_table(
    spark: SparkSession, logs: dict[str, list[Path]], keys: dict[str, Any]
) -> None:
    built = same_as_polars(spark, logs["csv"], **keys)
    assert built.height > 40


def test_an_explicit_as_of(spark: SparkSession, logs: dict[str, list[Path]]) -> None:
    same_as_polars(spark, logs["csv"], as_of="2024-03-01", amount="amount", order="order")


@pytest.mark.parametrize("layout", ["csv parts", "parquet parts", "typed parquet"])
def test_files_of_a_glob_give_the_polars_table(
    spark: SparkSession, logs: dict[str, list[Path]], layout: str
) -> None:
    same_as_polars(spark, logs[layout], amount="amount", order="order", where="amount > 2")


def test_whitespace_text_gives_the_polars_table(
    spark: SparkSession, logs: dict[str, list[Path]]
) -> None:
    # Runs of spaces and tabs, trailing spaces, CRLF line ends; the time in its own field or not.
    same_as_polars(spark, logs["whitespace"], whitespace=True, amount="amount", order="order")


def test_the_table_does_not_depend_on_how_the_log_is_split(
    spark: SparkSession, logs: dict[str, list[Path]], tmp_path: Path
) -> None:
    # One file or three, read in another order: other partitions, other orders of the sums; the
    # money is summed as decimals, so every value is the same to the last bit.
    whole, _ = spark_build(spark, logs["csv"], amount="amount", order="order")
    parts, _ = spark_build(spark, logs["csv parts"][::-1], amount="amount", order="order")
    assert parts.equals(whole)
    # Cents that no double holds exactly: 0.1 + 0.2 is 0.3 however it is added.
    totals: dict[str, Decimal] = {}
    for customer, amount in (
        pl.read_csv(logs["csv"][0], infer_schema=False).select("customer", "amount").iter_rows()
    ):
        if customer:
            totals[customer] = totals.get(customer, Decimal(0)) + Decimal(amount)
    for customer, monetary in whole.select("customer_id", "monetary").iter_rows():
        assert monetary == float(totals[customer])


def test_two_runs_write_the_same_parquet_bytes(
    spark: SparkSession, logs: dict[str, list[Path]], tmp_path: Path
) -> None:
    written = []
    for run in ("one", "two"):
        frame, _ = spark_engine.build_customers(
            spark,
            [str(path) for path in logs["csv parts"]],
            config(amount="amount"),
            False,
            None,
            SOURCE,
        )
        frame.coalesce(1).write.parquet(str(tmp_path / run))
        (part,) = (tmp_path / run).glob("part-*.parquet")
        written.append(part.read_bytes())
    assert written[0] == written[1]


ISO_TIMES = [
    "2024-01-01",
    "2024-01-01 10:00",
    "2024-01-01 10:00:00",
    "2024-01-01T23:59:59.123456",
    "2024/01/02",
    "2024-1-3",
    "2024.01.04",
    "2024-01-05 1:02:03",
]


def test_iso_times_are_read_as_polars_reads_them(spark: SparkSession, tmp_path: Path) -> None:
    rows = [f"C{index % 3},{time},{index + 1}" for index, time in enumerate(ISO_TIMES)]
    path = tmp_path / "log.csv"
    path.write_text("customer,date,amount\n" + "\n".join(rows) + "\n", encoding="utf-8")
    same_as_polars(spark, [path], amount="amount")


@pytest.mark.parametrize(
    ("time_format", "times"),
    [
        ("%d/%m/%Y %H:%M", ["01/12/2010 08:26", "1/12/2010 8:26", "13/12/2010 23:59"]),
        ("%m/%d/%Y", ["12/01/2010", "1/2/2011", "12/31/2010"]),
        ("%d %b %y", ["01 Dec 97", "1 jan 98", "31 DEC 69"]),
        ("%Y%m%d", ["19970101", "19970330", "19980630"]),
        ("%F %T", ["2024-01-01 00:00:00", "2024-02-29 12:30:00", "2024-03-01 23:59:59"]),
        (
            "%d.%m.%Y um %H:%M Uhr (100%%)",
            ["01.12.2010 um 08:26 Uhr (100%)", "2.1.2011 um 8:05 Uhr (100%)"],
        ),
        ("%Y-%m-%dT%H:%M:%S%z", ["2024-01-01T10:00:00+0200", "2024-01-02T00:30:00+02:00"]),
    ],
)
def test_a_time_format_is_read_as_polars_reads_it(
    spark: SparkSession, tmp_path: Path, time_format: str, times: list[str]
) -> None:
    rows = [f"C{index},{time},{index + 1}" for index, time in enumerate(times)]
    path = tmp_path / "log.csv"
    path.write_text("customer,date,amount\n" + "\n".join(rows) + "\n", encoding="utf-8")
    same_as_polars(spark, [path], amount="amount", time_format=time_format)


def test_strftime_formats_as_spark_patterns() -> None:
    assert spark_engine._spark_pattern("%Y%m%d") == ("yyyyMMdd", False)
    assert spark_engine._spark_pattern("%d/%m/%Y %H:%M") == ("d'/'M'/'y' 'H':'m", False)
    assert spark_engine._spark_pattern("%d %b %y, 100%%") == ("d' 'MMM' 'yy', 100%'", True)
    with pytest.raises(ConfigError, match=r"%a cannot be read on Spark") as caught:
        spark_engine._spark_pattern("%a %d %m %Y")
    assert caught.value.key == "transactions.time_format"


def test_file_names_of_uris() -> None:
    assert spark_engine._file_name("s3a://bucket/logs/part-0.parquet") == "part-0.parquet"
    assert spark_engine._file_name("hdfs://node:8020/logs/a.csv") == "a.csv"
    assert spark_engine._file_name("file:///tmp/logs/b.csv") == "b.csv"


# --- refusals, word for word as the Polars engine's -----------------------------------------------

LOG_ROWS = [
    f"C{i:03d},2024-{1 + (i * 7 + j * 3) % 12:02d}-{1 + (i + j * 5) % 28:02d},{(i % 5 + 1) * 10 + j}"
    for i in range(30)
    for j in range(1 + i % 4)
]


def write_log(path: Path, rows: list[str], header: str = "customer,date,amount") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_times_not_in_their_format_are_named_by_line(spark: SparkSession, tmp_path: Path) -> None:
    path = write_log(tmp_path / "log.csv", [*LOG_ROWS, "C001,2024-13-45,10", "C002,yesterday,5"])
    message = same_refusal(spark, [path], amount="amount")
    assert "line 75 '2024-13-45'; line 76 'yesterday'" in message
    message = same_refusal(spark, [path], amount="amount", time_format="%d/%m/%Y")
    assert "75 time value(s) in date not in the format %d/%m/%Y: line 2 '2024-01-01'" in message


def test_problems_are_named_in_the_first_file_holding_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    first = write_log(tmp_path / "a.csv", LOG_ROWS)
    second = write_log(tmp_path / "b.csv", [*LOG_ROWS[:5], "C001,2024-03-05,ten", *LOG_ROWS[5:]])
    message = same_refusal(spark, [first, second], amount="amount")
    assert message.endswith(
        f"line 7 'ten' (in {second}); fix those rows, or filter them out with transactions.where"
    )


def test_problem_lines_are_counted_across_partitions(spark: SparkSession, tmp_path: Path) -> None:
    # A file read in many partitions: each row's line is its place in its partition plus the rows
    # of the partitions before it.
    rows = LOG_ROWS * 20
    rows[700:700] = ["C001,2024-03-05,ten"]
    rows.append("C002,2024-03-05,abc")
    path = write_log(tmp_path / "log.csv", rows)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")
    try:
        assert (
            spark_engine._read(
                spark, spark_engine._layout(spark, [str(path)], False), [str(path)]
            ).rdd.getNumPartitions()
            > 10
        )
        message = same_refusal(spark, [path], amount="amount")
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert f"line 702 'ten'; line {len(rows) + 1} 'abc'" in message


def test_an_amount_in_parquet_is_named_by_row(spark: SparkSession, tmp_path: Path) -> None:
    text = "\n".join(["customer,date,amount", *LOG_ROWS, "X,2024-01-01,abc"]) + "\n"
    path = tmp_path / "log.parquet"
    pl.read_csv(text.encode(), infer_schema=False).write_parquet(path)
    assert "row 74 'abc'" in same_refusal(spark, [path], amount="amount")


@pytest.mark.parametrize(
    ("rows", "keys", "as_of", "ending"),
    [
        (LOG_ROWS, {"where": "amount > 1000000"}, None, "no purchase left (0 row(s)"),
        (["," + row.split(",", 1)[1] for row in LOG_ROWS], {}, None, "73 without a customer id"),
        (["C001," + row.split(",", 1)[1] for row in LOG_ROWS], {}, None, "by one customer"),
        (LOG_ROWS, {}, "2024-06-01", "24 customer(s) bought after data.as_of 2024-06-01"),
        (LOG_ROWS, {"quantity": "qty", "unit_price": "amount"}, None, "no column 'qty'"),
    ],
    ids=["no rows after where", "no customer id", "one customer", "after as_of", "no column"],
)
def test_an_unusable_log_is_refused_as_polars_refuses_it(
    spark: SparkSession,
    tmp_path: Path,
    rows: list[str],
    keys: dict[str, Any],
    as_of: str | None,
    ending: str,
) -> None:
    path = write_log(tmp_path / "log.csv", rows)
    keys = keys if "quantity" in keys else {"amount": "amount", **keys}
    assert ending in same_refusal(spark, [path], as_of=as_of, **keys)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("amount >", r"is not a SQL expression \(\[PARSE_SYNTAX_ERROR\]"),
        ("Quantity <> 0", r"cannot filter the log \(\[UNRESOLVED_COLUMN.*the log has customer"),
        ("customer > 5", r"cannot filter the log \(\[CAST_INVALID_INPUT\] The value 'C000'"),
    ],
)
def test_a_where_that_cannot_filter_is_a_config_error(
    spark: SparkSession, tmp_path: Path, where: str, message: str
) -> None:
    path = write_log(tmp_path / "log.csv", LOG_ROWS)
    with pytest.raises(ConfigError, match=message) as caught:
        spark_build(spark, [path], amount="amount", where=where)
    assert caught.value.key == "transactions.where"


# --- files on another file system: columns read by Spark -----------------------------------------


def test_a_log_elsewhere_is_read_by_spark_alone(
    spark: SparkSession, logs: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, _ = spark_build(spark, logs["csv parts"], amount="amount", order="order")
    monkeypatch.setattr(spark_engine, "_local_path", lambda file: None)
    for layout in ("csv parts", "parquet parts"):
        built, _ = spark_build(spark, logs[layout], amount="amount", order="order")
        assert built.equals(expected)
    built, _ = spark_build(spark, logs["whitespace"], True, amount="amount", order="order")
    assert built.height > 40


def test_files_elsewhere_with_other_columns_are_refused(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_engine, "_local_path", lambda file: None)
    frame = pl.read_csv(("\n".join(["customer,date,amount", *LOG_ROWS]) + "\n").encode())
    frame.head(40).write_parquet(tmp_path / "part-1.parquet")
    frame.tail(33).rename({"amount": "value"}).write_parquet(tmp_path / "part-2.parquet")
    files = [tmp_path / "part-1.parquet", tmp_path / "part-2.parquet"]
    with pytest.raises(DataError, match=r"part-2\.parquet: its columns \(customer, date, value\)"):
        spark_build(spark, files, amount="amount")
    write_log(tmp_path / "a.csv", LOG_ROWS)
    write_log(tmp_path / "b.csv", LOG_ROWS, header="customer,date,value")
    with pytest.raises(DataError, match=r"not a readable log \(.*b\.csv.*CSV header"):
        spark_build(spark, [tmp_path / "a.csv", tmp_path / "b.csv"], amount="amount")
