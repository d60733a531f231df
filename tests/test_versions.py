"""Versions: their ids, reproducibility across folders, verify, compare, versions and prune."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from segmentation import versions
from segmentation.artifacts import Workspace, version_id
from segmentation.cli import _crosstab_table, _versions_table, main
from segmentation.config import Config, load_config

if TYPE_CHECKING:
    from conftest import VersionedProject

DATA_SHA = "a" * 64
WIDE = {"COLUMNS": "200"}
"""A console wide enough that rich never shortens a table cell."""

WriteVariant = Callable[[Path, str, dict[str, Any]], Path]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(main, list(args))


def read_manifest(root: Path, version: str) -> dict[str, Any]:
    return json.loads((root / "artifacts" / version / "manifest.json").read_text(encoding="utf-8"))


def clone(project: VersionedProject, parent: Path) -> Path:
    """A private copy of the shared project (plain files: no hard links to its cache)."""
    return Path(shutil.copytree(project.root, parent / "project", symlinks=True))


def built_version(result: Result) -> str:
    assert result.exit_code == 0, result.output
    match = re.search(r"^Report: reports/(\w+)/index\.html$", result.stdout, re.M)
    assert match, result.output
    return match.group(1)


# --- version ids (no runs) ----------------------------------------------------------------------


SHIPPED = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
"""The shipped config.yaml: the Mall schema and every default."""


def with_values(**changes: dict[str, Any]) -> Config:
    resolved = SHIPPED.resolved()
    for section, values in changes.items():
        resolved[section] = {**resolved[section], **values}
    return Config.model_validate(resolved)


def test_the_version_id_is_a_short_hash() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", version_id(SHIPPED.resolved(), DATA_SHA))


def test_the_same_config_and_data_give_the_same_version_id() -> None:
    assert version_id(SHIPPED.resolved(), DATA_SHA) == version_id(SHIPPED.resolved(), DATA_SHA)


def test_the_version_id_ignores_where_the_data_comes_from() -> None:
    moved = with_values(data={"path": "elsewhere/customers.csv", "url": None, "sha256": None})
    assert version_id(moved.resolved(), DATA_SHA) == version_id(SHIPPED.resolved(), DATA_SHA)


def test_other_data_gives_another_version_id() -> None:
    assert version_id(SHIPPED.resolved(), "b" * 64) != version_id(SHIPPED.resolved(), DATA_SHA)


@pytest.mark.parametrize(
    "changes",
    [
        {"select_k": {"rule": "elbow"}},
        {"cluster": {"seed": 7}},
        {"visualize": {"width": 640}},
        {"report": {"title": "Other title"}},
    ],
    ids=["select_k.rule", "cluster.seed", "visualize.width", "report.title"],
)
def test_a_config_change_gives_another_version_id(changes: dict[str, dict[str, Any]]) -> None:
    changed = with_values(**changes)
    assert version_id(changed.resolved(), DATA_SHA) != version_id(SHIPPED.resolved(), DATA_SHA)


# --- the same config in another folder ----------------------------------------------------------


@dataclass(frozen=True)
class Twin:
    """The versioned project's config.yaml and data, run in a fresh folder."""

    root: Path
    version: str


@pytest.fixture(scope="module")
def twin(
    tmp_path_factory: pytest.TempPathFactory,
    versioned_project: VersionedProject,
) -> Twin:
    root = tmp_path_factory.mktemp("twin")
    for name in ("config.yaml", "data/customers.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((versioned_project.root / name).read_bytes())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        version = built_version(invoke("run"))
    return Twin(root=root, version=version)


def test_another_folder_gives_the_same_version_id(
    twin: Twin, versioned_project: VersionedProject
) -> None:
    assert twin.version == versioned_project.a


def test_another_folder_gives_byte_identical_outputs(
    twin: Twin, versioned_project: VersionedProject
) -> None:
    outputs = read_manifest(twin.root, twin.version)["outputs"]
    assert outputs == read_manifest(versioned_project.root, versioned_project.a)["outputs"]
    assert {Path(name).suffix for name in outputs} >= {".parquet", ".csv", ".json", ".png", ".svg"}


def test_another_folder_gives_the_same_stage_keys(
    twin: Twin, versioned_project: VersionedProject
) -> None:
    stages = read_manifest(twin.root, twin.version)["stages"]
    original = read_manifest(versioned_project.root, versioned_project.a)["stages"]
    assert {s: v["key"] for s, v in stages.items()} == {s: v["key"] for s, v in original.items()}


# --- verify -------------------------------------------------------------------------------------


def test_verify_passes_on_an_untouched_version(
    versioned_project: VersionedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(versioned_project.root)
    result = invoke("verify")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"version {versioned_project.b}: all \d+ outputs match the manifest byte for byte\n",
        result.stdout,
    )


def test_verify_names_a_changed_file_and_exits_5(
    versioned_project: VersionedProject, copy_project: Path
) -> None:
    # The copy's files are its own: the shared project and its cache are not touched.
    with (copy_project / "artifacts" / "latest" / "segments.csv").open("ab") as handle:
        handle.write(b"\n")
    result = invoke("verify", versioned_project.b[:6])
    assert result.exit_code == 5, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.search(r"1 of \d+ outputs differ from the manifest: segments\.csv$", errors[0])


def test_verify_of_an_unknown_version_exits_2(
    versioned_project: VersionedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(versioned_project.root)
    result = invoke("verify", "ffffffffffff")
    assert result.exit_code == 2
    assert "version 'ffffffffffff' is not a complete version" in result.stderr


# --- compare ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compared:
    root: Path
    result: Result


@pytest.fixture(scope="module")
def compared(
    tmp_path_factory: pytest.TempPathFactory, versioned_project: VersionedProject
) -> Compared:
    """`segment compare A latest` in a copy of the project (latest is B: only the width differs)."""
    root = clone(versioned_project, tmp_path_factory.mktemp("compared"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = invoke("compare", versioned_project.a[:6], "latest", env=WIDE)
    return Compared(root=root, result=result)


def test_compare_exits_0(compared: Compared) -> None:
    assert compared.result.exit_code == 0, compared.result.output


def test_compare_writes_the_page(compared: Compared, versioned_project: VersionedProject) -> None:
    a, b = versioned_project.a, versioned_project.b
    page = Path("reports", "compare", f"{a}-{b}.html")
    assert compared.result.stdout.endswith(f"Comparison: {page}\n")
    html = (compared.root / page).read_text(encoding="utf-8")
    assert "<code>visualize.width</code>" in html
    assert "<strong>1.000</strong>" in html


def test_compare_lists_the_config_change(compared: Compared) -> None:
    assert re.findall(r"^config .*$", compared.result.stdout, re.M) == [
        "config  visualize.width: 200 -> 320"
    ]


def test_compare_prints_an_adjusted_rand_index_of_1(compared: Compared) -> None:
    assert "adjusted Rand index 1.000 over 130 shared customers" in compared.result.stdout


def test_compare_finds_nobody_moved(versioned_project: VersionedProject) -> None:
    root, a, b = versioned_project.root, versioned_project.a, versioned_project.b
    comparison = versions.compare_versions(Workspace(root), a, b)
    sizes = pl.read_csv(root / "artifacts" / a / "segments.csv")["size"].to_list()
    assert comparison.adjusted_rand_index == pytest.approx(1.0)
    assert [row["segment"] for row in comparison.crosstab] == comparison.new_segments
    assert [row["counts"] for row in comparison.crosstab] == [
        [size if i == j else 0 for j in range(len(sizes))] for i, size in enumerate(sizes)
    ]
    assert [name for name, before, after in comparison.metrics if before != after] == []


# --- versions -----------------------------------------------------------------------------------


def test_versions_lists_every_version_newest_first(
    versioned_project: VersionedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(versioned_project.root)
    found = [v["version"] for v in versions.list_versions(Workspace(versioned_project.root))]
    assert sorted(found) == sorted([versioned_project.a, versioned_project.b])
    result = invoke("versions", env=WIDE)
    assert result.exit_code == 0, result.output
    assert re.findall(r"\b[0-9a-f]{12}\b", result.stdout) == found


def test_versions_shows_whole_ids_on_an_80_column_console(
    versioned_project: VersionedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ids are what `compare`, `verify` and `prune` take; a shortened one cannot be used.
    monkeypatch.chdir(versioned_project.root)
    result = invoke("versions", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    for version in (versioned_project.a, versioned_project.b):
        assert version in result.stdout


FEATURE_LISTS = [
    ["annual_income", "spending_score"],
    ["recency_days", "frequency", "monetary_total", "average_order_value", "tenure_days"],
]


@pytest.mark.parametrize("features", FEATURE_LISTS, ids=["two", "five"])
@pytest.mark.parametrize("rule", ["silhouette", "calinski_harabasz"])
def test_versions_fit_80_columns_without_cutting_a_word(features: list[str], rule: str) -> None:
    entry = {
        "version": "0123456789ab", "created": "2026-12-03T17:20:11.123+00:00",
        "features": features, "scaling": "standard", "rule": rule, "chosen_k": 10,
        "silhouette": 0.555, "calinski_harabasz": 248.6, "davies_bouldin": 0.572,
        "segments": ["High income · High spending"], "report": "0123456789ab/index.html",
    }  # fmt: skip
    console = Console(width=80, record=True)
    console.print(_versions_table([entry], wide=False))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    # Every word whole on some line: wrapped at spaces, never folded or cut.
    words = set(text.replace(",", " ").split())
    for expected in ["0123456789ab", "2026-12-03", "17:20", "0.555", "standard", *features]:
        assert expected in words, (expected, text)
    assert set(rule.split("_")) <= words


def test_versions_wide_puts_each_version_on_one_line(
    versioned_project: VersionedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(versioned_project.root)
    result = invoke("versions", "--wide", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # the header and one line per version
    assert "Davies-Bouldin" in lines[0] and "…" not in result.stdout
    segments = pl.read_csv(versioned_project.root / "artifacts" / "latest" / "segments.csv")
    assert "; ".join(segments["name"]) in lines[1]


def test_the_comparison_table_fits_80_columns_with_ten_segments() -> None:
    names = [f"Segment {i} · High income · Low spending" for i in range(10)]
    comparison = versions.Comparison(
        old="0123456789ab", new="ba9876543210", config_changes=[], metrics=[],
        crosstab=[{"segment": name, "counts": [54321] * 10} for name in names],
        new_segments=names, shared_customers=123450, adjusted_rand_index=1.0,
    )  # fmt: skip
    console = Console(width=80, record=True)
    console.print(_crosstab_table(comparison, [str(i) for i in range(10)]))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert text.count("54321") == 100


def test_versions_without_any_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("versions")
    assert result.exit_code == 0
    assert "no versions yet" in result.stderr


# --- prune --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    root: Path
    oldest: str
    """The version `latest` points at when pruning."""
    middle: str
    newest: str
    result: Result
    listed: Result
    """`segment versions` after pruning."""


def _set_created(root: Path, version: str, created: str) -> None:
    path = root / "artifacts" / version / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, "created": created}), encoding="utf-8")


@pytest.fixture(scope="module")
def pruned(
    tmp_path_factory: pytest.TempPathFactory,
    versioned_project: VersionedProject,
    write_variant: WriteVariant,
) -> Pruned:
    """Three versions; `latest` switched back to the oldest by rerunning its config; prune --keep 1."""
    root = clone(versioned_project, tmp_path_factory.mktemp("pruned"))
    oldest, middle = versioned_project.a, versioned_project.b
    write_variant(root, "tall.yaml", {"visualize": {"height": 200}})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        newest = built_version(invoke("run", "--config", "tall.yaml"))
        assert built_version(invoke("run")) == oldest
        # Versions built within one second have equal creation times: make the order unambiguous.
        for day, version in enumerate((oldest, middle, newest), start=1):
            _set_created(root, version, f"2024-01-0{day}T00:00:00+00:00")
        # The stored list keeps the figures it read when each version completed; rebuild it.
        (root / "artifacts" / "versions.json").unlink()
        assert invoke("compare", oldest, middle).exit_code == 0
        result = invoke("prune", "--keep", "1")
        listed = invoke("versions", env=WIDE)
    return Pruned(
        root=root,
        oldest=oldest,
        middle=middle,
        newest=newest,
        result=result,
        listed=listed,
    )


def test_prune_removes_the_older_version(pruned: Pruned) -> None:
    assert pruned.result.exit_code == 0, pruned.result.output
    assert pruned.result.stderr == f"removed 1 version(s): {pruned.middle}\n"
    assert not (pruned.root / "artifacts" / pruned.middle).exists()


def test_prune_removes_the_report_and_comparisons_of_the_version(pruned: Pruned) -> None:
    assert not (pruned.root / "reports" / pruned.middle).exists()
    assert list((pruned.root / "reports" / "compare").iterdir()) == []


def test_prune_keeps_the_newest_and_the_latest(pruned: Pruned) -> None:
    for version in (pruned.newest, pruned.oldest):
        assert (pruned.root / "artifacts" / version / "manifest.json").is_file()
        assert (pruned.root / "reports" / version / "index.html").is_file()
    for folder in ("artifacts", "reports"):
        assert (pruned.root / folder / "latest").readlink() == Path(pruned.oldest)


def test_versions_lists_what_prune_kept(pruned: Pruned) -> None:
    assert pruned.listed.exit_code == 0, pruned.listed.output
    assert re.findall(r"\b[0-9a-f]{12}\b", pruned.listed.stdout) == [pruned.newest, pruned.oldest]


def test_the_list_of_versions_page_forgets_the_pruned_version(pruned: Pruned) -> None:
    html = (pruned.root / "reports" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'href="(\w+)/index\.html"', html) == [pruned.newest, pruned.oldest]


def test_prune_must_keep_one(versioned_project: VersionedProject, copy_project: Path) -> None:
    result = invoke("prune", "--keep", "0")
    assert result.exit_code == 2
    assert "keep at least 1 version" in result.stderr
    assert (copy_project / "artifacts" / versioned_project.a).is_dir()
