"""Stage 2: the k sweep, the knee, the choice of k and the limits the data puts on k."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import polars as pl
import pytest

from segmentation.config import ClusterConfig, KRule, SelectKConfig
from segmentation.errors import ConfigError
from segmentation.select_k import (
    Candidate,
    check_k_range,
    choose_k,
    find_knee,
    sweep,
    sweep_range,
)

FAST = ClusterConfig(n_init=4)


def candidates(
    inertias: list[float],
    silhouettes: list[float],
    calinski: list[float] | None = None,
    davies: list[float] | None = None,
) -> list[Candidate]:
    """Hand-made candidates: k=1 (inertia only), then k=2, 3, ... with the given scores."""
    n = len(silhouettes)
    calinski = calinski or [10.0] * n
    davies = davies or [1.0] * n
    return [
        Candidate(1, inertias[0], None, None, None),
        *(
            Candidate(k, inertias[k - 1], silhouettes[k - 2], calinski[k - 2], davies[k - 2])
            for k in range(2, n + 2)
        ),
    ]


# A clear knee at k=3; silhouette prefers k=5.
KNEE_AT_3 = candidates([1000, 400, 100, 90, 85, 82, 80], [0.3, 0.5, 0.55, 0.6, 0.4, 0.35])


@pytest.fixture(scope="module")
def sweep_blobs(
    featurize: Callable[..., Any], blobs3: pl.DataFrame, blobs4: pl.DataFrame
) -> dict[int, list[Candidate]]:
    """The sweep k=2..6 on three and on four well-separated groups."""
    return {
        3: sweep(featurize(blobs3).matrix, range(2, 7), FAST)[0],
        4: sweep(featurize(blobs4).matrix, range(2, 7), FAST)[0],
    }


@pytest.mark.parametrize("true_k", [3, 4])
def test_silhouette_recovers_the_true_k(
    sweep_blobs: dict[int, list[Candidate]], true_k: int
) -> None:
    assert choose_k(sweep_blobs[true_k], KRule.SILHOUETTE, None)["chosen_k"] == true_k


@pytest.mark.parametrize("true_k", [3, 4])
def test_knee_is_at_the_true_k(sweep_blobs: dict[int, list[Candidate]], true_k: int) -> None:
    assert find_knee(sweep_blobs[true_k]) == true_k


def test_well_separated_groups_make_every_criterion_agree(
    sweep_blobs: dict[int, list[Candidate]],
) -> None:
    selection = choose_k(sweep_blobs[4], KRule.SILHOUETTE, None)
    assert selection["criteria_agree"]
    assert selection["agreement"] == "All criteria agree on k=4."


def test_sweep_adds_k1_with_the_total_inertia_only(
    featurize: Callable[..., Any], blobs3: pl.DataFrame
) -> None:
    matrix = featurize(blobs3).matrix
    first = sweep(matrix, range(2, 3), FAST)[0][0]
    total = float(((matrix - matrix.mean(axis=0)) ** 2).sum())
    assert first == Candidate(1, pytest.approx(total), None, None, None)


def test_sweep_scores_every_k_and_reports_progress(
    featurize: Callable[..., Any], blobs3: pl.DataFrame
) -> None:
    seen: list[int] = []
    result, labels = sweep(
        featurize(blobs3).matrix, range(2, 5), FAST, done=lambda k, _seconds, _fits: seen.append(k)
    )
    assert [c.k for c in result] == [1, 2, 3, 4]
    assert sorted(labels) == [2, 3, 4]
    assert sorted(seen) == [2, 3, 4]


def test_sweep_is_reproducible(featurize: Callable[..., Any], blobs3: pl.DataFrame) -> None:
    matrix = featurize(blobs3).matrix
    assert sweep(matrix, range(2, 5), FAST)[0] == sweep(matrix, range(2, 5), FAST)[0]


def test_no_knee_on_a_straight_line() -> None:
    line = candidates([100, 80, 60, 40, 20, 0], [0.5] * 5)
    assert find_knee(line) is None


def test_elbow_rule_uses_the_knee() -> None:
    selection = choose_k(KNEE_AT_3, KRule.ELBOW, None)
    assert (selection["chosen_k"], selection["rule"], selection["knee_k"]) == (3, "elbow", 3)


def test_silhouette_rule_takes_the_highest_silhouette() -> None:
    selection = choose_k(KNEE_AT_3, KRule.SILHOUETTE, None)
    assert (selection["chosen_k"], selection["rule"]) == (5, "silhouette")


def test_elbow_without_a_knee_falls_back_to_silhouette() -> None:
    selection = choose_k(candidates([100, 50], [0.4]), KRule.ELBOW, None)
    assert (selection["chosen_k"], selection["rule"], selection["knee_k"]) == (
        2,
        "silhouette",
        None,
    )
    assert any("chosen by silhouette instead" in note for note in selection["notes"])


def test_fixed_k_skips_the_choice() -> None:
    selection = choose_k(KNEE_AT_3, KRule.SILHOUETTE, 6)
    assert (selection["chosen_k"], selection["rule"]) == (6, "fixed")
    assert any("fixed by cluster.k" in note for note in selection["notes"])


def test_disagreement_is_spelled_out() -> None:
    selection = choose_k(KNEE_AT_3, KRule.SILHOUETTE, None)
    assert not selection["criteria_agree"]
    assert selection["agreement"].startswith("The criteria disagree: silhouette (highest) -> k=5")
    assert "elbow of the inertia curve -> k=3" in selection["agreement"]


def test_each_criterion_choice_is_recorded() -> None:
    scored = candidates(
        [1000, 400, 100, 90, 85, 82, 80],
        [0.3, 0.5, 0.55, 0.6, 0.4, 0.35],
        calinski=[5, 6, 7, 8, 9, 10],
        davies=[0.9, 0.4, 0.8, 0.8, 0.8, 0.8],
    )
    assert choose_k(scored, KRule.SILHOUETTE, None)["choices"] == {
        "silhouette": 5,
        "elbow": 3,
        "calinski_harabasz": 7,
        "davies_bouldin": 3,
        "gap": None,
        "stability": None,
    }


def test_silhouette_ties_go_to_the_smaller_k() -> None:
    tied = candidates([100, 60, 30, 20, 15], [0.4, 0.7, 0.7, 0.7])
    assert choose_k(tied, KRule.SILHOUETTE, None)["chosen_k"] == 3


def test_ties_within_rounding_noise_go_to_the_smaller_k() -> None:
    tied = candidates([100, 60, 30, 20], [0.4, 0.7, 0.7 + 1e-13])
    assert choose_k(tied, KRule.SILHOUETTE, None)["chosen_k"] == 3


def test_davies_bouldin_ties_go_to_the_smaller_k() -> None:
    tied = candidates([100, 60, 30, 20, 15], [0.5] * 4, davies=[0.9, 0.3, 0.3, 0.5])
    assert choose_k(tied, KRule.SILHOUETTE, None)["choices"]["davies_bouldin"] == 3


def test_selection_lists_every_candidate_with_its_scores() -> None:
    selection = choose_k(KNEE_AT_3, KRule.SILHOUETTE, None)
    assert selection["candidates"][2] == {
        "k": 3,
        "inertia": 100,
        "silhouette": 0.5,
        "calinski_harabasz": 10.0,
        "davies_bouldin": 1.0,
        "gap": None,
        "gap_se": None,
        "stability": None,
        "smallest_share": None,
    }


def test_k_max_beyond_the_data_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^select_k\.k_max: 10 .*at most 4"):
        check_k_range(5, SelectKConfig(k_min=2, k_max=10), ClusterConfig())


def test_k_min_beyond_the_data_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^select_k\.k_min: 5 .*at most 4"):
        check_k_range(5, SelectKConfig(k_min=5, k_max=6), ClusterConfig())


def test_fixed_k_beyond_the_data_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^cluster\.k: 8 .*at most 6"):
        check_k_range(7, SelectKConfig(k_min=2, k_max=3), ClusterConfig(k=8))


def test_k_up_to_one_below_the_distinct_points_is_allowed() -> None:
    check_k_range(5, SelectKConfig(k_min=2, k_max=4), ClusterConfig(k=4))
    assert list(sweep_range(SelectKConfig(k_min=2, k_max=4), ClusterConfig(k=4))) == [2, 3, 4]


@pytest.mark.parametrize(
    ("fixed", "expected"), [(None, [3, 4, 5]), (2, [2, 3, 4, 5]), (7, [3, 4, 5, 6, 7])]
)
def test_sweep_range_includes_a_fixed_k(fixed: int | None, expected: list[int]) -> None:
    assert list(sweep_range(SelectKConfig(k_min=3, k_max=5), ClusterConfig(k=fixed))) == expected


# --- small segments (select_k.min_segment_share) -------------------------------------------------


def with_smallest_shares(scored: list[Candidate], shares: list[float]) -> list[Candidate]:
    """The candidates with the given smallest-segment share for k=2, 3, ..."""
    return [
        scored[0],
        *(replace(c, smallest_share=s) for c, s in zip(scored[1:], shares, strict=True)),
    ]


def test_no_rule_chooses_a_k_with_a_segment_below_the_minimum_share() -> None:
    # Silhouette prefers k=5, whose smallest segment holds 1% of the customers.
    scored = with_smallest_shares(KNEE_AT_3, [0.4, 0.3, 0.2, 0.01, 0.01, 0.01])
    selection = choose_k(scored, KRule.SILHOUETTE, None, min_segment_share=0.02)
    assert selection["chosen_k"] == 4
    assert all(k not in (5, 6, 7) for k in selection["choices"].values())
    assert [entry["k"] for entry in selection["passed_over"]] == [5, 6, 7]
    assert selection["passed_over"][0]["smallest_share"] == 0.01
    assert any("k=5 (1.0%)" in note for note in selection["notes"])


def test_every_rule_respects_the_minimum_share() -> None:
    scored = with_smallest_shares(KNEE_AT_3, [0.4, 0.01, 0.2, 0.2, 0.2, 0.2])
    for rule in KRule:
        selection = choose_k(scored, rule, None, min_segment_share=0.02)
        assert selection["chosen_k"] != 3, rule
        assert selection["choices"]["elbow"] is None  # its knee (k=3) was passed over


def test_a_minimum_share_no_k_meets_is_refused_naming_the_key() -> None:
    scored = with_smallest_shares(KNEE_AT_3, [0.01] * 6)
    with pytest.raises(ConfigError, match=r"^select_k\.min_segment_share: every k from 2 to 7"):
        choose_k(scored, KRule.SILHOUETTE, None, min_segment_share=0.02)


def test_a_fixed_k_is_kept_and_its_small_segment_noted() -> None:
    scored = with_smallest_shares(KNEE_AT_3, [0.4, 0.3, 0.2, 0.01, 0.01, 0.01])
    selection = choose_k(scored, KRule.SILHOUETTE, 5, min_segment_share=0.02)
    assert selection["chosen_k"] == 5
    assert any("k=5 has a segment below" in note for note in selection["notes"])


def test_the_sweep_records_each_k_smallest_segment_share(
    featurize: Callable[..., Any], make_blobs: Callable[..., pl.DataFrame]
) -> None:
    # 100 customers in one group, 2 far away: k=2 isolates the two (2% of 102).
    customers = make_blobs(((20.0, 20.0), (90.0, 90.0)), (100, 2))
    scored, _ = sweep(featurize(customers).matrix, range(2, 4), FAST)
    assert scored[1].smallest_share == pytest.approx(2 / 102)
