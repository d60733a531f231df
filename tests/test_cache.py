"""The stage cache: what invalidates each stage, what a rerun reuses, and how builds stay atomic."""

from __future__ import annotations

import ast
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from segmentation import artifacts
from segmentation.cli import main
from segmentation.config import Config, load_config
from segmentation.pipeline import stage_keys
from segmentation.stages import STAGES

if TYPE_CHECKING:
    from conftest import VersionedProject

ALL = frozenset(STAGES)
FROM_PREPARE = ALL - {"customers"}
FROM_SELECT_K = frozenset({"select-k", "cluster", "visualize", "report"})
FROM_CLUSTER = frozenset({"cluster", "visualize", "report"})
FROM_VISUALIZE = frozenset({"visualize", "report"})
REPORT = frozenset({"report"})
STAGE_LINE = re.compile(r"^\S (\S+)\s+(ran|reused)\s+\d+\.\d+ s", re.M)

WriteVariant = Callable[[Path, str, dict[str, Any]], Path]
SHIPPED = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
"""The shipped config.yaml: the Mall schema and every default."""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def logged(result: Result) -> dict[str, str]:
    """Each stage's status as the stage lines on stderr give it."""
    return dict(STAGE_LINE.findall(result.stderr))


def statuses(manifest_or_log_entry: dict[str, Any]) -> dict[str, str]:
    return {stage: s["status"] for stage, s in manifest_or_log_entry["stages"].items()}


def manifest(root: Path, version: str) -> dict[str, Any]:
    return json.loads((root / "artifacts" / version / "manifest.json").read_text(encoding="utf-8"))


def version_of(result: Result) -> str:
    """The version a run worked on, from its first stderr line (printed before any stage runs)."""
    match = re.match(r"version (\w+)", result.stderr)
    assert match, result.output
    return match.group(1)


# --- which stages each config key invalidates (no runs) ----------------------------------------

# (dotted key, another valid value, the stages whose cache key must change)
INVALIDATION = [
    ("data.path", "elsewhere/customers.csv", REPORT),
    ("data.url", "https://example.org/customers.csv", REPORT),
    ("data.sha256", None, REPORT),
    ("data.as_of", "2024-06-30", ALL),
    (
        "columns",
        [*SHIPPED.resolved()["columns"][:3], {"name": "annual_income", "type": "numeric"}],
        FROM_PREPARE,
    ),
    ("naming", None, FROM_CLUSTER),
    ("features", ["age", "annual_income"], FROM_PREPARE),
    ("scaling", "minmax", FROM_PREPARE),
    ("prepare.on_invalid", "drop", FROM_PREPARE),
    ("select_k.k_min", 3, FROM_SELECT_K),
    ("select_k.k_max", 8, FROM_SELECT_K),
    ("select_k.rule", "elbow", FROM_SELECT_K),
    ("select_k.gap_references", 30, FROM_SELECT_K),
    ("select_k.bootstrap", 80, FROM_SELECT_K),
    ("select_k.bootstrap_size", 500, FROM_SELECT_K),
    ("select_k.sample_size", 8000, FROM_SELECT_K),
    ("select_k.min_segment_share", 0.05, FROM_SELECT_K),
    ("cluster.k", 4, FROM_SELECT_K),
    ("cluster.algorithm", "minibatch", FROM_CLUSTER),
    ("cluster.n_init", 5, FROM_SELECT_K),
    ("cluster.max_iter", 100, FROM_SELECT_K),
    ("cluster.seed", 7, FROM_SELECT_K),
    ("visualize.width", 640, FROM_VISUALIZE),
    ("visualize.height", 400, FROM_VISUALIZE),
    ("visualize.png_scale", 1.5, FROM_VISUALIZE),
    ("visualize.max_points", 1000, FROM_VISUALIZE),
    ("visualize.images", True, FROM_VISUALIZE),
    ("report.title", "Other title", REPORT),
    ("engine", "spark", ALL),
    # Where Spark runs is not part of the results; with the Polars engine its partitions are not
    # either (spark_partitions_invalidate_every_stage_on_spark checks the Spark engine).
    ("spark.master", "spark://127.0.0.1:7077", frozenset()),
    ("spark.partitions", 4, frozenset()),
]
DATA_SHA = "a" * 64


def leaf_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


PURCHASE_LOG = load_config(Path(__file__).resolve().parents[1] / "examples" / "cdnow.yaml")
"""A purchase log's config: the keys a customer table does not have."""
# (dotted key, another valid value, the stages whose cache key must change) on PURCHASE_LOG
LOG_INVALIDATION = [
    ("data.kind", "customers", ALL),
    ("data.delimiter", None, ALL),
    ("data.as_of", "1998-08-01", ALL),
    ("transactions", {"customer": "customer_id", "time": "date", "amount": "dollar_value"}, ALL),
    ("features", ["recency_days", "frequency"], FROM_PREPARE),
]
"""Changing the kind to customers needs `columns:`: that row swaps the whole data section."""


def with_value(key: str, value: Any, base: Config | None = None) -> Config:
    resolved = (base or SHIPPED).resolved()
    *sections, leaf = key.split(".")
    node = resolved
    for section in sections:
        node = node[section]
    node[leaf] = value
    return Config.model_validate(resolved)


def changed_stages(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {stage for stage in before if before[stage] != after[stage]}


def test_the_invalidation_tables_cover_every_config_key() -> None:
    assert {key for key, _, _ in INVALIDATION} == leaf_keys(SHIPPED.resolved()) - {
        "data.kind",
        "data.delimiter",
        "transactions",
    }
    only_logs = leaf_keys(PURCHASE_LOG.resolved()) - leaf_keys(SHIPPED.resolved())
    needed = {"transactions" if key.startswith("transactions.") else key for key in only_logs}
    assert {key for key, _, _ in LOG_INVALIDATION} >= needed | {"data.kind", "data.delimiter"}


@pytest.mark.parametrize(
    ("key", "value", "expected"), LOG_INVALIDATION, ids=[key for key, _, _ in LOG_INVALIDATION]
)
def test_a_purchase_log_key_invalidates_exactly_the_stages_that_depend_on_it(
    key: str, value: Any, expected: frozenset[str]
) -> None:
    resolved = PURCHASE_LOG.resolved()
    if key == "data.kind":
        resolved["data"] = {**resolved["data"], "kind": "customers", "delimiter": None}
        resolved |= {"transactions": None, "columns": SHIPPED.resolved()["columns"]}
        resolved["features"] = ["annual_income", "spending_score"]
        config = Config.model_validate(resolved)
    else:
        config = with_value(key, value, PURCHASE_LOG)
    assert config.resolved() != PURCHASE_LOG.resolved(), "the new value must be a change"
    before = stage_keys(PURCHASE_LOG, DATA_SHA)
    assert changed_stages(before, stage_keys(config, DATA_SHA)) == expected


@pytest.mark.parametrize(
    ("key", "value", "expected"), INVALIDATION, ids=[key for key, _, _ in INVALIDATION]
)
def test_a_config_key_invalidates_exactly_the_stages_that_depend_on_it(
    key: str, value: Any, expected: frozenset[str]
) -> None:
    config = with_value(key, value)
    assert config.resolved() != SHIPPED.resolved(), "the new value must be a change"
    before = stage_keys(SHIPPED, DATA_SHA)
    assert changed_stages(before, stage_keys(config, DATA_SHA)) == expected


def test_spark_partitions_invalidate_every_stage_on_spark() -> None:
    on_spark = with_value("engine", "spark")
    before = stage_keys(on_spark, DATA_SHA)
    assert (
        changed_stages(before, stage_keys(with_value("spark.partitions", 3, on_spark), DATA_SHA))
        == ALL
    )


def test_another_vocabulary_invalidates_cluster_onward() -> None:
    before = stage_keys(SHIPPED, DATA_SHA, "c" * 64)
    assert changed_stages(before, stage_keys(SHIPPED, DATA_SHA, "d" * 64)) == FROM_CLUSTER


def test_other_data_invalidates_every_stage() -> None:
    before = stage_keys(SHIPPED, DATA_SHA)
    assert changed_stages(before, stage_keys(SHIPPED, "b" * 64)) == ALL


# --- which stages a code change invalidates (no runs) --------------------------------------------


def code_names(modules: tuple[str, ...]) -> set[str]:
    """The files a fingerprint of `modules` hashes, relative to the package folder."""
    return {
        path.relative_to(artifacts.PACKAGE_DIR).as_posix() for path in artifacts.code_files(modules)
    }


def runner_imports(stage: str) -> set[str]:
    """The package modules the stage's runner in stages.py imports inside itself."""
    tree = ast.parse((artifacts.PACKAGE_DIR / "stages.py").read_text(encoding="utf-8"))
    runner = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == STAGES[stage].run.__name__
    )
    return {
        f"segmentation.{alias.name}"
        for node in ast.walk(runner)
        if isinstance(node, ast.ImportFrom) and node.module == "segmentation"
        for alias in node.names
    }


def with_upstream(stage: str) -> tuple[str, ...]:
    """The code a stage's key covers: its own and, through their keys, its upstream stages'."""
    return tuple(name for other in (*STAGES[stage].upstream, stage) for name in STAGES[other].code)


@pytest.mark.parametrize("stage", STAGES)
def test_the_code_of_a_stage_contains_its_own_modules(stage: str) -> None:
    files = code_names(STAGES[stage].code)
    assert "__init__.py" in files
    for module in STAGES[stage].code:
        assert f"{module.removeprefix('segmentation.').replace('.', '/')}.py" in files


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_runner_imports_counts_in_its_stage_key(stage: str) -> None:
    # A runner that starts using another module must name it in its Stage's code.
    assert runner_imports(stage), "the runner imports its stage's module"
    for module in runner_imports(stage):
        assert code_names((module,)) <= code_names(with_upstream(stage)), module


def test_the_code_of_visualize_is_not_the_other_stages() -> None:
    files = code_names(STAGES["visualize"].code)
    assert {"visualize.py", "images.py", "vegalite.py", "stability.py"} <= files
    assert files.isdisjoint(
        {"prepare.py", "select_k.py", "cluster.py", "report.py", "stages.py", "pipeline.py"}
    )
    assert not any(name.endswith(".j2") for name in files)


def test_the_code_of_the_report_includes_its_templates() -> None:
    assert "templates/report.html.j2" in code_names(STAGES["report"].code)


def test_imports_inside_functions_count() -> None:
    # versions imports report only inside write_index.
    assert "report.py" in code_names(("segmentation.versions",))


def test_the_runners_imports_inside_functions_do_not_count() -> None:
    files = code_names(("segmentation.stages",))
    assert {"stages.py", "artifacts.py", "dataset.py"} <= files
    assert files.isdisjoint({"visualize.py", "report.py", "cluster.py"})


def test_an_unknown_module_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"segmentation\.nowhere: not a module"):
        artifacts.code_files(("segmentation.nowhere",))


def keys_with_package(folder: Path) -> dict[str, str]:
    """The stage keys of the default config if the package's code were the files in `folder`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(artifacts, "PACKAGE_DIR", folder)
        artifacts.code_fingerprint.cache_clear()
        try:
            return stage_keys(SHIPPED, DATA_SHA)
        finally:
            artifacts.code_fingerprint.cache_clear()  # forget the copy's fingerprints


def copy_package(folder: Path) -> Path:
    return Path(shutil.copytree(artifacts.PACKAGE_DIR, folder / "segmentation"))


@pytest.fixture(scope="module")
def installed_keys() -> dict[str, str]:
    """The stage keys of the default config with the installed package's code.

    Computed once: each computation parses the package's modules, and `keys_with_package` makes
    the next one start afresh.
    """
    return stage_keys(SHIPPED, DATA_SHA)


def test_the_keys_do_not_depend_on_the_packages_folder(
    tmp_path: Path, installed_keys: dict[str, str]
) -> None:
    assert keys_with_package(copy_package(tmp_path)) == installed_keys


@pytest.mark.parametrize(
    ("edited", "expected"),
    [
        ("visualize.py", FROM_VISUALIZE),
        ("images.py", FROM_VISUALIZE),
        ("templates/report.html.j2", REPORT),
        ("report.py", REPORT),
        ("cluster.py", FROM_CLUSTER),
        ("select_k.py", FROM_SELECT_K),
        ("kmeans.py", FROM_SELECT_K),
        ("prepare.py", FROM_PREPARE),
        ("stages.py", ALL),
        ("artifacts.py", ALL),
        ("__init__.py", ALL),
        ("pipeline.py", frozenset()),
        ("cli.py", frozenset()),
    ],
)
def test_a_code_change_invalidates_exactly_the_stages_that_run_it(
    tmp_path: Path, installed_keys: dict[str, str], edited: str, expected: frozenset[str]
) -> None:
    # Compared with the installed package's keys: a copy has the same ones until it is edited.
    package = copy_package(tmp_path)
    with (package / edited).open("a", encoding="utf-8") as source:
        source.write("\n# an edit\n" if edited.endswith(".py") else "\n{# an edit #}\n")
    assert changed_stages(installed_keys, keys_with_package(package)) == expected


# --- a rerun reuses everything ------------------------------------------------------------------


def test_the_first_run_runs_every_stage(versioned_project: VersionedProject) -> None:
    assert logged(versioned_project.first) == dict.fromkeys(STAGES, "ran")


def test_a_rerun_builds_the_same_version(versioned_project: VersionedProject) -> None:
    assert versioned_project.rerun.exit_code == 0, versioned_project.rerun.output
    assert version_of(versioned_project.rerun) == versioned_project.a


def test_a_rerun_logs_every_stage_reused(versioned_project: VersionedProject) -> None:
    assert logged(versioned_project.rerun) == dict.fromkeys(STAGES, "reused")
    assert "nothing to compute" in versioned_project.rerun.stderr


def test_a_rerun_is_recorded_in_the_runs_log_as_all_reused(
    versioned_project: VersionedProject,
) -> None:
    runs = versioned_project.runs_after_rerun
    assert len(runs) == 2
    assert runs[-1]["version"] == versioned_project.a
    assert statuses(runs[-1]) == dict.fromkeys(STAGES, "reused")


def test_a_rerun_leaves_the_version_untouched(versioned_project: VersionedProject) -> None:
    # Same bytes, same modification times, same inodes: nothing was rewritten.
    assert versioned_project.a_after_rerun == versioned_project.a_after_first


def test_a_rerun_rewrites_no_file_and_no_link(versioned_project: VersionedProject) -> None:
    # Not the versions page, the stored list of versions, `latest`, the cache: only the runs log.
    after_first, after_rerun = (
        versioned_project.project_after_first,
        versioned_project.project_after_rerun,
    )
    assert "reports/index.html" in after_first and "artifacts/versions.json" in after_first
    assert after_rerun == after_first


# --- a new version reuses what it can -----------------------------------------------------------


def test_a_chart_setting_makes_a_new_version(versioned_project: VersionedProject) -> None:
    assert versioned_project.b != versioned_project.a


def test_a_chart_setting_reruns_only_the_charts_and_the_report(
    versioned_project: VersionedProject,
) -> None:
    expected = {
        "customers": "reused",
        "prepare": "reused",
        "select-k": "reused",
        "cluster": "reused",
        "visualize": "ran",
        "report": "ran",
    }
    assert logged(versioned_project.wide) == expected
    assert statuses(manifest(versioned_project.root, versioned_project.b)) == expected


def test_the_manifest_records_each_stage_key(versioned_project: VersionedProject) -> None:
    a = manifest(versioned_project.root, versioned_project.a)["stages"]
    b = manifest(versioned_project.root, versioned_project.b)["stages"]
    assert {stage for stage in STAGES if a[stage]["key"] != b[stage]["key"]} == FROM_VISUALIZE


def test_reused_results_are_the_same_files(versioned_project: VersionedProject) -> None:
    a = manifest(versioned_project.root, versioned_project.a)["outputs"]
    b = manifest(versioned_project.root, versioned_project.b)["outputs"]
    upstream = [name for name in a if not name.startswith("charts/")]
    assert len(upstream) == 9
    assert {name: b[name] for name in upstream} == {name: a[name] for name in upstream}
    assert a["charts/elbow.png"] != b["charts/elbow.png"]


def test_a_new_version_leaves_the_old_one_untouched(versioned_project: VersionedProject) -> None:
    assert versioned_project.a_after_wide == versioned_project.a_after_first


def test_the_list_of_versions_shows_both(versioned_project: VersionedProject) -> None:
    html = (versioned_project.root / "reports" / "index.html").read_text(encoding="utf-8")
    for version in (versioned_project.a, versioned_project.b):
        assert f'href="{version}/index.html"' in html


def test_other_features_rerun_every_stage_from_prepare(
    versioned_project: VersionedProject, copy_project: Path, write_variant: WriteVariant
) -> None:
    write_variant(copy_project, "other.yaml", {"features": ["spending_score", "annual_income"]})
    result = invoke("run", "--config", "other.yaml")
    assert result.exit_code == 0, result.output
    assert logged(result) == {"customers": "reused"} | dict.fromkeys(FROM_PREPARE, "ran")
    assert version_of(result) not in {versioned_project.a, versioned_project.b}


def test_the_versions_outlive_the_cache(
    versioned_project: VersionedProject, copy_project: Path
) -> None:
    # What `make clean` removes: the stage cache and unfinished builds. Complete versions stay
    # whole, so rerunning their config still computes nothing.
    shutil.rmtree(copy_project / "artifacts" / ".cache")
    shutil.rmtree(copy_project / "artifacts" / ".staging")
    result = invoke("run")
    assert result.exit_code == 0, result.output
    assert logged(result) == dict.fromkeys(STAGES, "reused")
    assert version_of(result) == versioned_project.a


# --- --force -------------------------------------------------------------------------------------


def test_force_reruns_the_stage_even_when_cached(copy_project: Path) -> None:
    result = invoke("cluster", "--force")
    assert result.exit_code == 0, result.output
    assert logged(result) == {
        "customers": "reused",
        "prepare": "reused",
        "select-k": "reused",
        "cluster": "ran",
    }


def test_without_force_the_cached_stage_is_reused(copy_project: Path) -> None:
    result = invoke("cluster")
    assert result.exit_code == 0, result.output
    assert logged(result) == {
        "customers": "reused",
        "prepare": "reused",
        "select-k": "reused",
        "cluster": "reused",
    }


# --- damaged cache entries ----------------------------------------------------------------------


def _change_a_file(entry: Path) -> None:
    with (entry / "files" / "segments.csv").open("ab") as handle:
        handle.write(b"\n")


def _delete_a_file(entry: Path) -> None:
    (entry / "files" / "segments.csv").unlink()


def _truncate_the_hashes(entry: Path) -> None:
    (entry / "hashes.json").write_text("{", encoding="utf-8")


@pytest.mark.parametrize(
    "damage",
    [_change_a_file, _delete_a_file, _truncate_the_hashes],
    ids=["file changed", "file deleted", "hashes unreadable"],
)
def test_a_damaged_cache_entry_is_not_reused(
    versioned_project: VersionedProject,
    copy_project: Path,
    write_variant: WriteVariant,
    damage: Callable[[Path], None],
) -> None:
    key = manifest(copy_project, versioned_project.a)["stages"]["cluster"]["key"]
    damage(copy_project / "artifacts" / ".cache" / "cluster" / key)
    # A new version that needs the cluster stage's cached result (same key) but not its charts.
    write_variant(copy_project, "tall.yaml", {"visualize": {"height": 200}})
    result = invoke("run", "--config", "tall.yaml")
    assert result.exit_code == 0, result.output
    assert logged(result) == {
        "customers": "reused",
        "prepare": "reused",
        "select-k": "reused",
        "cluster": "ran",
        "visualize": "ran",
        "report": "ran",
    }
    # Recomputed, not taken from the damaged entry: the same bytes as the version that made it.
    rebuilt = copy_project / "artifacts" / version_of(result) / "segments.csv"
    original = copy_project / "artifacts" / versioned_project.a / "segments.csv"
    assert rebuilt.read_bytes() == original.read_bytes()


# --- a failed build leaves nothing behind -------------------------------------------------------


@pytest.mark.parametrize(
    "failing", ["segmentation.cluster.segment_customers", "segmentation.report.render_report"]
)
def test_a_failed_build_leaves_no_version_and_keeps_latest(
    versioned_project: VersionedProject,
    copy_project: Path,
    write_variant: WriteVariant,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(failing, fail)
    write_variant(copy_project, "other.yaml", {"cluster": {"n_init": 3}})
    result = invoke("run", "--config", "other.yaml")
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    version = version_of(result)
    assert version not in {versioned_project.a, versioned_project.b}
    assert not (copy_project / "artifacts" / version).exists()
    assert not (copy_project / "reports" / version).exists()
    for folder in ("artifacts", "reports"):
        assert (copy_project / folder / "latest").readlink() == Path(versioned_project.b)
    assert list((copy_project / "artifacts" / ".staging").iterdir()) == []
    assert list((copy_project / "reports" / ".staging").iterdir()) == []
