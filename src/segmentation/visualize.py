"""Stage 4, visualize: every chart of a run as a Vega-Lite spec, and as SVG and PNG images on request."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from segmentation import images
from segmentation import vegalite as vl
from segmentation.config import VisualizeConfig
from segmentation.measures import measure
from segmentation.schema import ID, TableSchema, rfm_scores
from segmentation.stability import stability_class
from segmentation.vocabulary import SCORES, Grid

if TYPE_CHECKING:
    import numpy as np

PAIRWISE_COLUMNS = 5
"""The most columns the pair matrix shows: those that separate the segments most."""
PAIRWISE_POINTS = 1000
"""The most customers the pair matrix draws (it draws each one in every cell)."""
PROFILE_COLUMNS = 30
"""The most columns the profile heatmap shows (clustered ones first)."""
CHOSEN_COLOR = "#d62728"
SILHOUETTE_BARS = 1000
"""The most bars the per-customer silhouette chart draws (more are indistinguishable)."""
# A segment picked by a click (or in the report's segment buttons) is highlighted in every chart:
# the report sets the top-level `highlight` parameter of each chart to the picked segment.
HIGHLIGHT = "highlight"
PICK = {
    "name": "pick",
    "select": {"type": "point", "fields": ["segment"], "on": "click", "clear": "dblclick"},
}
HIGHLIGHTED = f"{HIGHLIGHT} === null || datum.segment === {HIGHLIGHT}"
KNEE_COLOR = "#ff7f0e"
K_AXIS = vl.quantitative("k", title="Number of segments k", axis={"tickMinStep": 1})


# Where each chart belongs in the report, and its alternative text.
CHART_GUIDE: dict[str, tuple[str, str]] = {
    "segments": ("segments", "Scatter plot of the customers coloured by segment, centroids marked with crosses."),
    "pairwise": ("segments", "Matrix of scatter plots, one for every pair of clustered numeric features (the five that separate the segments most, when there are more; at most 1,000 customers), coloured by segment."),
    "profiles": ("segments", "Heatmap of each segment's mean on every numeric column, coloured by how many standard deviations it is from the average customer."),
    "categories": ("segments", "Bar charts of each segment's share of the most common categories of every categorical column, beside all customers' share."),
    "sizes": ("segments", "Bar chart of the number of customers in each segment."),
    "rfm_grid": ("segments", "Five-by-five grid of the R score (across) against the F score (up), with the named regions of the naming grid shaded and labelled; each segment is a circle at its customers' median R and F scores, its area proportional to its number of customers."),
    "elbow": ("k", "Line chart of inertia against the number of segments, with the knee and the chosen k marked."),
    "criteria": ("k", "Three line charts of silhouette, Calinski-Harabasz and Davies-Bouldin against the number of segments, with the chosen k marked."),
    "gap": ("k", "Line chart of the gap statistic against the number of segments, with one-standard-error bars and the 1-SE choice marked."),
    "stability": ("k", "Line chart of bootstrap stability (mean adjusted Rand index) against the number of segments."),
    "jaccard": ("k", "Bar chart of each segment's mean Jaccard similarity across bootstrap resamples, coloured by stability class."),
    "silhouette": ("k", "Silhouette of every customer, sorted within each segment; bars below zero are customers closer to another segment."),
}  # fmt: skip


@dataclass(frozen=True)
class RenderedChart:
    name: str
    title: str
    spec: dict[str, Any]
    png: bytes | None
    """None when the images are not drawn (`visualize.images: false`); so is `svg`."""
    svg: str | None


def _segment_color(segments: pl.DataFrame) -> vl.Spec:
    """One color per segment, listed in segment-id order with the id in front of the name."""
    return vl.nominal(
        "segment",
        title="Segment",
        scale={"domain": _segment_labels(segments), "scheme": "tableau10"},
        legend={"orient": "bottom", "columns": 2, "labelLimit": 360},
    )


def _pickable(chart: vl.Spec) -> vl.Spec:
    """Marks that can be clicked to pick their segment, and fade when another one is picked."""
    opacity = vl.condition(HIGHLIGHTED, 0.9, 0.12)
    return {
        **chart,
        "encoding": {**chart["encoding"], "opacity": opacity},
        "params": [*chart.get("params", []), PICK],
    }


def _segment_labels(segments: pl.DataFrame) -> list[str]:
    return [f"{i} · {name}" for i, name in segments.select("segment_id", "name").iter_rows()]


def _points(frame: pl.DataFrame, max_points: int, seed: int) -> pl.DataFrame:
    """Customers for a chart of individual customers: a reproducible sample, numbers to five
    significant digits, and the segment by id (`_named` adds its label in the page), so that a
    chart of thousands of customers stays small whatever the names' length."""
    sampled = _sample(frame, max_points, seed)
    return sampled.with_columns(pl.col(pl.Float64).round_sig_figs(5))


def _named(chart: vl.Spec, segments: pl.DataFrame) -> vl.Spec:
    """The chart with each row's segment label looked up from its segment id."""
    labels = [
        {"segment_id": i, "segment": label}
        for i, label in zip(segments["segment_id"], _segment_labels(segments), strict=True)
    ]
    lookup = {
        "lookup": "segment_id",
        "from": {"data": {"values": labels}, "key": "segment_id", "fields": ["segment"]},
    }
    return {**chart, "transform": [*chart.get("transform", []), lookup]}


def _labelled(frame: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    labels = pl.DataFrame(
        {"segment_id": segments["segment_id"], "segment": _segment_labels(segments)}
    )
    return frame.join(labels, on="segment_id", how="left")


def _sample(frame: pl.DataFrame, max_points: int, seed: int) -> pl.DataFrame:
    """At most `max_points` rows, drawn reproducibly, so charts stay readable and small."""
    return (
        frame
        if frame.height <= max_points
        else frame.sample(max_points, seed=seed).sort("customer_id")
    )


def elbow_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> vl.Spec:
    """Inertia against k, the knee (if any) and the chosen k marked."""
    candidates = vl.values(pl.DataFrame(k_selection["candidates"]).select("k", "inertia"))
    inertia = vl.quantitative("inertia", title="Inertia (within-segment sum of squares)")
    layers = [
        vl.unit(candidates, "line", {"x": K_AXIS, "y": inertia}, mark={"point": True}),
        _chosen_rule(k_selection["chosen_k"]),
    ]
    knee_k, chosen_k = k_selection["knee_k"], k_selection["chosen_k"]
    if knee_k is not None:
        knee = [row for row in candidates["values"] if row["k"] == knee_k]
        layers.append(
            vl.unit(
                {"values": knee},
                "point",
                {
                    "x": vl.quantitative("k"),
                    "y": vl.quantitative("inertia"),
                    "tooltip": [vl.quantitative("k"), vl.quantitative("inertia")],
                },
                mark={"size": 220, "shape": "diamond", "filled": True, "color": KNEE_COLOR},
            )
        )
    subtitle = (
        f"knee at k={knee_k} (diamond); chosen k={chosen_k} (red line)"
        if knee_k is not None
        else f"no clear knee; chosen k={chosen_k} (red line)"
    )
    return vl.top_level(
        vl.layer(
            *layers,
            title={"text": "Elbow: inertia against k", "subtitle": subtitle},
            width=size.width,
            height=size.height,
        )
    )


def _chosen_rule(chosen_k: int) -> vl.Spec:
    """A dashed red line at the chosen k."""
    return vl.unit(
        {"values": [{"k": chosen_k}]},
        "rule",
        {"x": vl.quantitative("k")},
        mark={"color": CHOSEN_COLOR, "strokeDash": [6, 4], "strokeWidth": 2},
    )


def criteria_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> vl.Spec:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin against k, side by side."""
    candidates = pl.DataFrame(k_selection["candidates"]).filter(pl.col("silhouette").is_not_null())
    panels = []
    for column, title, better in (
        ("silhouette", "Silhouette", "higher is better"),
        ("calinski_harabasz", "Calinski-Harabasz", "higher is better"),
        ("davies_bouldin", "Davies-Bouldin", "lower is better"),
    ):
        line = vl.unit(
            vl.values(candidates.select("k", column)),
            "line",
            {
                "x": vl.quantitative("k", title="k", axis={"tickMinStep": 1}),
                "y": vl.quantitative(column, title=title, scale={"zero": False}),
                "tooltip": [vl.quantitative("k"), vl.quantitative(column)],
            },
            mark={"point": True},
        )
        panels.append(
            vl.layer(
                line,
                _chosen_rule(k_selection["chosen_k"]),
                title={"text": title, "subtitle": better},
                width=size.width // 2,
                height=size.height // 2 + 60,
            )
        )
    subtitle = f"chosen k={k_selection['chosen_k']} (red line, rule: {k_selection['rule']})"
    return vl.top_level(
        vl.hconcat(*panels, title={"text": "Cluster quality against k", "subtitle": subtitle})
    )


def gap_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> vl.Spec:
    """Gap statistic against k with one-standard-error bars; the 1-SE choice marked."""
    rows = (
        pl.DataFrame(k_selection["candidates"])
        .select("k", "gap", "gap_se")
        .with_columns(
            (pl.col("gap") - pl.col("gap_se")).alias("low"),
            (pl.col("gap") + pl.col("gap_se")).alias("high"),
        )
    )
    choices = k_selection["gap_choices"]
    data = vl.values(rows)
    layers = [
        vl.unit(
            data,
            "errorbar",
            {
                "x": K_AXIS,
                "y": vl.quantitative(
                    "low", title="Gap (with one standard error)", scale={"zero": False}
                ),
                "y2": {"field": "high"},
            },
            mark={"ticks": True},
        ),
        vl.unit(
            data,
            "line",
            {
                "x": K_AXIS,
                "y": vl.quantitative("gap"),
                "tooltip": [
                    vl.quantitative("k"),
                    vl.quantitative("gap", format=".3f"),
                    vl.quantitative("gap_se", format=".3f"),
                ],
            },
            mark={"point": True},
        ),
        vl.unit(
            vl.values(rows.filter(pl.col("k") == choices["one_se"])),
            "point",
            {"x": vl.quantitative("k"), "y": vl.quantitative("gap")},
            mark={"size": 220, "shape": "diamond", "filled": True, "color": KNEE_COLOR},
        ),
        _chosen_rule(k_selection["chosen_k"]),
    ]
    subtitle = (
        f"1-SE rule: k={choices['one_se']} (diamond); highest gap: k={choices['global_max']}; "
        f"chosen k={k_selection['chosen_k']} (red line)"
    )
    return vl.top_level(
        vl.layer(
            *layers,
            title={"text": "Gap statistic", "subtitle": subtitle},
            width=size.width,
            height=size.height,
        )
    )


def stability_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> vl.Spec:
    """Mean adjusted Rand index between bootstrap fits and the full-data fit, per k."""
    rows = (
        pl.DataFrame(k_selection["candidates"])
        .filter(pl.col("stability").is_not_null())
        .select("k", "stability")
    )
    line = vl.unit(
        vl.values(rows),
        "line",
        {
            "x": K_AXIS,
            "y": vl.quantitative(
                "stability", title="Mean adjusted Rand index", scale={"domain": [0, 1]}
            ),
            "tooltip": [vl.quantitative("k"), vl.quantitative("stability", format=".3f")],
        },
        mark={"point": True},
    )
    stability = k_selection["stability"]
    subtitle = (
        f"{stability['resamples']} resamples of {stability['resample_size']:,} customers; "
        "1 means every resample finds the same segments"
    )
    return vl.top_level(
        vl.layer(
            line,
            _chosen_rule(k_selection["chosen_k"]),
            title={"text": "Bootstrap stability against k", "subtitle": subtitle},
            width=size.width,
            height=size.height,
        )
    )


def _segment_axis(segments: pl.DataFrame) -> vl.Spec:
    """The segments down the y axis, in id order, labelled in full."""
    return vl.nominal(
        "segment", title=None, sort=_segment_labels(segments), axis={"labelLimit": 400}
    )


def jaccard_chart(segments: pl.DataFrame, size: VisualizeConfig) -> vl.Spec:
    """Each segment's mean Jaccard similarity across resamples, coloured by its stability class."""
    rows = _labelled(
        segments.select("segment_id", pl.col("stability_jaccard").alias("jaccard")).with_columns(
            pl.col("jaccard").map_elements(stability_class, return_dtype=pl.String).alias("class")
        ),
        segments,
    )
    classes = ["highly stable", "stable", "doubtful", "unstable"]
    bars = _pickable(
        vl.unit(
            vl.values(rows),
            "bar",
            {
                "y": _segment_axis(segments),
                "x": vl.quantitative(
                    "jaccard", title="Mean Jaccard similarity", scale={"domain": [0, 1]}
                ),
                "color": vl.nominal(
                    "class",
                    title="Stability",
                    scale={
                        "domain": classes,
                        "range": ["#1a9850", "#91cf60", "#fdae61", "#d73027"],
                    },
                ),
                "tooltip": [
                    vl.nominal("segment"),
                    vl.quantitative("jaccard", format=".3f"),
                    vl.nominal("class"),
                ],
            },
        )
    )
    thresholds = vl.unit(
        {"values": [{"threshold": 0.6}, {"threshold": 0.75}, {"threshold": 0.85}]},
        "rule",
        {"x": vl.quantitative("threshold")},
        mark={"strokeDash": [4, 4], "color": "gray"},
    )
    subtitle = "below 0.6 unstable, 0.6-0.75 doubtful, 0.75-0.85 stable, above 0.85 highly stable"
    return vl.top_level(
        vl.layer(
            bars,
            thresholds,
            title={"text": "Stability of each segment", "subtitle": subtitle},
            width=size.width,
            height=max(size.height // 2, 30 * segments.height),
        )
    )


def silhouette_chart(
    assignments: pl.DataFrame, segments: pl.DataFrame, size: VisualizeConfig
) -> vl.Spec:
    """Per-customer silhouette at the chosen k, sorted within each segment, segments stacked.

    Beyond `SILHOUETTE_BARS` customers, each segment shows evenly spaced values of its sorted
    silhouettes (its quantiles), in proportion to its size: the same shape, a bounded chart.
    """
    # Sorted within each segment, equal values in customer order: a sort of each segment's values
    # is several times quicker than one sort of every row on two keys.
    rows = (
        assignments.group_by("segment_id")
        .agg(
            pl.col("customer_id", "silhouette").sort_by(
                "silhouette", descending=True, maintain_order=True
            )
        )
        .sort("segment_id")
        .explode("customer_id", "silhouette")
    )
    if rows.height > SILHOUETTE_BARS:
        # Every segment keeps its best customer, plus its share of the remaining bars.
        share = (SILHOUETTE_BARS - segments.height) / rows.height
        rank = pl.int_range(pl.len()).over("segment_id")
        rows = rows.filter((rank == 0) | (((rank + 1) * share).floor() != (rank * share).floor()))
    gap = max(2, rows.height // 50)
    rows = rows.with_columns(
        (pl.col("segment_id").cast(pl.Int64) * gap + pl.int_range(pl.len())).alias("position"),
        pl.col("silhouette").round_sig_figs(4),
    ).select("customer_id", "segment_id", "silhouette", "position")
    mean = float(assignments["silhouette"].mean())  # type: ignore[arg-type]
    bars = _pickable(
        _named(
            vl.unit(
                vl.values(rows),
                "bar",
                {
                    "y": vl.field("position", "ordinal", axis=None, title=None),
                    "x": vl.quantitative(
                        "silhouette",
                        title="Silhouette of each customer",
                        scale={"domain": [-1, 1]},
                    ),
                    "color": _segment_color(segments),
                    "tooltip": [
                        vl.nominal("customer_id"),
                        vl.nominal("segment"),
                        vl.quantitative("silhouette", format=".3f"),
                    ],
                },
                mark={"orient": "horizontal", "height": {"band": 1.0}},
            ),
            segments,
        )
    )
    average = vl.unit(
        {"values": [{"mean": mean}]},
        "rule",
        {"x": vl.quantitative("mean")},
        mark={"color": CHOSEN_COLOR, "strokeDash": [6, 4]},
    )
    subtitle = f"mean {mean:.3f} (red line); bars below 0 sit closer to another segment"
    return vl.top_level(
        vl.layer(
            bars,
            average,
            title={"text": "Silhouette of every customer", "subtitle": subtitle},
            width=size.width,
            height=max(size.height, 300),
        )
    )


def _scatter(
    points: pl.DataFrame,
    centroids: pl.DataFrame,
    axes: dict[str, str],
    segments: pl.DataFrame,
    size: VisualizeConfig,
    title: str,
) -> vl.Spec:
    """Customers as dots and centroids as crosses; `axes` maps the x and y columns to titles."""
    (x, x_title), (y, y_title) = axes.items()
    dots = _pickable(
        _named(
            vl.unit(
                vl.values(points),
                "circle",
                {
                    "x": vl.quantitative(x, title=x_title, scale={"zero": False}),
                    "y": vl.quantitative(y, title=y_title, scale={"zero": False}),
                    "color": _segment_color(segments),
                    "tooltip": [
                        vl.nominal("customer_id"),
                        vl.nominal("segment"),
                        vl.quantitative(x, format=".2f"),
                        vl.quantitative(y, format=".2f"),
                    ],
                },
                mark={"size": 45, "opacity": 0.75},
            ),
            segments,
        )
    )
    marks = vl.unit(
        vl.values(centroids),
        "point",
        {
            "x": vl.quantitative(x),
            "y": vl.quantitative(y),
            "tooltip": [vl.nominal("segment")],
        },
        mark={"shape": "cross", "size": 260, "filled": True, "color": "black", "strokeWidth": 1},
    )
    return vl.top_level(
        vl.layer(
            dots,
            marks,
            title={"text": title, "subtitle": "crosses mark the segment centroids"},
            width=size.width,
            height=size.height + 60,
        )
    )


def _strip_chart(
    points: pl.DataFrame, column: str, title: str, segments: pl.DataFrame, size: VisualizeConfig
) -> vl.Spec:
    """Customers of each segment along the one clustered column, centroids as black ticks."""
    ticks = _pickable(
        _named(
            vl.unit(
                vl.values(points.select(ID, "segment_id", column)),
                "tick",
                {
                    "x": vl.quantitative(column, title=title, scale={"zero": False}),
                    "y": _segment_axis(segments),
                    "color": _segment_color(segments),
                    "tooltip": [
                        vl.nominal("customer_id"),
                        vl.nominal("segment"),
                        vl.quantitative(column),
                    ],
                },
                mark={"thickness": 2, "opacity": 0.6},
            ),
            segments,
        )
    )
    centroids = _labelled(
        segments.select("segment_id", pl.col(f"centroid_{column}").alias(column)), segments
    )
    marks = vl.unit(
        vl.values(centroids),
        "tick",
        {
            "x": vl.quantitative(column),
            "y": _segment_axis(segments),
            "tooltip": [vl.nominal("segment"), vl.quantitative(column)],
        },
        mark={"color": "black", "thickness": 4, "size": 30},
    )
    subtitle = "each tick is a customer; black ticks mark the centroids"
    return vl.top_level(
        vl.layer(
            ticks,
            marks,
            title={"text": "Segments", "subtitle": subtitle},
            width=size.width,
            height=max(size.height // 2, 40 * segments.height),
        )
    )


def scatter_chart(
    customers: pl.DataFrame,
    assignments: pl.DataFrame,
    segments: pl.DataFrame,
    model: dict[str, Any],
    features: pl.DataFrame,
    schema: TableSchema,
    size: VisualizeConfig,
    seed: int,
) -> vl.Spec:
    """One numeric feature: its values per segment. Two: those two in the data's units.

    More, or any categorical feature: a PCA projection of the scaled data (`features`, one column
    per feature in the model's order).
    """
    columns = model["scaler"]["columns"]
    measured = [c.name for c in schema.measures]
    joined = _measured(customers, schema).with_columns(assignments["segment_id"])
    if len(columns) == 1 and columns[0] in measured:
        points = _points(joined.select(ID, "segment_id", columns[0]), size.max_points, seed)
        title = schema.matrix_title(columns[0])
        return _strip_chart(points, columns[0], title, segments, size)
    if len(columns) == 2 and all(c in measured for c in columns):
        x, y = columns
        points = _points(joined.select(ID, "segment_id", x, y), size.max_points, seed)
        centroids = _labelled(
            segments.select(
                "segment_id", pl.col(f"centroid_{x}").alias(x), pl.col(f"centroid_{y}").alias(y)
            ),
            segments,
        )
        axes = {x: schema.matrix_title(x), y: schema.matrix_title(y)}
        return _scatter(points, centroids, axes, segments, size, "Segments")
    projected, centres, explained = _projected(features, model["centroids_scaled"])
    points = joined.select(ID, "segment_id").with_columns(
        pl.Series("pc1", projected[:, 0]), pl.Series("pc2", projected[:, 1])
    )
    points = _points(points, size.max_points, seed)
    centroids = _labelled(
        pl.DataFrame(
            {"segment_id": segments["segment_id"], "pc1": centres[:, 0], "pc2": centres[:, 1]}
        ),
        segments,
    )
    axes = {
        "pc1": f"Principal component 1 ({explained[0]:.0%} of variance)",
        "pc2": f"Principal component 2 ({explained[1]:.0%} of variance)",
    }
    title = "Segments on the first two principal components"
    return _scatter(points, centroids, axes, segments, size, title)


def _projected(
    features: pl.DataFrame, centroids: list[list[float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers and centroids on the first two principal components, and the share of the
    variance along each."""
    import numpy as np  # only this chart needs NumPy: a run without it skips its import

    matrix = features.to_numpy()
    components, mean, explained = principal_components(matrix)
    return (matrix - mean) @ components.T, (np.asarray(centroids) - mean) @ components.T, explained


def principal_components(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first two principal components of the rows of `matrix`.

    Parameters
    ----------
    matrix : numpy.ndarray
        One row per customer, one column per feature (scaled), at least two columns.

    Returns
    -------
    components : numpy.ndarray
        Two rows, the unit directions of largest variance, each signed so that its largest
        entry in absolute value is positive (scikit-learn's PCA signs them the same way).
    mean : numpy.ndarray
        The column means the projection is centred on.
    explained : numpy.ndarray
        The share of the total variance along each of the two components.
    """
    import numpy as np

    # The eigenvectors of the d x d covariance matrix: one pass over the rows, and no
    # scikit-learn import (about a second) in a stage that needs nothing else from it.
    mean = matrix.mean(axis=0)
    centred = matrix - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1][:2]
    components = vectors[:, order].T
    largest = np.abs(components).argmax(axis=1)
    components *= np.sign(components[np.arange(2), largest])[:, np.newaxis]
    variances = np.clip(values, 0.0, None)
    return components, mean, variances[order] / (variances.sum() or 1.0)


def _measured(customers: pl.DataFrame, schema: TableSchema) -> pl.DataFrame:
    """The customers with date columns as days before as_of, as they are profiled."""
    return customers.with_columns(measure(column, schema) for column in schema.of_type("date"))


def pairwise_columns(
    segments: pl.DataFrame, population: dict[str, dict[str, float]], schema: TableSchema
) -> list[str]:
    """The clustered numeric and date columns for the pair matrix: all of them up to
    PAIRWISE_COLUMNS, else those whose segment means spread most (in population SDs)."""
    numeric = [f for f in schema.features if schema.column(f).type != "categorical"]
    if len(numeric) <= PAIRWISE_COLUMNS:
        return numeric

    def spread(name: str) -> float:
        deviation = segments[f"mean_{name}"].std(ddof=0) or 0.0
        return float(deviation) / (population[name]["std"] or 1.0)  # type: ignore[arg-type]

    chosen = set(sorted(numeric, key=lambda name: -spread(name))[:PAIRWISE_COLUMNS])
    return [name for name in numeric if name in chosen]


def pairwise_chart(
    customers: pl.DataFrame,
    assignments: pl.DataFrame,
    segments: pl.DataFrame,
    columns: list[str],
    schema: TableSchema,
    size: VisualizeConfig,
    seed: int,
) -> vl.Spec:
    """Every pair of the given numeric columns (the lower triangle of their scatter matrix), in the
    data's units, axes titled by label; log1p columns on a symmetric log scale, as K-Means sees
    them."""
    joined = _measured(customers, schema).with_columns(assignments["segment_id"])
    points = vl.values(
        _points(
            joined.select(ID, "segment_id", *columns), min(size.max_points, PAIRWISE_POINTS), seed
        )
    )
    side = max(120, size.width // max(1, len(columns) - 1))

    def axis(name: str) -> vl.Spec:
        column = schema.column(name)
        scale = {"type": "symlog"} if column.transform == "log1p" else {"zero": False}
        return vl.quantitative(name, title=column.axis_title, scale=scale)

    def cell(x: str, y: str) -> vl.Spec:
        dots = vl.unit(
            points,
            "circle",
            {
                "x": axis(x),
                "y": axis(y),
                "color": _segment_color(segments),
                "tooltip": [
                    vl.nominal(ID),
                    vl.nominal("segment"),
                    vl.quantitative(x, format=",.4~g"),
                    vl.quantitative(y, format=",.4~g"),
                ],
            },
            mark={"size": 25},
            width=side,
            height=side,
        )
        return _pickable(_named(dots, segments))

    rows = [
        vl.hconcat(*[cell(x, y) for x in columns[:row]]) for row, y in enumerate(columns) if row
    ]
    return vl.top_level(vl.vconcat(*rows, title="Segments across every pair of features"))


def profile_chart(
    segments: pl.DataFrame,
    population: dict[str, Any],
    schema: TableSchema,
    size: VisualizeConfig,
) -> vl.Spec:
    """Heatmap of each segment's mean on every numeric and date column (clustered ones first),
    coloured by how many population SDs it is from the average customer, labelled in data units."""
    measures = sorted(schema.measures, key=lambda c: c.name not in schema.features)
    rows = []
    for row in segments.iter_rows(named=True):
        label = f"{row['segment_id']} · {row['name']}"
        for column in measures[:PROFILE_COLUMNS]:
            stats = population[column.name]
            mean = row[f"mean_{column.name}"]
            z = (mean - stats["mean"]) / (stats["std"] or 1.0)
            rows.append((label, column.axis_title, z, _short(mean)))
    cells = pl.DataFrame(rows, schema=["segment", "column", "z", "value"], orient="row")
    data = vl.values(cells)
    axes = {
        "x": vl.nominal(
            "column",
            title=None,
            sort=list(dict.fromkeys(cells["column"])),
            axis={"labelAngle": -40 if len(measures) > 4 else 0, "labelLimit": 160},
        ),
        "y": _segment_axis(segments),
    }
    heat = _pickable(
        vl.unit(
            data,
            "rect",
            {
                **axes,
                "color": vl.quantitative(
                    "z",
                    title="SDs from the average customer",
                    scale={"scheme": "redblue", "domain": [-2, 2], "reverse": True, "clamp": True},
                ),
                "tooltip": [
                    vl.nominal("segment"),
                    vl.nominal("column"),
                    vl.nominal("value"),
                    vl.quantitative("z", format=".2f"),
                ],
            },
        )
    )
    text = vl.unit(data, "text", {**axes, "text": vl.nominal("value")}, mark={"fontSize": 11})
    subtitle = "mean per segment; color: above (red) or below (blue) the average customer"
    return vl.top_level(
        vl.layer(
            heat,
            text,
            title={"text": "Segment profiles", "subtitle": subtitle},
            width=max(size.width, 60 * min(len(measures), PROFILE_COLUMNS)),
            height=max(size.height // 2, 36 * segments.height),
        )
    )


def _short(value: float) -> str:
    """A mean as it fits in a heatmap cell: 3 significant digits, thousands as k, millions as M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def categories_chart(
    profiles: pl.DataFrame, segments: pl.DataFrame, schema: TableSchema, size: VisualizeConfig
) -> vl.Spec:
    """Each segment's share of the most common categories of every categorical column, with all
    customers' share as a tick."""
    labels = pl.DataFrame(
        {"segment_id": segments["segment_id"], "segment": _segment_labels(segments)}
    )
    rows = (
        profiles.join(labels, on="segment_id", how="left")
        .with_columns(
            pl.col("column")
            .replace_strict({c.name: c.title for c in schema.of_type("categorical")})
            .alias("column"),
        )
        .select("segment", "column", "category", "value", "everyone")
    )
    category = vl.nominal("category", title=None, axis={"labelLimit": 200})
    bars = _pickable(
        vl.unit(
            None,
            "bar",
            {
                "y": category,
                "yOffset": vl.nominal("segment", sort=_segment_labels(segments)),
                "x": vl.quantitative("value", title="Share of the segment", axis={"format": "%"}),
                "color": _segment_color(segments),
                "tooltip": [
                    vl.nominal("segment"),
                    vl.nominal("column"),
                    vl.nominal("category"),
                    vl.quantitative("value", format=".1%", title="share of the segment"),
                    vl.quantitative("everyone", format=".1%", title="share of all customers"),
                ],
            },
        )
    )
    everyone = vl.unit(
        None,
        "tick",
        {"y": category, "yOffset": {"value": 0}, "x": vl.quantitative("everyone")},
        mark={"color": "black", "thickness": 2},
    )
    layered = vl.layer(bars, everyone, width=size.width, height={"step": 8})
    layered["data"] = vl.values(rows)
    subtitle = "bars: share of the segment; black ticks: share of all customers"
    return vl.top_level(
        vl.facet(
            layered,
            row=vl.nominal("column", title=None, header={"labelAngle": 0, "labelAlign": "left"}),
            resolve={"scale": {"y": "independent"}},
            title={"text": "Categories in each segment", "subtitle": subtitle},
        )
    )


def sizes_chart(segments: pl.DataFrame, size: VisualizeConfig) -> vl.Spec:
    """The customers in each segment, with their share."""
    rows = _labelled(segments.select("segment_id", "size", "share"), segments).with_columns(
        (
            pl.col("size").cast(pl.String)
            + " ("
            + (pl.col("share") * 100).round(1).cast(pl.String)
            + "%)"
        ).alias("label")
    )
    order = _segment_labels(segments)
    data = vl.values(rows)
    axes = {"y": _segment_axis(segments), "x": vl.quantitative("size", title="Customers")}
    bars = _pickable(
        vl.unit(
            data,
            "bar",
            {
                **axes,
                "color": vl.nominal(
                    "segment", scale={"domain": order, "scheme": "tableau10"}, legend=None
                ),
            },
        )
    )
    labels = vl.unit(
        data, "text", {**axes, "text": vl.nominal("label")}, mark={"align": "left", "dx": 4}
    )
    return vl.top_level(
        vl.layer(
            bars,
            labels,
            title="Segment sizes",
            width=size.width,
            height=max(size.height // 2, 30 * segments.height),
        )
    )


GRID_SIDE = 460
"""The side of the score grid chart, in pixels."""
GRID_SPREAD = 0.27
"""Segments at the same median scores are drawn on a ring of this radius (in scores) around them."""
GRID_AREA = 1800
"""The area (in square pixels) of the largest segment's circle in the grid chart."""


def _score_title(name: str, schema: TableSchema) -> str:
    spec = rfm_scores()[name]
    column = schema.column(spec["column"])
    best = "most recent" if spec.get("descending") else "highest"
    label = spec.get("label", name)
    return f"{label} score: {column.title} ({SCORES[-1]} = {best})"


def grid_positions(segments: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Each segment at its median `x` and `y` scores; segments at the same point are set around
    it on a ring of radius GRID_SPREAD (two: side by side), so that none hides another."""
    rows = segments.select(
        "segment_id",
        "size",
        pl.col(f"median_{x}").alias("x_median"),
        pl.col(f"median_{y}").alias("y_median"),
    )
    points = rows.select("x_median", "y_median").rows()
    angles = [
        math.pi - 2 * math.pi * points[:row].count(point) / points.count(point)
        for row, point in enumerate(points)
    ]
    radius = [GRID_SPREAD if points.count(point) > 1 else 0.0 for point in points]
    dx = pl.Series([math.cos(angle) * r for angle, r in zip(angles, radius, strict=True)])
    dy = pl.Series([math.sin(angle) * r for angle, r in zip(angles, radius, strict=True)])
    return rows.with_columns(
        (pl.col("x_median") + dx).round(3).alias("x"),
        (pl.col("y_median") + dy).round(3).alias("y"),
    )


def _grid_regions(grid: Grid) -> pl.DataFrame:
    """The grid's cells as rectangles in score units: one per run of consecutive scores."""

    def runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        for value in sorted(values):
            if found and value == found[-1][1] + 1:
                found[-1] = (found[-1][0], value)
            else:
                found.append((value, value))
        return found

    rows = [
        (cell.name, x0 - 0.5, x1 + 0.5, y0 - 0.5, y1 + 0.5)
        for cell in grid.cells
        for x0, x1 in runs(cell.x)
        for y0, y1 in runs(cell.y)
    ]
    return pl.DataFrame(rows, schema=["region", "x0", "x1", "y0", "y1"], orient="row")


def rfm_grid_chart(
    segments: pl.DataFrame, grid: Grid | None, schema: TableSchema, size: VisualizeConfig
) -> vl.Spec:
    """The score grid (R across, F up, or the naming grid's scores), its named regions shaded,
    each segment a circle at its customers' median scores, its area proportional to its size."""
    scores = rfm_scores()
    names = list(scores)
    x, y = (grid.x, grid.y) if grid is not None else (names[0], names[1])
    largest = max(int(segments["size"].max() or 1), 1)  # type: ignore[arg-type]
    low, high = SCORES[0] - 0.5, SCORES[-1] + 0.5
    scale = {"domain": [low, high], "nice": False, "zero": False}
    axis = {"values": list(SCORES), "format": "d", "grid": False, "tickSize": 0, "domain": False}

    def score(field: str, name: str) -> vl.Spec:
        return vl.quantitative(field, scale=scale, title=_score_title(name, schema), axis=axis)

    extra = [name for name in names if f"median_{name}" in segments.columns]
    points = vl.values(
        _labelled(
            grid_positions(segments, x, y).join(
                segments.select("segment_id", *[f"median_{name}" for name in extra]),
                on="segment_id",
            ),
            segments,
        )
    )
    layers = [] if grid is None else _region_layers(grid, score("x0", x), score("y0", y))
    circles = _pickable(
        vl.unit(
            points,
            "circle",
            {
                "x": score("x", x),
                "y": score("y", y),
                "size": vl.quantitative(
                    "size",
                    title="Customers",
                    scale={"domain": [0, largest], "range": [0, GRID_AREA]},
                    legend=None,
                ),
                "color": _segment_color(segments),
                "tooltip": [
                    vl.nominal("segment"),
                    vl.quantitative("size", title="customers", format=","),
                    *[
                        vl.quantitative(
                            f"median_{name}", title=f"median {scores[name].get('label', name)}"
                        )
                        for name in extra
                    ],
                ],
            },
            mark={"stroke": "white", "strokeWidth": 1.5},
        )
    )
    ids = vl.unit(
        points,
        "text",
        {"x": vl.quantitative("x"), "y": vl.quantitative("y"), "text": vl.nominal("segment_id")},
        mark={"fontSize": 11, "fontWeight": "bold", "color": "white"},
    )
    shaded = "shaded: the cells of the naming grid" if grid is not None else "no naming grid"
    subtitle = (
        f"each circle is a segment at its customers' median scores (area: customers); {shaded}"
    )
    return vl.top_level(
        vl.layer(
            *layers,
            circles,
            ids,
            title={"text": "Segments on the RFM grid", "subtitle": subtitle},
            width=GRID_SIDE,
            height=GRID_SIDE,
        )
    )


def _region_layers(grid: Grid, x: vl.Spec, y: vl.Spec) -> list[vl.Spec]:
    """The naming grid's cells as shaded rectangles, each labelled in its top left corner."""
    regions = vl.values(_grid_regions(grid))
    shaded = vl.unit(
        regions,
        "rect",
        {
            "x": x,
            "x2": {"field": "x1"},
            "y": y,
            "y2": {"field": "y1"},
            "tooltip": [vl.nominal("region", title="grid cell")],
        },
        mark={"fill": "#eef1f5", "stroke": "white", "strokeWidth": 4},
    )
    labels = vl.unit(
        regions,
        "text",
        {"x": vl.quantitative("x0"), "y": vl.quantitative("y1"), "text": vl.nominal("region")},
        mark={
            "align": "left",
            "baseline": "top",
            "dx": 6,
            "dy": 6,
            "fontSize": 11,
            "color": "#56606b",
        },
    )
    return [shaded, labels]


def chart_spec(name: str, title: str, spec: vl.Spec) -> vl.Spec:
    """The chart's Vega-Lite spec, with its accessible description and the page's highlight."""
    # Vega reads the description out as the chart's accessible name.
    described = {
        **spec,
        "description": f"{title}: {CHART_GUIDE[name][1]}" if name in CHART_GUIDE else title,
    }
    if any(param["name"] == PICK["name"] for param in spec.get("params", [])):
        # Declared at the top level so that the page can set it in every chart at once.
        described["params"] = [{"name": HIGHLIGHT, "value": None}, *spec.get("params", [])]
    return described


def render_all(
    charts: Iterable[tuple[str, str, vl.Spec]],
    png_scale: float,
    with_images: bool = True,
    workers: int | None = None,
) -> list[RenderedChart]:
    """Every chart's Vega-Lite spec, and its SVG and PNG images when asked for.

    Parameters
    ----------
    charts : iterable of (name, title, spec)
        The charts; they may be built as they are asked for, so that the images of one are drawn
        in worker processes while the next is built (`images.Drawer`).
    png_scale : float
        The PNG's resolution multiplier.
    with_images : bool
        Draw the SVG and PNG images too; without them vl-convert is not started at all.
    workers : int, optional
        Processes drawing the images (default: one per core, at most `images.MAX_WORKERS`).

    Returns
    -------
    list of RenderedChart
        In the order of `charts`.
    """
    if not with_images:
        return [
            RenderedChart(name, title, chart_spec(name, title, chart), png=None, svg=None)
            for name, title, chart in charts
        ]
    pending = []
    with images.Drawer(png_scale, workers) as drawer:
        for name, title, chart in charts:
            spec = chart_spec(name, title, chart)
            pending.append((name, title, spec, drawer.submit(name, spec)))
        rendered = []
        for name, title, spec, future in pending:
            svg, png = future.result()
            rendered.append(RenderedChart(name, title, spec, png=png, svg=svg))
    return rendered
