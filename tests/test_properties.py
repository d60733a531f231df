"""Properties and fuzzing (hypothesis), with a fixed budget and derandomized so CI is stable.

- Random bytes, random mutations of a valid CSV and random rows never crash the reader: reading and
  validating either succeed or raise DataError naming the file; with `drop`, every row is counted.
- Random YAML through the config parser either gives a Config or raises ConfigError naming the file.
- Valid random customers always give a complete version through the pipeline.
- Shuffling the rows or renaming the customers changes no segment's size or name.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import MALL_COLUMNS, ROOT, mall_schema
from segmentation import artifacts, pipeline, prepare, versions
from segmentation.artifacts import Workspace
from segmentation.cluster import segment_customers
from segmentation.config import ClusterConfig, Config, parse_config
from segmentation.errors import ConfigError, DataError
from segmentation.vocabulary import load_vocabulary

BUDGET = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADER = "customer_id,gender,age,annual_income,spending_score"
VALID_CSV = (
    HEADER
    + "\n"
    + "".join(f"C{i},{('Female', 'Male')[i % 2]},{20 + i},{10 * i},{5 + i}\n" for i in range(8))
).encode()
FOUR_CENTERS = ((20.0, 20.0), (20.0, 80.0), (80.0, 20.0), (80.0, 80.0))
FOUR_SIZES = (40, 35, 30, 25)
MALL = mall_schema()
COLUMNS = ["customer_id", "gender", "age", "annual_income", "spending_score"]
MAX_INCOME = MALL.column("annual_income").max or 0.0
GENDERS = MALL.column("gender").categories or ()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the examples write into (hypothesis runs many examples per test function)."""
    return tmp_path_factory.mktemp("properties")


# --- the reader ---------------------------------------------------------------------------------


def read_and_validate(data: bytes, folder: Path) -> None:
    """Read and validate `data` both ways; anything but success or DataError fails the test.

    `load_customers` (what the pipeline and `assign` call, with a fast path for clean files) must
    agree with the text-based reader it falls back on: the same customers, or a DataError too.
    """
    path = folder / "customers.csv"
    path.write_bytes(data)
    for on_invalid in ("fail", "drop"):
        try:
            loaded: pl.DataFrame | None = prepare.load_customers(path, MALL, on_invalid).customers
        except DataError as exc:
            assert str(exc).startswith(str(path)), exc
            loaded = None
        try:
            text = prepare.read_text_table(path)
            # The text-based reader alone (the fallback of load_customers), with exact lines.
            result = prepare._validated(
                prepare._text_frame(path), MALL, on_invalid, str(path), None, True, quiet=False
            )
        except DataError as exc:
            assert str(exc).startswith(str(path)), exc  # says which file
            assert loaded is None
            continue
        assert result is not None
        assert loaded is not None
        assert loaded.select(COLUMNS).equals(result.customers.select(COLUMNS))
        customers, rejects = result.customers, result.rejects
        # Every row read is valid, rejected with a reason, or blank.
        assert customers.height + rejects.height + result.blank_lines == text.height
        assert rejects["reason"].str.len_chars().min() or rejects.height == 0
        lines = [*customers[prepare.LINE], *rejects[prepare.LINE]]
        assert len(set(lines)) == len(lines)
        assert all(line >= 2 for line in lines)
        if on_invalid == "fail":
            assert rejects.height == 0
        # What is kept is what the schema promises.
        assert customers["customer_id"].n_unique() == customers.height
        assert customers["age"].is_between(0, 120).all()
        assert customers["annual_income"].is_between(0, MAX_INCOME).all()
        assert customers["spending_score"].is_between(1, 100).all()
        assert customers["gender"].is_in(list(GENDERS)).all()


@BUDGET
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_data_errors(scratch: Path, data: bytes) -> None:
    read_and_validate(data, scratch)


INSERTS = st.sampled_from(
    [b'"', b",", b";", b"\t", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xef\xbb\xbf", b"-",
     b"1e999", b"nan", b" ", b"", b"\xc3\xa9", b"Male", b"C1", b"9" * 30]
)  # fmt: skip
MUTATION = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "duplicate line"]),
    st.integers(0, len(VALID_CSV)),
    INSERTS | st.binary(min_size=1, max_size=4),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, chunk in mutations:
        at = min(position, len(out))
        if kind == "insert":
            out[at:at] = chunk
        elif kind == "delete":
            del out[at : at + len(chunk)]
        elif kind == "replace":
            out[at : at + len(chunk)] = chunk
        else:
            start = out.rfind(b"\n", 0, at) + 1
            end = out.find(b"\n", at)
            line = out[start : len(out) if end < 0 else end + 1]
            out[start:start] = line
    return bytes(out)


@BUDGET
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_mutations_of_a_valid_csv_raise_only_data_errors(
    scratch: Path, mutations: list[tuple[str, int, bytes]]
) -> None:
    read_and_validate(mutate(VALID_CSV, mutations), scratch)


FIELD = st.one_of(
    st.sampled_from(["", "Male", "female", "F", "30", "-1", "1e300", "inf", "NaN", " 7 ", "101"]),
    st.text(alphabet=st.sampled_from('ab,;"\t\n\r 0123456789.-é\\'), max_size=6),
    st.text(max_size=4),
)


@BUDGET
@given(
    header=st.sampled_from(
        [HEADER, "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)", "id,sex,age"]
    ),
    separator=st.sampled_from([",", ";", "\t", "|"]),
    rows=st.lists(st.lists(FIELD, min_size=0, max_size=7), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_random_rows_raise_only_data_errors(
    scratch: Path, header: str, separator: str, rows: list[list[str]], newline: str
) -> None:
    lines = [header.replace(",", separator), *(separator.join(row) for row in rows)]
    data = newline.join(lines).encode("utf-8", errors="surrogatepass")
    read_and_validate(data, scratch)


# --- the config ---------------------------------------------------------------------------------

SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("path", "url", "sha256", "as_of"),
    "prepare": ("on_invalid",),
    "select_k": ("k_min", "k_max", "rule", "min_segment_share"),
    "cluster": ("k", "n_init", "max_iter", "seed"),
    "visualize": ("width", "height", "png_scale", "max_points", "images"),
    "report": ("title",),
}
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["standard", "silhouette", "elbow", "drop", "age", "gender", "a" * 64, "2024-01-31"]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
    ),
    max_leaves=10,
)


def parse_or_refuse(text: str) -> None:
    try:
        config = parse_config(text, source="random.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("random.yaml"), exc  # says which file
        assert "\n" not in str(exc).strip() or "invalid YAML" in str(exc)
    else:
        assert isinstance(config, Config)
        json.dumps(config.resolved())  # plain data, ready for hashing


@BUDGET
@given(text=st.text(max_size=200))
def test_random_text_is_a_config_or_a_config_error(text: str) -> None:
    parse_or_refuse(text)


@BUDGET
@given(value=VALUES)
def test_random_yaml_is_a_config_or_a_config_error(value: Any) -> None:
    parse_or_refuse(yaml.safe_dump(value))


COLUMN_KEYS = (
    "name", "source", "type", "min", "max", "categories", "aliases", "label", "unit", "missing",
    "transform", "expr", "format", "clip",
)  # fmt: skip
COLUMN = st.fixed_dictionaries(
    {
        "name": st.sampled_from(
            ["age", "gender", "customer_id", "income", "Bad Name", "source_line"]
        )
        | SCALARS,
        "type": st.sampled_from(["id", "numeric", "categorical", "date", "text"]) | SCALARS,
    },
    optional={
        **dict.fromkeys(COLUMN_KEYS[3:], SCALARS | VALUES),
        "source": st.sampled_from(["Age", ["Age", "Years"]]) | SCALARS,
        "missing": st.sampled_from(["fail", "drop", "median", "mode", 0, "Unknown"]) | SCALARS,
        "transform": st.sampled_from(["none", "log1p", "sqrt"]),
        "clip": st.lists(st.floats(-1, 2), max_size=3) | SCALARS,
        "categories": st.lists(st.sampled_from(["Female", "Male", 1, 2]), max_size=3) | SCALARS,
    },
)
KNOWN_KEYS = st.fixed_dictionaries(
    {},
    optional={
        "columns": st.lists(COLUMN, max_size=4) | st.just(MALL_COLUMNS) | VALUES,
        "naming": st.sampled_from(["mall", None, "vocab.yaml"]) | SCALARS,
        **{
            section: st.fixed_dictionaries({}, optional=dict.fromkeys(keys, SCALARS | VALUES))
            | VALUES
            for section, keys in SECTIONS.items()
        },
        "features": st.lists(
            st.sampled_from(["gender", "age", "annual_income", "spending_score", "income"]),
            max_size=5,
        )
        | VALUES,
        "scaling": st.sampled_from(["standard", "minmax", "robust", "none", "zscore"]) | VALUES,
    },
)


VALID = {
    "data": {"path": "customers.csv"},
    "columns": MALL_COLUMNS,
    "features": ["annual_income", "spending_score"],
}
"""A valid config: random values replace some of its sections, so validation gets further."""


@BUDGET
@given(value=KNOWN_KEYS)
def test_random_values_for_known_keys_are_a_config_or_a_config_error(value: Any) -> None:
    parse_or_refuse(yaml.safe_dump(value))
    parse_or_refuse(yaml.safe_dump({**VALID, **value}))


def test_the_valid_config_of_the_fuzzing_is_valid() -> None:
    assert parse_config(yaml.safe_dump(VALID)).features == ("annual_income", "spending_score")


# --- the pipeline on valid random customers -----------------------------------------------------

CUSTOMER = st.tuples(
    st.sampled_from(["Female", "Male"]),
    st.integers(0, 120),
    st.floats(0, MAX_INCOME),
    st.floats(1, 100),
)


def _customers(rows: list[tuple[str, int, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [f"R{i}" for i in range(len(rows))],
            "gender": [row[0] for row in rows],
            "age": [float(row[1]) for row in rows],
            "annual_income": [row[2] for row in rows],
            "spending_score": [row[3] for row in rows],
        }
    )


def _run(
    root: Path,
    make_project: Callable[..., Path],
    customers: pl.DataFrame,
    extra: tuple[str, ...],
    scaling: str,
    targets: tuple[str, ...],
) -> tuple[Workspace, pipeline.Run, pipeline.Result]:
    features = ["annual_income", "spending_score", *extra]
    overrides = {"features": features, "scaling": scaling, "select_k": {"k_max": 4}}
    config = make_project(root, customers, overrides)
    workspace = Workspace(root)
    run = pipeline.open_run(config, workspace)
    result = pipeline.execute(
        run, targets, lambda _label, _total: lambda _steps: None, lambda _o: None
    )
    return workspace, run, result


# Each example runs prepare, select-k and cluster (the stages the data can upset): no shrinking.
@settings(BUDGET, max_examples=6, phases=(Phase.explicit, Phase.generate))
@given(
    rows=st.lists(CUSTOMER, min_size=8, max_size=60, unique_by=lambda row: (row[2], row[3])),
    extra=st.sampled_from([(), ("age",), ("gender",), ("age", "gender")]),
    scaling=st.sampled_from(["standard", "minmax", "robust", "none"]),
)
def test_valid_random_customers_are_always_segmented(
    scratch: Path,
    make_project: Callable[..., Path],
    rows: list[tuple[str, int, float, float]],
    extra: tuple[str, ...],
    scaling: str,
) -> None:
    # Income and spending pairs are unique: more distinct customers than the largest k (4).
    root = Path(tempfile.mkdtemp(dir=scratch))
    _, _, result = _run(root, make_project, _customers(rows), extra, scaling, ("cluster",))
    segments = pl.read_csv(result.outputs["cluster"] / artifacts.SEGMENTS)
    assert segments["size"].sum() == len(rows)
    assert segments["name"].null_count() == 0


def test_valid_random_customers_make_a_complete_version(
    scratch: Path, make_project: Callable[..., Path]
) -> None:
    # One whole run with charts and report (the slow stages) on random customers, every kind of
    # feature at once.
    rng = Random(7)
    rows = [
        (
            rng.choice(["Female", "Male"]),
            rng.randint(0, 120),
            rng.uniform(0, 200),
            rng.uniform(1, 100),
        )
        for _ in range(40)
    ]
    root = Path(tempfile.mkdtemp(dir=scratch))
    workspace, run, result = _run(
        root, make_project, _customers(rows), ("age", "gender"), "robust", pipeline.STAGE_ORDER
    )
    assert result.report is not None and result.report.is_file()
    assert versions.is_complete(workspace, run.version)
    folder = workspace.version_dir(run.version)
    manifest = json.loads((folder / artifacts.MANIFEST).read_text(encoding="utf-8"))
    for name, digest in manifest["outputs"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    segments = pl.read_csv(folder / artifacts.SEGMENTS)
    assert segments["size"].sum() == len(rows)
    assert (workspace.artifacts / artifacts.LATEST).resolve().name == run.version


# --- invariance: row order and customer ids do not matter ---------------------------------------


@settings(BUDGET, max_examples=25)
@given(
    seed=st.integers(0, 2**16), order=st.randoms(use_true_random=False), prefix=st.text(max_size=3)
)
def test_shuffled_rows_and_renamed_ids_give_the_same_segments(
    make_blobs: Callable[..., pl.DataFrame],
    featurize: Callable[..., Any],
    seed: int,
    order: Random,
    prefix: str,
) -> None:
    customers = make_blobs(FOUR_CENTERS, FOUR_SIZES, seed=seed)
    rows = list(range(customers.height))
    order.shuffle(rows)
    new_ids = [f"{prefix}{i}" for i in rows]  # a permutation of fresh ids
    renamed = dict(zip(customers["customer_id"], new_ids, strict=True))
    shuffled = customers[rows].with_columns(
        pl.col("customer_id").replace_strict(renamed, return_dtype=pl.String)
    )

    vocabulary = load_vocabulary("mall", ROOT, {c.name for c in MALL.columns})

    def segments(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
        bundle = featurize(frame)
        result = segment_customers(
            frame,
            bundle.matrix,
            bundle.unscaled,
            bundle.scaler,
            bundle.schema,
            4,
            ClusterConfig(n_init=4),
            bundle.population,
            bundle.category_shares,
            vocabulary,
        )
        ids = result.assignments["customer_id"].to_list()
        return result.segments, dict(zip(ids, result.assignments["segment_id"], strict=True))

    before, labels_before = segments(customers)
    after, labels_after = segments(shuffled)
    assert before["name"].to_list() == after["name"].to_list()
    assert before["size"].to_list() == after["size"].to_list()
    assert {renamed[c]: s for c, s in labels_before.items()} == labels_after
    np.testing.assert_allclose(
        before["centroid_annual_income"].to_numpy(), after["centroid_annual_income"].to_numpy()
    )
