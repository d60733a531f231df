"""The one typed model of `config.yaml`, validated before any work is done."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segmentation.errors import ConfigError

FEATURES = ("gender", "age", "annual_income", "spending_score")
"""Canonical columns that can be used as clustering features."""

MALL_URL = (
    "https://raw.githubusercontent.com/tirthajyoti/Machine-Learning-with-Python/"
    "ef6b231e272e85a82366e618739324c4698592d6/Datasets/Mall_Customers.csv"
)
MALL_SHA256 = "416a4f62a8f33841a16e1db5297f0e05d3b65b05e73632cedae58e739e1e1f77"


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
    path: str = "data/raw/Mall_Customers.csv"
    url: str | None = MALL_URL
    sha256: str | None = MALL_SHA256

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
    bootstrap: int = Field(default=50, ge=2, le=1000)
    sample_size: int = Field(default=5_000, ge=100)

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


class ReportConfig(_Section):
    title: str = "Customer segments"


class Config(_Section):
    data: DataConfig = DataConfig()
    features: tuple[str, ...] = Field(default=("annual_income", "spending_score"), strict=False)
    scaling: Scaling = Field(default=Scaling.STANDARD, strict=False)
    prepare: PrepareConfig = PrepareConfig()
    select_k: SelectKConfig = SelectKConfig()
    cluster: ClusterConfig = ClusterConfig()
    visualize: VisualizeConfig = VisualizeConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"list at least one of {', '.join(FEATURES)}")
        for name in value:
            if name not in FEATURES:
                raise ValueError(f"unknown feature '{name}'; allowed: {', '.join(FEATURES)}")
        if len(set(value)) != len(value):
            raise ValueError("each feature may be listed only once")
        return value

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON-compatible data."""
        return self.model_dump(mode="json")


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


def parse_config(text: str, source: str = "config.yaml") -> Config:
    """Parse and validate config text; raise ConfigError naming the file, line and key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
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
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = tuple(error["loc"])
        lines = _key_lines(node) if node is not None else {}
        # Point at the deepest part of the key path that exists in the file.
        line = next(
            (lines[location[:n]] for n in range(len(location), 0, -1) if location[:n] in lines),
            None,
        )
        key = ".".join(str(part) for part in location) or "(top level)"
        where = f"{source}:{line}" if line else source
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{where}: {key}: {_describe(error)}{more}") from None


def locate(path: Path, key: str) -> str:
    """`file:line` of a dotted config key, or just the file when the key is not written there."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return str(path)
    line = _key_lines(node).get(tuple(key.split("."))) if node is not None else None
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
