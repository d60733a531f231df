"""Declared tables: any customer table through `columns:` (schema.py, and prepare reading through it)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segmentation import prepare
from segmentation.config import Scaling, parse_config
from segmentation.errors import ConfigError, DataError
from segmentation.schema import ColumnSpec, TableSchema

Write = Callable[..., Path]


def table(columns: list[dict[str, Any]], features: list[str], **learned: Any) -> TableSchema:
    return TableSchema(
        columns=tuple(ColumnSpec.model_validate(c) for c in columns),
        features=tuple(features),
        **learned,
    )


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write CSV text to tmp_path/name and return its path."""

    def write(text: str, name: str = "customers.csv") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def load(path: Path, schema: TableSchema, on_invalid: str = "fail", **kw: Any) -> prepare.Prepared:
    return prepare.load_customers(path, schema, on_invalid, **kw)


def fitted(prepared: prepare.Prepared) -> tuple[np.ndarray, prepare.Scaler, dict[str, Any]]:
    unscaled = prepare.unscaled_matrix(prepared.customers, prepared.schema)
    scaler = prepare.fit_scaler(unscaled, prepared.schema, Scaling.STANDARD)
    return unscaled, scaler, prepare.summarise(prepared, scaler, unscaled)


NUMBERS = [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}]


# --- columns and headers --------------------------------------------------------------------------


def test_without_an_id_column_customers_are_numbered_by_data_row(write: Write) -> None:
    prepared = load(write("x,y\n1,2\n\n3,4\n5,7\n"), table(NUMBERS, ["x", "y"]))
    assert prepared.customers["customer_id"].to_list() == ["1", "2", "3"]
    assert prepared.customers["source_line"].to_list() == [2, 4, 5]
    assert prepared.customers["y"].to_list() == [2.0, 4.0, 7.0]


def test_undeclared_columns_are_left_out_and_listed(write: Write) -> None:
    prepared = load(write("x,notes,y,Region\n1,a,2,N\n3,b,4,S\n5,c,7,N\n"), table(NUMBERS, ["x"]))
    assert prepared.customers.columns == ["source_line", "customer_id", "x", "y"]
    assert prepared.ignored_columns == ("notes", "Region")
    assert fitted(prepared)[2]["ignored_columns"] == ["notes", "Region"]


def test_sources_are_matched_ignoring_case_and_punctuation(write: Write) -> None:
    schema = table(
        [
            {"name": "cid", "source": ["Customer No.", "ID"], "type": "id"},
            {"name": "amount", "source": ["Amount (EUR)"], "type": "numeric"},
        ],
        ["amount"],
    )
    prepared = load(write("customer_no,AMOUNT EUR\nA1,1\nA2,2\nA3,5\n"), schema)
    assert prepared.customers["customer_id"].to_list() == ["A1", "A2", "A3"]
    assert prepared.customers["amount"].to_list() == [1.0, 2.0, 5.0]
    # The second source, then the name itself, are accepted too.
    assert load(write("id,amount\nA1,1\nA2,2\nA3,5\n"), schema).customers["amount"].sum() == 8.0
    assert load(write("CID,Amount\nA1,1\nA2,2\nA3,5\n"), schema).customers.height == 3


def test_a_declared_column_missing_from_the_file_is_named(write: Write) -> None:
    path = write("x,z\n1,2\n3,4\n5,6\n")
    with pytest.raises(DataError, match=r"no column for 'y' \(source: y\); the file has x, z"):
        load(path, table(NUMBERS, ["x"]))


def test_numeric_min_and_max_are_inclusive_bounds(write: Write) -> None:
    schema = table([{"name": "n", "type": "numeric", "min": 1, "max": 5}], ["n"])
    assert load(write("n\n1\n2\n5\n"), schema).customers["n"].to_list() == [1.0, 2.0, 5.0]
    rejects = load(write("n\n1\n0\n5.5\n2\n5\n"), schema, "drop").rejects
    assert rejects.select("source_line", "reason").rows() == [
        (3, "n 0.0 is outside 1-5"),
        (4, "n 5.5 is outside 1-5"),
    ]
    only_min = table([{"name": "n", "type": "numeric", "min": 10}], ["n"])
    rejects = load(write("n\n10\n9\n11\n12\n"), only_min, "drop").rejects
    assert rejects["reason"].to_list() == ["n 9.0 is below the minimum 10"]


def test_categories_match_ignoring_case_and_through_aliases(write: Write) -> None:
    schema = table(
        [
            {"name": "plan", "type": "categorical", "categories": ["Basic", "Pro"]},
            {"name": "aliases", "type": "categorical", "aliases": {"p": "Pro"}},
            {"name": "n", "type": "numeric"},
        ],
        ["plan", "n"],
    )
    text = "plan,aliases,n\nbasic,x,1\nPRO,p,2\n Pro ,P,3\nGold,q,4\n"
    prepared = load(write(text), schema, "drop")
    assert prepared.customers["plan"].to_list() == ["Basic", "Pro", "Pro"]
    assert prepared.customers["aliases"].to_list() == ["x", "Pro", "Pro"]
    assert prepared.rejects["reason"].to_list() == ["plan Gold must be one of Basic, Pro"]


def test_integer_codes_declared_categorical_are_read_as_text(write: Write) -> None:
    spec = ColumnSpec.model_validate({"name": "k", "type": "categorical", "categories": [1, 2]})
    assert spec.categories == ("1", "2")
    schema = table([spec.model_dump(), {"name": "n", "type": "numeric"}], ["k", "n"])
    prepared = load(write("k,n\n1,1\n2,2\n1,3\n3,4\n"), schema, "drop")
    assert prepared.customers["k"].to_list() == ["1", "2", "1"]
    assert prepared.schema.matrix_columns == ("k=1", "k=2", "n")
    assert prepared.rejects["reason"].to_list() == ["k 3 must be one of 1, 2"]


# --- missing values -------------------------------------------------------------------------------

MISSING = [
    {"name": "cid", "type": "id"},
    {"name": "a", "type": "numeric", "missing": "median"},
    {"name": "b", "type": "numeric", "missing": "drop"},
    {"name": "c", "type": "categorical", "missing": "mode"},
    {"name": "d", "type": "numeric", "missing": -1},
    {"name": "e", "type": "numeric"},
]
MISSING_CSV = "cid,a,b,c,d,e\n1,1,1,x,1,1\n2,,2,y,,2\n3,3,,y,3,3\n4,10,4,,4,4\n5,5,5,x,5,5\n"


def test_each_missing_policy(write: Write) -> None:
    prepared = load(write(MISSING_CSV), table(MISSING, ["a", "e"]))
    customers = prepared.customers
    # Row 3 (line 4) is dropped for its missing b; what is learned comes from the rows kept.
    assert prepared.rejects.to_dicts() == [
        {"source_line": 4, "customer_id": "3", "reason": "b is missing (missing: drop)"}
    ]
    assert customers["customer_id"].to_list() == ["1", "2", "4", "5"]
    assert customers["a"].to_list() == [1.0, 5.0, 10.0, 5.0]  # median of 1, 10 and 5
    assert customers["c"].to_list() == ["x", "y", "x", "x"]  # mode of x, y, x
    assert customers["d"].to_list() == [1.0, -1.0, 4.0, 5.0]  # the constant
    assert prepared.schema.imputed == {"a": 5.0, "c": "x", "d": -1.0}
    assert fitted(prepared)[2]["missing"] == {
        "a": {"policy": "median", "missing": 1, "filled_with": 5.0},
        "b": {"policy": "drop", "missing": 1, "dropped": 1},
        "c": {"policy": "mode", "missing": 1, "filled_with": "x"},
        "d": {"policy": -1.0, "missing": 1, "filled_with": -1.0},
    }


def test_missing_fail_makes_the_row_invalid(write: Write) -> None:
    path = write(MISSING_CSV.replace("4,10,4,,4,4", "4,10,4,x,4,"))
    with pytest.raises(DataError, match=r"1 invalid row\(s\): line 5: e is missing; fix them"):
        load(path, table(MISSING, ["a", "e"]))


def test_mode_ties_go_to_the_smallest_value(write: Write) -> None:
    schema = table(
        [{"name": "g", "type": "categorical", "missing": "mode"}, {"name": "n", "type": "numeric"}],
        ["n"],
    )
    prepared = load(write("g,n\nb,1\na,2\nb,3\na,4\n,5\n"), schema)
    assert prepared.schema.imputed == {"g": "a"}
    assert prepared.customers["g"].to_list() == ["b", "a", "b", "a", "a"]


def test_a_column_with_no_values_is_refused_naming_it(write: Write) -> None:
    schema = table(
        [{"name": "a", "type": "numeric", "missing": "median"}, {"name": "b", "type": "numeric"}],
        ["b"],
    )
    path = write("a,b\n,1\n,2\n,3\n")
    with pytest.raises(DataError) as caught:
        load(path, schema)
    assert str(caught.value) == (
        f"{path}: column 'a' (header 'a') has no values in any row; fill it in, "
        "or leave it out of columns"
    )


# --- transform, clip and computed columns ---------------------------------------------------------


def test_log1p_is_applied_in_the_matrix(write: Write) -> None:
    schema = table([{"name": "a", "type": "numeric", "transform": "log1p"}, NUMBERS[0]], ["a", "x"])
    prepared = load(write("a,x\n0,1\n9,2\n99,3\n"), schema)
    assert prepared.customers["a"].to_list() == [0.0, 9.0, 99.0]  # the data stays as it is
    unscaled = prepare.unscaled_matrix(prepared.customers, prepared.schema)
    np.testing.assert_allclose(unscaled[:, 0], np.log1p([0.0, 9.0, 99.0]))
    np.testing.assert_array_equal(unscaled[:, 1], [1.0, 2.0, 3.0])


def test_a_negative_value_under_log1p_is_an_invalid_row(write: Write) -> None:
    schema = table([{"name": "a", "type": "numeric", "transform": "log1p"}, NUMBERS[0]], ["a"])
    with pytest.raises(
        DataError, match=r"line 3: a -2 is negative; log1p needs 0 or more; fix them"
    ):
        load(write("a,x\n1,1\n-2,2\n3,3\n4,5\n"), schema)


def test_clip_bounds_are_quantiles_and_clip_the_matrix(write: Write) -> None:
    schema = table([{"name": "a", "type": "numeric", "clip": [0.05, 0.95]}], ["a"])
    values = [*range(1, 21), 1000]
    prepared = load(write("a\n" + "".join(f"{v}\n" for v in values)), schema)
    # Linear quantiles of 21 values: the 2nd and the 20th.
    assert prepared.schema.clip_bounds == {"a": (2.0, 20.0)}
    unscaled, _, summary = fitted(prepared)
    assert summary["clipped"] == {
        "a": {"quantiles": [0.05, 0.95], "low": 2.0, "high": 20.0, "clipped": 2}
    }
    assert unscaled[:, 0].tolist() == [2.0, *range(2, 21), 20.0]
    assert prepared.customers["a"].max() == 1000.0  # the data stays as it is


def test_expr_computes_a_column_from_undeclared_file_columns(write: Write) -> None:
    schema = table(
        [{"name": "cid", "type": "id"}, {"name": "total", "type": "numeric", "expr": "a + b"}],
        ["total"],
    )
    prepared = load(write("cid,a,b,c\n1,1,2,x\n2,3,4,y\n3,5,7,z\n"), schema)
    assert prepared.customers["total"].to_list() == [3.0, 7.0, 12.0]
    assert prepared.ignored_columns == ("c",)  # a and b are used by the expression


def test_expr_over_declared_columns(write: Write) -> None:
    schema = table(
        [
            {"name": "x", "source": "A", "type": "numeric"},
            {"name": "y", "source": "B", "type": "numeric"},
            {"name": "total", "type": "numeric", "expr": "x * 10 + y"},
        ],
        ["total"],
    )
    prepared = load(write("A,B\n1,2\n3,4\n5,7\n"), schema)
    assert prepared.customers["total"].to_list() == [12.0, 34.0, 57.0]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "a + c",
            r"^columns\.1\.expr: expr of 'total' names c, which is neither a declared column",
        ),
        (
            "a + + * (",
            r"^columns\.1\.expr: expr 'a \+ \+ \* \(' of 'total' is not a SQL expression",
        ),
    ],
)
def test_a_bad_expr_is_a_config_error_with_its_key(write: Write, expr: str, message: str) -> None:
    schema = table(
        [{"name": "cid", "type": "id"}, {"name": "total", "type": "numeric", "expr": expr}],
        ["total"],
    )
    with pytest.raises(ConfigError, match=message) as caught:
        load(write("cid,a,b\n1,1,2\n2,3,4\n3,5,7\n"), schema)
    assert caught.value.key == "columns.1.expr"


# --- dates ----------------------------------------------------------------------------------------

DATES = [
    {"name": "cid", "type": "id"},
    {"name": "last", "type": "date", "format": "%d/%m/%Y"},
    {"name": "n", "type": "numeric"},
]
DATES_CSV = "cid,last,n\n1,31/01/2024,1\n2,21/01/2024,2\n3,01/01/2024,3\n"


def test_dates_are_days_before_the_latest_date(write: Write) -> None:
    prepared = load(write(DATES_CSV), table(DATES, ["last", "n"]))
    assert prepared.schema.as_of == "2024-01-31"
    unscaled, _, summary = fitted(prepared)
    assert unscaled[:, 0].tolist() == [0.0, 10.0, 30.0]
    assert summary["as_of"] == "2024-01-31"
    assert summary["population"]["last"]["max"] == 30.0


def test_an_explicit_as_of_is_used(write: Write) -> None:
    prepared = load(write(DATES_CSV), table(DATES, ["last", "n"]), as_of="2024-02-10")
    assert prepared.schema.as_of == "2024-02-10"
    unscaled = prepare.unscaled_matrix(prepared.customers, prepared.schema)
    assert unscaled[:, 0].tolist() == [10.0, 20.0, 40.0]


def test_a_date_not_in_its_format_is_an_invalid_row(write: Write) -> None:
    path = write(DATES_CSV.replace("31/01/2024", "2024-01-31"))
    with pytest.raises(
        DataError, match=r"line 2: last '2024-01-31' is not a date in format %d/%m/%Y"
    ):
        load(path, table(DATES, ["last", "n"]))


# --- categorical features -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 5])
def test_a_categorical_feature_is_one_hot_with_total_variance_1(write: Write, count: int) -> None:
    rng = random.Random(count)
    levels = "ABCDE"[:count]
    rows = "".join(
        f"{i},{levels[i % count] if i < count else rng.choice(levels)},{i}\n" for i in range(60)
    )
    schema = table(
        [{"name": "cid", "type": "id"}, {"name": "g", "type": "categorical"}, NUMBERS[0]],
        ["g", "x"],
    )
    prepared = load(write("cid,g,x\n" + rows), schema)
    assert prepared.schema.categories == {"g": tuple(levels)}
    assert prepared.schema.matrix_columns == (*(f"g={level}" for level in levels), "x")
    unscaled, scaler, _ = fitted(prepared)
    assert unscaled[:, :count].sum(axis=1).tolist() == [1.0] * 60  # one indicator per row
    scaled = scaler.transform(unscaled)
    assert scaled[:, :count].var(axis=0).sum() == pytest.approx(1.0)
    assert scaled[:, count].var() == pytest.approx(1.0)  # like one standardised numeric column


def test_a_constant_feature_is_refused(write: Write) -> None:
    with pytest.raises(DataError, match=r"feature 'y' is constant \(7\.0\): it cannot separate"):
        load(write("x,y\n1,7\n2,7\n3,7\n"), table(NUMBERS, ["x", "y"]))


def test_a_categorical_feature_with_one_category_is_refused(write: Write) -> None:
    schema = table([{"name": "g", "type": "categorical"}, NUMBERS[0]], ["g", "x"])
    with pytest.raises(DataError, match=r"feature 'g' has one category only \('A'\)"):
        load(write("g,x\nA,1\nA,2\nA,3\n"), schema)


# --- labelling new customers with a saved schema (assign) -----------------------------------------

ASSIGN = [
    {"name": "cid", "type": "id"},
    {"name": "g", "type": "categorical", "missing": "mode"},
    {"name": "n", "type": "numeric", "missing": "median"},
]


def test_assign_refuses_an_unseen_category(write: Write) -> None:
    fit = load(write("cid,g,n\n1,A,1\n2,B,2\n3,A,3\n"), table(ASSIGN, ["g", "n"]))
    path = write("cid,g,n\n7,A,1\n8,C,2\n", "new.csv")
    with pytest.raises(DataError) as caught:
        load(path, fit.schema, learn=False)
    assert str(caught.value) == (
        f"{path}: 1 invalid row(s): line 3: g 'C' was not seen when the model was fitted "
        "(known: A, B); fix them, or leave them out of the file"
    )


def test_assign_fills_missing_values_from_the_schema_and_takes_one_row(write: Write) -> None:
    fit = load(write("cid,g,n\n1,A,1\n2,B,2\n3,B,3\n4,A,10\n"), table(ASSIGN, ["g", "n"]))
    # Nothing was missing when fitting: the values to fill in are learned all the same.
    assert fit.schema.imputed == {"g": "A", "n": 2.5}
    new = load(write("cid,g,n\n7,,\n", "new.csv"), fit.schema, learn=False)
    assert new.customers.select("customer_id", "g", "n").rows() == [("7", "A", 2.5)]
    assert new.schema == fit.schema  # nothing learned from the new customers
    assert np.isfinite(prepare.unscaled_matrix(new.customers, new.schema)).all()


# --- the config of the columns --------------------------------------------------------------------

HEAD = "data:\n  path: customers.csv\ncolumns:\n  - {name: cid, type: id}\n"


def config(columns: str, features: str = "[a]") -> str:
    """Config text: an id column on line 4, then `columns` from line 5, then the features."""
    return HEAD + columns + f"features: {features}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            config("  - {name: a, type: text}\n"),
            "config.yaml:5: columns.1.type: Input should be 'id', 'numeric', 'categorical' or "
            "'date', got 'text'",
        ),
        (
            config("  - {name: a, type: numeric}\n  - {name: a, type: numeric}\n"),
            "config.yaml:6: columns.2.name: name 'a' is declared twice (also columns.1)",
        ),
        (
            config("  - {name: a, type: numeric}\n", "[a, b]"),
            "config.yaml:6: features.1: 'b' is not a declared column; declared: cid, a",
        ),
        (
            config("  - {name: a, type: numeric}\n", "[a, cid]"),
            "config.yaml:6: features.1: 'cid' is the id column; it cannot be a feature",
        ),
        (
            config("  - name: a\n    type: categorical\n    transform: log1p\n"),
            "config.yaml:7: columns.1.transform: transform applies to numeric columns only, "
            "not categorical",
        ),
        (
            config("  - {name: a, type: numeric, clip: [0.1, 1.5]}\n"),
            "config.yaml:5: columns.1.clip: clip takes two quantiles [low, high] with "
            "0 <= low < high <= 1",
        ),
        (
            config("  - name: a\n    type: categorical\n    missing: median\n"),
            "config.yaml:7: columns.1.missing: missing: median applies to numeric or date "
            "columns, not categorical",
        ),
        (
            config("  - {name: a, type: numeric, min: 2000000, max: 1000000}\n"),
            "config.yaml:5: columns.1.min: min (2,000,000) must not exceed max (1,000,000)",
        ),
        (
            config("  - {name: a, type: numeric}\n  - {name: b, type: id}\n"),
            "config.yaml:6: columns.2.type: only one column may be of type id",
        ),
        (
            config("  - {name: segment_id, type: numeric}\n", "[segment_id]"),
            "config.yaml:5: columns.1.name: name 'segment_id' is reserved for the outputs; "
            "choose another",
        ),
    ],
)
def test_column_config_errors_name_the_line_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yaml")
    assert str(caught.value) == message


def test_a_valid_column_config_gives_the_table() -> None:
    text = config(
        "  - {name: a, source: [A, Alpha], type: numeric, clip: [0, 0.99], transform: log1p}\n"
        "  - {name: k, type: categorical, categories: [1, 2], missing: mode}\n"
        "  - {name: t, type: numeric, expr: a * 2, missing: 0}\n",
        "[a, k, t]",
    )
    table_ = parse_config(text).table
    assert table_.column("a").headers == ("A", "Alpha", "a")
    assert table_.column("k").categories == ("1", "2")
    assert table_.column("t").headers == ()  # computed, read from no header
    assert [c.imputes for c in table_.columns] == [False, False, True, True]
