"""The customer table as declared in config.yaml: one entry per column, and what prepare learns.

`ColumnSpec` is one entry of the `columns:` list. `TableSchema` is the declared columns plus what
prepare learned from the data (the reference date, imputed values, clipping bounds, the categories
seen); it is written to prepare_summary.json and model.json, and every later stage and `segment
assign` reads the table through it. No module here knows any particular table.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from segmentation.reading import load_yaml

ColumnType = Literal["id", "numeric", "categorical", "date"]
MissingPolicy = Literal["fail", "drop", "median", "mode"]
POLICIES: tuple[str, ...] = ("fail", "drop", "median", "mode")
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
ID = "customer_id"
"""The key column of every output, whatever the id column is called in the data."""
LINE = "source_line"
RESERVED = frozenset({LINE, "segment_id", "segment_name", "distance_to_centroid", "silhouette"})
CURRENCY_SYMBOLS = frozenset({"$", "€", "£", "¥"})
"""Units written before the number."""
CATEGORY_SEPARATOR = "="
"""One-hot columns are named `<column>=<category>`."""


@functools.cache
def _transactions_declaration() -> dict[str, Any]:
    """`tables/transactions.yaml`, read once (callers must not change it)."""
    text = (resources.files("segmentation") / "tables" / "transactions.yaml").read_text(
        encoding="utf-8"
    )
    declared: dict[str, Any] = load_yaml(text)
    return declared


def built_table(currency: str) -> TableSchema:
    """The customer table a purchase log is aggregated into (`tables/transactions.yaml`), its
    money columns in `currency`."""
    declared = _transactions_declaration()
    columns = tuple(
        ColumnSpec.model_validate(
            {**entry, "unit": entry["unit"].format(currency=currency)}
            if isinstance(entry.get("unit"), str)
            else entry
        )
        for entry in declared["columns"]
    )
    return TableSchema(columns=columns, features=tuple(declared["features"]))


def rfm_scores() -> dict[str, dict[str, Any]]:
    """The 1-5 scores given with each customer of a purchase log (`tables/transactions.yaml`)."""
    scores: dict[str, dict[str, Any]] = _transactions_declaration()["scores"]
    return scores


def header_key(header: str) -> str:
    """A header compared without case, spaces or punctuation: "Annual Income (k$)" -> "annualincomek"."""
    return re.sub(r"[^0-9a-z]", "", header.lower())


class ColumnSpec(BaseModel):
    """One declared column: where it comes from, its type, its valid values and how people read it."""

    # Lax so that YAML lists read as tuples and integers as floats; text stays text.
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    source: str | tuple[str, ...] | None = None
    type: ColumnType
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    aliases: dict[str, str] | None = None
    label: str | None = None
    unit: str | None = None
    missing: str | float = "fail"
    transform: Literal["none", "log1p"] = "none"
    expr: str | None = None
    format: str | None = None
    clip: tuple[float, float] | None = None

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_as_text(cls, value: object) -> object:
        # Integer codes may be declared as numbers: they are compared as text.
        if isinstance(value, list | tuple):
            return tuple(str(item) for item in value)
        return value

    @field_validator("missing", mode="before")
    @classmethod
    def _missing_value(cls, value: object) -> object:
        if isinstance(value, bool) or value is None:
            raise ValueError("give fail, drop, median, mode or a constant value")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        numeric_only = {"min": self.min, "max": self.max, "clip": self.clip}
        for key, value in numeric_only.items():
            if value is not None and self.type != "numeric":
                raise ValueError(f"{key} applies to numeric columns only, not {self.type}")
        if self.transform != "none" and self.type != "numeric":
            raise ValueError(f"transform applies to numeric columns only, not {self.type}")
        if self.format is not None and self.type != "date":
            raise ValueError("format applies to date columns only")
        if (self.categories is not None or self.aliases is not None) and self.type != "categorical":
            raise ValueError("categories and aliases apply to categorical columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:,.10g}) must not exceed max ({self.max:,.10g})")
        if self.clip is not None and not 0 <= self.clip[0] < self.clip[1] <= 1:
            raise ValueError("clip takes two quantiles [low, high] with 0 <= low < high <= 1")
        if self.expr is not None and self.source is not None:
            raise ValueError("give either source (a header) or expr (computed), not both")
        if self.expr is not None and self.type not in ("numeric", "categorical"):
            raise ValueError("expr computes numeric or categorical columns only")
        if self.type == "id" and self.missing != "fail":
            raise ValueError("an id column cannot have missing values: leave missing out")
        if isinstance(self.missing, str) and self.missing in POLICIES:
            if self.missing == "median" and self.type not in ("numeric", "date"):
                raise ValueError(
                    f"missing: median applies to numeric or date columns, not {self.type}"
                )
        elif self.type == "numeric" and not isinstance(self.missing, float | int):
            raise ValueError(
                f"missing: {self.missing!r} is neither fail, drop, median, mode nor a number"
            )
        elif self.type == "date":
            raise ValueError("a date column takes missing: fail, drop, median or mode")
        if self.name in RESERVED or (self.name == ID and self.type != "id"):
            raise ValueError(f"name '{self.name}' is reserved for the outputs; choose another")
        return self

    @property
    def headers(self) -> tuple[str, ...]:
        """Every header the column may have in the file: its sources, then its name."""
        if self.expr is not None:
            return ()
        listed = (self.source,) if isinstance(self.source, str) else (self.source or ())
        return (*listed, self.name)

    @property
    def title(self) -> str:
        """How people read the column: its label, or its name in words."""
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def measure_unit(self) -> str | None:
        """The unit of the column as profiled: dates are counted in days before as_of."""
        return "days ago" if self.type == "date" else self.unit

    def category_text(self, category: str) -> str:
        """A category as people read it: a code with its column's label (Region 2), a word as
        it is (Retail)."""
        code = category.lstrip("-").replace(".", "", 1).isdigit()
        return f"{self.title} {category}" if code else category

    def with_unit(self, value: str) -> str:
        """A value as people write it with the column's unit: currency symbols in front
        ($1,200), other units after (42 years)."""
        unit = self.measure_unit
        if not unit:
            return value
        return f"{unit}{value}" if unit in CURRENCY_SYMBOLS else f"{value} {unit}"

    @property
    def axis_title(self) -> str:
        """The label with its unit, for axes and tables (dates are read as days before as_of)."""
        unit = "days before as_of" if self.type == "date" else self.unit
        return f"{self.title} ({unit})" if unit else self.title

    @property
    def imputes(self) -> bool:
        """True when missing values are filled in (median, mode or a constant)."""
        return self.missing not in ("fail", "drop")


class TableSchema(BaseModel):
    """The declared columns, the features, and what prepare learned from the data.

    Written by prepare (prepare_summary.json) and the cluster stage (model.json); read by every
    later stage and by `segment assign`, so new customers go through the very same steps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: tuple[ColumnSpec, ...]
    features: tuple[str, ...]
    as_of: str | None = None
    """The reference date (ISO) of date columns: features are days before it."""
    imputed: dict[str, float | str] = {}
    """The value filled into each column's missing cells (median, mode or constant)."""
    clip_bounds: dict[str, tuple[float, float]] = {}
    """Each clipped column's bounds in data units, from its clip quantiles."""
    categories: dict[str, tuple[str, ...]] = {}
    """Each categorical column's categories, in one-hot order."""

    def column(self, name: str) -> ColumnSpec:
        return next(column for column in self.columns if column.name == name)

    @property
    def id_column(self) -> ColumnSpec | None:
        return next((column for column in self.columns if column.type == "id"), None)

    def of_type(self, *types: ColumnType) -> tuple[ColumnSpec, ...]:
        return tuple(column for column in self.columns if column.type in types)

    @property
    def measures(self) -> tuple[ColumnSpec, ...]:
        """Columns profiled by mean and median: numeric ones, and dates as days before as_of."""
        return self.of_type("numeric", "date")

    @property
    def matrix_columns(self) -> tuple[str, ...]:
        """Columns of the feature matrix: each numeric or date feature, one per category of a
        categorical one (`<column>=<category>`)."""
        names: list[str] = []
        for feature in self.features:
            if self.column(feature).type == "categorical":
                names += [
                    f"{feature}{CATEGORY_SEPARATOR}{category}"
                    for category in self.categories[feature]
                ]
            else:
                names.append(feature)
        return tuple(names)

    def matrix_title(self, matrix_column: str) -> str:
        """A feature-matrix column as people read it: the label, or `label: category`."""
        name, _, category = matrix_column.partition(CATEGORY_SEPARATOR)
        column = self.column(name)
        return f"{column.title}: {category}" if category else column.axis_title
