"""Naming vocabularies: the words and action tables marketers use for one kind of table, as data.

`naming: mall` loads the vocabulary shipped in `vocabularies/mall.yaml`; `naming: path/to/file.yaml`
loads the user's own, in the same format. The engine (cluster.py) knows no column of any table.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segmentation.errors import ConfigError

Level = Literal["low", "mid", "high"]
SHIPPED = ("mall",)
"""Vocabularies that ship with the package, by the name `naming:` takes."""


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


class Vocabulary(_Strict):
    """Words per column level, phrases per categorical column, and the action rules."""

    levels: dict[str, tuple[str, str, str, str, str]] = {}
    categories: dict[str, CategoryPhrases] = {}
    actions: tuple[ActionRule, ...] = Field(default=(), min_length=1)
    additions: tuple[Addition, ...] = ()

    def columns(self) -> set[str]:
        """Every column the vocabulary names."""
        named = set(self.levels) | set(self.categories)
        for when in [rule.when for rule in self.actions] + [a.when for a in self.additions]:
            named |= set(when)
        return named


def vocabulary_path(naming: str, root: Path) -> Path:
    """The file a `naming:` value points at: a shipped vocabulary, or a path from the root."""
    if naming in SHIPPED:
        return Path(str(resources.files("segmentation") / "vocabularies" / f"{naming}.yaml"))
    candidate = Path(naming)
    return candidate if candidate.is_absolute() else root / candidate


def load_vocabulary(naming: str, root: Path, known_columns: set[str]) -> Vocabulary:
    """Read and check a vocabulary; every column it names must be a declared numeric, date or
    categorical column.

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
        vocabulary = Vocabulary.model_validate(yaml.safe_load(text) or {})
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
    unknown = sorted(vocabulary.columns() - known_columns)
    if unknown:
        raise ConfigError(
            f"naming: {path} names column(s) {', '.join(unknown)} that the config does not declare "
            f"(declared: {', '.join(sorted(known_columns))}); use a vocabulary for this table, or null",
            key="naming",
        )
    return vocabulary
