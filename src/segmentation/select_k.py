"""Stage 2, select-k: sweep k, score each solution, and choose k by the configured rule."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from kneed import KneeLocator
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from segmentation.config import ClusterConfig, KRule, SelectKConfig
from segmentation.errors import ConfigError

# Scores are rounded before comparing so that ties do not hinge on the last floating-point bit.
TIE_DECIMALS = 10
CRITERIA_LABELS = {
    "silhouette": "silhouette (highest)",
    "elbow": "elbow of the inertia curve",
    "calinski_harabasz": "Calinski-Harabasz (highest)",
    "davies_bouldin": "Davies-Bouldin (lowest)",
}


@dataclass(frozen=True)
class Candidate:
    k: int
    inertia: float
    silhouette: float | None
    calinski_harabasz: float | None
    davies_bouldin: float | None


@dataclass(frozen=True)
class KMeansFit:
    labels: np.ndarray
    centers: np.ndarray
    inertia: float


def fit_kmeans(matrix: np.ndarray, k: int, config: ClusterConfig) -> KMeansFit:
    """K-Means with k-means++ seeding; every run with the same config gives the same fit.

    Centres and inertia are recomputed from the labels in a fixed order: scikit-learn's own
    values come from multi-threaded sums whose last bits depend on the number of threads.
    """
    labels = (
        KMeans(
            n_clusters=k,
            init="k-means++",
            n_init=config.n_init,
            max_iter=config.max_iter,
            random_state=config.seed,
        )
        .fit(matrix)
        .labels_
    )
    centers = np.vstack([matrix[labels == label].mean(axis=0) for label in range(k)])
    inertia = float(((matrix - centers[labels]) ** 2).sum())
    return KMeansFit(labels=labels, centers=centers, inertia=inertia)


def check_k_range(distinct_points: int, select_k: SelectKConfig, cluster: ClusterConfig) -> None:
    """Refuse k values the data cannot support (silhouette needs k < number of distinct points)."""
    limit = distinct_points - 1
    if limit < 2:
        raise ConfigError(
            f"features: only {distinct_points} distinct customer(s) in feature space, too few to compare "
            "segments (at least 3 are needed); add features or data",
            key="features",
        )
    for key, value in (
        ("cluster.k", cluster.k),
        ("select_k.k_min", select_k.k_min),
        ("select_k.k_max", select_k.k_max),
    ):
        if value is not None and value > limit:
            raise ConfigError(
                f"{key}: {value} is more than the data allows ({distinct_points} distinct "
                f"customers in feature space); set it to at most {limit}",
                key=key,
            )


def sweep_range(select_k: SelectKConfig, cluster: ClusterConfig) -> range:
    """k values to score: the configured range, widened to include a fixed `cluster.k`."""
    low, high = select_k.k_min, select_k.k_max
    if cluster.k is not None:
        low, high = min(low, cluster.k), max(high, cluster.k)
    return range(low, high + 1)


def sweep(
    matrix: np.ndarray,
    ks: range,
    cluster: ClusterConfig,
    on_k: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Score K-Means for each k; k=1 gets its inertia only, for the elbow."""
    total = float(((matrix - matrix.mean(axis=0)) ** 2).sum())
    candidates = [Candidate(1, total, None, None, None)]
    for k in ks:
        fit = fit_kmeans(matrix, k, cluster)
        labels = fit.labels
        candidates.append(
            Candidate(
                k=k,
                inertia=fit.inertia,
                silhouette=float(silhouette_score(matrix, labels)),
                calinski_harabasz=float(calinski_harabasz_score(matrix, labels)),
                davies_bouldin=float(davies_bouldin_score(matrix, labels)),
            )
        )
        if on_k is not None:
            on_k(k)
    return candidates


def find_knee(candidates: list[Candidate]) -> int | None:
    """The knee of the inertia curve (kneed), or None when the curve has no knee."""
    ks = [c.k for c in candidates]
    inertias = [c.inertia for c in candidates]
    if len(ks) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when it finds no knee; None says so
        knee = KneeLocator(ks, inertias, curve="convex", direction="decreasing").knee
    return None if knee is None else int(knee)


def _best(candidates: list[Candidate], score: str, highest: bool) -> int:
    scored = [c for c in candidates if getattr(c, score) is not None]
    sign = 1 if highest else -1
    # max() keeps the first maximum, and candidates run from small k up: ties go to the smaller k.
    return max(scored, key=lambda c: sign * round(getattr(c, score), TIE_DECIMALS)).k


def choose_k(candidates: list[Candidate], rule: KRule, fixed_k: int | None) -> dict[str, Any]:
    """Each criterion's choice, the chosen k and a plain-words account of any disagreement."""
    knee = find_knee(candidates)
    choices: dict[str, int | None] = {
        "silhouette": _best(candidates, "silhouette", highest=True),
        "elbow": knee,
        "calinski_harabasz": _best(candidates, "calinski_harabasz", highest=True),
        "davies_bouldin": _best(candidates, "davies_bouldin", highest=False),
    }
    notes: list[str] = []
    if fixed_k is not None:
        chosen, rule_used = fixed_k, "fixed"
        notes.append(
            f"k={fixed_k} was fixed by cluster.k; the criteria below were not used to choose it."
        )
    elif rule is KRule.ELBOW and knee is None:
        chosen, rule_used = int(choices["silhouette"] or 0), KRule.SILHOUETTE.value
        notes.append("The inertia curve has no clear knee, so k was chosen by silhouette instead.")
    else:
        chosen, rule_used = int(choices[rule.value] or 0), rule.value
    if knee is None:
        notes.append("The inertia curve has no clear knee (kneed found none).")
    found = {name: k for name, k in choices.items() if k is not None}
    if len(set(found.values())) == 1:
        agreement = f"All criteria agree on k={next(iter(found.values()))}."
    else:
        listed = ", ".join(f"{CRITERIA_LABELS[name]} -> k={k}" for name, k in found.items())
        agreement = f"The criteria disagree: {listed}."
    return {
        "chosen_k": chosen,
        "rule": rule_used,
        "knee_k": knee,
        "choices": choices,
        "criteria_agree": len(set(found.values())) == 1,
        "agreement": agreement,
        "notes": notes,
        "candidates": [asdict(c) for c in candidates],
    }
