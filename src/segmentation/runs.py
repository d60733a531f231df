"""What a run did: each stage's outcome, the run's result, and its line in artifacts/runs.jsonl."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from segmentation.artifacts import REPORT, Workspace


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    status: str
    """"ran" or "reused"."""
    seconds: float
    summary: str


@dataclass
class Result:
    version: str
    outcomes: list[StageOutcome] = field(default_factory=list)
    report: Path | None = None
    """The version's report, when the run went as far as the report stage."""
    outputs: dict[str, Path] = field(default_factory=dict)
    """Where each stage's results are, for runs that stopped before the report."""


def reused(workspace: Workspace, version: str, stages: tuple[str, ...]) -> Result:
    """The result of a run that found its version complete: every stage reused, its report there.

    Parameters
    ----------
    workspace
        The project folders.
    version
        The complete version.
    stages
        The stages the run asked for, in order.
    """
    return Result(
        version=version,
        outcomes=[StageOutcome(stage, "reused", 0.0, "unchanged") for stage in stages],
        report=workspace.report_dir(version) / REPORT,
    )


def log_run(
    workspace: Workspace, config_path: Path, result: Result, failed: str | None = None
) -> None:
    """Append the run's line to the runs log: its version, config and each stage's status.

    Parameters
    ----------
    workspace
        The project folders.
    config_path
        The config the run read.
    result
        What the run did so far.
    failed
        The stage that was running when the run failed, or None.
    """
    entry = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "failed": failed,
        "version": result.version,
        "config": str(config_path),
        "stages": {
            o.stage: {"status": o.status, "seconds": round(o.seconds, 3)} for o in result.outcomes
        },
    }
    workspace.artifacts.mkdir(parents=True, exist_ok=True)
    with workspace.runs_log.open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
