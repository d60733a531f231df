"""K-Means fitted on many small weighted data sets at once: the bootstrap's refits.

Each fit is the one `kmeans.fit_kmeans` makes with scikit-learn for the Lloyd algorithm: greedy
k-means++ seeding (2 + ln k candidates a step), Lloyd's iterations with scikit-learn's stopping
rule, and the lowest inertia of `n_init` starts. Here every start of every data set runs in the
same array operations: a bootstrap makes thousands of fits (resamples x k x starts), and on a few
hundred rows scikit-learn's per-call work costs more than the fitting itself.

A data set is given as distinct rows with weights (how often each row occurs): k-means++ then
draws each row with the same probability as among the repeated rows, and the centres and inertia
are those of the repeated rows, with less work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segmentation.config import ClusterConfig

TOL = 1e-4
"""Lloyd's iterations stop once the centres move (squared, summed) by at most this times the mean
feature variance: scikit-learn's default `tol`, which `fit_kmeans` keeps."""


@dataclass(frozen=True)
class Weighted:
    """A data set as its distinct rows and how many times each occurs."""

    points: np.ndarray
    weights: np.ndarray


def best_of_starts(
    sets: Sequence[Weighted], k: int, config: ClusterConfig, rngs: Sequence[np.random.Generator]
) -> list[np.ndarray]:
    """K-Means on each data set, as `fit_kmeans` fits one: the best of `config.n_init` starts.

    Parameters
    ----------
    sets
        The data sets, each with at least one row and the same number of columns.
    k
        Number of clusters.
    config
        `n_init` (starts per data set) and `max_iter` (Lloyd's iterations per start).
    rngs
        One random generator per data set, for its k-means++ draws: a data set's fit does not
        depend on which others are fitted with it.

    Returns
    -------
    list of numpy.ndarray
        Per data set, the cluster (0..k-1) of each of its rows, from the start with the lowest
        weighted inertia (the first of equal ones).
    """
    points, weights = _stack(sets)
    starts = config.n_init
    # Each start of each data set is a run; the runs of a data set are consecutive.
    lifted = np.repeat(_lift(points), starts, axis=0)
    run_weights = np.repeat(weights, starts, axis=0)
    trials = 2 + int(np.log(k))
    draws = [(rng.random(starts), rng.random((k - 1, starts, trials))) for rng in rngs]
    centres = _seed(
        lifted,
        run_weights,
        k,
        np.concatenate([first for first, _ in draws]),
        np.concatenate([steps for _, steps in draws], axis=1),
    )
    tolerance = np.repeat(_tolerance(points, weights), starts)
    labels, inertia = _lloyd(lifted, run_weights, centres, config.max_iter, tolerance)
    best = inertia.reshape(len(sets), starts).argmin(axis=1)
    chosen = labels.reshape(len(sets), starts, -1)[np.arange(len(sets)), best]
    return [row[: len(data.weights)] for row, data in zip(chosen, sets, strict=True)]


def _stack(sets: Sequence[Weighted]) -> tuple[np.ndarray, np.ndarray]:
    """(sets, rows, columns) points and (sets, rows) weights, shorter sets padded with copies of
    their last row at weight 0 (such a row is never drawn and moves no centre)."""
    rows = max(len(data.weights) for data in sets)
    points = np.empty((len(sets), rows, sets[0].points.shape[1]))
    weights = np.zeros((len(sets), rows))
    for i, data in enumerate(sets):
        size = len(data.weights)
        points[i, :size], points[i, size:] = data.points, data.points[-1]
        weights[i, :size] = data.weights
    return points, weights


def _tolerance(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`TOL` times each data set's mean feature variance (of the repeated rows)."""
    total = weights.sum(axis=1)
    mean = np.einsum("smd,sm->sd", points, weights) / total[:, None]
    spread = np.einsum("smd,sm->sd", (points - mean[:, None, :]) ** 2, weights) / total[:, None]
    result: np.ndarray = spread.mean(axis=1) * TOL
    return result


def _lift(points: np.ndarray) -> np.ndarray:
    """Rows with a trailing 1, [x, 1], for `_cross`."""
    return np.concatenate([points, np.ones((*points.shape[:2], 1))], axis=2)


def _cross(lifted: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(runs, rows, centres) squared distances less each row's squared norm, ||c||^2 - 2 x.c:
    enough to compare centres for a row. One matrix product of the lifted rows [x, 1] with
    [-2c, ||c||^2] gives them, twice as fast as a product and a sum."""
    norms = np.einsum("rcd,rcd->rc", centres, centres)
    affine = np.concatenate([centres * -2.0, norms[:, :, None]], axis=2)
    result: np.ndarray = np.matmul(lifted, affine.transpose(0, 2, 1))
    return result


def _draw(mass: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Per run, rows drawn with probability proportional to `mass` (runs, rows) for `uniforms`
    (runs, draws) in [0, 1): the first row whose cumulative mass reaches u times the total, as
    scikit-learn draws them (a zero total draws row 0)."""
    cumulative = np.cumsum(mass, axis=1)
    targets = uniforms * cumulative[:, -1:]
    # searchsorted's left side for every run at once: the count of cumulative masses below u.
    found = (cumulative[:, None, :] < targets[:, :, None]).sum(axis=2)
    rows: np.ndarray = np.minimum(found, mass.shape[1] - 1)
    return rows


def _seed(
    lifted: np.ndarray, weights: np.ndarray, k: int, first: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """Greedy k-means++ centres (runs, k, columns) for every run: the first centre drawn by weight,
    each next one the best, by the inertia it leaves, of a few drawn by weighted squared distance."""
    runs = np.arange(len(lifted))
    points = lifted[:, :, :-1]
    norms = np.einsum("rmd,rmd->rm", points, points)
    centres = np.empty((len(lifted), k, points.shape[2]))
    centres[:, 0] = points[runs, _draw(weights, first[:, None])[:, 0]]
    closest = _cross(lifted, centres[:, :1])[:, :, 0]
    for step in range(1, k):
        candidates = _draw(weights * np.maximum(closest + norms, 0.0), steps[step - 1])
        candidate_points = points[runs[:, None], candidates]
        reach = np.minimum(closest[:, :, None], _cross(lifted, candidate_points))
        best = np.einsum("rmt,rm->rt", reach, weights).argmin(axis=1)
        closest = reach[runs, :, best]
        centres[:, step] = candidate_points[runs, best]
    return centres


def _totals(weighted: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(runs, k, columns + 1) sums of the weighted lifted rows [w x, w] in each cluster, from
    `weighted` given column by column: each cluster's weighted sum and, last, its weight."""
    runs = labels.shape[0]
    slot = (labels + np.arange(runs)[:, None] * k).ravel()
    sums = [np.bincount(slot, weights=column.ravel(), minlength=runs * k) for column in weighted]
    return np.stack(sums, axis=1).reshape(runs, k, len(weighted))


def _move_rows(
    totals: np.ndarray, weighted: np.ndarray, previous: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Update `totals` in place for the rows whose label changed (after the first iterations,
    a few): cheaper than summing every row again. Returns which runs had a change (a padding row
    copies its set's last row, so it changes label only with it)."""
    runs, k, _ = totals.shape
    run, row = np.nonzero(labels != previous)
    into, out_of = run * k + labels[run, row], run * k + previous[run, row]
    for j, column in enumerate(weighted[:, run, row]):
        change = np.bincount(into, column, runs * k) - np.bincount(out_of, column, runs * k)
        totals[:, :, j] += change.reshape(runs, k)
    changed: np.ndarray = np.bincount(run, minlength=runs) > 0
    return changed


def _centres(totals: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Each cluster's weighted mean. A cluster left without weight keeps its centre
    (scikit-learn moves it to a far row instead; after k-means++ starts on distinct rows this does
    not arise in practice)."""
    mass = totals[:, :, -1]
    empty = mass == 0
    centres = totals[:, :, :-1] / np.where(empty, 1.0, mass)[:, :, None]
    centres[empty] = previous[empty]
    return centres


def _lloyd(
    lifted: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    max_iter: int,
    tolerance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations from `centres`; each run stops when its labels no longer change or its
    centres move by at most its `tolerance`. Returns the labels of the final centres and the
    weighted inertia.

    Runs that have stopped are dropped from the arrays worked on once they are a quarter of them
    (dropping copies the arrays: doing it at every stop cost as much as the iterations)."""
    k = centres.shape[1]
    weighted = np.ascontiguousarray((lifted * weights[:, :, None]).transpose(2, 0, 1))
    final = centres.copy()
    run = np.arange(len(lifted))
    live = np.ones(len(run), dtype=bool)
    work_lifted, work_weighted, work_centres = lifted, weighted, centres
    labels = _cross(work_lifted, work_centres).argmin(axis=2)
    totals = _totals(work_weighted, labels, k)
    changed = np.ones(len(run), dtype=bool)  # the first labels follow no earlier ones
    for _ in range(max_iter):
        moved = _centres(totals, work_centres)
        shift = ((moved - work_centres) ** 2).sum(axis=(1, 2))
        final[run[live]] = moved[live]
        live &= changed & (shift > tolerance[run])
        if not live.any():
            break
        if 4 * live.sum() <= 3 * len(live):
            run, work_lifted, work_weighted = run[live], work_lifted[live], work_weighted[:, live]
            moved, labels, totals, live = moved[live], labels[live], totals[live], live[live]
        previous, work_centres = labels, moved
        labels = _cross(work_lifted, work_centres).argmin(axis=2)
        changed = _move_rows(totals, work_weighted, previous, labels)
    cross = _cross(lifted, final)
    labels = cross.argmin(axis=2)
    nearest = np.take_along_axis(cross, labels[:, :, None], axis=2)[:, :, 0]
    points = lifted[:, :, :-1]
    norms = np.einsum("rmd,rmd->rm", points, points)
    inertia = (np.maximum(nearest + norms, 0.0) * weights).sum(axis=1)
    return labels, inertia
