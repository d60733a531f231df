"""The catalogue of bad inputs (docs/bad-inputs.md), each one end to end through the `segment` CLI.

Every row of the catalogue is either refused (one line on stderr starting with "error: ", saying
what is wrong and where: the file and line, or the config file, line and key; the documented exit
code; no traceback) or, where the input is fine after all, accepted. Invalid rows are repaired only
when the config asks for it (`prepare.on_invalid: drop`), and then every row is accounted for.

The declared table (config.yaml `columns:`, `features:`, `naming:`) has its own refusals: a wrong
declaration names the config key, a value that breaks a declared rule names its data line.

The last sections cover hostile inputs: a report that must escape what the data says, `segment
assign` on bad input, on a table with a learned categorical feature, or with a damaged or old
model, a download that does not match the pinned hash, and a run that must not touch the network
when the data is present.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from conftest import MALL_COLUMNS, mall_schema
from segmentation import prepare
from segmentation.cli import main

HEADER = "customer_id,gender,age,annual_income,spending_score"
MALL_HEADER = "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)"
# 30 customers in three groups of income and spending, 30 distinct points: lines 2-31 of the file.
GOOD_ROWS = [
    f"C{i:03d},{('Female', 'Male')[i % 2]},{20 + i},{(20, 80, 80)[i % 3] + i % 5},"
    f"{(20, 80, 20)[i % 3] + i % 4}"
    for i in range(30)
]
NEXT_LINE = len(GOOD_ROWS) + 2
"""The file line of a row appended after the good ones."""
DATA = r"/data/customers\.csv"
"""How an error names the data file (the path is absolute, so it ends like this)."""
SRC = Path(__file__).resolve().parent.parent / "src" / "segmentation"

Project = Callable[..., Path]


def csv_bytes(
    rows: list[str] | None = None,
    header: str = HEADER,
    separator: str = ",",
    newline: str = "\n",
    bom: bool = False,
) -> bytes:
    lines = [header, *(GOOD_ROWS if rows is None else rows)]
    text = newline.join(line.replace(",", separator) for line in lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def with_rows(*extra: str) -> bytes:
    return csv_bytes([*GOOD_ROWS, *extra])


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_refused(result: Result, exit_code: int, pattern: str) -> str:
    """One error line (the last thing on stderr), the exit code, no traceback; returns the line."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def project(
    root: Path,
    make_project: Project,
    data: bytes | None = None,
    overrides: dict[str, Any] | None = None,
    config_text: Callable[[str], str] | None = None,
) -> Path:
    """A project in `root` whose data/customers.csv holds `data` (the good rows by default)."""
    settings: dict[str, Any] = {"select_k": {"k_min": 2, "k_max": 4}}
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(settings.get(section), dict):
            settings[section] = {**settings[section], **values}
        else:
            settings[section] = values
    config = make_project(root, pl.DataFrame({"customer_id": ["unused"]}), settings)
    (root / "data" / "customers.csv").write_bytes(csv_bytes() if data is None else data)
    if config_text is not None:
        config.write_text(config_text(config.read_text(encoding="utf-8")), encoding="utf-8")
    return config


def stage_folder(result: Result, stage: str) -> Path:
    """Where a single-stage command says the stage's outputs are."""
    match = re.search(rf"^{re.escape(stage)} outputs: (.+)$", result.stdout, re.M)
    assert match, result.output
    return Path(match.group(1))


# --- the catalogue: refusals --------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    exit_code: int
    message: str
    """A regex the error line must match: what is wrong and where."""
    data: bytes | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    config_text: Callable[[str], str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    """Other files of the project (a vocabulary), by path from the project folder."""


def _append(text: str) -> Callable[[str], str]:
    return lambda config: config + text


DATA_REFUSALS = [
    Refusal(
        "missing file",
        4,
        r"/data/absent\.csv: data file not found and data\.url is null; place the CSV at .* by hand",
        overrides={"data": {"path": "data/absent.csv"}},
    ),
    Refusal(
        "a folder instead of a file",
        3,
        r"/data: is a folder; data\.path must name a CSV file",
        overrides={"data": {"path": "data"}},
    ),
    Refusal("empty file", 3, DATA + r": the file is empty", data=b""),
    Refusal("only blank lines", 3, DATA + r": the file is empty", data=b"\n \r\n\n"),
    Refusal(
        "header only",
        3,
        DATA + r": a header but no customer rows; add one row per customer",
        data=csv_bytes([]),
    ),
    Refusal(
        "a required column missing",
        3,
        DATA + r":1: no column for 'spending_score' \(source: Spending Score \(1-100\), Spending "
        r"Score, Score, Spending, spending_score\); the file has customer_id, gender, age, "
        r"annual_income; fix the column's source in the config$",
        data=b"\n".join(line.rsplit(b",", 1)[0] for line in csv_bytes().splitlines()),
    ),
    Refusal(
        "unknown headers",
        3,
        DATA + r":1: no column for 'customer_id' \(source: CustomerID, Customer, CustID, ID, "
        r"ClientID, customer_id\); the file has a, b, c, d, e; fix the column's source",
        data=csv_bytes(header="a,b,c,d,e"),
    ),
    Refusal(
        "a JSON file instead of CSV",
        3,
        DATA + r":1: no column for 'customer_id' \(.*\); the file has \[\{\"customer_id\": 1\}\]",
        data=b'[{"customer_id": 1}]\n',
    ),
    Refusal(
        "text in a numeric column",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: age 'thirty' is not a number; fix "
        r"them, or set prepare\.on_invalid: drop",
        data=with_rows("X01,Male,thirty,50,50"),
    ),
    Refusal(
        "a missing value",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: annual_income is missing",
        data=with_rows("X02,Male,30,,50"),
    ),
    Refusal(
        "negative income",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: annual_income -5\.0 is outside "
        r"0-1,000,000",
        data=with_rows("X03,Female,30,-5,50"),
    ),
    Refusal(
        "spending score below 1",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: spending_score 0\.0 is outside 1-100",
        data=with_rows("X04,Female,30,50,0"),
    ),
    Refusal(
        "spending score above 100",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: spending_score 101\.0 is outside 1-100",
        data=with_rows("X05,Female,30,50,101"),
    ),
    Refusal(
        "impossible age (over 120)",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: age 150\.0 is outside 0-120",
        data=with_rows("X06,Male,150,50,50"),
    ),
    Refusal(
        "impossible age (negative)",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: age -1\.0 is outside 0-120",
        data=with_rows("X07,Male,-1,50,50"),
    ),
    Refusal(
        "unknown gender",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: gender Robot must be one of "
        r"Female, Male",
        data=with_rows("X08,Robot,30,50,50"),
    ),
    Refusal(
        "duplicate customer ids",
        3,
        DATA + rf": 2 invalid row\(s\): line 3: customer_id C001 appears more than once; line "
        rf"{NEXT_LINE}: customer_id C001 appears more than once",
        data=with_rows("C001,Male,30,50,50"),
    ),
    Refusal(
        "ragged row (too many fields)",
        3,
        DATA + rf":{NEXT_LINE}: 6 fields where the header has 5; fix that row",
        data=with_rows("X09,Male,30,50,50,7"),
    ),
    Refusal(
        "ragged row (too few fields)",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: annual_income is missing, "
        r"spending_score is missing",
        data=with_rows("X10,Male,30"),
    ),
    Refusal(
        "an unclosed quote",
        3,
        DATA + rf":{NEXT_LINE}: not a CSV row \(unexpected end of data\); check the quotes",
        data=with_rows('X11,"Male,30,50,50', "X12,Male,30,50,50"),
    ),
    Refusal(
        "a stray quote inside a field",
        3,
        DATA + rf":{NEXT_LINE}: a quote \(\"\) inside a field; remove it or quote the whole field",
        data=with_rows('X13,Male,30,50,50"'),
    ),
    Refusal(
        "a line break inside a quoted field",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: gender Ma\\nle must be one of "
        r"Female, Male",
        data=with_rows('X14,"Ma\nle",30,50,50'),
    ),
    Refusal(
        "a row after a field that spans lines",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE + 2}: annual_income is missing",
        data=with_rows('"X\n1",Male,30,50,50', "X02,Male,30,,50"),
    ),
    Refusal(
        "control characters in a field",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: gender Ma\\x1b\[2Jle must be one "
        r"of Female",
        data=with_rows("X15,Ma\x1b[2Jle,30,50,50"),
    ),
    Refusal(
        "markup in a field",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: gender \[/\]:smile: must be one of "
        r"Female",
        data=with_rows("X16,[/]:smile:,30,50,50"),
    ),
    Refusal(
        "binary content",
        3,
        DATA + r":1:7: binary content \(a NUL byte\), not a CSV file",
        data=b"PK\x03\x04\x14\x06\x00\x08\x00" + bytes(range(256)),
    ),
    Refusal(
        "not UTF-8 (Latin-1)",
        3,
        DATA + rf":{NEXT_LINE}:8: not UTF-8 text \(byte 0xe9\); save the file as UTF-8",
        data=csv_bytes() + "X17,Mal\xe9,30,50,50\n".encode("latin-1"),
    ),
    Refusal(
        "too few rows",
        3,
        DATA + r": only 2 valid customer row\(s\); at least 3 are needed",
        data=csv_bytes(GOOD_ROWS[:2]),
    ),
    Refusal(
        "too few valid rows after dropping",
        3,
        DATA + r": only 2 valid customer row\(s\); at least 3 are needed",
        data=csv_bytes([*GOOD_ROWS[:2], "X18,Male,30,50,0", "X19,Male,30,-1,50"]),
        overrides={"prepare": {"on_invalid": "drop"}},
    ),
    Refusal(
        "too few distinct points for the k range",
        2,
        r"^error: config\.yaml:\d+: select_k\.k_max: 4 is more than the data allows \(3 distinct "
        r"customers in feature space\); set it to at most 2",
        data=csv_bytes([f"D{i},Male,30,{10 + i % 3},{50 + i % 3}" for i in range(20)]),
    ),
    Refusal(
        "every customer at the same point",
        3,
        DATA + r": feature 'annual_income' is constant \(40\.0\): it cannot separate customers; "
        r"remove it from features$",
        data=csv_bytes([f"D{i},Male,30,40,50" for i in range(20)]),
    ),
    Refusal(
        "a constant feature",
        3,
        DATA + r": feature 'spending_score' is constant \(50\.0\): it cannot separate customers; "
        r"remove it from features$",
        data=csv_bytes([f"D{i:03d},Male,40,{(20, 50, 80)[i % 3] + i % 5},50" for i in range(30)]),
    ),
    Refusal(
        "a categorical feature with one category",
        3,
        DATA + r": feature 'gender' has one category only \('Male'\): it cannot separate "
        r"customers; remove it from features$",
        data=csv_bytes(
            [f"D{i:03d},Male,40,{(20, 50, 80)[i % 3] + i % 5},{i + 1}" for i in range(30)]
        ),
        overrides={"features": ["gender", "annual_income", "spending_score"]},
    ),
    Refusal(
        "huge value (beyond the declared max)",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: annual_income 1e\+300 is outside "
        r"0-1,000,000",
        data=with_rows("X20,Male,30,1e300,50"),
    ),
    Refusal(
        "huge value (overflows a float)",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: age '1{{400}}' is not a finite number",
        data=with_rows(f"X21,Male,{'1' * 400},50,50"),
    ),
    Refusal(
        "inf or nan",
        3,
        DATA + rf": 2 invalid row\(s\): line {NEXT_LINE}: annual_income 'inf' is not a finite "
        rf"number; line {NEXT_LINE + 1}: spending_score 'nan' is not a finite number",
        data=with_rows("X22,Male,30,inf,50", "X23,Male,30,50,nan"),
    ),
    Refusal(
        "data hash mismatch",
        3,
        DATA + r": SHA-256 is [0-9a-f]{64} but data\.sha256 pins (ab){32}; replace the file with "
        r"the pinned one, or set data\.sha256: null to use your own data",
        overrides={"data": {"sha256": "ab" * 32}},
    ),
]

CONFIG_REFUSALS = [
    Refusal(
        "YAML syntax error",
        2,
        r"^error: config\.yaml:(\d+):(\d+): invalid YAML: .*; fix the syntax there",
        config_text=_append("scaling: [standard\nreport: {}\n"),
    ),
    Refusal(
        "tab indentation",
        2,
        r"^error: config\.yaml:\d+:1: invalid YAML: found character '\\t' that cannot start any token",
        config_text=_append("report:\n\ttitle: Tabs\n"),
    ),
    Refusal(
        "not a mapping",
        2,
        r"^error: config\.yaml: the config must be a mapping of sections",
        config_text=lambda _text: "- data\n- features\n",
    ),
    Refusal(
        "not UTF-8",
        2,
        r"^error: config\.yaml: the config is not UTF-8 text",
        config_text=_append("# caf\udce9\n"),
    ),
    Refusal(
        "unknown top-level key",
        2,
        r"^error: config\.yaml:\d+: clusterr: unknown key \(a typo\?\)",
        config_text=_append("clusterr:\n  k: 3\n"),
    ),
    Refusal(
        "unknown key in a section",
        2,
        r"^error: config\.yaml:\d+: select_k\.kmax: unknown key \(a typo\?\)",
        overrides={"select_k": {"kmax": 5}},
    ),
    Refusal(
        "wrong type (text for a number)",
        2,
        r"^error: config\.yaml:\d+: select_k\.k_min: Input should be a valid integer "
        r"\(got 'two'\)",
        overrides={"select_k": {"k_min": "two"}},
    ),
    Refusal(
        "wrong type (a fraction for a count)",
        2,
        r"^error: config\.yaml:\d+: cluster\.n_init: Input should be a valid integer \(got 2\.5\)",
        overrides={"cluster": {"n_init": 2.5}},
    ),
    Refusal(
        "wrong type (yes/no for a number)",
        2,
        r"^error: config\.yaml:\d+: cluster\.seed: Input should be a valid integer \(got True\)",
        overrides={"cluster": {"seed": True}},
    ),
    Refusal(
        "wrong type (a section that is not a mapping)",
        2,
        r"^error: config\.yaml:\d+: cluster: Input should be a valid dictionary",
        overrides={"cluster": 3},
    ),
    Refusal(
        "features not a list",
        2,
        r"^error: config\.yaml:\d+: features: Input should be a valid tuple \(got "
        r"'annual_income'\)",
        overrides={"features": "annual_income"},
    ),
    Refusal(
        "a feature not declared",
        2,
        r"^error: config\.yaml:\d+: features\.0: 'income' is not a declared column; declared: "
        r"customer_id, gender, age, annual_income, spending_score$",
        overrides={"features": ["income", "spending_score"]},
    ),
    Refusal(
        "a feature listed twice",
        2,
        r"^error: config\.yaml:\d+: features\.1: 'age' is listed twice$",
        overrides={"features": ["age", "age"]},
    ),
    Refusal(
        "the id column as a feature",
        2,
        r"^error: config\.yaml:\d+: features\.0: 'customer_id' is the id column; it cannot be a "
        r"feature$",
        overrides={"features": ["customer_id", "age"]},
    ),
    Refusal(
        "no features",
        2,
        r"^error: config\.yaml:\d+: features: list at least one declared column to cluster on$",
        overrides={"features": []},
    ),
    Refusal(
        "k_min > k_max",
        2,
        r"^error: config\.yaml:\d+: select_k: k_min \(5\) must not exceed k_max \(4\)",
        overrides={"select_k": {"k_min": 5}},
    ),
    Refusal(
        "k_min below 2",
        2,
        r"^error: config\.yaml:\d+: select_k\.k_min: Input should be greater than or equal to 2",
        overrides={"select_k": {"k_min": 1}},
    ),
    Refusal(
        "cluster.k larger than the distinct points",
        2,
        r"^error: config\.yaml:\d+: cluster\.k: 40 is more than the data allows \(30 distinct "
        r"customers in feature space\); set it to at most 29",
        overrides={"cluster": {"k": 40}},
    ),
    Refusal(
        "k_max larger than the distinct points",
        2,
        r"^error: config\.yaml:\d+: select_k\.k_max: 30 is more than the data allows",
        overrides={"select_k": {"k_max": 30}},
    ),
    Refusal(
        "unknown scaling",
        2,
        r"^error: config\.yaml:\d+: scaling: Input should be 'standard', .* got 'zscore'",
        overrides={"scaling": "zscore"},
    ),
    Refusal(
        "unknown k rule",
        2,
        r"^error: config\.yaml:\d+: select_k\.rule: Input should be .* got 'magic'",
        overrides={"select_k": {"rule": "magic"}},
    ),
    Refusal(
        "unknown on_invalid",
        2,
        r"^error: config\.yaml:\d+: prepare\.on_invalid: Input should be 'fail' or 'drop', "
        r"got 'skip'",
        overrides={"prepare": {"on_invalid": "skip"}},
    ),
    Refusal(
        "data.sha256 not a SHA-256",
        2,
        r"^error: config\.yaml:\d+: data\.sha256: must be 64 hexadecimal characters",
        overrides={"data": {"sha256": "abc"}},
    ),
]


# --- the catalogue: the declared table (config.yaml `columns:`, `features:`, `naming:`) ---------


def mall_columns(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The shipped Mall columns, with some entries (by name) changed: `age={"transform": ...}`;
    a value of None removes that key."""
    columns = []
    for column in MALL_COLUMNS:
        changed = {**column, **changes.get(column["name"], {})}
        columns.append({key: value for key, value in changed.items() if value is not None})
    return columns


def with_column(name: str, good: Callable[[int], str], *bad: str, blank: bool = False) -> bytes:
    """The good rows with one more column `name` (value `good(i)` on row i), then the `bad` rows,
    each given whole."""
    rows = [f"{row},{'' if blank else good(i)}" for i, row in enumerate(GOOD_ROWS)]
    return csv_bytes([*rows, *bad], header=f"{HEADER},{name}")


REGION = {
    "name": "region",
    "source": "Region",
    "type": "categorical",
    "categories": ["North", "South"],
}
JOINED = {"name": "joined", "source": "Joined", "type": "date", "format": "%d/%m/%Y"}
VOCABULARY = """\
levels:
  loyalty: [Lapsed, Occasional, Regular, Loyal, Devoted]
actions:
  - when: {annual_income: high}
    action: Upsell.
"""

TABLE_REFUSALS = [
    Refusal(
        "a column of unknown type",
        2,
        r"^error: config\.yaml:\d+: columns\.2\.type: Input should be 'id', 'numeric', "
        r"'categorical' or 'date', got 'float'$",
        overrides={"columns": mall_columns(age={"type": "float", "min": None, "max": None})},
    ),
    Refusal(
        "a column name declared twice",
        2,
        r"^error: config\.yaml:\d+: columns\.3\.name: name 'age' is declared twice \(also "
        r"columns\.2\)$",
        overrides={"columns": mall_columns(annual_income={"name": "age"})},
    ),
    Refusal(
        "a source header absent from the file",
        3,
        DATA + r":1: no column for 'spending_score' \(source: Spend, spending_score\); the file "
        r"has CustomerID, Genre, Age, Annual Income \(k\$\), Spending Score \(1-100\); fix the "
        r"column's source in the config$",
        data=csv_bytes(header=MALL_HEADER),
        overrides={"columns": mall_columns(spending_score={"source": ["Spend"]})},
    ),
    Refusal(
        "a category outside categories",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: region West must be one of North, "
        r"South; fix them, or set prepare\.on_invalid: drop to leave them out$",
        data=with_column("Region", lambda i: ("North", "South")[i % 2], "X30,Male,30,50,50,West"),
        overrides={"columns": [*MALL_COLUMNS, REGION]},
    ),
    Refusal(
        "a negative value under log1p",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: age -3 is negative; log1p needs 0 "
        r"or more; fix them",
        data=with_rows("X31,Male,-3,50,50"),
        overrides={"columns": mall_columns(age={"transform": "log1p", "min": None, "max": None})},
    ),
    Refusal(
        "a date not in its format",
        3,
        DATA + rf": 1 invalid row\(s\): line {NEXT_LINE}: joined '2024-03-05' is not a date in "
        r"format %d/%m/%Y; fix them",
        data=with_column(
            "Joined", lambda i: f"{i % 28 + 1:02d}/03/2024", "X32,Male,30,50,50,2024-03-05"
        ),
        overrides={"columns": [*MALL_COLUMNS, JOINED]},
    ),
    Refusal(
        "an all-missing column",
        3,
        DATA + r": column 'region' \(header 'Region'\) has no values in any row; fill it in, or "
        r"leave it out of columns$",
        data=with_column("Region", str, blank=True),
        overrides={"columns": [*MALL_COLUMNS, {**REGION, "missing": "mode"}]},
    ),
    Refusal(
        "an expr naming a missing column",
        2,
        r"^error: config\.yaml:\d+: columns\.5\.expr: expr of 'per_visit' names visits, which is "
        r"neither a declared column nor in the file; the file has age, annual_income, "
        r"customer_id, gender, spending_score$",
        overrides={
            "columns": [
                *MALL_COLUMNS,
                {"name": "per_visit", "type": "numeric", "expr": "annual_income / visits"},
            ]
        },
    ),
    Refusal(
        "an expr that does not parse",
        2,
        r"^error: config\.yaml:\d+: columns\.5\.expr: expr 'annual_income / / age' of "
        r"'per_year' is not a SQL expression \(.*\); fix it$",
        overrides={
            "columns": [
                *MALL_COLUMNS,
                {"name": "per_year", "type": "numeric", "expr": "annual_income / / age"},
            ]
        },
    ),
    Refusal(
        "naming: a missing file",
        2,
        r"^error: config\.yaml:\d+: naming: no vocabulary file \S*/vocab/absent\.yaml; give mall, "
        r"rfm, null or the path of a YAML vocabulary$",
        overrides={"naming": "vocab/absent.yaml"},
    ),
    Refusal(
        "naming: a vocabulary naming an undeclared column",
        2,
        r"^error: config\.yaml:\d+: naming: \S*vocabulary\.yaml names column\(s\) loyalty that "
        r"the config does not declare \(declared: age, annual_income, gender, spending_score\); "
        r"use a vocabulary for this table, or null$",
        overrides={"naming": "vocabulary.yaml"},
        files={"vocabulary.yaml": VOCABULARY},
    ),
    Refusal(
        "select_k.min_segment_share allows no k",
        2,
        r"^error: config\.yaml:\d+: select_k\.min_segment_share: every k from 2 to 4 gives a "
        r"segment smaller than 49\.0% of the customers; lower it, or k_max$",
        overrides={"select_k": {"min_segment_share": 0.49}},
    ),
]


def _write_refusal(root: Path, make_project: Project, case: Refusal) -> None:
    config = project(root, make_project, case.data, case.overrides)
    for name, text in case.files.items():
        (root / name).write_text(text, encoding="utf-8")
    if case.config_text is not None:
        text = case.config_text(config.read_text(encoding="utf-8"))
        config.write_bytes(text.encode("utf-8", errors="surrogateescape"))


@pytest.mark.parametrize(
    "case", DATA_REFUSALS + CONFIG_REFUSALS + TABLE_REFUSALS, ids=lambda case: case.id
)
def test_refused_in_one_line(workdir: Path, make_project: Project, case: Refusal) -> None:
    _write_refusal(workdir, make_project, case)
    assert_refused(invoke("run"), case.exit_code, case.message)
    assert not list((workdir / "artifacts").glob("*/manifest.json"))  # no version was made


def test_a_missing_config_file_is_refused(workdir: Path) -> None:
    assert_refused(
        invoke("run", "--config", "absent.yaml"),
        2,
        r"^error: absent\.yaml: config file not found; pass --config PATH",
    )


def test_config_errors_name_the_exact_line(workdir: Path, make_project: Project) -> None:
    config = project(workdir, make_project, overrides={"select_k": {"kmax": 5}})
    line = config.read_text(encoding="utf-8").splitlines().index("  kmax: 5") + 1
    assert_refused(invoke("run"), 2, rf"^error: config\.yaml:{line}: select_k\.kmax: ")


def test_an_expr_error_found_while_running_names_its_line(
    workdir: Path, make_project: Project
) -> None:
    computed = {"name": "per_visit", "type": "numeric", "expr": "annual_income / visits"}
    config = project(workdir, make_project, overrides={"columns": [*MALL_COLUMNS, computed]})
    line = config.read_text(encoding="utf-8").splitlines().index("  expr: annual_income / visits")
    assert_refused(invoke("prepare"), 2, rf"^error: config\.yaml:{line + 1}: columns\.5\.expr: ")


def test_yaml_errors_name_line_and_column(workdir: Path, make_project: Project) -> None:
    config = project(workdir, make_project)
    lines = config.read_text(encoding="utf-8").count("\n")
    config.write_text(config.read_text(encoding="utf-8") + "scaling: [standard\n")
    # The parser notices the unclosed list at the end of the file.
    assert_refused(invoke("run"), 2, rf"^error: config\.yaml:{lines + 2}:1: invalid YAML: ")


def test_a_key_given_twice_is_refused(workdir: Path, make_project: Project) -> None:
    config = project(workdir, make_project)
    config.write_text(config.read_text(encoding="utf-8") + "scaling: minmax\nscaling: robust\n")
    line = config.read_text(encoding="utf-8").count("\n")  # the second one, the last line
    assert_refused(
        invoke("run"), 2, rf"^error: config\.yaml:{line}: scaling: given twice; keep one of them$"
    )


# --- the catalogue: inputs that are accepted ----------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    id: str
    data: bytes
    overrides: dict[str, Any] = field(default_factory=dict)
    blank_lines: int = 0


SPACED_ROWS = [
    " , ".join(r.split(",")).replace("Female", "f").replace("Male", "M") for r in GOOD_ROWS
]
ACCEPTED = [
    Accepted("the Mall Customers headers", csv_bytes(header=MALL_HEADER)),
    Accepted("other header spellings", csv_bytes(header="ID, Sex ,AGE,Income,Score")),
    Accepted("semicolons", csv_bytes(separator=";")),
    Accepted("tabs", csv_bytes(separator="\t")),
    Accepted("pipes", csv_bytes(separator="|")),
    Accepted("a UTF-8 BOM", csv_bytes(bom=True)),
    Accepted("Windows line endings", csv_bytes(newline="\r\n")),
    Accepted("old Mac line endings", csv_bytes(newline="\r")),
    Accepted(
        "BOM, semicolons and Windows line endings",
        csv_bytes(separator=";", newline="\r\n", bom=True),
    ),
    Accepted(
        "quoted fields", csv_bytes([",".join(f'"{v}"' for v in r.split(",")) for r in GOOD_ROWS])
    ),
    Accepted("spaces around values, m/f genders", csv_bytes(SPACED_ROWS)),
    Accepted(
        "blank lines", csv_bytes([*GOOD_ROWS[:10], "", *GOOD_ROWS[10:], "", ""]), blank_lines=3
    ),
]
CONSTANT = csv_bytes(
    [f"C{i:03d},Male,40,{(20, 50, 80)[i % 3] + i % 5},{(20, 80)[i % 2] + i % 3}" for i in range(30)]
)
"""Gender and age the same for everyone (zero variance); neither is a feature. A constant feature
is refused (`a constant feature`, `a categorical feature with one category`)."""
ACCEPTED += [
    Accepted(
        f"constant columns that are not features, {scaling} scaling", CONSTANT, {"scaling": scaling}
    )
    for scaling in ("standard", "minmax", "robust", "none")
]


# --- Parquet input -------------------------------------------------------------------------------

PARQUET = r"/data/customers\.parquet"


def good_frame() -> pl.DataFrame:
    return pl.read_csv(csv_bytes(), schema_overrides={"customer_id": pl.String})


def parquet_project(root: Path, make_project: Project, frame: pl.DataFrame | None) -> None:
    """A project whose data is data/customers.parquet: `frame` written as Parquet, or, for None,
    a file of that name holding CSV text."""
    project(root, make_project, overrides={"data": {"path": "data/customers.parquet"}})
    target = root / "data" / "customers.parquet"
    if frame is None:
        target.write_bytes(csv_bytes())
    else:
        frame.write_parquet(target)


PARQUET_REFUSALS = [
    ("parquet: not a Parquet file", None, PARQUET + r": not a readable Parquet file \("),
    (
        "parquet: a required column missing",
        good_frame().drop("spending_score"),
        PARQUET + r": no column for 'spending_score' \(source: .*\); the file has customer_id, "
        r"gender, age, annual_income; fix the column's source in the config$",
    ),
    (
        "parquet: no rows",
        good_frame().clear(),
        PARQUET + r": a header but no customer rows; add one row per customer$",
    ),
    (
        "parquet: an invalid value",
        pl.concat(
            [
                good_frame(),
                good_frame()
                .head(1)
                .with_columns(customer_id=pl.lit("X"), age=pl.lit(200, pl.Int64)),
            ]
        ),
        PARQUET + r": 1 invalid row\(s\): row 31: age 200\.0 is outside 0-120; fix them, or set "
        r"prepare\.on_invalid: drop to leave them out$",
    ),
]


@pytest.mark.parametrize(
    ("frame", "message"),
    [case[1:] for case in PARQUET_REFUSALS],
    ids=[case[0] for case in PARQUET_REFUSALS],
)
def test_parquet_refused_in_one_line(
    workdir: Path, make_project: Project, frame: pl.DataFrame | None, message: str
) -> None:
    parquet_project(workdir, make_project, frame)
    assert_refused(invoke("run"), 3, message)
    assert not list((workdir / "artifacts").glob("*/manifest.json"))


@pytest.mark.parametrize("stored", ["typed", "as text"])
def test_parquet_gives_the_customers_of_the_same_csv(
    workdir: Path, make_project: Project, stored: str
) -> None:
    frame = good_frame()
    if stored == "as text":
        frame = frame.with_columns(pl.all().cast(pl.String))
    parquet_project(workdir, make_project, frame)
    result = invoke("prepare")
    assert result.exit_code == 0, result.output
    prepared = pl.read_parquet(stage_folder(result, "prepare") / "prepared.parquet")
    assert prepared.select(CUSTOMER_COLUMNS).equals(_read(csv_bytes(), workdir))


CUSTOMER_COLUMNS = [column["name"] for column in MALL_COLUMNS]


def _read(data: bytes, folder: Path) -> pl.DataFrame:
    """The customers of a plain CSV as prepare reads them: the reference for every variant."""
    path = folder / "reference.csv"
    path.write_bytes(data)
    return prepare.load_customers(path, mall_schema(), "fail").customers.select(CUSTOMER_COLUMNS)


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.id)
def test_accepted(workdir: Path, make_project: Project, case: Accepted) -> None:
    project(workdir, make_project, case.data, case.overrides)
    constant = case.id.startswith("constant")
    # Constant columns through the clustering too; the other cases are about reading the file.
    result = invoke("cluster" if constant else "prepare")
    assert result.exit_code == 0, result.output
    prepared = pl.read_parquet(stage_folder(result, "prepare") / "prepared.parquet")
    summary = json.loads((stage_folder(result, "prepare") / "prepare_summary.json").read_text())
    assert (summary["rows_read"], summary["rows_rejected"]) == (30, 0)
    assert summary["blank_lines_skipped"] == case.blank_lines
    plain = CONSTANT if constant else csv_bytes()
    assert prepared.select(CUSTOMER_COLUMNS).equals(_read(plain, workdir))
    if constant:
        segments = pl.read_csv(stage_folder(result, "cluster") / "segments.csv")
        assert segments["size"].sum() == 30


# --- the catalogue: invalid rows, refused or (prepare.on_invalid: drop) left out ----------------


@dataclass(frozen=True)
class BadRow:
    id: str
    row: str
    reason: str
    """A regex for the reason given in rejects.csv and in the error line."""


BAD_ROWS = [
    BadRow("text in a numeric column", "X01,Male,thirty,50,50", r"age 'thirty' is not a number"),
    BadRow("a missing value", "X02,Male,30,,50", r"annual_income is missing"),
    BadRow("negative income", "X03,Female,30,-5,50", r"annual_income -5\.0 is outside 0-1,000,000"),
    BadRow("score below 1", "X04,Female,30,50,0", r"spending_score 0\.0 is outside 1-100"),
    BadRow("score above 100", "X05,Female,30,50,101", r"spending_score 101\.0 is outside 1-100"),
    BadRow("age over 120", "X06,Male,150,50,50", r"age 150\.0 is outside 0-120"),
    BadRow("negative age", "X07,Male,-1,50,50", r"age -1\.0 is outside 0-120"),
    BadRow("unknown gender", "X08,Robot,30,50,50", r"gender Robot must be one of Female, Male"),
    BadRow(
        "too few fields", "X10,Male,30", r"annual_income is missing[,;] spending_score is missing"
    ),
    BadRow("huge income", "X20,Male,30,1e300,50", r"annual_income 1e\+300 is outside 0-1,000,000"),
    BadRow("infinite value", "X22,Male,30,inf,50", r"annual_income 'inf' is not a finite number"),
    BadRow("missing id", ",Male,30,50,50", r"customer_id is missing"),
    BadRow("duplicate id", "C001,Male,30,50,50", r"customer_id C001 appears more than once"),
]


def _rejected_lines(row: BadRow) -> list[int]:
    # Both rows of a duplicate id are left out: neither can be trusted over the other.
    return [3, NEXT_LINE] if row.id == "duplicate id" else [NEXT_LINE]


@pytest.mark.parametrize("row", BAD_ROWS, ids=lambda row: row.id)
def test_an_invalid_row_is_refused_by_default(
    workdir: Path, make_project: Project, row: BadRow
) -> None:
    project(workdir, make_project, with_rows(row.row))
    lines = _rejected_lines(row)
    assert_refused(
        invoke("run"),
        3,
        DATA + rf": {len(lines)} invalid row\(s\): line {lines[0]}: {row.reason}.*; fix them, "
        r"or set prepare\.on_invalid: drop to leave them out$",
    )


@pytest.mark.parametrize("row", BAD_ROWS, ids=lambda row: row.id)
def test_an_invalid_row_is_left_out_with_drop(
    workdir: Path, make_project: Project, row: BadRow
) -> None:
    project(workdir, make_project, with_rows(row.row), {"prepare": {"on_invalid": "drop"}})
    result = invoke("prepare")
    assert result.exit_code == 0, result.output
    folder = stage_folder(result, "prepare")
    summary = json.loads((folder / "prepare_summary.json").read_text(encoding="utf-8"))
    rejects = pl.read_csv(folder / "rejects.csv", schema_overrides={"customer_id": pl.String})
    lines = _rejected_lines(row)
    assert summary["rows_read"] == len(GOOD_ROWS) + 1
    assert summary["rows_read"] == summary["rows_valid"] + summary["rows_rejected"]
    assert rejects["source_line"].to_list() == lines
    assert all(re.search(row.reason, reason) for reason in rejects["reason"])
    kept = pl.read_parquet(folder / "prepared.parquet")["source_line"].to_list()
    assert sorted(kept + lines) == list(range(2, NEXT_LINE + 1))  # every line accounted for


def test_drop_accounts_for_every_row_of_a_messy_file(workdir: Path, make_project: Project) -> None:
    rows = [*GOOD_ROWS[:15], "", *(bad.row for bad in BAD_ROWS), "", *GOOD_ROWS[15:]]
    project(workdir, make_project, csv_bytes(rows), {"prepare": {"on_invalid": "drop"}})
    result = invoke("prepare")
    assert result.exit_code == 0, result.output
    folder = stage_folder(result, "prepare")
    summary = json.loads((folder / "prepare_summary.json").read_text(encoding="utf-8"))
    rejects = pl.read_csv(folder / "rejects.csv", schema_overrides={"customer_id": pl.String})
    kept = pl.read_parquet(folder / "prepared.parquet")["source_line"].to_list()
    data_lines = [n for n, text in enumerate(rows, start=2) if text]
    assert (
        summary["rows_read"] == len(data_lines) == summary["rows_valid"] + summary["rows_rejected"]
    )
    assert summary["blank_lines_skipped"] == 2
    assert sorted(kept + rejects["source_line"].to_list()) == data_lines
    bad_lines = [rows.index(bad.row) + 2 for bad in BAD_ROWS]
    assert rejects["source_line"].to_list() == sorted([3, *bad_lines])  # 3: the duplicated C001
    assert rejects["reason"].str.len_chars().min() > 0  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_rows("X09,Male,30,50,50,7"), DATA + rf":{NEXT_LINE}: 6 fields where the header"),
        (csv_bytes() + b"X17,Mal\xe9,30,50,50\n", DATA + rf":{NEXT_LINE}:8: not UTF-8 text"),
    ],
    ids=["ragged row", "not UTF-8"],
)
def test_rows_that_cannot_be_read_are_refused_even_with_drop(
    workdir: Path, make_project: Project, data: bytes, message: str
) -> None:
    # Values cannot be assigned to columns: leaving the row out would be a guess.
    project(workdir, make_project, data, {"prepare": {"on_invalid": "drop"}})
    assert_refused(invoke("run"), 3, message)


# --- hostile data: a full run that drops it, offline; the report escapes it ---------------------

EVIL_ID = "<script>alert(1)</script>"
EVIL_GENDER = "<img src=x onerror=alert(1)>"
EVIL_VALID_ID = "</script><script>alert(2)</script>"
"""A valid customer's id: it may reach charts and inline data, where `</script>` would end a script."""


@dataclass(frozen=True)
class HostileRun:
    root: Path
    result: Result
    connections: list[Any]

    @property
    def folder(self) -> Path:
        return self.root / "artifacts" / "latest"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, make_project: Project) -> HostileRun:
    """`segment run` on data with markup in a rejected row, with every socket connection refused."""
    root = tmp_path_factory.mktemp("hostile")
    good = [f"{EVIL_VALID_ID}{GOOD_ROWS[0][4:]}", *GOOD_ROWS[1:]]
    rows = [*good, f"{EVIL_ID},Male,30,50,500", f"X99,{EVIL_GENDER},30,50,50"]
    project(root, make_project, csv_bytes(rows), {"prepare": {"on_invalid": "drop"}})
    connections: list[Any] = []

    def refuse(_socket: socket.socket, address: Any) -> None:
        connections.append(address)
        raise OSError("network access during a run with the data present")

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        result = invoke("run")
    return HostileRun(root=root, result=result, connections=connections)


def test_a_full_run_needs_no_network_when_the_data_is_present(hostile: HostileRun) -> None:
    assert hostile.result.exit_code == 0, hostile.result.output
    assert hostile.connections == []


def test_the_report_escapes_the_data(hostile: HostileRun) -> None:
    for page in (hostile.root / "reports").rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        # Neither as markup nor inside an inline script or JSON, where "</script>" would end it.
        assert EVIL_ID not in html, page
        assert EVIL_GENDER not in html, page
        assert EVIL_VALID_ID not in html, page
    html = (hostile.root / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the rejected rows are shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_hostile_rows_are_in_rejects(hostile: HostileRun) -> None:
    rejects = pl.read_csv(
        hostile.folder / "rejects.csv", schema_overrides={"customer_id": pl.String}
    )
    assert rejects["customer_id"].to_list() == [EVIL_ID, "X99"]
    assert rejects["source_line"].to_list() == [NEXT_LINE, NEXT_LINE + 1]


# --- segment assign: plain-data model, same schema for its input --------------------------------


def test_nothing_in_the_code_unpickles() -> None:
    unpickling = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|_pickle|cloudpickle|dill|shelve|marshal)\b"
        r"|\bpickle\.\w|allow_pickle\s*=\s*True|read_pickle|joblib\.(load|dump)\b"
        r"|from\s+joblib\s+import\s+.*\b(load|dump)\b|torch\.load",
        re.M,
    )
    offenders = [
        path.name for path in SRC.rglob("*.py") if unpickling.search(path.read_text("utf-8"))
    ]
    assert offenders == []


def test_assign_reads_the_model_as_plain_json(
    hostile: HostileRun, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only model.json, away from its version; unpickling anything would fail.
    model = workdir / "model.json"
    model.write_bytes((hostile.folder / "model.json").read_bytes())
    json.loads(model.read_text(encoding="utf-8"))  # plain JSON

    def no_unpickling(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    (workdir / "new.csv").write_bytes(csv_bytes())
    result = invoke("assign", "--input", "new.csv", "--output", "out.csv", "--model", "model.json")
    assert result.exit_code == 0, result.output
    labelled = pl.read_csv(workdir / "out.csv")
    trained = pl.read_parquet(hostile.folder / "assignments.parquet")
    assert labelled["segment_id"].to_list() == trained["segment_id"].to_list()


ASSIGN_INPUT = r"^error: new\.csv"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_rows("X01,Male,thirty,50,50"), rf"line {NEXT_LINE}: age 'thirty' is not a number"),
        (with_rows("X05,Female,30,50,101"), rf"line {NEXT_LINE}: spending_score 101\.0 is outside"),
        (with_rows("C001,Male,30,50,50"), r"line 3: customer_id C001 appears more than once"),
        (with_rows("X09,Male,30,50,50,7"), rf":{NEXT_LINE}: 6 fields where the header has 5"),
        (csv_bytes(header="a,b,c,d,e"), r":1: no column for 'customer_id' \(source: .*\)"),
        (b"", r": the file is empty"),
        (b"\x00\x01", r":1:1: binary content"),
    ],
    ids=["text", "range", "duplicate", "ragged", "headers", "empty", "binary"],
)
def test_assign_checks_its_input_with_the_same_schema(
    hostile: HostileRun, workdir: Path, data: bytes, message: str
) -> None:
    (workdir / "new.csv").write_bytes(data)
    model = str(hostile.folder / "model.json")
    result = invoke("assign", "--input", "new.csv", "--output", "out.csv", "--model", model)
    assert_refused(result, 3, ASSIGN_INPUT + ".*" + message)
    assert not (workdir / "out.csv").exists()


def _without_table(model: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in model.items() if key != "table"}


OLD_MODEL = {
    "format": "segmentation-model/1",
    "features": ["annual_income", "spending_score"],
    "scaler": {"method": "standard", "center": [50.0, 50.0], "scale": [20.0, 20.0]},
    "k": 2,
}
"""A model.json as the fixed four-column version wrote it."""


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda _good: "{not json", r"/model\.json: not valid JSON \(.*\); pass a model\.json$"),
        (lambda _good: "[1, 2]", r"/model\.json: not a segmentation model \(a list\)$"),
        (
            lambda _good: '{"format": "other"}',
            r"/model\.json: not a segmentation model of this version \(format 'other', expected "
            r"'segmentation-model/2'\); run `make all` to write it again$",
        ),
        (
            lambda _good: json.dumps(OLD_MODEL),
            r"/model\.json: not a segmentation model of this version \(format "
            r"'segmentation-model/1', expected 'segmentation-model/2'\); run `make all` to write "
            r"it again$",
        ),
        (
            lambda good: json.dumps(_without_table(good)),
            r"/model\.json: a damaged model \(table: Field required\); run `make all` to write it "
            r"again$",
        ),
        (
            lambda good: json.dumps({**good, "k": good["k"] + 1}),
            r"/model\.json: a damaged model \(.*centroids_scaled must be \d+ rows of 2 values\); "
            r"run `make all` to write it again$",
        ),
    ],
    ids=["not JSON", "not a mapping", "another format", "the old format", "damaged", "wrong shape"],
)
def test_assign_refuses_a_damaged_model(
    hostile: HostileRun, workdir: Path, model: Callable[[dict[str, Any]], str], message: str
) -> None:
    good = json.loads((hostile.folder / "model.json").read_text(encoding="utf-8"))
    (workdir / "model.json").write_text(model(good), encoding="utf-8")
    (workdir / "new.csv").write_bytes(csv_bytes())
    model_path = str(workdir / "model.json")
    result = invoke("assign", "--input", "new.csv", "--output", "out.csv", "--model", model_path)
    assert_refused(result, 3, message)
    assert not (workdir / "out.csv").exists()


# --- segment assign on a table of another shape: a categorical feature, categories learned -------

SHOP_COLUMNS = [
    {"name": "customer_id", "source": "Client", "type": "id"},
    {"name": "region", "source": "Region", "type": "categorical"},
    {"name": "visits", "source": "Visits", "type": "numeric", "min": 0},
    {"name": "spend", "source": "Spend", "type": "numeric", "min": 0},
]
SHOP_HEADER = "Client,Region,Visits,Spend"
SHOP_ROWS = [
    f"S{i:03d},{('North', 'South', 'East')[i % 3]},{(2, 10, 20)[i % 3] + i % 4},"
    f"{(30, 120, 400)[i % 3] + i % 7}"
    for i in range(30)
]
"""Three groups (region, visits, spend go together); the categories are learned from the data."""


def shop_csv(*rows: str, header: str = SHOP_HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


@pytest.fixture(scope="module")
def shop_model(tmp_path_factory: pytest.TempPathFactory, make_project: Project) -> Path:
    """The model.json of a table with a categorical feature whose categories were learned."""
    root = tmp_path_factory.mktemp("shop")
    overrides = {
        "columns": SHOP_COLUMNS,
        "features": ["region", "visits", "spend"],
        "naming": None,
    }
    project(root, make_project, shop_csv(*SHOP_ROWS), overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = invoke("cluster")
    assert result.exit_code == 0, result.output
    model = root / stage_folder(result, "cluster") / "model.json"
    assert json.loads(model.read_text(encoding="utf-8"))["table"]["categories"] == {
        "region": ["East", "North", "South"]
    }
    return model


SHOP_NEXT_LINE = len(SHOP_ROWS) + 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            shop_csv(*SHOP_ROWS, "N01,West,5,50"),
            rf": 1 invalid row\(s\): line {SHOP_NEXT_LINE}: region 'West' was not seen when the "
            r"model was fitted \(known: East, North, South\)",
        ),
        (
            shop_csv(*(row.rsplit(",", 1)[0] for row in SHOP_ROWS), header="Client,Region,Visits"),
            r":1: no column for 'spend' \(source: Spend, spend\); the file has Client, Region, "
            r"Visits; the model was fitted on customers with that column: add it to the file$",
        ),
        (
            shop_csv(*SHOP_ROWS, "N02,North,many,50"),
            rf": 1 invalid row\(s\): line {SHOP_NEXT_LINE}: visits 'many' is not a number",
        ),
    ],
    ids=["an unseen category", "a column missing", "text in a numeric column"],
)
def test_assign_refuses_what_the_model_cannot_place(
    shop_model: Path, workdir: Path, data: bytes, message: str
) -> None:
    (workdir / "new.csv").write_bytes(data)
    result = invoke(
        "assign", "--input", "new.csv", "--output", "out.csv", "--model", str(shop_model)
    )
    assert_refused(result, 3, ASSIGN_INPUT + message)
    assert not (workdir / "out.csv").exists()


@pytest.mark.parametrize("rows", [1, 2])
def test_assign_labels_one_or_two_customers(shop_model: Path, workdir: Path, rows: int) -> None:
    # Fitting needs 3 customers (`too few rows`); labelling with a saved model needs one.
    (workdir / "new.csv").write_bytes(shop_csv(*SHOP_ROWS[:rows]))
    result = invoke(
        "assign", "--input", "new.csv", "--output", "out.csv", "--model", str(shop_model)
    )
    assert result.exit_code == 0, result.output
    labelled = pl.read_csv(workdir / "out.csv")
    assert labelled["customer_id"].to_list() == [f"S{i:03d}" for i in range(rows)]
    assert labelled["segment_id"].null_count() == 0
    assert re.search(
        rf"labelled {rows} customers into {rows} segment\(s\): out\.csv", result.stderr
    )


def test_assign_without_a_model_is_a_usage_error(workdir: Path) -> None:
    (workdir / "new.csv").write_bytes(csv_bytes())
    result = invoke("assign", "--input", "new.csv", "--output", "out.csv")
    assert_refused(result, 2, r"model\.json: model not found; run `make all` first or pass --model")


# --- the download accepts only the pinned file --------------------------------------------------

RIGHT = csv_bytes()
WRONG = csv_bytes(GOOD_ROWS[:20])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server with right.csv (the pinned file) and wrong.csv; yields its base URL."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "right.csv").write_bytes(RIGHT)
    (folder / "wrong.csv").write_bytes(WRONG)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _download_project(root: Path, make_project: Project, url: str) -> Path:
    data = {
        "path": "data/raw/customers.csv",
        "url": url,
        "sha256": hashlib.sha256(RIGHT).hexdigest(),
    }
    project(root, make_project, overrides={"data": data})
    return root / "data" / "raw" / "customers.csv"


@pytest.mark.usefixtures("no_proxy")
def test_a_download_that_differs_from_the_pinned_hash_is_refused_and_removed(
    workdir: Path, make_project: Project, server: str
) -> None:
    target = _download_project(workdir, make_project, f"{server}/wrong.csv")
    assert_refused(
        invoke("fetch"),
        3,
        rf"^error: {re.escape(server)}/wrong\.csv: downloaded file does not match data\.sha256",
    )
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no partial download either


@pytest.mark.usefixtures("no_proxy")
def test_the_pinned_file_is_downloaded_and_accepted(
    workdir: Path, make_project: Project, server: str
) -> None:
    target = _download_project(workdir, make_project, f"{server}/right.csv")
    result = invoke("fetch")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == RIGHT
    assert "checked against data.sha256" in result.stdout


@pytest.mark.usefixtures("no_proxy")
def test_a_failed_download_is_data_unavailable(
    workdir: Path, make_project: Project, server: str
) -> None:
    target = _download_project(workdir, make_project, f"{server}/absent.csv")
    assert_refused(
        invoke("fetch"),
        4,
        r"/data/raw/customers\.csv: data file not found and the download from data\.url failed "
        r"\(404 .*\); place the CSV at .* by hand \(SHA-256 [0-9a-f]{64}\)",
    )
    assert not target.exists()


# --- purchase logs (data.kind: transactions) ------------------------------------------------------

# 30 customers, C000 to C029, with 1 to 4 purchases each on distinct days of 2024: lines 2-74.
LOG_ROWS = [
    f"C{i:03d},2024-{1 + (i * 7 + j * 3) % 12:02d}-{1 + (i + j * 5) % 28:02d},{(i % 5 + 1) * 10 + j}"
    for i in range(30)
    for j in range(1 + i % 4)
]
LOG_NEXT_LINE = len(LOG_ROWS) + 2
"""The file line of a row appended after the good ones."""
LOG = r"^error: data/log\.csv"
"""How an error names the log: data.path as written in the config."""


def log_text(rows: list[str], header: str = "customer,date,amount") -> str:
    return "\n".join([header, *rows]) + "\n"


def log_project(
    root: Path,
    files: dict[str, str | pl.DataFrame],
    path: str = "data/log.csv",
    data: dict[str, Any] | None = None,
    transactions: dict[str, Any] | None = None,
) -> None:
    """A project whose purchase log is `files` (text, or frames written as Parquet)."""
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pl.DataFrame):
            content.write_parquet(target)
        else:
            target.write_text(content, encoding="utf-8")
    config = {
        "data": {"kind": "transactions", "path": path, "url": None, "sha256": None, **(data or {})},
        "transactions": {
            "customer": "customer",
            "time": "date",
            "amount": "amount",
            **(transactions or {}),
        },
        "select_k": {"k_min": 2, "k_max": 3, "gap_references": 5, "bootstrap": 5},
        "cluster": {"n_init": 2},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _good_log() -> dict[str, str | pl.DataFrame]:
    return {"data/log.csv": log_text(LOG_ROWS)}


def _one_day_orders() -> dict[str, str | pl.DataFrame]:
    """Every purchase on May 5: 30 customers, half of them with two orders."""
    rows = [f"C{i:03d},2024-05-05,{10 + i},o{i}" for i in range(30)]
    rows += [f"C{i:03d},2024-05-05,{3 + i},p{i}" for i in range(0, 30, 2)]
    return {"data/log.csv": log_text(rows, "customer,date,amount,order")}


def _parts(second: pl.DataFrame) -> dict[str, str | pl.DataFrame]:
    frame = pl.read_csv(log_text(LOG_ROWS).encode(), infer_schema=False)
    return {"data/logs/part-1.parquet": frame.head(40), "data/logs/part-2.parquet": second}


@dataclass(frozen=True)
class LogRefusal:
    id: str
    exit_code: int
    message: str
    files: Callable[[], dict[str, str | pl.DataFrame]] = _good_log
    path: str = "data/log.csv"
    data: dict[str, Any] = field(default_factory=dict)
    transactions: dict[str, Any] = field(default_factory=dict)


LOG_REFUSALS = [
    LogRefusal(
        "log: a time not in its format",
        3,
        LOG + rf": 2 time value\(s\) in date not in the format ISO 8601: line {LOG_NEXT_LINE} "
        rf"'2024-13-45'; line {LOG_NEXT_LINE + 1} 'yesterday' \(in .*/data/log\.csv\); fix those "
        r"rows, or filter them out with transactions\.where, or set transactions\.time_format$",
        lambda: {"data/log.csv": log_text([*LOG_ROWS, "C001,2024-13-45,10", "C002,yesterday,5"])},
    ),
    LogRefusal(
        "log: a time_format the times do not follow",
        3,
        LOG + r": 73 time value\(s\) in date not in the format %d/%m/%Y: line 2 '2024-01-01'; "
        r"line 3 '2024-08-02'; line 4 '2024-11-07' \(in .*/data/log\.csv\); fix those rows",
        transactions={"time_format": "%d/%m/%Y"},
    ),
    LogRefusal(
        "log: an amount that is not a number",
        3,
        LOG + rf": 1 purchase value\(s\) that are not numbers: line {LOG_NEXT_LINE} 'ten' \(in "
        r".*/data/log\.csv\); fix those rows, or filter them out with transactions\.where$",
        lambda: {"data/log.csv": log_text([*LOG_ROWS, "C001,2024-03-05,ten"])},
    ),
    LogRefusal(
        "log: parquet, an amount that is not a number",
        3,
        r"^error: data/log\.parquet: 1 purchase value\(s\) that are not numbers: row 74 'abc' "
        r"\(in .*/data/log\.parquet\); fix those rows",
        lambda: {
            "data/log.parquet": pl.read_csv(
                log_text([*LOG_ROWS, "X,2024-01-01,abc"]).encode(), infer_schema=False
            )
        },
        path="data/log.parquet",
    ),
    LogRefusal(
        "log: no rows left after where",
        3,
        LOG + r": no purchase left \(0 row\(s\) after transactions\.where, 0 without a customer "
        r"id\); check the filter and the customer column$",
        transactions={"where": "amount > 1000000"},
    ),
    LogRefusal(
        "log: every row without a customer id",
        3,
        LOG + r": no purchase left \(73 row\(s\) after transactions\.where, 73 without a customer "
        r"id\); check the filter and the customer column$",
        lambda: {"data/log.csv": log_text(["," + row.split(",", 1)[1] for row in LOG_ROWS])},
    ),
    LogRefusal(
        "log: a single customer",
        3,
        LOG + r": every purchase is by one customer; there is nothing to segment$",
        lambda: {"data/log.csv": log_text(["C001," + row.split(",", 1)[1] for row in LOG_ROWS])},
    ),
    LogRefusal(
        "log: all purchases on one day",
        3,
        LOG + r" \(the customer table built from it\): feature 'recency_days' is constant "
        r"\(1\.0\): it cannot separate customers; remove it from features$",
        _one_day_orders,
        transactions={"order": "order"},
    ),
    LogRefusal(
        "log: purchases after as_of",
        3,
        LOG + r": 24 customer\(s\) bought after data\.as_of 2024-06-01 \(the last purchase is on "
        r"2024-12-22\); set data\.as_of on or after it$",
        data={"as_of": "2024-06-01"},
    ),
    LogRefusal(
        "log: a glob matching no file",
        3,
        r"^error: .*/data/logs/\*\.parquet: data\.path matches no file; check the pattern and the "
        r"folder$",
        path="data/logs/*.parquet",
    ),
    LogRefusal(
        "log: files of one glob with different columns",
        3,
        r"^error: .*/data/logs/part-2\.parquet: its columns \(customer, date, value\) differ from "
        r"part-1\.parquet's \(customer, date, amount\); every file of data\.path must have the "
        r"same columns$",
        lambda: _parts(
            pl.read_csv(log_text(LOG_ROWS).encode(), infer_schema=False)
            .tail(33)
            .rename({"amount": "value"})
        ),
        path="data/logs/*.parquet",
    ),
    LogRefusal(
        "log: a where that does not parse",
        2,
        r"^error: config\.yaml:(\d+): transactions\.where 'amount >> AND' is not a SQL expression "
        r"\(.*\); fix it$",
        transactions={"where": "amount >> AND"},
    ),
    LogRefusal(
        "log: a where naming a column the log does not have",
        2,
        r"^error: config\.yaml:(\d+): transactions\.where 'Quantity <> 0' cannot filter the log "
        r"\(unable to find column \"Quantity\".*\); the log has customer, date, amount; fix it$",
        transactions={"where": "Quantity <> 0"},
    ),
    LogRefusal(
        "log: a where comparing text with a number",
        2,
        r"^error: config\.yaml:(\d+): transactions\.where 'customer > 5' cannot filter the log "
        r"\(cannot compare string with numeric type \(i32\)\); the log has customer, date, "
        r"amount; fix it$",
        transactions={"where": "customer > 5"},
    ),
    LogRefusal(
        "log: transactions.customer absent from the log",
        3,
        LOG + r": no column 'client' \(transactions\.customer\); the log has customer, date, "
        r"amount; fix transactions\.customer in the config$",
        transactions={"customer": "client"},
    ),
]


@pytest.mark.parametrize("case", LOG_REFUSALS, ids=lambda case: case.id)
def test_a_bad_purchase_log_is_refused_in_one_line(workdir: Path, case: LogRefusal) -> None:
    log_project(workdir, case.files(), case.path, case.data, case.transactions)
    line = assert_refused(invoke("run"), case.exit_code, case.message)
    if case.exit_code == 2:  # the config's line of transactions.where
        written = (workdir / "config.yaml").read_text(encoding="utf-8").splitlines()
        number = int(re.search(r"config\.yaml:(\d+):", line).group(1))  # type: ignore[union-attr]
        assert written[number - 1].strip().startswith("where:"), written[number - 1]
    assert not list((workdir / "artifacts").glob("*/manifest.json"))  # no version was made


def test_a_numeric_where_on_a_text_log_is_applied(workdir: Path) -> None:
    where = "amount >= 30 AND customer <> 'C001'"
    log_project(workdir, _good_log(), transactions={"where": where})
    result = invoke("customers")
    assert result.exit_code == 0, result.output
    summary = json.loads((stage_folder(result, "customers") / "customers_summary.json").read_text())
    kept = [row for row in LOG_ROWS if int(row.rsplit(",", 1)[1]) >= 30 and row[:4] != "C001"]
    assert summary["rows"] == len(kept)
    assert summary["customers"] == len({row[:4] for row in kept})
