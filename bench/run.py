"""Benchmark: the pipeline (`segment run`) against the notebook baseline, Mall and synthetic data.

For each entry of `--sizes` (default mall, 100k, 1M and 10M rows) it takes the data set (`mall`:
the Mall Customers file, the base config's data.path, fetched with `segment fetch` when missing;
a row count: generated or reused by bench/generate.py), then runs, each in its own measured
subprocess:

- the pipeline, in a fresh temporary project folder whose config is the repo's config.yaml with
  `data.path` pointing at the CSV (`data.url` and `data.sha256` null);
- the baseline (bench/baseline.py), up to `--baseline-max` rows (default 1M: above that it takes
  too long).

The Mall runs take seconds, so each side runs `--mall-repeats` times (default 5), interleaved, and
its row holds the median. The Mall file has no true groups: no ARI.

Each run's wall time, CPU time and peak memory (all its processes together) are measured by a
small wrapper process whose only child is the run, so measurements do not mix. A run that fails,
is killed or times out is recorded as such, with its exit code, and the benchmark goes on.

Last, on the 1M set, the sample-size study runs the pipeline once per `--sample-sizes` value of
`select_k.sample_size` and compares the results with the truth and with the largest sample.

It prints a Markdown table (size, tool, wall time, peak memory, chosen k, ARI against the true
groups, report size, time relative to the baseline), writes it with a description of the machine
to bench/results.md, and prints PASS / FAIL / SKIP for each target. Exit 1 if any target fails.

    .venv/bin/python bench/run.py --sizes 100k
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl
import transactions as tx
import yaml
from generate import DATA_DIR, Dataset, ensure, parse_rows
from sklearn.metrics import adjusted_rand_score

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TRUE_K = 5
MB = 1_000_000
"""Memory and sizes are in decimal megabytes: 4 GB = 4,000 MB, 5 MB = 5,000,000 bytes."""
Say = Callable[[str], None]
NA = "n/a"

# The wrapper that measures one run: it starts the command in its own session, waits (killing the
# whole session on timeout or when interrupted) and writes wall time, exit code, CPU time and peak
# memory as JSON. Every 0.1 s it reads each process's parent, session, resident size and CPU ticks
# from /proc, and keeps three peaks of the sum of resident sizes (and the CPU time of each group):
# - the session's: every process of the run (what the table's peak memory is);
# - the driver's: the command and its descendants only. A Spark run's driver is the `segment`
#   process and its JVM; executors on a standalone cluster are children of the worker JVMs, not of
#   the driver, so they are left out (in local mode they live inside the driver JVM). Its CPU time
#   is the processes' own ticks as last seen, or getrusage's if more: a JVM that outlives the
#   `segment` process is never waited for, so getrusage misses it;
# - the watched processes' (a Spark cluster's master and workers, given as process ids) and their
#   descendants (the executors and their Python workers), with the CPU time those used during the run.
# The session and driver peaks are at least the largest single process's peak (getrusage; ru_maxrss
# is KiB on Linux, bytes on macOS) when that is more.
WRAPPER = r"""
import json, os, resource, signal, subprocess, sys, time
out, timeout, watch, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
watched = {int(pid) for pid in watch.split(",") if pid.strip()}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
def processes():
    # pid -> (parent, session, resident bytes, CPU ticks: user + system)
    found = {}
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            found[int(pid)] = (int(fields[1]), int(fields[3]), int(fields[21]) * PAGE,
                               int(fields[11]) + int(fields[12]))
        except (OSError, IndexError, ValueError):
            pass
    return found
def tree(found, roots):
    children = {}
    for pid, (parent, _, _, _) in found.items():
        children.setdefault(parent, []).append(pid)
    todo = [pid for pid in roots if pid in found]
    seen = set(todo)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen
first = processes()
cpu_before = {pid: first[pid][3] for pid in tree(first, watched)}
cpu_last = dict(cpu_before)
driver_cpu = {}
start = time.perf_counter()
child = subprocess.Popen(cmd, start_new_session=True)
def stop(signum, frame):
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    sys.exit(128 + signum)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
timed_out = False
session_peak = driver_peak = watched_peak = 0
while True:
    try:
        code = child.wait(timeout=0.1)
        break
    except subprocess.TimeoutExpired:
        found = processes()
        session_peak = max(session_peak, sum(p[2] for p in found.values() if p[1] == child.pid))
        driver = tree(found, [child.pid])
        driver_peak = max(driver_peak, sum(found[pid][2] for pid in driver))
        for pid in driver:
            driver_cpu[pid] = found[pid][3]
        if watched:
            cluster = tree(found, watched)
            watched_peak = max(watched_peak, sum(found[pid][2] for pid in cluster))
            for pid in cluster:
                cpu_last[pid] = found[pid][3]
        if time.perf_counter() - start > timeout:
            timed_out = True
            os.killpg(child.pid, signal.SIGKILL)
            code = child.wait()
            break
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
largest = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
cpu = max(usage.ru_utime + usage.ru_stime, sum(driver_cpu.values()) / TICK)
watched_cpu = sum(ticks - cpu_before.get(pid, 0) for pid, ticks in cpu_last.items()) / TICK
with open(out, "w") as f:
    json.dump(
        {"seconds": seconds, "cpu": cpu, "exit_code": code, "timed_out": timed_out,
         "peak_rss": max(session_peak, largest), "driver_rss": max(driver_peak, largest),
         "watched_rss": watched_peak if watched else None,
         "watched_cpu": watched_cpu if watched else None},
        f,
    )
"""


@dataclass
class Measurement:
    seconds: float
    cpu_seconds: float
    exit_code: int
    timed_out: bool
    peak_rss: int
    log: Path
    driver_rss: int | None = None
    """The command and its descendants only (a Spark run's driver: `segment` and its JVM)."""
    watched_rss: int | None = None
    """The watched processes (a Spark cluster) and their descendants, when some were given."""
    watched_cpu: float | None = None


@dataclass
class Result:
    rows: int
    tool: str
    status: str
    """ok | failed (exit N) | killed (signal N) | timeout after N s | skipped (why) | error reading outputs"""
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    chosen_k: int | None = None
    ari: float | None = None
    report_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    customers: int | None = None
    """Transaction rows: the customers the log holds."""
    table_seconds: float | None = None
    """Transaction rows: the time of building the customer table (the pipeline's `customers`
    stage; pandas reading the parts and aggregating, without its imports)."""
    driver_rss: int | None = None
    """Spark rows: the peak of the `segment` process and its descendants (its driver JVM; in
    local mode the executors too)."""
    cluster_rss: int | None = None
    """Spark rows on the standalone cluster: the peak of its master, workers and executors."""
    cluster_cpu: float | None = None
    """Spark rows on the standalone cluster: the CPU time its processes used during the run."""
    dataset: str | None = None
    """A data set that is not generated (`mall`); None for the generated ones, named by rows."""
    runs: int = 1
    """How many runs the times are the median of (the Mall row repeats each side)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        """The data set as the checks name it: `mall`, or `1M rows`."""
        return self.dataset or f"{fmt_rows(self.rows)} rows"


@dataclass(frozen=True)
class CustomerTable:
    """What a customer row runs on: a generated data set, or the Mall file (no true groups)."""

    rows: int
    csv: Path
    truth: Path | None
    """The true groups, for the ARI; None for the Mall file."""
    name: str | None = None
    """`mall` for the Mall file; None for a generated data set."""

    @classmethod
    def generated(cls, data: Dataset) -> CustomerTable:
        return cls(data.rows, data.csv, data.truth)

    @property
    def described(self) -> str:
        """How progress lines name it: `1,000,000 rows`, `mall (200 rows)`."""
        return f"{self.name} ({self.rows:,} rows)" if self.name else f"{self.rows:,} rows"


def measure(
    command: list[str],
    cwd: Path,
    log: Path,
    timeout: float,
    watch: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run `command` in `cwd` under the wrapper; its output goes to `log`. The processes in
    `watch` (and their descendants) are measured apart from the run's own."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        with log.open("w") as sink:
            wrapper = subprocess.Popen(
                [
                    sys.executable,
                    *("-c", WRAPPER, str(out), str(timeout), ",".join(map(str, watch))),
                    *command,
                ],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                code = wrapper.wait()
            except BaseException:
                # Interrupted (Ctrl-C, or SIGTERM turned into an exception): the wrapper ends the
                # whole run, then exits; killing it at once would leave the run going.
                with contextlib.suppress(OSError):
                    wrapper.send_signal(signal.SIGTERM)
                try:
                    wrapper.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    wrapper.kill()
                    wrapper.wait()
                raise
        if code != 0:
            raise subprocess.CalledProcessError(code, "the measuring wrapper")
        data = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    return Measurement(
        seconds=float(data["seconds"]),
        cpu_seconds=float(data["cpu"]),
        exit_code=int(data["exit_code"]),
        timed_out=bool(data["timed_out"]),
        peak_rss=int(data["peak_rss"]),
        log=log,
        driver_rss=int(data["driver_rss"]),
        watched_rss=None if data["watched_rss"] is None else int(data["watched_rss"]),
        watched_cpu=None if data["watched_cpu"] is None else float(data["watched_cpu"]),
    )


def status_of(measurement: Measurement, timeout: float) -> str:
    if measurement.timed_out:
        return f"timeout after {timeout:g} s"
    if measurement.exit_code < 0:
        return f"killed (signal {-measurement.exit_code})"
    if measurement.exit_code != 0:
        return f"failed (exit {measurement.exit_code})"
    return "ok"


def tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").rstrip().splitlines()
    return "\n".join("    " + line[-200:] for line in text[-lines:])


def pipeline_config(base: Path, csv: Path, sample_size: int | None = None) -> str:
    """The repo's config with the data pointing at `csv` and no download or hash check; with
    `select_k.sample_size` set when one is given."""
    config: dict[str, Any] = yaml.safe_load(base.read_text()) or {}
    config["data"] = {**(config.get("data") or {}), "path": str(csv), "url": None, "sha256": None}
    if sample_size is not None:
        config["select_k"] = {**(config.get("select_k") or {}), "sample_size": sample_size}
    return yaml.safe_dump(config, sort_keys=False)


def ari(truth: Path, assignments: pl.DataFrame, label: str) -> float:
    """Adjusted Rand index of `label` against the true group, joined on customer_id.

    Ids are compared as text: the pipeline keeps them as strings whatever the CSV holds.
    """
    key = pl.col("customer_id").cast(pl.String)
    joined = (
        pl.read_parquet(truth)
        .with_columns(key)
        .join(assignments.select(key, pl.col(label)), on="customer_id", how="inner")
    )
    if joined.height != assignments.height:
        raise ValueError(f"{assignments.height - joined.height} customers missing from the truth")
    return float(adjusted_rand_score(joined["group"].to_numpy(), joined[label].to_numpy()))


STAGE_LINE = re.compile(r"^\s*\S\s+(?P<stage>[a-z-]+)\s+(?:ran|reused)\s+(?P<seconds>[\d.]+) s\b")


def stage_seconds(log: Path) -> dict[str, float]:
    """The pipeline's own per-stage times, from its log lines ("✓ prepare  ran  2.30 s ...")."""
    return {
        match["stage"]: float(match["seconds"])
        for line in log.read_text(errors="replace").splitlines()
        if (match := STAGE_LINE.match(line))
    }


def stage_times(log: Path) -> str:
    return ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stage_seconds(log).items())


def read_outputs(result: Result, readers: dict[str, Callable[[], None]], say: Say) -> None:
    """Call each reader; one that fails marks the result and says why, the others still run."""
    for what, reader in readers.items():
        try:
            reader()
        except (OSError, KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            result.status = "error reading outputs"
            say(f"  could not read {what}: {type(exc).__name__}: {exc}")


def version_readers(
    project: Path, truth: Path | None, result: Any
) -> dict[str, Callable[[], None]]:
    """Readers of a finished run's latest version that fill `result`: the chosen k, the ARI of its
    segments against `truth` (when there is one), and the report's size."""
    latest = project / "artifacts" / "latest"

    def chosen_k() -> None:
        selection = json.loads((latest / "k_selection.json").read_text())
        result.chosen_k = int(selection["chosen_k"])

    def rand_index(truth: Path) -> None:
        assignments = pl.read_parquet(latest / "assignments.parquet")
        result.ari = ari(truth, assignments, "segment_id")

    def report() -> None:
        result.report_bytes = (project / "reports" / "latest" / "index.html").stat().st_size

    readers = {"k_selection.json": chosen_k, "report": report}
    if truth is not None:
        readers["assignments.parquet"] = lambda: rand_index(truth)
    return readers


def run_pipeline(
    data: CustomerTable,
    segment: Path,
    base_config: Path,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
    log_name: str | None = None,
) -> Result:
    """`segment run` in a fresh temporary project (nothing to reuse from an earlier run)."""
    project = Path(tempfile.mkdtemp(prefix=f"segbench-{data.name or data.rows}-pipeline-"))
    (project / "config.yaml").write_text(pipeline_config(base_config, data.csv))
    say(f"pipeline, {data.described}: running in {project}")
    measured = measure(
        [str(segment), "run", "--config", "config.yaml"], project, project / "run.log", timeout
    )
    result = Result(
        data.rows,
        "pipeline",
        status_of(measured, timeout),
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss=measured.peak_rss,
        dataset=data.name,
    )
    if stages := stage_times(measured.log):
        result.notes.append(f"stages: {stages}")
    if result.ok:
        read_outputs(result, version_readers(project, data.truth, result), say)
    finish(result, measured, project, keep, logs, say, name=log_name)
    return result


def run_baseline(
    data: CustomerTable,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
    log_name: str | None = None,
) -> Result:
    """bench/baseline.py on the data set's CSV, with its true groups for the ARI when it has them."""
    folder = Path(tempfile.mkdtemp(prefix=f"segbench-{data.name or data.rows}-baseline-"))
    say(f"baseline, {data.described}: running in {folder}")
    result_json = folder / "result.json"
    truth = ["--truth", str(data.truth)] if data.truth is not None else []
    command = [
        sys.executable,
        str(BENCH / "baseline.py"),
        *("--csv", str(data.csv), *truth, "--out-dir", str(folder / "plots")),
        *("--result", str(result_json)),
    ]
    measured = measure(command, folder, folder / "run.log", timeout)
    result = Result(
        data.rows,
        "baseline",
        status_of(measured, timeout),
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss=measured.peak_rss,
        dataset=data.name,
    )
    if result.ok:

        def outputs() -> None:
            found = json.loads(result_json.read_text())
            result.chosen_k, result.ari = int(found["chosen_k"]), found["ari"]
            result.report_bytes = int(found["plot_bytes"])

        read_outputs(result, {"result.json": outputs}, say)
    finish(result, measured, folder, keep, logs, say, name=log_name)
    return result


# ---------------------------------------------------------------------------------------------
# The Mall row: the real Mall Customers file, each side run several times

MALL = "mall"
"""The `--sizes` entry of the Mall row."""


class MallUnavailableError(Exception):
    """The Mall file is missing and could not be fetched; the message says why."""


def parse_sizes(text: str) -> list[int | str]:
    """`--sizes`: `mall` and row counts of generated data sets (100k, 1M), in the order given."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return [MALL if part.lower() == MALL else parse_rows(part) for part in parts]


def mall_file(base_config: Path, segment: Path, timeout: float, say: Say) -> Path:
    """The Mall Customers file: the base config's `data.path`, relative to the config's folder
    (the project root). When it is missing, `segment fetch` downloads it from `data.url` and
    checks its SHA-256."""
    config: dict[str, Any] = yaml.safe_load(base_config.read_text()) or {}
    path = (config.get("data") or {}).get("path")
    if not path:
        raise MallUnavailableError(f"{base_config} sets no data.path")
    csv = (base_config.parent / path).resolve()
    if csv.is_file():
        return csv
    if not segment.is_file():
        raise MallUnavailableError(f"{csv} is missing, and there is no {segment} to fetch it")
    say(f"mall: {csv} is missing; fetching it with `segment fetch`")
    try:
        fetched = subprocess.run(
            [str(segment), "fetch", "--config", str(base_config)],
            cwd=base_config.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MallUnavailableError(f"{csv} is missing and `segment fetch` timed out") from None
    if fetched.returncode != 0 or not csv.is_file():
        said = (fetched.stderr or fetched.stdout).strip().splitlines()
        raise MallUnavailableError(
            f"{csv} is missing and `segment fetch` exited with {fetched.returncode}"
            + (f": {said[-1].strip()}" if said else "")
        )
    return csv


def median_row(runs: list[Result]) -> Result:
    """One row for repeated runs of one tool on one data set: the median wall and CPU time, the
    highest peak memory, the outputs of the run of median time (its stages in the notes), and the
    wall time's spread. The row is ok only when every run was. A single run is its own row."""
    first = runs[0]
    if len(runs) == 1:
        return first
    failed = [(number, r) for number, r in enumerate(runs, 1) if not r.ok]
    status = first.status
    if failed:
        number, bad = failed[0]
        status = f"{bad.status} (run {number} of {len(runs)})"
    row = Result(first.rows, first.tool, status, dataset=first.dataset, runs=len(runs))
    times = [r.seconds for r in runs if r.seconds is not None]
    if not times:
        return row
    row.seconds = statistics.median(times)
    cpu = [r.cpu_seconds for r in runs if r.cpu_seconds is not None]
    row.cpu_seconds = statistics.median(cpu) if cpu else None
    row.peak_rss = max((r.peak_rss for r in runs if r.peak_rss is not None), default=None)
    typical = next(r for r in runs if r.seconds == statistics.median_low(times))
    row.chosen_k, row.report_bytes = typical.chosen_k, typical.report_bytes
    row.notes.append(
        f"median of {len(runs)} runs; wall time {min(times):.1f}-{max(times):.1f} s (min-max)"
    )
    row.notes.extend(f"{note} (the run of median time)" for note in typical.notes)
    chosen = sorted({r.chosen_k for r in runs if r.chosen_k is not None})
    if len(chosen) > 1:
        row.notes.append(f"the runs chose different k: {', '.join(map(str, chosen))}")
    return row


def run_mall(
    base_config: Path,
    segment: Path,
    tools: set[str],
    repeats: int,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
) -> list[Result]:
    """The Mall row: the pipeline and the baseline on the Mall file, `repeats` runs each,
    interleaved (pipeline, baseline, pipeline, ...) so that a change in the machine's load falls
    on both alike; each pipeline run in a fresh project. The runs are short (seconds), so one run
    says little: each tool's row holds the median. No true groups, so no ARI."""
    wanted = [tool for tool in ("pipeline", "baseline") if tool in tools]
    try:
        csv = mall_file(base_config, segment, timeout, say)
    except MallUnavailableError as exc:
        # The reason can be a long download error: the table says `skipped`, the notes say why.
        say(f"mall: skipped: {exc}")
        return [
            Result(0, tool, "skipped (no Mall file)", notes=[str(exc)], dataset=MALL)
            for tool in wanted
        ]
    data = CustomerTable(pl.scan_csv(csv).select(pl.len()).collect().item(), csv, None, MALL)
    runs: dict[str, list[Result]] = {tool: [] for tool in wanted}
    for number in range(1, repeats + 1):
        say(f"mall: run {number} of {repeats}")
        for tool in wanted:
            log_name = f"{MALL}-{tool}-{number}"
            runs[tool].append(
                run_pipeline(data, segment, base_config, timeout, keep, logs, say, log_name)
                if tool == "pipeline"
                else run_baseline(data, timeout, keep, logs, say, log_name)
            )
    return [median_row(found) for found in runs.values()]


TRANSACTIONS_COLUMNS = {
    "customer": "customer_id",
    "time": "invoice_date",
    "order": "order_id",
    "quantity": "quantity",
    "unit_price": "unit_price",
    "returns": "net",
}
"""The `transactions:` section for the generated logs (bench/transactions.py)."""


def transactions_config(base: Path, data: tx.Transactions) -> str:
    """The repo's config with `data.kind: transactions` reading the generated log's parts (a
    glob), no download or hash check, as_of the day after the last purchase; the customer table's
    `columns:` and `features:` left out (the built table's defaults: recency, frequency, monetary),
    and segments named from the columns' labels (the shipped vocabulary speaks of income)."""
    config: dict[str, Any] = yaml.safe_load(base.read_text()) or {}
    config["data"] = {
        "kind": "transactions",
        "path": str(data.glob),
        "as_of": None,
        "url": None,
        "sha256": None,
    }
    config.pop("columns", None)
    config.pop("features", None)
    config["naming"] = None
    config["transactions"] = dict(TRANSACTIONS_COLUMNS)
    return yaml.safe_dump(config, sort_keys=False)


def run_transactions_pipeline(
    data: tx.Transactions,
    customers: int,
    segment: Path,
    base_config: Path,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
) -> Result:
    project = Path(tempfile.mkdtemp(prefix=f"segbench-tx{data.rows}-pipeline-"))
    (project / "config.yaml").write_text(transactions_config(base_config, data))
    say(f"pipeline, {data.rows:,} transactions: running in {project}")
    measured = measure(
        [str(segment), "run", "--config", "config.yaml"], project, project / "run.log", timeout
    )
    result = Result(
        data.rows,
        "pipeline",
        status_of(measured, timeout),
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss=measured.peak_rss,
        customers=customers,
    )
    stages = stage_seconds(measured.log)
    result.table_seconds = stages.get("customers")
    if stages:
        result.notes.append(f"stages: {stage_times(measured.log)}")
    if result.ok:

        def table_time() -> None:
            if result.table_seconds is None:
                raise ValueError("no `customers` stage line in the run log")

        read_outputs(
            result,
            {"the customers stage's time": table_time}
            | version_readers(project, data.truth, result),
            say,
        )
    finish(result, measured, project, keep, logs, say, prefix="tx")
    return result


def run_transactions_pandas(
    data: tx.Transactions, customers: int, timeout: float, keep: bool, logs: Path, say: Say
) -> Result:
    folder = Path(tempfile.mkdtemp(prefix=f"segbench-tx{data.rows}-pandas-"))
    say(f"pandas, {data.rows:,} transactions: running in {folder}")
    result_json = folder / "result.json"
    command = [
        sys.executable,
        str(BENCH / "baseline_transactions.py"),
        "--parts",
        str(data.glob),
        "--result",
        str(result_json),
    ]
    measured = measure(command, folder, folder / "run.log", timeout)
    result = Result(
        data.rows,
        "pandas",
        status_of(measured, timeout),
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss=measured.peak_rss,
        customers=customers,
    )
    if result.ok:

        def outputs() -> None:
            found = json.loads(result_json.read_text())
            result.table_seconds = float(found["seconds"])
            result.notes.append(
                f"read {found['read_seconds']:.1f} s, aggregate {found['aggregate_seconds']:.1f} s"
            )

        read_outputs(result, {"result.json": outputs}, say)
    finish(result, measured, folder, keep, logs, say, prefix="tx")
    return result


def transactions_table(results: list[Result]) -> str:
    pandas_seconds = {
        r.rows: r.table_seconds for r in results if r.tool == "pandas" and r.table_seconds
    }
    lines = [
        "| transactions | customers | tool | status | customer table (s) | rows/s (customer"
        " table) | wall time (s) | CPU time (s) | peak memory (MB) | chosen k | ARI | customer"
        " table / pandas |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        measured = r.seconds is not None and not r.status.startswith("skipped")
        ratio = NA
        if r.table_seconds is not None and r.rows in pandas_seconds:
            ratio = f"{r.table_seconds / pandas_seconds[r.rows]:.2f}x"
        cells = [
            fmt_rows(r.rows),
            NA if r.customers is None else f"{r.customers:,}",
            r.tool,
            r.status,
            NA if r.table_seconds is None else f"{r.table_seconds:,.1f}",
            NA if not r.table_seconds else f"{r.rows / r.table_seconds:,.0f}",
            f"{r.seconds:,.1f}" if measured and r.seconds is not None else NA,
            f"{r.cpu_seconds:,.1f}" if measured and r.cpu_seconds is not None else NA,
            fmt_mb(r.peak_rss) if measured else NA,
            NA if r.chosen_k is None else str(r.chosen_k),
            NA if r.ari is None else f"{r.ari:.4f}",
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TRANSACTIONS_ARI = 0.9


def memory_check(run: Result | None, target: str, not_run: str) -> Check:
    """The check that a pipeline run peaked under 4 GB (all its processes): SKIP when it was not
    run, FAIL when it failed before its memory was measured."""
    if run is None:
        return Check("SKIP", target, not_run)
    if run.peak_rss is None:
        return Check("FAIL", target, f"pipeline {run.status}, no measurement")
    note = "" if run.ok else f" (run {run.status})"
    passed = run.ok and run.peak_rss < 4_000 * MB
    return Check("PASS" if passed else "FAIL", target, f"{fmt_mb(run.peak_rss)} MB{note}")


def transactions_checks(results: list[Result], asked: list[int]) -> list[Check]:
    """At 100M transactions peak memory under 4 GB; at 10M the customers stage at most 1/4 of
    pandas' time; the ARI at least 0.9 at every size run."""

    def find(rows: int, tool: str) -> Result | None:
        return next((r for r in results if r.rows == rows and r.tool == tool), None)

    def verdict(passed: bool) -> str:
        return "PASS" if passed else "FAIL"

    found: list[Check] = []
    found.append(
        memory_check(
            find(100_000_000, "pipeline"),
            "100M transactions: pipeline peak memory < 4 GB",
            "not run at 100M transactions",
        )
    )

    ten_m, pandas = find(10_000_000, "pipeline"), find(10_000_000, "pandas")
    target = "10M transactions: customers stage <= 1/4 of pandas' customer table"
    if ten_m is None or pandas is None:
        found.append(Check("SKIP", target, "needs the pipeline and pandas at 10M transactions"))
    elif not pandas.ok or pandas.table_seconds is None:
        found.append(Check("SKIP", target, f"pandas {pandas.status}"))
    elif ten_m.table_seconds is None:
        found.append(Check("FAIL", target, f"pipeline {ten_m.status}, no customers stage time"))
    else:
        ratio = ten_m.table_seconds / pandas.table_seconds
        found.append(
            Check(
                verdict(ratio <= 0.25),
                target,
                f"{ten_m.table_seconds:.2f} s vs {pandas.table_seconds:.2f} s (ratio {ratio:.2f})",
            )
        )

    for rows in asked:
        run = find(rows, "pipeline")
        target = f"{fmt_rows(rows)} transactions: pipeline ARI >= {TRANSACTIONS_ARI}"
        if run is None:
            found.append(Check("SKIP", target, "pipeline not run"))
        elif run.ari is None:
            found.append(Check("FAIL", target, f"pipeline {run.status}, no assignments"))
        else:
            found.append(
                Check(
                    verdict(run.ari >= TRANSACTIONS_ARI),
                    target,
                    f"ARI = {run.ari:.4f}, k = {run.chosen_k} (true k {len(tx.GROUPS)})",
                )
            )
    return found


# ---------------------------------------------------------------------------------------------
# The Spark engine (`engine: spark`): in local mode, and on a standalone cluster on this machine

SPARK_MODES = ("local", "cluster")
SPARK_LOCAL_MASTER = "local[2]"
SPARK_PARTITIONS = 8
SPARK_CONF: dict[str, str] = {
    # The driver JVM's heap, the same at every size: the driver's memory must not grow with the
    # data. In local mode the executors run inside this JVM, so it bounds them too.
    "spark.driver.memory": "2g",
}
SPARK_CLUSTER_CONF: dict[str, str] = {
    # scripts/spark_cluster.py gives each of its 2 workers 1 core and 2g (--worker-memory): one
    # executor per worker, with all of the worker's memory (the default, 1g, is tight at 10M).
    "spark.executor.memory": "2g",
}
SPARK_CLUSTER_SCRIPT = REPO / "scripts" / "spark_cluster.py"
SPARK_ARI = 0.98
DRIVER_FLAT = 0.20
"""The driver's peak at 10M customers may differ from its peak at 1M by at most this share."""


def engine_label(mode: str) -> str:
    return f"spark {SPARK_LOCAL_MASTER}" if mode == "local" else "spark cluster"


def spark_config(pipeline: str, master: str, cluster: bool) -> str:
    """A pipeline config (YAML text, as `pipeline_config` or `transactions_config` write it) run
    on Spark: `engine: spark` and a `spark:` section with the master, the partitions, and the
    driver's (and on a cluster the executors') memory."""
    config: dict[str, Any] = yaml.safe_load(pipeline) or {}
    config["engine"] = "spark"
    config["spark"] = {
        "master": master,
        "partitions": SPARK_PARTITIONS,
        "conf": SPARK_CONF | (SPARK_CLUSTER_CONF if cluster else {}),
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class SparkCluster:
    master: str
    pids: tuple[int, ...]
    """The master's and the workers' process ids: the executors are their descendants."""
    folder: Path


class ClusterStartError(Exception):
    """The standalone cluster did not start; the message says why and where its logs are."""


def cluster_command(python: Path, folder: Path, action: str) -> list[str]:
    ports = ("--master-port", "0", "--master-ui-port", "0", "--worker-ui-port", "0")
    return [str(python), str(SPARK_CLUSTER_SCRIPT), action, "--dir", str(folder), *ports]


@contextlib.contextmanager
def spark_cluster(python: Path, keep: bool, say: Say) -> Iterator[SparkCluster]:
    """A standalone cluster (1 master, 2 workers on 127.0.0.1, free ports) started with
    scripts/spark_cluster.py in a folder of its own, and stopped whatever happens: an error, a
    failed run, Ctrl-C or SIGTERM (see `terminating_signals_raise`)."""
    folder = Path(tempfile.mkdtemp(prefix="segbench-spark-cluster-"))
    log = folder / "harness.log"
    ok = False
    try:
        say(f"spark cluster: starting (folder {folder})")
        with log.open("a") as sink:
            started = subprocess.run(
                cluster_command(python, folder, "start"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                check=False,
            )
        if started.returncode != 0:
            raise ClusterStartError(
                f"scripts/spark_cluster.py start exited with {started.returncode}:\n{tail(log)}"
            )
        state = json.loads((folder / "cluster.json").read_text())
        cluster = SparkCluster(
            str(state["master"]), tuple(int(m["pid"]) for m in state["members"]), folder
        )
        say(f"spark cluster: {cluster.master}, processes {', '.join(map(str, cluster.pids))}")
        yield cluster
        ok = True
    finally:
        # A second Ctrl-C or SIGTERM must not cut the stop short.
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            if (folder / "cluster.json").is_file():
                with log.open("a") as sink:
                    subprocess.run(
                        cluster_command(python, folder, "stop"),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=sink,
                        check=False,
                    )
                say("spark cluster: stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if ok and not keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"spark cluster: kept {folder} (logs/, worker-*/work/ for the executors' logs)")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: end the run being measured and stop the cluster, as for Ctrl-C."""


@contextlib.contextmanager
def terminating_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception, so that `finally` blocks (stopping the
    cluster) run."""

    def handler(number: int, _frame: Any) -> None:
        raise Terminated(signal.Signals(number).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class SparkRun:
    """What one Spark row runs on: a customer table (bench/generate.py) or a purchase log."""

    kind: str  # customers | transactions
    rows: int
    truth: Path
    pipeline: str
    """The Polars config (YAML text) the Spark config is made from."""
    customers: int | None = None


def run_spark(
    what: SparkRun,
    mode: str,
    cluster: SparkCluster | None,
    segment: Path,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
) -> Result:
    """One pipeline run with `engine: spark`: in local mode (`local[2]`) or on `cluster`. Its
    peak memory is the driver's (`segment` and its JVM, without the cluster's processes); on the
    cluster the master, workers and executors are measured apart."""
    label = engine_label(mode)
    short = "tx" if what.kind == "transactions" else ""
    project = Path(tempfile.mkdtemp(prefix=f"segbench-{short}{what.rows}-spark-{mode}-"))
    master = cluster.master if cluster is not None else SPARK_LOCAL_MASTER
    (project / "config.yaml").write_text(spark_config(what.pipeline, master, cluster is not None))
    say(f"{label}, {what.rows:,} {what.kind}: running in {project}")
    # The driver listens on the loopback address, where the cluster's executors reach it.
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    measured = measure(
        [str(segment), "run", "--config", "config.yaml"],
        project,
        project / "run.log",
        timeout,
        watch=cluster.pids if cluster is not None else (),
        env=env,
    )
    result = Result(
        what.rows,
        label,
        status_of(measured, timeout),
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss=measured.peak_rss,
        customers=what.customers,
        driver_rss=measured.driver_rss,
        cluster_rss=measured.watched_rss,
        cluster_cpu=measured.watched_cpu,
    )
    stages = stage_seconds(measured.log)
    result.table_seconds = stages.get("customers") if what.kind == "transactions" else None
    if stages:
        result.notes.append(f"stages: {stage_times(measured.log)}")
    if not result.ok:
        result.notes.append(f"stopped {where_it_stopped(measured.log)}")
    if result.ok:
        read_outputs(result, version_readers(project, what.truth, result), say)
    finish(result, measured, project, keep, logs, say, name=f"{short}{what.rows}-spark-{mode}")
    if result.driver_rss is not None:
        extra = ""
        if result.cluster_rss is not None and result.cluster_cpu is not None:
            extra = (
                f"; cluster (master, workers, executors) peak {fmt_mb(result.cluster_rss)} MB,"
                f" {result.cluster_cpu:.1f} s CPU"
            )
        say(f"  driver peak {fmt_mb(result.driver_rss)} MB{extra}")
    return result


PIPELINE_STAGES = ("customers", "prepare", "select-k", "cluster", "visualize", "report")


def where_it_stopped(log: Path) -> str:
    """The stage a run that did not finish was in: the first not reported done in its log."""
    done = stage_seconds(log)
    for stage in PIPELINE_STAGES:
        if stage not in done:
            return f"in {stage} (stages done: {', '.join(done) or 'none'})"
    return "after its last stage"


def spark_table(results: list[Result], polars: dict[tuple[str, int], float]) -> str:
    """The Spark rows; `polars` holds the Polars pipeline's wall time per (kind, rows)."""
    lines = [
        "| data | rows | engine | status | wall time (s) | driver CPU (s) | cluster CPU (s) |"
        " driver peak (MB) | cluster peak (MB) | chosen k | ARI | time / Polars |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        kind = "transactions" if r.customers is not None else "customers"
        ratio = NA
        reference = polars.get((kind, r.rows))
        if r.ok and r.seconds is not None and reference:
            ratio = f"{r.seconds / reference:.2f}x"
        cells = [
            kind,
            fmt_rows(r.rows),
            r.tool,
            r.status,
            NA if r.seconds is None else f"{r.seconds:,.1f}",
            NA if r.cpu_seconds is None else f"{r.cpu_seconds:,.1f}",
            NA if r.cluster_cpu is None else f"{r.cluster_cpu:,.1f}",
            fmt_mb(r.driver_rss),
            fmt_mb(r.cluster_rss),
            NA if r.chosen_k is None else str(r.chosen_k),
            NA if r.ari is None else f"{r.ari:.4f}",
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spark_checks(results: list[Result], modes: list[str]) -> list[Check]:
    """On the standalone cluster the driver's peak at 10M customers is within 20% of its peak at
    1M (in local mode it is only reported: the executors live in the driver); every Spark row
    finds k = 5 with an ARI of at least 0.98 against the true groups."""

    def find(rows: int, label: str) -> Result | None:
        return next(
            (r for r in results if r.rows == rows and r.tool == label and r.customers is None),
            None,
        )

    found: list[Check] = []
    for mode in modes:
        label = engine_label(mode)
        one_m, ten_m = find(1_000_000, label), find(10_000_000, label)
        target = f"{label}: driver peak memory flat from 1M to 10M customers (within 20%)"
        if mode == "local":
            target = f"{label}: driver peak memory from 1M to 10M customers (reported, no target)"
        if one_m is None or ten_m is None:
            found.append(Check("SKIP", target, "needs Spark runs at 1M and 10M customers"))
            continue
        if one_m.driver_rss is None or ten_m.driver_rss is None or not (one_m.ok and ten_m.ok):
            verdict = "NOTE" if mode == "local" else "FAIL"
            found.append(Check(verdict, target, f"1M {one_m.status}, 10M {ten_m.status}"))
            continue
        change = ten_m.driver_rss / one_m.driver_rss - 1
        detail = (
            f"{fmt_mb(one_m.driver_rss)} MB at 1M, {fmt_mb(ten_m.driver_rss)} MB at 10M"
            f" ({change:+.0%})"
        )
        if mode == "local":
            found.append(Check("NOTE", target, detail + "; the executors run in the driver JVM"))
        else:
            passed = abs(change) <= DRIVER_FLAT
            found.append(Check("PASS" if passed else "FAIL", target, detail))
    for r in results:
        kind = "transactions" if r.customers is not None else "customers"
        target = f"{r.tool}, {fmt_rows(r.rows)} {kind}: k = {TRUE_K} and ARI >= {SPARK_ARI}"
        if r.ari is None or r.chosen_k is None:
            found.append(Check("FAIL", target, f"{r.status}, no segments"))
        else:
            passed = r.chosen_k == TRUE_K and r.ari >= SPARK_ARI
            found.append(
                Check("PASS" if passed else "FAIL", target, f"k = {r.chosen_k}, ARI = {r.ari:.4f}")
            )
    return found


def run_spark_rows(
    runs: list[SparkRun],
    modes: list[str],
    segment: Path,
    timeout: float,
    keep: bool,
    logs: Path,
    say: Say,
) -> list[Result]:
    """Every Spark row: local mode first, then the standalone cluster (started for its rows only,
    and stopped whatever happens). A cluster that does not start makes its rows say so."""
    results: list[Result] = []
    if "local" in modes:
        for what in runs:
            results.append(run_spark(what, "local", None, segment, timeout, keep, logs, say))
    if "cluster" in modes and runs:
        try:
            with spark_cluster(segment.parent / "python", keep, say) as cluster:
                for what in runs:
                    results.append(
                        run_spark(what, "cluster", cluster, segment, timeout, keep, logs, say)
                    )
        except ClusterStartError as exc:
            say(f"spark cluster: did not start: {exc}")
            for what in runs:
                if not any(r.rows == what.rows and r.tool == engine_label("cluster")
                           and (r.customers is None) == (what.kind == "customers")
                           for r in results):  # fmt: skip
                    results.append(
                        Result(
                            what.rows,
                            engine_label("cluster"),
                            "failed (the cluster did not start)",
                            customers=what.customers,
                        )
                    )
    return results


@dataclass
class SampleRun:
    """One pipeline run of the sample-size study."""

    sample_size: int
    status: str
    select_k_seconds: float | None = None
    chosen_k: int | None = None
    choices: dict[str, int] = field(default_factory=dict)
    confidence: str | None = None
    ari_truth: float | None = None
    ari_largest: float | None = None
    """Agreement of the final segments with those of the run on the largest sample."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def study_sample_sizes(
    data: Dataset, segment: Path, base_config: Path, sizes: list[int], timeout: float, say: Say
) -> list[SampleRun]:
    """Run the pipeline once per `select_k.sample_size` in one project (prepare runs once) and
    compare each run's k, criteria and final segments with the truth and with the largest sample."""
    project = Path(tempfile.mkdtemp(prefix=f"segbench-{data.rows}-sample-size-"))
    runs: list[SampleRun] = []
    segments: dict[int, pl.DataFrame] = {}
    try:
        for size in sorted(sizes):
            config = project / f"sample-{size}.yaml"
            config.write_text(pipeline_config(base_config, data.csv, size))
            say(f"sample-size study, {data.rows:,} rows: select_k.sample_size = {size:,}")
            log = project / f"sample-{size}.log"
            with log.open("w") as sink:
                try:
                    code = subprocess.run(
                        [str(segment), "run", "--config", config.name],
                        cwd=project, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout,
                    ).returncode  # fmt: skip
                except subprocess.TimeoutExpired:
                    runs.append(SampleRun(size, f"timeout after {timeout:g} s"))
                    continue
            if code != 0:
                runs.append(SampleRun(size, f"failed (exit {code})"))
                say(f"  failed (exit {code}); last lines of its log:\n{tail(log)}")
                continue
            latest = project / "artifacts" / "latest"
            selection = json.loads((latest / "k_selection.json").read_text())
            assignments = pl.read_parquet(latest / "assignments.parquet")
            seconds = stage_seconds(log)
            segments[size] = assignments.select(
                pl.col("customer_id").cast(pl.String), pl.col("segment_id").alias(f"s{size}")
            )
            runs.append(
                SampleRun(
                    size,
                    "ok",
                    select_k_seconds=seconds.get("select-k"),
                    chosen_k=int(selection["chosen_k"]),
                    choices={name: int(k) for name, k in selection["choices"].items()},
                    confidence=selection["confidence"]["level"],
                    ari_truth=ari(data.truth, assignments, "segment_id"),
                )
            )
            say(f"  k = {selection['chosen_k']}, select-k {seconds.get('select-k', 0):.1f} s")
        if segments:
            largest = max(segments)
            for run in runs:
                if run.sample_size in segments:
                    joined = segments[run.sample_size].join(
                        segments[largest], on="customer_id", how="inner"
                    )
                    run.ari_largest = float(
                        adjusted_rand_score(
                            joined[f"s{largest}"].to_numpy(),
                            joined[f"s{run.sample_size}"].to_numpy(),
                        )
                    )
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return runs


CRITERIA = ("silhouette", "elbow", "gap", "calinski_harabasz", "davies_bouldin", "stability")


def sample_table(runs: list[SampleRun], rows: int) -> str:
    largest = max((r.sample_size for r in runs if r.ok), default=None)
    lines = [
        f"| select_k.sample_size (of {fmt_rows(rows)}) | status | select-k (s) | chosen k | "
        + " | ".join(CRITERIA)
        + " | confidence | ARI vs truth | ARI vs "
        + (f"{fmt_rows(largest)} sample |" if largest else "largest sample |"),
        "| ---: | --- | ---: | ---: | "
        + " | ".join("---:" for _ in CRITERIA)
        + " | --- | ---: | ---: |",
    ]
    for r in runs:
        cells = [
            fmt_rows(r.sample_size),
            r.status,
            NA if r.select_k_seconds is None else f"{r.select_k_seconds:.1f}",
            NA if r.chosen_k is None else str(r.chosen_k),
            *(str(r.choices.get(name, NA)) for name in CRITERIA),
            r.confidence or NA,
            NA if r.ari_truth is None else f"{r.ari_truth:.4f}",
            NA if r.ari_largest is None else f"{r.ari_largest:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finish(
    result: Result,
    measured: Measurement,
    folder: Path,
    keep: bool,
    logs: Path,
    say: Say,
    prefix: str = "",
    name: str | None = None,
) -> None:
    """Say how the run went, keep its log in `logs` (as NAME.log, by default the prefix, rows
    and tool), and remove its folder unless it failed."""
    logs.mkdir(parents=True, exist_ok=True)
    kept_log = logs / f"{name or f'{prefix}{result.rows}-{result.tool}'}.log"
    shutil.copyfile(measured.log, kept_log)
    say(
        f"  {result.status}: {result.seconds:.1f} s wall, {result.cpu_seconds:.1f} s CPU, "
        f"peak {fmt_mb(result.peak_rss)} MB (log: {kept_log})"
    )
    for note in result.notes:
        say(f"  {note}")
    if not result.ok:
        say(f"  kept {folder} for a look; last lines of its log:\n{tail(measured.log)}")
    elif not keep:
        shutil.rmtree(folder, ignore_errors=True)


def fmt_mb(value: int | None) -> str:
    return NA if value is None else f"{value / MB:,.0f}"


def fmt_rows(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return f"{rows:,}"


def rows_cell(result: Result) -> str:
    """The rows column: `1M` for a generated data set, `200 (mall)` for the Mall file."""
    if result.dataset is None:
        return fmt_rows(result.rows)
    return f"{result.rows:,} ({result.dataset})" if result.rows else result.dataset


def table(results: list[Result]) -> str:
    baseline_seconds = {
        r.label: r.seconds for r in results if r.tool == "baseline" and r.ok and r.seconds
    }
    lines = [
        "| rows | tool | status | wall time (s) | CPU time (s) | peak memory (MB) | chosen k | ARI | report size "
        "(MB) | time / baseline |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        measured = r.seconds is not None and not r.status.startswith("skipped")
        ratio = NA
        if r.ok and r.seconds is not None and r.label in baseline_seconds:
            ratio = f"{r.seconds / baseline_seconds[r.label]:.2f}x"
        cells = [
            rows_cell(r),
            r.tool,
            r.status,
            f"{r.seconds:,.1f}" if measured and r.seconds is not None else NA,
            f"{r.cpu_seconds:,.1f}" if measured and r.cpu_seconds is not None else NA,
            fmt_mb(r.peak_rss) if measured else NA,
            NA if r.chosen_k is None else str(r.chosen_k),
            NA if r.ari is None else f"{r.ari:.4f}",
            NA if r.report_bytes is None else f"{r.report_bytes / MB:.2f}",
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Check:
    verdict: str  # PASS | FAIL | SKIP
    target: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict} {self.target}: {self.detail}"


ONE_M_SHARE = 0.15
"""At 1M rows the pipeline may take at most this share of the baseline's time."""


def mall_check(results: list[Result]) -> Check:
    """On the Mall file the pipeline's median time is at most the baseline's."""
    target = f"{MALL}: pipeline time <= the baseline's"
    pipeline, baseline = (
        next((r for r in results if r.dataset == MALL and r.tool == tool), None)
        for tool in ("pipeline", "baseline")
    )
    if pipeline is None or baseline is None:
        return Check("SKIP", target, f"needs both runs on the Mall file (--sizes {MALL},...)")
    if not baseline.ok or baseline.seconds is None:
        return Check("SKIP", target, f"baseline {baseline.status}")
    if not pipeline.ok or pipeline.seconds is None:
        skipped = pipeline.status.startswith("skipped")
        return Check("SKIP" if skipped else "FAIL", target, f"pipeline {pipeline.status}")
    ratio = pipeline.seconds / baseline.seconds
    times = f"{pipeline.seconds:.1f} s vs {baseline.seconds:.1f} s"
    if pipeline.runs == baseline.runs > 1:
        times = f"median {times} over {pipeline.runs} runs each"
    elif max(pipeline.runs, baseline.runs) > 1:
        times = f"median {times} over {pipeline.runs} and {baseline.runs} runs"
    return Check("PASS" if ratio <= 1 else "FAIL", target, f"{times} (ratio {ratio:.2f})")


def checks(results: list[Result]) -> list[Check]:
    def find(rows: int, tool: str) -> Result | None:
        return next(
            (r for r in results if r.rows == rows and r.tool == tool and r.dataset is None), None
        )

    def verdict(passed: bool) -> str:
        return "PASS" if passed else "FAIL"

    found: list[Check] = [mall_check(results)]
    one_m, ten_m = find(1_000_000, "pipeline"), find(10_000_000, "pipeline")
    baseline = find(1_000_000, "baseline")

    target = f"1M rows: pipeline time <= {ONE_M_SHARE:g} of the baseline's"
    if one_m is None or baseline is None:
        found.append(Check("SKIP", target, "needs both runs at 1M rows (--sizes 1M)"))
    elif not baseline.ok:
        found.append(Check("SKIP", target, f"baseline {baseline.status}"))
    elif not one_m.ok or one_m.seconds is None or baseline.seconds is None:
        found.append(Check("FAIL", target, f"pipeline {one_m.status}"))
    else:
        ratio = one_m.seconds / baseline.seconds
        found.append(
            Check(
                verdict(ratio <= ONE_M_SHARE),
                target,
                f"{one_m.seconds:.1f} s vs {baseline.seconds:.1f} s (ratio {ratio:.2f})",
            )
        )

    for target, test in (
        (f"1M rows: pipeline finds the true k ({TRUE_K})", "k"),
        ("1M rows: pipeline ARI >= 0.95", "ari"),
    ):
        if one_m is None:
            found.append(Check("SKIP", target, "not run at 1M rows"))
        elif not one_m.ok:
            found.append(Check("FAIL", target, f"pipeline {one_m.status}"))
        elif test == "k":
            found.append(Check(verdict(one_m.chosen_k == TRUE_K), target, f"k = {one_m.chosen_k}"))
        else:
            value = one_m.ari if one_m.ari is not None else float("nan")
            found.append(Check(verdict(value >= 0.95), target, f"ARI = {value:.4f}"))

    found.append(
        memory_check(ten_m, "10M rows: pipeline peak memory < 4 GB", "not run at 10M rows")
    )

    target = "10M rows: pipeline time <= 11 x its 1M time (linear, 10% slack)"
    if ten_m is None or one_m is None:
        found.append(Check("SKIP", target, "needs pipeline runs at 1M and 10M rows"))
    elif not (ten_m.ok and one_m.ok) or ten_m.seconds is None or one_m.seconds is None:
        found.append(Check("FAIL", target, f"1M {one_m.status}, 10M {ten_m.status}"))
    else:
        ratio = ten_m.seconds / one_m.seconds
        found.append(
            Check(
                verdict(ratio <= 11),
                target,
                f"{ten_m.seconds:.1f} s / {one_m.seconds:.1f} s = {ratio:.2f}",
            )
        )

    for r in results:
        if r.tool != "pipeline":
            continue
        target = f"{r.label}: report < 5 MB"
        if r.status.startswith("skipped"):
            found.append(Check("SKIP", target, f"pipeline {r.status}"))
        elif r.report_bytes is None:
            found.append(Check("FAIL", target, f"pipeline {r.status}, no report"))
        else:
            found.append(
                Check(verdict(r.report_bytes < 5 * MB), target, f"{r.report_bytes:,} bytes")
            )
    return found


def sample_check(runs: list[SampleRun], default: int) -> Check:
    """The default sample must give the k and the segments of the largest sample studied."""
    target = f"select_k.sample_size {default:,} (default) agrees with the largest sample"
    done = [r for r in runs if r.ok]
    if not runs:
        return Check("SKIP", target, "no sample-size study (--sample-sizes)")
    at_default = next((r for r in runs if r.sample_size == default), None)
    if at_default is None or not done:
        return Check("SKIP", target, f"{default:,} is not among the sizes studied")
    largest = max(done, key=lambda r: r.sample_size)
    if largest.sample_size <= default:
        return Check("SKIP", target, f"no sample larger than {default:,} was studied")
    if not at_default.ok or at_default.ari_largest is None:
        return Check("FAIL", target, f"the run at {default:,} {at_default.status}")
    same_k = at_default.chosen_k == largest.chosen_k
    return Check(
        "PASS" if same_k and at_default.ari_largest >= 0.99 else "FAIL",
        target,
        f"k = {at_default.chosen_k} vs {largest.chosen_k} at {largest.sample_size:,}; "
        f"ARI between their segments {at_default.ari_largest:.4f} (needs >= 0.99)",
    )


def default_sample_size(config: Path) -> int:
    """`select_k.sample_size` of the base config, or the package default when it sets none."""
    from segmentation.config import SelectKConfig

    loaded: dict[str, Any] = yaml.safe_load(config.read_text()) or {}
    value = (loaded.get("select_k") or {}).get("sample_size")
    return int(value) if value is not None else SelectKConfig().sample_size


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: other work on the machine slows every run."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def spark_versions(python: Path) -> str:
    """pyspark's version in the Spark rows' environment, and Java's."""
    found = []
    try:
        found.append(
            "pyspark "
            + subprocess.run(
                [str(python), "-c", "import pyspark; print(pyspark.__version__)"],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        found.append("pyspark (not found)")
    try:
        shown = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, check=True, timeout=60
        ).stderr.splitlines()
        found.append(shown[0].strip() if shown else "java (unknown version)")
    except (OSError, subprocess.SubprocessError):
        found.append("java (not found)")
    return ", ".join(found)


def machine(load_at_start: str, spark_python: Path | None = None) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    model = "unknown"
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    else:
        model = platform.processor() or "unknown"
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) * 1024 / 1e9:.1f} GB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = []
    for package in ("numpy", "scikit-learn", "polars", "pandas", "matplotlib"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {model}; {os.cpu_count()} cores ({usable} usable)",
        f"- RAM: {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; " + ", ".join(versions),
        *([f"- Spark rows: {spark_versions(spark_python)}"] if spark_python else []),
        f"- code: {git_describe()}",
        f"- load average (1, 5, 15 min) at the start: {load_at_start}; at the end: "
        f"{load_average()}",
    ]


def git_describe() -> str:
    """The commit benchmarked, and whether the work tree had changes (read-only git commands)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=f"{MALL},100k,1M,10M",
        help=f"comma-separated: {MALL} (the Mall file, the base config's data.path) and row"
        " counts of generated data sets, e.g. 100k,1M,10M",
    )
    parser.add_argument(
        "--mall-repeats",
        type=int,
        default=5,
        help=f"runs of each tool on the Mall file ({MALL} in --sizes), interleaved; the table"
        " shows the median",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument(
        "--baseline-max",
        type=parse_rows,
        default=1_000_000,
        help="run the baseline only up to this many rows",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before a run is killed"
    )
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help="base config")
    parser.add_argument(
        "--segment",
        type=Path,
        default=REPO / ".venv-bench" / "bin" / "segment",
        help="the pipeline's command",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DATA_DIR, help="generated data sets and run logs"
    )
    parser.add_argument(
        "--results", type=Path, default=BENCH / "results.md", help="Markdown results file"
    )
    parser.add_argument(
        "--sample-sizes",
        type=lambda text: [parse_rows(part) for part in text.split(",") if part.strip()],
        default=[1_000, 2_000, 5_000, 20_000, 100_000],
        help="select_k.sample_size values to compare on --sample-study-rows rows ('' skips it)",
    )
    parser.add_argument(
        "--sample-study-rows",
        type=parse_rows,
        default=1_000_000,
        help="rows of the data set of the sample-size study",
    )
    parser.add_argument(
        "--transactions",
        type=lambda text: [parse_rows(part) for part in text.split(",") if part.strip()],
        default=[10_000_000, 100_000_000],
        help="purchase-log sizes (transactions), default 10M,100M: the pipeline with data.kind"
        " transactions against pandas building the same customer table ('' skips them)",
    )
    parser.add_argument(
        "--pandas-max",
        type=parse_rows,
        default=10_000_000,
        help="build the customer table with pandas only up to this many transactions",
    )
    parser.add_argument(
        "--spark",
        default="local,cluster",
        help="Spark rows, comma-separated: local (spark.master local[2]), cluster (a standalone"
        " cluster of 2 workers on this machine, started and stopped by the benchmark); 'none' or"
        " '' skips them",
    )
    parser.add_argument(
        "--spark-sizes",
        type=lambda text: [parse_rows(part) for part in text.split(",") if part.strip()],
        default=[1_000_000, 10_000_000],
        help="customer table sizes to run on Spark ('' for none)",
    )
    parser.add_argument(
        "--spark-transactions",
        type=lambda text: [parse_rows(part) for part in text.split(",") if part.strip()],
        default=[100_000_000],
        help="purchase-log sizes (transactions) to run on Spark ('' for none)",
    )
    parser.add_argument(
        "--spark-timeout",
        type=float,
        help="seconds before a Spark run is killed (default: --timeout); its row says where it"
        " stopped",
    )
    parser.add_argument(
        "--spark-segment",
        type=Path,
        default=REPO / ".venv-bench-spark" / "bin" / "segment",
        help="the pipeline's command for the Spark rows, from an environment with pyspark; the"
        " cluster's workers run that environment's Python",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary project folders of good runs too"
    )
    parser.add_argument(
        "--tools",
        default="pipeline,baseline",
        help="which tools to run, comma-separated: pipeline, baseline",
    )
    args = parser.parse_args(argv)
    tools = {part.strip() for part in args.tools.split(",") if part.strip()}
    if not tools or tools - {"pipeline", "baseline"}:
        parser.error(f"--tools takes pipeline and/or baseline, got {args.tools!r}")
    if args.mall_repeats < 1:
        parser.error(f"--mall-repeats must be at least 1, got {args.mall_repeats}")
    spark_modes = [part.strip() for part in args.spark.split(",") if part.strip()]
    if spark_modes == ["none"]:
        spark_modes = []
    if set(spark_modes) - set(SPARK_MODES):
        parser.error(f"--spark takes local and/or cluster, or none; got {args.spark!r}")
    if not (args.spark_sizes or args.spark_transactions):
        spark_modes = []
    # Each run starts in its own folder: a relative path would no longer point at the command.
    args.segment = args.segment.absolute()
    args.spark_segment = args.spark_segment.absolute()
    if "pipeline" in tools and not args.segment.is_file():
        parser.error(
            f"{args.segment} not found: run `make venv VENV=.venv-bench` first, or pass --segment"
        )
    if spark_modes and not args.spark_segment.is_file():
        parser.error(
            f"{args.spark_segment} not found: run `make spark VENV=.venv-bench-spark` first, pass"
            " --spark-segment, or --spark none"
        )

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    load_at_start = load_average()
    logs = args.data_dir / "logs"
    results: list[Result] = []
    for size in args.sizes:
        if size == MALL:
            results.extend(
                run_mall(
                    args.config,
                    args.segment,
                    tools,
                    args.mall_repeats,
                    args.timeout,
                    args.keep,
                    logs,
                    say,
                )
            )
            continue
        rows = int(size)
        data = CustomerTable.generated(ensure(rows, args.seed, args.data_dir, log=say))
        if "pipeline" in tools:
            results.append(
                run_pipeline(data, args.segment, args.config, args.timeout, args.keep, logs, say)
            )
        if "baseline" in tools:
            if rows > args.baseline_max:
                reason = f"skipped (> --baseline-max {args.baseline_max:,} rows)"
                results.append(Result(rows, "baseline", reason))
                say(f"baseline, {rows:,} rows: {reason}")
            else:
                results.append(run_baseline(data, args.timeout, args.keep, logs, say))

    tx_results: list[Result] = []
    for rows in args.transactions:
        log_data = tx.ensure(rows, args.seed, args.data_dir, log=say)
        customers = pl.scan_parquet(log_data.truth).select(pl.len()).collect().item()
        if "pipeline" in tools:
            tx_results.append(
                run_transactions_pipeline(
                    log_data,
                    customers,
                    args.segment,
                    args.config,
                    args.timeout,
                    args.keep,
                    logs,
                    say,
                )
            )
        if "baseline" in tools:
            if rows > args.pandas_max:
                reason = f"skipped (> --pandas-max {args.pandas_max:,} transactions)"
                tx_results.append(Result(rows, "pandas", reason, customers=customers))
                say(f"pandas, {rows:,} transactions: {reason}")
            else:
                tx_results.append(
                    run_transactions_pandas(log_data, customers, args.timeout, args.keep, logs, say)
                )

    spark_runs: list[SparkRun] = []
    for rows in args.spark_sizes if spark_modes else []:
        data = ensure(rows, args.seed, args.data_dir, log=say)
        spark_runs.append(
            SparkRun("customers", rows, data.truth, pipeline_config(args.config, data.csv))
        )
    for rows in args.spark_transactions if spark_modes else []:
        log_data = tx.ensure(rows, args.seed, args.data_dir, log=say)
        customers = pl.scan_parquet(log_data.truth).select(pl.len()).collect().item()
        pipeline = transactions_config(args.config, log_data)
        spark_runs.append(SparkRun("transactions", rows, log_data.truth, pipeline, customers))
    spark_timeout = args.timeout if args.spark_timeout is None else args.spark_timeout
    spark_results = run_spark_rows(
        spark_runs, spark_modes, args.spark_segment, spark_timeout, args.keep, logs, say
    )

    study: list[SampleRun] = []
    if args.sample_sizes and "pipeline" in tools:
        data = ensure(args.sample_study_rows, args.seed, args.data_dir, log=say)
        study = study_sample_sizes(
            data, args.segment, args.config, args.sample_sizes, args.timeout, say
        )

    rendered = table(results) if results else ""
    studied = sample_table(study, args.sample_study_rows) if study else ""
    tx_rendered = transactions_table(tx_results) if tx_results else ""
    verdicts = checks(results) if results else []
    if study:
        verdicts.append(sample_check(study, default_sample_size(args.config)))
    if args.transactions:
        verdicts.extend(transactions_checks(tx_results, args.transactions))
    polars_seconds = {
        ("customers", r.rows): r.seconds for r in results if r.tool == "pipeline" and r.ok
    } | {("transactions", r.rows): r.seconds for r in tx_results if r.tool == "pipeline" and r.ok}
    spark_rendered = (
        spark_table(spark_results, {key: s for key, s in polars_seconds.items() if s})
        if spark_results
        else ""
    )
    if spark_modes:
        verdicts.extend(spark_checks(spark_results, spark_modes))
    for text in (rendered, studied, tx_rendered, spark_rendered):
        if text:
            say("\n" + text)
    say("")
    for check in verdicts:
        say(check.line())

    command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.results.write_text(
        "\n".join(
            [
                "# Benchmark results",
                "",
                f"`{command.strip()}` (data seed {args.seed}; timeout {args.timeout:g} s per run"
                + (f", {spark_timeout:g} s per Spark run)" if spark_modes else ")"),
                "",
                *machine(
                    load_at_start, args.spark_segment.parent / "python" if spark_modes else None
                ),
                "",
                *([rendered, ""] if rendered else []),
                *(
                    f"- {r.dataset or fmt_rows(r.rows)} {r.tool}: {note}"
                    for r in results
                    for note in r.notes
                ),
                "",
                *(
                    []
                    if not results
                    else [
                        "Wall time, CPU time (user + system, every thread and process) and peak memory (all"
                        " the run's processes at once) cover the whole run: imports, reading the CSV,"
                        " writing every output. On a busy machine (see the load average) wall time grows,"
                        " CPU time much less. Memory and sizes are in decimal MB. The baseline's report"
                        " size is its two PNG plots; the pipeline's, reports/latest/index.html. ARI is"
                        " against the true groups of the generated data (the Mall file has none: n/a)."
                        " The pipeline runs from .venv-bench (the runtime lock only, as users and the"
                        " image install it), each run in a fresh project. Its runs reuse what the user"
                        " cache keeps (the Vega bundle, built once per vl-convert version, and the code"
                        " fingerprint's import closure, once per code version): a first-ever run on a"
                        " machine pays about 1 s more.",
                        "",
                        *(
                            [
                                f"The {MALL} row is the Mall Customers file (the base config's"
                                f" data.path). Its runs take seconds, so each tool runs"
                                f" {args.mall_repeats} times, interleaved (pipeline, baseline,"
                                " pipeline, ...) so that a change in the machine's load falls on"
                                " both alike. Its wall and CPU times are the medians, its peak"
                                " memory the highest of the runs, and its notes give the wall"
                                " time's spread (min-max); `time / baseline` is the ratio of the"
                                " medians. The first pipeline run fills the user cache if it is"
                                " empty (about 1 s more); from 3 runs on, the median is not swayed"
                                " by that one run.",
                                "",
                            ]
                            if any(r.dataset == MALL and r.runs > 1 for r in results)
                            else []
                        ),
                    ]
                ),
                *(
                    [
                        "## How large select-k's sample must be",
                        "",
                        f"The pipeline on the {fmt_rows(args.sample_study_rows)}-row data set"
                        " with each `select_k.sample_size`, in one project (prepare runs once):"
                        " the time of select-k, the k each criterion chooses, and the final"
                        " segments (all rows, fitted from the chosen k's centres) against the"
                        " true groups and against those of the largest sample.",
                        "",
                        studied,
                        "",
                    ]
                    if studied
                    else []
                ),
                *(
                    [
                        "## Purchase logs: the customer table built from transactions",
                        "",
                        "Generated logs (bench/transactions.py: 5 RFM groups, 10 Parquet parts)."
                        " The pipeline runs with `data.kind: transactions` on the parts' glob;"
                        " `customer table` is its `customers` stage (from the run log), or"
                        " pandas reading every part and aggregating with `groupby().agg()`"
                        " (bench/baseline_transactions.py, without its imports). Wall time, CPU"
                        " time and peak memory cover the whole run (the pipeline: every stage)."
                        " ARI is against the true groups, joined on customer_id.",
                        "",
                        tx_rendered,
                        "",
                        *(
                            f"- {fmt_rows(r.rows)} transactions, {r.tool}: {note}"
                            for r in tx_results
                            for note in r.notes
                        ),
                        "",
                    ]
                    if tx_rendered
                    else []
                ),
                *(
                    [
                        "## The Spark engine",
                        "",
                        f"The same configs with `engine: spark`, `spark.partitions:"
                        f" {SPARK_PARTITIONS}` and `spark.conf` {json.dumps(SPARK_CONF)}: in local"
                        f" mode (`{SPARK_LOCAL_MASTER}`: the executors run inside the driver JVM),"
                        " and on a standalone cluster started for these rows by"
                        " scripts/spark_cluster.py on this machine (1 master, 2 workers of 1 core"
                        f" and 2g; {json.dumps(SPARK_CLUSTER_CONF)}). Wall time and driver CPU"
                        " cover the whole run. The driver is the `segment` process and its"
                        " descendants (its JVM; in local mode the executors too); the cluster is"
                        " its master, workers and executors, measured apart (peak resident size,"
                        " and CPU time used during the run). `time / Polars` is the wall time"
                        " against the Polars pipeline's row of the same size above.",
                        "",
                        spark_rendered,
                        "",
                        *(
                            f"- {fmt_rows(r.rows)}"
                            f" {'transactions' if r.customers is not None else 'customers'},"
                            f" {r.tool}: {note}"
                            for r in spark_results
                            for note in r.notes
                        ),
                        "",
                    ]
                    if spark_rendered
                    else []
                ),
                "```",
                *(check.line() for check in verdicts),
                "```",
                "",
            ]
        )
    )
    say(f"\nwritten to {args.results}")
    return 1 if any(check.verdict == "FAIL" for check in verdicts) else 0


if __name__ == "__main__":
    try:
        with terminating_signals_raise():
            code = main()
        sys.exit(code)
    except KeyboardInterrupt:  # the wrapper has already ended the run it was measuring
        sys.stderr.write("interrupted\n")
        sys.exit(130)
