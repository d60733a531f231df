"""A first config for any customer table: each column's type inferred, written as commented YAML.

`segment init` reads the table once, decides what each column is (id, numeric, categorical or
date), proposes the numeric columns as features and writes the whole config, every decision
explained in a comment above the entry it made.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import polars as pl
import yaml

from segmentation.errors import DataError
from segmentation.reading import detect_separator, header_line

ColumnType = Literal["id", "numeric", "categorical", "date"]

ID_COLUMN = "customer_id"
"""The name of the id column; reserved, so no other column takes it."""

CODE_MAX_DISTINCT = 10
"""Integer columns with at most this many distinct values may be category codes."""
CODE_MIN_ROWS_PER_VALUE = 3
"""... if each distinct value also appears, on average, on at least this many rows."""
LOG1P_MIN_SKEWNESS = 2.0
"""A non-negative numeric column skewed beyond this gets `transform: log1p`."""

_DAY_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y")
_TIME_SUFFIXES = ("", " %H:%M", " %H:%M:%S")
DATE_FORMATS = (
    *(day + time for day in _DAY_FORMATS for time in _TIME_SUFFIXES),
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
)
"""Recognised date formats, day-first before month-first (the order breaks ties)."""
COMPACT_DATE_FORMAT = "%Y%m%d"
"""Tried only on 8-digit text: on other numbers it would read too much as dates."""
DATE_SAMPLE = 1_000
"""Values every format is tried on before the whole column is checked (fast rejection)."""

_ID_WORDS = frozenset({"id", "ids", "uuid", "guid"})
_NUMBER_WORDS = frozenset({"no", "nr", "num", "number", "key"})
_WHO_WORDS = frozenset(
    {"customer", "cust", "client", "account", "acct", "member", "user", "person", "contract"}
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_TRAILING_PARENTHESIS = re.compile(r"\(([^()]*)\)\s*$")
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|\u2013|to)\s*(-?\d+(?:\.\d+)?)\s*$")
_EIGHT_DIGITS = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class Column:
    """One entry of `columns:`, and why its type was chosen."""

    name: str
    source: str
    type: ColumnType
    reason: str
    format: str | None = None
    min: float | None = None
    max: float | None = None
    label: str | None = None
    unit: str | None = None
    missing: str | None = None
    transform: str | None = None
    proposed: bool = False
    """Whether to propose it as a feature (not part of the entry)."""

    def entry(self) -> dict[str, Any]:
        """The config entry: keys in the documented order, unset ones left out."""
        keys = ("name", "source", "type", "format", "min", "max", "label", "unit", "missing")
        values = {key: getattr(self, key) for key in (*keys, "transform")}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Inference:
    """What `segment init` decided about a table."""

    columns: tuple[Column, ...]
    """The declared columns, in the table's order."""
    features: tuple[str, ...]
    """The proposed `features:` (declared column names)."""
    decisions: tuple[str, ...]
    """One human-readable line per decision, column by column, then the table as a whole."""


@dataclass(frozen=True)
class DateFormat:
    """The format every value of a date column reads with, and what settled it."""

    format: str
    note: str


# --- reading -----------------------------------------------------------------------------------


def read_table(path: Path) -> pl.DataFrame:
    """Read a customer table: Parquet by its `.parquet` suffix, otherwise CSV.

    Parameters
    ----------
    path
        The data file.

    Returns
    -------
    pl.DataFrame
        Parquet columns as stored; CSV columns as text (types are inferred afterwards).

    Raises
    ------
    DataError
        The file is missing, unreadable, empty, or has no rows.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise DataError(f"{path}: not a file; pass a CSV or Parquet file")
    frame = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_csv(path)
    if frame.width == 0:
        raise DataError(f"{path}: no columns; pass a table with a header")
    if frame.height == 0:
        raise DataError(f"{path}: no rows, only a header; init infers the columns from the data")
    return frame


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        header = header_line(path)
        with path.open("rb") as handle:
            first_line = handle.readline()
        # A first line without a line feed is the whole file: old Mac (CR only) line endings.
        source: Path | io.BytesIO = path
        if not first_line.endswith(b"\n"):
            source = io.BytesIO(path.read_bytes().replace(b"\r", b"\n"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as UTF-8 CSV or Parquet") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not header.strip():
        raise DataError(f"{path}: empty; pass a CSV with a header line and rows")
    separator = detect_separator(header)
    repeated = _repeated(next(csv.reader([header], delimiter=separator)))
    if repeated:
        raise DataError(f"{path}:1: column '{repeated}' appears twice in the header; rename one")
    try:
        return pl.read_csv(source, separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: not a readable CSV file ({_first_line(exc)})") from None


def _repeated(headers: list[str]) -> str | None:
    counts = Counter(header.strip() for header in headers)
    return next((header for header, count in counts.items() if count > 1 and header), None)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- names -------------------------------------------------------------------------------------


def header_words(header: str) -> list[str]:
    """The words of a header, lower case: split at punctuation, spaces and camelCase.

    Examples: `CustomerID` -> customer, id; `Annual Income (k$)` -> annual, income, k.
    """
    ascii_text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode()
    return [word.lower() for word in _WORD.findall(ascii_text)]


def looks_like_id(header: str) -> bool:
    """Whether a header names an id: its last word is `id` (`CustomerID`, `CUST_ID`, `id`), or a
    number word after a word for who is numbered (`client no`, `account number`)."""
    words = header_words(header)
    if not words:
        return False
    if words[-1] in _ID_WORDS:
        return True
    return words[-1] in _NUMBER_WORDS and any(word in _WHO_WORDS for word in words[:-1])


def header_range(header: str) -> tuple[float, float] | None:
    """The range a header states in a trailing parenthesis: `Spending Score (1-100)` -> (1, 100)."""
    match = _TRAILING_PARENTHESIS.search(header)
    found = _RANGE.match(match.group(1)) if match else None
    if found is None:
        return None
    low, high = (_number(found.group(index)) for index in (1, 2))
    return (low, high) if low < high else None


def header_unit(header: str) -> str | None:
    """The unit in a trailing parenthesis that is not a range: `Annual Income (k$)` -> `k$`."""
    match = _TRAILING_PARENTHESIS.search(header)
    if match is None or header_range(header) is not None:
        return None
    return match.group(1).strip() or None


def snake_name(header: str) -> str:
    """A snake_case name for a header (`Annual Income (k$)` -> `annual_income_k`).

    A stated range (`(1-100)`) is left out: it becomes the column's min and max. The result may
    be empty or start with a digit; `unique_names` settles both.
    """
    text = _TRAILING_PARENTHESIS.sub("", header) if header_range(header) else header
    return "_".join(header_words(text))


def unique_names(candidates: list[str], reserved: frozenset[str]) -> list[str]:
    """Valid, distinct names (`^[a-z][a-z0-9_]*$`) for candidate names, in order.

    An empty candidate becomes `column_<position>` (from 1), one starting with a digit gets a
    `column_` prefix, and a name already taken (or reserved) gets `_2`, `_3`, ...
    """
    taken = set(reserved)
    names = []
    for position, candidate in enumerate(candidates, start=1):
        base = candidate or f"column_{position}"
        base = f"column_{base}" if base[0].isdigit() else base
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names.append(name)
    return names


def display_label(header: str, name: str) -> str | None:
    """The header as a label (without a trailing parenthesis) when its words differ from the
    name's: `Annual Income (k$)` labels `annual_income_k` as `Annual Income`; `Age` labels
    nothing."""
    label = _TRAILING_PARENTHESIS.sub("", header).strip() or header
    return label if header_words(label) != name.split("_") else None


# --- types -------------------------------------------------------------------------------------


def detect_date_format(values: pl.Series) -> DateFormat | None:
    """The format every value reads with, if one of `DATE_FORMATS` does (with a four-digit year).

    `%Y%m%d` is tried only when every value is 8-digit text. When a day-first and a month-first
    format both read every value, no value proves either (a first field above 12 would prove
    day-first, a second one month-first): day-first is chosen and the note says it was ambiguous.

    Parameters
    ----------
    values
        Non-null text values, trimmed.

    Returns
    -------
    DateFormat or None
        None when no format reads every value.
    """
    formats = list(DATE_FORMATS)
    if values.str.contains(_EIGHT_DIGITS.pattern).all():
        formats.append(COMPACT_DATE_FORMAT)
    sample = values.head(DATE_SAMPLE)
    readers = [fmt for fmt in formats if _reads_all(sample, fmt)]
    readers = [fmt for fmt in readers if _reads_all(values, fmt)]
    if not readers:
        return None
    chosen = readers[0]
    swapped = _day_month_swapped(chosen)
    if swapped is None:
        return DateFormat(chosen, f"every value reads as {chosen}")
    order = "day-first" if chosen.index("%d") < chosen.index("%m") else "month-first"
    if swapped in readers:
        return DateFormat(
            chosen,
            f"every value reads as {chosen}; ambiguous: every value also reads month-first as "
            f"{swapped}, so day-first was chosen: change format if the dates are month-first",
        )
    proof = values.filter(_parsed(values, swapped).is_null())[0]
    return DateFormat(chosen, f"every value reads as {chosen}; {order}, as {proof} proves")


def _parsed(values: pl.Series, fmt: str) -> pl.Series:
    return values.str.strptime(pl.Datetime, fmt, strict=False, exact=True)


def _reads_all(values: pl.Series, fmt: str) -> bool:
    parsed = _parsed(values, fmt)
    earliest = parsed.dt.year().min()
    # Polars reads `24` as the year 24 with %Y: two-digit years must not pass as dates.
    return parsed.null_count() == 0 and isinstance(earliest, int) and earliest >= 1000


def _day_month_swapped(fmt: str) -> str | None:
    """The same format read the other way round (`%d/%m/%Y` <-> `%m/%d/%Y`), if it has both."""
    if "%d/%m" in fmt:
        return fmt.replace("%d/%m", "%m/%d")
    if "%m/%d" in fmt:
        return fmt.replace("%m/%d", "%d/%m")
    return None


def as_numbers(values: pl.Series) -> pl.Series | None:
    """The values as Float64 when every non-null one is a number (stored or written as one)."""
    if values.dtype.is_numeric():
        return values.cast(pl.Float64)
    if values.dtype != pl.String:
        return None
    numbers = values.cast(pl.Float64, strict=False)
    return numbers if numbers.null_count() == values.null_count() else None


def is_code(numbers: pl.Series) -> bool:
    """Whether numbers are category codes: whole numbers with at most `CODE_MAX_DISTINCT`
    distinct values, each appearing on at least `CODE_MIN_ROWS_PER_VALUE` rows on average (so a
    short table of counts 1..5 stays numeric)."""
    present = numbers.drop_nulls()
    if not bool(present.is_finite().all()) or not bool((present == present.floor()).all()):
        return False
    distinct = present.n_unique()
    return distinct <= CODE_MAX_DISTINCT and distinct * CODE_MIN_ROWS_PER_VALUE <= present.len()


def _trimmed(frame: pl.DataFrame) -> pl.DataFrame:
    """Text trimmed, with empty cells as missing values; other types as they are."""
    return frame.with_columns(pl.col(pl.String).str.strip_chars().replace("", None))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _missing_policy(values: pl.Series, kind: ColumnType) -> tuple[str | None, str]:
    """The `missing` policy for a column's missing values, and the words that explain it."""
    count = values.null_count()
    if count == 0:
        return None, ""
    policy = {"numeric": "median", "categorical": "mode", "date": "drop"}[kind]
    effect = {
        "median": "filled with the median",
        "mode": "filled with the most frequent value",
        "drop": "their rows are dropped",
    }[policy]
    return policy, f"; {_plural(count, 'missing value')}: {effect} (missing: {policy})"


def _classify(header: str, values: pl.Series) -> Column | None:
    """The column a table column declares (named later), or None when it cannot be read."""
    present = values.drop_nulls()
    if values.dtype.is_temporal():
        policy, missing = _missing_policy(values, "date")
        return Column("", header, "date", f"date (stored as dates){missing}", missing=policy)
    if values.dtype == pl.Boolean:
        policy, missing = _missing_policy(values, "categorical")
        reason = f"categorical (true/false values){missing}"
        return Column("", header, "categorical", reason, missing=policy)
    if values.dtype == pl.String:
        date = detect_date_format(present)
        if date is not None:
            policy, missing = _missing_policy(values, "date")
            reason = f"date ({date.note}){missing}"
            return Column("", header, "date", reason, format=date.format, missing=policy)
    numbers = as_numbers(values)
    if numbers is not None:
        return _numeric_or_codes(header, numbers)
    if values.dtype != pl.String:
        return None
    policy, missing = _missing_policy(values, "categorical")
    distinct = _plural(present.n_unique(), "distinct value")
    return Column(
        "", header, "categorical", f"categorical (text, {distinct}){missing}", missing=policy
    )


def _numeric_or_codes(header: str, numbers: pl.Series) -> Column:
    present = numbers.drop_nulls()
    if is_code(numbers):
        policy, missing = _missing_policy(numbers, "categorical")
        distinct = _plural(present.n_unique(), "distinct value")
        reason = f"categorical (integer codes, {distinct}){missing}"
        return Column("", header, "categorical", reason, missing=policy)
    policy, missing = _missing_policy(numbers, "numeric")
    # Float64 values, none missing: their minimum and maximum are floats.
    low, high = cast(float, present.min()), cast(float, present.max())
    stated = header_range(header)
    bounds = stated if stated and stated[0] <= low and high <= stated[1] else None
    skewness = present.skew()
    log1p = low >= 0 and isinstance(skewness, float) and skewness > LOG1P_MIN_SKEWNESS
    notes = ["numeric"]
    if stated:
        words = "as the header says" if bounds else "the header's range, but values fall outside"
        notes.append(f"{_number_text(stated[0])} to {_number_text(stated[1])} {words}")
    if log1p:
        notes.append(f"log1p (skewness {skewness:.2f}; min 0, as log1p needs)")
    not_proposed = _not_proposed(header, present)
    if not_proposed:
        missing += f"; not proposed as a feature: {not_proposed}"
    return Column(
        "",
        header,
        "numeric",
        ", ".join(notes) + missing,
        min=bounds[0] if bounds else (0 if log1p else None),
        max=bounds[1] if bounds else None,
        unit=header_unit(header),
        missing=policy,
        transform="log1p" if log1p else None,
        proposed=not not_proposed,
    )


def _not_proposed(header: str, numbers: pl.Series) -> str:
    """Why a numeric column is not proposed as a feature ("" when it is)."""
    if numbers.n_unique() < 2:
        return f"constant ({_number_text(float(numbers[0]))} in every row)"
    if looks_like_id(header):
        return "its header looks like an id (numbers that label, not measure)"
    return ""


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _number_text(value: float) -> str:
    return f"{value:g}"


def _one_line(text: str) -> str:
    """Text on one line: control characters and runs of spaces as one space. Headers are
    matched ignoring everything but letters and digits, so a header cleaned so still matches."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())


def _id_column(frame: pl.DataFrame) -> str | None:
    """The first column whose header looks like an id and whose values are unique in every row."""
    for header in frame.columns:
        values = frame[header]
        readable = values.dtype == pl.String or values.dtype.is_integer()
        complete = values.null_count() == 0
        if looks_like_id(header) and readable and complete and values.n_unique() == values.len():
            return header
    return None


def infer_columns(frame: pl.DataFrame) -> Inference:
    """Infer each column's type and the features to propose.

    A column is the id when its header looks like one (`looks_like_id`) and its values are
    unique in every row (at most one id). Otherwise: stored dates, or text that `detect_date_format`
    reads, are dates; numbers are numeric unless they are category codes (`is_code`); other
    text is categorical. Numeric columns with missing values get `missing: median`, categorical
    ones `mode`, date ones `drop`. Proposed features: numeric columns that vary and whose header
    does not look like an id, with `transform: log1p` when every value is >= 0 and the skewness
    exceeds `LOG1P_MIN_SKEWNESS`.

    Parameters
    ----------
    frame
        The table as `read_table` returns it.

    Returns
    -------
    Inference
        The column entries, the proposed features and every decision in words.
    """
    frame = _trimmed(frame)
    id_header = _id_column(frame)
    classified: list[Column] = []
    decisions: list[str] = []
    for header in frame.columns:
        shown = _one_line(header)
        column = _declared(shown, frame[header], is_id=header == id_header)
        if isinstance(column, str):
            decisions.append(f"{shown or '(no header)'}: {column}")
        else:
            decisions.append(_one_line(f"{shown}: {column.reason}"))
            classified.append(column)
    columns = _named(classified)
    if frame.width == 1:
        decisions.append("only one column: if there should be more, use , ; tab or | between them")
    if id_header is None:
        decisions.append("no id column: customers will be numbered by data row")
    features = tuple(column.name for column in columns if column.proposed)
    decisions += _feature_decisions(columns, features)
    return Inference(columns=columns, features=features, decisions=tuple(decisions))


def _declared(header: str, values: pl.Series, is_id: bool) -> Column | str:
    """The column to declare, or why the column is left out."""
    if not header:
        return "left out: no header to read it by"
    if values.null_count() == values.len():
        return "left out: empty in every row"
    if is_id:
        reason = "id (header looks like an id; values unique and present in every row)"
        return Column(ID_COLUMN, header, "id", reason)
    column = _classify(header, values)
    if column is None:
        return f"left out: {values.dtype} values are not supported"
    return column


def _named(columns: list[Column]) -> tuple[Column, ...]:
    """The columns with their final names and labels (the id keeps `customer_id`)."""
    others = [column for column in columns if column.type != "id"]
    names = iter(unique_names([snake_name(c.source) for c in others], frozenset({ID_COLUMN})))
    named = []
    for column in columns:
        if column.type == "id":
            named.append(column)
            continue
        name = next(names)
        named.append(replace(column, name=name, label=display_label(column.source, name)))
    return tuple(named)


def _feature_decisions(columns: tuple[Column, ...], features: tuple[str, ...]) -> list[str]:
    """The proposed features, and the columns the user may add to them, in words."""
    decisions = []
    if features:
        decisions.append(f"features: {', '.join(features)} (the numeric columns that vary)")
    else:
        decisions.append("no feature proposed: no numeric column varies; add one to features:")
    others = [
        f"{column.name} ({column.type})"
        for column in columns
        if column.type in {"categorical", "date"}
    ]
    if others:
        decisions.append(
            f"declared but not proposed as features: {', '.join(others)}; add them to features: "
            "to cluster on them too"
        )
    return decisions


# --- the config --------------------------------------------------------------------------------


def yaml_value(value: Any) -> str:
    """A value as YAML on one line, quoted only when YAML needs it (`%d/%m/%Y`, `null`, ...)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=float("inf")
    )
    return text.removesuffix("\n...\n").rstrip("\n")


_COLUMN_KEYS = """\
# The customer table: one entry per column; only these columns are read. Keys:
#   name       snake_case name used everywhere else (features, reports)
#   source     the header, or a list of accepted headers (matched ignoring case and every
#              character but letters and digits); default: name
#   type       id | numeric | categorical | date (no id column: customers are numbered by row)
#   min, max   the valid range; categories: the allowed values
#   label      words for charts and the report; unit: the unit of the values
#   missing    fail | drop | median | mode | a constant value (default: fail)
#   transform  none | log1p (numeric only; for long right tails)
#   expr       a Polars SQL expression over the headers, instead of source
#   format     the strftime format of a date column's text
#   clip       [low_quantile, high_quantile]: values beyond them are clipped to them"""

_AFTER_FEATURES = """\
# How feature columns are scaled before K-Means: standard | minmax | robust | none.
scaling: standard

# Segment names: null (from the columns' labels), mall (the Mall Customers vocabulary), or the
# path of a YAML vocabulary.
naming: null

prepare:
  # Invalid rows: fail (stop and list them) | drop (leave them out, listed in rejects.csv).
  on_invalid: fail

select_k:
  # Range of k to score (k=1 is always added for the elbow). k_max must be below the number of
  # distinct customers.
  k_min: 2
  k_max: 10
  # How k is chosen: silhouette | elbow | gap | calinski_harabasz | davies_bouldin | stability |
  # vote (the k most criteria choose). Every criterion's choice is recorded whatever the rule.
  rule: silhouette
  # Reference data sets for the gap statistic.
  gap_references: 20
  # Bootstrap resamples for the stability criterion, and the customers each one draws (at most).
  bootstrap: 25
  bootstrap_size: 2000
  # Above this many customers the criteria are computed on a seeded random sample of this size;
  # the final model is still fitted on every customer.
  sample_size: 5000
  # The smallest share of customers a segment may hold (0.02: 2%).
  min_segment_share: 0.02

cluster:
  # Fix the number of segments (skips the choice; the sweep still runs for the charts). null: choose.
  k: null
  # The final fit on all customers: lloyd (exact K-Means) | minibatch (MiniBatchKMeans).
  algorithm: lloyd
  # K-Means restarts (k-means++ seeding), iteration cap and random seed.
  n_init: 10
  max_iter: 300
  seed: 42

visualize:
  # Chart size in pixels, PNG resolution multiplier, and the most customers drawn in a chart
  # (a reproducible sample beyond that).
  width: 480
  height: 320
  png_scale: 2.0
  max_points: 5000
  # Also write every chart as SVG and PNG files beside its Vega-Lite spec (2-3 s more a run); the
  # report draws its charts either way, and saves any of them as PNG or SVG from the page.
  images: false
"""


def render_config(inference: Inference, data_path: str, title: str) -> str:
    """The whole config as commented YAML: every section, each key explained.

    Parameters
    ----------
    inference
        What `infer_columns` decided.
    data_path
        The data file as `data.path` should name it.
    title
        The report's title.

    Returns
    -------
    str
        YAML that `yaml.safe_load` reads back into exactly the inferred entries.
    """
    lines = [
        "# Pipeline config written by `segment init` from the data: check every column's type,",
        "# then run `make all CONFIG=<this file>`. Unknown keys are refused (typos).",
        "",
        "data:",
        "  # The data file, relative to the project root (the folder `make` runs in) or absolute.",
        f"  path: {yaml_value(data_path)}",
        "  # Where to download it from when the file is missing (null: never download).",
        "  url: null",
        "  # The file's SHA-256; a different file is refused. null: your own data (hash recorded,",
        "  # not enforced).",
        "  sha256: null",
        "  # Date columns as features mean days before this date (YYYY-MM-DD); null: the latest",
        "  # date in the data.",
        "  as_of: null",
        "",
        _COLUMN_KEYS,
        "columns:",
    ]
    for column in inference.columns:
        lines.append("  # " + _one_line(f"{column.source}: {column.reason}"))
        lines.append(f"  - {yaml_value(column.entry())}")
    lines += [
        "",
        "# Declared columns to cluster on (numeric, categorical or date). Proposed: the numeric",
        "# columns that vary; add categorical or date columns to cluster on them too.",
        f"features: {yaml_value(list(inference.features))}",
        "",
        _AFTER_FEATURES,
        "report:",
        "  # The report's title.",
        f"  title: {yaml_value(title)}",
    ]
    return "\n".join(lines) + "\n"
