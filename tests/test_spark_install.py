"""`engine: spark` where it cannot run, and Spark settings that are not settings: one line, a
documented exit code, nothing built. These need no Spark, so they run with `make test`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import yaml

ON_SPARK = {"engine": "spark", "spark": {"master": "local[1]", "partitions": 2}}
# The CLI with pyspark made unimportable: find_spec() answers None for a module set to None.
WITHOUT_PYSPARK = (
    "import sys; sys.modules['pyspark'] = None; from segmentation.cli import main; "
    "sys.argv = ['segment', *sys.argv[1:]]; main()"
)


def segment(project: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code or "from segmentation.cli import main; main()", *args]
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=300, check=False
    )


def versions(project: Path) -> list[str]:
    artifacts = project / "artifacts"
    return sorted(p.name for p in artifacts.iterdir() if p.is_dir()) if artifacts.is_dir() else []


def refused(done: subprocess.CompletedProcess[str], code: int) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_without_pyspark_the_run_names_make_spark(
    tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    make_project(tmp_path, blobs3, ON_SPARK)
    line = refused(segment(tmp_path, "run", code=WITHOUT_PYSPARK), 7)
    assert "needs pyspark" in line and "make spark" in line
    assert versions(tmp_path) == []


def test_a_spark_setting_named_by_a_number_is_refused_at_its_line(
    tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    config = make_project(tmp_path, blobs3, {**ON_SPARK, "spark": {"conf": {1: "x"}}})
    line = refused(segment(tmp_path, "run"), 2)
    text = config.read_text(encoding="utf-8").splitlines()
    where = next(i for i, row in enumerate(text, 1) if row.strip().startswith("conf:"))
    assert line.startswith(f"error: {config.name}:{where}: spark.conf: key 1 is not a string")
    assert versions(tmp_path) == []


def test_a_spark_setting_with_a_mapping_value_is_refused(
    tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    make_project(
        tmp_path, blobs3, {**ON_SPARK, "spark": {"conf": {"spark.executor.memory": {"a": 1}}}}
    )
    line = refused(segment(tmp_path, "run"), 2)
    assert (
        "spark.conf: spark.executor.memory: the value must be text, a number or true/false" in line
    )


def test_spark_settings_reach_spark_as_text() -> None:
    from segmentation.config import SparkConfig

    conf = SparkConfig(conf={"spark.executor.cores": 2, "spark.eventLog.enabled": True})
    assert conf.settings() == {"spark.executor.cores": "2", "spark.eventLog.enabled": "true"}
    assert yaml.safe_dump(conf.model_dump(mode="json"))


REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"


def pinned(lock: str) -> dict[str, str]:
    """Each distribution a lock file pins, with its version."""
    text = (REQUIREMENTS / lock).read_text(encoding="utf-8")
    return {
        name.lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, flags=re.M)
    }


def test_the_spark_install_holds_what_pyspark_sql_needs() -> None:
    # An install from the runtime and spark locks alone (as users and `make bench` make it) must
    # run the engine: pyspark's `sql` extra, pandas and pyarrow, is what toArrow and
    # createDataFrame require; pandas is the one the tests run with.
    runtime, spark, dev = pinned("runtime.lock"), pinned("spark.lock"), pinned("dev.lock")
    installed = runtime | spark
    assert {"pyspark", "py4j", "pandas", "pyarrow", "numpy"} <= installed.keys()
    assert spark["pandas"] == dev["pandas"]
