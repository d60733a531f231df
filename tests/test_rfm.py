"""RFM: the 1-5 scores of a purchase log's customers, the `naming: rfm` grid, and its chart."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from segmentation.cli import main
from segmentation.cluster import grid_names, name_segments, score_customers, suggest_actions
from segmentation.config import VisualizeConfig
from segmentation.errors import ConfigError
from segmentation.schema import built_table, rfm_scores
from segmentation.visualize import chart_spec, rfm_grid_chart
from segmentation.vocabulary import (
    SHIPPED,
    Vocabulary,
    known_columns,
    load_vocabulary,
    vocabulary_path,
)

SCHEMA = built_table("$")
LOG_KNOWN = known_columns(SCHEMA.columns, purchase_log=True)

# The RFM grid, written out by hand: GRID[f][r - 1] is the name at R = r, F = f.
GRID = {
    5: ["Can't lose them", "Can't lose them", "Loyal customers", "Loyal customers", "Champions"],
    4: ["At risk", "At risk", "Loyal customers", "Loyal customers", "Champions"],
    3: ["At risk", "At risk", "Need attention", "Potential loyalists", "Potential loyalists"],
    2: [
        "Hibernating",
        "Hibernating",
        "About to sleep",
        "Potential loyalists",
        "Potential loyalists",
    ],
    1: ["Hibernating", "Hibernating", "About to sleep", "Promising", "New customers"],
}


@pytest.fixture(scope="module")
def rfm() -> Vocabulary:
    return load_vocabulary("rfm", Path(), LOG_KNOWN)


def medians(*pairs: tuple[float, float], monetary: list[float] | None = None) -> pl.DataFrame:
    """A profile of segments at the given median (R, F) scores; `monetary` sets each segment's
    mean log1p monetary value (all customers: mean 4, SD 1)."""
    values = monetary if monetary is not None else [4.0] * len(pairs)
    return pl.DataFrame(
        {
            "segment_id": list(range(len(pairs))),
            "median_r_score": [float(r) for r, _ in pairs],
            "median_f_score": [float(f) for _, f in pairs],
            "level_monetary": values,
            "mean_monetary": [float(np.expm1(v)) for v in values],
        }
    )


POPULATION = {"monetary": {"feature_mean": 4.0, "feature_std": 1.0}}


# --- the scores -----------------------------------------------------------------------------------


def test_scores_are_quintiles_with_recency_inverted() -> None:
    customers = pl.DataFrame(
        {
            "recency_days": [float(v) for v in range(1, 11)],
            "frequency": [float(v) for v in range(10, 0, -1)],
            "monetary": [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 10.0, 4.0, 8.0, 6.0],
        }
    )
    scored = score_customers(customers, rfm_scores())
    assert scored.columns == ["r_score", "f_score", "m_score"]
    # The most recent (fewest days) get R = 5; two customers in each quintile.
    assert scored["r_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scored["f_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scored["m_score"].to_list() == [3, 1, 5, 2, 4, 1, 5, 2, 4, 3]


def test_equal_values_get_equal_scores_those_of_the_worst_placed() -> None:
    # Six one-time buyers of ten: every one of them has F = 1 (rank 1), not the middle of the six.
    frequency = [1.0] * 6 + [2.0, 2.0, 3.0, 9.0]
    recency = [30.0, 30.0, 30.0, 10.0, 10.0, 5.0, 5.0, 1.0, 1.0, 1.0]
    scored = score_customers(
        pl.DataFrame({"recency_days": recency, "frequency": frequency, "monetary": [1.0] * 10}),
        rfm_scores(),
    )
    assert scored["f_score"].to_list() == [1] * 6 + [4, 4, 5, 5]
    # Recency, inverted: 3 customers at 30 days (rank 1), 2 at 10 (rank 4), 2 at 5 (rank 6),
    # 3 at 1 day (rank 8): ceil(5 * rank / 10).
    assert scored["r_score"].to_list() == [1, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    # Everyone equal: everyone at the bottom.
    assert scored["m_score"].to_list() == [1] * 10
    # Equal values, equal scores, whatever the row order.
    shuffled = score_customers(
        pl.DataFrame(
            {"recency_days": recency[::-1], "frequency": frequency[::-1], "monetary": [1.0] * 10}
        ),
        rfm_scores(),
    )
    assert shuffled["f_score"].to_list() == scored["f_score"].to_list()[::-1]


def test_scores_span_one_to_five_on_uneven_counts() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 11, 499):
        customers = pl.DataFrame(
            {
                "recency_days": rng.integers(0, 50, n).astype(float),
                "frequency": rng.integers(1, 6, n).astype(float),
                "monetary": rng.gamma(2.0, 30.0, n),
            }
        )
        scored = score_customers(customers, rfm_scores())
        for name in scored.columns:
            assert scored[name].is_between(1, 5).all()
        # No ties in monetary: each score holds a fifth of the customers, give or take one.
        counts = scored["m_score"].value_counts()["count"].to_list()
        assert n < 5 or max(counts) - min(counts) <= 1


# --- the grid ------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("f", [1, 2, 3, 4, 5])
def test_every_cell_of_the_grid_names_the_segment(rfm: Vocabulary, r: int, f: int) -> None:
    names = name_segments(medians((r, f)), SCHEMA, POPULATION, rfm)
    assert names == [GRID[f][r - 1]]


def test_half_medians_round_up_to_the_better_score(rfm: Vocabulary) -> None:
    profile = medians((3.5, 3.0), (4.5, 3.5), (2.5, 2.5), (1.5, 4.5))
    assert name_segments(profile, SCHEMA, POPULATION, rfm) == [
        "Potential loyalists",  # R 4, F 3
        "Champions",  # R 5, F 4
        "Need attention",  # R 3, F 3
        "Can't lose them",  # R 2, F 5
    ]


def test_each_name_carries_its_action(rfm: Vocabulary) -> None:
    actions = suggest_actions(medians((5, 5), (1, 1)), POPULATION, rfm)
    assert actions[0] is not None and actions[0].startswith("Reward them: early access")
    assert actions[1] is not None and actions[1] != actions[0]
    assert rfm.grid is not None
    assert {cell.name for cell in rfm.grid.cells} == {n for row in GRID.values() for n in row}
    assert all(cell.action for cell in rfm.grid.cells)


def test_segments_in_the_same_cell_are_told_apart_by_monetary_level(rfm: Vocabulary) -> None:
    profile = medians((2, 3), (1, 4), (5, 5), monetary=[5.0, 3.0, 4.0])
    assert name_segments(profile, SCHEMA, POPULATION, rfm) == [
        "At risk · High Monetary value",
        "At risk · Low Monetary value",
        "Champions",
    ]


def test_same_cell_and_level_get_finer_levels_then_their_mean(rfm: Vocabulary) -> None:
    profile = medians((5, 5), (5, 4), (5, 5), monetary=[5.5, 4.6, 5.6])
    assert rfm.grid is not None
    names = grid_names(profile, SCHEMA, POPULATION, rfm.grid, rfm)
    assert names[1] == "Champions · High Monetary value"
    assert names[0].startswith("Champions · Very high Monetary value (mean $")
    assert names[2].startswith("Champions · Very high Monetary value (mean $")
    assert len(set(names)) == 3


# --- the vocabulary file --------------------------------------------------------------------------


def test_rfm_is_shipped_and_valid() -> None:
    assert "rfm" in SHIPPED
    text = vocabulary_path("rfm", Path()).read_text(encoding="utf-8")
    grid = Vocabulary.model_validate(yaml.safe_load(text)).grid
    assert grid is not None and (grid.x, grid.y, grid.apart_by) == (
        "r_score",
        "f_score",
        "monetary",
    )


def write_grid(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    declared = yaml.safe_load(vocabulary_path("rfm", Path()).read_text(encoding="utf-8"))
    change(declared)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(declared), encoding="utf-8")
    return path


def test_a_cell_outside_one_to_five_is_refused(tmp_path: Path) -> None:
    def outside(declared: dict[str, Any]) -> None:
        declared["grid"]["cells"][0]["x"] = [5, 6]

    path = write_grid(tmp_path, outside)
    with pytest.raises(ConfigError, match=r"grid\.cells\.0\.x: .*score 6 is outside 1-5") as info:
        load_vocabulary(str(path), Path(), LOG_KNOWN)
    assert info.value.key == "naming"
    assert "\n" not in str(info.value)


def test_overlapping_or_missing_cells_are_refused(tmp_path: Path) -> None:
    def overlap(declared: dict[str, Any]) -> None:
        declared["grid"]["cells"][1]["x"] = [3, 4, 5]

    with pytest.raises(ConfigError, match=r"x 5, y 4 lies in two cells \(Champions, Loyal"):
        load_vocabulary(str(write_grid(tmp_path, overlap)), Path(), LOG_KNOWN)

    def gap(declared: dict[str, Any]) -> None:
        del declared["grid"]["cells"][-1]

    with pytest.raises(ConfigError, match=r"no cell holds x 1, y 1 \(4 pair\(s\) uncovered\)"):
        load_vocabulary(str(write_grid(tmp_path, gap)), Path(), LOG_KNOWN)


def test_a_grid_on_an_unknown_apart_by_column_is_refused(tmp_path: Path) -> None:
    def unknown(declared: dict[str, Any]) -> None:
        declared["grid"]["apart_by"] = "loyalty"

    with pytest.raises(ConfigError, match=r"names column\(s\) loyalty that the config does not"):
        load_vocabulary(str(write_grid(tmp_path, unknown)), Path(), LOG_KNOWN)


def test_the_scores_are_known_for_purchase_logs_only() -> None:
    assert set(rfm_scores()) <= LOG_KNOWN
    assert not set(rfm_scores()) & known_columns(SCHEMA.columns, purchase_log=False)
    with pytest.raises(ConfigError, match=r"only the customers of a purchase log") as info:
        load_vocabulary("rfm", Path(), known_columns(SCHEMA.columns, purchase_log=False))
    assert info.value.key == "naming"


def test_naming_rfm_on_a_customer_table_is_refused_in_one_line_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    blobs3: pl.DataFrame,
) -> None:
    make_project(tmp_path, blobs3, {"naming": "rfm"})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert re.fullmatch(
        r"error: config\.yaml:\d+: naming: \S*rfm\.yaml names segments by the score\(s\) f_score, "
        r"r_score, which only the customers of a purchase log \(data\.kind: transactions\) have; "
        r"use naming: null or a vocabulary for this table's columns",
        errors[0],
    ), errors[0]
    assert not (tmp_path / "artifacts").exists() or not any(
        (tmp_path / "artifacts").glob("*/prepared.parquet")
    )


# --- the grid chart -------------------------------------------------------------------------------


def segments_at(*pairs: tuple[float, float], sizes: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "segment_id": list(range(len(pairs))),
            "name": [f"segment {i}" for i in range(len(pairs))],
            "size": sizes,
            "median_r_score": [float(r) for r, _ in pairs],
            "median_f_score": [float(f) for _, f in pairs],
            "median_m_score": [3.0] * len(pairs),
        }
    )


def chart_data(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return list(spec["datasets"].values())


def test_the_grid_chart_places_every_segment_sized_by_its_customers(rfm: Vocabulary) -> None:
    segments = segments_at((5, 4), (1.5, 1), (1.5, 1), (3, 3), sizes=[40, 300, 100, 60])
    spec = chart_spec(
        "rfm_grid", "RFM grid", rfm_grid_chart(segments, rfm.grid, SCHEMA, VisualizeConfig())
    )
    json.dumps(spec, allow_nan=False)
    points = next(rows for rows in chart_data(spec) if rows and "size" in rows[0])
    placed = {row["segment_id"]: row for row in points}
    assert sorted(placed) == [0, 1, 2, 3]
    assert {i: row["size"] for i, row in placed.items()} == {0: 40, 1: 300, 2: 100, 3: 60}
    # Alone at its medians: drawn there; two at the same medians: side by side around them.
    assert (placed[0]["x"], placed[0]["y"]) == (5.0, 4.0)
    assert (placed[3]["x"], placed[3]["y"]) == (3.0, 3.0)
    assert placed[1]["y"] == placed[2]["y"] == 1.0
    assert placed[1]["x"] < 1.5 < placed[2]["x"]
    assert placed[1]["x"] + placed[2]["x"] == pytest.approx(3.0)
    # Circle areas in proportion to the customers: the size scale starts at 0.
    layers = spec["layer"]
    circles = next(layer for layer in layers if layer["mark"]["type"] == "circle")
    assert circles["encoding"]["size"]["scale"]["domain"] == [0, 300]
    assert circles["encoding"]["size"]["field"] == "size"
    # The grid's cells shaded: rectangles covering the 25 pairs of scores once.
    regions = next(rows for rows in chart_data(spec) if rows and "region" in rows[0])
    area = sum((row["x1"] - row["x0"]) * (row["y1"] - row["y0"]) for row in regions)
    assert area == 25
    assert {row["region"] for row in regions} == {n for row in GRID.values() for n in row}
    assert "median scores" in spec["description"] or "median R and F" in spec["description"]


def test_the_grid_chart_without_a_naming_grid_has_no_regions() -> None:
    segments = segments_at((5, 4), (1, 1), sizes=[10, 20])
    spec = chart_spec(
        "rfm_grid", "RFM grid", rfm_grid_chart(segments, None, SCHEMA, VisualizeConfig())
    )
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["circle", "text"]
    assert not any(rows and "region" in rows[0] for rows in chart_data(spec))


# --- a purchase log end to end -------------------------------------------------------------------


def purchase_log(path: Path) -> Path:
    """Sixty customers in three kinds: recent frequent big spenders, lapsed one-time small buyers,
    and in-between customers."""
    rng = np.random.default_rng(5)
    start = dt.date(2024, 1, 1)
    lines = ["customer,date,amount"]
    for customer in range(60):
        kind = customer % 3
        visits = [12, 1, 4][kind]
        last = [360, 40, 200][kind] - customer // 3
        for visit in range(visits):
            day = start + dt.timedelta(days=int(last - visit * [20, 0, 30][kind]))
            amount = [120.0, 15.0, 50.0][kind] * float(rng.uniform(0.8, 1.2))
            lines.append(f"C{customer:03d},{day.isoformat()},{amount:.2f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_purchase_log_gets_scores_grid_names_a_grid_chart_and_scored_cards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase_log(tmp_path / "data" / "log.csv")
    config = {
        "data": {"kind": "transactions", "path": "data/log.csv", "url": None, "sha256": None},
        "transactions": {"customer": "customer", "time": "date", "amount": "amount"},
        "naming": "rfm",
        "select_k": {"k_min": 2, "k_max": 4, "gap_references": 5, "bootstrap": 5},
        "cluster": {"n_init": 4},
        "visualize": {"width": 200, "height": 150, "png_scale": 1.0},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    match = re.search(r"Report: reports/(\w+)/index\.html", result.stdout)
    assert match, result.output
    version = match.group(1)
    folder = tmp_path / "artifacts" / version
    assignments = pl.read_csv(folder / "assignments.csv")
    assert {"r_score", "f_score", "m_score"} <= set(assignments.columns)
    # The twenty recent frequent big spenders: the twelve most recent customers (R = 5) are among
    # them; their twelve purchases each tie for the top third, which is F = 4 (the rule's rank is
    # that of the worst-placed of equals).
    best = assignments.filter(pl.col("customer_id").is_in([f"C{i:03d}" for i in range(0, 60, 3)]))
    assert best["r_score"].value_counts().sort("r_score").rows() == [(4, 8), (5, 12)]
    assert best["f_score"].unique().to_list() == [4]
    lapsed = assignments.filter(pl.col("customer_id").is_in([f"C{i:03d}" for i in range(1, 60, 3)]))
    assert lapsed["f_score"].max() == 1
    segments = pl.read_csv(folder / "segments.csv")
    cells = {n for row in GRID.values() for n in row}
    assert all(name.split(" · ")[0] in cells for name in segments["name"])
    assert "Champions" in segments["grid_cell"].to_list()
    assert all(segments["action"].is_not_null())
    chart_names = [c["name"] for c in json.loads((folder / "charts" / "index.json").read_text())]
    assert "rfm_grid" in chart_names
    page = (tmp_path / "reports" / version / "index.html").read_text(encoding="utf-8")
    assert "Median scores (1-5)" in page
    assert "ceil(5 &times; rank / n)" in page
    assert "cell of the naming grid" in page
