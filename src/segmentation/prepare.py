"""Stage 1, prepare: read the raw CSV, validate it, and build the scaled feature matrix."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandera.polars as pa
import polars as pl
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from segmentation.config import Scaling
from segmentation.errors import DataError
from segmentation.reading import detect_separator

COLUMNS = ("customer_id", "gender", "age", "annual_income", "spending_score")
NUMERIC = ("age", "annual_income", "spending_score")
LINE = "source_line"
FEATURE_PREFIX = "feature_"
GENDERS = ("Female", "Male")
MAX_INCOME = 1_000_000
"""Annual incomes above this many k$ (a billion dollars) are taken for data errors."""

# Header spellings seen in the wild, compared after lower-casing and dropping everything
# that is not a letter or digit ("Annual Income (k$)" -> "annualincomek").
HEADER_ALIASES: dict[str, str] = {
    **dict.fromkeys(["customerid", "customer", "custid", "id", "clientid"], "customer_id"),
    **dict.fromkeys(["gender", "genre", "sex"], "gender"),
    **dict.fromkeys(["age", "ageyears"], "age"),
    **dict.fromkeys(
        ["annualincomek", "annualincome", "annualincomekusd", "income", "incomek"], "annual_income"
    ),
    **dict.fromkeys(["spendingscore1100", "spendingscore", "score", "spending"], "spending_score"),
}
GENDER_ALIASES = {"female": "Female", "f": "Female", "male": "Male", "m": "Male"}

SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(pl.String, unique=True, nullable=False),
        "gender": pa.Column(pl.String, pa.Check.isin(GENDERS), nullable=False),
        "age": pa.Column(pl.Float64, pa.Check.in_range(0, 120), nullable=False),
        "annual_income": pa.Column(
            pl.Float64, [pa.Check.ge(0), pa.Check.le(MAX_INCOME)], nullable=False
        ),
        "spending_score": pa.Column(pl.Float64, pa.Check.in_range(1, 100), nullable=False),
    },
    name="customers",
)
# The fast path checks that ids are distinct through their 64-bit hashes, 20 times faster than
# comparing the strings of 10M ids: distinct hashes mean distinct ids. Any repeated hash (a
# duplicate, or very rarely a collision) sends the file to the text-based reader's exact check.
FAST_SCHEMA = SCHEMA.update_column("customer_id", unique=False)
CHECK_WORDS = {
    "isin": "must be Female or Male",
    "in_range": "is out of range",
    "greater_than_or_equal_to": "must not be negative",
    "less_than_or_equal_to": f"is implausibly large (over {MAX_INCOME:,} k$)",
    "field_uniqueness": "appears more than once",
    "not_nullable": "is missing",
}


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
    """Valid rows: the canonical columns plus `source_line` (line number in the CSV)."""
    rejects: pl.DataFrame
    """Invalid rows that were dropped: `source_line`, `customer_id`, `reason`."""
    blank_lines: int


def _normalise_header(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _header_renames(columns: list[str]) -> dict[str, str]:
    """Map each recognised header spelling to its canonical column (the first one wins)."""
    renames: dict[str, str] = {}
    for column in columns:
        canonical = HEADER_ALIASES.get(_normalise_header(column))
        if canonical is not None and canonical not in renames.values():
            renames[column] = canonical
    return renames


def _typed_csv(path: Path) -> pl.DataFrame | None:
    """Read a well-formed CSV straight into typed columns, or None if anything looks off.

    This is the fast path for large files; whatever it declines, the text-based reader
    explains with file and line.
    """
    try:
        with path.open("rb") as handle:
            line = handle.readline()
        header = line.decode("utf-8-sig").rstrip("\r\n")
        if "\r" in header:
            return None  # old Mac line endings: the text-based reader converts them
        separator = detect_separator(header)
        renames = _header_renames(next(csv.reader([header], delimiter=separator), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if sorted(renames.values()) != sorted(COLUMNS):
        return None
    types = {"customer_id": pl.String, "gender": pl.String} | dict.fromkeys(NUMERIC, pl.Float64)
    scan = pl.scan_csv(
        path,
        separator=separator,
        infer_schema=False,
        schema_overrides={original: types[canonical] for original, canonical in renames.items()},
    )
    columns = scan.select(
        pl.col(original).alias(canonical) for original, canonical in renames.items()
    ).select(COLUMNS)
    return _collect_typed(columns, first_line=2)


def _typed_parquet(path: Path) -> pl.DataFrame | None:
    """A Parquet file whose columns are all present and whose numeric columns are stored as
    numbers, read straight into typed columns (numbered by row); None for anything else."""
    try:
        schema = pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError):
        return None
    renames = _header_renames(list(schema))
    if sorted(renames.values()) != sorted(COLUMNS):
        return None
    if not all(
        schema[name].is_numeric() for name, canonical in renames.items() if canonical in NUMERIC
    ):
        return None
    columns = (
        pl.scan_parquet(path)
        .select(pl.col(original).alias(canonical) for original, canonical in renames.items())
        .select(pl.col("customer_id", "gender").cast(pl.String), pl.col(NUMERIC).cast(pl.Float64))
    )
    return _collect_typed(columns, first_line=1)


def _collect_typed(columns: pl.LazyFrame, first_line: int) -> pl.DataFrame | None:
    """The canonical typed columns with text trimmed and gender spelled out, numbered from
    `first_line`, in one pass (no second copy of the customers); None if Polars cannot read them."""
    try:
        return (
            columns.with_columns(pl.col("customer_id", "gender").str.strip_chars())
            .with_columns(_normalised_gender())
            .with_row_index(LINE, offset=first_line)
            .with_columns(pl.col(LINE).cast(pl.Int64))
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return None


def _passes_fast_checks(customers: pl.DataFrame) -> bool:
    """Every row valid (pandera) and every id distinct (by hash, see FAST_SCHEMA); when not, the
    text-based reader finds and explains the problems."""
    if customers.select(pl.col("customer_id").hash(0).n_unique()).item() < customers.height:
        return False
    try:
        FAST_SCHEMA.validate(customers.select(COLUMNS), lazy=True)
    except pa.errors.SchemaErrors:
        return False
    return True


def load_customers(path: Path, on_invalid: str) -> Prepared:
    """The valid customers of a CSV or Parquet file: typed fast when the file is clean, else
    through the text-based reader, which names every problem with its line (or row)."""
    parquet = path.suffix.lower() == ".parquet"
    typed = _typed_parquet(path) if parquet else _typed_csv(path)
    if typed is not None and typed.height >= 3:
        blank = typed.select(pl.all_horizontal(pl.col(COLUMNS).is_null())).to_series()
        customers = typed.filter(~blank) if blank.any() else typed
        if _passes_fast_checks(customers):
            empty = pl.DataFrame(
                schema={LINE: pl.Int64, "customer_id": pl.String, "reason": pl.String}
            )
            return Prepared(customers=customers, rejects=empty, blank_lines=int(blank.sum()))
    text = _parquet_as_text(path) if parquet else read_customers_csv(path)
    return validate_customers(text, path, on_invalid)


def _trimmed_text() -> list[pl.Expr]:
    """Each canonical text column without surrounding spaces, an empty value read as missing."""
    return [
        pl.when(pl.col(c).str.strip_chars() == "")
        .then(None)
        .otherwise(pl.col(c).str.strip_chars())
        .alias(c)
        for c in COLUMNS
    ]


def _parquet_as_text(path: Path) -> pl.DataFrame:
    """A Parquet file's customers as text columns, numbered by row, for the same validation."""
    try:
        raw = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})"
        ) from None
    renames = _header_renames(raw.columns)
    missing = [name for name in COLUMNS if name not in renames.values()]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(raw.columns)}"
        )
    if raw.height == 0:
        raise DataError(f"{path}: no customer rows")
    return (
        raw.select(
            pl.col(original).cast(pl.String).alias(canonical)
            for original, canonical in renames.items()
        )
        .select(COLUMNS)
        .with_columns(_trimmed_text())
        .with_row_index(LINE, offset=1)
        .with_columns(pl.col(LINE).cast(pl.Int64))
    )


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


def read_customers_csv(path: Path) -> pl.DataFrame:
    """Read the CSV as text, rename known header variants and number each row by its file line.

    Accepts a UTF-8 BOM, Windows or old Mac (CR only) line endings and `;`, tab or `|` as
    delimiters.
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
    renames = _header_renames(raw.columns)
    missing = [name for name in COLUMNS if name not in renames.values()]
    if missing:
        raise DataError(
            f"{path}:1: missing column(s) {', '.join(missing)}; found {', '.join(raw.columns) or 'none'}"
            f"; expected headers like CustomerID, Gender, Age, Annual Income (k$), Spending Score (1-100)"
        )
    if raw.height == 0:
        raise DataError(f"{path}: a header but no customer rows; add one row per customer")
    # Line 1 is the header, so row i of the frame is line i + 2 of the file, unless a quoted
    # field spans lines.
    starts = _record_lines(text, separator) if '"' in text else None
    lines = (
        pl.Series(LINE, starts, dtype=pl.Int64)
        if starts is not None and len(starts) == raw.height
        else pl.int_range(2, raw.height + 2, dtype=pl.Int64, eager=True).alias(LINE)
    )
    return raw.rename(renames).select(COLUMNS).with_columns(_trimmed_text()).select(lines, *COLUMNS)


def _normalised_gender() -> pl.Expr:
    """Gender spelled Female or Male whatever the case, or M/F; anything else left to refuse."""
    key = pl.col("gender").str.to_lowercase()
    return (
        pl.when(key.is_in(list(GENDER_ALIASES)))
        .then(key.replace_strict(GENDER_ALIASES, default=None))
        .otherwise(pl.col("gender"))
        .alias("gender")
    )


def _typed(text: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Cast text columns to their types; list (row, reason) for values that are not numbers."""
    parsed = text.with_columns(pl.col(NUMERIC).cast(pl.Float64, strict=False), _normalised_gender())
    # "inf", "nan" and overflowing values parse as floats but are not usable numbers.
    typed = parsed.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in NUMERIC
    )
    problems: list[tuple[int, str]] = []
    for column in NUMERIC:
        unusable = text[column].is_not_null() & typed[column].is_null()
        for row in unusable.arg_true().to_list():
            kind = "a number" if parsed[column][row] is None else "a finite number"
            problems.append((row, f"{column} '{text[column][row]}' is not {kind}"))
    return typed, problems


def _schema_problems(typed: pl.DataFrame) -> list[tuple[int, str]]:
    try:
        SCHEMA.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.filter(pl.col("index").is_not_null())
        problems = []
        for column, check, value, row in cases.select(
            "column", "check", "failure_case", "index"
        ).iter_rows():
            words = next(
                (text for key, text in CHECK_WORDS.items() if str(check).startswith(key)),
                f"fails {check}",
            )
            if str(check).startswith("in_range"):
                low, high = re.findall(r"[-\d.]+", str(check))[:2]
                words = f"is outside {low}-{high}"
            shown = "" if value is None or words == "is missing" else f" {value}"
            problems.append((int(row), f"{column}{shown} {words}"))
        return problems
    return []


def validate_customers(text: pl.DataFrame, source: Path, on_invalid: str) -> Prepared:
    """Type and validate the rows; fail on invalid rows or drop them with a reason each."""
    blank = text.select(pl.all_horizontal(pl.col(COLUMNS).is_null())).to_series()
    text = text.filter(~blank)
    typed, problems = _typed(text)
    problems += _schema_problems(typed)
    # A value that is not a number also shows up as missing after the cast: keep the first reason.
    reasons: dict[int, list[str]] = {}
    for row, reason in problems:
        column = reason.split(" ", 1)[0]
        if not any(r.startswith(column + " ") for r in reasons.get(row, [])):
            reasons.setdefault(row, []).append(reason)
    lines = typed[LINE]
    if reasons and on_invalid == "fail":
        first = sorted(reasons)[:5]
        where = "row" if source.suffix.lower() == ".parquet" else "line"
        listed = "; ".join(f"{where} {lines[row]}: {', '.join(reasons[row])}" for row in first)
        more = (
            f" (and {len(reasons) - len(first)} more row(s))" if len(reasons) > len(first) else ""
        )
        raise DataError(
            f"{source}: {len(reasons)} invalid row(s): {listed}{more}; fix them, or set "
            "prepare.on_invalid: drop to leave them out"
        )
    invalid = sorted(reasons)
    rejects = pl.DataFrame(
        {
            LINE: [lines[row] for row in invalid],
            "customer_id": [text["customer_id"][row] for row in invalid],
            "reason": ["; ".join(reasons[row]) for row in invalid],
        },
        schema={LINE: pl.Int64, "customer_id": pl.String, "reason": pl.String},
    )
    keep = np.ones(typed.height, dtype=bool)
    keep[invalid] = False
    customers = typed.filter(pl.Series(keep)).select(LINE, *COLUMNS)
    if customers.height < 3:
        raise DataError(
            f"{source}: only {customers.height} valid customer row(s); at least 3 are needed"
        )
    return Prepared(customers=customers, rejects=rejects, blank_lines=int(blank.sum()))


def feature_columns(features: tuple[str, ...]) -> tuple[str, ...]:
    """Columns of the feature matrix: numeric features as they are, gender one-hot."""
    columns: list[str] = []
    for name in features:
        columns += [f"gender_{g.lower()}" for g in GENDERS] if name == "gender" else [name]
    return tuple(columns)


def unscaled_matrix(customers: pl.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    expressions = []
    for name in features:
        if name == "gender":
            expressions += [
                (pl.col("gender") == g).cast(pl.Float64).alias(f"gender_{g.lower()}")
                for g in GENDERS
            ]
        else:
            expressions.append(pl.col(name).cast(pl.Float64))
    return customers.select(expressions).to_numpy()


def fit_scaler(matrix: np.ndarray, columns: tuple[str, ...], method: Scaling) -> Scaler:
    """Learn the scaling of each column; a constant column keeps scale 1 instead of dividing by 0."""
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
    return Scaler(
        method=method,
        columns=columns,
        center=tuple(float(v) for v in center),
        scale=tuple(float(v) for v in scale),
    )


def with_features(
    customers: pl.DataFrame, scaler: Scaler, features: tuple[str, ...]
) -> pl.DataFrame:
    """The customers with the scaled feature matrix appended as `feature_<column>` columns."""
    scaled = scaler.transform(unscaled_matrix(customers, features))
    return customers.with_columns(
        pl.Series(FEATURE_PREFIX + name, scaled[:, i]) for i, name in enumerate(scaler.columns)
    )


def feature_matrix(prepared: pl.DataFrame) -> np.ndarray:
    """The scaled feature matrix stored in a prepared frame."""
    return prepared.select(pl.selectors.starts_with(FEATURE_PREFIX)).to_numpy()


def summarise(prepared: Prepared, scaler: Scaler, features: tuple[str, ...]) -> dict[str, Any]:
    customers = prepared.customers
    return {
        "rows_read": customers.height + prepared.rejects.height,
        "rows_valid": customers.height,
        "rows_rejected": prepared.rejects.height,
        "blank_lines_skipped": prepared.blank_lines,
        "checks": [
            "required columns present (header variants accepted)",
            "customer_id present and unique",
            "gender is Female or Male",
            "age a number in 0-120",
            f"annual_income a number from 0 to {MAX_INCOME:,} (k$)",
            "spending_score a number in 1-100",
            "no missing values",
        ],
        "features": list(features),
        "scaler": scaler.to_dict(),
        "distinct_points": int(customers.select(pl.struct(features).n_unique()).item()),
        "population": {
            column: {
                "mean": float(customers[column].mean()),  # type: ignore[arg-type]
                "std": float(customers[column].std()),  # type: ignore[arg-type]
                "min": float(customers[column].min()),  # type: ignore[arg-type]
                "max": float(customers[column].max()),  # type: ignore[arg-type]
            }
            for column in NUMERIC
        },
        "female_share": float((customers["gender"] == "Female").mean()),  # type: ignore[arg-type]
    }
