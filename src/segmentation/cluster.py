"""Stage 3, cluster: the final K-Means, canonical segment ids, profiles, names and actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import silhouette_samples

from segmentation.config import ClusterConfig
from segmentation.kmeans import canonical_ids, fit_from_labels, fit_kmeans
from segmentation.prepare import NUMERIC, Scaler

MODEL_FORMAT = "segmentation-model/1"
CHUNK_ROWS = 500_000
"""Customers per block when computing distances to every centroid."""
LEVEL_THRESHOLD = 0.5
"""A segment is 'high' or 'low' on a column when its mean is this many population SDs away."""
FINE_THRESHOLD = 1.0
"""Beyond this many SDs a level is 'very' high or low (used only to separate equal names)."""

LEVEL_WORDS: dict[str, tuple[str, str, str, str, str]] = {
    # very low, low, mid, high, very high
    "age": ("Youngest", "Younger", "Middle-aged", "Older", "Oldest"),
    "annual_income": (
        "Very low income",
        "Low income",
        "Mid income",
        "High income",
        "Very high income",
    ),
    "spending_score": (
        "Very low spending",
        "Low spending",
        "Mid spending",
        "High spending",
        "Very high spending",
    ),
}
ACTIONS: dict[tuple[int, int], str] = {
    # (income level, spending level), each -1 low, 0 mid, 1 high
    (1, 1): "Premium loyalty: VIP programme, early access to new collections and premium "
    "services; guard this group against churn.",
    (1, 0): "Upsell: premium ranges and personalised recommendations to lift spending "
    "towards their means.",
    (1, -1): "Win share of wallet: find out why they hold back; lead with quality and "
    "experience rather than discounts.",
    (0, 1): "Retain and reward: loyalty points and bundles that keep spending high.",
    (0, 0): "Mainstream: regular promotions and cross-selling; test offers that move them up.",
    (0, -1): "Activate: targeted offers and reminders that bring them back more often.",
    (-1, 1): "Reward with care: value bundles, loyalty points and affordable new lines; "
    "avoid pushing credit.",
    (-1, 0): "Value: everyday low prices and bundle deals.",
    (-1, -1): "Price-led: clearance events and value ranges; keep the cost of reaching them low.",
}
CHANNELS = {
    -1: " Reach them on social and mobile channels.",
    0: "",
    1: " Reach them by email, print and in-store events.",
}


@dataclass(frozen=True)
class Segmentation:
    segments: pl.DataFrame
    assignments: pl.DataFrame
    model: dict[str, Any]


def _level(z: float, fine: bool = False) -> int:
    """-1/0/1 for low/mid/high, or -2..2 when `fine` adds very low and very high."""
    if fine and abs(z) >= FINE_THRESHOLD:
        return 2 if z > 0 else -2
    if abs(z) >= LEVEL_THRESHOLD:
        return 1 if z > 0 else -1
    return 0


def profile_segments(customers: pl.DataFrame, segment_ids: np.ndarray) -> pl.DataFrame:
    """Size, share and the mean of every column for each segment, clustered or not."""
    total = customers.height
    return (
        customers.with_columns(pl.Series("segment_id", segment_ids, dtype=pl.Int64))
        .group_by("segment_id")
        .agg(
            pl.len().cast(pl.Int64).alias("size"),
            (pl.len() / total).alias("share"),
            *[pl.col(c).mean().alias(f"mean_{c}") for c in NUMERIC],
            *[pl.col(c).median().alias(f"median_{c}") for c in NUMERIC],
            (pl.col("gender") == "Female").mean().alias("female_share"),
        )
        .sort("segment_id")
    )


def _column_phrase(column: str, z: float, fine: bool) -> str:
    level = _level(z, fine)
    return LEVEL_WORDS[column][level + 2]


def _gender_phrase(female_share: float) -> str:
    if female_share >= 0.9:
        return "Female"
    if female_share >= 0.65:
        return "Mostly female"
    if female_share <= 0.1:
        return "Male"
    if female_share <= 0.35:
        return "Mostly male"
    return "Mixed gender"


def _z_scores(
    profile: pl.DataFrame, population: dict[str, dict[str, float]]
) -> dict[str, list[float]]:
    scores = {}
    for column in NUMERIC:
        spread = population[column]["std"] or 1.0
        scores[column] = [
            (v - population[column]["mean"]) / spread for v in profile[f"mean_{column}"]
        ]
    return scores


def name_segments(
    profile: pl.DataFrame, features: tuple[str, ...], population: dict[str, dict[str, float]]
) -> list[str]:
    """A name per segment from its clustered features relative to the population, unique in the run.

    Coarse levels first (low / mid / high); segments that would share a name get finer levels,
    and if they still collide, their mean values are added.
    """
    z = _z_scores(profile, population)

    def describe(row: int, fine: bool) -> str:
        parts = [
            _gender_phrase(profile["female_share"][row])
            if feature == "gender"
            else _column_phrase(feature, z[feature][row], fine)
            for feature in features
        ]
        return " · ".join(parts)

    names = [describe(row, fine=False) for row in range(profile.height)]
    for fine in (True, None):
        clashing = {name for name in names if names.count(name) > 1}
        for row, name in enumerate(names):
            if name not in clashing:
                continue
            if fine:
                names[row] = describe(row, fine=True)
            else:
                values = ", ".join(
                    f"{feature.replace('_', ' ')} {profile[f'mean_{feature}'][row]:.1f}"
                    for feature in features
                    if feature != "gender"
                )
                share = f"{profile['female_share'][row]:.0%} female"
                names[row] = f"{name} ({values or share})"
    return names


def suggest_actions(profile: pl.DataFrame, population: dict[str, dict[str, float]]) -> list[str]:
    """A marketing action per segment from its income, spending and age relative to everyone."""
    z = _z_scores(profile, population)
    return [
        ACTIONS[(_level(z["annual_income"][row]), _level(z["spending_score"][row]))]
        + CHANNELS[_level(z["age"][row])]
        for row in range(profile.height)
    ]


def _nearest_two(
    matrix: np.ndarray, centroids: np.ndarray, chunk: int = CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: the nearest centroid, its distance, and the distance to the next nearest.

    Computed in chunks of rows, so memory stays proportional to the chunk, not the data.
    """
    rows = matrix.shape[0]
    nearest = np.empty(rows, dtype=np.int64)
    first = np.empty(rows)
    second = np.full(rows, np.inf)
    for start in range(0, rows, chunk):
        block = matrix[start : start + chunk]
        distances = np.sqrt(((block[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
        order = np.argsort(distances, axis=1, kind="stable")
        nearest[start : start + chunk] = order[:, 0]
        first[start : start + chunk] = distances[np.arange(len(block)), order[:, 0]]
        if centroids.shape[0] > 1:
            second[start : start + chunk] = distances[np.arange(len(block)), order[:, 1]]
    return nearest, first, second


def customer_silhouettes(
    matrix: np.ndarray, segment_ids: np.ndarray, centroids: np.ndarray, exact_up_to: int
) -> tuple[np.ndarray, str]:
    """Each customer's silhouette, exact up to `exact_up_to` customers, simplified beyond.

    The exact silhouette compares every pair of customers (quadratic); the simplified one
    (Hruschka et al.) compares each customer with the centroids: (b - a) / max(a, b), with a the
    distance to its own centroid and b to the nearest other one.
    """
    if matrix.shape[0] <= exact_up_to:
        return silhouette_samples(matrix, segment_ids), "exact"
    _, own, other = _nearest_two(matrix, centroids)
    return (other - own) / np.maximum(np.maximum(own, other), 1e-12), "simplified (centroid-based)"


def segment_customers(
    customers: pl.DataFrame,
    matrix: np.ndarray,
    unscaled: np.ndarray,
    scaler: Scaler,
    features: tuple[str, ...],
    k: int,
    config: ClusterConfig,
    population: dict[str, dict[str, float]],
    initial_centers: np.ndarray | None = None,
    stability: dict[str, float | None] | None = None,
    exact_silhouette_up_to: int = 20_000,
) -> Segmentation:
    """Fit the final model at k on every customer and describe every segment.

    `initial_centers` (the select-k fit's centres, by its segment ids) start the fit; `stability`
    gives those segments' mean Jaccard similarity, carried over to the final ids.
    """
    fit = fit_kmeans(matrix, k, config, initial=initial_centers)
    labels = fit.labels
    original_centroids = fit_from_labels(unscaled, labels, k).centers
    mapping = canonical_ids(labels, original_centroids)
    segment_ids = mapping[labels]
    order = np.argsort(mapping)  # order[new_id] = old label
    centroids = fit.centers[order]
    original_centroids = original_centroids[order]

    profile = profile_segments(customers, segment_ids)
    names = name_segments(profile, features, population)
    actions = suggest_actions(profile, population)
    centroid_columns = {
        f"centroid_{column}": original_centroids[:, i] for i, column in enumerate(scaler.columns)
    }
    jaccard = [(stability or {}).get(str(int(old))) for old in order]
    segments = profile.with_columns(
        pl.Series("name", names),
        pl.Series("action", actions),
        *[pl.Series(name, values) for name, values in centroid_columns.items()],
        pl.Series("stability_jaccard", jaccard, dtype=pl.Float64),
    ).select(
        "segment_id",
        "name",
        "size",
        "share",
        *centroid_columns,
        pl.exclude("segment_id", "name", "size", "share", "action", *centroid_columns),
        "action",
    )
    silhouettes, method = customer_silhouettes(
        matrix, segment_ids, centroids, exact_silhouette_up_to
    )
    distances = np.sqrt(((matrix - centroids[segment_ids]) ** 2).sum(axis=1))
    ids = pl.Series("segment_id", segment_ids, dtype=pl.Int64)
    assignments = pl.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "segment_id": ids,
            "segment_name": pl.Series(names, dtype=pl.String).gather(ids),
            "distance_to_centroid": distances,
            "silhouette": silhouettes,
        }
    )
    model_data = {
        "format": MODEL_FORMAT,
        "features": list(features),
        "scaler": scaler.to_dict(),
        "k": k,
        "centroids_scaled": centroids.tolist(),
        "segments": [{"segment_id": i, "name": names[i], "action": actions[i]} for i in range(k)],
        "kmeans": {
            "algorithm": config.algorithm,
            "init": "k-means++" if initial_centers is None else "select-k centres",
            "n_init": config.n_init if initial_centers is None else 1,
            "max_iter": config.max_iter,
            "seed": config.seed,
            "inertia": fit.inertia,
        },
        "silhouette": method,
    }
    return Segmentation(segments=segments, assignments=assignments, model=model_data)


def assign_segments(
    customers: pl.DataFrame, unscaled: np.ndarray, model: dict[str, Any]
) -> pl.DataFrame:
    """Label customers with the nearest centroid of a saved model (plain data, no pickle)."""
    scaler = Scaler.from_dict(model["scaler"])
    centroids = np.asarray(model["centroids_scaled"], dtype=float)
    nearest, distance, _ = _nearest_two(scaler.transform(unscaled), centroids)
    names = pl.Series([segment["name"] for segment in model["segments"]], dtype=pl.String)
    ids = pl.Series("segment_id", nearest, dtype=pl.Int64)
    return pl.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "segment_id": ids,
            "segment_name": names.gather(ids),
            "distance_to_centroid": distance,
        }
    )
