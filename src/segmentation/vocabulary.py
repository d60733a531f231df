"""Naming vocabularies: the words and action tables marketers use for one kind of table, as data.

`naming: mall` loads the vocabulary shipped in `vocabularies/mall.yaml`; `naming: path/to/file.yaml`
loads the user's own, in the same format. The engine (cluster.py) knows no column of any table.

A vocabulary names segments either from their level on each clustered column (`levels:`) or, with a
`grid:`, from the cell of a score grid that their customers' median scores fall in (`naming: rfm`:
the RFM grid of a purchase log's R and F scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segmentation.errors import ConfigError
from segmentation.reading import load_yaml
from segmentation.schema import ColumnSpec, rfm_scores

Level = Literal["low", "mid", "high"]
SHIPPED = ("mall", "rfm")
"""Vocabularies that ship with the package, by the name `naming:` takes."""
SCORES = (1, 2, 3, 4, 5)
"""The values a score takes (quintiles: 1 lowest, 5 best)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryPhrases(_Strict):
    """How a categorical column reads by its most common category's share in the segment."""

    only: str = "{category}"
    mostly: str = "Mostly {category}"
    mixed: str = "Mixed {title_lower}"


class ActionRule(_Strict):
    when: dict[str, Level]
    action: str


class Addition(_Strict):
    when: dict[str, Level]
    text: str


class GridCell(_Strict):
    """A named region of the grid: every (x, y) pair of the listed scores."""

    x: tuple[int, ...] = Field(min_length=1)
    y: tuple[int, ...] = Field(min_length=1)
    name: str = Field(min_length=1)
    action: str | None = None

    @field_validator("x", "y")
    @classmethod
    def _scores(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        outside = [value for value in values if value not in SCORES]
        if outside:
            raise ValueError(f"score {outside[0]} is outside {SCORES[0]}-{SCORES[-1]}")
        if len(set(values)) != len(values):
            raise ValueError("a score is listed twice")
        return values


class Grid(_Strict):
    """Names by score: a segment takes the name of the cell its customers' median `x` and `y`
    scores fall in (a median of .5 is rounded up, to the better score). Segments in the same cell
    are told apart by their level on `apart_by`, a numeric column."""

    x: str
    y: str
    apart_by: str | None = None
    cells: tuple[GridCell, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _partition(self) -> Grid:
        """Every (x, y) pair of scores lies in exactly one cell."""
        if self.x == self.y:
            raise ValueError("x and y must be two different scores")
        owner: dict[tuple[int, int], str] = {}
        for cell in self.cells:
            for x in cell.x:
                for y in cell.y:
                    if (x, y) in owner:
                        raise ValueError(
                            f"x {x}, y {y} lies in two cells ({owner[(x, y)]}, {cell.name}); "
                            "cells must not overlap"
                        )
                    owner[(x, y)] = cell.name
        missing = [(x, y) for x in SCORES for y in SCORES if (x, y) not in owner]
        if missing:
            x, y = missing[0]
            raise ValueError(
                f"no cell holds x {x}, y {y} ({len(missing)} pair(s) uncovered); "
                f"the cells must cover every pair of scores {SCORES[0]}-{SCORES[-1]}"
            )
        return self

    def cell(self, x: float, y: float) -> GridCell:
        """The cell of two median scores, a .5 rounded up."""
        at = (half_up(x), half_up(y))
        return next(cell for cell in self.cells if at[0] in cell.x and at[1] in cell.y)


def half_up(value: float) -> int:
    """A median score as a whole score: 3.5 -> 4 (the better score), 3.0 -> 3."""
    return math.floor(value + 0.5)


class Vocabulary(_Strict):
    """Words per column level, phrases per categorical column, the action rules, and optionally a
    grid naming segments by two scores."""

    levels: dict[str, tuple[str, str, str, str, str]] = {}
    categories: dict[str, CategoryPhrases] = {}
    actions: tuple[ActionRule, ...] = Field(default=(), min_length=1)
    additions: tuple[Addition, ...] = ()
    grid: Grid | None = None

    def columns(self) -> set[str]:
        """Every column the vocabulary names (the grid's scores apart)."""
        named = set(self.levels) | set(self.categories)
        for when in [rule.when for rule in self.actions] + [a.when for a in self.additions]:
            named |= set(when)
        if self.grid is not None and self.grid.apart_by is not None:
            named.add(self.grid.apart_by)
        return named

    def scores(self) -> set[str]:
        """The scores the grid names segments by (none without a grid)."""
        return set() if self.grid is None else {self.grid.x, self.grid.y}


def known_columns(columns: Iterable[ColumnSpec], purchase_log: bool) -> set[str]:
    """What a vocabulary may name: the declared columns but the id, and for a purchase log
    (`data.kind: transactions`) the scores given to its customers (`schema.rfm_scores()`)."""
    known = {column.name for column in columns if column.type != "id"}
    return known | set(rfm_scores()) if purchase_log else known


def vocabulary_path(naming: str, root: Path) -> Path:
    """The file a `naming:` value points at: a shipped vocabulary, or a path from the root."""
    if naming in SHIPPED:
        return Path(str(resources.files("segmentation") / "vocabularies" / f"{naming}.yaml"))
    candidate = Path(naming)
    return candidate if candidate.is_absolute() else root / candidate


def load_vocabulary(naming: str, root: Path, known_columns: set[str]) -> Vocabulary:
    """Read and check a vocabulary; every column it names must be a declared numeric, date or
    categorical column, and the scores of its grid must be in `known_columns` (see
    `known_columns()`).

    Raises
    ------
    ConfigError
        With key `naming`, naming the file (and line) and what is wrong.
    """
    path = vocabulary_path(naming, root)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        shipped = ", ".join(SHIPPED)
        raise ConfigError(
            f"naming: no vocabulary file {path}; give {shipped}, null or the path of a YAML vocabulary",
            key="naming",
        ) from None
    try:
        vocabulary = Vocabulary.model_validate(load_yaml(text) or {})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(
            f"naming: {where}: invalid YAML; fix the syntax there", key="naming"
        ) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise ConfigError(f"naming: {path}: {key}: {error['msg']}", key="naming") from None
    unscored = sorted(vocabulary.scores() - known_columns)
    if unscored:
        raise ConfigError(
            f"naming: {path} names segments by the score(s) {', '.join(unscored)}, which only the "
            "customers of a purchase log (data.kind: transactions) have; use naming: null or a "
            "vocabulary for this table's columns",
            key="naming",
        )
    unknown = sorted(vocabulary.columns() - known_columns)
    if unknown:
        raise ConfigError(
            f"naming: {path} names column(s) {', '.join(unknown)} that the config does not declare "
            f"(declared: {', '.join(sorted(known_columns))}); use a vocabulary for this table, or null",
            key="naming",
        )
    return vocabulary
