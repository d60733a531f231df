"""Stage 3: canonical segment ids, profiles, names, actions and labelling with a saved model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import mall_schema
from segmentation.cluster import (
    Segmentation,
    assign_segments,
    distinguishing_traits,
    name_segments,
    profile_segments,
    segment_customers,
    suggest_actions,
)
from segmentation.config import ClusterConfig
from segmentation.errors import DataError
from segmentation.kmeans import canonical_ids
from segmentation.model import MODEL_FORMAT, SegmentModel, load_model
from segmentation.schema import ColumnSpec, TableSchema
from segmentation.vocabulary import load_vocabulary

FAST = ClusterConfig(n_init=4)
POPULATION = {
    name: {"mean": mean, "std": std, "feature_mean": mean, "feature_std": std, "median": mean}
    for name, mean, std in (
        ("age", 40.0, 10.0),
        ("annual_income", 50.0, 20.0),
        ("spending_score", 50.0, 20.0),
    )
}
MALL = load_vocabulary("mall", Path(), {"gender", "age", "annual_income", "spending_score"})
SMALL_CENTERS = ((20.0, 20.0), (80.0, 80.0), (80.0, 20.0))
SMALL_SIZES = (12, 9, 6)


def segment(
    featurize: Callable[..., Any],
    customers: pl.DataFrame,
    k: int,
    features: tuple[str, ...] = ("annual_income", "spending_score"),
) -> Segmentation:
    bundle = featurize(customers, features)
    return segment_customers(
        customers=customers,
        matrix=bundle.matrix,
        unscaled=bundle.unscaled,
        scaler=bundle.scaler,
        schema=bundle.schema,
        k=k,
        config=FAST,
        population=bundle.population,
        category_shares=bundle.category_shares,
        vocabulary=MALL,
    )


def profile(rows: list[dict[str, float]]) -> pl.DataFrame:
    """A hand-made segment profile; unspecified means sit at the population mean."""
    records = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {"segment_id": i}
        for name in ("age", "annual_income", "spending_score"):
            record[f"mean_{name}"] = record[f"level_{name}"] = row.get(
                name, POPULATION[name]["mean"]
            )
            record[f"median_{name}"] = record[f"mean_{name}"]
        female = float(row.get("female_share", 0.5))
        record["top_gender"] = "Female" if female >= 0.5 else "Male"
        record["top_gender_share"] = max(female, 1 - female)
        records.append(record)
    return pl.DataFrame(records)


@pytest.fixture(scope="module")
def four(featurize: Callable[..., Any], blobs4: pl.DataFrame) -> Segmentation:
    return segment(featurize, blobs4, 4)


# --- canonical ids ------------------------------------------------------------------------------


def test_canonical_ids_put_the_largest_segment_first() -> None:
    labels = np.array([0, 1, 1, 1, 2, 2])
    centroids = np.array([[1.0], [2.0], [3.0]])
    assert canonical_ids(labels, centroids).tolist() == [2, 0, 1]


def test_canonical_ids_break_size_ties_by_centroid() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    centroids = np.array([[5.0, 5.0], [1.0, 9.0], [0.0, 0.0]])
    assert canonical_ids(labels, centroids).tolist() == [1, 0, 2]


def test_segments_are_numbered_by_size(four: Segmentation) -> None:
    assert four.segments.select("segment_id", "size").rows() == [(0, 40), (1, 35), (2, 30), (3, 25)]


def test_centroids_are_in_original_units(four: Segmentation) -> None:
    centroids = four.segments.select("centroid_annual_income", "centroid_spending_score").rows()
    expected = [(20, 20), (20, 80), (80, 20), (80, 80)]
    assert np.allclose(centroids, expected, atol=2.0)


def test_ids_are_stable_under_a_row_shuffle(
    featurize: Callable[..., Any], blobs4: pl.DataFrame, four: Segmentation
) -> None:
    shuffled = blobs4[np.random.RandomState(7).permutation(blobs4.height).tolist()]
    again = segment(featurize, shuffled, 4)
    assert again.segments.select("segment_id", "name", "size").equals(
        four.segments.select("segment_id", "name", "size")
    )


def test_customer_mapping_is_stable_under_a_row_shuffle(
    featurize: Callable[..., Any], blobs4: pl.DataFrame, four: Segmentation
) -> None:
    shuffled = blobs4[np.random.RandomState(7).permutation(blobs4.height).tolist()]
    again = segment(featurize, shuffled, 4)
    by_id = ["customer_id", "segment_id", "segment_name"]
    assert (
        again.assignments.select(by_id)
        .sort("customer_id")
        .equals(four.assignments.select(by_id).sort("customer_id"))
    )


@settings(max_examples=10, deadline=None)
@given(order=st.permutations(range(sum(SMALL_SIZES))))
def test_ids_and_sizes_do_not_depend_on_row_order(
    featurize: Callable[..., Any], make_blobs: Callable[..., pl.DataFrame], order: list[int]
) -> None:
    customers = make_blobs(SMALL_CENTERS, SMALL_SIZES, seed=3)
    result = segment(featurize, customers[list(order)], 3)
    assert result.segments["size"].to_list() == list(SMALL_SIZES)
    mapping = dict(result.assignments.select("customer_id", "segment_id").iter_rows())
    # Customers were generated group by group, largest group first.
    expected = [i for i, size in enumerate(SMALL_SIZES) for _ in range(size)]
    assert [mapping[c] for c in customers["customer_id"]] == expected


# --- profiles, names and actions ----------------------------------------------------------------


def test_profile_counts_and_shares(blobs3: pl.DataFrame) -> None:
    ids = np.array([0] * 40 + [1] * 30 + [2] * 20)
    result = profile_segments(blobs3, ids, mall_schema())
    assert result["size"].to_list() == [40, 30, 20]
    assert result["share"].sum() == pytest.approx(1.0)


def test_profile_means_cover_every_numeric_column(blobs3: pl.DataFrame) -> None:
    result = profile_segments(blobs3, np.zeros(blobs3.height, dtype=int), mall_schema())
    assert result["mean_age"][0] == pytest.approx(blobs3["age"].mean())
    assert result["median_spending_score"][0] == pytest.approx(blobs3["spending_score"].median())
    top = blobs3["gender"].value_counts().sort("count", descending=True)
    assert result["top_gender"][0] == top["gender"][0]
    assert result["top_gender_share"][0] == pytest.approx(top["count"][0] / blobs3.height)


def test_high_income_low_spending_group_is_named_so(four: Segmentation) -> None:
    row = four.segments.filter(
        (pl.col("centroid_annual_income") > 50) & (pl.col("centroid_spending_score") < 50)
    )
    assert row["name"].to_list() == ["High income · Low spending"]


def test_names_follow_the_levels_of_every_group(four: Segmentation) -> None:
    assert four.segments["name"].to_list() == [
        "Low income · Low spending",
        "Low income · High spending",
        "High income · Low spending",
        "High income · High spending",
    ]


def test_names_follow_the_feature_order() -> None:
    names = name_segments(
        profile([{"annual_income": 90, "spending_score": 10}]),
        mall_schema(("spending_score", "annual_income")),
        POPULATION,
        MALL,
    )
    assert names == ["Low spending · High income"]


def test_half_an_sd_separates_mid_from_high() -> None:
    names = name_segments(
        profile([{"annual_income": 59.9}, {"annual_income": 60.0}]),
        mall_schema(("annual_income",)),
        POPULATION,
        MALL,
    )
    assert names == ["Mid income", "High income"]


def test_age_and_gender_have_their_own_words() -> None:
    names = name_segments(
        profile([{"age": 25, "female_share": 0.95}, {"age": 60, "female_share": 0.2}]),
        mall_schema(("gender", "age")),
        POPULATION,
        MALL,
    )
    assert names == ["Female · Younger", "Mostly male · Older"]


def test_clashing_names_get_finer_levels() -> None:
    names = name_segments(
        profile([{"annual_income": 62}, {"annual_income": 80}, {"annual_income": 20}]),
        mall_schema(),
        POPULATION,
        MALL,
    )
    assert names == [
        "High income · Mid spending",
        "Very high income · Mid spending",
        "Low income · Mid spending",
    ]


def test_names_still_clashing_get_their_mean_values() -> None:
    names = name_segments(
        profile([{"annual_income": 62}, {"annual_income": 64}, {"annual_income": 20}]),
        mall_schema(),
        POPULATION,
        MALL,
    )
    assert names == [
        "High income · Mid spending (annual income 62.0, spending score (1-100) 50.0)",
        "High income · Mid spending (annual income 64.0, spending score (1-100) 50.0)",
        "Low income · Mid spending",
    ]


def test_names_are_unique_within_a_run(featurize: Callable[..., Any], make_blobs: Any) -> None:
    # Six groups along income alone: three low, mid, high levels cannot tell them apart.
    centers = [(x, 50.0) for x in (10.0, 25.0, 40.0, 60.0, 75.0, 90.0)]
    customers = make_blobs(centers, [30, 28, 26, 24, 22, 20], spread=1.5)
    names = segment(featurize, customers, 6, ("annual_income",)).segments["name"].to_list()
    assert len(set(names)) == 6


def test_actions_follow_income_and_spending() -> None:
    actions = suggest_actions(
        profile(
            [
                {"annual_income": 90, "spending_score": 90, "age": 40},
                {"annual_income": 10, "spending_score": 90, "age": 20},
            ]
        ),
        POPULATION,
        MALL,
    )
    assert actions[0] is not None and actions[1] is not None
    assert actions[0].startswith("Premium loyalty")
    assert actions[1].startswith("Reward with care")
    assert actions[1].endswith("Reach them on social and mobile channels.")


# --- outputs and labelling ----------------------------------------------------------------------


def test_every_customer_is_assigned_once(four: Segmentation, blobs4: pl.DataFrame) -> None:
    assert four.assignments["customer_id"].to_list() == blobs4["customer_id"].to_list()


def test_silhouettes_are_high_for_separated_groups(four: Segmentation) -> None:
    assert four.assignments["silhouette"].min() > 0.5


def test_model_is_plain_json(four: Segmentation) -> None:
    model = json.loads(json.dumps(four.model.to_json(), allow_nan=False))
    assert (model["format"], model["k"], len(model["centroids_scaled"])) == (MODEL_FORMAT, 4, 4)
    assert [c["name"] for c in model["table"]["columns"]][:2] == ["customer_id", "gender"]


def test_the_model_reads_back_as_the_same_typed_object(four: Segmentation) -> None:
    data = json.loads(json.dumps(four.model.to_json()))
    assert load_model(Path("model.json"), data) == four.model


def test_a_model_whose_centroids_do_not_fit_its_columns_is_refused(four: Segmentation) -> None:
    data = json.loads(json.dumps(four.model.to_json()))
    data["centroids_scaled"][0] = [0.0]
    with pytest.raises(DataError, match=r"^model\.json: a damaged model \(centroids_scaled"):
        load_model(Path("model.json"), data)


def test_assign_segments_reproduces_the_training_assignments(
    featurize: Callable[..., Any], blobs4: pl.DataFrame, four: Segmentation
) -> None:
    model = SegmentModel.model_validate(json.loads(json.dumps(four.model.to_json())))
    labelled = assign_segments(blobs4, featurize(blobs4).unscaled, model)
    assert labelled.select("customer_id", "segment_id", "segment_name").equals(
        four.assignments.select("customer_id", "segment_id", "segment_name")
    )


def test_assign_segments_reproduces_the_distances(
    featurize: Callable[..., Any], blobs4: pl.DataFrame, four: Segmentation
) -> None:
    labelled = assign_segments(blobs4, featurize(blobs4).unscaled, four.model)
    np.testing.assert_allclose(
        labelled["distance_to_centroid"].to_numpy(),
        four.assignments["distance_to_centroid"].to_numpy(),
    )


def test_assign_segments_labels_new_customers(blobs4: pl.DataFrame, four: Segmentation) -> None:
    new = pl.DataFrame({"customer_id": ["rich-frugal"], "gender": ["Male"], "age": [40.0]})
    unscaled = np.array([[85.0, 15.0]])
    labelled = assign_segments(new, unscaled, four.model)
    assert labelled["segment_name"].to_list() == ["High income · Low spending"]


# --- any table: names from labels, traits instead of actions ------------------------------------

WHOLESALE = TableSchema(
    columns=(
        ColumnSpec(name="grocery", type="numeric", label="Grocery", transform="log1p"),
        ColumnSpec(name="fresh", type="numeric", label="Fresh"),
        ColumnSpec(name="channel", type="categorical", label="Channel"),
    ),
    features=("grocery", "fresh", "channel"),
    categories={"channel": ("Horeca", "Retail")},
)


def wholesale_profile() -> tuple[pl.DataFrame, dict[str, dict[str, float]]]:
    """Two segments: high grocery, low fresh, mostly retail; and the opposite, all Horeca."""
    customers = pl.DataFrame(
        {
            "grocery": [9000.0] * 8 + [200.0] * 12,
            "fresh": [1000.0] * 8 + [9000.0] * 12,
            "channel": ["Retail"] * 6 + ["Horeca"] * 2 + ["Horeca"] * 12,
        }
    )
    ids = np.array([0] * 8 + [1] * 12)
    from segmentation.prepare import population

    return profile_segments(customers, ids, WHOLESALE), population(customers, WHOLESALE)


def test_without_a_vocabulary_names_come_from_the_labels() -> None:
    profiled, population = wholesale_profile()
    names = name_segments(profiled, WHOLESALE, population)
    assert names == [
        "High Grocery · Low Fresh · Mostly Retail",
        "Low Grocery · High Fresh · Horeca",
    ]


def test_levels_of_a_log1p_column_are_read_as_k_means_sees_it() -> None:
    profiled, population = wholesale_profile()
    assert profiled["level_grocery"][0] == pytest.approx(np.log1p(9000.0))
    assert population["grocery"]["feature_mean"] == pytest.approx(
        (8 * np.log1p(9000.0) + 12 * np.log1p(200.0)) / 20
    )


def test_traits_name_the_columns_furthest_from_everyone_in_data_units() -> None:
    profiled, population = wholesale_profile()
    categories = pl.DataFrame(
        {
            "segment_id": [0, 0, 1, 1],
            "column": ["channel"] * 4,
            "category": ["Horeca", "Retail"] * 2,
            "value": [0.25, 0.75, 1.0, 0.0],
            "everyone": [0.7, 0.3, 0.7, 0.3],
        }
    )
    traits = distinguishing_traits(profiled, categories, WHOLESALE, population)
    assert traits[0].startswith("Grocery: median 9,000 (all customers 200)")
    assert "Channel Retail: 75% (all customers 30%)" in traits[0]
    assert len(traits[0].split("; ")) == 3
