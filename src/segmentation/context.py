"""What a stage runs with: the run's config, data and version folder, and the helpers every
engine's stage code shares (the learned table, the naming vocabulary)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation.catalog import Catalog
from segmentation.config import Config, locate
from segmentation.dataset import RawData
from segmentation.errors import ConfigError
from segmentation.schema import TableSchema

Progress = Callable[[str, int], Callable[[int], None]]
"""Given a label and a total, returns a callback that advances by a number of steps."""


@dataclass(frozen=True)
class StageContext:
    config: Config
    config_path: Path
    raw: RawData
    version: str
    folder: Path
    """Where the stage finds its upstream outputs and writes its own."""
    report_folder: Path
    git: dict[str, Any]
    progress: Progress
    log: Callable[[str], None]
    """Detail lines for the user (per-k timings, for one), not part of any output."""
    root: Path = Path()
    """The project folder: relative paths in the config (a vocabulary file) start here."""

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.folder)

    def path(self, name: str) -> Path:
        return self.folder / name

    def located(self, error: ConfigError) -> ConfigError:
        """A config error found while running, pointed at its key's line in the config file."""
        where = locate(self.config_path, error.key) if error.key else str(self.config_path)
        return ConfigError(f"{where}: {error}")


def table_schema(ctx: StageContext) -> TableSchema:
    """The declared table with what prepare learned from the data."""
    return TableSchema.model_validate(ctx.catalog.load("prepare_summary")["schema"])


def stage_vocabulary(ctx: StageContext, schema: TableSchema) -> Any:
    """The naming vocabulary (a `vocabulary.Vocabulary`), checked against the table's columns,
    or None."""
    from segmentation.vocabulary import known_columns, load_vocabulary

    config = ctx.config
    if config.naming is None:
        return None
    known = known_columns(schema.columns, config.data.kind == "transactions")
    try:
        return load_vocabulary(config.naming, ctx.root, known)
    except ConfigError as exc:
        raise ctx.located(exc) from None
