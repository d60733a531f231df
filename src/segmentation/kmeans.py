"""K-Means as every stage uses it: one seeded fit, and segment ids that do not depend on label order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from segmentation.config import ClusterConfig


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


def canonical_ids(labels: np.ndarray, original_centroids: np.ndarray) -> np.ndarray:
    """Map K-Means labels to ids ordered by size (largest first), ties by centroid values.

    This order depends only on the segments themselves, not on K-Means' label permutation.
    """
    k = original_centroids.shape[0]
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda label: (-sizes[label], *original_centroids[label].round(9)))
    mapping = np.empty(k, dtype=np.int64)
    for new_id, label in enumerate(order):
        mapping[label] = new_id
    return mapping
