"""The Spark tests: what they need, and the cluster `make spark-test` runs them on.

`make test` (plain `pytest`) leaves this folder out: Spark sessions take seconds to start.
`pytest tests/spark` runs it. Every module here is skipped, with the reason, when pyspark or Java
17+ is missing (`make spark` installs both). Tests marked `@pytest.mark.cluster` (or using the
`spark_master`, `spark_master_ui` or `cluster_spark` fixtures) need the local standalone cluster,
one master and two workers on 127.0.0.1 (scripts/spark_cluster.py); without SEGMENT_SPARK_MASTER
they are skipped. `make spark-test` starts the cluster, sets SEGMENT_SPARK_MASTER (the master URL,
spark://127.0.0.1:7077) and SEGMENT_SPARK_MASTER_UI (its web UI, whose /json/ lists the workers
and applications), runs `pytest tests/spark` and stops the cluster.

Functions sent to the executors are pickled by value only when they are not importable by name:
define them inside the test (or in src/segmentation, which the workers import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_ENV = "SEGMENT_SPARK_MASTER"
MASTER_UI_ENV = "SEGMENT_SPARK_MASTER_UI"
NO_CLUSTER = f"needs the local Spark cluster: run `make spark-test` (it sets {MASTER_ENV})"
EXECUTORS_TIMEOUT = 120.0


def _java_version(java: str) -> tuple[int | None, str]:
    """The major version of `java -version` (8 for 1.8) and its first line."""
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, str(error)
    output = (result.stderr or result.stdout).strip()
    first = output.splitlines()[0] if output else f"{java} -version printed nothing"
    found = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if found is None:
        return None, first
    major = int(found.group(1))
    return (int(found.group(2) or 0) if major == 1 else major), first


def _unavailable() -> str | None:
    """Why Spark cannot run here, or None when it can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (make spark installs the Spark extra)"
    java_home = os.environ.get("JAVA_HOME")
    java = (
        str(Path(java_home) / "bin" / "java")
        if java_home and (Path(java_home) / "bin" / "java").is_file()
        else shutil.which("java")
    )
    if java is None:
        return "java not found (make spark installs Java 17)"
    major, first_line = _java_version(java)
    if major is None or major < 17:
        return f"Spark needs Java 17 or newer; {java} says: {first_line}"
    return None


UNAVAILABLE = _unavailable()


class _UnavailableModule(pytest.Module):
    """A test module that is not imported (it may import pyspark) but reported as skipped."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        pytest.skip(UNAVAILABLE or "")


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if UNAVAILABLE is None:
        return None
    return _UnavailableModule.from_parent(parent, path=module_path)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cluster") is not None and not os.environ.get(MASTER_ENV):
        pytest.skip(NO_CLUSTER)


@pytest.fixture(scope="session")
def spark_master() -> str:
    """The cluster's master URL (SEGMENT_SPARK_MASTER); skips the test without one."""
    master = os.environ.get(MASTER_ENV, "").strip()
    if not master:
        pytest.skip(NO_CLUSTER)
    return master


@pytest.fixture(scope="session")
def spark_master_ui(spark_master: str) -> str:
    """The master's web UI (SEGMENT_SPARK_MASTER_UI): GET <it>/json/ for workers and apps."""
    ui = os.environ.get(MASTER_UI_ENV, "").strip().rstrip("/")
    if not ui:
        pytest.skip(f"{MASTER_UI_ENV} is not set (make spark-test sets it)")
    return ui


def _master_state(master_ui: str) -> dict[str, Any]:
    """The master's JSON: `workers`, `aliveworkers`, `activeapps`, `completedapps`, ..."""
    with urllib.request.urlopen(f"{master_ui}/json/", timeout=10) as response:
        data: dict[str, Any] = json.load(response)
    return data


@pytest.fixture(scope="module")
def cluster_spark(spark_master: str, spark_master_ui: str) -> Iterator[SparkSession]:
    """One SparkSession on the cluster for a test module, with one executor per ALIVE worker
    registered before the first test runs; stopped after the module, so that it does not hold
    the workers' cores while other modules run the pipeline on the cluster.

    Bound to 127.0.0.1, no Spark UI, and the executors run this interpreter (sys.executable).
    """
    from pyspark.sql import SparkSession

    workers = int(_master_state(spark_master_ui).get("aliveworkers", 0))
    spark = (
        SparkSession.builder.master(spark_master)
        .appName("segmentation-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.executor.memory", "1g")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    try:
        deadline = time.monotonic() + EXECUTORS_TIMEOUT
        # getExecutorMemoryStatus counts the driver too.
        while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < workers + 1:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"fewer than {workers} executors registered after {EXECUTORS_TIMEOUT:.0f} s"
                )
            time.sleep(0.2)
        yield spark
    finally:
        spark.stop()
