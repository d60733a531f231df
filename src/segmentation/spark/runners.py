"""The Spark engine's side of each stage (`engine: spark`): what it reads from the version folder,
the Spark work, and what it writes back. `segmentation.stages` hands stages here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segmentation.artifacts import Workspace
from segmentation.context import StageContext, stage_vocabulary, table_schema
from segmentation.errors import ConfigError, EngineError, SegmentationError
from segmentation.schema import ID
from segmentation.spark.session import first_line, spark_session

ASSIGNMENTS_CSV_UP_TO = 1_000_000
"""On Spark, assignments.csv is written beside the Parquet parts up to this many customers."""


def run(ctx: StageContext, stage: str) -> Any:
    """Run a stage's Spark work; a failed job is one line naming the cluster, not a JVM trace."""
    work: dict[str, Callable[[StageContext, Any], Any]] = {
        "customers": _customers,
        "prepare": _prepare,
        "select-k": _select_k_sample,
        "cluster": _cluster,
    }
    driver_log = Workspace(ctx.root).spark_log
    spark = spark_session(ctx.config.spark, driver_log)
    try:
        return work[stage](ctx, spark)
    except SegmentationError:
        raise
    except Exception as exc:  # Py4J and PySpark report job failures with many types
        raise EngineError(
            f"spark.master {ctx.config.spark.master}: the Spark job failed ({first_line(exc)}); "
            f"see {driver_log} and the executors' logs, then run again"
        ) from None


def _customers(ctx: StageContext, spark: Any) -> str:
    from segmentation.spark import io
    from segmentation.spark import transactions as spark_transactions

    config = ctx.config
    assert config.transactions is not None
    try:
        customers, summary = spark_transactions.build_customers(
            spark,
            io.data_uris(ctx.raw),
            config.transactions,
            whitespace=config.data.delimiter == "whitespace",
            as_of=config.data.as_of,
            source=config.data.path,
        )
    except ConfigError as exc:
        raise ctx.located(exc) from None
    io.write_parquet_parts(
        # Hashed by id (no sampling): the same log gives the same parts in every run.
        customers.repartition(config.spark.partitions, ID).sortWithinPartitions(ID),
        ctx.catalog.path("customers"),
    )
    ctx.catalog.save("customers_summary", summary)
    return (
        f"{summary['rows']:,} purchases -> {summary['customers']:,} customers "
        f"(as of {summary['as_of']}, on Spark)"
    )


def _prepare(ctx: StageContext, spark: Any) -> str:
    from segmentation.spark import io
    from segmentation.spark import prepare as spark_prepare

    config = ctx.config
    built = config.data.kind == "transactions"
    # A purchase log's customer table was built by the customers stage, as Parquet parts.
    files = (
        io.files_as_uris(sorted(ctx.catalog.path("customers").glob("*.parquet")))
        if built
        else io.data_uris(ctx.raw)
    )
    try:
        prepared = spark_prepare.prepare_customers(
            spark,
            files,
            config.table,
            config.prepare.on_invalid,
            None if built else config.data.as_of,
            config.scaling,
            config.spark.partitions,
            config.data.path,
        )
    except ConfigError as exc:
        raise ctx.located(exc) from None
    io.write_parquet_parts(prepared.prepared, ctx.catalog.path("prepared"))
    io.write_csv_file(prepared.rejects, ctx.catalog.path("rejects"))
    ctx.catalog.save("prepare_summary", prepared.summary)
    if prepared.ignored_columns:
        ctx.log(f"columns not declared, left out: {', '.join(prepared.ignored_columns)}")
    for name, counts in prepared.missing.items():
        ctx.log(f"{name}: {counts['missing']} missing, policy {counts['policy']}")
    summary = prepared.summary
    return f"{summary['rows_valid']} valid rows, {summary['rows_rejected']} rejected (on Spark)"


def _select_k_sample(ctx: StageContext, spark: Any) -> Any:
    """The customers select-k draws (all of them, up to select_k.sample_size), collected."""
    import polars as pl

    from segmentation import select_k
    from segmentation.spark import io
    from segmentation.spark.prepare import POSITION

    config = ctx.config
    rows = ctx.catalog.load("prepare_summary")["rows_valid"]
    frame = io.read_parquet_parts(spark, ctx.catalog.path("prepared"))
    drawn = select_k.sample_positions(rows, config.select_k.sample_size, config.cluster.seed)
    if drawn is not None:
        from pyspark.sql import functions as F

        chosen = spark.createDataFrame([(int(p),) for p in drawn], f"{POSITION} long")
        frame = frame.join(F.broadcast(chosen), POSITION)
    collected = pl.from_arrow(frame.orderBy(POSITION).toArrow())
    assert isinstance(collected, pl.DataFrame)
    return collected.drop(POSITION)


def _cluster(ctx: StageContext, spark: Any) -> str:
    import numpy as np

    from segmentation import prepare
    from segmentation.schema import rfm_scores
    from segmentation.spark import cluster as spark_cluster
    from segmentation.spark import io
    from segmentation.spark.prepare import in_position_order

    config = ctx.config
    catalog = ctx.catalog
    summary = catalog.load("prepare_summary")
    selection = catalog.load("k_selection")
    schema = table_schema(ctx)
    result = spark_cluster.segment_customers(
        spark,
        prepared=io.read_parquet_parts(spark, catalog.path("prepared")),
        schema=schema,
        scaler=prepare.Scaler.from_dict(summary["scaler"]),
        k=selection["chosen_k"],
        config=config.cluster,
        population=summary["population"],
        category_shares=summary["category_shares"],
        vocabulary=stage_vocabulary(ctx, schema),
        initial_centers=np.asarray(selection["centers"]),
        stability=selection["stability"]["per_segment_jaccard"],
        exact_silhouette_up_to=config.select_k.sample_size,
        scores=rfm_scores() if config.data.kind == "transactions" else None,
        chart_rows=config.select_k.sample_size,
        total=summary["rows_valid"],
    )
    catalog.save("segments", result.segments)
    catalog.save("profiles", result.profiles)
    ordered = in_position_order(result.assignments, config.spark.partitions, result.customers)
    io.write_parquet_parts(ordered.drop("position"), catalog.path("assignments"))
    if result.customers <= ASSIGNMENTS_CSV_UP_TO:
        io.write_csv_file(_csv_ready(ordered.drop("position")), catalog.path("assignments_csv"))
    catalog.save("chart_sample", result.sample)
    catalog.save("model", result.model.to_json())
    return (
        ", ".join(f"{row['name']} ({row['size']})" for row in result.segments.iter_rows(named=True))
        + " (on Spark)"
    )


ASSIGNMENTS_CSV_UP_TO = 1_000_000
"""On Spark, assignments.csv is written beside the Parquet parts up to this many customers."""


def _csv_ready(frame: Any) -> Any:
    """Numbers with six decimals, as the Polars engine writes its CSV."""
    from pyspark.sql import functions as F

    return frame.select(
        *[
            F.format_string("%.6f", F.col(name)).alias(name) if kind == "double" else F.col(name)
            for name, kind in frame.dtypes
        ]
    )
