"""Stage 4: chart specs (Vega-Lite) and their PNG and SVG renderings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytest

from conftest import validate_vega_lite
from segmentation import visualize
from segmentation.cluster import segment_customers
from segmentation.config import ClusterConfig, KRule, VisualizeConfig
from segmentation.schema import ColumnSpec, TableSchema
from segmentation.select_k import choose_k, sweep
from segmentation.vocabulary import load_vocabulary

if TYPE_CHECKING:
    from conftest import VersionedProject

FAST = ClusterConfig(n_init=4)
SIZE = VisualizeConfig(width=200, height=150, png_scale=1.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Run:
    customers: pl.DataFrame
    matrix: Any
    selection: dict[str, Any]
    segments: pl.DataFrame
    assignments: pl.DataFrame
    model: dict[str, Any]
    schema: TableSchema
    profiles: pl.DataFrame
    population: dict[str, dict[str, float]]


def _run(featurize: Callable[..., Any], customers: pl.DataFrame, features: tuple[str, ...]) -> Run:
    bundle = featurize(customers, features)
    selection = choose_k(sweep(bundle.matrix, range(2, 7), FAST)[0], KRule.SILHOUETTE, None)
    known = {c.name for c in bundle.schema.columns if c.type != "id"}
    result = segment_customers(
        customers,
        bundle.matrix,
        bundle.unscaled,
        bundle.scaler,
        bundle.schema,
        selection["chosen_k"],
        FAST,
        bundle.population,
        bundle.category_shares,
        vocabulary=load_vocabulary("mall", Path(), known),
    )
    # The charts read these back from JSON files: give them JSON-shaped data.
    return Run(
        customers=customers,
        matrix=bundle.matrix,
        selection=json.loads(json.dumps(selection)),
        segments=result.segments,
        assignments=result.assignments,
        model=json.loads(json.dumps(result.model.to_json())),
        schema=bundle.schema,
        profiles=result.profiles,
        population=bundle.population,
    )


@pytest.fixture(scope="module")
def run2(featurize: Callable[..., Any], blobs4: pl.DataFrame) -> Run:
    return _run(featurize, blobs4, ("annual_income", "spending_score"))


@pytest.fixture(scope="module")
def elbow(run2: Run) -> visualize.RenderedChart:
    chart = visualize.elbow_chart(run2.selection, SIZE)
    return visualize.render_all([("elbow", "Elbow", chart)], 1.0, workers=1)[0]


def scatter(run: Run) -> dict[str, Any]:
    return visualize.scatter_chart(
        run.customers,
        run.assignments,
        run.segments,
        run.model,
        pl.from_numpy(run.matrix),
        run.schema,
        SIZE,
        seed=42,
    )


def test_png_starts_with_the_png_signature(elbow: visualize.RenderedChart) -> None:
    assert elbow.png.startswith(PNG_MAGIC)


def test_svg_is_svg_text(elbow: visualize.RenderedChart) -> None:
    assert elbow.svg.lstrip().startswith("<svg")
    assert elbow.svg.rstrip().endswith("</svg>")


def test_spec_names_the_vega_lite_schema(elbow: visualize.RenderedChart) -> None:
    assert elbow.spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


def test_spec_validates_against_the_vega_lite_schema(elbow: visualize.RenderedChart) -> None:
    validate_vega_lite(elbow.spec)


def every_chart(run: Run) -> list[tuple[str, str, Any]]:
    """The charts the visualize stage draws for a customer table (stages.chart_builders), but
    those of the gap statistic and the bootstrap, which the sweep alone does not compute."""
    numeric = visualize.pairwise_columns(run.segments, run.population, run.schema)
    return [
        ("elbow", "Elbow", visualize.elbow_chart(run.selection, SIZE)),
        ("criteria", "Criteria", visualize.criteria_chart(run.selection, SIZE)),
        ("silhouette", "Silhouette", visualize.silhouette_chart(run.assignments, run.segments, SIZE)),
        ("segments", "Segments", scatter(run)),
        ("profiles", "Profiles", visualize.profile_chart(run.segments, run.population, run.schema, SIZE)),
        ("categories", "Categories", visualize.categories_chart(run.profiles, run.segments, run.schema, SIZE)),
        ("sizes", "Sizes", visualize.sizes_chart(run.segments, SIZE)),
        ("pairwise", "Pairs", visualize.pairwise_chart(run.customers, run.assignments, run.segments, numeric, run.schema, SIZE, seed=42)),
    ]  # fmt: skip


@pytest.mark.parametrize("features", [("annual_income", "spending_score"), ("gender", "age", "annual_income", "spending_score")])  # fmt: skip
def test_every_chart_is_valid_vega_lite(
    featurize: Callable[..., Any], blobs4: pl.DataFrame, features: tuple[str, ...]
) -> None:
    # The specs are built as plain data, unchecked: the Vega-Lite schema is checked here.
    run = _run(featurize, blobs4, features)
    rendered = visualize.render_all(every_chart(run), 1.0, with_images=False)
    assert all(chart.png is None and chart.svg is None for chart in rendered)
    for chart in rendered:
        validate_vega_lite(chart.spec)


def test_every_chart_a_run_writes_is_valid_vega_lite(versioned_project: VersionedProject) -> None:
    charts = versioned_project.root / "artifacts" / versioned_project.a / "charts"
    specs = sorted(charts.glob("*.vl.json"))
    assert {path.name.removesuffix(".vl.json") for path in specs} >= {"gap", "stability", "jaccard"}
    for path in specs:
        validate_vega_lite(json.loads(path.read_text(encoding="utf-8")))


def test_without_images_the_specs_are_the_same(run2: Run) -> None:
    charts = every_chart(run2)[:3]
    drawn = visualize.render_all(charts, 1.0, workers=1)
    specs_only = visualize.render_all(charts, 1.0, with_images=False)
    assert [c.spec for c in specs_only] == [c.spec for c in drawn]


def test_principal_components_are_those_of_scikit_learn(run2: Run) -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    reference = PCA(n_components=2, svd_solver="full").fit(matrix)
    components, mean, explained = visualize.principal_components(matrix)
    np.testing.assert_allclose(components, reference.components_, atol=1e-12)
    np.testing.assert_allclose(explained, reference.explained_variance_ratio_, atol=1e-12)
    np.testing.assert_allclose(
        (matrix - mean) @ components.T, reference.transform(matrix), atol=1e-9
    )


def test_worker_processes_draw_the_same_images_as_one_process(run2: Run) -> None:
    charts = [
        ("elbow", "Elbow", visualize.elbow_chart(run2.selection, SIZE)),
        ("criteria", "Criteria against k", visualize.criteria_chart(run2.selection, SIZE)),
        ("sizes", "Segment sizes", visualize.sizes_chart(run2.segments, SIZE)),
    ]
    here = visualize.render_all(charts, 1.0, workers=1)
    workers = visualize.render_all(charts, 1.0, workers=2)
    assert [c.name for c in workers] == ["elbow", "criteria", "sizes"]
    assert [(c.spec, c.svg, c.png) for c in workers] == [(c.spec, c.svg, c.png) for c in here]


def test_spec_is_json(elbow: visualize.RenderedChart) -> None:
    assert json.loads(json.dumps(elbow.spec, allow_nan=False)) == elbow.spec


def test_elbow_marks_the_knee(run2: Run) -> None:
    knee, chosen = run2.selection["knee_k"], run2.selection["chosen_k"]
    spec = visualize.elbow_chart(run2.selection, SIZE)
    assert knee is not None
    assert spec["title"]["subtitle"] == f"knee at k={knee} (diamond); chosen k={chosen} (red line)"
    assert any(layer["mark"].get("shape") == "diamond" for layer in spec["layer"])


def test_elbow_says_when_there_is_no_knee(run2: Run) -> None:
    spec = visualize.elbow_chart({**run2.selection, "knee_k": None}, SIZE)
    assert spec["title"]["subtitle"].startswith("no clear knee")
    assert len(spec["layer"]) == 2


def test_two_features_are_drawn_in_their_own_units(run2: Run) -> None:
    dots = scatter(run2)["layer"][0]["encoding"]
    assert (dots["x"]["field"], dots["y"]["field"]) == ("annual_income", "spending_score")


def test_more_features_are_drawn_on_principal_components(
    featurize: Callable[..., Any], blobs4: pl.DataFrame
) -> None:
    run = _run(featurize, blobs4, ("gender", "annual_income", "spending_score"))
    spec = scatter(run)
    assert spec["title"]["text"] == "Segments on the first two principal components"


def test_one_feature_is_drawn_as_strips(
    featurize: Callable[..., Any], blobs3: pl.DataFrame
) -> None:
    run = _run(featurize, blobs3, ("spending_score",))
    spec = scatter(run)
    assert spec["layer"][0]["mark"]["type"] == "tick"


def test_segment_legend_lists_segments_in_id_order(run2: Run) -> None:
    spec = visualize.sizes_chart(run2.segments, SIZE)
    domain = spec["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert domain == [f"{i} · {name}" for i, name in enumerate(run2.segments["name"])]


def test_silhouette_chart_draws_every_customer_of_a_small_run(run2: Run) -> None:
    spec = visualize.silhouette_chart(run2.assignments, run2.segments, SIZE)
    rows = [data for data in spec["datasets"].values() if data and "position" in data[0]]
    assert len(rows) == 1
    assert len(rows[0]) == run2.assignments.height


def test_silhouette_chart_keeps_each_segments_share_when_bounded(run2: Run) -> None:
    many = pl.concat([run2.assignments] * 40).with_columns(
        pl.int_range(pl.len()).cast(pl.String).alias("customer_id")
    )
    spec = visualize.silhouette_chart(many, run2.segments, SIZE)
    (rows,) = [data for data in spec["datasets"].values() if data and "position" in data[0]]
    assert len(rows) <= visualize.SILHOUETTE_BARS
    shown = pl.DataFrame(rows)["segment_id"].value_counts().sort("segment_id")["count"].to_list()
    full = run2.assignments["segment_id"].value_counts().sort("segment_id")["count"].to_list()
    assert shown == pytest.approx([n * len(rows) / run2.assignments.height for n in full], abs=2)


def test_profile_chart_has_a_cell_per_segment_and_numeric_column(run2: Run) -> None:
    spec = visualize.profile_chart(run2.segments, run2.population, run2.schema, SIZE)
    (cells,) = spec["datasets"].values()
    assert len(cells) == 3 * run2.segments.height
    # Clustered columns first, titled by their declared labels and units.
    assert [c["column"] for c in cells[:3]] == [
        "Annual income (k$)",
        "Spending score (1-100)",
        "Age (years)",
    ]


def test_categories_chart_draws_each_segments_share_beside_everyones(run2: Run) -> None:
    spec = visualize.categories_chart(run2.profiles, run2.segments, run2.schema, SIZE)
    (rows,) = spec["datasets"].values()
    assert {row["category"] for row in rows} == {"Female", "Male"}
    assert {row["column"] for row in rows} == {"Gender"}
    assert len(rows) == 2 * run2.segments.height
    female = run2.customers["gender"].eq("Female").mean()
    assert all(
        row["everyone"] == pytest.approx(female) for row in rows if row["category"] == "Female"
    )


def test_pairwise_shows_at_most_five_columns_those_that_separate_most() -> None:
    names = [f"x{i}" for i in range(8)]
    schema = TableSchema(
        columns=tuple(ColumnSpec(name=n, type="numeric") for n in names), features=tuple(names)
    )
    # Segment means spread by i: the last five columns separate the segments most.
    segments = pl.DataFrame({f"mean_{n}": [0.0, float(i)] for i, n in enumerate(names)})
    population = {n: {"std": 1.0} for n in names}
    assert visualize.pairwise_columns(segments, population, schema) == names[3:]


def test_axes_are_titled_by_label_and_unit(run2: Run) -> None:
    dots = scatter(run2)["layer"][0]["encoding"]
    assert dots["x"]["title"] == "Annual income (k$)"
    assert dots["y"]["title"] == "Spending score (1-100)"


def test_customer_points_carry_the_segment_id_and_rounded_numbers(run2: Run) -> None:
    spec = scatter(run2)
    (points,) = [rows for rows in spec["datasets"].values() if rows and "customer_id" in rows[0]]
    assert set(points[0]) == {"customer_id", "segment_id", "annual_income", "spending_score"}
    lookup = spec["layer"][0]["transform"][0]
    assert lookup["lookup"] == "segment_id"
    labels = spec["datasets"][lookup["from"]["data"]["name"]]
    assert [v["segment"] for v in labels] == [
        f"{i} · {name}" for i, name in enumerate(run2.segments["name"])
    ]
