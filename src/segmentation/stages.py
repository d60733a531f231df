"""What each stage reads, writes and depends on, and how it turns files into calls to its pure core.

Like a DVC stage, each declares exactly the config keys it reads and its upstream stages; the
pipeline hashes those (with the data and the code) into the stage's cache key before running it.
Heavy libraries are imported inside the runners, so a run with nothing to compute stays fast.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation import __version__, artifacts
from segmentation.catalog import CHART_SAMPLE, CUSTOMERS, CUSTOMERS_SUMMARY, PROFILES
from segmentation.config import Config
from segmentation.context import StageContext, stage_vocabulary, table_schema
from segmentation.errors import ConfigError, DataError

PACKAGES = (
    "polars", "pyarrow", "numpy", "scikit-learn", "scipy", "altair", "vl-convert-python",
    "pandera", "pydantic", "kneed", "pooch", "jinja2", "click", "rich",
)  # fmt: skip


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
            if key.startswith("spark.") and config.engine != "spark":
                continue  # the Spark settings mean nothing to the Polars engine
            value: Any = resolved
            for part in key.split("."):
                value = value[part]
            values[key] = value
        return values


def _customers(ctx: StageContext) -> str:
    config = ctx.config
    if config.data.kind == "customers" or config.transactions is None:
        return "a customer table: nothing to build"
    if config.engine == "spark":
        return str(_on_spark(ctx, "customers"))
    from segmentation import transactions

    try:
        built = transactions.build_customers(
            ctx.raw.files,
            config.transactions,
            whitespace=config.data.delimiter == "whitespace",
            as_of=config.data.as_of,
            source=config.data.path,
        )
    except ConfigError as exc:
        raise ctx.located(exc) from None
    ctx.catalog.save("customers", built.customers)
    ctx.catalog.save("customers_summary", built.summary)
    summary = built.summary
    left_out = summary["rows_without_customer"]
    if left_out:
        ctx.log(f"{left_out} purchase row(s) without a customer id left out")
    return (
        f"{summary['rows']:,} purchases -> {summary['customers']:,} customers "
        f"(as of {summary['as_of']})"
    )


def _on_spark(ctx: StageContext, stage: str) -> Any:  # a summary line, or select-k's sample
    """A stage's work on Spark (`segmentation.spark.runners`)."""
    from segmentation.spark import runners

    return runners.run(ctx, stage)


def _prepare(ctx: StageContext) -> str:
    from segmentation import prepare

    config = ctx.config
    if config.engine == "spark":
        return str(_on_spark(ctx, "prepare"))
    built = config.data.kind == "transactions"
    try:
        prepared = prepare.load_customers(
            ctx.catalog.path("customers") if built else ctx.raw.path,
            config.table,
            config.prepare.on_invalid,
            None if built else config.data.as_of,
        )
    except ConfigError as exc:
        raise ctx.located(exc) from None
    except DataError as exc:
        if not built:
            raise
        # The built table is in the unfinished version's folder: name the log it was built from.
        table = str(ctx.catalog.path("customers"))
        named = f"{config.data.path} (the customer table built from it)"
        raise DataError(str(exc).replace(table, named, 1)) from None
    unscaled = prepare.unscaled_matrix(prepared.customers, prepared.schema)
    scaler = prepare.fit_scaler(unscaled, prepared.schema, config.scaling)
    frame = prepare.with_features(prepared.customers, scaler, unscaled)
    summary = prepare.summarise(prepared, scaler, unscaled)
    catalog = ctx.catalog
    catalog.save("prepared", frame)
    catalog.save("rejects", prepared.rejects)
    catalog.save("prepare_summary", summary)
    if prepared.ignored_columns:
        ctx.log(f"columns not declared, left out: {', '.join(prepared.ignored_columns)}")
    for name, counts in prepared.missing.items():
        ctx.log(f"{name}: {counts['missing']} missing, policy {counts['policy']}")
    return f"{summary['rows_valid']} valid rows, {summary['rows_rejected']} rejected"


def _select_k(ctx: StageContext) -> str:
    from segmentation import prepare, prepared, select_k

    config = ctx.config
    summary = ctx.catalog.load("prepare_summary")
    try:
        select_k.check_k_range(summary["distinct_points"], config.select_k, config.cluster)
    except ConfigError as exc:
        raise ctx.located(exc) from None
    drawn_from = None
    if config.engine == "spark":
        # Only the sample select-k works on is collected to the driver.
        frame = _on_spark(ctx, "select-k")
        drawn_from = summary["rows_valid"]
    else:
        frame = ctx.catalog.load("prepared")
    try:
        selection = select_k.evaluate(
            matrix=prepared.feature_matrix(frame),
            unscaled=prepare.unscaled_matrix(frame, table_schema(ctx)),
            select_k=config.select_k,
            cluster=config.cluster,
            progress=ctx.progress,
            log=ctx.log,
            drawn_from=drawn_from,
        )
    except ConfigError as exc:
        raise ctx.located(exc) from None
    ctx.catalog.save("k_selection", selection)
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    return f"k={selection['chosen_k']} ({selection['rule']}), silhouette {chosen['silhouette']:.3f}"


def _cluster(ctx: StageContext) -> str:
    import numpy as np

    from segmentation import cluster, prepare, prepared
    from segmentation.schema import rfm_scores

    config = ctx.config
    if config.engine == "spark":
        return str(_on_spark(ctx, "cluster"))
    catalog = ctx.catalog
    frame = catalog.load("prepared")
    summary = catalog.load("prepare_summary")
    selection = catalog.load("k_selection")
    schema = table_schema(ctx)
    vocabulary = stage_vocabulary(ctx, schema)
    result = cluster.segment_customers(
        customers=prepared.customer_columns(frame),
        matrix=prepared.feature_matrix(frame),
        unscaled=prepare.unscaled_matrix(frame, schema),
        scaler=prepare.Scaler.from_dict(summary["scaler"]),
        schema=schema,
        k=selection["chosen_k"],
        config=config.cluster,
        population=summary["population"],
        category_shares=summary["category_shares"],
        vocabulary=vocabulary,
        initial_centers=np.asarray(selection["centers"]),
        stability=selection["stability"]["per_segment_jaccard"],
        exact_silhouette_up_to=config.select_k.sample_size,
        scores=rfm_scores() if config.data.kind == "transactions" else None,
    )
    catalog.save("segments", result.segments)
    catalog.save("profiles", result.profiles)
    catalog.save("assignments", result.assignments)
    catalog.save("assignments_csv", result.assignments)
    catalog.save("model", result.model.to_json())
    return ", ".join(
        f"{row['name']} ({row['size']})" for row in result.segments.iter_rows(named=True)
    )


def chart_builders(ctx: StageContext) -> Iterator[tuple[str, str, Any]]:
    """Each chart of the run as (name, title, Vega-Lite spec), built only when asked for, so that
    the images of one are drawn while the next is built."""
    from segmentation import prepared, visualize

    config = ctx.config
    catalog = ctx.catalog
    size, seed = config.visualize, config.cluster.seed
    summary = catalog.load("prepare_summary")
    selection = catalog.load("k_selection")
    segments = catalog.load("segments")
    profiles = catalog.load("profiles")
    if config.engine == "spark":
        # The cluster stage kept a bounded sample of customers with their segments for the charts.
        frame = catalog.load("chart_sample")
        assignments = frame
    else:
        frame = catalog.load("prepared")
        assignments = catalog.load("assignments")
    model = catalog.load("model")
    schema = table_schema(ctx)
    customers = prepared.customer_columns(frame)
    features = prepared.feature_columns(frame)
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
        visualize.scatter_chart(
            customers, assignments, segments, model, features, schema, size, seed
        ),
    )
    numeric = visualize.pairwise_columns(segments, summary["population"], schema)
    if len(model["scaler"]["columns"]) > 2 and len(numeric) >= 2:
        pairwise = visualize.pairwise_chart(
            customers, assignments, segments, numeric, schema, size, seed
        )
        yield "pairwise", "Feature pairs", pairwise
    profile_chart = visualize.profile_chart(segments, summary["population"], schema, size)
    yield "profiles", "Segment profiles", profile_chart
    if profiles.height:
        yield (
            "categories",
            "Categories",
            visualize.categories_chart(profiles, segments, schema, size),
        )
    yield "sizes", "Segment sizes", visualize.sizes_chart(segments, size)
    if config.data.kind == "transactions":
        yield "rfm_grid", "RFM grid", visualize.rfm_grid_chart(segments, _grid(ctx), schema, size)


def _grid(ctx: StageContext) -> Any:
    """The naming vocabulary's score grid (a `vocabulary.Grid`), or None."""
    from segmentation.vocabulary import known_columns, load_vocabulary

    config = ctx.config
    if config.naming is None:
        return None
    known = known_columns(table_schema(ctx).columns, config.data.kind == "transactions")
    return load_vocabulary(config.naming, ctx.root, known).grid


def _visualize(ctx: StageContext) -> str:
    from segmentation import visualize

    settings = ctx.config.visualize
    charts = visualize.render_all(chart_builders(ctx), settings.png_scale, settings.images)
    folder = ctx.path(artifacts.CHARTS)
    for chart in charts:
        artifacts.write_json(folder / f"{chart.name}.vl.json", chart.spec, compact=True)
        if chart.png is not None and chart.svg is not None:
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
    ctx.catalog.save("chart_index", index)
    formats = "Vega-Lite JSON, PNG, SVG" if settings.images else "Vega-Lite JSON"
    return f"{len(charts)} charts ({formats})"


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


@functools.cache
def environment() -> dict[str, Any]:
    """Python, platform, package versions and code fingerprint: the same for every stage of a
    process (the report shows it and the manifest records it)."""
    import importlib.metadata  # a no-op run does not need it

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
    import importlib.metadata

    import vl_convert

    from segmentation import report

    catalog = ctx.catalog
    charts_folder = ctx.path(artifacts.CHARTS)
    charts = [
        report.ReportChart(
            name=entry["name"],
            title=entry["title"],
            section=entry["section"],
            description=entry["description"],
            spec=artifacts.read_json(charts_folder / f"{entry['name']}.vl.json"),
        )
        for entry in catalog.load("chart_index")
    ]
    inputs = report.ReportInputs(
        title=ctx.config.report.title,
        version=ctx.version,
        config=ctx.config.resolved(),
        data_path=ctx.config.data.path,
        data_sha256=ctx.raw.sha256,
        data_pinned=ctx.raw.pinned,
        summary=catalog.load("prepare_summary"),
        schema=table_schema(ctx),
        rejects=catalog.load("rejects"),
        selection=catalog.load("k_selection"),
        segments=catalog.load("segments"),
        profiles=catalog.load("profiles"),
        log=catalog.load("customers_summary") if ctx.config.data.kind == "transactions" else None,
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
    suffixes = (".png", ".svg", ".vl.json") if ctx.config.visualize.images else (".vl.json",)
    for chart in charts:
        for suffix in suffixes:
            name = f"{chart.name}{suffix}"
            artifacts.link_or_copy(
                charts_folder / name, ctx.report_folder / artifacts.CHARTS / name
            )
    return f"report written with {len(charts)} interactive charts"


# The config keys of the K-Means fits select-k makes; the final fit also reads cluster.algorithm.
SELECT_K_CLUSTER_PARAMS = ("cluster.k", "cluster.n_init", "cluster.max_iter", "cluster.seed")
# The engine and its fixed partition count change how results are computed (not where: the
# master and the Spark settings are left out of the keys).
ENGINE_PARAMS = ("engine", "spark.partitions")
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        # A purchase log is aggregated into a customer table first; a customer table passes through.
        Stage(
            name="customers",
            params=(
                "data.kind",
                "data.delimiter",
                "data.as_of",
                "transactions",
                *ENGINE_PARAMS,
            ),
            upstream=(),
            outputs=(CUSTOMERS, CUSTOMERS_SUMMARY),
            reads_data=True,
            code=(
                "segmentation.stages",
                "segmentation.transactions",
                "segmentation.dataset",
                "segmentation.spark.runners",
                "segmentation.spark.transactions",
            ),
            run=_customers,
        ),
        Stage(
            name="prepare",
            params=(
                "data.as_of",
                "columns",
                "features",
                "scaling",
                "prepare.on_invalid",
                *ENGINE_PARAMS,
            ),
            upstream=("customers",),
            outputs=(artifacts.PREPARED, artifacts.PREPARE_SUMMARY, artifacts.REJECTS),
            reads_data=True,
            code=(
                "segmentation.stages",
                "segmentation.prepare",
                "segmentation.dataset",
                "segmentation.spark.runners",
                "segmentation.spark.prepare",
                "segmentation.spark.io",
            ),
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
                "select_k.bootstrap_size",
                "select_k.sample_size",
                "select_k.min_segment_share",
                *SELECT_K_CLUSTER_PARAMS,
            ),
            upstream=("prepare",),
            outputs=(artifacts.K_SELECTION,),
            reads_data=False,
            code=("segmentation.select_k", "segmentation.spark.runners"),
            run=_select_k,
        ),
        Stage(
            name="cluster",
            params=(
                "features",
                "select_k.sample_size",
                *SELECT_K_CLUSTER_PARAMS,
                "cluster.algorithm",
                "naming",
                *ENGINE_PARAMS,
            ),
            upstream=("prepare", "select-k"),
            outputs=(
                artifacts.SEGMENTS,
                PROFILES,
                artifacts.ASSIGNMENTS_PARQUET,
                artifacts.ASSIGNMENTS_CSV,
                artifacts.MODEL,
                CHART_SAMPLE,
            ),
            reads_data=False,
            code=(
                "segmentation.cluster",
                "segmentation.spark.runners",
                "segmentation.spark.cluster",
            ),
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
                "visualize.images",
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
                "columns",
                "features",
                "naming",
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
