"""A table the project has never seen, from `segment init` plus light edits: tab-separated, no id
column, integer category codes, skewed spend, day-first dates and missing incomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from segmentation.cli import main

GROUPS = 3
PER_GROUP = 120


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("new-table")
    rng = np.random.default_rng(1)
    group = np.repeat(np.arange(GROUPS), PER_GROUP)
    rows = GROUPS * PER_GROUP
    # Three kinds of shop: big grocery buyers, fresh-food buyers, and small occasional ones.
    grocery = np.exp(np.array([9.0, 6.0, 5.0])[group] + rng.normal(0, 0.3, rows))
    fresh = np.exp(np.array([6.0, 9.0, 5.0])[group] + rng.normal(0, 0.3, rows))
    income = np.round(np.array([60.0, 45.0, 30.0])[group] + rng.normal(0, 4, rows), 1)
    incomes = [None if i % 17 == 0 else float(v) for i, v in enumerate(income)]
    joined = np.datetime64("2024-12-31") - (
        np.array([30, 200, 600])[group] + rng.integers(0, 20, rows)
    )
    table = pl.DataFrame(
        {
            "Channel": np.where(group == 0, 2, 1),
            "Region": rng.integers(1, 4, rows),
            "Grocery": np.round(grocery, 2),
            "Fresh": np.round(fresh, 2),
            "Household income": incomes,
            "Online spend": np.round(rng.lognormal(4, 1.2, rows), 2),
            "Last order": [
                f"{d.astype(object).day:02d}/{d.astype(object).month:02d}/{d.astype(object).year}"
                for d in joined
            ],
        }
    )
    table.write_csv(root / "shops.tsv", separator="\t")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        made = runner.invoke(main, ["init", "shops.tsv"])
        assert made.exit_code == 0, made.output
        config = yaml.safe_load((root / "shops.yaml").read_text(encoding="utf-8"))
        # The light edits: cluster on what the shops buy, when they last ordered and their channel.
        config["features"] = ["grocery", "fresh", "last_order", "channel"]
        config["select_k"].update(gap_references=5, bootstrap=5)
        (root / "shops.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        ran = runner.invoke(main, ["run", "--config", "shops.yaml"])
        assert ran.exit_code == 0, ran.output
    return root


def test_init_declares_what_the_table_holds(run_root: Path) -> None:
    config = yaml.safe_load((run_root / "shops.yaml").read_text(encoding="utf-8"))
    columns = {c["name"]: c for c in config["columns"]}
    assert not any(c["type"] == "id" for c in columns.values())
    assert columns["channel"]["type"] == columns["region"]["type"] == "categorical"
    assert columns["online_spend"]["transform"] == "log1p"
    assert columns["last_order"] == {**columns["last_order"], "type": "date", "format": "%d/%m/%Y"}
    assert columns["household_income"]["missing"] == "median"


def test_the_three_kinds_of_shop_are_found(run_root: Path) -> None:
    segments = pl.read_csv(run_root / "artifacts" / "latest" / "segments.csv")
    assert segments["size"].to_list() == [PER_GROUP] * GROUPS


def test_segments_are_named_in_the_tables_own_labels(run_root: Path) -> None:
    names = pl.read_csv(run_root / "artifacts" / "latest" / "segments.csv")["name"].to_list()
    # Four clustered columns: each name speaks of the three where the segment stands out most.
    assert "High Grocery · Recent Last order · Channel 2" in names
    assert all(name.count(" · ") == 2 for name in names)


def test_customers_are_numbered_by_data_row(run_root: Path) -> None:
    assignments = pl.read_csv(
        run_root / "artifacts" / "latest" / "assignments.csv",
        schema_overrides={"customer_id": pl.String},
    )
    assert assignments["customer_id"].to_list() == [
        str(i) for i in range(1, GROUPS * PER_GROUP + 1)
    ]


def test_missing_incomes_are_filled_and_reported(run_root: Path) -> None:
    summary = yaml.safe_load(
        (run_root / "artifacts" / "latest" / "prepare_summary.json").read_text(encoding="utf-8")
    )
    missing = summary["missing"]["household_income"]
    assert missing["policy"] == "median"
    assert missing["missing"] == len(range(0, GROUPS * PER_GROUP, 17))
    dates = pl.read_csv(run_root / "shops.tsv", separator="\t")["Last order"]
    assert summary["as_of"] == dates.str.to_date("%d/%m/%Y").max().isoformat()
    html = (run_root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "filled with" in html
