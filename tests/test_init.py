"""`segment init`: column types inferred from a table, and the commented config written for it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from segmentation import infer
from segmentation.cli import main
from segmentation.errors import DataError

ROWS = 300


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def entries(inference: infer.Inference) -> dict[str, dict[str, Any]]:
    """The config entries by name."""
    return {column.name: column.entry() for column in inference.columns}


def reason(inference: infer.Inference, name: str) -> str:
    return next(column.reason for column in inference.columns if column.name == name)


def round_trips(inference: infer.Inference, data_path: str = "data.csv") -> dict[str, Any]:
    """The rendered config read back, after checking that it holds exactly the inferred entries."""
    config = yaml.safe_load(infer.render_config(inference, data_path, "Customer segments: t"))
    assert config["columns"] == [column.entry() for column in inference.columns]
    assert config["features"] == list(inference.features)
    return dict(config)


@pytest.fixture
def wholesale(tmp_path: Path) -> Path:
    """Tab-separated, no id: integer channel and region codes, a lognormal (skewed) spend,
    day-first dates and some missing incomes."""
    rng = np.random.default_rng(7)
    signups = [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 700, ROWS)]
    signups[0] = dt.date(2024, 12, 31)
    incomes = [
        "" if row % 20 == 0 else f"{value:.1f}"
        for row, value in enumerate(rng.normal(50, 10, ROWS))
    ]
    frame = pl.DataFrame(
        {
            "Channel": rng.integers(1, 3, ROWS).astype(str),
            "Region": rng.integers(1, 4, ROWS).astype(str),
            "Fresh": np.round(rng.lognormal(8, 1.5, ROWS)).astype(int).astype(str),
            "Signup": [day.strftime("%d/%m/%Y") for day in signups],
            "Income": incomes,
        }
    )
    path = tmp_path / "wholesale.tsv"
    frame.write_csv(path, separator="\t")
    return path


@pytest.fixture
def mall(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame(
        {
            "CustomerID": np.arange(1, 201),
            "Gender": rng.choice(["Male", "Female"], 200),
            "Age": rng.integers(18, 70, 200),
            "Annual Income (k$)": rng.integers(15, 137, 200),
            "Spending Score (1-100)": rng.integers(1, 101, 200),
        }
    )
    path = tmp_path / "Mall_Customers.csv"
    frame.write_csv(path)
    return path


# --- inference on whole tables ------------------------------------------------------------------


def test_tab_separated_table_without_id(wholesale: Path) -> None:
    inference = infer.infer_columns(infer.read_table(wholesale))
    columns = entries(inference)

    assert [column["type"] for column in columns.values()] == [
        "categorical",
        "categorical",
        "numeric",
        "date",
        "numeric",
    ]
    assert reason(inference, "channel") == "categorical (integer codes, 2 distinct values)"
    assert reason(inference, "region") == "categorical (integer codes, 3 distinct values)"
    assert columns["fresh"]["transform"] == "log1p"
    assert columns["fresh"]["min"] == 0
    assert "skewness" in reason(inference, "fresh")
    assert columns["signup"]["format"] == "%d/%m/%Y"
    assert "31/12/2024 proves" in reason(inference, "signup")
    assert columns["income"]["missing"] == "median"
    assert "transform" not in columns["income"]
    assert "15 missing values" in reason(inference, "income")
    assert "customer_id" not in columns
    assert "no id column: customers will be numbered by data row" in inference.decisions
    assert inference.features == ("fresh", "income")
    round_trips(inference)


def test_mall_table(mall: Path) -> None:
    inference = infer.infer_columns(infer.read_table(mall))
    columns = entries(inference)

    assert columns["customer_id"] == {"name": "customer_id", "source": "CustomerID", "type": "id"}
    assert columns["gender"]["type"] == "categorical"
    assert columns["annual_income_k"] == {
        "name": "annual_income_k",
        "source": "Annual Income (k$)",
        "type": "numeric",
        "label": "Annual Income",
        "unit": "k$",
    }
    # The stated range becomes the valid range (the sample stays within it).
    assert columns["spending_score"]["min"] == 1
    assert columns["spending_score"]["max"] == 100
    assert inference.features == ("age", "annual_income_k", "spending_score")
    assert not any(decision.startswith("no id column") for decision in inference.decisions)
    round_trips(inference)


def test_text_ids_and_an_empty_numeric_cell(tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    rows = [f"C{10001 + row},{'' if row == 3 else 20 + row % 37},{row % 2}" for row in range(30)]
    path.write_text("CUST_ID,Visits,Member\n" + "\n".join(rows) + "\n", encoding="utf-8")

    inference = infer.infer_columns(infer.read_table(path))
    columns = entries(inference)

    assert columns["customer_id"] == {"name": "customer_id", "source": "CUST_ID", "type": "id"}
    assert columns["visits"] == {
        "name": "visits",
        "source": "Visits",
        "type": "numeric",
        "missing": "median",
    }
    assert columns["member"]["type"] == "categorical"
    assert inference.features == ("visits",)
    round_trips(inference)


def test_parquet_input_keeps_stored_types(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    pl.DataFrame(
        {
            "client no": [f"K{row}" for row in range(40)],
            "segment_code": [row % 4 for row in range(40)],
            "balance": [float(row) * 1.5 for row in range(40)],
            "opened": [dt.date(2020, 1, 1) + dt.timedelta(days=row) for row in range(40)],
            "active": [row % 3 == 0 for row in range(40)],
        }
    ).write_parquet(path)

    inference = infer.infer_columns(infer.read_table(path))
    columns = entries(inference)

    assert columns["customer_id"]["source"] == "client no"
    assert columns["segment_code"]["type"] == "categorical"
    assert columns["balance"]["type"] == "numeric"
    # Stored dates need no format to be read.
    assert columns["opened"] == {"name": "opened", "source": "opened", "type": "date"}
    assert columns["active"]["type"] == "categorical"
    assert inference.features == ("balance",)
    round_trips(inference)


def test_a_column_named_like_the_id_that_is_not_one_is_renamed(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    rows = [f"{row % 5},{row * 2.5}" for row in range(20)]
    path.write_text("customer_id,amount\n" + "\n".join(rows) + "\n", encoding="utf-8")

    inference = infer.infer_columns(infer.read_table(path))

    names = [column.name for column in inference.columns]
    assert names == ["customer_id_2", "amount"]
    assert all(column.type != "id" for column in inference.columns)
    assert inference.features == ("amount",)


def test_constant_and_empty_columns(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    rows = [f"{row * 1.5},7.5," for row in range(12)]
    path.write_text("spend,fee,note\n" + "\n".join(rows) + "\n", encoding="utf-8")

    inference = infer.infer_columns(infer.read_table(path))

    assert [column.name for column in inference.columns] == ["spend", "fee"]
    assert "constant (7.5 in every row)" in reason(inference, "fee")
    assert "note: left out: empty in every row" in inference.decisions
    assert inference.features == ("spend",)


def test_semicolons_and_old_mac_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    rows = [f"{row};{row * 3.5}" for row in range(1, 13)]
    path.write_bytes(("Score (1-10);Spend\r" + "\r".join(rows) + "\r").encode())

    inference = infer.infer_columns(infer.read_table(path))

    # Twelve scores run past the header's range: it is noted, not written as min and max.
    assert entries(inference)["score"] == {
        "name": "score",
        "source": "Score (1-10)",
        "type": "numeric",
    }
    assert "values fall outside" in reason(inference, "score")
    assert inference.features == ("score", "spend")


def test_one_column_suggests_another_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "spaced.txt"
    path.write_text("id date amount\n1 19970101 11.77\n2 19970112 12.00\n", encoding="utf-8")

    inference = infer.infer_columns(infer.read_table(path))

    assert len(inference.columns) == 1
    assert any(decision.startswith("only one column") for decision in inference.decisions)


# --- dates ----------------------------------------------------------------------------------------


def test_ambiguous_dates_are_read_day_first_and_say_so() -> None:
    found = infer.detect_date_format(pl.Series(["01/02/2024", "12/11/2023", "05/06/2024"]))

    assert found is not None
    assert found.format == "%d/%m/%Y"
    assert "ambiguous" in found.note
    assert "%m/%d/%Y" in found.note


def test_month_first_dates_proven_by_a_value() -> None:
    found = infer.detect_date_format(pl.Series(["01/02/2024 10:30", "12/31/2024 08:00"]))

    assert found is not None
    assert found.format == "%m/%d/%Y %H:%M"
    assert "month-first, as 12/31/2024 08:00 proves" in found.note


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2024-01-31", "2023-12-01"], "%Y-%m-%d"),
        (["2024-01-31T10:11:12"], "%Y-%m-%dT%H:%M:%S"),
        (["31.01.2024"], "%d.%m.%Y"),
        (["20240131", "20231201"], "%Y%m%d"),
        (["31/01/24"], None),  # two-digit years are not read as the year 24
        (["2024-01-31", "soon"], None),
        (["12345678"], None),  # eight digits, but no valid month
    ],
)
def test_date_formats(values: list[str], expected: str | None) -> None:
    found = infer.detect_date_format(pl.Series(values))
    assert (found.format if found else None) == expected


def test_dates_with_missing_values_drop_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "signups.csv"
    days = ["2024-01-05", "", "2024-03-01", "2024-02-11"]
    path.write_text("Signed Up\n" + "\n".join(days) + "\n", encoding="utf-8")

    (column,) = infer.infer_columns(infer.read_table(path)).columns

    assert column.entry() == {
        "name": "signed_up",
        "source": "Signed Up",
        "type": "date",
        "format": "%Y-%m-%d",
        "missing": "drop",
    }


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Annual Income (k$)", "annual_income_k"),
        ("Spending Score (1-100)", "spending_score"),
        ("MntWines", "mnt_wines"),
        ("CUST_ID", "cust_id"),
        ("Âge", "age"),
    ],
)
def test_snake_names(header: str, name: str) -> None:
    assert infer.snake_name(header) == name


def test_unique_names_are_valid_and_distinct() -> None:
    names = infer.unique_names(
        ["age", "age", "2024_sales", "", "customer_id"], frozenset({"customer_id"})
    )
    assert names == ["age", "age_2", "column_2024_sales", "column_4", "customer_id_2"]


@pytest.mark.parametrize(
    ("header", "is_id"),
    [
        ("id", True),
        ("customer_id", True),
        ("CustID", True),
        ("CUST_ID", True),
        ("client no", True),
        ("account number", True),
        ("paid", False),
        ("valid", False),
        ("number", False),
        ("Age", False),
    ],
)
def test_id_headers(header: str, is_id: bool) -> None:
    assert infer.looks_like_id(header) is is_id


# --- unreadable data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"a,b\n", "no rows"),
        (b"a,a\n1,2\n", "appears twice"),
        (b"a,b\n1,\xff\n", "not a readable CSV file"),
    ],
)
def test_unreadable_tables_name_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem) as raised:
        infer.read_table(path)
    assert str(raised.value).startswith(str(path))


# --- the command ----------------------------------------------------------------------------------


def test_init_writes_the_config_beside_the_data(
    wholesale: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wholesale.parent)

    result = invoke("init", wholesale.name)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Config: wholesale.yaml",
        "next: edit it, then make all CONFIG=wholesale.yaml",
    ]
    assert "Region: categorical (integer codes, 3 distinct values)" in result.stderr
    config = yaml.safe_load((wholesale.parent / "wholesale.yaml").read_text(encoding="utf-8"))
    assert config["data"] == {"path": "wholesale.tsv", "url": None, "sha256": None, "as_of": None}
    assert config["features"] == ["fresh", "income"]
    assert config["report"] == {"title": "Customer segments: wholesale"}
    assert set(config) == {
        "data",
        "columns",
        "features",
        "scaling",
        "naming",
        "prepare",
        "select_k",
        "cluster",
        "visualize",
        "report",
    }


def test_init_refuses_to_overwrite_without_force(
    mall: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(mall.parent)
    output = mall.parent / "mine.yaml"
    output.write_text("keep: me\n", encoding="utf-8")

    refused = invoke("init", str(mall), "--output", "mine.yaml")

    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [
        "error: mine.yaml: already exists; pass --force to overwrite it, or --output another file"
    ]
    assert output.read_text(encoding="utf-8") == "keep: me\n"

    forced = invoke("init", str(mall), "--output", "mine.yaml", "--force")

    assert forced.exit_code == 0, forced.output
    config = yaml.safe_load(output.read_text(encoding="utf-8"))
    # An absolute path inside the working folder is written relative to it.
    assert config["data"]["path"] == "Mall_Customers.csv"
    assert config["columns"][0] == {"name": "customer_id", "source": "CustomerID", "type": "id"}


def test_init_on_a_missing_file_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    result = invoke("init", "nowhere.csv")

    assert result.exit_code == 3
    assert result.stderr.strip() == "error: nowhere.csv: no such file; check the path"
    assert not (tmp_path / "nowhere.yaml").exists()
