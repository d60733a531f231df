"""A wide table the project has never seen: 20,000 customers, 30 skewed spend columns and two
categorical ones, declared by `segment init`. The report must stay under 2 MB and speak in the
table's own labels.

The charts show at most `visualize.max_points` customers, so a table four times that size
makes the same page as a larger one would; more rows would only make the test slower.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from segmentation.cli import main
from segmentation.config import load_config

CUSTOMERS = 20_000
SPEND_COLUMNS = 30
PAGE_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 4, CUSTOMERS)
    centres = rng.normal(0, 3, (4, SPEND_COLUMNS))
    values = centres[groups] + rng.normal(0, 1, (CUSTOMERS, SPEND_COLUMNS))
    table = pl.DataFrame(
        {f"Spend {i} ($)": np.round(np.exp(values[:, i] / 2 + 5), 2) for i in range(SPEND_COLUMNS)}
    ).with_columns(
        pl.Series("Region", rng.choice(["North", "South", "East", "West"], CUSTOMERS)),
        pl.Series("Channel", np.where(groups % 2 == 0, "Retail", "Online")),
    )
    table.write_csv(root / "wide.csv")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        made = runner.invoke(main, ["init", "wide.csv", "--output", "wide.yaml"])
        assert made.exit_code == 0, made.output
        config = yaml.safe_load((root / "wide.yaml").read_text(encoding="utf-8"))
        # The light edits: cluster on the categories too, and a quicker sweep for a test.
        config["features"] += ["region", "channel"]
        config["select_k"].update(k_max=5, gap_references=3, bootstrap=3, sample_size=2000)
        config["cluster"]["n_init"] = 3
        config["visualize"]["png_scale"] = 1.0
        (root / "wide.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        ran = runner.invoke(main, ["run", "--config", "wide.yaml"])
        assert ran.exit_code == 0, ran.output
    return root


def test_the_page_stays_under_2_mb(wide_run: Path) -> None:
    shown = load_config(wide_run / "wide.yaml").visualize.max_points
    assert 2 * shown < CUSTOMERS, "the charts must sample the customers"
    page = wide_run / "reports" / "latest" / "index.html"
    assert page.stat().st_size < PAGE_LIMIT


def test_every_chart_of_a_wide_table_is_drawn(wide_run: Path) -> None:
    index = json.loads((wide_run / "artifacts" / "latest" / "charts" / "index.json").read_text())
    names = {chart["name"] for chart in index}
    assert {"segments", "pairwise", "profiles", "categories", "sizes"} <= names
    pairwise = json.loads(
        (wide_run / "artifacts" / "latest" / "charts" / "pairwise.vl.json").read_text()
    )
    # The five columns that separate the segments most: the lower triangle of their matrix.
    assert [len(row["hconcat"]) for row in pairwise["vconcat"]] == [1, 2, 3, 4]


def test_names_speak_in_the_tables_labels(wide_run: Path) -> None:
    segments = pl.read_csv(wide_run / "artifacts" / "latest" / "segments.csv")
    for name in segments["name"]:
        parts = name.split(" · ")
        assert len(parts) <= 3
        assert all(("Spend" in part) or part.endswith(("Retail", "Online")) for part in parts)
    assert segments["name"].n_unique() == segments.height
