"""Stage 1, prepare, on Spark: the same checks, learned values, features and scaling as
`segmentation.prepare`, computed by the executors; the driver collects counts and statistics.

Sums are taken as decimals (exact, so their order across partitions does not matter) and
quantiles exactly (`percentile`), so that the same data and partitions give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segmentation.config import Scaling
from segmentation.errors import DataError
from segmentation.prepare import (
    FIT_MINIMUM,
    Scaler,
    _category_lookup,
    _check_lines,
    _check_words,
    resolve_headers,
)
from segmentation.prepared import FEATURE_PREFIX
from segmentation.reading import detect_separator
from segmentation.schema import CATEGORY_SEPARATOR, ID, LINE, ColumnSpec, TableSchema
from segmentation.spark.io import first_line

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

PARTITION_BITS = 33
"""`monotonically_increasing_id` keeps the partition's index above this many bits."""
BLOCK_LINES = 1_000_000
"""Lines of a file counted together when numbering the valid rows."""
POSITION = "position"
"""A valid customer's 0-based place in the data (file by file, row by row): the order the Polars
engine keeps, so that select-k draws the same sample on both engines."""
REASON = "reason"
EPOCH = dt.date(1970, 1, 1)
EXACT = "decimal(38,12)"
"""Values are summed as decimals of this type: exact, whatever the order of partitions."""
STRFTIME_TO_JAVA = {
    "%Y": "yyyy", "%y": "yy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss",
    "%b": "MMM", "%B": "MMMM", "%j": "DDD", "%T": "HH:mm:ss", "%%": "%",
}  # fmt: skip


@dataclass(frozen=True)
class SparkPrepared:
    prepared: DataFrame
    """`source_line`, `customer_id`, the declared columns, `feature_<column>` and `position`."""
    rejects: DataFrame
    summary: dict[str, Any]
    ignored_columns: tuple[str, ...]
    missing: dict[str, dict[str, Any]]


# --- reading --------------------------------------------------------------------------------------


def read_rows(
    spark: SparkSession, files: Sequence[str], partitions: int
) -> tuple[DataFrame, tuple[str, ...], str]:
    """Every row as text (Parquet typed), with `source_line`: the line in its file (a CSV with
    one header line) or the row (Parquet), counted by the executors; and how rows are named."""
    from pyspark.sql import functions as F

    parquet = all(path.lower().endswith(".parquet") for path in files)
    if parquet:
        frame = spark.read.parquet(*files)
        where, first = "row", 1
    else:
        header = first_line(spark, files[0])
        separator = detect_separator(header)
        frame = (
            spark.read.option("header", "true")
            .option("sep", separator)
            .option("inferSchema", "false")
            .option("mode", "PERMISSIVE")
            .option("encoding", "UTF-8")
            .csv(list(files))
        )
        # Spark reads the header itself; take the names as csv does (quotes removed).
        where, first = "line", 2
    headers = tuple(frame.columns)
    frame = frame.withColumn("_file", F.input_file_name()).withColumn(
        "_ordinal", F.monotonically_increasing_id()
    )
    return _numbered(spark, frame, files, first), headers, where


def _numbered(spark: SparkSession, frame: DataFrame, files: Sequence[str], first: int) -> DataFrame:
    """`source_line` and `_file_index` from each piece (one file's rows in one partition, read in
    order): the executors count each piece, the driver adds up the pieces before it."""
    from pyspark.sql import functions as F

    frame = frame.withColumn("_piece", F.shiftright("_ordinal", PARTITION_BITS))
    pieces = (
        frame.groupBy("_file", "_piece")
        .agg(F.min("_ordinal").alias("_start"), F.count(F.lit(1)).alias("_rows"))
        .collect()
    )
    order = {name: index for index, name in enumerate(files)}
    offsets: list[tuple[str, int, int, int, int]] = []
    running: dict[str, int] = {}
    for piece in sorted(pieces, key=lambda p: (_file_rank(p["_file"], order), p["_start"])):
        done = running.get(piece["_file"], 0)
        rank = _file_rank(piece["_file"], order)
        offsets.append((piece["_file"], int(piece["_piece"]), int(piece["_start"]), done, rank))
        running[piece["_file"]] = done + int(piece["_rows"])
    table = spark.createDataFrame(
        offsets, "_file string, _piece long, _start long, _before long, _file_index int"
    )
    return (
        frame.join(F.broadcast(table), ["_file", "_piece"])
        .withColumn(
            LINE, (F.col("_before") + F.col("_ordinal") - F.col("_start") + first).cast("long")
        )
        .drop("_start", "_before", "_ordinal", "_file", "_piece")
    )


def _file_rank(name: str, order: dict[str, int]) -> int:
    """A file's place in the sorted list Spark was given (Spark may spell the URI differently)."""
    if name in order:
        return order[name]
    for given, index in order.items():
        if name.removeprefix("file:").lstrip("/") == given.removeprefix("file:").lstrip("/"):
            return index
    return len(order)


# --- typing and checking --------------------------------------------------------------------------


def _blank(column: Column) -> Column:
    from pyspark.sql import functions as F

    trimmed = F.trim(column.cast("string"))
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


def java_date_pattern(format: str | None) -> str:
    """A strftime format (as the Polars engine takes it) as Spark's date pattern."""
    if format is None:
        return "yyyy-MM-dd"
    pattern, index = "", 0
    while index < len(format):
        piece = format[index : index + 2]
        if piece in STRFTIME_TO_JAVA:
            pattern += STRFTIME_TO_JAVA[piece]
            index += 2
        else:
            character = format[index]
            pattern += f"'{character}'" if character.isalpha() else character
            index += 1
    return pattern


def _typed(raw: Column, column: ColumnSpec, typed_source: bool) -> tuple[Column, Column, Column]:
    """(value, text as read, True where a value is present but unusable) of a declared column."""
    from pyspark.sql import functions as F

    text = _blank(raw)
    if column.type == "numeric":
        value = raw.cast("double") if typed_source else text.try_cast("double")
        finite = value.isNotNull() & ~F.isnan(value) & (F.abs(value) != float("inf"))
        return F.when(finite, value), text, text.isNotNull() & ~finite.eqNullSafe(True)
    if column.type == "date":
        value = F.try_to_timestamp(text, F.lit(java_date_pattern(column.format))).cast("date")
        if typed_source:
            value = raw.cast("date")
        return value, text, text.isNotNull() & value.isNull()
    if column.type == "categorical" and (column.categories or column.aliases):
        lookup = _category_lookup(column)
        mapping = F.create_map(*[F.lit(x) for pair in lookup.items() for x in pair])
        spelled = F.element_at(mapping, F.lower(text))
        return F.coalesce(spelled, text), text, F.lit(False)
    return text, text, F.lit(False)


def _unusable(name: str, text: Column, column: ColumnSpec) -> Column:
    from pyspark.sql import functions as F

    if column.type == "numeric":
        finite_looking = text.try_cast("double").isNotNull()
        kind = F.when(finite_looking, F.lit("a finite number")).otherwise(F.lit("a number"))
    else:
        kind = F.lit(
            "a date" + (f" in format {column.format}" if column.format else " (YYYY-MM-DD)")
        )
    return F.concat(F.lit(f"{name} '"), text, F.lit("' is not "), kind)


def _python_repr(value: Column) -> Column:
    """A double as Python's repr writes it, as the Polars engine shows a value in a reason
    (-5.0, 100.5, 1e+300). Python itself writes it, in the executors: an expression that does
    the same in Spark SQL grows too large to compile. Give it nulls except where it is shown."""
    from pyspark.sql import functions as F

    # A lambda travels by value: the executors' Python need not import this package for it.
    return F.udf(lambda number: None if number is None else repr(number), "string")(value)


def _python_g(value: Column) -> Column:
    """A double as Python's format(value, "g") writes it, as the Polars engine shows a negative
    value under log1p (-3, -2.5, -5.7346e+06); see `_python_repr`."""
    from pyspark.sql import functions as F

    return F.udf(lambda number: None if number is None else format(number, "g"), "string")(value)


def _range_problem(name: str, value: Column, column: ColumnSpec) -> Column | None:
    from pyspark.sql import functions as F

    words = _check_words(column)
    low, high = column.min, column.max
    if low is not None and high is not None:
        outside, word = (value < low) | (value > high), words["in_range"]
    elif low is not None:
        outside, word = value < low, words["greater_than_or_equal_to"]
    elif high is not None:
        outside, word = value > high, words["less_than_or_equal_to"]
    else:
        return None
    shown = _python_repr(F.when(outside, value))
    return F.when(outside, F.concat(F.lit(f"{name} "), shown, F.lit(f" {word}")))


def _row_reasons(typed: DataFrame, schema: TableSchema, checks: dict[str, Column]) -> DataFrame:
    """Each row's reasons, one per column at most (a text in a number column is not also
    'missing'), joined by '; '; null for a valid row."""
    from pyspark.sql import functions as F

    reasons = []
    for column in schema.columns:
        name = ID if column.type == "id" else column.name
        value = F.col(name)
        chain = checks.get(name)
        found = [] if chain is None else [chain]
        if column.type == "numeric":
            ranged = _range_problem(column.name, value, column)
            if ranged is not None:
                found.append(ranged)
            if column.transform == "log1p":
                found.append(
                    F.when(
                        value < 0,
                        F.concat(
                            F.lit(f"{column.name} "),
                            _python_g(F.when(value < 0, value)),
                            F.lit(" is negative; log1p needs 0 or more"),
                        ),
                    )
                )
        if column.type == "categorical" and column.categories:
            allowed = list(column.categories)
            found.append(
                F.when(
                    value.isNotNull() & ~value.isin(allowed),
                    F.concat(
                        F.lit(f"{column.name} "), value, F.lit(f" {_check_words(column)['isin']}")
                    ),
                )
            )
        if column.type == "id":
            found.append(F.when(value.isNull(), F.lit(f"{ID} is missing")))
        elif column.missing == "fail":
            found.append(F.when(value.isNull(), F.lit(f"{column.name} is missing")))
        if found:
            reasons.append(F.coalesce(*found))
    joined = F.concat_ws("; ", F.array(*reasons)) if reasons else F.lit("")
    return typed.withColumn(REASON, F.nullif(joined, F.lit("")))


def _typed_table(
    rows: DataFrame, headers: tuple[str, ...], schema: TableSchema, source: str, typed_source: bool
) -> DataFrame:
    from pyspark.sql import functions as F

    found, _ = resolve_headers(headers, schema, source)
    sourced = list(found.values())
    blank = F.lit(True)
    for header in sourced:
        blank = blank & _blank(F.col(f"`{header}`")).isNull()
    rows = rows.withColumn("_blank", blank if sourced else F.lit(False))
    columns: list[Column] = [F.col("_file_index"), F.col(LINE), F.col("_blank")]
    checks: dict[str, Column] = {}
    if schema.id_column is None:
        columns.append(F.lit(None).cast("string").alias(ID))  # numbered after reading
    for column in schema.columns:
        if column.expr is not None:
            continue
        name = ID if column.type == "id" else column.name
        value, text, bad = _typed(F.col(f"`{found[column.name]}`"), column, typed_source)
        columns.append(value.alias(name))
        checks[name] = F.when(bad, _unusable(column.name, text, column))
    reasons = [check.alias(f"_check_{name}") for name, check in checks.items()]
    unused = [F.col(f"`{h}`") for h in headers if h not in sourced and h != LINE]
    typed = rows.select(*columns, *reasons, *unused)
    for index, column in enumerate(schema.columns):
        if column.expr is None:
            continue
        typed = typed.withColumn(column.name, _expression(column, index))
    named = {name: F.col(f"_check_{name}") for name in checks}
    return _row_reasons(typed, schema, named).drop(*[f"_check_{name}" for name in checks])


def _expression(column: ColumnSpec, index: int) -> Column:
    """A computed column: its SQL text evaluated by Spark (common SQL reads the same in both
    engines: arithmetic, CASE WHEN, LN, ABS, ...)."""
    from pyspark.sql import functions as F

    value = F.expr(column.expr or "")
    if column.type == "numeric":
        value = value.cast("double")
        return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)
    return value.cast("string")


# --- statistics -----------------------------------------------------------------------------------


def _exact_mean(value: Column) -> Column:
    from pyspark.sql import functions as F

    return (F.sum(value.cast(EXACT)) / F.count(value)).cast("double")


def _learned(frame: DataFrame, schema: TableSchema, as_of: str | None) -> TableSchema:
    """The schema completed from the valid rows: imputed values, categories, clip bounds, as_of.
    Medians, quantiles and the latest date come from one aggregation."""
    from pyspark.sql import functions as F

    wanted: dict[str, Column] = {}
    for column in schema.columns:
        if column.type == "id" or not column.imputes or column.missing != "median":
            continue
        if column.type == "date":
            # The lower middle date, as the Polars engine takes it (no date between two others).
            wanted[f"median_{column.name}"] = F.expr(
                f"percentile_disc(0.5) WITHIN GROUP (ORDER BY datediff(`{column.name}`, "
                f"DATE'{EPOCH.isoformat()}'))"
            )
        else:
            wanted[f"median_{column.name}"] = F.percentile(column.name, F.lit(0.5))
    for column in schema.of_type("numeric"):
        for index, q in enumerate(column.clip or ()):
            wanted[f"clip{index}_{column.name}"] = F.percentile(column.name, F.lit(q))
    dates = schema.of_type("date")
    if as_of is None and dates:
        wanted["latest"] = (
            F.greatest(*[F.max(c.name) for c in dates]) if len(dates) > 1 else F.max(dates[0].name)
        )
    found = (
        frame.select(*[value.alias(name) for name, value in wanted.items()]).first().asDict()
        if wanted
        else {}
    )
    imputed: dict[str, float | str] = {}
    for column in schema.columns:
        if column.type == "id" or not column.imputes:
            continue
        if column.missing == "median":
            middle = found[f"median_{column.name}"]
            imputed[column.name] = (
                (EPOCH + dt.timedelta(days=int(middle))).isoformat()
                if column.type == "date"
                else float(middle)
            )
        elif column.missing == "mode":
            top = (
                frame.filter(F.col(column.name).isNotNull())
                .groupBy(column.name)
                .count()
                .orderBy(F.desc("count"), F.asc(column.name))
                .first()
            )
            value = top[0]
            imputed[column.name] = value.isoformat() if isinstance(value, dt.date) else value
        else:
            imputed[column.name] = (
                column.missing if column.type == "numeric" else str(column.missing)
            )
    categories: dict[str, tuple[str, ...]] = {}
    for column in schema.of_type("categorical"):
        seen = sorted(
            row[0]
            for row in frame.select(column.name)
            .where(F.col(column.name).isNotNull())
            .distinct()
            .collect()
        )
        fill = imputed.get(column.name)
        if fill is not None and fill not in seen:
            seen = sorted([*seen, str(fill)])
        categories[column.name] = column.categories or tuple(seen)
    clip_bounds = {
        column.name: (
            float(found[f"clip0_{column.name}"] or 0.0),
            float(found[f"clip1_{column.name}"] or 0.0),
        )
        for column in schema.of_type("numeric")
        if column.clip is not None
    }
    reference = as_of
    latest = found.get("latest")
    if reference is None and isinstance(latest, dt.date):
        reference = latest.isoformat()
    return schema.model_copy(
        update={
            "as_of": reference,
            "imputed": imputed,
            "clip_bounds": clip_bounds,
            "categories": categories,
        }
    )


def measure(column: ColumnSpec, schema: TableSchema) -> Column:
    """As `segmentation.measures.measure`: dates as days before as_of."""
    from pyspark.sql import functions as F

    if column.type == "date":
        return F.datediff(
            F.lit(schema.as_of or "1970-01-01").cast("date"), F.col(column.name)
        ).cast("double")
    return F.col(column.name).cast("double")


def feature_value(column: ColumnSpec, schema: TableSchema) -> Column:
    """As `segmentation.measures.feature_value`: clipped, then transformed."""
    from pyspark.sql import functions as F

    value = measure(column, schema)
    if column.name in schema.clip_bounds:
        low, high = schema.clip_bounds[column.name]
        value = F.least(F.greatest(value, F.lit(low)), F.lit(high))
    if column.transform == "log1p":
        value = F.log1p(value)
    return value


def unscaled_columns(schema: TableSchema) -> list[Column]:
    """The feature matrix before scaling, one Spark column per `schema.matrix_columns` entry."""
    from pyspark.sql import functions as F

    columns = []
    for name in schema.features:
        column = schema.column(name)
        if column.type == "categorical":
            columns += [
                (F.col(name) == category).cast("double") for category in schema.categories[name]
            ]
        else:
            columns.append(feature_value(column, schema))
    return [c.alias(f"_m{i}") for i, c in enumerate(columns)]


def fit_scaler(matrix: DataFrame, schema: TableSchema, method: Scaling) -> Scaler:
    """As `segmentation.prepare.fit_scaler`, from exact aggregates over every customer."""
    from pyspark.sql import functions as F

    columns = schema.matrix_columns
    names = [f"_m{i}" for i in range(len(columns))]
    means = [float(v) for v in matrix.select(*[_exact_mean(F.col(n)) for n in names]).first()]
    if method is Scaling.NONE:
        center, scale = [0.0] * len(names), [1.0] * len(names)
    elif method is Scaling.STANDARD:
        spread = matrix.select(
            *[
                F.sum(((F.col(n) - m) * (F.col(n) - m)).cast(EXACT)) / F.count(n)
                for n, m in zip(names, means, strict=True)
            ]
        ).first()
        center = means
        scale = [math.sqrt(float(v)) or 1.0 for v in spread]
    elif method is Scaling.MINMAX:
        bounds = matrix.select(*[F.min(n) for n in names], *[F.max(n) for n in names]).first()
        center = [float(bounds[i]) for i in range(len(names))]
        scale = [float(bounds[len(names) + i]) - center[i] or 1.0 for i in range(len(names))]
    else:
        quartiles = matrix.select(
            *[F.percentile(n, F.lit(q)) for n in names for q in (0.25, 0.5, 0.75)]
        ).first()
        center = [float(quartiles[3 * i + 1]) for i in range(len(names))]
        scale = [
            float(quartiles[3 * i + 2]) - float(quartiles[3 * i]) or 1.0 for i in range(len(names))
        ]
    for name in schema.features:
        if schema.column(name).type != "categorical":
            continue
        block = [i for i, c in enumerate(columns) if c.partition(CATEGORY_SEPARATOR)[0] == name]
        shares = [means[i] for i in block]
        spread_of_block = math.sqrt(sum(p * (1 - p) for p in shares)) or 1.0
        for i in block:
            center[i], scale[i] = means[i], spread_of_block
    return Scaler(method=method, columns=columns, center=tuple(center), scale=tuple(scale))


def population(frame: DataFrame, schema: TableSchema) -> dict[str, dict[str, float]]:
    """As `segmentation.prepare.population`, from two aggregations (means, then spreads)."""
    from pyspark.sql import functions as F

    measures = schema.measures
    if not measures:
        return {}
    values = {c.name: (measure(c, schema), feature_value(c, schema)) for c in measures}
    first = frame.select(
        F.count(F.lit(1)).alias("count"),
        *[
            aggregate.alias(f"{name}_{statistic}")
            for name, (value, seen) in values.items()
            for statistic, aggregate in (
                ("mean", _exact_mean(value)),
                ("min", F.min(value)),
                ("max", F.max(value)),
                ("median", F.percentile(value, F.lit(0.5))),
                ("feature_mean", _exact_mean(seen)),
            )
        ],
    ).first()
    deviations = []
    for name, (value, seen) in values.items():
        mean, feature_mean = first[f"{name}_mean"], first[f"{name}_feature_mean"]
        deviations += [
            F.sum(((value - mean) ** 2).cast(EXACT)).alias(f"{name}_std"),
            F.sum(((seen - feature_mean) ** 2).cast(EXACT)).alias(f"{name}_feature_std"),
        ]
    spreads = frame.select(*deviations).first()
    denominator = max(int(first["count"]) - 1, 1)
    return {
        name: {
            "mean": float(first[f"{name}_mean"] or 0.0),
            "std": math.sqrt(float(spreads[f"{name}_std"] or 0) / denominator),
            "min": float(first[f"{name}_min"] or 0.0),
            "max": float(first[f"{name}_max"] or 0.0),
            "median": float(first[f"{name}_median"] or 0.0),
            "feature_mean": float(first[f"{name}_feature_mean"] or 0.0),
            "feature_std": math.sqrt(float(spreads[f"{name}_feature_std"] or 0) / denominator),
        }
        for name in values
    }


def category_shares(frame: DataFrame, schema: TableSchema) -> dict[str, dict[str, float]]:
    from pyspark.sql import functions as F

    shares: dict[str, dict[str, float]] = {}
    for column in schema.of_type("categorical"):
        counts = frame.where(F.col(column.name).isNotNull()).groupBy(column.name).count().collect()
        total = max(sum(int(r["count"]) for r in counts), 1)
        rows = sorted(((str(r[0]), int(r["count"])) for r in counts), key=lambda r: (-r[1], r[0]))
        shares[column.name] = {value: count / total for value, count in rows}
    return shares


# --- the stage ------------------------------------------------------------------------------------


def _first_problems(
    invalid: DataFrame, where: str, count: int, hint: str, source: str
) -> DataError:
    first = invalid.orderBy("_file_index", LINE).select(LINE, REASON).limit(5).collect()
    listed = "; ".join(f"{where} {row[LINE]}: {row[REASON].replace('; ', ', ')}" for row in first)
    more = f" (and {count - len(first)} more row(s))" if count > len(first) else ""
    return DataError(f"{source}: {count} invalid row(s): {listed}{more}; fix them, or {hint}")


def _positions(spark: SparkSession, frame: DataFrame) -> DataFrame:
    """`position`: the row's place among the valid rows in file and line order.

    Rows are grouped in blocks of `BLOCK_LINES` lines of a file (a key computed from the row
    alone, so every job groups them alike; Spark's range partitioning samples, and two jobs may
    draw different ranges); the executors count each block, the driver adds up the blocks before
    each, and a row's place in its block comes from a window over the block.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    blocked = frame.withColumn("_block", F.floor(F.col(LINE) / BLOCK_LINES).cast("long"))
    counts = (
        blocked.groupBy("_file_index", "_block").agg(F.count(F.lit(1)).alias("_rows")).collect()
    )
    offsets, done = [], 0
    for block in sorted(counts, key=lambda b: (b["_file_index"], b["_block"])):
        offsets.append((int(block["_file_index"]), int(block["_block"]), done))
        done += int(block["_rows"])
    table = spark.createDataFrame(offsets, "_file_index int, _block long, _before long")
    within = Window.partitionBy("_file_index", "_block").orderBy(LINE)
    return (
        blocked.join(F.broadcast(table), ["_file_index", "_block"])
        .withColumn(POSITION, (F.col("_before") + F.row_number().over(within) - 1).cast("long"))
        .drop("_block", "_before", "_file_index")
    )


def in_position_order(frame: DataFrame, partitions: int, total: int) -> DataFrame:
    """The rows in `partitions` parts by position, each sorted: contiguous runs of positions
    hashed to parts (no sampling, so every job and every run splits them alike)."""
    from pyspark.sql import functions as F

    run = F.floor(F.col(POSITION) * partitions / max(total, 1)).cast("long")
    return frame.repartition(partitions, run).sortWithinPartitions(POSITION)


def prepare_customers(
    spark: SparkSession,
    files: Sequence[str],
    schema: TableSchema,
    on_invalid: str,
    as_of: str | None,
    scaling: Scaling,
    partitions: int,
    source: str,
) -> SparkPrepared:
    """The whole prepare stage on Spark: read, type, check, learn, fill, scale and summarise.

    Parameters
    ----------
    spark : SparkSession
    files : sequence of str
        The table's files as URIs, in sorted order (CSV with a header, or Parquet).
    schema : TableSchema
        The declared columns and features.
    on_invalid : {"fail", "drop"}
        Stop at invalid rows (naming the first ones), or leave them out.
    as_of : str or None
        The reference date of date columns; None: the latest date in the data.
    scaling : Scaling
        How feature columns are scaled.
    partitions : int
        The fixed number of partitions (`spark.partitions`): rows are range-partitioned by line.
    source : str
        How the data is named in messages.
    """
    from pyspark.sql import functions as F

    rows, headers, where = read_rows(spark, files, partitions)
    resolve_headers(headers, schema, f"{source}:1" if where == "line" else source)
    typed_source = where == "row"
    typed = _typed_table(rows, headers, schema, source, typed_source)
    typed = typed.cache()
    totals = typed.select(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("_blank").cast("long")).alias("blank"),
        *[
            F.count(F.col(c.name)).alias(f"present_{c.name}")
            for c in schema.columns
            if c.type != "id"
        ],
        # Fewer distinct ids than ids: some id is repeated (found exactly below).
        F.count(ID).alias("ids"),
        F.count_distinct(ID).alias("distinct_ids"),
    ).first()
    if int(totals["rows"]) == 0:
        raise DataError(f"{source}: a header but no customer rows; add one row per customer")
    typed = typed.filter(~F.col("_blank")).drop("_blank")
    for column in schema.columns:
        if column.type != "id" and int(totals[f"present_{column.name}"]) == 0:
            origin = "its expr" if column.expr else "its header"
            raise DataError(
                f"{source}: column '{column.name}' ({origin}) has no values in any row; fill it in, "
                "or leave it out of columns"
            )
    if totals["ids"] != totals["distinct_ids"]:
        repeated = typed.where(F.col(ID).isNotNull()).groupBy(ID).count().where("count > 1")
        repeated_ids = repeated.select(ID).withColumn("_repeated", F.lit(True))
        typed = (
            typed.join(repeated_ids, ID, "left")
            .withColumn(
                REASON,
                F.when(
                    F.col("_repeated"),
                    F.concat_ws(
                        "; ",
                        F.col(REASON),
                        F.concat(F.lit(f"{ID} "), F.col(ID), F.lit(" appears more than once")),
                    ),
                ).otherwise(F.col(REASON)),
            )
            .drop("_repeated")
        )
    typed = typed.cache()
    declared_columns = [c for c in schema.columns if c.type != "id"]
    dropping = [c.name for c in declared_columns if c.missing == "drop"]
    drop_condition = F.lit(False)
    for name in dropping:
        drop_condition = drop_condition | F.col(name).isNull()
    usable = F.col(REASON).isNull()
    # One pass counts the invalid rows, the rows a missing value drops, and each column's gaps.
    counts = typed.select(
        F.sum(F.col(REASON).isNotNull().cast("long")).alias("_invalid"),
        F.sum((usable & drop_condition).cast("long")).alias("_dropped"),
        *[
            F.sum((usable & F.col(c.name).isNull()).cast("long")).alias(c.name)
            for c in declared_columns
        ],
    ).first()
    invalid = typed.where(F.col(REASON).isNotNull())
    invalid_count = int(counts["_invalid"] or 0)
    if invalid_count and on_invalid == "fail":
        raise _first_problems(
            invalid, where, invalid_count, "set prepare.on_invalid: drop to leave them out", source
        )
    missing: dict[str, dict[str, Any]] = {}
    for column in declared_columns:
        count = int(counts[column.name] or 0)
        if count:
            missing[column.name] = {"policy": column.missing, "missing": count}
            if column.missing == "drop":
                missing[column.name]["dropped"] = count
    valid = typed.where(usable)
    rejects = invalid.select("_file_index", LINE, ID, REASON)
    if dropping:
        reasons = [
            F.when(F.col(name).isNull(), F.lit(f"{name} is missing (missing: drop)"))
            for name in dropping
        ]
        dropped = valid.where(drop_condition).select(
            "_file_index", LINE, ID, F.concat_ws("; ", F.array(*reasons)).alias(REASON)
        )
        rejects = rejects.unionByName(dropped)
        valid = valid.where(~drop_condition)
    valid = valid.drop(REASON)
    if schema.id_column is None:
        valid = valid.withColumn(ID, F.col(LINE).cast("string"))
    rejected = invalid_count + int(counts["_dropped"] or 0)
    valid_count = int(totals["rows"]) - int(totals["blank"] or 0) - rejected
    if valid_count < FIT_MINIMUM:
        raise DataError(
            f"{source}: only {valid_count} valid customer row(s); at least {FIT_MINIMUM} are needed"
        )
    learned = _learned(valid, schema, as_of)
    fills = {
        name: (F.lit(value).cast("date") if learned.column(name).type == "date" else F.lit(value))
        for name, value in learned.imputed.items()
    }
    for name, fill in fills.items():
        valid = valid.withColumn(name, F.coalesce(F.col(name), fill))
        if name in missing:
            missing[name]["filled_with"] = learned.imputed[name]
    _refuse_constant_features(valid, learned, source)
    declared = [c.name for c in schema.columns if c.type != "id"]
    customers = valid.select("_file_index", LINE, ID, *declared).cache()
    matrix = customers.select("*", *unscaled_columns(learned))
    scaler = fit_scaler(matrix, learned, scaling)
    scaled = [
        ((F.col(f"_m{i}") - center) / scale).alias(FEATURE_PREFIX + name)
        for i, (name, center, scale) in enumerate(
            zip(scaler.columns, scaler.center, scaler.scale, strict=True)
        )
    ]
    prepared = in_position_order(
        _positions(spark, matrix.select("_file_index", LINE, ID, *declared, *scaled)),
        partitions,
        valid_count,
    )
    distinct = matrix.select(*[f"_m{i}" for i in range(len(scaler.columns))]).distinct().count()
    _, ignored = resolve_headers(headers, schema, source)
    blank = int(totals["blank"] or 0)
    summary = {
        "rows_read": valid_count + rejected,
        "rows_valid": valid_count,
        "rows_rejected": rejected,
        "blank_lines_skipped": blank,
        "ignored_columns": list(ignored),
        "checks": _check_lines(learned),
        "missing": missing,
        "clipped": _clipped(customers, learned),
        "as_of": learned.as_of,
        "features": list(learned.features),
        "schema": learned.model_dump(mode="json"),
        "scaler": scaler.to_dict(),
        "distinct_points": int(distinct),
        "population": population(customers, learned),
        "category_shares": category_shares(customers, learned),
    }
    return SparkPrepared(
        prepared=prepared,
        rejects=rejects.orderBy("_file_index", LINE).drop("_file_index"),
        summary=summary,
        ignored_columns=ignored,
        missing=missing,
    )


def _clipped(customers: DataFrame, schema: TableSchema) -> dict[str, Any]:
    from pyspark.sql import functions as F

    clipped = {}
    for name, (low, high) in schema.clip_bounds.items():
        outside = customers.where((F.col(name) < low) | (F.col(name) > high)).count()
        clipped[name] = {
            "quantiles": list(schema.column(name).clip or ()),
            "low": low,
            "high": high,
            "clipped": int(outside),
        }
    return clipped


def _refuse_constant_features(frame: DataFrame, schema: TableSchema, source: str) -> None:
    """A feature that is the same for every customer cannot separate them (one aggregation)."""
    from pyspark.sql import functions as F

    features = [schema.column(name) for name in schema.features]
    found = frame.select(
        *[
            aggregate.alias(f"{column.name}_{which}")
            for column in features
            for which, aggregate in (("low", F.min(column.name)), ("high", F.max(column.name)))
        ]
    ).first()
    for column in features:
        low, high = found[f"{column.name}_low"], found[f"{column.name}_high"]
        if low != high:
            continue
        if column.type == "categorical":
            raise DataError(
                f"{source}: feature '{column.name}' has one category only ({low!r}): it cannot "
                "separate customers; remove it from features"
            )
        shown = low.isoformat() if isinstance(low, dt.date) else f"{low:g}"
        raise DataError(
            f"{source}: feature '{column.name}' is constant ({shown}): it cannot separate "
            "customers; remove it from features"
        )
