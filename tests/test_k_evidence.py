"""Choosing k with evidence: every rule on data with a known answer, gap, stability and the vote."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation import select_k, usable_cores
from segmentation.batch_kmeans import Weighted, best_of_starts
from segmentation.config import ClusterConfig, KRule, SelectKConfig
from segmentation.select_k import (
    THREADS_FROM_VALUES,
    adjusted_rand,
    contingency,
    evaluate,
    segment_jaccard,
    vote,
    workers,
)
from segmentation.stability import stability_class

CENTRES = {
    3: np.array([(0.0, 0.0), (10.0, 0.0), (5.0, 9.0)]),
    4: np.array([(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0)]),
    # Six equidistant groups (a simplex) in 20 dimensions. In the plane, six groups always sit
    # closer in some pairs than others, and then the elbow or the gap's 1-SE rule stops early.
    6: np.hstack([10.0 * np.eye(6), np.zeros((6, 14))]),
}
SPREAD = {3: 0.6, 4: 0.6, 6: 1.0}
CLUSTER = ClusterConfig(n_init=4)


def silent(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _steps: None


def blobs(k: int, per_group: int = 30, seed: int = 0) -> np.ndarray:
    """Tight, well-separated Gaussian groups around known centres."""
    rng = np.random.default_rng(seed)
    centres = CENTRES[k]
    return np.vstack(
        [rng.normal(centre, SPREAD[k], size=(per_group, centres.shape[1])) for centre in centres]
    )


def select(matrix: np.ndarray, rule: KRule = KRule.SILHOUETTE, **settings: Any) -> dict[str, Any]:
    config = SelectKConfig(k_min=2, k_max=8, rule=rule, gap_references=10, bootstrap=10, **settings)
    return evaluate(matrix, matrix, config, CLUSTER, progress=silent)


@pytest.fixture(scope="module", params=sorted(CENTRES))
def known(request: pytest.FixtureRequest) -> tuple[int, dict[str, Any]]:
    true_k: int = request.param
    return true_k, select(blobs(true_k))


@pytest.mark.parametrize(
    "criterion",
    ["silhouette", "elbow", "gap", "calinski_harabasz", "davies_bouldin", "stability"],
)
def test_every_criterion_finds_well_separated_groups(
    known: tuple[int, dict[str, Any]], criterion: str
) -> None:
    true_k, selection = known
    assert selection["choices"][criterion] == true_k


@pytest.mark.parametrize("rule", list(KRule))
def test_every_rule_chooses_the_true_k(rule: KRule) -> None:
    assert select(blobs(4), rule)["chosen_k"] == 4


def test_the_gap_statistic_records_both_choices(known: tuple[int, dict[str, Any]]) -> None:
    true_k, selection = known
    assert selection["gap_choices"] == {"one_se": true_k, "global_max": true_k}


def test_uniform_noise_has_no_structure_by_the_gap_rule() -> None:
    noise = np.random.default_rng(3).uniform(0, 1, size=(150, 2))
    selection = select(noise)
    assert selection["choices"]["gap"] == 1
    assert any("no clear cluster structure" in note for note in selection["notes"])


def test_a_gap_rule_that_says_one_falls_back_to_silhouette() -> None:
    noise = np.random.default_rng(3).uniform(0, 1, size=(150, 2))
    selection = select(noise, KRule.GAP)
    assert selection["rule"] == "silhouette"
    assert selection["chosen_k"] == selection["choices"]["silhouette"]


def test_the_true_grouping_is_more_stable_than_an_over_split_one() -> None:
    candidates = {c["k"]: c for c in select(blobs(3))["candidates"]}
    assert candidates[3]["stability"] > 0.95
    assert candidates[6]["stability"] < candidates[3]["stability"] - 0.1


def test_segments_of_the_true_grouping_are_highly_stable(known: tuple[int, dict[str, Any]]) -> None:
    true_k, selection = known
    stability = selection["stability"]
    assert list(stability["per_segment_jaccard"]) == [str(i) for i in range(true_k)]
    assert set(stability["per_segment_class"].values()) == {"highly stable"}


def test_an_over_split_grouping_has_unstable_segments() -> None:
    selection = evaluate(
        blobs(3),
        blobs(3),
        SelectKConfig(k_min=2, k_max=8, gap_references=10, bootstrap=10),
        ClusterConfig(n_init=4, k=7),
        progress=silent,
    )
    assert selection["rule"] == "fixed"
    assert min(selection["stability"]["per_segment_jaccard"].values()) < 0.85


def starts_of_each_batch_fit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Collects `cluster.n_init` of every `best_of_starts` call select-k makes."""
    starts: list[int] = []

    def spy(
        sets: list[Weighted], k: int, cluster: ClusterConfig, rngs: list[np.random.Generator]
    ) -> list[np.ndarray]:
        starts.append(cluster.n_init)
        return best_of_starts(sets, k, cluster, rngs)

    monkeypatch.setattr(select_k, "best_of_starts", spy)
    return starts


def test_every_resample_is_fitted_with_the_starts_of_the_full_data_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts = starts_of_each_batch_fit(monkeypatch)
    cluster = ClusterConfig(n_init=7)
    _, labels = select_k.sweep(blobs(3), range(2, 5), cluster)
    select_k.bootstrap_stability(blobs(3), labels, cluster, resamples=3)
    assert starts
    assert set(starts) == {7}


def test_a_resample_draws_at_most_bootstrap_size_customers(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []

    def spy(
        sets: list[Weighted], k: int, cluster: ClusterConfig, rngs: list[np.random.Generator]
    ) -> list[np.ndarray]:
        if cluster.n_init == CLUSTER.n_init:  # a resample (the gap references get one start)
            drawn.extend(int(data.weights.sum()) for data in sets)
        return best_of_starts(sets, k, cluster, rngs)

    monkeypatch.setattr(select_k, "best_of_starts", spy)
    config = SelectKConfig(k_min=2, k_max=3, gap_references=2, bootstrap=4, bootstrap_size=100)
    few = evaluate(blobs(3, per_group=20), blobs(3, per_group=20), config, CLUSTER, silent)
    assert set(drawn) == {60}  # fewer customers than bootstrap_size: all of them, as many times
    assert few["stability"]["resample_size"] == 60
    drawn.clear()
    many = evaluate(blobs(3, per_group=50), blobs(3, per_group=50), config, CLUSTER, silent)
    assert set(drawn) == {100}  # 150 customers: 100 of them each time (m-out-of-n)
    assert many["stability"]["resample_size"] == 100
    # Well-separated groups are found again from 100 of 150 customers.
    assert min(many["stability"]["per_segment_jaccard"].values()) > 0.95


def test_every_gap_reference_is_fitted_with_one_start(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = starts_of_each_batch_fit(monkeypatch)
    candidates, _ = select_k.sweep(blobs(3), range(2, 5), ClusterConfig(n_init=7))
    select_k.gap_statistic(blobs(3), candidates, ClusterConfig(n_init=7), references=3)
    assert starts
    assert set(starts) == {1}


@pytest.mark.parametrize(
    ("jaccard", "name"),
    [(0.5, "unstable"), (0.7, "doubtful"), (0.8, "stable"), (0.9, "highly stable")],
)
def test_stability_classes_follow_clusterboot(jaccard: float, name: str) -> None:
    assert stability_class(jaccard) == name


def test_the_vote_takes_the_majority() -> None:
    choices = {"silhouette": 4, "elbow": 4, "gap": 1, "stability": 3}
    assert vote(choices, []) == 4


def test_a_tied_vote_goes_to_the_higher_silhouette() -> None:
    from segmentation.select_k import Candidate

    candidates = [
        Candidate(3, 10.0, 0.6, 1.0, 1.0),
        Candidate(4, 8.0, 0.7, 1.0, 1.0),
    ]
    assert vote({"silhouette": 4, "elbow": 3}, candidates) == 4


def test_confidence_is_high_when_criteria_agree_and_segments_hold(
    known: tuple[int, dict[str, Any]],
) -> None:
    _, selection = known
    assert selection["confidence"]["level"] == "high"
    assert "6 of 6 criteria" in selection["confidence"]["explanation"]


def test_row_order_does_not_change_the_choices() -> None:
    matrix = blobs(4)
    shuffled = matrix[np.random.default_rng(9).permutation(len(matrix))]
    original, permuted = select(matrix), select(shuffled)
    assert permuted["choices"] == original["choices"]
    assert permuted["chosen_k"] == original["chosen_k"]
    # Away from the true k, K-Means may settle in another local optimum; at it, nothing moves.
    at_k = next(c for c in original["candidates"] if c["k"] == original["chosen_k"])
    permuted_at_k = next(c for c in permuted["candidates"] if c["k"] == original["chosen_k"])
    for score in ("inertia", "silhouette", "calinski_harabasz", "davies_bouldin"):
        assert permuted_at_k[score] == pytest.approx(at_k[score])


def test_results_are_identical_whatever_the_number_of_workers() -> None:
    matrix = blobs(4)
    config = SelectKConfig(k_min=2, k_max=6, gap_references=6, bootstrap=6)
    one = evaluate(matrix, matrix, config, CLUSTER, progress=silent, n_jobs=1)
    two = evaluate(matrix, matrix, config, CLUSTER, progress=silent, n_jobs=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_segment_jaccard_matches_each_segment_with_its_closest_counterpart() -> None:
    full = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    boot = np.array([1, 1, 1, 0, 0, 0, 2, 2])
    # Segment 0 {0-3} vs boot 1 {0-2}: 3 shared of 4; segment 1 {4,5} vs boot 0 {3-5}: 2 of 3.
    assert segment_jaccard(full, boot, 4) == [pytest.approx(3 / 4), pytest.approx(2 / 3), 1.0, None]


@pytest.mark.parametrize("seed", range(5))
def test_adjusted_rand_from_the_table_equals_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 6, 500)
    # Half the labels kept, half redrawn: agreement well above chance, short of perfect.
    second = np.where(rng.random(500) < 0.5, first, rng.integers(0, 6, 500))
    table = contingency(first, second, 6)
    assert adjusted_rand(table) == pytest.approx(adjusted_rand_score(first, second), abs=1e-12)


def test_adjusted_rand_is_one_for_the_same_grouping_under_other_labels() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert adjusted_rand(contingency(labels, (labels + 1) % 3, 3)) == pytest.approx(1.0)
    everyone_together = np.zeros(6, dtype=np.int64)
    assert adjusted_rand(contingency(everyone_together, everyone_together, 1)) == 1.0


def test_small_matrices_are_fitted_in_one_thread_and_large_ones_in_all() -> None:
    assert workers(np.zeros((THREADS_FROM_VALUES // 2 - 1, 2)), None) == 1
    assert workers(np.zeros((THREADS_FROM_VALUES // 2, 2)), None) == usable_cores()
    assert workers(np.zeros((10, 2)), 3) == 3


def test_every_fit_is_counted_by_the_progress_callback() -> None:
    steps: list[int] = []

    def counting(_label: str, total: int) -> Callable[[int], None]:
        steps.append(total)
        return lambda n: steps.append(-n)

    evaluate(
        blobs(3),
        blobs(3),
        SelectKConfig(k_min=2, k_max=4, gap_references=3, bootstrap=3),
        CLUSTER,
        progress=counting,
    )
    total, *advances = steps
    assert total == -sum(advances) == 3 + 3 * 4 + 3 * 3


def test_the_log_names_the_time_of_every_k() -> None:
    lines: list[str] = []
    evaluate(
        blobs(3),
        blobs(3),
        SelectKConfig(k_min=2, k_max=4, gap_references=3, bootstrap=3),
        CLUSTER,
        progress=silent,
        log=lines.append,
    )
    assert all(f"k={k} " in lines[0] for k in (1, 2, 3, 4))
