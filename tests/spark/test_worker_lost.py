"""A worker killed in the middle of a run on a standalone cluster: Spark runs the lost tasks again
on the worker left, and the run ends with the Polars engine's segments; or it fails cleanly (exit
7, one line, no version). The test starts a cluster of its own (free ports, its own folder), so
that the shared cluster of `make spark-test` keeps both workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "spark_cluster.py"
SEGMENT = Path(sys.executable).with_name("segment")
EXECUTOR_TIMEOUT = 300.0
RUN_TIMEOUT = 900.0


@dataclass(frozen=True)
class Cluster:
    folder: Path
    master: str
    master_ui: str

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=10) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def worker_pid(self, name: str) -> int:
        members = json.loads((self.folder / "cluster.json").read_text())["members"]
        (pid,) = [member["pid"] for member in members if member["name"] == name]
        return int(pid)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """One master and two workers on free ports, stopped after the test."""
    folder = tmp_path / "cluster"
    command = [sys.executable, str(CLUSTER_SCRIPT), "--dir", str(folder)]
    ports = ["--master-port", "0", "--master-ui-port", "0", "--worker-ui-port", "0"]
    started = subprocess.run(
        [*command[:2], "start", *command[2:], *ports],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
    )
    try:
        yield Cluster(folder, exported["SEGMENT_SPARK_MASTER"], exported["SEGMENT_SPARK_MASTER_UI"])
    finally:
        subprocess.run([*command[:2], "stop", *command[2:]], timeout=300, check=False)


def executors_on_both_workers(cluster: Cluster) -> bool:
    """True once the run's application holds an executor on each worker."""
    state = cluster.state()
    if not state["activeapps"]:
        return False
    return all(worker["coresused"] > 0 for worker in state["workers"])


def segment_sizes(project: Path) -> list[int]:
    segments = pl.read_csv(project / "artifacts" / "latest" / "segments.csv")
    return sorted(segments["size"].to_list())


def test_a_worker_killed_mid_run(
    own_cluster: Cluster, tmp_path: Path, blobs3: pl.DataFrame, make_project: Any
) -> None:
    reference = tmp_path / "polars"
    make_project(reference, blobs3)
    done = subprocess.run(
        [str(SEGMENT), "run"],
        cwd=reference, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    project = tmp_path / "spark"
    spark = {"master": own_cluster.master, "partitions": 4}
    make_project(project, blobs3, {"engine": "spark", "spark": spark})
    run = subprocess.Popen(
        [str(SEGMENT), "run"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + EXECUTOR_TIMEOUT
        while not executors_on_both_workers(own_cluster):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run got no executor on both workers"
            time.sleep(0.2)
        # The worker's process group holds its executor and the executor's Python workers.
        os.killpg(own_cluster.worker_pid("worker-1"), signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()

    # The application was running when its executor went with the worker.
    master_log = (own_cluster.folder / "logs" / "master.log").read_text(encoding="utf-8")
    assert "Telling app of lost executor" in master_log
    # For the record (`pytest -rP`): which of the two answers this run gave.
    print(f"worker-1 killed mid-run: exit {run.returncode}\n{stdout}{stderr}")  # noqa: T201
    if run.returncode == 0:
        assert segment_sizes(project) == segment_sizes(reference)
    else:
        lines = stderr.strip().splitlines()
        assert run.returncode == 7, stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert not any(p.is_dir() for p in (project / "artifacts").glob("[!.]*")), stdout
