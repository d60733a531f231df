"""Run stamps: a rerun of an unchanged config is found without the stages, and any change to what
the run read (config, data, vocabulary, code) or a missing version takes the full way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from segmentation import artifacts, stamps
from segmentation.artifacts import Workspace
from segmentation.cli import main

HEAVY = ("pydantic", "polars", "numpy", "sklearn", "altair", "pandera")
"""Libraries of the stages, none of which an unchanged rerun needs."""
LOADED = f"""
import sys
from segmentation.cli import main
main(["run"], standalone_mode=False)
print("loaded:", ",".join(name for name in {HEAVY!r} if name in sys.modules))
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def stamp_of(root: Path, config: str = "config.yaml") -> stamps.Stamp | None:
    return stamps.unchanged(Workspace(root), root / config)


@pytest.fixture
def stamped(copy_project: Path) -> Path:
    """A copy of the project whose config.yaml has just been rerun: its stamp is written."""
    assert invoke("run").exit_code == 0
    assert stamp_of(copy_project) is not None
    return copy_project


def loaded_by_a_run(root: Path) -> list[str]:
    """The stage libraries a `segment run` in a fresh interpreter imported."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=root, capture_output=True, text=True, check=True
    )
    loaded = done.stdout.splitlines()[-1].removeprefix("loaded:").strip()
    return [name for name in loaded.split(",") if name]


def test_an_unchanged_rerun_imports_no_stage_library(stamped: Path) -> None:
    assert loaded_by_a_run(stamped) == []


def test_an_unchanged_rerun_names_the_version_and_every_stage_reused(stamped: Path) -> None:
    latest = artifacts.latest_version(stamped / "artifacts")
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"version {latest}  (config config.yaml, data data/")
    assert result.stderr.count(" reused ") == 6
    assert f"nothing to compute); version {latest}" in result.stderr
    assert result.stdout == f"Report: reports/{latest}/index.html\n"
    log = (stamped / "artifacts" / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(log[-1])["version"] == latest


def test_a_stamp_names_what_the_run_read(stamped: Path) -> None:
    record = artifacts.read_json(stamps.stamp_path(Workspace(stamped), stamped / "config.yaml"))
    assert list(record["files"]) == [str((stamped / "data" / "customers.csv").resolve())]
    assert record["config_sha256"] == artifacts.sha256_file(stamped / "config.yaml")
    assert record["code"] == artifacts.code_fingerprint()


def test_an_edited_config_is_not_unchanged(stamped: Path) -> None:
    config = stamped / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "# a comment\n", encoding="utf-8")
    assert stamp_of(stamped) is None


def test_touched_data_takes_the_full_way_to_the_same_version(stamped: Path) -> None:
    data = stamped / "data" / "customers.csv"
    before = stamp_of(stamped)
    state = data.stat()
    os.utime(data, ns=(state.st_atime_ns, state.st_mtime_ns + 1_000_000_000))
    assert stamp_of(stamped) is None
    # The full way hashes the data: the same bytes give the same version, and a new stamp.
    assert invoke("run").exit_code == 0
    assert stamp_of(stamped) == before


def test_other_code_is_not_unchanged(stamped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "code_fingerprint", lambda modules=None: "0.0.0+000000000000")
    assert stamp_of(stamped) is None


def test_an_edited_vocabulary_file_is_not_unchanged(stamped: Path) -> None:
    vocabulary = stamped / "vocabulary.yaml"
    shipped = Path(__file__).resolve().parents[1] / "src/segmentation/vocabularies/mall.yaml"
    shutil.copyfile(shipped, vocabulary)
    config = yaml.safe_load((stamped / "config.yaml").read_text(encoding="utf-8"))
    config["naming"] = "vocabulary.yaml"
    (stamped / "own.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert invoke("run", "--config", "own.yaml").exit_code == 0
    assert stamp_of(stamped, "own.yaml") is not None
    vocabulary.write_text(vocabulary.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert stamp_of(stamped, "own.yaml") is None


def test_a_damaged_stamp_takes_the_full_way(stamped: Path) -> None:
    stamps.stamp_path(Workspace(stamped), stamped / "config.yaml").write_text("{", encoding="utf-8")
    assert stamp_of(stamped) is None
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert stamp_of(stamped) is not None


def test_a_removed_version_is_built_again(stamped: Path) -> None:
    version = artifacts.latest_version(stamped / "artifacts")
    assert version is not None
    (stamped / "artifacts" / version / "manifest.json").unlink()
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert "nothing to compute" not in result.stderr
    assert (stamped / "artifacts" / version / "manifest.json").is_file()


def test_force_takes_the_full_way(stamped: Path) -> None:
    result = invoke("run", "--force")
    assert result.exit_code == 0, result.output
    assert " ran " in result.stderr
