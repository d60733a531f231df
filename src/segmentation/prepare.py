"""Stage 1, prepare: read the declared columns of a CSV or Parquet file, validate them, and build
the scaled feature matrix.

Every rule comes from the table's declared schema (`schema.TableSchema`): which headers to read,
each column's type, range, categories, missing-value policy, clipping and transform. A clean file
takes a typed fast path; whatever it declines, the text-based reader explains with file and line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandera.polars as pa
import polars as pl
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from segmentation.config import Scaling
from segmentation.errors import ConfigError, DataError
from segmentation.measures import feature_value, measure
from segmentation.prepared import FEATURE_PREFIX
from segmentation.reading import detect_separator
from segmentation.schema import (
    CATEGORY_SEPARATOR,
    ID,
    LINE,
    ColumnSpec,
    TableSchema,
    header_key,
)

FIT_MINIMUM = 3
"""Fitting needs at least this many customers; labelling new ones with a saved model needs one."""
NO_ROW = -1
"""The row index of a problem that concerns the whole column."""


@dataclass(frozen=True)
class Scaler:
    """Per-column affine transform `(x - center) / scale`, learned on the prepared data."""

    method: Scaling
    columns: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (matrix - np.asarray(self.center)) / np.asarray(self.scale)
        return scaled

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "columns": list(self.columns),
            "center": list(self.center),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(
            method=Scaling(data["method"]),
            columns=tuple(data["columns"]),
            center=tuple(float(v) for v in data["center"]),
            scale=tuple(float(v) for v in data["scale"]),
        )


@dataclass(frozen=True)
class Prepared:
    customers: pl.DataFrame
    """Valid rows: `source_line`, `customer_id` and every declared column, typed, missing values
    filled in as each column's policy says."""
    rejects: pl.DataFrame
    """Rows left out: `source_line`, `customer_id`, `reason`."""
    blank_lines: int
    schema: TableSchema
    """The declared schema with what was learned: as_of, imputed values, clip bounds, categories."""
    ignored_columns: tuple[str, ...] = ()
    """Headers of the file that no column declares."""
    missing: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per column with missing values: its policy, how many were missing, dropped or filled."""


@dataclass(frozen=True)
class _Read:
    """A table as read: `source_line` plus the file's columns, and how its rows are named."""

    frame: pl.DataFrame
    headers: tuple[str, ...]
    where: str
    """"line" for text files, "row" for Parquet."""
    exact_lines: bool
    """False when the fast path numbered rows without looking for fields that span lines."""


# --- reading ------------------------------------------------------------------------------------


def _decoded(path: Path) -> bytes:
    """The file's bytes, refused with file:line:column when they are not UTF-8 text."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a CSV file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    if not data.strip():
        raise DataError(
            f"{path}: the file is empty; expected a header row and one row per customer"
        )
    problem = data.find(b"\0")
    reason = "binary content (a NUL byte), not a CSV file"
    if problem < 0:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = exc.start
            reason = f"not UTF-8 text (byte 0x{data[problem]:02x}); save the file as UTF-8"
    if problem >= 0:
        line = data.count(b"\n", 0, problem) + 1
        column = problem - data.rfind(b"\n", 0, problem)
        raise DataError(f"{path}:{line}:{column}: {reason}")
    return data


def _unreadable_row(text: str, separator: str) -> tuple[int, str] | None:
    """(line, problem) of the first row that is not a CSV record with at most the header's fields.

    Called once Polars has failed to read the file, to say where the problem is.
    """
    rows = csv.reader(io.StringIO(text), delimiter=separator, strict=True)
    start, expected, quoted = 1, None, None
    try:
        for row in rows:
            if expected is None:
                expected = len(row)
            elif len(row) > expected:
                return start, f"{len(row)} fields where the header has {expected}; fix that row"
            if quoted is None and any('"' in field for field in row):
                quoted = start
            start = rows.line_num + 1
    except csv.Error as exc:
        problem = str(exc).split(" - ")[0]
        return start, f'not a CSV row ({problem}); check the quotes (") on that row'
    if quoted is not None:
        return quoted, 'a quote (") inside a field; remove it or quote the whole field'
    return None


def _record_lines(text: str, separator: str) -> list[int] | None:
    """The line each record after the header starts on: a quoted field may span lines."""
    rows = csv.reader(io.StringIO(text), delimiter=separator)
    starts: list[int] = []
    try:
        next(rows, None)
        start = rows.line_num + 1
        for _ in rows:
            starts.append(start)
            start = rows.line_num + 1
    except csv.Error:
        return None
    return starts


def read_text_table(path: Path) -> pl.DataFrame:
    """Every column of a CSV as text, each row numbered by its file line (`source_line`).

    Accepts a UTF-8 BOM, Windows or old Mac (CR only) line endings and `,`, `;`, tab or `|` as
    delimiters; a quoted field may span lines.
    """
    data = _decoded(path)
    if b"\n" not in data:
        data = data.replace(b"\r", b"\n")  # old Mac line endings
    text = data.decode("utf-8-sig")
    separator = detect_separator(text.split("\n", 1)[0])
    try:
        raw = pl.read_csv(io.BytesIO(data), separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        unreadable = _unreadable_row(text, separator)
        if unreadable is not None:
            line, problem = unreadable
            raise DataError(f"{path}:{line}: {problem}") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable CSV file ({reason})") from None
    # Line 1 is the header, so row i of the frame is line i + 2 of the file, unless a quoted
    # field spans lines.
    starts = _record_lines(text, separator) if '"' in text else None
    lines = (
        pl.Series(LINE, starts, dtype=pl.Int64)
        if starts is not None and len(starts) == raw.height
        else pl.int_range(2, raw.height + 2, dtype=pl.Int64, eager=True).alias(LINE)
    )
    return raw.with_columns(pl.col(pl.String).str.strip_chars()).select(lines, pl.all())


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        raw = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})"
        ) from None
    return raw.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64))


def resolve_headers(
    headers: Iterable[str],
    schema: TableSchema,
    source: str,
    fix: str = "fix the column's source in the config",
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each declared column's header in the file, and the file's headers no column declares.

    Headers are compared ignoring case, spaces and punctuation; a column's sources are tried in
    the order given, then its name.
    """
    by_key: dict[str, str] = {}
    for given in headers:
        by_key.setdefault(header_key(given), given)
    found: dict[str, str] = {}
    for column in schema.columns:
        if column.expr is not None:
            continue
        header = next(
            (by_key[header_key(h)] for h in column.headers if header_key(h) in by_key), None
        )
        if header is None:
            listed = ", ".join(dict.fromkeys(column.headers))
            raise DataError(
                f"{source}: no column for '{column.name}' (source: {listed}); the file has "
                f"{', '.join(headers) or 'no columns'}; {fix}"
            )
        found[column.name] = header
    used = set(found.values())
    return found, tuple(h for h in headers if h not in used and h != LINE)


def _fast_frame(path: Path, schema: TableSchema) -> _Read | None:
    """The declared columns read straight into types (numbers as numbers), or None if anything
    looks off; the text-based reader then reads the file and explains any problem."""
    numeric = {column.name for column in schema.of_type("numeric")}
    try:
        if path.suffix.lower() == ".parquet":
            headers = tuple(pl.read_parquet_schema(path))
            found, _ = resolve_headers(headers, schema, str(path))
            scan = pl.scan_parquet(path).with_row_index(LINE, offset=1)
            where = "row"
        else:
            with path.open("rb") as handle:
                header = handle.readline().decode("utf-8-sig").rstrip("\r\n")
            if "\r" in header or not header:
                return None  # old Mac line endings: the text-based reader converts them
            separator = detect_separator(header)
            headers = tuple(next(csv.reader([header], delimiter=separator), []))
            found, _ = resolve_headers(headers, schema, str(path))
            scan = pl.scan_csv(
                path,
                separator=separator,
                infer_schema=False,
                schema_overrides={found[name]: pl.Float64 for name in numeric if name in found},
            ).with_row_index(LINE, offset=2)
            where = "line"
        wanted = [LINE, *dict.fromkeys([*found.values(), *_expression_inputs(schema, headers)])]
        frame = scan.select(wanted).with_columns(pl.col(LINE).cast(pl.Int64)).collect()
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, csv.Error, DataError):
        return None
    return _Read(frame=frame, headers=headers, where=where, exact_lines=where == "row")


def _text_frame(path: Path) -> _Read:
    if path.suffix.lower() == ".parquet":
        frame = _read_parquet(path)
        return _Read(frame, tuple(c for c in frame.columns if c != LINE), "row", True)
    frame = read_text_table(path)
    return _Read(frame, tuple(c for c in frame.columns if c != LINE), "line", True)


# --- typing and checking --------------------------------------------------------------------------


def _expression_inputs(schema: TableSchema, headers: Iterable[str]) -> list[str]:
    """File headers that expressions name directly (not through a declared column)."""
    declared = {column.name for column in schema.columns}
    present = set(headers)
    names: list[str] = []
    for column in schema.columns:
        if column.expr is not None:
            try:
                roots = pl.sql_expr(column.expr).meta.root_names()
            except pl.exceptions.PolarsError:
                continue  # reported with its config key when the expression is evaluated
            names += [r for r in roots if r not in declared and r in present]
    return names


def _blank(text: pl.Expr) -> pl.Expr:
    """Text with surrounding spaces removed; an empty value read as missing."""
    trimmed = text.cast(pl.String).str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def _missing(frame: pl.DataFrame, header: str) -> pl.Expr:
    """Whether a value is missing: null, or text that is empty once trimmed. A column read typed
    (numbers as numbers) has nulls only: turning a million numbers into text to trim them took
    most of the typing of a 1M-row file."""
    if frame.schema[header] == pl.String:
        return _blank(pl.col(header)).is_null()
    return pl.col(header).is_null()


def _category_lookup(column: ColumnSpec) -> dict[str, str]:
    """Lower-cased spellings (categories and aliases) to the declared category."""
    lookup = {category.lower(): category for category in column.categories or ()}
    lookup |= {alias.lower(): target for alias, target in (column.aliases or {}).items()}
    return lookup


def _typed_column(
    frame: pl.DataFrame, column: ColumnSpec, header: str
) -> tuple[pl.Series, pl.Series]:
    """A declared column cast to its type, and a mask of values that could not be cast."""
    raw = frame[header]
    if column.type == "numeric":
        if raw.dtype.is_numeric():
            values = raw.cast(pl.Float64)
            present = values.is_not_null()
        else:
            text = frame.select(_blank(pl.col(header))).to_series()
            values = text.cast(pl.Float64, strict=False)
            present = text.is_not_null()
        # "inf", "nan" and overflowing values parse as floats but are not usable numbers.
        usable = values.is_finite().fill_null(False)
        bad = present & ~usable
        return values.set(~usable, None).alias(column.name), bad
    if column.type == "date":
        if raw.dtype == pl.Date:
            return raw.alias(column.name), pl.Series([False] * frame.height)
        if raw.dtype == pl.Datetime:
            return raw.dt.date().alias(column.name), pl.Series([False] * frame.height)
        text = frame.select(_blank(pl.col(header))).to_series()
        values = _parse_dates(text, column.format)
        return values.alias(column.name), text.is_not_null() & values.is_null()
    text = frame.select(_blank(pl.col(header))).to_series()
    if column.type == "categorical" and (column.categories or column.aliases):
        lookup = _category_lookup(column)
        lowered = text.str.to_lowercase()
        known = lowered.is_in(list(lookup))
        spelled = lowered.replace_strict(lookup, default=None)
        return pl.select(pl.when(known).then(spelled).otherwise(text)).to_series().alias(
            column.name
        ), pl.Series([False] * frame.height)
    return text.alias(column.name), pl.Series([False] * frame.height)


def _parse_dates(text: pl.Series, format: str | None) -> pl.Series:
    """Dates in the given strftime format (ISO 8601 when none); values that do not parse: null."""
    timed = format is not None and any(part in format for part in ("%H", "%M", "%S", "%T"))
    if timed:
        return text.str.to_datetime(format, strict=False).dt.date()
    return text.str.to_date(format, strict=False)


def _expression(
    frame: pl.DataFrame, column: ColumnSpec, index: int, headers: set[str]
) -> pl.Series:
    """A computed column: its SQL expression evaluated on the declared columns and the file's."""
    key = f"columns.{index}.expr"
    try:
        expression = pl.sql_expr(column.expr or "")
        roots = expression.meta.root_names()
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{key}: expr {column.expr!r} of '{column.name}' is not a SQL expression "
            f"({reason}); fix it",
            key=key,
        ) from None
    missing = [root for root in roots if root not in frame.columns]
    if missing:
        raise ConfigError(
            f"{key}: expr of '{column.name}' names {', '.join(missing)}, which is neither a "
            f"declared column nor in the file; the file has {', '.join(sorted(headers))}",
            key=key,
        )
    inputs = frame.select(
        pl.col(root).cast(pl.Float64, strict=False)
        if frame[root].dtype == pl.String and column.type == "numeric"
        else pl.col(root)
        for root in dict.fromkeys(roots)
    )
    try:
        values = inputs.select(expression.alias(column.name)).to_series()
        if column.type == "numeric":
            values = values.cast(pl.Float64)
            values = values.set(~values.is_finite().fill_null(False), None)
        else:
            values = values.cast(pl.String)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{key}: expr {column.expr!r} of '{column.name}' cannot be computed ({reason}); fix it",
            key=key,
        ) from None
    return values


def _number(value: float) -> str:
    """A bound as people write it: 120, 0.5, 1,000,000 (not 1e+06)."""
    return f"{value:,.10g}"


def _check_words(column: ColumnSpec) -> dict[str, str]:
    """How each pandera check on the column reads when a value fails it."""
    low, high = column.min, column.max
    return {
        "in_range": f"is outside {_number(low)}-{_number(high)}"
        if low is not None and high is not None
        else "",
        "greater_than_or_equal_to": "must not be negative"
        if low == 0
        else f"is below the minimum {_number(low)}"
        if low is not None
        else "",
        "less_than_or_equal_to": f"is above the maximum {_number(high)}"
        if high is not None
        else "",
        "isin": f"must be one of {', '.join(column.categories or ())}",
        "field_uniqueness": "appears more than once",
        "not_nullable": "is missing",
    }


def pandera_schema(schema: TableSchema) -> pa.DataFrameSchema:
    """The declared checks as a pandera schema on the typed columns (missing values allowed
    except in the id: each column's missing policy deals with them). Ids are checked for
    uniqueness apart (`_duplicate_problems`), 20 times faster on millions of rows."""
    columns: dict[str, pa.Column] = {ID: pa.Column(pl.String, nullable=False)}
    for column in schema.columns:
        if column.type == "id":
            continue
        checks = []
        if column.type == "numeric":
            if column.min is not None and column.max is not None:
                checks.append(pa.Check.in_range(column.min, column.max))
            elif column.min is not None:
                checks.append(pa.Check.ge(column.min))
            elif column.max is not None:
                checks.append(pa.Check.le(column.max))
        if column.type == "categorical" and column.categories:
            checks.append(pa.Check.isin(list(column.categories)))
        dtype = {"numeric": pl.Float64, "date": pl.Date}.get(column.type, pl.String)
        columns[column.name] = pa.Column(dtype, checks, nullable=True)
    return pa.DataFrameSchema(columns, name="customers")


def _schema_problems(typed: pl.DataFrame, schema: TableSchema) -> list[tuple[int, str]]:
    try:
        pandera_schema(schema).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.filter(pl.col("index").is_not_null())
        problems = []
        for name, check, value, row in cases.select(
            "column", "check", "failure_case", "index"
        ).iter_rows():
            words = _check_words(
                schema.column(name) if name != ID else ColumnSpec(name=ID, type="id")
            )
            said = next((text for key, text in words.items() if str(check).startswith(key)), "")
            said = said or f"fails {check}"
            shown = "" if value is None or said == "is missing" else f" {value}"
            problems.append((int(row), f"{name}{shown} {said}"))
        return problems
    return []


def _typed_table(
    read: _Read, schema: TableSchema, source: str
) -> tuple[pl.DataFrame, list[tuple[int, str]], int]:
    """The declared columns typed and computed, the (row, reason) of each unusable value, and the
    number of blank rows left out."""
    found, _ = resolve_headers(read.headers, schema, source)
    frame = read.frame
    sourced = [header for header in found.values()]
    blank = frame.select(
        pl.all_horizontal(_missing(frame, h) for h in sourced) if sourced else pl.lit(False)
    ).to_series()
    if blank.any():
        frame = frame.filter(~blank)
    columns: list[pl.Series] = [frame[LINE]]
    problems: list[tuple[int, str]] = []
    id_column = schema.id_column
    if id_column is None:
        # No id in the data: customers are numbered by data row.
        columns.append(pl.int_range(1, frame.height + 1, eager=True).cast(pl.String).alias(ID))
    for column in schema.columns:
        if column.expr is not None:
            continue
        values, bad = _typed_column(frame, column, found[column.name])
        if column.type == "id":
            values = values.alias(ID)
        # An empty mask (every row blank) has no dtype: make it Boolean for arg_true.
        for row in bad.cast(pl.Boolean).arg_true().to_list():
            kind = "a date" + (f" in format {column.format}" if column.format else " (YYYY-MM-DD)")
            if column.type == "numeric":
                kind = (
                    "a finite number"
                    if _looks_numeric(frame[found[column.name]][row])
                    else "a number"
                )
            problems.append(
                (row, f"{column.name} '{frame[found[column.name]][row]}' is not {kind}")
            )
        columns.append(values)
    typed = pl.DataFrame(columns)
    headers = set(read.headers)
    for index, column in enumerate(schema.columns):
        if column.expr is not None:
            inputs = typed.hstack(
                [frame[h] for h in frame.columns if h not in typed.columns and h in headers]
            )
            typed = typed.with_columns(_expression(inputs, column, index, headers))
    for column in schema.columns:
        name = ID if column.type == "id" else column.name
        # With a saved model (assign), the schema's imputed values fill such a column in.
        learned = column.name in schema.imputed
        if typed.height and typed[name].null_count() == typed.height and not learned:
            origin = f"header {found[column.name]!r}" if column.name in found else "its expr"
            raise DataError(
                f"{source}: column '{column.name}' ({origin}) has no values in any row; fill it in, "
                "or leave it out of columns"
            )
    return typed, problems, int(blank.sum())


def _looks_numeric(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _duplicate_problems(typed: pl.DataFrame) -> list[tuple[int, str]]:
    """Rows whose id another row has too. Distinct 64-bit hashes prove distinct ids at once; only
    a repeated hash (a duplicate, or very rarely a collision) needs the exact comparison."""
    if typed.select(pl.col(ID).hash(0).n_unique()).item() == typed.height:
        return []
    repeated = typed[ID].is_duplicated() & typed[ID].is_not_null()
    return [
        (row, f"{ID} {typed[ID][row]} appears more than once")
        for row in repeated.arg_true().to_list()
    ]


def _transform_problems(typed: pl.DataFrame, schema: TableSchema) -> list[tuple[int, str]]:
    problems = []
    for column in schema.of_type("numeric"):
        if column.transform == "log1p":
            negative = (typed[column.name] < 0).fill_null(False)
            problems += [
                (
                    row,
                    f"{column.name} {typed[column.name][row]:g} is negative; log1p needs 0 or more",
                )
                for row in negative.arg_true().to_list()
            ]
    return problems


def _category_problems(typed: pl.DataFrame, schema: TableSchema) -> list[tuple[int, str]]:
    """Values a saved model has not seen (assign): no one-hot column exists for them."""
    problems = []
    for name in schema.features:
        column = schema.column(name)
        if column.type != "categorical" or column.categories:
            continue
        known = schema.categories.get(name, ())
        unseen = (~typed[name].is_in(list(known))) & typed[name].is_not_null()
        problems += [
            (
                row,
                f"{name} '{typed[name][row]}' was not seen when the model was fitted (known: {', '.join(known)})",
            )
            for row in unseen.arg_true().to_list()
        ]
    return problems


def _missing_problems(typed: pl.DataFrame, schema: TableSchema) -> list[tuple[int, str]]:
    problems = []
    for column in schema.columns:
        if column.type != "id" and column.missing == "fail":
            problems += [
                (row, f"{column.name} is missing")
                for row in typed[column.name].is_null().arg_true().to_list()
            ]
    return problems


# --- the stage's core -----------------------------------------------------------------------------


def load_customers(
    path: Path,
    schema: TableSchema,
    on_invalid: str,
    as_of: str | None = None,
    learn: bool = True,
) -> Prepared:
    """The valid customers of a CSV or Parquet file, typed and checked as `schema` declares.

    Parameters
    ----------
    path : Path
        The data file (CSV with `,` `;` tab or `|`, or `.parquet`).
    schema : TableSchema
        The declared columns and features (and, with `learn=False`, what a fit learned).
    on_invalid : {"fail", "drop"}
        Stop at invalid rows (listing the first ones with their lines), or leave them out.
    as_of : str or None, default None
        The reference date of date columns (ISO); None: the latest date in the data.
    learn : bool, default True
        Learn imputed values, clip bounds, categories and as_of from the data (fitting). False
        uses the ones in `schema` (labelling new customers with a saved model).
    """
    source = str(path)
    read = _fast_frame(path, schema)
    if read is not None:
        prepared = _validated(read, schema, on_invalid, source, as_of, learn, quiet=True)
        if prepared is not None:
            return prepared
    # The fast path declined, or found problems to explain: read as text, with exact lines.
    prepared = _validated(_text_frame(path), schema, on_invalid, source, as_of, learn, quiet=False)
    assert prepared is not None  # quiet=False explains every problem or returns
    return prepared


def _validated(
    read: _Read,
    schema: TableSchema,
    on_invalid: str,
    source: str,
    as_of: str | None,
    learn: bool,
    quiet: bool,
) -> Prepared | None:
    """Type, check and complete the customers; with `quiet`, None at the first problem instead of
    an explanation (the caller reads the file again with exact line numbers)."""
    # The header first (line 1 of a text file): a file of other columns, JSON say, is told so.
    resolve_headers(
        read.headers,
        schema,
        f"{source}:1" if read.where == "line" else source,
        "fix the column's source in the config"
        if learn
        else "the model was fitted on customers with that column: add it to the file",
    )
    if read.frame.height == 0:
        raise DataError(f"{source}: a header but no customer rows; add one row per customer")
    typed, problems, blank_lines = _typed_table(read, schema, source)
    problems += _schema_problems(typed, schema)
    problems += _transform_problems(typed, schema)
    problems += _duplicate_problems(typed)  # labelled rows are joined back by id: unique too
    if not learn:
        problems += _category_problems(typed, schema)
    problems += _missing_problems(typed, schema)
    if quiet and problems:
        return None
    # A value that is not a number also shows up as missing after the cast: keep the first reason.
    reasons: dict[int, list[str]] = {}
    for row, reason in problems:
        column = reason.split(" ", 1)[0]
        if not any(r.startswith(column + " ") for r in reasons.get(row, [])):
            reasons.setdefault(row, []).append(reason)
    lines = typed[LINE]
    if reasons and (on_invalid == "fail" or not learn):
        first = sorted(reasons)[:5]
        listed = "; ".join(f"{read.where} {lines[row]}: {', '.join(reasons[row])}" for row in first)
        more = (
            f" (and {len(reasons) - len(first)} more row(s))" if len(reasons) > len(first) else ""
        )
        hint = (
            "set prepare.on_invalid: drop to leave them out"
            if learn
            else "leave them out of the file"
        )
        raise DataError(
            f"{source}: {len(reasons)} invalid row(s): {listed}{more}; fix them, or {hint}"
        )
    invalid = sorted(reasons)
    keep: np.ndarray = np.ones(typed.height, dtype=bool)
    keep[invalid] = False
    rejected = {row: "; ".join(reasons[row]) for row in invalid}
    missing: dict[str, dict[str, Any]] = {}
    for spec in schema.columns:
        if spec.type == "id":
            continue
        nulls = typed[spec.name].is_null().to_numpy()
        count = int((nulls & keep).sum())
        if count:
            missing[spec.name] = {"policy": spec.missing, "missing": count}
        if spec.missing == "drop" and count:
            for dropped in np.flatnonzero(nulls & keep).tolist():
                rejected[dropped] = f"{spec.name} is missing (missing: drop)"
            missing[spec.name]["dropped"] = count
            keep &= ~nulls
    if quiet and rejected and not read.exact_lines:
        return None  # rows are named in rejects.csv: read again with exact line numbers
    order = sorted(rejected)
    rejects = pl.DataFrame(
        {
            LINE: [lines[row] for row in order],
            ID: [typed[ID][row] for row in order],
            "reason": [rejected[row] for row in order],
        },
        schema={LINE: pl.Int64, ID: pl.String, "reason": pl.String},
    )
    customers = typed.filter(pl.Series(keep))
    needed = FIT_MINIMUM if learn else 1
    if customers.height < needed:
        raise DataError(
            f"{source}: only {customers.height} valid customer row(s); at least {needed} are needed"
        )
    resolved = _learned(customers, schema, as_of) if learn else schema
    customers = _filled(customers, resolved, missing)
    if learn:
        _refuse_constant_features(customers, resolved, source)
    _, ignored = resolve_headers(read.headers, schema, source)
    return Prepared(
        customers=customers.select(LINE, ID, *(c.name for c in schema.columns if c.type != "id")),
        rejects=rejects,
        blank_lines=blank_lines,
        schema=resolved,
        ignored_columns=tuple(
            h for h in ignored if h not in _expression_inputs(schema, read.headers)
        ),
        missing=missing,
    )


def _mode(values: pl.Series) -> Any:
    """The most frequent value; ties go to the smallest, so the choice does not depend on row order."""
    counts = values.drop_nulls().value_counts(sort=False)
    top = counts["count"].max()
    return counts.filter(pl.col("count") == top)[values.name].sort()[0]


def _learned(customers: pl.DataFrame, schema: TableSchema, as_of: str | None) -> TableSchema:
    """The schema completed from the data: imputed values, categories, clip bounds and as_of."""
    imputed: dict[str, float | str] = {}
    for column in schema.columns:
        values = customers[column.name] if column.type != "id" else None
        # Learned even with nothing missing here: new customers (assign) may miss the value.
        if values is None or not column.imputes:
            continue
        if column.missing == "median":
            median = (
                values.drop_nulls().sort()[(values.drop_nulls().len() - 1) // 2]
                if column.type == "date"
                else values.median()
            )
            imputed[column.name] = (
                median.isoformat() if isinstance(median, dt.date) else float(str(median))
            )
        elif column.missing == "mode":
            mode = _mode(values)
            imputed[column.name] = mode.isoformat() if isinstance(mode, dt.date) else mode
        else:
            imputed[column.name] = (
                column.missing if column.type == "numeric" else str(column.missing)
            )
    categories: dict[str, tuple[str, ...]] = {}
    for column in schema.of_type("categorical"):
        seen = customers[column.name].drop_nulls().unique().sort().to_list()
        fill = imputed.get(column.name)
        if fill is not None and fill not in seen:
            seen = sorted([*seen, str(fill)])
        categories[column.name] = column.categories or tuple(seen)
    clip_bounds = {}
    for column in schema.of_type("numeric"):
        if column.clip is not None:
            values = customers[column.name].drop_nulls()
            low, high = (
                float(values.quantile(q, interpolation="linear") or 0.0) for q in column.clip
            )
            clip_bounds[column.name] = (low, high)
    dates = schema.of_type("date")
    reference = as_of
    if reference is None and dates:
        latest = max(customers[column.name].max() for column in dates)  # type: ignore[type-var]
        reference = latest.isoformat() if isinstance(latest, dt.date) else None
    return schema.model_copy(
        update={
            "as_of": reference,
            "imputed": imputed,
            "clip_bounds": clip_bounds,
            "categories": categories,
        }
    )


def _filled(
    customers: pl.DataFrame, schema: TableSchema, missing: dict[str, dict[str, Any]]
) -> pl.DataFrame:
    """Missing values filled with each column's imputed value (counted in `missing`)."""
    fills = []
    for name, value in schema.imputed.items():
        column = schema.column(name)
        if column.type == "date":
            fills.append(pl.col(name).fill_null(dt.date.fromisoformat(str(value))))
        else:
            fills.append(pl.col(name).fill_null(value))
        if name in missing:
            missing[name]["filled_with"] = value
    return customers.with_columns(fills) if fills else customers


def _refuse_constant_features(customers: pl.DataFrame, schema: TableSchema, source: str) -> None:
    """A feature that is the same for every customer cannot separate them."""
    for name in schema.features:
        if customers[name].n_unique() >= 2:
            continue
        if schema.column(name).type == "categorical":
            raise DataError(
                f"{source}: feature '{name}' has one category only ({customers[name][0]!r}): it "
                "cannot separate customers; remove it from features"
            )
        if customers[name].n_unique() < 2:
            raise DataError(
                f"{source}: feature '{name}' is constant ({customers[name][0]}): it cannot "
                "separate customers; remove it from features"
            )


# --- the feature matrix ---------------------------------------------------------------------------


def unscaled_matrix(customers: pl.DataFrame, schema: TableSchema) -> np.ndarray:
    """The feature matrix before scaling: one column per numeric or date feature, one indicator per
    category of a categorical feature (`schema.matrix_columns`)."""
    expressions = []
    for name in schema.features:
        column = schema.column(name)
        if column.type == "categorical":
            expressions += [
                (pl.col(name) == category)
                .cast(pl.Float64)
                .alias(f"{name}{CATEGORY_SEPARATOR}{category}")
                for category in schema.categories[name]
            ]
        else:
            expressions.append(feature_value(column, schema))
    return customers.select(expressions).to_numpy()


def fit_scaler(matrix: np.ndarray, schema: TableSchema, method: Scaling) -> Scaler:
    """Learn the scaling of each feature-matrix column.

    Numeric and date columns follow `method` (a constant column keeps scale 1 instead of dividing
    by 0). The indicators of one categorical column are centred on their shares p and divided by
    sqrt(sum p(1 - p)), so that together they have variance 1: one categorical column counts like
    one standardised numeric column, whatever its number of categories.
    """
    columns = schema.matrix_columns
    width = matrix.shape[1]
    if method is Scaling.NONE:
        center, scale = np.zeros(width), np.ones(width)
    elif method is Scaling.STANDARD:
        fitted = StandardScaler().fit(matrix)
        center, scale = fitted.mean_, fitted.scale_
    elif method is Scaling.MINMAX:
        fitted_minmax = MinMaxScaler().fit(matrix)
        center = fitted_minmax.data_min_
        scale = np.where(fitted_minmax.data_range_ == 0, 1.0, fitted_minmax.data_range_)
    else:
        fitted_robust = RobustScaler().fit(matrix)
        center, scale = fitted_robust.center_, fitted_robust.scale_
    center, scale = np.array(center, dtype=float), np.array(scale, dtype=float)
    for name in schema.features:
        if schema.column(name).type != "categorical":
            continue
        block = [i for i, c in enumerate(columns) if c.partition(CATEGORY_SEPARATOR)[0] == name]
        shares = matrix[:, block].mean(axis=0)
        spread = math.sqrt(float((shares * (1 - shares)).sum())) or 1.0
        center[block], scale[block] = shares, spread
    return Scaler(
        method=method,
        columns=columns,
        center=tuple(float(v) for v in center),
        scale=tuple(float(v) for v in scale),
    )


def with_features(customers: pl.DataFrame, scaler: Scaler, unscaled: np.ndarray) -> pl.DataFrame:
    """The customers with the scaled feature matrix appended as `feature_<column>` columns."""
    scaled = scaler.transform(unscaled)
    return customers.with_columns(
        pl.Series(FEATURE_PREFIX + name, scaled[:, i]) for i, name in enumerate(scaler.columns)
    )


# --- the summary ----------------------------------------------------------------------------------


def population(customers: pl.DataFrame, schema: TableSchema) -> dict[str, dict[str, float]]:
    """Mean, spread, range and median of every numeric and date column (dates as days before
    as_of), and the same of each numeric feature as K-Means sees it (`feature_mean`,
    `feature_std`: after clipping and transform), over all customers."""
    stats: dict[str, dict[str, float]] = {}
    for column in schema.measures:
        values = customers.select(measure(column, schema)).to_series()
        seen = customers.select(feature_value(column, schema)).to_series()
        stats[column.name] = {
            "mean": float(values.mean() or 0.0),  # type: ignore[arg-type]
            "std": float(values.std() or 0.0),  # type: ignore[arg-type]
            "min": float(values.min() or 0.0),  # type: ignore[arg-type]
            "max": float(values.max() or 0.0),  # type: ignore[arg-type]
            "median": float(values.median() or 0.0),  # type: ignore[arg-type]
            "feature_mean": float(seen.mean() or 0.0),  # type: ignore[arg-type]
            "feature_std": float(seen.std() or 0.0),  # type: ignore[arg-type]
        }
    return stats


def category_shares(customers: pl.DataFrame, schema: TableSchema) -> dict[str, dict[str, float]]:
    """Each categorical column's share of every category over all customers, largest first."""
    shares: dict[str, dict[str, float]] = {}
    for column in schema.of_type("categorical"):
        counts = customers[column.name].drop_nulls().value_counts(sort=False)
        total = max(int(counts["count"].sum()), 1)
        rows = sorted(counts.iter_rows(), key=lambda row: (-row[1], str(row[0])))
        shares[column.name] = {str(value): count / total for value, count in rows}
    return shares


def _check_lines(schema: TableSchema) -> list[str]:
    """The checks every row used has passed, in words."""
    lines = ["declared columns present (headers compared ignoring case and punctuation)"]
    id_column = schema.id_column
    lines.append(
        f"{id_column.name} present and unique" if id_column else "customers numbered by data row"
    )
    for column in schema.columns:
        if column.type == "numeric":
            bounds = (
                f" in {_number(column.min)}-{_number(column.max)}"
                if column.min is not None and column.max is not None
                else f" of at least {_number(column.min)}"
                if column.min is not None
                else f" of at most {_number(column.max)}"
                if column.max is not None
                else ""
            )
            lines.append(f"{column.name} a number{bounds}")
        elif column.type == "categorical" and column.categories:
            lines.append(f"{column.name} one of {', '.join(column.categories)}")
        elif column.type == "date":
            lines.append(f"{column.name} a date ({column.format or 'YYYY-MM-DD'})")
    failing = [c.name for c in schema.columns if c.type != "id" and c.missing == "fail"]
    if failing:
        lines.append(f"no missing values in {', '.join(failing)}")
    return lines


def summarise(prepared: Prepared, scaler: Scaler, unscaled: np.ndarray) -> dict[str, Any]:
    customers = prepared.customers
    schema = prepared.schema
    clipped = {}
    for name, (low, high) in schema.clip_bounds.items():
        values = customers[name]
        clipped[name] = {
            "quantiles": list(schema.column(name).clip or ()),
            "low": low,
            "high": high,
            "clipped": int(((values < low) | (values > high)).sum()),
        }
    distinct = pl.DataFrame(
        unscaled, schema=[f"c{i}" for i in range(unscaled.shape[1])], orient="row"
    )
    return {
        "rows_read": customers.height + prepared.rejects.height,
        "rows_valid": customers.height,
        "rows_rejected": prepared.rejects.height,
        "blank_lines_skipped": prepared.blank_lines,
        "ignored_columns": list(prepared.ignored_columns),
        "checks": _check_lines(schema),
        "missing": prepared.missing,
        "clipped": clipped,
        "as_of": schema.as_of,
        "features": list(schema.features),
        "schema": schema.model_dump(mode="json"),
        "scaler": scaler.to_dict(),
        "distinct_points": int(distinct.select(pl.struct(pl.all()).n_unique()).item()),
        "population": population(customers, schema),
        "category_shares": category_shares(customers, schema),
    }
