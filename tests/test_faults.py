"""Faults: runs killed at random points, Ctrl-C, a full disk, two runs at once.

Whatever happens to a run, every complete version still matches its manifest byte for byte,
`latest` points at a complete version, versions that were there before are untouched, and the
next run completes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from segmentation import artifacts
from segmentation.artifacts import Workspace
from segmentation.cli import main

SEED = 20261128
SCALINGS = ("standard", "minmax", "robust", "none")
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


def start(root: Path, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """`segment ARGS` in its own process, with Ctrl-C handled as Python does by default."""
    return subprocess.Popen(
        [*segment_command(), *args],
        cwd=root,
        text=True,
        # A test runner started in the background may ignore SIGINT; the run must not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended early (exit {process.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def building(root: Path) -> Callable[[], bool]:
    """True once a run holds the lock and builds a version (its staging folder exists)."""
    staging = root / "artifacts" / ".staging"
    return lambda: staging.is_dir() and any(staging.iterdir())


def one_line(stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert re.search(expected, lines[-1]), stderr
    assert sum(line.startswith(("error:", "interrupted:")) for line in lines) == 1, stderr


# --- SIGKILL at random points -------------------------------------------------------------------


def test_runs_killed_at_random_points_leave_every_version_whole(
    copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    versions_before = check_store(root)
    rng = random.Random(SEED)
    # Five kills at random times, stratified so that they spread over a run. Three runs change
    # the scaling, so they build from prepare on (killed in the early stages); two change a chart
    # setting, so they reuse the cached stages (killed in the charts, the report or the switch).
    plan = [("scaling", rng.uniform(low, low + 0.77)) for low in (0.3, 1.07, 1.84)]
    plan += [("charts", rng.uniform(low, low + 1.4)) for low in (0.4, 1.8)]
    rng.shuffle(plan)
    kills: list[float] = []
    config = root / "config.yaml"
    for attempt in range(12):
        if len(kills) >= 5:
            break
        # A run that finished before its time was up is replaced by one more attempt.
        kind, delay = plan[attempt] if attempt < len(plan) else ("charts", rng.uniform(0.4, 3.2))
        overrides: dict[str, Any] = (
            {"scaling": SCALINGS[1 + attempt % 3], "cluster": {"seed": 100 + attempt}}
            if kind == "scaling"
            else {"visualize": {"width": 210 + attempt}}
        )
        config = write_variant(root, f"kill{attempt}.yaml", overrides)
        process = start(
            root,
            "run",
            "--config",
            config.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append(delay)
        complete = check_store(root)
        assert set(versions_before) <= set(complete)
        assert {k: v for k, v in file_states(root).items() if k in before} == before
    assert len(kills) >= 5, kills
    assert any((root / "artifacts" / ".staging").iterdir()), "no kill interrupted a build"
    # The next run completes, from whatever the killed runs left behind.
    version = built_version(invoke("run", "--config", config.name))
    assert version in check_store(root)
    assert latest(root) == version


# --- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_with_one_line_and_keeps_every_version(
    copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    previous = latest(root)
    config = write_variant(root, "sigint.yaml", {"scaling": "robust"})
    process = start(
        root, "run", "--config", config.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for(building(root), process, timeout=60)
    time.sleep(random.Random(SEED).uniform(0.0, 1.0))
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    one_line(stderr, f"^{INTERRUPTED}$")
    assert stdout == ""
    check_store(root)
    assert latest(root) == previous
    assert {k: v for k, v in file_states(root).items() if k in before} == before
    assert not any((root / "artifacts" / ".staging").iterdir())  # the unfinished build is gone
    runs = (root / "artifacts" / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(runs[-1])["failed"] is not None


def test_ctrl_c_in_process_exits_130(
    copy_project: Path, write_variant: WriteVariant, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_project
    previous = latest(root)
    config = write_variant(root, "interrupt.yaml", {"scaling": "robust"})

    def interrupted(target: Path, frame: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_parquet", interrupted)
    result = invoke("run", "--config", config.name)
    assert result.exit_code == 130
    one_line(result.stderr, f"^{INTERRUPTED}$")
    check_store(root)
    assert latest(root) == previous
    assert not any((root / "artifacts" / ".staging").iterdir())


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
    copy_project: Path, write_variant: WriteVariant
) -> None:
    root = copy_project
    before = file_states(root)
    # The first run reuses the cached stages and redraws the charts: a few seconds with the lock.
    first_config = write_variant(root, "first.yaml", {"visualize": {"width": 230}})
    second_config = write_variant(root, "second.yaml", {"scaling": "none"})
    first = start(
        root, "run", "--config", first_config.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for(building(root), first, timeout=60)
    second = start(
        root,
        "run",
        "--config",
        second_config.name,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, second_err = second.communicate(timeout=60)
    assert first.poll() is None, "the first run ended before the second tried the lock"
    assert second.returncode == 6, second_err
    one_line(second_err, BUSY)
    first_out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    match = REPORT_LINE.search(first_out)
    assert match, first_out
    assert latest(root) == match.group(1)
    assert match.group(1) in check_store(root)
    assert {k: v for k, v in file_states(root).items() if k in before} == before
