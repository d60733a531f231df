"""K-Means as every stage uses it: one seeded fit, and segment ids that do not depend on label order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from segmentation.config import ClusterConfig


@dataclass(frozen=True)
class KMeansFit:
    labels: np.ndarray
    centers: np.ndarray
    inertia: float


MINIBATCH_SIZE = 4096
"""Rows per step of MiniBatchKMeans (`cluster.algorithm: minibatch`)."""


def fit_kmeans(
    matrix: np.ndarray, k: int, config: ClusterConfig, initial: np.ndarray | None = None
) -> KMeansFit:
    """K-Means with k-means++ seeding (or from `initial` centres); the same config gives the same fit.

    Centres and inertia are recomputed from the labels in a fixed order: scikit-learn's own
    values come from multi-threaded sums whose last bits depend on the number of threads.
    """
    init: np.ndarray | str = "k-means++" if initial is None else initial
    n_init = config.n_init if initial is None else 1
    model: KMeans | MiniBatchKMeans
    if config.algorithm == "minibatch":
        model = MiniBatchKMeans(
            n_clusters=k,
            init=init,
            n_init=n_init,
            max_iter=config.max_iter,
            batch_size=MINIBATCH_SIZE,
            random_state=config.seed,
        )
    else:
        model = KMeans(
            n_clusters=k,
            init=init,
            n_init=n_init,
            max_iter=config.max_iter,
            random_state=config.seed,
        )
    labels = model.fit(matrix).labels_
    return fit_from_labels(matrix, labels, k)


def fit_from_labels(matrix: np.ndarray, labels: np.ndarray, k: int) -> KMeansFit:
    """Centres and inertia of a labelling, summed in a fixed order."""
    counts = np.bincount(labels, minlength=k).astype(float)
    sums = np.vstack(
        [np.bincount(labels, weights=matrix[:, j], minlength=k) for j in range(matrix.shape[1])]
    ).T
    centers = sums / np.maximum(counts, 1)[:, None]
    inertia = float(((matrix - centers[labels]) ** 2).sum())
    return KMeansFit(labels=labels, centers=centers, inertia=inertia)


def canonical_ids(labels: np.ndarray, original_centroids: np.ndarray) -> np.ndarray:
    """Map K-Means labels to ids ordered by size (largest first), ties by centroid values.

    This order depends only on the segments themselves, not on K-Means' label permutation.
    """
    k = original_centroids.shape[0]
    return canonical_order(np.bincount(labels, minlength=k), original_centroids)


def canonical_order(sizes: np.ndarray, original_centroids: np.ndarray) -> np.ndarray:
    """`canonical_ids` from each label's size (for labels counted elsewhere, by Spark)."""
    k = original_centroids.shape[0]
    order = sorted(range(k), key=lambda label: (-sizes[label], *original_centroids[label].round(9)))
    mapping = np.empty(k, dtype=np.int64)
    for new_id, label in enumerate(order):
        mapping[label] = new_id
    return mapping
