"""Stage 0 on Spark, customers: a purchase log aggregated into one row per customer, as
`segmentation.transactions` builds it with Polars, for logs on a cluster's storage.

The log is read and aggregated by Spark (one groupBy over it); the driver receives only totals:
row counts, problem counts, the first and last purchase dates.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import AnalysisException, ParseException, PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from segmentation import transactions as polars_engine
from segmentation.config import TransactionsConfig
from segmentation.errors import ConfigError, DataError
from segmentation.reading import detect_separator, header_line
from segmentation.schema import ID

# Internal column names of the normalised log.
CUSTOMER, DAY, ORDER, AMOUNT, MONEY = "_customer", "_day", "_order", "_amount", "_money"
TIME_TEXT, AMOUNT_TEXT = polars_engine.TIME_TEXT, polars_engine.AMOUNT_TEXT
BAD_TIME, BAD_AMOUNT = polars_engine.BAD_TIME, polars_engine.BAD_AMOUNT
ROW_ID, ROW = "_row_id", "_row"

MONEY_TYPE = st.DecimalType(38, 9)
"""Money while it is summed. A sum of doubles depends on the order of its terms, and Spark adds
partial sums in whatever order its tasks finish; a decimal sum is exact, so every run gives the
same bytes. Nine places, as the table is rounded to; 29 digits before the point."""
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|(?i)^[+-]?(inf|infinity|nan)$"
"""Text that Polars reads as a Float64 (Spark's own cast also takes `1d`, `0x1p3`)."""
WHITESPACE = r"(?U)\s+"
"""Unicode white space, as Polars strips and splits it."""
ISO = (
    r"^(\d{4})([-/.])(\d{1,2})\2(\d{1,2})"
    r"(?:[T ](\d{1,2}):([0-5]\d)(?::[0-5]\d(?:\.\d+)?)?(Z|([+-])(\d{2}):?(\d{2}))?)?$"
)
"""A date with an optional time of day and UTC offset: year, month, day (`-`, `/` or `.`)."""
WHERE_FAILURES = frozenset({"CAST_INVALID_INPUT", "CAST_OVERFLOW", "DIVIDE_BY_ZERO"})
"""Errors raised while rows are filtered: the log's own values are read with try_cast, so these
come from `transactions.where` (under ANSI SQL, `customer > 5` casts every customer id)."""

# strftime directives (Polars, chrono) as Spark datetime patterns: (variable width, fixed width).
# Fixed widths only where two numbers touch (`%Y%m%d`): otherwise `%d` reads `1` or `01`, as in
# chrono.
NUMERIC = {
    "Y": ("y", "yyyy"),
    "m": ("M", "MM"),
    "d": ("d", "dd"),
    "e": ("d", "dd"),
    "H": ("H", "HH"),
    "I": ("h", "hh"),
    "M": ("m", "mm"),
    "S": ("s", "ss"),
    "j": ("D", "DDD"),
    "y": ("yy", "yy"),
}
TEXT = {"b": "MMM", "h": "MMM", "B": "MMMM", "p": "a", "z": "[XXX][XX]", ":z": "XXX"}
FRACTION = {".": "[.SSSSSSSSS]", ".3": ".SSS", ".6": ".SSSSSS", ".9": ".SSSSSSSSS", "": "SSSSSSSSS"}
FRACTION |= {"3": "SSS", "6": "SSSSSS", "9": "SSSSSSSSS"}
COMPOUND = {"F": "%Y-%m-%d", "T": "%H:%M:%S", "R": "%H:%M", "D": "%m/%d/%y"}
DIRECTIVE = re.compile(r"%(\.\d?|\d|:)?([A-Za-z%])")


@dataclass(frozen=True)
class _Log:
    """Where the log is and how its files are laid out."""

    given: tuple[str, ...]
    """The files as the caller named them (in messages)."""
    paths: tuple[str, ...]
    """The same files as Spark reads them (a local file as a file: URI)."""
    headers: tuple[str, ...]
    parquet: bool
    whitespace: bool
    separator: str
    local: bool
    """Every file is on this machine: their headers were compared here."""


def _local_path(file: str) -> Path | None:
    """The file on this machine, or None for a URI of another file system (or a path that is not
    here: Spark resolves it against its default file system)."""
    parsed = urlparse(file)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if len(parsed.scheme) <= 1 and Path(file).exists():  # a path (C: is a Windows drive)
        return Path(file)
    return None


def _file_name(file: str) -> str:
    local = _local_path(file)
    return local.name if local is not None else PurePosixPath(urlparse(file).path).name


def _first_line(spark: SparkSession, file: str, local: Path | None) -> str:
    """A text file's first line (no BOM, no line ending): read here, or by Spark from a URI."""
    if local is not None:
        return header_line(local)
    rows = spark.read.text(file).limit(1).collect()
    return str(rows[0][0]).removeprefix("\ufeff") if rows else ""


def _parquet_headers(
    spark: SparkSession, given: Sequence[str], paths: Sequence[str]
) -> tuple[str, ...]:
    """The columns of Parquet files on another file system, the same in every file."""
    first = tuple(spark.read.parquet(paths[0]).columns)
    for name, path in zip(given[1:], paths[1:], strict=True):
        other = tuple(spark.read.parquet(path).columns)
        if other != first:
            raise DataError(
                f"{name}: its columns ({', '.join(other)}) differ from "
                f"{_file_name(given[0])}'s ({', '.join(first)}); every file of data.path "
                "must have the same columns"
            )
    return first


def _layout(spark: SparkSession, files: Sequence[str], whitespace: bool) -> _Log:
    """The log's files and columns, the same in every file: compared here when the files are on
    this machine (as the Polars engine does); for a CSV elsewhere, Spark compares each file's
    header with the first's as it reads it."""
    here = [_local_path(file) for file in files]
    local = all(path is not None for path in here)
    paths = tuple(
        f"file://{path.absolute()}" if path is not None else file
        for path, file in zip(here, files, strict=True)
    )
    parquet = PurePosixPath(urlparse(files[0]).path).suffix.lower() == ".parquet"
    separator = ","
    try:
        if local:
            headers = polars_engine._log_headers([path for path in here if path], whitespace)
        elif parquet:
            headers = _parquet_headers(spark, files, paths)
        if not parquet:
            line = _first_line(spark, paths[0], here[0])
            separator = detect_separator(line)
            if not local:
                headers = tuple(
                    line.split() if whitespace else (part.strip() for part in line.split(separator))
                )
    except (PySparkException, Py4JJavaError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{files[0]}: not a readable log ({_first_error_line(exc)})") from None
    return _Log(tuple(files), paths, headers, parquet, whitespace, separator, local)


def _read(spark: SparkSession, log: _Log, paths: Sequence[str]) -> DataFrame:
    """The log's columns as text (Parquet: as stored), one frame over `paths`."""
    if log.parquet:
        return spark.read.parquet(*paths)
    if log.whitespace:
        # Fields separated by runs of spaces: each line is read whole (a separator and a quote
        # that never occur), then split; Spark's header option skips each file's first line.
        lines = spark.read.csv(
            list(paths),
            schema=st.StructType([st.StructField("_line", st.StringType())]),
            sep="\x1f",
            quote="",
            header=True,
        )
        text = _strip(sf.col("_line"))
        parts = sf.split(text, WHITESPACE)
        return lines.filter(text != "").select(
            *(sf.get(parts, index).alias(name) for index, name in enumerate(log.headers))
        )
    schema = st.StructType([st.StructField(name, st.StringType()) for name in log.headers])
    return spark.read.csv(
        list(paths),
        schema=schema,
        sep=log.separator,
        header=True,
        # RFC 4180 quotes ("" inside a quoted field), as Polars reads them.
        quote='"',
        escape='"',
        # The headers of files on another file system were not compared: Spark compares them.
        enforceSchema=log.local,
    )


def _column(name: str) -> Column:
    """A column by its exact name (dots and spaces included)."""
    return sf.col("`" + name.replace("`", "``") + "`")


def _strip(text: Column) -> Column:
    return sf.regexp_replace(text, r"(?U)^\s+|\s+$", "")


def _number(name: str, dtype: st.DataType) -> Column:
    """A Float64 as Polars reads it: a numeric column as it is, text stripped (null if not a
    number)."""
    if isinstance(dtype, st.NumericType):
        return _column(name).cast("double")
    text = _strip(_column(name).cast("string"))
    return sf.when(text.rlike(NUMBER), text.try_cast("double"))


def _given(name: str, dtype: st.DataType) -> Column:
    """True where the log holds a value (text: not empty)."""
    value = _column(name)
    if isinstance(dtype, st.StringType):
        return value.isNotNull() & (_strip(value) != "")
    return value.isNotNull()


def _utc_day(stamp: Column) -> Column:
    """The UTC calendar day of an instant, whatever the session's time zone."""
    return sf.date_from_unix_date(sf.floor(sf.unix_micros(stamp) / 86_400_000_000).cast("int"))


def _iso_day(text: Column) -> Column:
    """The day of an ISO 8601 date or date-time (an offset moves it to its UTC day)."""
    part = [sf.regexp_extract(text, ISO, group) for group in range(11)]
    day = sf.try_to_date(sf.concat_ws("-", part[1], part[3], part[4]), "y-M-d")
    hour, minute = part[5].try_cast("int"), part[6].try_cast("int")
    sign = sf.when(part[8] == "-", -1).otherwise(1)
    offset = sign * (part[9].try_cast("int") * 60 + part[10].try_cast("int"))
    minutes = hour * 60 + minute - sf.coalesce(offset, sf.lit(0))
    shift = sf.when(part[5] != "", sf.floor(minutes / 1440).cast("int")).otherwise(0)
    valid = text.rlike(ISO) & ((part[5] == "") | (hour < 24))
    return sf.when(valid, sf.date_add(day, shift))


def _spark_pattern(time_format: str) -> tuple[str, bool]:
    """A strftime format as a Spark datetime pattern, and whether it has a two-digit year."""
    expanded = re.sub(
        r"%([%FTRD])",
        lambda match: match[0] if match[1] == "%" else COMPOUND[match[1]],
        time_format,
    )
    tokens: list[tuple[str, str]] = []  # (flag, directive letter), or (literal text, "")
    position = 0
    for match in DIRECTIVE.finditer(expanded):
        tokens.append((expanded[position : match.start()], ""))
        tokens.append(("%", "") if match[2] == "%" else (match[1] or "", match[2]))
        position = match.end()
    tokens.append((expanded[position:], ""))
    # One quoted run per stretch of literal text: two quoted runs side by side ('a''b') would
    # read as a quote character.
    pieces: list[tuple[str, str]] = []
    for text, letter in tokens:
        if not letter and pieces and not pieces[-1][1]:
            pieces[-1] = (pieces[-1][0] + text, "")
        elif letter or text:
            pieces.append((text, letter))
    pattern = []
    for index, (text, letter) in enumerate(pieces):
        if not letter:
            pattern.append("'" + text.replace("'", "''") + "'")
            continue
        nearby = pieces[max(index - 1, 0) : index] + pieces[index + 1 : index + 2]
        touching = any(other[1] in NUMERIC for other in nearby)
        pattern.append(_pattern_piece(text, letter, touching, time_format))
    return "".join(pattern), any(letter == "y" for _, letter in pieces)


def _pattern_piece(flag: str, letter: str, touching: bool, time_format: str) -> str:
    """One directive as Spark pattern letters (fixed width when `touching` another number)."""
    if letter in NUMERIC and not flag:
        return NUMERIC[letter][1 if touching else 0]
    if letter == "f" and flag in FRACTION:
        return FRACTION[flag]
    if f"{flag}{letter}" in TEXT:
        return TEXT[f"{flag}{letter}"]
    raise ConfigError(
        f"transactions.time_format {time_format!r}: %{flag}{letter} cannot be read on Spark; "
        "use %Y %y %m %d %e %j %H %I %M %S %f %p %b %B %z, %F %T %R %D and literal text",
        key="transactions.time_format",
    )


def _day(name: str, dtype: st.DataType, time_format: str | None) -> Column:
    """The calendar day of each purchase; null where the time is not in its format."""
    value = _column(name)
    if isinstance(dtype, st.DateType):
        return value
    if isinstance(dtype, st.TimestampNTZType):
        return sf.to_date(value)
    if isinstance(dtype, st.TimestampType):
        return _utc_day(value)  # an instant: Polars takes its UTC day too
    text = _strip(value.cast("string"))
    if time_format is None:
        return _iso_day(text)
    pattern, two_digit_year = _spark_pattern(time_format)
    if any(part in time_format for part in ("%H", "%M", "%S", "%T")):
        stamp = sf.try_to_timestamp(text, sf.lit(pattern))
        # With an offset the text names an instant (its UTC day); without, a wall-clock time in
        # the session's zone, whose day is the day written.
        day = _utc_day(stamp) if "%z" in time_format or "%:z" in time_format else sf.to_date(stamp)
    else:
        day = sf.try_to_date(text, pattern)
    if two_digit_year:
        # Spark reads 70-99 as 2070-2099; chrono (Polars) as 1970-1999.
        day = sf.when(sf.year(day) >= 2070, sf.add_months(day, -1200)).otherwise(day)
    return day


def _where_columns(where: str, log: DataFrame) -> tuple[str, ...]:
    """The text columns `where` names (Spark resolves names regardless of case)."""
    code = re.sub(r"'(?:[^']|'')*'", " ", where)
    tokens = re.findall(r'`((?:[^`]|``)+)`|"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_]*)', code)
    names = [next(part for part in token if part) for token in tokens]
    text = {
        field.name.lower(): field.name
        for field in log.schema.fields
        if isinstance(field.dataType, st.StringType)
    }
    return tuple(dict.fromkeys(text[name.lower()] for name in names if name.lower() in text))


def _numeric_text(log: DataFrame, where: str | None) -> tuple[str, ...]:
    """The text columns `where` names whose every value is a number: the filter compares them as
    numbers (a CSV's columns are read as text), as it would in a Parquet log. One pass over the
    log, only when the filter names text columns."""
    if where is None:
        return ()
    names = _where_columns(where, log)
    if not names:
        return ()
    counts = log.agg(
        *(
            sf.count_if(_given(name, st.StringType()) & _number(name, st.StringType()).isNull())
            for name in names
        )
    ).first()
    assert counts is not None
    return tuple(name for index, name in enumerate(names) if counts[index] == 0)


def _filtered(
    log: DataFrame, config: TransactionsConfig, headers: tuple[str, ...], numeric: tuple[str, ...]
) -> DataFrame:
    """The rows `transactions.where` keeps (its `numeric` text columns compared as numbers)."""
    if config.where is None:
        return log
    view = log.withColumns({f"_text_{name}": _column(name) for name in numeric})
    view = view.withColumns({name: _number(name, st.StringType()) for name in numeric})
    try:
        # Spark parses the text when the filter is analysed, here.
        view = view.filter(sf.expr(config.where))
    except ParseException as exc:
        raise ConfigError(
            f"transactions.where {config.where!r} is not a SQL expression "
            f"({_first_error_line(exc)}); fix it",
            key="transactions.where",
        ) from None
    except AnalysisException as exc:
        raise _where_error(config.where, headers, exc) from None
    return view.withColumns({name: _column(f"_text_{name}") for name in numeric}).drop(
        *(f"_text_{name}" for name in numeric)
    )


def _where_error(where: str, headers: tuple[str, ...], exc: BaseException) -> ConfigError:
    return ConfigError(
        f"transactions.where {where!r} cannot filter the log ({_first_error_line(exc)}); "
        f"the log has {', '.join(headers)}; fix it",
        key="transactions.where",
    )


def _normalised(
    log: DataFrame, config: TransactionsConfig, keep: tuple[str, ...] = (), explain: bool = False
) -> DataFrame:
    """The log as (customer, day, order, amount, money) with flags for an unreadable time or
    amount; with `explain`, the raw time and amount text too (only to name problem rows)."""
    types = {field.name: field.dataType for field in log.schema.fields}
    if config.amount is not None:
        amount = _number(config.amount, types[config.amount])
        amount_given = _given(config.amount, types[config.amount])
        raw_amount = _column(config.amount).cast("string")
    else:
        quantity, price = config.quantity or "", config.unit_price or ""
        amount = _number(quantity, types[quantity]) * _number(price, types[price])
        amount_given = _given(quantity, types[quantity]) & _given(price, types[price])
        raw_amount = sf.concat(
            _column(quantity).cast("string"), sf.lit(" x "), _column(price).cast("string")
        )
    # Rounded to the table's nine places; null (so refused) where a double is no decimal: NaN,
    # infinite, or beyond 1e29.
    money = amount.try_cast(MONEY_TYPE)
    customer = _column(config.customer).cast("string")
    if isinstance(types[config.customer], st.StringType):
        customer = _strip(customer)
    day = _day(config.time, types[config.time], config.time_format)
    texts = (
        [_column(config.time).cast("string").alias(TIME_TEXT), raw_amount.alias(AMOUNT_TEXT)]
        if explain
        else []
    )
    return log.select(
        *(_column(name) for name in keep),
        sf.when(customer != "", customer).alias(CUSTOMER),
        day.alias(DAY),
        (_column(config.order) if config.order else sf.lit(None).cast("string")).alias(ORDER),
        amount.alias(AMOUNT),
        money.alias(MONEY),
        (day.isNull() & _given(config.time, types[config.time])).alias(BAD_TIME),
        (money.isNull() & amount_given).alias(BAD_AMOUNT),
        *texts,
    )


def _per_customer(log: DataFrame, config: TransactionsConfig) -> DataFrame:
    """One row per customer id (the rows without one form the null group, which holds their
    count): rows, problems, first and last purchase day, occasions and the money total."""
    amount, day, money = sf.col(AMOUNT), sf.col(DAY), sf.col(MONEY)
    # A return (a negative amount) is netted into the total (unless dropped), but is not a
    # purchase occasion.
    sale = sf.coalesce(amount >= 0, sf.lit(True))
    counted = sf.when(sale, money) if config.returns == "drop" else money
    occasion = sf.col(ORDER) if config.order else day
    return log.groupBy(CUSTOMER).agg(
        sf.count(sf.lit(1)).alias("rows"),
        sf.count_if(sf.col(BAD_TIME)).alias("bad_time"),
        sf.count_if(sf.col(BAD_AMOUNT)).alias("bad_amount"),
        sf.count_if(amount < 0).alias("negative"),
        sf.min(sf.when(sale, day)).alias("first"),
        sf.max(sf.when(sale, day)).alias("last"),
        sf.count_distinct(sf.when(sale, occasion)).alias("frequency"),
        # A sum of no value is 0, as in Polars.
        sf.coalesce(sf.sum(counted), sf.lit(0).cast(MONEY_TYPE)).alias("monetary"),
    )


def _totals(per_customer: DataFrame, as_of: dt.date | None) -> Row:
    """What the driver needs of the whole log: counts, and the first and last purchase days."""
    known, last = sf.col(CUSTOMER).isNotNull(), sf.col("last")
    late = known & (last > sf.lit(as_of)) if as_of is not None else sf.lit(False)
    totals = per_customer.agg(
        *(
            sf.coalesce(sf.sum(name), sf.lit(0)).alias(name)
            for name in ("rows", "bad_time", "bad_amount", "negative")
        ),
        sf.coalesce(sf.sum(sf.when(~known, sf.col("rows"))), sf.lit(0)).alias("no_customer"),
        sf.count_if(known).alias("customers"),
        sf.count_if(known & last.isNotNull()).alias("buyers"),
        sf.min(sf.when(known, sf.col("first"))).alias("first"),
        sf.max(sf.when(known, last)).alias("last"),
        sf.count_if(late).alias("late"),
        sf.count_if(known & (sf.col("monetary") < 0)).alias("below_zero"),
    ).first()
    assert totals is not None
    return totals


def _round9(value: Column) -> Column:
    """Polars' `round(9)` (half to even, of the value times 1e9), so both engines write the same
    doubles."""
    return sf.rint(value * 1e9) / 1e9


def _customer_table(per_customer: DataFrame, as_of: dt.date) -> DataFrame:
    """The built table's columns from each customer's first and last purchase, occasions and
    total; customers with a negative total left out."""
    reference, first, last = sf.lit(as_of), sf.col("first"), sf.col("last")
    occasions = sf.col("frequency")
    frequency, monetary = occasions.cast("double"), sf.col("monetary").cast("double")
    # No occasion (every row a return, or without its order id): inf or NaN, as Polars divides.
    nothing = (
        sf.when(monetary > 0, sf.lit(float("inf")))
        .when(monetary < 0, sf.lit(float("-inf")))
        .otherwise(sf.lit(float("nan")))
    )
    kept = per_customer.filter(sf.col(CUSTOMER).isNotNull() & (sf.col("monetary") >= 0))
    return kept.select(
        sf.col(CUSTOMER).alias(ID),
        sf.datediff(reference, last).cast("double").alias("recency_days"),
        frequency.alias("frequency"),
        _round9(monetary).alias("monetary"),
        _round9(sf.coalesce(sf.try_divide(monetary, frequency), nothing)).alias(
            "average_order_value"
        ),
        sf.datediff(reference, first).cast("double").alias("tenure_days"),
        sf.when(occasions > 1, sf.datediff(last, first) / (occasions - 1))
        .cast("double")
        .alias("mean_days_between_purchases"),
    ).orderBy(ID)


def _first_error_line(exc: BaseException) -> str:
    if isinstance(exc, Py4JJavaError):
        # A task's failure: what Spark says, and what went wrong underneath (a file's header
        # that differs, a corrupt file).
        error, cause = exc.java_exception, exc.java_exception.getCause()
        first = str(error.getMessage() or error.toString()).strip().splitlines()[0]
        while cause is not None and cause.getCause() is not None:
            cause = cause.getCause()
        if cause is None or not str(cause.getMessage() or "").strip():
            return first
        return f"{first.strip()}: {str(cause.getMessage()).strip().splitlines()[0]}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _job_error(
    exc: BaseException, config: TransactionsConfig, headers: tuple[str, ...], source: str
) -> Exception:
    """A failed Spark job as the user's error: the filter's, or an unreadable log."""
    condition = exc.getCondition() if isinstance(exc, PySparkException) else None
    if config.where is not None and condition in WHERE_FAILURES:
        return _where_error(config.where, headers, exc)
    return DataError(f"{source}: not a readable log ({_first_error_line(exc)})")


def _prepared(
    spark: SparkSession,
    log: _Log,
    config: TransactionsConfig,
    numeric: tuple[str, ...],
    paths: Sequence[str] | None = None,
    keep: tuple[str, ...] = (),
    explain: bool = False,
    index: bool = False,
) -> DataFrame:
    """The normalised log of `paths` (all its files by default); with `index`, each row's
    position in its read (`ROW_ID`, before the filter), to number the rows of one file."""
    raw = _read(spark, log, log.paths if paths is None else paths)
    if index:
        raw = raw.withColumn(ROW_ID, sf.monotonically_increasing_id())
        keep = (*keep, ROW_ID)
    return _normalised(_filtered(raw, config, log.headers, numeric), config, keep, explain)


def _problem_file(
    spark: SparkSession, log: _Log, config: TransactionsConfig, numeric: tuple[str, ...], bad: str
) -> int | None:
    """The first of the log's files holding a row that `bad` flags: one pass over the log for the
    files, then each file's name as Spark writes it (a listing, no data read)."""
    flagged = _prepared(spark, log, config, numeric, keep=(), explain=False)
    flagged = flagged.withColumn("_file", sf.input_file_name()).filter(sf.col(bad))
    files = {row[0] for row in flagged.select("_file").distinct().collect()}
    for position, path in enumerate(log.paths):
        if set(_read(spark, log, [path]).inputFiles()) & files:
            return position
    return None


def _first_problems(
    spark: SparkSession,
    log: _Log,
    config: TransactionsConfig,
    numeric: tuple[str, ...],
    bad: str,
    shown: str,
) -> str:
    """`file:line 'value'` of the first rows that `bad` flags, found only once a problem is known
    to exist: the file is read twice more, once to count each partition's rows, once for the
    rows, numbered as Polars numbers them (lines from 2 below a header, Parquet rows from 1)."""
    position = _problem_file(spark, log, config, numeric, bad)
    if position is None:
        return "(rows not found again)"
    path = [log.paths[position]]
    # monotonically_increasing_id holds the partition number in its upper bits, the row's place
    # in that partition below: the rows before a partition are counted first.
    partition = sf.shiftright(sf.col(ROW_ID), 33)
    raw = _read(spark, log, path).withColumn(ROW_ID, sf.monotonically_increasing_id())
    sizes: dict[int, int] = dict(raw.groupBy(partition).count().collect())
    starts: dict[int, int] = {}
    total = 0
    for part in sorted(sizes):
        starts[part], total = total, total + sizes[part]
    start = sf.create_map(*(sf.lit(value) for pair in starts.items() for value in pair))
    offset = 1 if log.parquet else 2
    number = start[partition] + sf.col(ROW_ID) - sf.shiftleft(partition, 33) + offset
    rows = (
        _prepared(spark, log, config, numeric, path, explain=True, index=True)
        .filter(sf.col(bad))
        .select(number.alias(ROW), sf.col(shown))
        .orderBy(ROW)
        .limit(polars_engine.SHOWN_PROBLEMS)
        .collect()
    )
    where = "row" if log.parquet else "line"
    listed = "; ".join(f"{where} {row[0]} {row[1]!r}" for row in rows)
    return f"{listed} (in {log.given[position]})"


def _refusal(
    spark: SparkSession,
    log: _Log,
    config: TransactionsConfig,
    numeric: tuple[str, ...],
    totals: Row,
    reference: dt.date,
    source: str,
) -> DataError | None:
    """What makes the log unusable, in the order the Polars engine checks it; None if nothing."""
    fix = "fix those rows, or filter them out with transactions.where"
    if totals["bad_time"]:
        where = _first_problems(spark, log, config, numeric, BAD_TIME, TIME_TEXT)
        shape = config.time_format or "ISO 8601"
        return DataError(
            f"{source}: {totals['bad_time']} time value(s) in {config.time} not in the format "
            f"{shape}: {where}; {fix}, or set transactions.time_format"
        )
    if totals["bad_amount"]:
        where = _first_problems(spark, log, config, numeric, BAD_AMOUNT, AMOUNT_TEXT)
        return DataError(
            f"{source}: {totals['bad_amount']} purchase value(s) that are not numbers: {where}; "
            f"{fix}"
        )
    if not totals["buyers"]:
        return DataError(
            f"{source}: no purchase left ({totals['rows']} row(s) after transactions.where, "
            f"{totals['no_customer']} without a customer id); check the filter and the customer "
            "column"
        )
    if totals["customers"] == 1:
        return DataError(
            f"{source}: every purchase is by one customer; there is nothing to segment"
        )
    if totals["late"]:
        return DataError(
            f"{source}: {totals['late']} customer(s) bought after data.as_of "
            f"{reference.isoformat()} (the last purchase is on {totals['last'].isoformat()}); "
            "set data.as_of on or after it"
        )
    return None


@contextmanager
def _ansi_sql(spark: SparkSession) -> Iterator[None]:
    """ANSI SQL while the log is read and filtered, whatever the session's setting: the log's
    own values are read with try_cast, so a failed cast can only come from `transactions.where`
    (`customer > 5` on text ids), which is then refused as the Polars engine refuses it rather
    than keeping no row. Casts keep the mode they were analysed in."""
    key = "spark.sql.ansi.enabled"
    before = str(spark.conf.get(key, "false"))
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        spark.conf.set(key, before)


def build_customers(
    spark: SparkSession,
    files: Sequence[str],
    config: TransactionsConfig,
    whitespace: bool,
    as_of: str | None,
    source: str,
) -> tuple[DataFrame, dict[str, Any]]:
    """One row per customer of a purchase log, aggregated by Spark.

    The same table and summary as `segmentation.transactions.build_customers`: occasions are
    distinct order ids (or customer-days), returns are netted or dropped and are no occasion,
    rows without a customer id are counted and left out, customers with a negative total too.

    Parameters
    ----------
    spark : SparkSession
        The session that reads and aggregates the log.
    files : sequence of str
        The log's files: paths on this machine or URIs (file://, s3a://, hdfs://); CSV with
        `,` `;` tab or `|`, whitespace-separated text with a header line, or Parquet.
    config : TransactionsConfig
        Which columns hold the customer, time, order and value; the filter (Spark SQL, as
        `F.expr` reads it); how returns count.
    whitespace : bool
        True when fields are separated by runs of spaces (`data.delimiter: whitespace`).
    as_of : str or None
        The date recency is measured at (ISO); None: the day after the last purchase.
    source : str
        How the data is named in messages (data.path).

    Returns
    -------
    customers : pyspark.sql.DataFrame
        `customer_id` (string) and the built table's float columns, sorted by id. It reads a
        persisted per-customer aggregate (the summary was computed from it too), so writing it
        does not read the log again.
    summary : dict
        What the log held and what was left out, and the as_of date used.

    Raises
    ------
    DataError
        An unreadable log, a missing column, times or amounts that cannot be read (the first
        rows named by file and line), no purchase left, a single customer, purchases after as_of.
    ConfigError
        `transactions.where` is not SQL or cannot filter the log; a time_format Spark cannot read.
    """
    with _ansi_sql(spark):
        log = _layout(spark, files, whitespace)
        polars_engine._require(log.headers, config, source)
        given_as_of = dt.date.fromisoformat(as_of) if as_of is not None else None
        try:
            raw = _read(spark, log, log.paths)
            numeric = _numeric_text(raw, config.where)
        except (PySparkException, Py4JJavaError) as exc:
            raise _job_error(exc, config, log.headers, source) from None
        normalised = _normalised(_filtered(raw, config, log.headers, numeric), config)
        # Persisted: the totals below and the caller's write both read it, and it is customer-sized.
        per_customer = _per_customer(normalised, config).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            totals = _totals(per_customer, given_as_of)
            last: dt.date | None = totals["last"]
            reference = given_as_of or (last + dt.timedelta(days=1) if last else dt.date.min)
            refusal = _refusal(spark, log, config, numeric, totals, reference, source)
        except (PySparkException, Py4JJavaError) as exc:
            per_customer.unpersist()
            raise _job_error(exc, config, log.headers, source) from None
        if refusal is not None:
            per_customer.unpersist()
            raise refusal
        assert last is not None
        customers = _customer_table(per_customer, reference)
        summary = polars_engine.customers_summary(
            files=[_file_name(file) for file in files],
            rows=int(totals["rows"]),
            rows_without_customer=int(totals["no_customer"]),
            negative_amounts=int(totals["negative"]),
            config=config,
            customers=int(totals["customers"] - totals["below_zero"]),
            customers_with_negative_total=int(totals["below_zero"]),
            as_of=reference,
            as_of_given=as_of is not None,
            first_purchase=totals["first"],
            last_purchase=last,
        )
        return customers, summary
