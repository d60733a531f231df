"""What killed runs leave half-written outside the staging folders is removed by the next run."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from segmentation.cli import main


def test_a_run_removes_what_killed_runs_left_half_written(copy_project: Path) -> None:
    artifacts, reports = copy_project / "artifacts", copy_project / "reports"
    version = (artifacts / "latest").resolve().name
    (artifacts / ".latest.99999.tmp").symlink_to(version)  # killed before switching `latest`
    (reports / ".latest.99999.tmp").symlink_to(version)
    (artifacts / ".versions.json.k2j3h4.tmp").write_text("{")  # killed before the rename
    entry = artifacts / ".cache" / "select-k" / ".0a1b2c.x7y8z9"  # a cache entry being stored
    (entry / "files").mkdir(parents=True)
    (entry / "files" / "k_selection.json").write_text("{")
    (artifacts / ".cache" / "stamps" / ".5f6e.json.q1w2.tmp").write_text("{")
    kept = sorted(p.name for p in (artifacts / ".cache" / "select-k").iterdir() if p != entry)

    result = CliRunner().invoke(main, ["run", "--force"])

    assert result.exit_code == 0, result.output
    left = [
        path.relative_to(copy_project).as_posix()
        for path in [*artifacts.rglob(".*"), *reports.rglob(".*")]
        if path.name not in (".cache", ".lock", ".staging", "stamps")
    ]
    assert left == []
    assert not any((artifacts / ".staging").iterdir())
    # Finished cache entries stay.
    assert set(kept) <= {p.name for p in (artifacts / ".cache" / "select-k").iterdir()}
