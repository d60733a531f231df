"""The Spark engine's faults that need pyspark installed: no master answering, no Java. One line,
exit 7, within seconds, no version built."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(
    project: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from segmentation.cli import main; main()", "run"],
        cwd=project, capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    return done, time.monotonic() - started


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 7, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def no_version(project: Path) -> bool:
    return not any(p.is_dir() and p.name != ".cache" for p in (project / "artifacts").glob("[!.]*"))


def test_a_master_that_does_not_answer_is_one_line_within_seconds(
    tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    master = f"spark://127.0.0.1:{closed_port()}"
    make_project(tmp_path, blobs3, {"engine": "spark", "spark": {"master": master}})
    done, seconds = run(tmp_path)
    line = one_line(done)
    assert f"spark.master {master}: no Spark master answers" in line
    assert seconds < 60
    assert no_version(tmp_path)


def test_without_java_the_run_names_make_spark(
    tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    make_project(tmp_path, blobs3, {"engine": "spark", "spark": {"master": "local[1]"}})
    # Only the environment's own commands: no java on PATH, and no JAVA_HOME.
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)
    done, seconds = run(tmp_path, env)
    line = one_line(done)
    assert "needs Java 17 or later" in line and "make spark" in line
    assert seconds < 60
    assert no_version(tmp_path)
