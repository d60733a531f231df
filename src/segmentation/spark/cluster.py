"""Stage 3, cluster, on Spark: the final K-Means over every customer with Spark MLlib, started
from the centres select-k chose, then assignments, profiles, scores and silhouettes computed by
the executors. The driver holds the segments' aggregates and a bounded sample for the charts;
names, actions and the model come from the same code as the Polars engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from segmentation.cluster import (
    TOP_CATEGORIES,
    Described,
    centroids_in_data_units,
    customer_silhouettes,
    describe_segments,
    profiles_from_counts,
    segment_model,
)
from segmentation.config import ClusterConfig
from segmentation.kmeans import canonical_order
from segmentation.model import SegmentModel
from segmentation.prepare import Scaler
from segmentation.prepared import FEATURE_PREFIX
from segmentation.schema import ID, TableSchema
from segmentation.select_k import sample_positions
from segmentation.spark.prepare import EXACT, POSITION, feature_value, measure
from segmentation.vocabulary import SCORES, Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

CONVERGED = 1e-9
"""MLlib stops when no centre moves farther than this: in effect, when no customer changes
segment, as scikit-learn's Lloyd does, so both engines reach the same optimum from one start."""
CHART_STREAM = 1
"""Seed stream of the customers drawn for the charts (select-k's sample uses another)."""


@dataclass(frozen=True)
class SparkSegmentation:
    segments: pl.DataFrame
    profiles: pl.DataFrame
    assignments: DataFrame
    """customer_id, segment_id, segment_name, scores, distance_to_centroid, silhouette; by position."""
    sample: pl.DataFrame
    """At most `sample_size` customers with their columns, features and assignment, for charts."""
    model: SegmentModel
    customers: int


def _mllib_fit(
    prepared: DataFrame, features: list[str], initial: np.ndarray, config: ClusterConfig
) -> np.ndarray:
    """Lloyd's iterations on every customer with MLlib, from the given centres."""
    from pyspark.mllib.clustering import KMeans, KMeansModel
    from pyspark.mllib.linalg import DenseVector

    vectors = prepared.select(*features).rdd.map(lambda row: DenseVector(list(row))).cache()
    try:
        model = KMeans.train(
            vectors,
            initial.shape[0],
            maxIterations=config.max_iter,
            seed=config.seed,
            epsilon=CONVERGED,
            initialModel=KMeansModel([DenseVector(row) for row in initial]),
        )
    finally:
        vectors.unpersist()
    return np.asarray([np.asarray(center) for center in model.clusterCenters], dtype=float)


def _squared_distances(features: list[str], centers: np.ndarray) -> list[Column]:
    from pyspark.sql import functions as F

    distances = []
    for center in centers:
        total = F.lit(0.0)
        for name, value in zip(features, center, strict=True):
            total = total + (F.col(name) - float(value)) * (F.col(name) - float(value))
        distances.append(total)
    return distances


def _nearest(features: list[str], centers: np.ndarray) -> Column:
    """The index of the nearest centre (the first of equals, as numpy's argmin)."""
    from pyspark.sql import functions as F

    distances = F.array(*_squared_distances(features, centers))
    return (F.array_position(distances, F.array_min(distances)) - 1).cast("int")


def _exact_sums(frame: DataFrame, by: str, values: list[Column]) -> dict[int, list[float]]:
    """Per group: the count, then the exact (decimal) sum of each value."""
    from pyspark.sql import functions as F

    rows = (
        frame.groupBy(by)
        .agg(
            F.count(F.lit(1)).alias("_n"),
            *[F.sum(v.cast(EXACT)).alias(f"_s{i}") for i, v in enumerate(values)],
        )
        .collect()
    )
    return {
        int(row[by]): [float(row["_n"]), *[float(row[f"_s{i}"] or 0) for i in range(len(values))]]
        for row in rows
    }


def _profile(frame: DataFrame, schema: TableSchema, k: int, total: int) -> pl.DataFrame:
    """As `segmentation.cluster.profile_segments`, from one aggregation per segment."""
    from pyspark.sql import functions as F

    measures = schema.measures
    aggregates: list[Column] = [F.count(F.lit(1)).alias("size")]
    for column in measures:
        value = measure(column, schema)
        aggregates += [
            (F.sum(value.cast(EXACT)) / F.count(value)).cast("double").alias(f"mean_{column.name}"),
            F.percentile(value, F.lit(0.5)).alias(f"median_{column.name}"),
        ]
    for column in measures:
        seen = feature_value(column, schema)
        aggregates.append(
            (F.sum(seen.cast(EXACT)) / F.count(seen)).cast("double").alias(f"level_{column.name}")
        )
    rows = {int(r["segment_id"]): r for r in frame.groupBy("segment_id").agg(*aggregates).collect()}
    data: dict[str, list[Any]] = {"segment_id": list(range(k))}
    data["size"] = [int(rows[i]["size"]) for i in range(k)]
    data["share"] = [size / total for size in data["size"]]
    for column in measures:
        data[f"mean_{column.name}"] = [float(rows[i][f"mean_{column.name}"]) for i in range(k)]
    for column in measures:
        data[f"median_{column.name}"] = [float(rows[i][f"median_{column.name}"]) for i in range(k)]
    for column in measures:
        data[f"level_{column.name}"] = [float(rows[i][f"level_{column.name}"]) for i in range(k)]
    categorical = schema.of_type("categorical")
    tops: dict[str, list[Any]] = {}
    for column in categorical:
        counts = frame.groupBy("segment_id", column.name).count().collect()
        best: dict[int, tuple[int, str]] = {}
        for row in counts:
            segment, value, count = int(row[0]), row[1], int(row[2])
            if value is None:
                continue
            held = best.get(segment)
            if held is None or (-count, str(value)) < (-held[0], held[1]):
                best[segment] = (count, str(value))
        tops[f"top_{column.name}"] = [best.get(i, (0, None))[1] for i in range(k)]
        tops[f"top_{column.name}_share"] = [
            best.get(i, (0, None))[0] / data["size"][i] for i in range(k)
        ]
    for column in categorical:
        data[f"top_{column.name}"] = tops[f"top_{column.name}"]
    for column in categorical:
        data[f"top_{column.name}_share"] = tops[f"top_{column.name}_share"]
    return pl.DataFrame(data).with_columns(
        pl.col("segment_id").cast(pl.Int64), pl.col("size").cast(pl.Int64)
    )


def _category_profiles(
    frame: DataFrame, schema: TableSchema, shares: dict[str, dict[str, float]], sizes: list[int]
) -> pl.DataFrame:
    """As `segmentation.cluster.category_profiles`, from counts per segment and category."""
    from pyspark.sql import functions as F

    counts: dict[str, dict[tuple[int, str], int]] = {}
    for column in schema.of_type("categorical"):
        top = list(shares[column.name])[:TOP_CATEGORIES]
        found = (
            frame.where(F.col(column.name).isin(top))
            .groupBy("segment_id", column.name)
            .count()
            .collect()
        )
        counts[column.name] = {(int(r[0]), str(r[1])): int(r[2]) for r in found}
    return profiles_from_counts(counts, sizes, shares)


def _scores(frame: DataFrame, scores: Mapping[str, Mapping[str, Any]], total: int) -> DataFrame:
    """As `segmentation.cluster.score_customers`: ceil(5 * rank / n), rank = 1 + the customers
    with a strictly worse value; computed per distinct value, then joined back."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    top = len(SCORES)
    for name, spec in scores.items():
        column, descending = str(spec["column"]), bool(spec.get("descending"))
        counts = frame.groupBy(column).agg(F.count(F.lit(1)).alias("_n"))
        ordering = F.desc(column) if descending else F.asc(column)
        before = F.sum("_n").over(
            Window.orderBy(ordering).rowsBetween(Window.unboundedPreceding, -1)
        )
        ranked = counts.withColumn("_rank", F.coalesce(before, F.lit(0)) + 1).select(
            column, ((top * F.col("_rank") + total - 1) / total).cast("long").alias(name)
        )
        frame = frame.join(ranked, column, "left")
    return frame


def _score_profile(frame: DataFrame, names: list[str], k: int) -> pl.DataFrame:
    from pyspark.sql import functions as F

    rows = {
        int(r["segment_id"]): r
        for r in frame.groupBy("segment_id")
        .agg(
            *[F.percentile(n, F.lit(0.5)).alias(f"median_{n}") for n in names],
            *[
                (F.sum(F.col(n).cast(EXACT)) / F.count(n)).cast("double").alias(f"mean_{n}")
                for n in names
            ],
        )
        .collect()
    }
    data: dict[str, list[Any]] = {"segment_id": list(range(k))}
    for prefix in ("median", "mean"):
        for n in names:
            data[f"{prefix}_{n}"] = [float(rows[i][f"{prefix}_{n}"]) for i in range(k)]
    return pl.DataFrame(data).with_columns(pl.col("segment_id").cast(pl.Int64))


def segment_customers(
    spark: SparkSession,
    prepared: DataFrame,
    schema: TableSchema,
    scaler: Scaler,
    k: int,
    config: ClusterConfig,
    population: dict[str, dict[str, float]],
    category_shares: dict[str, dict[str, float]],
    vocabulary: Vocabulary | None,
    initial_centers: np.ndarray,
    stability: dict[str, float | None],
    exact_silhouette_up_to: int,
    scores: Mapping[str, Mapping[str, Any]] | None,
    chart_rows: int,
    total: int,
) -> SparkSegmentation:
    """The cluster stage on Spark; see `segmentation.cluster.segment_customers` for the meaning
    of each parameter. `chart_rows` bounds the sample of customers kept for the charts; `total`
    is the number of customers (prepare counted them)."""
    from pyspark.sql import functions as F

    features = [FEATURE_PREFIX + name for name in scaler.columns]
    prepared = prepared.cache()
    fitted = _mllib_fit(prepared, features, initial_centers, config)
    labelled = prepared.withColumn("_label", _nearest(features, fitted))
    # Centres from the labels, summed exactly: the same bytes whatever order partitions finish in.
    sums = _exact_sums(labelled, "_label", [F.col(f) for f in features])
    sizes = np.asarray([sums.get(label, [0.0])[0] for label in range(k)])
    centers = np.asarray(
        [
            np.asarray(sums[label][1:]) / max(sums[label][0], 1.0)
            if label in sums
            else fitted[label]
            for label in range(k)
        ]
    )
    unscaled_centers = centers * np.asarray(scaler.scale) + np.asarray(scaler.center)
    mapping = canonical_order(sizes, unscaled_centers)
    order = np.argsort(mapping)
    centroids = centers[order]
    ids = F.element_at(F.array(*[F.lit(int(m)) for m in mapping]), F.col("_label") + 1).cast("long")
    own = F.element_at(
        F.array(*_squared_distances(features, centroids)), F.col("segment_id").cast("int") + 1
    )
    segmented = labelled.withColumn("segment_id", ids).drop("_label")
    distances = F.array(*_squared_distances(features, centroids))
    others = F.array_min(
        F.filter(
            F.transform(distances, lambda d, i: F.when(i != F.col("segment_id"), d)),
            lambda d: d.isNotNull(),
        )
    )
    segmented = (
        segmented.withColumn("distance_to_centroid", F.sqrt(own))
        .withColumn("_other", F.sqrt(others) if k > 1 else F.lit(float("inf")))
        .cache()
    )
    inertia = float(
        segmented.select(F.sum((F.col("distance_to_centroid") ** 2).cast(EXACT))).first()[0]
    )

    profile = _profile(segmented, schema, k, total)
    score_names = list(scores or {})
    if scores:
        segmented = _scores(segmented, scores, total).cache()
        profile = profile.join(
            _score_profile(segmented, score_names, k), on="segment_id", how="left"
        )
    categories = _category_profiles(segmented, schema, category_shares, profile["size"].to_list())
    described: Described = describe_segments(
        profile=profile,
        categories=categories,
        schema=schema,
        population=population,
        vocabulary=vocabulary,
        original_centroids=centroids_in_data_units(unscaled_centers[order], schema),
        scaler=scaler,
        stability=[stability.get(str(int(old))) for old in order],
    )
    names = F.element_at(
        F.array(*[F.lit(n) for n in described.names]), F.col("segment_id").cast("int") + 1
    )
    segmented = segmented.withColumn("segment_name", names)
    if total <= exact_silhouette_up_to:
        # Few enough customers for the exact silhouette (quadratic): computed as the Polars engine does.
        collected = pl.from_arrow(
            segmented.select(POSITION, "segment_id", *features).orderBy(POSITION).toArrow()
        )
        assert isinstance(collected, pl.DataFrame)
        exact, method = customer_silhouettes(
            collected.select(features).to_numpy(),
            collected["segment_id"].to_numpy(),
            centroids,
            exact_silhouette_up_to,
        )
        values = spark.createDataFrame(
            list(zip(collected[POSITION].to_list(), [float(v) for v in exact], strict=True)),
            f"{POSITION} long, silhouette double",
        )
        segmented = segmented.join(values, POSITION, "left")
    else:
        method = "simplified (centroid-based)"
        own_distance, other = F.col("distance_to_centroid"), F.col("_other")
        segmented = segmented.withColumn(
            "silhouette", (other - own_distance) / F.greatest(own_distance, other, F.lit(1e-12))
        )
    assignments = segmented.select(
        POSITION,
        ID,
        "segment_id",
        "segment_name",
        *score_names,
        "distance_to_centroid",
        "silhouette",
    )
    sample = _chart_sample(spark, segmented.drop("_other"), total, chart_rows, config.seed)
    model = segment_model(
        described, schema, scaler, centroids, config, inertia, method, seeded=False
    )
    return SparkSegmentation(
        segments=described.segments,
        profiles=categories,
        assignments=assignments,
        sample=sample,
        model=model,
        customers=total,
    )


def _chart_sample(
    spark: SparkSession, frame: DataFrame, total: int, rows: int, seed: int
) -> pl.DataFrame:
    """A seeded sample of at most `rows` customers, collected to the driver for the charts."""
    from pyspark.sql import functions as F

    drawn = sample_positions(total, rows, seed + CHART_STREAM)
    chosen = (
        frame
        if drawn is None
        else frame.join(
            F.broadcast(spark.createDataFrame([(int(p),) for p in drawn], f"{POSITION} long")),
            POSITION,
        )
    )
    collected = pl.from_arrow(chosen.orderBy(POSITION).toArrow())
    assert isinstance(collected, pl.DataFrame)
    return collected
