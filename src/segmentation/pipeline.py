"""Wiring: each stage reads its inputs from the version folder, calls its pure core and writes outputs."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from segmentation import __version__, artifacts, cluster, prepare, report, select_k, visualize
from segmentation.artifacts import Workspace
from segmentation.config import Config, load_config, locate
from segmentation.dataset import RawData, ensure_raw_data
from segmentation.errors import ConfigError

STAGES = ("prepare", "select-k", "cluster", "visualize", "report")
STAGE_OUTPUTS = {
    "prepare": (artifacts.PREPARED, artifacts.PREPARE_SUMMARY, artifacts.REJECTS),
    "select-k": (artifacts.K_SELECTION,),
    "cluster": (
        artifacts.SEGMENTS,
        artifacts.ASSIGNMENTS_PARQUET,
        artifacts.ASSIGNMENTS_CSV,
        artifacts.MODEL,
    ),
    "visualize": (f"{artifacts.CHARTS}/index.json",),
}
PACKAGES = (
    "polars", "pyarrow", "numpy", "scikit-learn", "scipy", "altair", "vl-convert-python",
    "pandera", "pydantic", "kneed", "pooch", "jinja2", "click", "rich",
)  # fmt: skip

Progress = Callable[[str, int], Callable[[int], None]]
"""Given a label and a total, returns a callback to advance by one step."""


@dataclass
class Run:
    """One run of the pipeline on one config: where it reads and writes."""

    config: Config
    config_path: Path
    workspace: Workspace
    raw: RawData
    version: str
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.workspace.version_dir(self.version)

    def path(self, name: str) -> Path:
        return self.folder / name


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    seconds: float
    summary: str


def open_run(config_path: Path, workspace: Workspace) -> Run:
    """Validate the config, make sure the data is there and checked, and derive the version id."""
    config = load_config(config_path)
    raw = ensure_raw_data(config.data, workspace.resolve(config.data.path))
    version = artifacts.version_id(config.resolved(), raw.sha256)
    return Run(
        config=config, config_path=config_path, workspace=workspace, raw=raw, version=version
    )


def stage_is_done(run: Run, stage: str) -> bool:
    if stage == "report":
        return (run.workspace.report_dir(run.version) / artifacts.REPORT).exists()
    return all(run.path(name).exists() for name in STAGE_OUTPUTS[stage])


def _prepare(run: Run, progress: Progress) -> str:
    config = run.config
    text = prepare.read_customers_csv(run.raw.path)
    prepared = prepare.validate_customers(text, run.raw.path, config.prepare.on_invalid)
    columns = prepare.feature_columns(config.features)
    unscaled = prepare.unscaled_matrix(prepared.customers, config.features)
    scaler = prepare.fit_scaler(unscaled, columns, config.scaling)
    frame = prepare.with_features(prepared.customers, scaler, config.features)
    summary = prepare.summarise(prepared, scaler, config.features)
    artifacts.write_parquet(run.path(artifacts.PREPARED), frame)
    artifacts.write_csv(run.path(artifacts.REJECTS), prepared.rejects)
    artifacts.write_json(run.path(artifacts.PREPARE_SUMMARY), summary)
    return f"{summary['rows_valid']} valid rows, {summary['rows_rejected']} rejected"


def _select_k(run: Run, progress: Progress) -> str:
    config = run.config
    summary = artifacts.read_json(run.path(artifacts.PREPARE_SUMMARY))
    try:
        select_k.check_k_range(summary["distinct_points"], config.select_k, config.cluster)
    except ConfigError as exc:
        where = locate(run.config_path, exc.key) if exc.key else str(run.config_path)
        raise ConfigError(f"{where}: {exc}") from None
    frame = pl.read_parquet(run.path(artifacts.PREPARED))
    matrix = prepare.feature_matrix(frame)
    ks = select_k.sweep_range(config.select_k, config.cluster)
    advance = progress("k sweep", len(ks))
    candidates = select_k.sweep(matrix, ks, config.cluster, on_k=lambda _k: advance(1))
    selection = select_k.choose_k(candidates, config.select_k.rule, config.cluster.k)
    artifacts.write_json(run.path(artifacts.K_SELECTION), selection)
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    return f"k={selection['chosen_k']} ({selection['rule']}), silhouette {chosen['silhouette']:.3f}"


def _cluster(run: Run, progress: Progress) -> str:
    config = run.config
    frame = pl.read_parquet(run.path(artifacts.PREPARED))
    summary = artifacts.read_json(run.path(artifacts.PREPARE_SUMMARY))
    selection = artifacts.read_json(run.path(artifacts.K_SELECTION))
    scaler = prepare.Scaler.from_dict(summary["scaler"])
    result = cluster.segment_customers(
        customers=frame.select(prepare.COLUMNS),
        matrix=prepare.feature_matrix(frame),
        unscaled=prepare.unscaled_matrix(frame, config.features),
        scaler=scaler,
        features=config.features,
        k=selection["chosen_k"],
        config=config.cluster,
        population=summary["population"],
    )
    artifacts.write_csv(run.path(artifacts.SEGMENTS), result.segments)
    artifacts.write_parquet(run.path(artifacts.ASSIGNMENTS_PARQUET), result.assignments)
    artifacts.write_csv(run.path(artifacts.ASSIGNMENTS_CSV), result.assignments)
    artifacts.write_json(run.path(artifacts.MODEL), result.model)
    return ", ".join(
        f"{row['name']} ({row['size']})" for row in result.segments.iter_rows(named=True)
    )


def build_charts(run: Run) -> list[visualize.RenderedChart]:
    config = run.config
    size, seed = config.visualize, config.cluster.seed
    frame = pl.read_parquet(run.path(artifacts.PREPARED))
    summary = artifacts.read_json(run.path(artifacts.PREPARE_SUMMARY))
    selection = artifacts.read_json(run.path(artifacts.K_SELECTION))
    segments = pl.read_csv(run.path(artifacts.SEGMENTS))
    assignments = pl.read_parquet(run.path(artifacts.ASSIGNMENTS_PARQUET))
    model = artifacts.read_json(run.path(artifacts.MODEL))
    customers = frame.select(prepare.COLUMNS)
    charts: list[tuple[str, str, Any]] = [
        ("elbow", "Elbow", visualize.elbow_chart(selection, size)),
        ("criteria", "Criteria against k", visualize.criteria_chart(selection, size)),
        (
            "silhouette",
            "Silhouette per customer",
            visualize.silhouette_chart(assignments, segments, size, seed),
        ),
        (
            "segments",
            "Segments",
            visualize.scatter_chart(
                customers, assignments, segments, model, prepare.feature_matrix(frame), size, seed
            ),
        ),
    ]
    if len(model["scaler"]["columns"]) > 2 and sum(f != "gender" for f in config.features) >= 2:
        charts.append(
            (
                "pairwise",
                "Feature pairs",
                visualize.pairwise_chart(
                    customers, assignments, segments, list(config.features), size, seed
                ),
            )
        )
    charts += [
        (
            "profiles",
            "Segment profiles",
            visualize.profile_chart(segments, summary["population"], summary["female_share"], size),
        ),
        ("sizes", "Segment sizes", visualize.sizes_chart(segments, size)),
    ]
    return [visualize.render(name, title, chart, size.png_scale) for name, title, chart in charts]


def _visualize(run: Run, progress: Progress) -> str:
    charts = build_charts(run)
    folder = run.path(artifacts.CHARTS)
    for chart in charts:
        artifacts.write_json(folder / f"{chart.name}.vl.json", chart.spec)
        artifacts.write_bytes(folder / f"{chart.name}.png", chart.png)
        artifacts.write_text(folder / f"{chart.name}.svg", chart.svg)
    artifacts.write_json(
        folder / "index.json", [{"name": c.name, "title": c.title} for c in charts]
    )
    return f"{len(charts)} charts (Vega-Lite JSON, PNG, SVG)"


def git_state(root: Path) -> dict[str, Any]:
    """The commit of the code that ran, and whether the work tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip() != ""  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "segmentation": __version__,
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
    }


def _report(run: Run, progress: Progress) -> str:
    charts = artifacts.read_json(run.path(artifacts.CHARTS) / "index.json")
    context = report.ReportInputs(
        title=run.config.report.title,
        version=run.version,
        config=run.config.resolved(),
        config_path=str(run.config_path),
        data_path=run.config.data.path,
        data_sha256=run.raw.sha256,
        data_pinned=run.raw.pinned,
        summary=artifacts.read_json(run.path(artifacts.PREPARE_SUMMARY)),
        rejects=pl.read_csv(
            run.path(artifacts.REJECTS), schema_overrides={"customer_id": pl.String}
        ),
        selection=artifacts.read_json(run.path(artifacts.K_SELECTION)),
        segments=pl.read_csv(run.path(artifacts.SEGMENTS)),
        charts=[
            (
                c["title"],
                (run.path(artifacts.CHARTS) / f"{c['name']}.svg").read_text(encoding="utf-8"),
            )
            for c in charts
        ],
        environment=environment(),
        git=git_state(run.workspace.root),
    )
    target = run.workspace.report_dir(run.version) / artifacts.REPORT
    artifacts.write_text(target, report.render_report(context))
    return f"reports/{run.version}/{artifacts.REPORT}"


STAGE_FUNCTIONS: dict[str, Callable[[Run, Progress], str]] = {
    "prepare": _prepare,
    "select-k": _select_k,
    "cluster": _cluster,
    "visualize": _visualize,
    "report": _report,
}


def write_manifest(run: Run) -> dict[str, Any]:
    """Record the version: every output's hash, the inputs' hashes, config, environment, timings."""
    path = run.path(artifacts.MANIFEST)
    previous = artifacts.read_json(path) if path.exists() else {}
    stages = {**previous.get("stages", {}), **run.timings}
    report_path = run.workspace.report_dir(run.version) / artifacts.REPORT
    manifest = {
        "version": run.version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "data": {
                "path": run.config.data.path,
                "sha256": run.raw.sha256,
                "pinned": run.raw.pinned,
            },
            "config": {
                "path": str(run.config_path),
                "sha256": artifacts.sha256_file(run.config_path),
            },
        },
        "config": run.config.resolved(),
        "seed": run.config.cluster.seed,
        "environment": environment(),
        "git": git_state(run.workspace.root),
        "stages": stages,
        "outputs": artifacts.output_hashes(run.folder),
        "report": {
            "path": report_path.relative_to(run.workspace.root).as_posix(),
            "sha256": artifacts.sha256_file(report_path),
        }
        if report_path.exists()
        else None,
    }
    artifacts.write_json(path, manifest)
    return manifest


def publish(run: Run) -> Path:
    """Point `latest` at this version and rewrite the list of versions."""
    artifacts.point_latest(run.workspace.artifacts, run.version)
    run.workspace.reports.mkdir(parents=True, exist_ok=True)
    artifacts.point_latest(run.workspace.reports, run.version)
    index = run.workspace.reports / "index.html"
    artifacts.write_text(
        index, report.render_index(list_versions(run.workspace), latest=run.version)
    )
    return index


def list_versions(workspace: Workspace) -> list[dict[str, Any]]:
    """Every complete version (one with a manifest and a report), newest first."""
    versions = []
    folder = workspace.artifacts
    for manifest_path in sorted(folder.glob(f"*/{artifacts.MANIFEST}")) if folder.exists() else []:
        version_dir = manifest_path.parent
        report_path = workspace.report_dir(version_dir.name) / artifacts.REPORT
        if version_dir.is_symlink() or not report_path.exists():
            continue
        manifest = artifacts.read_json(manifest_path)
        selection = artifacts.read_json(version_dir / artifacts.K_SELECTION)
        segments = pl.read_csv(version_dir / artifacts.SEGMENTS)
        chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
        versions.append(
            {
                "version": manifest["version"],
                "created": manifest["created"],
                "features": manifest["config"]["features"],
                "scaling": manifest["config"]["scaling"],
                "rule": selection["rule"],
                "chosen_k": selection["chosen_k"],
                "silhouette": chosen["silhouette"],
                "calinski_harabasz": chosen["calinski_harabasz"],
                "davies_bouldin": chosen["davies_bouldin"],
                "segments": segments["name"].to_list(),
                "report": f"{manifest['version']}/{artifacts.REPORT}",
            }
        )
    return sorted(versions, key=lambda v: (v["created"], v["version"]), reverse=True)


def execute(
    run: Run,
    stages: tuple[str, ...],
    progress: Progress,
    on_stage: Callable[[StageOutcome], None],
) -> Path | None:
    """Run the given stages in order, plus any upstream stage whose outputs are missing.

    Returns the report's path when the report stage ran.
    """
    last = max(STAGES.index(stage) for stage in stages)
    for stage in STAGES[: last + 1]:
        if stage not in stages and stage_is_done(run, stage):
            continue
        start = time.perf_counter()
        summary = STAGE_FUNCTIONS[stage](run, progress)
        seconds = time.perf_counter() - start
        run.timings[stage] = {"status": "ran", "seconds": round(seconds, 3)}
        on_stage(StageOutcome(stage=stage, seconds=seconds, summary=summary))
    write_manifest(run)
    if "report" in stages or STAGES[last] == "report":
        publish(run)
        return run.workspace.report_dir(run.version) / artifacts.REPORT
    return None
