"""K-Means on many weighted data sets at once: the same fits as scikit-learn's, each independent of
the others fitted with it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segmentation.batch_kmeans import Weighted, best_of_starts
from segmentation.config import ClusterConfig
from segmentation.kmeans import fit_from_labels

CENTRES = np.array([(0.0, 0.0), (6.0, 0.0), (0.0, 6.0), (6.0, 6.0)])
CONFIG = ClusterConfig()


def grouped(seed: int, per_group: int = 25) -> Weighted:
    """Four well-separated groups, each row repeated one to three times (as in a resample)."""
    rng = np.random.default_rng(seed)
    points = np.vstack([rng.normal(centre, 0.8, size=(per_group, 2)) for centre in CENTRES])
    return Weighted(points=points, weights=rng.integers(1, 4, len(points)).astype(float))


def repeated(data: Weighted, values: np.ndarray) -> np.ndarray:
    """Each row's `values` repeated as often as its weight says."""
    return np.repeat(values, data.weights.astype(int), axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_each_fit_reaches_scikit_learns_inertia_on_the_repeated_rows(seed: int) -> None:
    data = grouped(seed)
    (labels,) = best_of_starts([data], 4, CONFIG, [np.random.default_rng(seed)])
    rows = repeated(data, data.points)
    reference = KMeans(4, n_init=CONFIG.n_init, random_state=seed).fit(rows)
    fit = fit_from_labels(rows, repeated(data, labels), 4)
    assert fit.inertia == pytest.approx(reference.inertia_, rel=1e-9)


def test_well_separated_groups_are_found() -> None:
    data = grouped(0)
    truth = np.repeat(np.arange(4), 25)
    (labels,) = best_of_starts([data], 4, CONFIG, [np.random.default_rng(0)])
    assert adjusted_rand_score(truth, labels) == 1.0


def test_a_fit_does_not_depend_on_the_data_sets_fitted_with_it() -> None:
    sets = [grouped(0), grouped(1, per_group=40), grouped(2, per_group=10)]
    alone = best_of_starts(sets[1:2], 4, CONFIG, [np.random.default_rng(11)])
    together = best_of_starts(sets, 4, CONFIG, [np.random.default_rng(s) for s in (10, 11, 12)])
    assert [len(labels) for labels in together] == [100, 160, 40]
    np.testing.assert_array_equal(alone[0], together[1])


def test_the_same_draws_give_the_same_fit() -> None:
    data = grouped(3)
    first = best_of_starts([data], 3, CONFIG, [np.random.default_rng(5)])
    again = best_of_starts([data], 3, CONFIG, [np.random.default_rng(5)])
    np.testing.assert_array_equal(first[0], again[0])


def test_fewer_distinct_rows_than_clusters_still_gives_a_labelling() -> None:
    data = Weighted(points=np.array([[0.0, 0.0], [1.0, 1.0]]), weights=np.array([3.0, 2.0]))
    (labels,) = best_of_starts([data], 3, CONFIG, [np.random.default_rng(0)])
    assert labels.shape == (2,)
    assert labels[0] != labels[1]
