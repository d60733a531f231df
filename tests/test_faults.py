"""Faults: runs killed or interrupted at named points, a full disk, two runs at once.

Runs are stopped where the pipeline says it is (`segmentation.faults`: SEGMENTATION_FAULT), never
after a delay, so each test stops the run at the same place on any machine. Whatever happens to a
run, every complete version still matches its manifest byte for byte, `latest` points at a
complete version, versions that were there before are untouched, and the next run completes.

The runs that are killed, interrupted or stopped are processes of their own, forked from one that
has already imported every module a run imports (tests/preloaded.py): a run killed at a point
leaves what any run killed there leaves, without seconds of imports before each kill.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from preloaded import ForkedRun, PreloadedSegment
from segmentation import artifacts, faults
from segmentation.artifacts import Workspace
from segmentation.cli import main
from segmentation.errors import ConfigError
from segmentation.stages import STAGES

INTERRUPTED = "interrupted: stopped by the user; complete versions are kept"
BUSY = r"^error: \S+/artifacts: another run is using this folder; wait for it to finish$"
REPORT_LINE = re.compile(r"^Report: reports/(\w+)/index\.html$", re.M)

WriteVariant = Callable[[Path, str, dict[str, Any]], Path]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_states(root: Path) -> dict[str, tuple[str, int, int]]:
    """(SHA-256, mtime, inode) of every file of every version folder and report folder."""
    states = {}
    for top in ("artifacts", "reports"):
        for folder in sorted((root / top).iterdir()):
            if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
                continue
            if top == "artifacts" and folder.name == "compare":
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    key = path.relative_to(root).as_posix()
                    states[key] = (sha256(path), stat.st_mtime_ns, stat.st_ino)
    return states


def check_store(root: Path) -> list[str]:
    """Assert every version folder is complete and matches its manifest; return their names.

    For each version: every file listed in the manifest's outputs has that SHA-256, no other file
    is there, and its report has the SHA-256 the manifest records. `latest` (artifacts and
    reports) resolves to one of these versions.
    """
    complete = []
    for folder in sorted((root / "artifacts").iterdir()):
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue  # .cache, .staging, .lock, latest and temporary files
        manifest_path = folder / artifacts.MANIFEST
        assert manifest_path.is_file(), f"{folder.name}: a version folder without its manifest"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        outputs: dict[str, str] = manifest["outputs"]
        on_disk = {
            path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
        }
        assert on_disk - {artifacts.MANIFEST} == set(outputs), folder.name
        for name, digest in outputs.items():
            assert sha256(folder / name) == digest, f"{folder.name}/{name} differs"
        report = root / manifest["report"]["path"]
        assert sha256(report) == manifest["report"]["sha256"], f"{folder.name}: report differs"
        complete.append(folder.name)
    assert complete, "no complete version left"
    for top in ("artifacts", "reports"):
        link = root / top / artifacts.LATEST
        assert link.is_symlink(), f"{top}/latest is missing"
        assert link.resolve().name in complete, f"{top}/latest points at {link.readlink()}"
    index = (root / "reports" / "index.html").read_text(encoding="utf-8")
    assert index.rstrip().endswith("</html>")
    return complete


def latest(root: Path) -> str:
    return (root / "artifacts" / artifacts.LATEST).resolve().name


def built_version(result: Result) -> str:
    assert result.exit_code == 0, result.output
    match = REPORT_LINE.search(result.stdout)
    assert match, result.output
    return match.group(1)


def segment_command() -> list[str]:
    """The `segment` console script of this environment (the package has no __main__)."""
    script = Path(sys.executable).parent / "segment"
    if not script.is_file():
        pytest.skip(f"{script} is not installed")
    return [str(script)]


def start(
    root: Path, config: str, fault: str, *, one_core: bool = True, **kwargs: Any
) -> subprocess.Popen[str]:
    """`segment run --config CONFIG` in its own process, stopped by `fault` (SEGMENTATION_FAULT),
    with Ctrl-C handled as Python does by default.

    The run may use one core only, unless `one_core` is false: like a run in a one-core container,
    it then draws its charts in its own process, which spares the many runs of these tests the
    start of drawing workers (seconds of CPU each).
    """

    def prepare() -> None:
        # A test runner started in the background may ignore SIGINT; the run must not.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if one_core:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    return subprocess.Popen(
        [*segment_command(), "run", "--config", config],
        cwd=root,
        env={**os.environ, faults.VARIABLE: fault},
        text=True,
        preexec_fn=prepare,
        **kwargs,
    )


@pytest.fixture
def preloaded(preloaded_process: PreloadedSegment | None) -> PreloadedSegment:
    """Runs in processes of their own, forked from one that has imported every module a run
    imports: each killed run would otherwise spend seconds importing them again."""
    segment_command()  # the same skip as the runs started from the console script
    assert preloaded_process is not None, "conftest starts it for the tests that use `preloaded`"
    return preloaded_process


def start_forked(
    runs: PreloadedSegment, root: Path, config: str, fault: str, *, one_core: bool = True
) -> ForkedRun:
    """`segment run --config CONFIG` in its own process, stopped by `fault`, as `start` runs it
    (one core unless `one_core` is false), but forked from `runs`: with its modules imported."""
    return runs.start(
        root,
        ["run", "--config", config],
        {**os.environ, faults.VARIABLE: fault},
        root.parent / f"segment-{config}",
        one_core=one_core,
    )


def killed_at(runs: PreloadedSegment, root: Path, config: str, fault: str) -> None:
    """Run `config` in its own process, killed (SIGKILL) by `fault`; fail if it ends otherwise."""
    run = start_forked(runs, root, config, fault)
    assert run.wait() == -signal.SIGKILL, f"{fault}: exit {run.returncode}\n{run.stderr}"


def staged(root: Path) -> set[str]:
    """What is in the staging folders (unfinished builds), as paths relative to `root`."""
    return {
        path.relative_to(root).as_posix()
        for top in ("artifacts", "reports")
        if (root / top / ".staging").is_dir()
        for path in (root / top / ".staging").iterdir()
    }


def report_folders(root: Path) -> set[str]:
    return {
        folder.name
        for folder in (root / "reports").iterdir()
        if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith(".")
    }


def one_line(stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert re.search(expected, lines[-1]), stderr
    assert sum(line.startswith(("error:", "interrupted:")) for line in lines) == 1, stderr


# --- the fault points themselves ------------------------------------------------------------------


def test_every_stage_has_its_points() -> None:
    written = {f"{stage}.written" for stage in STAGES}
    stored = {f"{stage}.stored" for stage in STAGES if stage != "report"}
    assert written | stored <= set(faults.POINTS)
    assert len(set(faults.POINTS)) == len(faults.POINTS)


def test_a_point_the_list_does_not_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"^nowhere: not one of segmentation\.faults\.POINTS$"):
        faults.reach("nowhere")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("prepare.writen", r"unknown point 'prepare\.writen'; one of lock\.held, "),
        ("prepare.written:explode", r"unknown action 'explode'; one of kill, interrupt, stop$"),
        ("prepare.written:kill:0", r"'0' is not a positive count$"),
        ("prepare.written:kill:two", r"'two' is not a positive count$"),
    ],
)
def test_a_malformed_fault_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv(faults.VARIABLE, value)
    with pytest.raises(ConfigError, match=rf"^SEGMENTATION_FAULT={re.escape(value)}: {expected}"):
        faults.planned()


def test_a_run_refuses_an_unknown_point_before_it_builds_anything(
    copy_project: Path, write_variant: WriteVariant, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = file_states(copy_project)
    config = write_variant(copy_project, "other.yaml", {"scaling": "robust"})
    monkeypatch.setenv(faults.VARIABLE, "nowhere")
    result = invoke("run", "--config", config.name)
    assert result.exit_code == 2, result.output
    one_line(result.stderr, r"^error: SEGMENTATION_FAULT=nowhere: unknown point 'nowhere'; ")
    assert file_states(copy_project) == before
    assert staged(copy_project) == set()


def test_the_readme_lists_every_point() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert faults.VARIABLE in readme
    assert [point for point in faults.POINTS if f"`{point}`" not in readme] == []


# --- SIGKILL at every named point -----------------------------------------------------------------

STAGE_KILLS = (
    "lock.held",
    "atomic.written",
    "customers.written",
    "customers.stored",
    "prepare.written",
    "prepare.stored",
    "select-k.written",
    "select-k.stored",
    "cluster.written",
    "cluster.stored",
)
"""Kills of a run that builds every stage, in the order it reaches the points: each killed run
leaves its finished stages in the cache, so the next one gets as far as the next point."""
COMPLETION_KILLS = (
    "visualize.written",
    "visualize.stored",
    "report.written",
    "manifest.written",
    "report.moved",
    "latest.linked",
)
"""Kills of a run that builds the charts and the report, the same way: the last one comes after
the version is complete, before `latest` is switched to it."""
LATEST_KILLS = ("latest.linked:kill:2", "latest.switched:kill:2")
"""Kills while `latest` is switched (artifacts/ first, then reports/), each in a run of another
config that only rebuilds the report, so that both links have to move."""


def test_the_kills_cover_every_point() -> None:
    kills = (*STAGE_KILLS, *COMPLETION_KILLS, *LATEST_KILLS)
    assert {fault.split(":")[0] for fault in kills} == set(faults.POINTS)


def kill_one_by_one(
    runs: PreloadedSegment, root: Path, config: str, points: tuple[str, ...]
) -> None:
    """Run `config` once for each point, killed there, checking the store after each kill: every
    version that was there is untouched and whole, `latest` has not moved, and the next run has
    cleared what the killed one left in staging."""
    before = file_states(root)
    previous = latest(root)
    left: set[str] = set()
    for point in points:
        killed_at(runs, root, config, point)
        complete = check_store(root)
        assert {k: v for k, v in file_states(root).items() if k in before} == before, point
        assert latest(root) == previous, point
        now = staged(root)
        assert not now & left, f"{point}: the run did not clear the killed run's staging"
        # Killed between taking the lock and linking `latest`, a run has a build under way.
        assert bool(now) == (point not in ("lock.held", "latest.linked")), point
        left = now
        # A report folder without its version: only the one a kill between the renames leaves.
        assert len(report_folders(root) - set(complete)) <= 1, point


def completes(root: Path, config: str) -> str:
    """Run `config` to the end: its version is whole, `latest` points at it, staging is empty."""
    version = built_version(invoke("run", "--config", config))
    assert version in check_store(root)
    assert latest(root) == (root / "reports" / "latest").resolve().name == version
    assert staged(root) == set()
    assert report_folders(root) == set(check_store(root))
    return version


def test_runs_killed_in_the_stages_leave_every_version_whole(
    preloaded: PreloadedSegment, copy_project: Path, write_variant: WriteVariant
) -> None:
    # Another reference date: every stage runs, from customers on.
    config = write_variant(copy_project, "later.yaml", {"data": {"as_of": "2026-06-30"}}).name
    versions_before = check_store(copy_project)
    kill_one_by_one(preloaded, copy_project, config, STAGE_KILLS)
    assert check_store(copy_project) == versions_before
    completes(copy_project, config)


def test_runs_killed_while_a_version_is_completed_leave_every_version_whole(
    preloaded: PreloadedSegment, copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    previous = latest(root)
    versions_before = check_store(root)
    # Another chart height: the charts and the report are built, the rest comes from the cache.
    config = write_variant(root, "tall.yaml", {"visualize": {"height": 210}}).name
    kill_one_by_one(preloaded, root, config, COMPLETION_KILLS)
    # The last kill came after the version was complete, before `latest` was switched to it.
    (built,) = set(check_store(root)) - set(versions_before)
    for number, fault in enumerate(LATEST_KILLS):
        other = write_variant(root, f"title{number}.yaml", {"report": {"title": f"Title {number}"}})
        killed_at(preloaded, root, other.name, fault)
        assert built in check_store(root)
        assert staged(root) == set()
    # The first left artifacts/latest switched and reports/latest not; the second switched both.
    assert latest(root) == (root / "reports" / "latest").resolve().name != previous
    assert completes(root, config) == built
    completes(root, "title0.yaml")


# --- Ctrl-C at named points -----------------------------------------------------------------------

INTERRUPTS = ("report.written", "report.moved", "latest.linked:interrupt:2")
"""Ctrl-C while a version is built (its report written in staging), between the report's rename and
the version's, and between the switch of artifacts/latest and that of reports/latest."""


def test_ctrl_c_at_named_points_exits_130_with_one_line_and_keeps_every_version(
    preloaded: PreloadedSegment, copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    previous = latest(root)
    # Another title: only the report is built again, the other stages come from the cache.
    config = write_variant(root, "sigint.yaml", {"report": {"title": "Interrupted"}}).name
    for point in INTERRUPTS:
        fault = point if ":" in point else f"{point}:interrupt"
        process = start_forked(preloaded, root, config, fault)
        assert process.wait() == 130, f"{fault}: exit {process.returncode}\n{process.stderr}"
        stdout, stderr = process.stdout, process.stderr
        one_line(stderr, f"^{INTERRUPTED}$")
        assert stdout == ""
        complete = check_store(root)
        assert {k: v for k, v in file_states(root).items() if k in before} == before
        assert staged(root) == set(), "an interrupted run clears its own staging"
        runs = (root / "artifacts" / "runs.jsonl").read_text(encoding="utf-8").splitlines()
        assert json.loads(runs[-1])["failed"] is not None
        if point != INTERRUPTS[-1]:
            assert latest(root) == previous
    # The last one had completed the version and switched artifacts/latest, not reports/latest.
    assert latest(root) in complete
    assert (root / "reports" / "latest").resolve().name == previous
    version = built_version(invoke("run", "--config", config))
    assert latest(root) == (root / "reports" / "latest").resolve().name == version
    assert report_folders(root) == set(check_store(root))


# --- a full disk --------------------------------------------------------------------------------


def _no_space(name: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


FULL_DISK_POINTS = (
    ("a prepare output", "replace", "prepared.parquet"),
    ("a chart", "write_bytes", ".png"),
    ("the manifest", "replace", "manifest.json"),
    ("switching latest", "replace", "latest"),
)
"""Where the disk fills up, in the order a run reaches them: each run gets one step further."""


def test_a_full_disk_leaves_every_version_whole(
    copy_project: Path, write_variant: WriteVariant, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_project
    before = file_states(root)
    previous = latest(root)
    # Another scaling: every stage runs, from prepare on. Each failed run leaves its finished
    # stages in the cache, so the next attempt gets as far as the next failing write.
    config = write_variant(root, "full.yaml", {"scaling": "minmax"})
    real_replace = os.replace
    for point, how, name in FULL_DISK_POINTS:
        with monkeypatch.context() as patch:
            if how == "write_bytes":

                def write_bytes(target: Path, data: bytes) -> None:
                    raise _no_space(str(target))

                patch.setattr(artifacts, "write_bytes", write_bytes)
            else:

                def failing_replace(source: Any, target: Any, name: str = name) -> None:
                    if Path(target).name == name:
                        raise _no_space(str(target))
                    real_replace(source, target)

                patch.setattr(os, "replace", failing_replace)
            result = invoke("run", "--config", config.name)
        assert result.exit_code == 1, f"{point}: {result.output}"
        shown = re.escape(name) if how == "replace" else r"charts/\w+\.png"
        one_line(result.stderr, rf"^error: \S+/{shown}: No space left on device$")
        check_store(root)
        assert latest(root) == previous, point
        assert {k: v for k, v in file_states(root).items() if k in before} == before, point
        assert not any((root / "artifacts" / ".staging").iterdir()), point
    # With space again, the next run completes.
    version = built_version(invoke("run", "--config", config.name))
    assert version in check_store(root)
    assert latest(root) == version != previous


# --- two runs at once ---------------------------------------------------------------------------


def test_a_run_while_another_holds_the_lock_exits_6(
    copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    config = write_variant(root, "second.yaml", {"scaling": "robust"})
    with artifacts.exclusive(Workspace(root)):
        for args in (("run", "--config", config.name), ("prepare",), ("prune", "--keep", "1")):
            result = invoke(*args)
            assert result.exit_code == 6, result.output
            one_line(result.stderr, BUSY)
    check_store(root)
    assert file_states(root) == before
    assert invoke("run").exit_code == 0  # the lock is free again


def test_two_runs_at_once_do_not_corrupt_each_other(
    preloaded: PreloadedSegment, copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    first_config = write_variant(root, "first.yaml", {"visualize": {"width": 230}}).name
    second_config = write_variant(root, "second.yaml", {"scaling": "none"}).name
    # The first run stops itself with its charts drawn in staging, holding the lock. It draws
    # them in worker processes, as a run on several cores does.
    first = start_forked(preloaded, root, first_config, "visualize.written:stop", one_core=False)
    try:
        first.wait_stopped()
        second = start(root, second_config, "", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, second_err = second.communicate(timeout=300)
        assert second.returncode == 6, second_err
        one_line(second_err, BUSY)
        assert staged(root), "the stopped run's build is still there"
    finally:
        if first.returncode is None:
            os.kill(first.pid, signal.SIGCONT)
    assert first.wait() == 0, first.stderr
    match = REPORT_LINE.search(first.stdout)
    assert match, first.stdout
    assert latest(root) == match.group(1)
    assert match.group(1) in check_store(root)
    assert {k: v for k, v in file_states(root).items() if k in before} == before
