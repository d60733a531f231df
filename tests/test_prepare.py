"""Stage 1: reading the CSV, validating rows, building and scaling the feature matrix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import mall_schema
from segmentation import prepare, prepared
from segmentation.config import Scaling
from segmentation.errors import DataError
from segmentation.schema import TableSchema

HEADER = "customer_id,gender,age,annual_income,spending_score"
MALL_HEADER = "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)"
GOOD_ROWS = ["1,Male,19,15,39", "2,Male,21,15,81", "3,Female,20,16,6", "4,Female,23,16,77"]


@pytest.fixture
def write_text(tmp_path: Path) -> Callable[..., Path]:
    """Write CSV lines (header first) to a file; `newline` and `bom` vary the encoding."""

    def write(lines: list[str], newline: str = "\n", bom: bool = False) -> Path:
        path = tmp_path / "customers.csv"
        data = newline.join(lines) + newline
        path.write_bytes(("\ufeff" if bom else "").encode() + data.encode("utf-8"))
        return path

    return write


COLUMNS = ["customer_id", "gender", "age", "annual_income", "spending_score"]
"""The Mall table's declared columns, in the order of the shipped config.yaml."""


def read_valid(path: Path, on_invalid: str = "fail") -> prepare.Prepared:
    return prepare.load_customers(path, mall_schema(), on_invalid)


def learned(features: tuple[str, ...]) -> TableSchema:
    """The Mall schema with the given features and the gender categories a fit would learn."""
    return mall_schema(features).model_copy(update={"categories": {"gender": ("Female", "Male")}})


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        MALL_HEADER,
        "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)",
        "customerid,gender,age,annual income,spending score",
        "ID, Sex ,AGE,Income,Score",
    ],
)
def test_header_variants_are_renamed(write_text: Callable[..., Path], header: str) -> None:
    customers = read_valid(write_text([header, *GOOD_ROWS])).customers
    assert customers.columns == ["source_line", *COLUMNS]
    assert customers["spending_score"].to_list() == [39.0, 81.0, 6.0, 77.0]


def test_utf8_bom_is_ignored(write_text: Callable[..., Path]) -> None:
    customers = read_valid(write_text([MALL_HEADER, *GOOD_ROWS], bom=True)).customers
    assert customers["customer_id"].to_list() == ["1", "2", "3", "4"]


def test_crlf_line_endings_leave_no_carriage_returns(write_text: Callable[..., Path]) -> None:
    customers = read_valid(write_text([MALL_HEADER, *GOOD_ROWS], newline="\r\n")).customers
    assert customers["spending_score"].to_list() == [39.0, 81.0, 6.0, 77.0]


def test_old_mac_line_endings_are_read_with_their_line_numbers(
    write_text: Callable[..., Path],
) -> None:
    path = write_text([MALL_HEADER, *GOOD_ROWS[:3], "4,Female,23,16,0"], newline="\r")
    with pytest.raises(DataError, match=r"line 5: spending_score 0\.0 is outside 1-100"):
        read_valid(path)
    rejects = read_valid(path, on_invalid="drop").rejects
    assert rejects["source_line"].to_list() == [5]


def test_values_are_typed(write_text: Callable[..., Path]) -> None:
    customers = read_valid(write_text([MALL_HEADER, *GOOD_ROWS])).customers
    assert customers.schema == pl.Schema(
        {
            "source_line": pl.Int64,
            "customer_id": pl.String,
            "gender": pl.String,
            "age": pl.Float64,
            "annual_income": pl.Float64,
            "spending_score": pl.Float64,
        }
    )


def test_customer_ids_keep_leading_zeros(write_text: Callable[..., Path]) -> None:
    rows = ["001,Male,19,15,39", "002,Male,21,15,81", "003,Female,20,16,6"]
    customers = read_valid(write_text([HEADER, *rows])).customers
    assert customers["customer_id"].to_list() == ["001", "002", "003"]


def test_gender_spellings_are_normalised(write_text: Callable[..., Path]) -> None:
    rows = ["1,f,19,15,39", "2,M,21,15,81", "3,FEMALE,20,16,6", "4, male ,23,16,77"]
    customers = read_valid(write_text([HEADER, *rows])).customers
    assert customers["gender"].to_list() == ["Female", "Male", "Female", "Male"]


def test_missing_column_is_named(write_text: Callable[..., Path]) -> None:
    path = write_text(["CustomerID,Gender,Age,Annual Income (k$)", "1,Male,19,15"])
    with pytest.raises(DataError) as caught:
        read_valid(path)
    assert str(caught.value) == (
        f"{path}:1: no column for 'spending_score' (source: Spending Score (1-100), Spending Score, "
        "Score, Spending, spending_score); the file has CustomerID, Gender, Age, "
        "Annual Income (k$); fix the column's source in the config"
    )


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_valid(tmp_path / "absent.csv")


def test_empty_file_is_a_data_error(write_text: Callable[..., Path], tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        read_valid(path)


def test_rows_are_numbered_by_file_line(write_text: Callable[..., Path]) -> None:
    text = prepare.read_text_table(write_text([HEADER, *GOOD_ROWS]))
    assert text.columns == ["source_line", *COLUMNS]
    assert text["source_line"].to_list() == [2, 3, 4, 5]
    assert text["age"].to_list() == ["19", "21", "20", "23"]  # every column read as text


# --- validating ---------------------------------------------------------------------------------


def test_fail_names_the_file_lines_of_invalid_rows(write_text: Callable[..., Path]) -> None:
    rows = ["1,Male,19,15,39", "2,Male,200,15,81", "3,Female,20,16,6", "4,Female,23,-5,77"]
    path = write_text([HEADER, *rows])
    with pytest.raises(DataError) as caught:
        read_valid(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 2 invalid row(s): line 3: age 200.0 is outside 0-120; ")
    assert "line 5: annual_income -5.0 is outside 0-1,000,000" in message


def test_fail_lists_the_first_five_rows_and_counts_the_rest(
    write_text: Callable[..., Path],
) -> None:
    rows = [f"{i},Male,19,15,0" for i in range(1, 8)]
    with pytest.raises(DataError, match=r"7 invalid row\(s\).*line 6:.*\(and 2 more row\(s\)\)"):
        read_valid(write_text([HEADER, *rows]))


def test_drop_lists_rejects_with_line_id_and_reason(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS, "5,Male,19,15,0", "6,Female,30,40,50"]
    rejects = read_valid(write_text([HEADER, *rows]), on_invalid="drop").rejects
    assert rejects.to_dicts() == [
        {"source_line": 6, "customer_id": "5", "reason": "spending_score 0.0 is outside 1-100"}
    ]


def test_drop_keeps_the_valid_rows(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS, "5,Male,19,15,0", "6,Female,30,40,50"]
    customers = read_valid(write_text([HEADER, *rows]), on_invalid="drop").customers
    assert customers["customer_id"].to_list() == ["1", "2", "3", "4", "6"]


def test_text_in_a_numeric_column_gets_one_reason(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS, "5,Male,19,lots,50"]
    rejects = read_valid(write_text([HEADER, *rows]), on_invalid="drop").rejects
    assert rejects["reason"].to_list() == ["annual_income 'lots' is not a number"]


def test_duplicate_ids_are_rejected(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS, "2,Female,30,40,50"]
    rejects = read_valid(write_text([HEADER, *rows]), on_invalid="drop").rejects
    assert rejects.select("source_line", "reason").rows() == [
        (3, "customer_id 2 appears more than once"),
        (6, "customer_id 2 appears more than once"),
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("9,Male,121,15,50", "age 121.0 is outside 0-120"),
        ("9,Male,-1,15,50", "age -1.0 is outside 0-120"),
        ("9,Male,30,-0.5,50", "annual_income -0.5 is outside 0-1,000,000"),
        ("9,Male,30,2000000,50", "annual_income 2000000.0 is outside 0-1,000,000"),
        ("9,Male,30,15,0.5", "spending_score 0.5 is outside 1-100"),
        ("9,Male,30,15,101", "spending_score 101.0 is outside 1-100"),
        ("9,Other,30,15,50", "gender Other must be one of Female, Male"),
        ("9,Male,,15,50", "age is missing"),
        (",Male,30,15,50", "customer_id is missing"),
    ],
)
def test_invalid_values_are_explained(
    write_text: Callable[..., Path], row: str, reason: str
) -> None:
    rejects = read_valid(write_text([HEADER, *GOOD_ROWS, row]), on_invalid="drop").rejects
    assert rejects["reason"].to_list() == [reason]


@pytest.mark.parametrize("value", ["0", "120", "1", "100"])
def test_range_bounds_are_inclusive(write_text: Callable[..., Path], value: str) -> None:
    row = f"9,Male,{value},0,{max(1, min(100, int(value)))}"
    prepared = read_valid(write_text([HEADER, *GOOD_ROWS, row]))
    assert prepared.customers.height == 5


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "nan"])
def test_infinite_income_is_rejected(write_text: Callable[..., Path], value: str) -> None:
    # An infinite income would crash the scaler (or the JSON summary) with a traceback instead
    # of being reported as an invalid row.
    rows = [*GOOD_ROWS, f"9,Male,30,{value},50"]
    with pytest.raises(DataError, match=f"line 6: annual_income '{value}' is not a finite number"):
        read_valid(write_text([HEADER, *rows]))


def test_blank_lines_are_skipped_and_counted(write_text: Callable[..., Path]) -> None:
    lines = [HEADER, GOOD_ROWS[0], "", GOOD_ROWS[1], ",,,,", GOOD_ROWS[2], ""]
    prepared = read_valid(write_text(lines))
    assert (prepared.customers.height, prepared.blank_lines) == (3, 3)


def test_a_header_with_only_blank_lines_has_no_customers(write_text: Callable[..., Path]) -> None:
    # Every row blank once left out a column mask had no type, and Polars raised a SchemaError.
    with pytest.raises(DataError, match=r"only 0 valid customer row\(s\); at least 3 are needed"):
        read_valid(write_text([HEADER, "", ",,,,", ""]))


def test_line_numbers_count_blank_lines(write_text: Callable[..., Path]) -> None:
    lines = [HEADER, *GOOD_ROWS[:2], "", "", "7,Male,19,15,0"]
    with pytest.raises(DataError, match="line 6: spending_score"):
        read_valid(write_text(lines))


def test_fewer_than_three_valid_rows_is_an_error(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS[:2], "5,Male,19,15,0"]
    with pytest.raises(DataError, match="only 2 valid customer row"):
        read_valid(write_text([HEADER, *rows]), on_invalid="drop")


# --- features and scaling -----------------------------------------------------------------------


def test_gender_is_one_hot_encoded() -> None:
    assert learned(("gender", "age")).matrix_columns == ("gender=Female", "gender=Male", "age")


def test_one_hot_rows_mark_the_gender(blobs3: pl.DataFrame) -> None:
    matrix = prepare.unscaled_matrix(blobs3, learned(("gender",)))
    expected_female = (blobs3["gender"] == "Female").cast(pl.Float64).to_numpy()
    np.testing.assert_array_equal(matrix, np.column_stack([expected_female, 1 - expected_female]))


def test_numeric_features_are_taken_as_they_are(blobs3: pl.DataFrame) -> None:
    matrix = prepare.unscaled_matrix(blobs3, learned(("spending_score", "age")))
    np.testing.assert_array_equal(matrix, blobs3.select("spending_score", "age").to_numpy())


def _scaled(blobs3: pl.DataFrame, method: Scaling) -> tuple[np.ndarray, np.ndarray]:
    schema = learned(("age", "annual_income", "spending_score"))
    matrix = prepare.unscaled_matrix(blobs3, schema)
    scaler = prepare.fit_scaler(matrix, schema, method)
    return matrix, scaler.transform(matrix)


def test_standard_scaling_gives_mean_0_and_std_1(blobs3: pl.DataFrame) -> None:
    _, scaled = _scaled(blobs3, Scaling.STANDARD)
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=0), 1)


def test_minmax_scaling_spans_0_to_1(blobs3: pl.DataFrame) -> None:
    _, scaled = _scaled(blobs3, Scaling.MINMAX)
    np.testing.assert_allclose(scaled.min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.max(axis=0), 1)


def test_robust_scaling_gives_median_0_and_iqr_1(blobs3: pl.DataFrame) -> None:
    _, scaled = _scaled(blobs3, Scaling.ROBUST)
    q1, median, q3 = np.percentile(scaled, [25, 50, 75], axis=0)
    np.testing.assert_allclose(median, 0, atol=1e-12)
    np.testing.assert_allclose(q3 - q1, 1)


def test_no_scaling_leaves_the_values(blobs3: pl.DataFrame) -> None:
    matrix, scaled = _scaled(blobs3, Scaling.NONE)
    np.testing.assert_array_equal(scaled, matrix)


@pytest.mark.parametrize("method", list(Scaling))
def test_constant_column_does_not_divide_by_zero(method: Scaling) -> None:
    matrix = np.column_stack([np.full(6, 7.0), np.arange(6.0)])
    scaler = prepare.fit_scaler(matrix, learned(("age", "spending_score")), method)
    scaled = scaler.transform(matrix)
    assert np.isfinite(scaled).all()
    assert len(set(scaled[:, 0])) == 1


def test_scaler_survives_a_round_trip_through_a_dict(blobs3: pl.DataFrame) -> None:
    schema = learned(("age",))
    matrix = prepare.unscaled_matrix(blobs3, schema)
    scaler = prepare.fit_scaler(matrix, schema, Scaling.ROBUST)
    assert prepare.Scaler.from_dict(scaler.to_dict()) == scaler


def test_feature_matrix_returns_the_scaled_columns_in_order(blobs3: pl.DataFrame) -> None:
    schema = learned(("gender", "spending_score"))
    unscaled = prepare.unscaled_matrix(blobs3, schema)
    scaler = prepare.fit_scaler(unscaled, schema, Scaling.STANDARD)
    frame = prepare.with_features(blobs3, scaler, unscaled)
    assert [c for c in frame.columns if c.startswith("feature_")] == [
        "feature_gender=Female",
        "feature_gender=Male",
        "feature_spending_score",
    ]
    assert prepared.customer_columns(frame).columns == blobs3.columns
    np.testing.assert_allclose(prepared.feature_matrix(frame), scaler.transform(unscaled))


def test_summary_counts_rows_and_distinct_points(write_text: Callable[..., Path]) -> None:
    rows = [*GOOD_ROWS, "5,Male,19,15,39", "6,Male,19,15,0"]
    prepared = read_valid(write_text([HEADER, *rows]), on_invalid="drop")
    unscaled = prepare.unscaled_matrix(prepared.customers, prepared.schema)
    scaler = prepare.fit_scaler(unscaled, prepared.schema, Scaling.STANDARD)
    summary = prepare.summarise(prepared, scaler, unscaled)
    assert (
        summary["rows_read"],
        summary["rows_valid"],
        summary["rows_rejected"],
        summary["distinct_points"],
    ) == (6, 5, 1, 4)
    assert summary["features"] == ["annual_income", "spending_score"]
    assert "annual_income a number in 0-1,000,000" in summary["checks"]
    assert summary["category_shares"]["gender"] == {"Male": 0.6, "Female": 0.4}
    assert summary["population"]["spending_score"]["max"] == 81.0


# --- Parquet input ------------------------------------------------------------------------------


def _parquet(tmp_path: Path, frame: pl.DataFrame) -> Path:
    path = tmp_path / "customers.parquet"
    frame.write_parquet(path)
    return path


MALL_FRAME = pl.DataFrame(
    {
        "CustomerID": [1, 2, 3, 4],
        "Genre": ["Male", "Male", "Female", " female "],
        "Age": [19, 21, 20, 23],
        "Annual Income (k$)": [15, 15, 16, 16],
        "Spending Score (1-100)": [39, 81, 6, 77],
    }
)


def test_a_typed_parquet_file_gives_the_customers_of_the_same_csv(
    tmp_path: Path, write_text: Callable[..., Path]
) -> None:
    from_parquet = prepare.load_customers(
        _parquet(tmp_path, MALL_FRAME), mall_schema(), "fail"
    ).customers
    csv = write_text(
        [
            MALL_HEADER,
            "1,Male,19,15,39",
            "2,Male,21,15,81",
            "3,Female,20,16,6",
            "4, female ,23,16,77",
        ]
    )
    from_csv = prepare.load_customers(csv, mall_schema(), "fail").customers
    assert from_parquet.drop("source_line").equals(from_csv.drop("source_line"))
    assert from_parquet["source_line"].to_list() == [1, 2, 3, 4]  # rows, counted from 1


def test_numbers_stored_as_text_in_parquet_are_read_too(tmp_path: Path) -> None:
    as_text = MALL_FRAME.with_columns(pl.all().cast(pl.String))
    typed = prepare.load_customers(_parquet(tmp_path, MALL_FRAME), mall_schema(), "fail").customers
    texts = prepare.load_customers(_parquet(tmp_path, as_text), mall_schema(), "fail").customers
    assert texts.select(COLUMNS).equals(typed.select(COLUMNS))


def test_an_invalid_parquet_row_is_named_by_its_row_number(tmp_path: Path) -> None:
    bad = MALL_FRAME.with_columns(pl.Series("Age", [19, 200, 20, 23]))
    path = _parquet(tmp_path, bad)
    with pytest.raises(DataError, match=r"1 invalid row\(s\): row 2: age 200.0 is outside 0-120"):
        prepare.load_customers(path, mall_schema(), "fail")


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    path.write_text(HEADER + "\n")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        prepare.load_customers(path, mall_schema(), "fail")
