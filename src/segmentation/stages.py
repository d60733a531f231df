"""What each stage reads, writes and depends on, and how it turns files into calls to its pure core.

Like a DVC stage, each declares exactly the config keys it reads and its upstream stages; the
pipeline hashes those (with the data and the code) into the stage's cache key before running it.
Heavy libraries are imported inside the runners, so a run with nothing to compute stays fast.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation import __version__, artifacts
from segmentation.config import Config, locate
from segmentation.dataset import RawData
from segmentation.errors import ConfigError

Progress = Callable[[str, int], Callable[[int], None]]
"""Given a label and a total, returns a callback that advances by a number of steps."""

PACKAGES = (
    "polars", "pyarrow", "numpy", "scikit-learn", "scipy", "altair", "vl-convert-python",
    "pandera", "pydantic", "kneed", "pooch", "jinja2", "click", "rich",
)  # fmt: skip


@dataclass(frozen=True)
class StageContext:
    config: Config
    config_path: Path
    raw: RawData
    version: str
    folder: Path
    """Where the stage finds its upstream outputs and writes its own."""
    report_folder: Path
    git: dict[str, Any]
    progress: Progress
    log: Callable[[str], None]
    """Detail lines for the user (per-k timings, for one), not part of any output."""

    def path(self, name: str) -> Path:
        return self.folder / name


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[str, ...]
    """Dotted config keys the stage reads."""
    upstream: tuple[str, ...]
    outputs: tuple[str, ...]
    """Files and folders it writes, relative to the version folder (the report's go to reports/)."""
    reads_data: bool
    code: tuple[str, ...]
    """Package modules whose code the stage runs, hashed into its key with what they import.
    Upstream stages' code counts through their keys, so this module (the runners) is named once,
    by prepare."""
    run: Callable[[StageContext], str]

    def param_values(self, config: Config) -> dict[str, Any]:
        resolved = config.resolved()
        values = {}
        for key in self.params:
            value: Any = resolved
            for part in key.split("."):
                value = value[part]
            values[key] = value
        return values


def _prepare(ctx: StageContext) -> str:
    from segmentation import prepare

    config = ctx.config
    prepared = prepare.load_customers(ctx.raw.path, config.prepare.on_invalid)
    columns = prepare.feature_columns(config.features)
    unscaled = prepare.unscaled_matrix(prepared.customers, config.features)
    scaler = prepare.fit_scaler(unscaled, columns, config.scaling)
    frame = prepare.with_features(prepared.customers, scaler, config.features)
    summary = prepare.summarise(prepared, scaler, config.features)
    artifacts.write_parquet(ctx.path(artifacts.PREPARED), frame)
    artifacts.write_csv(ctx.path(artifacts.REJECTS), prepared.rejects)
    artifacts.write_json(ctx.path(artifacts.PREPARE_SUMMARY), summary)
    return f"{summary['rows_valid']} valid rows, {summary['rows_rejected']} rejected"


def _select_k(ctx: StageContext) -> str:
    import polars as pl

    from segmentation import prepare, select_k

    config = ctx.config
    summary = artifacts.read_json(ctx.path(artifacts.PREPARE_SUMMARY))
    try:
        select_k.check_k_range(summary["distinct_points"], config.select_k, config.cluster)
    except ConfigError as exc:
        where = locate(ctx.config_path, exc.key) if exc.key else str(ctx.config_path)
        raise ConfigError(f"{where}: {exc}") from None
    frame = pl.read_parquet(ctx.path(artifacts.PREPARED))
    selection = select_k.evaluate(
        matrix=prepare.feature_matrix(frame),
        unscaled=prepare.unscaled_matrix(frame, config.features),
        select_k=config.select_k,
        cluster=config.cluster,
        progress=ctx.progress,
        log=ctx.log,
    )
    artifacts.write_json(ctx.path(artifacts.K_SELECTION), selection)
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    return f"k={selection['chosen_k']} ({selection['rule']}), silhouette {chosen['silhouette']:.3f}"


def _cluster(ctx: StageContext) -> str:
    import numpy as np
    import polars as pl

    from segmentation import cluster, prepare

    config = ctx.config
    frame = pl.read_parquet(ctx.path(artifacts.PREPARED))
    summary = artifacts.read_json(ctx.path(artifacts.PREPARE_SUMMARY))
    selection = artifacts.read_json(ctx.path(artifacts.K_SELECTION))
    result = cluster.segment_customers(
        customers=frame.select(prepare.COLUMNS),
        matrix=prepare.feature_matrix(frame),
        unscaled=prepare.unscaled_matrix(frame, config.features),
        scaler=prepare.Scaler.from_dict(summary["scaler"]),
        features=config.features,
        k=selection["chosen_k"],
        config=config.cluster,
        population=summary["population"],
        initial_centers=np.asarray(selection["centers"]),
        stability=selection["stability"]["per_segment_jaccard"],
        exact_silhouette_up_to=config.select_k.sample_size,
    )
    artifacts.write_csv(ctx.path(artifacts.SEGMENTS), result.segments)
    artifacts.write_parquet(ctx.path(artifacts.ASSIGNMENTS_PARQUET), result.assignments)
    artifacts.write_csv(ctx.path(artifacts.ASSIGNMENTS_CSV), result.assignments)
    artifacts.write_json(ctx.path(artifacts.MODEL), result.model)
    return ", ".join(
        f"{row['name']} ({row['size']})" for row in result.segments.iter_rows(named=True)
    )


def chart_builders(ctx: StageContext) -> Iterator[tuple[str, str, Any]]:
    """Each chart of the run as (name, title, Altair chart), built only when asked for, so that
    the images of one are drawn while the next is built."""
    import polars as pl

    from segmentation import prepare, visualize

    config = ctx.config
    size, seed = config.visualize, config.cluster.seed
    frame = pl.read_parquet(ctx.path(artifacts.PREPARED))
    summary = artifacts.read_json(ctx.path(artifacts.PREPARE_SUMMARY))
    selection = artifacts.read_json(ctx.path(artifacts.K_SELECTION))
    segments = pl.read_csv(ctx.path(artifacts.SEGMENTS))
    assignments = pl.read_parquet(ctx.path(artifacts.ASSIGNMENTS_PARQUET))
    model = artifacts.read_json(ctx.path(artifacts.MODEL))
    customers = frame.select(prepare.COLUMNS)
    matrix = prepare.feature_matrix(frame)
    yield "elbow", "Elbow", visualize.elbow_chart(selection, size)
    yield "criteria", "Criteria against k", visualize.criteria_chart(selection, size)
    yield "gap", "Gap statistic", visualize.gap_chart(selection, size)
    yield "stability", "Bootstrap stability", visualize.stability_chart(selection, size)
    yield "jaccard", "Stability of each segment", visualize.jaccard_chart(segments, size)
    yield (
        "silhouette",
        "Silhouette per customer",
        visualize.silhouette_chart(assignments, segments, size),
    )
    yield (
        "segments",
        "Segments",
        visualize.scatter_chart(customers, assignments, segments, model, matrix, size, seed),
    )
    if len(model["scaler"]["columns"]) > 2 and sum(f != "gender" for f in config.features) >= 2:
        pairwise = visualize.pairwise_chart(
            customers, assignments, segments, list(config.features), size, seed
        )
        yield "pairwise", "Feature pairs", pairwise
    profiles = visualize.profile_chart(
        segments, summary["population"], summary["female_share"], size
    )
    yield "profiles", "Segment profiles", profiles
    yield "sizes", "Segment sizes", visualize.sizes_chart(segments, size)


def _visualize(ctx: StageContext) -> str:
    from segmentation import visualize

    charts = visualize.render_all(chart_builders(ctx), ctx.config.visualize.png_scale)
    folder = ctx.path(artifacts.CHARTS)
    for chart in charts:
        artifacts.write_json(folder / f"{chart.name}.vl.json", chart.spec)
        artifacts.write_bytes(folder / f"{chart.name}.png", chart.png)
        artifacts.write_text(folder / f"{chart.name}.svg", chart.svg)
    index = [
        {
            "name": c.name,
            "title": c.title,
            "section": visualize.CHART_GUIDE[c.name][0],
            "description": visualize.CHART_GUIDE[c.name][1],
        }
        for c in charts
    ]
    artifacts.write_json(artifacts.chart_index(ctx.folder), index)
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
        "code": artifacts.code_fingerprint(),
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
    }


# Bundled by vl-convert with Vega, Vega-Lite and Vega-Embed, then made global for the page's script.
# Bundling takes about a second and depends only on vl-convert's version, so it is kept per user.
VEGA_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"


def _report(ctx: StageContext) -> str:
    import polars as pl
    import vl_convert

    from segmentation import report

    charts_folder = ctx.path(artifacts.CHARTS)
    charts = [
        report.ReportChart(
            name=entry["name"],
            title=entry["title"],
            section=entry["section"],
            description=entry["description"],
            spec=artifacts.read_json(charts_folder / f"{entry['name']}.vl.json"),
        )
        for entry in artifacts.read_json(artifacts.chart_index(ctx.folder))
    ]
    inputs = report.ReportInputs(
        title=ctx.config.report.title,
        version=ctx.version,
        config=ctx.config.resolved(),
        data_path=ctx.config.data.path,
        data_sha256=ctx.raw.sha256,
        data_pinned=ctx.raw.pinned,
        summary=artifacts.read_json(ctx.path(artifacts.PREPARE_SUMMARY)),
        rejects=pl.read_csv(
            ctx.path(artifacts.REJECTS), schema_overrides={"customer_id": pl.String}
        ),
        selection=artifacts.read_json(ctx.path(artifacts.K_SELECTION)),
        segments=pl.read_csv(ctx.path(artifacts.SEGMENTS)),
        charts=charts,
        environment=environment(),
        git=ctx.git,
        javascript=artifacts.memoized_text(
            f"vega-bundle-{importlib.metadata.version('vl-convert-python')}-"
            f"{artifacts.sha256_text(VEGA_GLOBALS)[:12]}.js",
            lambda: vl_convert.javascript_bundle(VEGA_GLOBALS),
        ),
    )
    artifacts.write_text(ctx.report_folder / artifacts.REPORT, report.render_report(inputs))
    # The chart files go beside the report, for slides and for readers without JavaScript.
    for chart in charts:
        for suffix in (".png", ".svg", ".vl.json"):
            name = f"{chart.name}{suffix}"
            artifacts.link_or_copy(
                charts_folder / name, ctx.report_folder / artifacts.CHARTS / name
            )
    return f"report written with {len(charts)} interactive charts"


# The config keys of the K-Means fits select-k makes; the final fit also reads cluster.algorithm.
SELECT_K_CLUSTER_PARAMS = ("cluster.k", "cluster.n_init", "cluster.max_iter", "cluster.seed")
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="prepare",
            params=("features", "scaling", "prepare.on_invalid"),
            upstream=(),
            outputs=(artifacts.PREPARED, artifacts.PREPARE_SUMMARY, artifacts.REJECTS),
            reads_data=True,
            code=("segmentation.stages", "segmentation.prepare", "segmentation.dataset"),
            run=_prepare,
        ),
        Stage(
            name="select-k",
            params=(
                "features",
                "select_k.k_min",
                "select_k.k_max",
                "select_k.rule",
                "select_k.gap_references",
                "select_k.bootstrap",
                "select_k.sample_size",
                *SELECT_K_CLUSTER_PARAMS,
            ),
            upstream=("prepare",),
            outputs=(artifacts.K_SELECTION,),
            reads_data=False,
            code=("segmentation.select_k",),
            run=_select_k,
        ),
        Stage(
            name="cluster",
            params=(
                "features",
                "select_k.sample_size",
                *SELECT_K_CLUSTER_PARAMS,
                "cluster.algorithm",
            ),
            upstream=("prepare", "select-k"),
            outputs=(
                artifacts.SEGMENTS,
                artifacts.ASSIGNMENTS_PARQUET,
                artifacts.ASSIGNMENTS_CSV,
                artifacts.MODEL,
            ),
            reads_data=False,
            code=("segmentation.cluster",),
            run=_cluster,
        ),
        Stage(
            name="visualize",
            params=(
                "features",
                "visualize.width",
                "visualize.height",
                "visualize.png_scale",
                "visualize.max_points",
                "cluster.seed",
            ),
            upstream=("prepare", "select-k", "cluster"),
            outputs=(artifacts.CHARTS,),
            reads_data=False,
            code=("segmentation.visualize", "segmentation.images"),
            run=_visualize,
        ),
        # The report shows the whole config and the data's identity, so it depends on all of it.
        Stage(
            name="report",
            params=(
                "data",
                "features",
                "scaling",
                "prepare",
                "select_k",
                "cluster",
                "visualize",
                "report",
            ),
            upstream=("prepare", "select-k", "cluster", "visualize"),
            outputs=(),
            reads_data=True,
            code=("segmentation.report",),
            run=_report,
        ),
    )
}
