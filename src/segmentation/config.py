"""The one typed model of `config.yaml`, validated before any work is done."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segmentation.errors import ConfigError
from segmentation.reading import compose_yaml, load_yaml
from segmentation.schema import ColumnSpec, TableSchema, built_table


class Scaling(StrEnum):
    STANDARD = "standard"
    MINMAX = "minmax"
    ROBUST = "robust"
    NONE = "none"


class KRule(StrEnum):
    SILHOUETTE = "silhouette"
    ELBOW = "elbow"
    GAP = "gap"
    CALINSKI_HARABASZ = "calinski_harabasz"
    DAVIES_BOULDIN = "davies_bouldin"
    STABILITY = "stability"
    VOTE = "vote"


class _Section(BaseModel):
    # Unknown keys are typos: refuse them rather than silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Section):
    path: str
    """A file, or for a purchase log a glob of files (`logs/*.parquet`)."""
    url: str | None = None
    sha256: str | None = None
    as_of: str | None = None
    """The date dates are measured from (YYYY-MM-DD). None: for a customer table the latest date in
    the data; for a purchase log the day after the last purchase."""
    kind: Literal["customers", "transactions"] = "customers"
    """A customer table (one row per customer), or a purchase log aggregated into one."""
    delimiter: Literal["whitespace"] | None = None
    """None: a CSV's delimiter is read from its header; `whitespace`: fields split by spaces."""

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_as_written(cls, value: object) -> object:
        # YAML reads an unquoted 2024-01-31 as a date: take it as the YYYY-MM-DD it was written as.
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        return value

    @field_validator("as_of")
    @classmethod
    def _is_iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date written YYYY-MM-DD, or null") from None
        return value

    @field_validator("sha256")
    @classmethod
    def _is_hex_digest(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())
        ):
            raise ValueError("must be 64 hexadecimal characters (a SHA-256) or null")
        return None if value is None else value.lower()


class PrepareConfig(_Section):
    on_invalid: Literal["fail", "drop"] = "fail"


class SelectKConfig(_Section):
    k_min: int = Field(default=2, ge=2)
    k_max: int = Field(default=10, ge=2)
    rule: KRule = Field(default=KRule.SILHOUETTE, strict=False)
    gap_references: int = Field(default=20, ge=2, le=1000)
    bootstrap: int = Field(default=25, ge=2, le=1000)
    bootstrap_size: int = Field(default=2_000, ge=100)
    sample_size: int = Field(default=5_000, ge=100)
    min_segment_share: float = Field(default=0.02, ge=0, lt=0.5, strict=False)

    @model_validator(mode="after")
    def _ordered(self) -> SelectKConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})")
        return self


class ClusterConfig(_Section):
    k: int | None = Field(default=None, ge=2)
    algorithm: Literal["lloyd", "minibatch"] = "lloyd"
    n_init: int = Field(default=10, ge=1)
    max_iter: int = Field(default=300, ge=1)
    seed: int = Field(default=42, ge=0)


class VisualizeConfig(_Section):
    width: int = Field(default=480, ge=100, le=4000)
    height: int = Field(default=320, ge=100, le=4000)
    png_scale: float = Field(default=2.0, gt=0, le=8, strict=False)
    max_points: int = Field(default=5000, ge=100)
    images: bool = False
    """Also write each chart as SVG and PNG files (vl-convert: 2 to 3 seconds a run); the report
    draws its charts from the Vega-Lite specs either way."""


class ReportConfig(_Section):
    title: str = "Customer segments"


class TransactionsConfig(_Section):
    """How a purchase log maps onto purchases (`data.kind: transactions`)."""

    customer: str
    time: str
    time_format: str | None = None
    """strftime format of `time`; None: ISO 8601 text, or a typed column."""
    order: str | None = None
    """The order (invoice) id; None: each distinct customer-day is one purchase occasion."""
    amount: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    where: str | None = None
    """A SQL filter on the log's columns (Polars SQL)."""
    returns: Literal["net", "drop"] = "net"
    """net: negative amounts are subtracted; drop: they are left out."""
    currency: str = "$"
    """The unit of money values in charts and tables."""

    @model_validator(mode="after")
    def _one_value(self) -> TransactionsConfig:
        if self.amount is not None and (self.quantity or self.unit_price):
            raise ValueError("give either amount, or quantity and unit_price, not both")
        if self.amount is None and not (self.quantity and self.unit_price):
            raise ValueError("give amount, or both quantity and unit_price")
        return self


SparkConfValue = str | bool | int | float


class SparkConfig(_Section):
    """Where and how the Spark engine runs (`engine: spark`)."""

    master: str = "local[*]"
    """The cluster: `local[*]`, `spark://host:7077`, `yarn`, `k8s://https://host:443`."""
    conf: dict[str, SparkConfValue] = Field(default_factory=dict)
    """Settings handed to the SparkSession as written (`spark.executor.memory: 8g`)."""
    partitions: int = Field(default=8, ge=1, le=100_000)
    """The fixed number of partitions the data is spread over: the same count (and seed) gives
    the same results, wherever the run happens."""

    @field_validator("conf", mode="before")
    @classmethod
    def _text_keys(cls, value: object) -> object:
        # YAML reads `1: x` or `true: x` as non-text keys; Spark settings are named by text.
        if isinstance(value, dict):
            for key, setting in value.items():
                if not isinstance(key, str):
                    raise ValueError(
                        f"key {key!r} is not a string; Spark settings are named like "
                        "spark.executor.memory (quote the key)"
                    )
                if not isinstance(setting, str | bool | int | float):
                    raise ValueError(
                        f"{key}: the value must be text, a number or true/false, not "
                        f"{type(setting).__name__}"
                    )
        return value

    def settings(self) -> dict[str, str]:
        """The settings as Spark takes them: text, with true/false in lower case."""
        return {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in self.conf.items()
        }


class Config(_Section):
    data: DataConfig
    engine: Literal["polars", "spark"] = "polars"
    """polars: one machine; spark: the same stages on a Spark cluster (`spark:`)."""
    spark: SparkConfig = SparkConfig()
    columns: tuple[ColumnSpec, ...] = Field(default=(), strict=False)
    """The customer table's columns; a purchase log's built table declares its own."""
    features: tuple[str, ...] | None = Field(default=None, strict=False)
    """None: a purchase log's default features (a customer table must list its own)."""
    transactions: TransactionsConfig | None = None
    scaling: Scaling = Field(default=Scaling.STANDARD, strict=False)
    naming: str | None = None
    """None: names from the columns' labels; `mall` (a shipped vocabulary) or a YAML file's path."""
    prepare: PrepareConfig = PrepareConfig()
    select_k: SelectKConfig = SelectKConfig()
    cluster: ClusterConfig = ClusterConfig()
    visualize: VisualizeConfig = VisualizeConfig()
    report: ReportConfig = ReportConfig()

    @property
    def table(self) -> TableSchema:
        """The declared table, before prepare has learned anything from the data: the config's
        `columns:`, or for a purchase log the customer table built from it."""
        if self.data.kind == "transactions":
            built = built_table(self.transactions.currency if self.transactions else "$")
            return built.model_copy(update={"features": self.features or built.features})
        return TableSchema(columns=self.columns, features=self.features or ())

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in (a purchase log's default features too), as
        plain JSON-compatible data."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["features"] = list(self.table.features)
        return data


def _key_lines(
    node: yaml.Node, prefix: tuple[str | int, ...] = ()
) -> dict[tuple[str | int, ...], int]:
    """Map each key path of a YAML document to its 1-based line number."""
    lines: dict[tuple[str | int, ...], int] = {prefix: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines.update(_key_lines(value_node, path))
            lines[path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, (*prefix, index)))
    return lines


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (a typo?); see the commented config.yaml for the allowed keys"
    if error["type"] in {"enum", "literal_error"}:
        return f"{message}, got {error['input']!r}"
    if "input" in error and not isinstance(error["input"], dict | list):
        return f"{message} (got {error['input']!r})"
    return message


def _first_duplicate_key(node: yaml.Node, prefix: str = "") -> tuple[str, int] | None:
    """(dotted key, line) of the first key written twice in one mapping; YAML keeps the last silently."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            if key in seen:
                return key, key_node.start_mark.line + 1
            seen.add(key)
            found = _first_duplicate_key(value_node, f"{key}.")
            if found is not None:
                return found
    return None


def _schema_problem(config: Config) -> tuple[tuple[str | int, ...], str] | None:
    """(key path, problem) of the first inconsistency between the data's kind, the columns and
    the features."""
    if config.data.kind == "transactions":
        if config.transactions is None:
            return (
                "data",
                "kind",
            ), "a purchase log needs a transactions: section mapping its columns"
        if config.columns:
            return ("columns",), (
                "a purchase log's customer table declares its own columns; leave columns out"
            )
        built = {column.name: column for column in config.table.columns}
        for index, feature in enumerate(config.features or ()):
            if feature not in built or built[feature].type == "id":
                known = ", ".join(name for name, c in built.items() if c.type != "id")
                return (
                    "features",
                    index,
                ), f"'{feature}' is not a column of the built table: {known}"
        return None
    if config.transactions is not None:
        return ("transactions",), "applies to data.kind: transactions only"
    if config.data.delimiter is not None:
        return ("data", "delimiter"), (
            "whitespace-separated text is read for purchase logs only; save the table as CSV"
        )
    if not config.columns:
        return ("columns",), "declare the table's columns (segment init FILE writes them for you)"
    if not config.features:
        return ("features",), "list at least one declared column to cluster on"
    seen: dict[str, int] = {}
    ids = []
    for index, column in enumerate(config.columns):
        if column.name in seen:
            return (
                ("columns", index, "name"),
                f"name '{column.name}' is declared twice (also columns.{seen[column.name]})",
            )
        seen[column.name] = index
        if column.type == "id":
            ids.append(index)
    if len(ids) > 1:
        return ("columns", ids[1], "type"), "only one column may be of type id"
    features = config.features
    for index, feature in enumerate(features):
        if feature not in seen:
            return (
                ("features", index),
                f"'{feature}' is not a declared column; declared: {', '.join(seen)}",
            )
        if config.columns[seen[feature]].type == "id":
            return ("features", index), f"'{feature}' is the id column; it cannot be a feature"
        if feature in features[:index]:
            return ("features", index), f"'{feature}' is listed twice"
    return None


def parse_config(text: str, source: str = "config.yaml") -> Config:
    """Parse and validate config text; raise ConfigError naming the file, line and key."""
    try:
        node = compose_yaml(text)
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
    except ValueError as exc:
        # PyYAML reads an unquoted 2024-13-01 as a date and raises a bare ValueError.
        line = _impossible_date_line(node)
        where = f"{source}:{line}" if line else source
        raise ConfigError(
            f"{where}: not a date ({exc}); write dates as YYYY-MM-DD, or quote text"
        ) from None
    duplicate = _first_duplicate_key(node) if node is not None else None
    if duplicate is not None:
        twice, twice_line = duplicate
        raise ConfigError(f"{source}:{twice_line}: {twice}: given twice; keep one of them")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of sections (data:, features:, ...)"
        )
    # A section whose entries are all commented out reads as null: it means "all defaults".
    sections = {
        name for name, info in Config.model_fields.items() if isinstance(info.default, BaseModel)
    }
    raw = {key: {} if value is None and key in sections else value for key, value in raw.items()}
    lines = _key_lines(node) if node is not None else {}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = _column_key(_entry_location(tuple(error["loc"])), _describe(error))
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            f"{_where(source, lines, location)}: {_dotted(location)}: {_describe(error)}{more}"
        ) from None
    problem = _schema_problem(config)
    if problem is not None:
        location, message = problem
        raise ConfigError(f"{_where(source, lines, location)}: {_dotted(location)}: {message}")
    return config


def _impossible_date_line(node: yaml.Node | None) -> int | None:
    """The line of the first unquoted value YAML takes for a date that does not exist."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:timestamp":
        try:
            yaml.SafeLoader("").construct_yaml_timestamp(node)
        except ValueError:
            return int(node.start_mark.line) + 1
    children = node.value if isinstance(node, yaml.SequenceNode | yaml.MappingNode) else []
    for child in children:
        for item in child if isinstance(child, tuple) else (child,):
            line = _impossible_date_line(item)
            if line is not None:
                return line
    return None


def _column_key(location: tuple[str | int, ...], message: str) -> tuple[str | int, ...]:
    """A column entry's problem at the key its message is about: `columns.1` -> `columns.1.clip`."""
    first = re.split(r"[ :]", message, maxsplit=1)[0]
    if len(location) == 2 and location[0] == "columns" and first in ColumnSpec.model_fields:
        return (*location, first)
    return location


def _entry_location(location: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A validation error's key path without pydantic's type tags (`columns.2.function-after[...]`)."""
    return tuple(part for part in location if isinstance(part, int) or "[" not in part)


def _dotted(location: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _where(
    source: str, lines: dict[tuple[str | int, ...], int], location: tuple[str | int, ...]
) -> str:
    """`file:line` of the deepest part of the key path that exists in the file."""
    line = next(
        (lines[location[:n]] for n in range(len(location), 0, -1) if location[:n] in lines),
        None,
    )
    return f"{source}:{line}" if line else source


def locate(path: Path, key: str) -> str:
    """`file:line` of a dotted config key, or just the file when the key is not written there."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return str(path)
    # Sequence items are keyed by their index (`columns.3.expr`).
    parts = tuple(int(part) if part.isdigit() else part for part in key.split("."))
    line = _key_lines(node).get(parts) if node is not None else None
    return f"{path}:{line}" if line else str(path)


def load_config(path: Path) -> Config:
    """Read and validate a config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass --config PATH") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config is not UTF-8 text") from None
    return parse_config(text, source=str(path))
