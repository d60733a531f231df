"""The cluster `make spark-test` starts is real: a job's tasks run in executors on both workers."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.cluster


def test_a_job_runs_on_both_workers(cluster_spark: SparkSession, spark_master_ui: str) -> None:
    sc = cluster_spark.sparkContext

    def where(rows: Iterable[int]) -> Iterator[tuple[str, int, int]]:
        # Defined here so that it is pickled by value: the executors cannot import this module.
        count = sum(1 for _ in rows)
        time.sleep(1)  # keeps an executor busy, so that the four tasks spread over both
        yield str(Path.cwd()), os.getpid(), count

    placed = sc.parallelize(range(1000), 4).mapPartitions(where).collect()

    assert len(placed) == 4
    assert sum(count for _, _, count in placed) == 1000
    # An executor runs its Python in <worker work dir>/<application id>/<executor id>.
    folders = {Path(cwd) for cwd, _, _ in placed}
    assert {folder.parent.name for folder in folders} == {sc.applicationId}
    assert len({folder.parent.parent for folder in folders}) == 2, folders
    assert os.getpid() not in {pid for _, pid, _ in placed}
    # The driver and one executor per worker.
    assert sc._jsc.sc().getExecutorMemoryStatus().size() == 3

    with urllib.request.urlopen(f"{spark_master_ui}/json/", timeout=10) as response:
        state = json.load(response)
    assert state["aliveworkers"] == 2
    (app,) = [app for app in state["activeapps"] if app["id"] == sc.applicationId]
    assert app["state"] == "RUNNING"
    assert app["cores"] == 2
