"""Stage 4, visualize: every chart of a run as Altair charts, saved as Vega-Lite JSON, PNG and SVG."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import altair as alt
import numpy as np
import polars as pl

from segmentation import images
from segmentation.config import VisualizeConfig
from segmentation.measures import measure
from segmentation.schema import ID, TableSchema, rfm_scores
from segmentation.stability import stability_class
from segmentation.vocabulary import SCORES, Grid

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
PICK = alt.selection_point(name="pick", fields=["segment"], on="click", clear="dblclick")
HIGHLIGHTED = f"{HIGHLIGHT} === null || datum.segment === {HIGHLIGHT}"
KNEE_COLOR = "#ff7f0e"


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


def _segment_color(segments: pl.DataFrame) -> alt.Color:
    """One color per segment, listed in segment-id order with the id in front of the name."""
    return alt.Color(
        "segment:N",
        title="Segment",
        scale=alt.Scale(domain=_segment_labels(segments), scheme="tableau10"),
        legend=alt.Legend(orient="bottom", columns=2, labelLimit=360),
    )


@contextlib.contextmanager
def _one_selection() -> Iterator[None]:
    """The cells of a concatenated chart share the one click selection: Altair merges their
    copies into one, which is what is meant, and says so in a warning that is not for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Automatically deduplicated selection parameter")
        yield


@contextlib.contextmanager
def _unchecked() -> Iterator[None]:
    """Altair checks every part of a chart against the Vega-Lite schema as it is made and again
    when it is written out, which takes longer than building it; the tests validate the charts."""
    with alt.utils.schemapi.debug_mode(False):
        yield


def _pickable(chart: alt.Chart) -> alt.Chart:
    """Marks that can be clicked to pick their segment, and fade when another one is picked."""
    picked: alt.Chart = chart.add_params(PICK).encode(
        opacity=alt.condition(HIGHLIGHTED, alt.value(0.9), alt.value(0.12))
    )
    return picked


def _segment_labels(segments: pl.DataFrame) -> list[str]:
    return [f"{i} · {name}" for i, name in segments.select("segment_id", "name").iter_rows()]


def _points(frame: pl.DataFrame, max_points: int, seed: int) -> pl.DataFrame:
    """Customers for a chart of individual customers: a reproducible sample, numbers to five
    significant digits, and the segment by id (`_named` adds its label in the page), so that a
    chart of thousands of customers stays small whatever the names' length."""
    sampled = _sample(frame, max_points, seed)
    return sampled.with_columns(pl.col(pl.Float64).round_sig_figs(5))


def _named(chart: alt.Chart, segments: pl.DataFrame) -> alt.Chart:
    """The chart with each row's segment label looked up from its segment id."""
    labels = alt.InlineData(
        values=[
            {"segment_id": i, "segment": label}
            for i, label in zip(segments["segment_id"], _segment_labels(segments), strict=True)
        ]
    )
    named: alt.Chart = chart.transform_lookup(
        lookup="segment_id", from_=alt.LookupData(data=labels, key="segment_id", fields=["segment"])
    )
    return named


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


def elbow_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> alt.TopLevelMixin:
    candidates = pl.DataFrame(k_selection["candidates"]).select("k", "inertia")
    base = alt.Chart(candidates).encode(
        x=alt.X("k:Q", title="Number of segments k", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("inertia:Q", title="Inertia (within-segment sum of squares)"),
    )
    layers: list[alt.Chart] = [base.mark_line(point=True), _chosen_rule(k_selection["chosen_k"])]
    if k_selection["knee_k"] is not None:
        knee = candidates.filter(pl.col("k") == k_selection["knee_k"])
        layers.append(
            alt.Chart(knee)
            .mark_point(size=220, shape="diamond", filled=True, color=KNEE_COLOR)
            .encode(x="k:Q", y="inertia:Q", tooltip=["k", "inertia"])
        )
    subtitle = (
        f"knee at k={k_selection['knee_k']} (diamond); chosen k={k_selection['chosen_k']} (red line)"
        if k_selection["knee_k"] is not None
        else f"no clear knee; chosen k={k_selection['chosen_k']} (red line)"
    )
    return alt.layer(*layers).properties(
        title=alt.Title("Elbow: inertia against k", subtitle=subtitle),
        width=size.width,
        height=size.height,
    )


def _chosen_rule(chosen_k: int) -> alt.Chart:
    rule: alt.Chart = (
        alt.Chart(pl.DataFrame({"k": [chosen_k]}))
        .mark_rule(color=CHOSEN_COLOR, strokeDash=[6, 4], strokeWidth=2)
        .encode(x="k:Q")
    )
    return rule


def criteria_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> alt.TopLevelMixin:
    candidates = pl.DataFrame(k_selection["candidates"]).filter(pl.col("silhouette").is_not_null())
    panels = []
    for column, title, better in (
        ("silhouette", "Silhouette", "higher is better"),
        ("calinski_harabasz", "Calinski-Harabasz", "higher is better"),
        ("davies_bouldin", "Davies-Bouldin", "lower is better"),
    ):
        line = (
            alt.Chart(candidates.select("k", column))
            .mark_line(point=True)
            .encode(
                x=alt.X("k:Q", title="k", axis=alt.Axis(tickMinStep=1)),
                y=alt.Y(f"{column}:Q", title=title, scale=alt.Scale(zero=False)),
                tooltip=["k", column],
            )
        )
        panels.append(
            alt.layer(line, _chosen_rule(k_selection["chosen_k"])).properties(
                title=alt.Title(title, subtitle=better),
                width=size.width // 2,
                height=size.height // 2 + 60,
            )
        )
    return alt.hconcat(*panels).properties(
        title=alt.Title(
            "Cluster quality against k",
            subtitle=f"chosen k={k_selection['chosen_k']} (red line, rule: {k_selection['rule']})",
        )
    )


def gap_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> alt.TopLevelMixin:
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
    base = alt.Chart(rows).encode(
        x=alt.X("k:Q", title="Number of segments k", axis=alt.Axis(tickMinStep=1))
    )
    layers = [
        base.mark_errorbar(ticks=True).encode(
            y=alt.Y("low:Q", title="Gap (with one standard error)", scale=alt.Scale(zero=False)),
            y2="high:Q",
        ),
        base.mark_line(point=True).encode(
            y="gap:Q",
            tooltip=[
                "k",
                alt.Tooltip("gap:Q", format=".3f"),
                alt.Tooltip("gap_se:Q", format=".3f"),
            ],
        ),
        alt.Chart(rows.filter(pl.col("k") == choices["one_se"]))
        .mark_point(size=220, shape="diamond", filled=True, color=KNEE_COLOR)
        .encode(x="k:Q", y="gap:Q"),
        _chosen_rule(k_selection["chosen_k"]),
    ]
    subtitle = (
        f"1-SE rule: k={choices['one_se']} (diamond); highest gap: k={choices['global_max']}; "
        f"chosen k={k_selection['chosen_k']} (red line)"
    )
    chart: alt.TopLevelMixin = alt.layer(*layers).properties(
        title=alt.Title("Gap statistic", subtitle=subtitle), width=size.width, height=size.height
    )
    return chart


def stability_chart(k_selection: dict[str, Any], size: VisualizeConfig) -> alt.TopLevelMixin:
    """Mean adjusted Rand index between bootstrap fits and the full-data fit, per k."""
    rows = (
        pl.DataFrame(k_selection["candidates"])
        .filter(pl.col("stability").is_not_null())
        .select("k", "stability")
    )
    line = (
        alt.Chart(rows)
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", title="Number of segments k", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(
                "stability:Q", title="Mean adjusted Rand index", scale=alt.Scale(domain=[0, 1])
            ),
            tooltip=["k", alt.Tooltip("stability:Q", format=".3f")],
        )
    )
    resamples = k_selection["stability"]["resamples"]
    chart: alt.TopLevelMixin = alt.layer(line, _chosen_rule(k_selection["chosen_k"])).properties(
        title=alt.Title(
            "Bootstrap stability against k",
            subtitle=f"{resamples} resamples; 1 means every resample finds the same segments",
        ),
        width=size.width,
        height=size.height,
    )
    return chart


def jaccard_chart(segments: pl.DataFrame, size: VisualizeConfig) -> alt.TopLevelMixin:
    """Each segment's mean Jaccard similarity across resamples, coloured by its stability class."""
    rows = _labelled(
        segments.select("segment_id", pl.col("stability_jaccard").alias("jaccard")).with_columns(
            pl.col("jaccard").map_elements(stability_class, return_dtype=pl.String).alias("class")
        ),
        segments,
    )
    classes = ["highly stable", "stable", "doubtful", "unstable"]
    bars = _pickable(
        alt.Chart(rows)
        .mark_bar()
        .encode(
            y=alt.Y(
                "segment:N",
                title=None,
                sort=_segment_labels(segments),
                axis=alt.Axis(labelLimit=400),
            ),
            x=alt.X("jaccard:Q", title="Mean Jaccard similarity", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "class:N",
                title="Stability",
                scale=alt.Scale(domain=classes, range=["#1a9850", "#91cf60", "#fdae61", "#d73027"]),
            ),
            tooltip=["segment", alt.Tooltip("jaccard:Q", format=".3f"), "class"],
        )
    )
    thresholds = (
        alt.Chart(pl.DataFrame({"threshold": [0.6, 0.75, 0.85]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(x="threshold:Q")
    )
    chart: alt.TopLevelMixin = alt.layer(bars, thresholds).properties(
        title=alt.Title(
            "Stability of each segment",
            subtitle="below 0.6 unstable, 0.6-0.75 doubtful, 0.75-0.85 stable, above 0.85 highly stable",
        ),
        width=size.width,
        height=max(size.height // 2, 30 * segments.height),
    )
    return chart


def silhouette_chart(
    assignments: pl.DataFrame, segments: pl.DataFrame, size: VisualizeConfig
) -> alt.TopLevelMixin:
    """Per-customer silhouette at the chosen k, sorted within each segment, segments stacked.

    Beyond `SILHOUETTE_BARS` customers, each segment shows evenly spaced values of its sorted
    silhouettes (its quantiles), in proportion to its size: the same shape, a bounded chart.
    """
    rows = _labelled(assignments.select("customer_id", "segment_id", "silhouette"), segments).sort(
        ["segment_id", "silhouette"], descending=[False, True]
    )
    if rows.height > SILHOUETTE_BARS:
        # Every segment keeps its best customer, plus its share of the remaining bars.
        share = (SILHOUETTE_BARS - segments.height) / rows.height
        rank = pl.int_range(pl.len()).over("segment_id")
        rows = rows.filter((rank == 0) | (((rank + 1) * share).floor() != (rank * share).floor()))
    gap = max(2, rows.height // 50)
    positions = (rows["segment_id"].cast(pl.Int64) * gap).to_numpy() + np.arange(rows.height)
    rows = rows.with_columns(
        pl.Series("position", positions), pl.col("silhouette").round_sig_figs(4)
    ).select("customer_id", "segment_id", "silhouette", "position")
    mean = float(assignments["silhouette"].mean())  # type: ignore[arg-type]
    bars = _pickable(
        _named(alt.Chart(rows), segments)
        .mark_bar(orient="horizontal", height=alt.RelativeBandSize(1.0))
        .encode(
            y=alt.Y("position:O", axis=None, title=None),
            x=alt.X(
                "silhouette:Q", title="Silhouette of each customer", scale=alt.Scale(domain=[-1, 1])
            ),
            color=_segment_color(segments),
            tooltip=["customer_id", "segment:N", alt.Tooltip("silhouette:Q", format=".3f")],
        )
    )
    average = (
        alt.Chart(pl.DataFrame({"mean": [mean]}))
        .mark_rule(color=CHOSEN_COLOR, strokeDash=[6, 4])
        .encode(x="mean:Q")
    )
    return alt.layer(bars, average).properties(
        title=alt.Title(
            "Silhouette of every customer",
            subtitle=f"mean {mean:.3f} (red line); bars below 0 sit closer to another segment",
        ),
        width=size.width,
        height=max(size.height, 300),
    )


def _scatter(
    points: pl.DataFrame,
    centroids: pl.DataFrame,
    axes: dict[str, str],
    segments: pl.DataFrame,
    size: VisualizeConfig,
    title: str,
) -> alt.TopLevelMixin:
    """Customers as dots and centroids as crosses; `axes` maps the x and y columns to titles."""
    (x, x_title), (y, y_title) = axes.items()
    dots = _pickable(
        _named(alt.Chart(points), segments)
        .mark_circle(size=45, opacity=0.75)
        .encode(
            x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(zero=False)),
            y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=_segment_color(segments),
            tooltip=[
                "customer_id",
                "segment:N",
                alt.Tooltip(f"{x}:Q", format=".2f"),
                alt.Tooltip(f"{y}:Q", format=".2f"),
            ],
        )
    )
    marks = (
        alt.Chart(centroids)
        .mark_point(shape="cross", size=260, filled=True, color="black", strokeWidth=1)
        .encode(x=f"{x}:Q", y=f"{y}:Q", tooltip=["segment"])
    )
    return alt.layer(dots, marks).properties(
        title=alt.Title(title, subtitle="crosses mark the segment centroids"),
        width=size.width,
        height=size.height + 60,
    )


def _strip_chart(
    points: pl.DataFrame, column: str, title: str, segments: pl.DataFrame, size: VisualizeConfig
) -> alt.TopLevelMixin:
    """Customers of each segment along the one clustered column, centroids as black ticks."""
    order = _segment_labels(segments)
    y = alt.Y("segment:N", title=None, sort=order, axis=alt.Axis(labelLimit=400))
    ticks = _pickable(
        _named(alt.Chart(points.select(ID, "segment_id", column)), segments)
        .mark_tick(thickness=2, opacity=0.6)
        .encode(
            x=alt.X(f"{column}:Q", title=title, scale=alt.Scale(zero=False)),
            y=y,
            color=_segment_color(segments),
            tooltip=["customer_id", "segment:N", column],
        )
    )
    centroids = _labelled(
        segments.select("segment_id", pl.col(f"centroid_{column}").alias(column)), segments
    )
    marks = (
        alt.Chart(centroids)
        .mark_tick(color="black", thickness=4, size=30)
        .encode(x=f"{column}:Q", y=y, tooltip=["segment", column])
    )
    chart: alt.TopLevelMixin = alt.layer(ticks, marks).properties(
        title=alt.Title(
            "Segments", subtitle="each tick is a customer; black ticks mark the centroids"
        ),
        width=size.width,
        height=max(size.height // 2, 40 * segments.height),
    )
    return chart


def scatter_chart(
    customers: pl.DataFrame,
    assignments: pl.DataFrame,
    segments: pl.DataFrame,
    model: dict[str, Any],
    matrix: np.ndarray,
    schema: TableSchema,
    size: VisualizeConfig,
    seed: int,
) -> alt.TopLevelMixin:
    """One numeric feature: its values per segment. Two: those two in the data's units.

    More, or any categorical feature: a PCA projection of the scaled data.
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
    components, mean, explained = principal_components(matrix)
    projected = (matrix - mean) @ components.T
    centres = (np.asarray(model["centroids_scaled"]) - mean) @ components.T
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
        means = segments[f"mean_{name}"].to_numpy()
        return float(np.std(means) / (population[name]["std"] or 1.0))

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
) -> alt.TopLevelMixin:
    """Every pair of the given numeric columns (the lower triangle of their scatter matrix), in the
    data's units, axes titled by label; log1p columns on a symmetric log scale, as K-Means sees
    them."""
    joined = _measured(customers, schema).with_columns(assignments["segment_id"])
    points = _points(
        joined.select(ID, "segment_id", *columns), min(size.max_points, PAIRWISE_POINTS), seed
    )
    side = max(120, size.width // max(1, len(columns) - 1))

    def axis(name: str) -> dict[str, Any]:
        column = schema.column(name)
        scale = alt.Scale(type="symlog") if column.transform == "log1p" else alt.Scale(zero=False)
        return {"field": name, "type": "quantitative", "title": column.axis_title, "scale": scale}

    def cell(x: str, y: str) -> alt.Chart:
        chart: alt.Chart = (
            _named(alt.Chart(points), segments)
            .mark_circle(size=25)
            .encode(
                x=alt.X(**axis(x)),
                y=alt.Y(**axis(y)),
                color=_segment_color(segments),
                tooltip=[
                    ID,
                    "segment:N",
                    alt.Tooltip(x, format=",.4~g"),
                    alt.Tooltip(y, format=",.4~g"),
                ],
            )
            .properties(width=side, height=side)
        )
        return _pickable(chart)

    with _one_selection():
        rows = [
            alt.hconcat(*[cell(x, y) for x in columns[:row]])
            for row, y in enumerate(columns)
            if row
        ]
        matrix: alt.TopLevelMixin = alt.vconcat(*rows).properties(
            title="Segments across every pair of features"
        )
    return matrix


def profile_chart(
    segments: pl.DataFrame,
    population: dict[str, Any],
    schema: TableSchema,
    size: VisualizeConfig,
) -> alt.TopLevelMixin:
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
    order = _segment_labels(segments)
    base = alt.Chart(cells).encode(
        x=alt.X(
            "column:N",
            title=None,
            sort=list(dict.fromkeys(cells["column"])),
            axis=alt.Axis(labelAngle=-40 if len(measures) > 4 else 0, labelLimit=160),
        ),
        y=alt.Y("segment:N", title=None, sort=order, axis=alt.Axis(labelLimit=400)),
    )
    heat = _pickable(base.mark_rect()).encode(
        color=alt.Color(
            "z:Q",
            title="SDs from the average customer",
            scale=alt.Scale(scheme="redblue", domain=[-2, 2], reverse=True, clamp=True),
        ),
        tooltip=["segment", "column", "value", alt.Tooltip("z:Q", format=".2f")],
    )
    text = base.mark_text(fontSize=11).encode(text="value:N")
    return alt.layer(heat, text).properties(
        title=alt.Title(
            "Segment profiles",
            subtitle="mean per segment; color: above (red) or below (blue) the average customer",
        ),
        width=max(size.width, 60 * min(len(measures), PROFILE_COLUMNS)),
        height=max(size.height // 2, 36 * segments.height),
    )


def _short(value: float) -> str:
    """A mean as it fits in a heatmap cell: 3 significant digits, thousands as k, millions as M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def categories_chart(
    profiles: pl.DataFrame, segments: pl.DataFrame, schema: TableSchema, size: VisualizeConfig
) -> alt.TopLevelMixin:
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
    order = _segment_labels(segments)
    base = alt.Chart(rows).encode(
        y=alt.Y("category:N", title=None, axis=alt.Axis(labelLimit=200)),
        yOffset=alt.YOffset("segment:N", sort=order),
    )
    bars = _pickable(
        base.mark_bar().encode(
            x=alt.X("value:Q", title="Share of the segment", axis=alt.Axis(format="%")),
            color=_segment_color(segments),
            tooltip=[
                "segment",
                "column",
                "category",
                alt.Tooltip("value:Q", format=".1%", title="share of the segment"),
                alt.Tooltip("everyone:Q", format=".1%", title="share of all customers"),
            ],
        )
    )
    everyone = base.mark_tick(color="black", thickness=2).encode(
        x="everyone:Q", yOffset=alt.value(0)
    )
    chart: alt.TopLevelMixin = (
        alt.layer(bars, everyone, data=rows)
        .properties(width=size.width, height=alt.Step(8))
        .facet(
            row=alt.Row("column:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left"))
        )
        .resolve_scale(y="independent")
        .properties(
            title=alt.Title(
                "Categories in each segment",
                subtitle="bars: share of the segment; black ticks: share of all customers",
            )
        )
    )
    return chart


def sizes_chart(segments: pl.DataFrame, size: VisualizeConfig) -> alt.TopLevelMixin:
    rows = _labelled(segments.select("segment_id", "size", "share"), segments).with_columns(
        (
            pl.col("size").cast(pl.String)
            + " ("
            + (pl.col("share") * 100).round(1).cast(pl.String)
            + "%)"
        ).alias("label")
    )
    order = _segment_labels(segments)
    base = alt.Chart(rows).encode(
        y=alt.Y("segment:N", title=None, sort=order, axis=alt.Axis(labelLimit=400)),
        x=alt.X("size:Q", title="Customers"),
    )
    bars = _pickable(base.mark_bar()).encode(
        color=alt.Color("segment:N", scale=alt.Scale(domain=order, scheme="tableau10"), legend=None)
    )
    labels = base.mark_text(align="left", dx=4).encode(text="label:N")
    return alt.layer(bars, labels).properties(
        title="Segment sizes", width=size.width, height=max(size.height // 2, 30 * segments.height)
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
        np.pi - 2 * np.pi * points[:row].count(point) / points.count(point)
        for row, point in enumerate(points)
    ]
    radius = [GRID_SPREAD if points.count(point) > 1 else 0.0 for point in points]
    return rows.with_columns(
        (pl.col("x_median") + pl.Series(np.cos(angles) * np.array(radius))).round(3).alias("x"),
        (pl.col("y_median") + pl.Series(np.sin(angles) * np.array(radius))).round(3).alias("y"),
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
) -> alt.TopLevelMixin:
    """The score grid (R across, F up, or the naming grid's scores), its named regions shaded,
    each segment a circle at its customers' median scores, its area proportional to its size."""
    scores = rfm_scores()
    names = list(scores)
    x, y = (grid.x, grid.y) if grid is not None else (names[0], names[1])
    largest = max(int(segments["size"].max() or 1), 1)  # type: ignore[arg-type]
    low, high = SCORES[0] - 0.5, SCORES[-1] + 0.5
    scale = alt.Scale(domain=[low, high], nice=False, zero=False)
    axis = alt.Axis(values=list(SCORES), format="d", grid=False, tickSize=0, domain=False)
    extra = [name for name in names if f"median_{name}" in segments.columns]
    points = _labelled(
        grid_positions(segments, x, y).join(
            segments.select("segment_id", *[f"median_{name}" for name in extra]),
            on="segment_id",
        ),
        segments,
    )
    layers: list[alt.Chart] = []
    if grid is not None:
        regions = alt.Chart(_grid_regions(grid))
        layers.append(
            regions.mark_rect(fill="#eef1f5", stroke="white", strokeWidth=4).encode(
                x=alt.X("x0:Q", scale=scale, title=_score_title(x, schema), axis=axis),
                x2="x1:Q",
                y=alt.Y("y0:Q", scale=scale, title=_score_title(y, schema), axis=axis),
                y2="y1:Q",
                tooltip=[alt.Tooltip("region:N", title="grid cell")],
            )
        )
        layers.append(
            regions.mark_text(
                align="left", baseline="top", dx=6, dy=6, fontSize=11, color="#56606b"
            ).encode(x="x0:Q", y="y1:Q", text="region:N")
        )
    circles = _pickable(
        alt.Chart(points)
        .mark_circle(stroke="white", strokeWidth=1.5)
        .encode(
            x=alt.X("x:Q", scale=scale, title=_score_title(x, schema), axis=axis),
            y=alt.Y("y:Q", scale=scale, title=_score_title(y, schema), axis=axis),
            size=alt.Size(
                "size:Q",
                title="Customers",
                scale=alt.Scale(domain=[0, largest], range=[0, GRID_AREA]),
                legend=None,
            ),
            color=_segment_color(segments),
            tooltip=[
                "segment:N",
                alt.Tooltip("size:Q", title="customers", format=","),
                *[
                    alt.Tooltip(
                        f"median_{name}:Q", title=f"median {scores[name].get('label', name)}"
                    )
                    for name in extra
                ],
            ],
        )
    )
    ids = (
        alt.Chart(points)
        .mark_text(fontSize=11, fontWeight="bold", color="white")
        .encode(x="x:Q", y="y:Q", text="segment_id:N")
    )
    layers += [circles, ids]
    shaded = "shaded: the cells of the naming grid" if grid is not None else "no naming grid"
    subtitle = (
        f"each circle is a segment at its customers' median scores (area: customers); {shaded}"
    )
    chart: alt.TopLevelMixin = alt.layer(*layers).properties(
        title=alt.Title("Segments on the RFM grid", subtitle=subtitle),
        width=GRID_SIDE,
        height=GRID_SIDE,
    )
    return chart


def chart_spec(name: str, title: str, chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec, with its accessible description and the page's highlight."""
    with _one_selection():
        spec = chart.to_dict(validate=False)  # as in _unchecked
    # Vega reads the description out as the chart's accessible name.
    spec["description"] = f"{title}: {CHART_GUIDE[name][1]}" if name in CHART_GUIDE else title
    if '"name": "pick"' in json.dumps(spec):
        # Declared at the top level so that the page can set it in every chart at once.
        spec["params"] = [{"name": HIGHLIGHT, "value": None}, *spec.get("params", [])]
    return spec


def render_all(
    charts: Iterable[tuple[str, str, alt.TopLevelMixin]],
    png_scale: float,
    with_images: bool = True,
    workers: int | None = None,
) -> list[RenderedChart]:
    """Every chart's Vega-Lite spec, and its SVG and PNG images when asked for.

    Parameters
    ----------
    charts : iterable of (name, title, chart)
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
        with _unchecked():
            return [
                RenderedChart(name, title, chart_spec(name, title, chart), png=None, svg=None)
                for name, title, chart in charts
            ]
    pending = []
    with images.Drawer(png_scale, workers) as drawer:
        with _unchecked():
            for name, title, chart in charts:
                spec = chart_spec(name, title, chart)
                pending.append((name, title, spec, drawer.submit(name, spec)))
        rendered = []
        for name, title, spec, future in pending:
            svg, png = future.result()
            rendered.append(RenderedChart(name, title, spec, png=png, svg=svg))
    return rendered
