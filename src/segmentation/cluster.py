"""Stage 3, cluster: the final K-Means, canonical segment ids, profiles, names and actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import silhouette_samples

from segmentation.config import ClusterConfig
from segmentation.kmeans import canonical_ids, fit_kmeans
from segmentation.prepare import NUMERIC, Scaler

MODEL_FORMAT = "segmentation-model/1"
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


def segment_customers(
    customers: pl.DataFrame,
    matrix: np.ndarray,
    unscaled: np.ndarray,
    scaler: Scaler,
    features: tuple[str, ...],
    k: int,
    config: ClusterConfig,
    population: dict[str, dict[str, float]],
) -> Segmentation:
    """Fit the final model at k and describe every segment."""
    fit = fit_kmeans(matrix, k, config)
    labels = fit.labels
    original_centroids = np.vstack([unscaled[labels == label].mean(axis=0) for label in range(k)])
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
    segments = profile.with_columns(
        pl.Series("name", names),
        pl.Series("action", actions),
        *[pl.Series(name, values) for name, values in centroid_columns.items()],
    ).select(
        "segment_id",
        "name",
        "size",
        "share",
        *centroid_columns,
        pl.exclude("segment_id", "name", "size", "share", "action", *centroid_columns),
        "action",
    )
    distances = np.linalg.norm(matrix - centroids[segment_ids], axis=1)
    assignments = pl.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "segment_id": pl.Series(segment_ids, dtype=pl.Int64),
            "segment_name": [names[i] for i in segment_ids],
            "distance_to_centroid": distances,
            "silhouette": silhouette_samples(matrix, segment_ids),
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
            "init": "k-means++",
            "n_init": config.n_init,
            "max_iter": config.max_iter,
            "seed": config.seed,
            "inertia": fit.inertia,
        },
    }
    return Segmentation(segments=segments, assignments=assignments, model=model_data)


def assign_segments(
    customers: pl.DataFrame, unscaled: np.ndarray, model: dict[str, Any]
) -> pl.DataFrame:
    """Label customers with the nearest centroid of a saved model (plain data, no pickle)."""
    scaler = Scaler.from_dict(model["scaler"])
    centroids = np.asarray(model["centroids_scaled"], dtype=float)
    scaled = scaler.transform(unscaled)
    distances = np.linalg.norm(scaled[:, None, :] - centroids[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    names = [segment["name"] for segment in model["segments"]]
    return pl.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "segment_id": pl.Series(nearest, dtype=pl.Int64),
            "segment_name": [names[i] for i in nearest],
            "distance_to_centroid": distances[np.arange(len(nearest)), nearest],
        }
    )
