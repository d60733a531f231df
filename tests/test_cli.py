"""The `segment` command: outputs of a full run, reproducibility, stages and exit codes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from segmentation.cli import main

if TYPE_CHECKING:
    from conftest import VersionedProject

DATA_FILES = (".parquet", ".csv", ".json")
CHART_NAMES = (
    "elbow",
    "criteria",
    "gap",
    "stability",
    "jaccard",
    "silhouette",
    "segments",
    "profiles",
    "categories",
    "sizes",
)
HEADER = "customer_id,gender,age,annual_income,spending_score"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass(frozen=True)
class Project:
    root: Path
    first: Result
    second: Result
    version: str
    first_hashes: dict[str, str]
    first_version_id: str
    latest: str
    """The version of the project's last run."""

    @property
    def folder(self) -> Path:
        return self.root / "artifacts" / self.version

    def read_json(self, name: str) -> Any:
        return json.loads((self.folder / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project(versioned_project: VersionedProject) -> Project:
    """The versioned project (conftest): `segment run` twice, then once on another config.

    Shared with other modules: these tests only read it (or a copy).
    """
    second = re.search(r"Report: reports/(\w+)/index\.html", versioned_project.rerun.stdout)
    prefix = f"artifacts/{versioned_project.a}/"
    return Project(
        root=versioned_project.root,
        first=versioned_project.first,
        second=versioned_project.rerun,
        version=second.group(1) if second else "",
        first_hashes={
            name.removeprefix(prefix): digest
            for name, (digest, _, _) in versioned_project.a_after_first.items()
            if name.startswith(prefix)
        },
        first_version_id=versioned_project.a,
        latest=versioned_project.b,
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --- a full run ---------------------------------------------------------------------------------


def test_run_exits_0(project: Project) -> None:
    assert project.first.exit_code == 0, project.first.output


def test_run_prints_where_the_report_is(project: Project) -> None:
    assert project.first.stdout == f"Report: reports/{project.version}/index.html\n"


def test_run_writes_every_artifact(project: Project) -> None:
    expected = {
        "prepared.parquet",
        "prepare_summary.json",
        "rejects.csv",
        "k_selection.json",
        "segments.csv",
        "assignments.parquet",
        "assignments.csv",
        "model.json",
        "manifest.json",
    }
    assert expected <= {p.name for p in project.folder.iterdir()}


def test_run_writes_every_chart_in_three_formats(project: Project) -> None:
    charts = project.folder / "charts"
    for name in CHART_NAMES:
        for suffix in (".vl.json", ".png", ".svg"):
            assert (charts / f"{name}{suffix}").stat().st_size > 0, f"{name}{suffix}"


def test_chart_index_lists_the_charts(project: Project) -> None:
    index = project.read_json("charts/index.json")
    assert [chart["name"] for chart in index] == list(CHART_NAMES)


def test_run_writes_the_version_report(project: Project) -> None:
    html = (project.root / "reports" / project.version / "index.html").read_text(encoding="utf-8")
    assert "High income · Low spending" in html


def test_run_writes_the_list_of_versions(project: Project) -> None:
    html = (project.root / "reports" / "index.html").read_text(encoding="utf-8")
    assert f'href="{project.version}/index.html"' in html


@pytest.mark.parametrize("folder", ["artifacts", "reports"])
def test_latest_points_at_the_version_of_the_last_run(project: Project, folder: str) -> None:
    link = project.root / folder / "latest"
    assert link.is_symlink()
    assert str(link.readlink()) == project.latest


def test_k_selection_records_the_choice(project: Project) -> None:
    selection = project.read_json("k_selection.json")
    assert (selection["chosen_k"], selection["rule"], selection["knee_k"]) == (
        4,
        "silhouette",
        4,
    )


def test_k_selection_scores_every_candidate(project: Project) -> None:
    candidates = project.read_json("k_selection.json")["candidates"]
    assert [c["k"] for c in candidates] == [1, 2, 3, 4, 5, 6]
    for candidate in candidates:
        assert set(candidate) == {
            "k",
            "inertia",
            "silhouette",
            "calinski_harabasz",
            "davies_bouldin",
            "gap",
            "gap_se",
            "stability",
            "smallest_share",
        }


def test_segments_csv_lists_the_segments_by_size(project: Project) -> None:
    segments = pl.read_csv(project.folder / "segments.csv")
    assert segments["size"].to_list() == [40, 35, 30, 25]


def test_assignments_cover_every_customer(project: Project, blobs4: pl.DataFrame) -> None:
    assignments = pl.read_parquet(project.folder / "assignments.parquet")
    assert sorted(assignments["customer_id"]) == sorted(blobs4["customer_id"])


def test_assignments_csv_matches_the_parquet(project: Project) -> None:
    from_csv = pl.read_csv(
        project.folder / "assignments.csv", schema_overrides={"customer_id": pl.String}
    )
    from_parquet = pl.read_parquet(project.folder / "assignments.parquet")
    assert from_csv.select("customer_id", "segment_id").equals(
        from_parquet.select("customer_id", "segment_id")
    )


def test_manifest_hashes_every_output(project: Project) -> None:
    outputs = project.read_json("manifest.json")["outputs"]
    on_disk = set(tree_hashes(project.folder)) - {"manifest.json"}
    assert set(outputs) == on_disk


def test_manifest_hashes_are_the_files_hashes(project: Project) -> None:
    outputs = project.read_json("manifest.json")["outputs"]
    assert outputs == {name: sha256(project.folder / name) for name in outputs}


def test_manifest_records_the_report_and_the_data(project: Project) -> None:
    manifest = project.read_json("manifest.json")
    report = project.root / manifest["report"]["path"]
    assert manifest["report"]["sha256"] == sha256(report)
    data = project.root / "data" / "customers.csv"
    assert manifest["inputs"]["data"] == {
        "path": "data/customers.csv",
        "sha256": sha256(data),
        "pinned": False,
    }


def test_manifest_records_every_stage(project: Project) -> None:
    stages = project.read_json("manifest.json")["stages"]
    assert set(stages) == {"customers", "prepare", "select-k", "cluster", "visualize", "report"}


# --- reproducibility ----------------------------------------------------------------------------


def test_second_run_exits_0(project: Project) -> None:
    assert project.second.exit_code == 0, project.second.output


def test_second_run_has_the_same_version_id(project: Project) -> None:
    assert project.version == project.first_version_id


def test_second_run_writes_identical_data_files(project: Project) -> None:
    second = tree_hashes(project.folder)
    data = [name for name in project.first_hashes if name.endswith(DATA_FILES)]
    data.remove("manifest.json")  # it records times; its outputs are compared below
    assert len(data) >= 10
    assert {name: second[name] for name in data} == {
        name: project.first_hashes[name] for name in data
    }


def test_an_unfinished_version_does_not_break_the_list_of_versions(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `prepare` alone leaves a version with a manifest but no k_selection.json or report; the
    # list of versions (reports/index.html) must skip it rather than crash the next run.
    root = tmp_path / "copy"
    shutil.copytree(project.root, root, symlinks=True)
    monkeypatch.chdir(root)
    other = yaml.safe_load(Path("config.yaml").read_text(encoding="utf-8"))
    other["select_k"]["k_max"] = 5
    Path("other.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    assert invoke("prepare", "--config", "other.yaml").exit_code == 0
    result = invoke("report")
    assert result.exit_code == 0, result.output
    html = Path("reports/index.html").read_text(encoding="utf-8")
    listed = re.findall(r'<td><a href="(\w+)/index\.html"', html)
    assert sorted(listed) == sorted({project.version, project.latest})


# --- assign -------------------------------------------------------------------------------------


def test_assign_labels_a_csv(project: Project, tmp_path: Path) -> None:
    output = tmp_path / "labelled.csv"
    result = invoke(
        "assign",
        "--input",
        str(project.root / "data" / "customers.csv"),
        "--output",
        str(output),
        "--model",
        str(project.folder / "model.json"),
    )
    assert result.exit_code == 0, result.output
    labelled = pl.read_csv(output, schema_overrides={"customer_id": pl.String})
    trained = pl.read_parquet(project.folder / "assignments.parquet")
    assert labelled.select("customer_id", "segment_id", "segment_name").equals(
        trained.select("customer_id", "segment_id", "segment_name")
    )


def test_assign_uses_the_latest_model_by_default(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.root)
    output = tmp_path / "labelled.csv"
    result = invoke("assign", "--input", "data/customers.csv", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert pl.read_csv(output).height == 130


def test_assign_without_a_model_exits_2(workdir: Path, blobs4: pl.DataFrame) -> None:
    blobs4.write_csv(workdir / "new.csv")
    result = invoke("assign", "--input", "new.csv", "--output", "out.csv")
    assert result.exit_code == 2
    assert "model not found" in result.stderr


def test_assign_with_invalid_rows_exits_3(project: Project, workdir: Path) -> None:
    (workdir / "new.csv").write_text(f"{HEADER}\n1,Male,30,50,50\n2,Male,30,50,500\n")
    result = invoke(
        "assign",
        "--input",
        "new.csv",
        "--output",
        "out.csv",
        "--model",
        str(project.folder / "model.json"),
    )
    assert result.exit_code == 3
    assert "line 3: spending_score 500.0 is outside 1-100" in result.stderr


# --- stages and errors (no chart rendering) -----------------------------------------------------


def _stage_outputs(result: Result) -> dict[str, Path]:
    """The `<stage> outputs: <folder>` lines a single-stage command prints."""
    found = re.findall(r"^(\S+) outputs: (.+)$", result.stdout, re.M)
    return {stage: Path(folder) for stage, folder in found}


def test_a_stage_runs_the_missing_upstream_stages(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3)
    result = invoke("cluster")
    assert result.exit_code == 0, result.output
    outputs = _stage_outputs(result)
    assert list(outputs) == ["customers", "prepare", "select-k", "cluster"]
    assert (outputs["prepare"] / "prepared.parquet").exists()
    assert (outputs["select-k"] / "k_selection.json").exists()
    assert pl.read_csv(outputs["cluster"] / "segments.csv")["size"].to_list() == [40, 30, 20]


def test_a_stage_alone_completes_no_version(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3)
    result = invoke("prepare")
    assert result.exit_code == 0
    assert list(_stage_outputs(result)) == ["customers", "prepare"]
    assert not list((workdir / "artifacts").glob("*/manifest.json"))
    assert not list((workdir / "reports").glob("*/index.html"))


def test_the_stage_after_reuses_the_one_before(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3)
    assert invoke("prepare").exit_code == 0
    result = invoke("select-k")
    assert re.search(r"prepare\s+reused", result.stderr)
    assert re.search(r"select-k\s+ran", result.stderr)


def test_fetch_reports_the_data_hash(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3)
    result = invoke("fetch")
    digest = sha256(workdir / "data" / "customers.csv")
    assert result.exit_code == 0
    assert f"SHA-256 {digest} recorded (data.sha256 is null)" in result.stdout


def test_bad_config_exits_2_with_one_line(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3, {"select_k": {"k_mx": 5}})
    result = invoke("run")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: config.yaml:")
    assert "select_k.k_mx: unknown key" in result.stderr
    assert "Traceback" not in result.output


def test_missing_config_exits_2(workdir: Path) -> None:
    result = invoke("run", "--config", "absent.yaml")
    assert result.exit_code == 2
    assert "absent.yaml: config file not found" in result.stderr


def test_k_beyond_the_data_exits_2(
    workdir: Path, make_project: Callable[..., Path], make_blobs: Callable[..., pl.DataFrame]
) -> None:
    make_project(workdir, make_blobs(((20.0, 20.0), (80.0, 80.0)), (3, 3)))
    result = invoke("select-k")
    assert result.exit_code == 2
    assert re.search(
        r"^error: config\.yaml:\d+: select_k\.k_max: 6 is more than the data allows",
        result.stderr,
        re.M,
    )


def test_invalid_data_exits_3(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3)
    rows = [f"{i},Female,30,{i},50" for i in range(1, 10)]
    (workdir / "data" / "customers.csv").write_text("\n".join([HEADER, *rows, "x,Male,30,5,0"]))
    result = invoke("run")
    assert result.exit_code == 3
    assert error_lines(result) == [
        f"error: {Path.cwd() / 'data' / 'customers.csv'}: 1 invalid row(s): line 11: spending_score 0.0 is "
        "outside 1-100; fix them, or set prepare.on_invalid: drop to leave them out"
    ]
    assert "Traceback" not in result.output


def test_hash_mismatch_exits_3(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3, {"data": {"sha256": "0" * 64}})
    result = invoke("fetch")
    assert result.exit_code == 3
    assert "0" * 64 in result.stderr


def test_missing_data_without_url_exits_4(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    make_project(workdir, blobs3, {"data": {"path": "data/absent.csv"}})
    result = invoke("run")
    assert result.exit_code == 4
    assert "data file not found and data.url is null" in result.stderr


def test_data_values_that_look_like_markup_do_not_crash_the_error_line(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    # The error line is printed with rich markup on: a value like "[/]" raises MarkupError
    # (a traceback and exit 1) instead of the documented one-line error and exit 3.
    bad = pl.DataFrame(
        {
            "customer_id": ["bad"],
            "gender": ["[/]"],
            "age": [30.0],
            "annual_income": [50.0],
            "spending_score": [50.0],
        }
    )
    make_project(workdir, pl.concat([blobs3, bad]))
    result = invoke("prepare")
    assert result.exit_code == 3
    assert "gender [/] must be one of Female, Male" in result.stderr


def test_error_lines_show_square_brackets_as_written(
    workdir: Path, make_project: Callable[..., Path], blobs3: pl.DataFrame
) -> None:
    # "[k$]" reads as a rich style tag and silently disappears from the message.
    make_project(workdir, blobs3)
    (workdir / "data" / "customers.csv").write_text(
        "CustomerID,Gender,Age,Annual Income [k$]\n1,Male,30,50\n"
    )
    result = invoke("prepare")
    assert result.exit_code == 3
    assert "the file has CustomerID, Gender, Age, Annual Income [k$];" in result.stderr


@pytest.mark.parametrize(
    ("args", "status", "stderr"),
    [
        (["--version"], 0, ""),
        (["run", "--config", "missing.yaml"], 2, "error: "),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_the_console_script_exits_with_mains_status_after_the_exit_handlers(
    args: list[str],
    status: int,
    stderr: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import atexit
    import os
    import sys

    from segmentation import cli

    order: list[str] = []
    exits: list[int] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["segment", *args])
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: order.append("exit handlers"))

    def fake_exit(code: int) -> None:
        order.append("exit")
        exits.append(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    cli.entry()
    assert exits == [status]
    assert order == ["exit handlers", "exit"]
    assert stderr in capsys.readouterr().err


def test_the_console_script_prints_a_string_exit_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from segmentation import cli

    def stop() -> None:
        raise SystemExit("stopped: a message")

    exits: list[int] = []
    monkeypatch.setattr(cli, "main", stop)
    monkeypatch.setattr(os, "_exit", exits.append)
    cli.entry()
    assert exits == [1]
    assert capsys.readouterr().err == "stopped: a message\n"
