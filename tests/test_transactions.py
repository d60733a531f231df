"""`build_customers`: a purchase log aggregated into one row per customer, checked on tiny logs whose
every value is computed by hand; the purchase-log keys of the config; the hash of a glob's files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from segmentation.config import DataConfig, TransactionsConfig, parse_config
from segmentation.dataset import ensure_raw_data
from segmentation.errors import ConfigError
from segmentation.transactions import BuiltCustomers, build_customers

# Customer A: orders o1 and o2 on Jan 1 ($10, $5), o3 on Jan 11 ($20), a return o4 on Jan 21 (-$4).
# B: one order of $100 on Jan 5. C: one order of $1.50 on Jan 31. One row without a customer.
LOG = """customer,date,order,amount
A,2024-01-01,o1,10
A,2024-01-01,o2,5
A,2024-01-11,o3,20
A,2024-01-21,o4,-4
B,2024-01-05,o5,100
,2024-01-06,o6,7
C,2024-01-31,o7,1.5
"""
COLUMNS = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "average_order_value",
    "tenure_days",
    "mean_days_between_purchases",
)
# B and C bought once, on Jan 5 and Jan 31; as_of is Feb 1, the day after the last purchase.
B = ("B", 27.0, 1.0, 100.0, 100.0, 27.0, None)
C = ("C", 1.0, 1.0, 1.5, 1.5, 1.0, None)


def transactions(**keys: Any) -> TransactionsConfig:
    return TransactionsConfig(**{"customer": "customer", "time": "date", **keys})


def build(
    path: Path | list[Path],
    whitespace: bool = False,
    as_of: str | None = None,
    **keys: Any,
) -> BuiltCustomers:
    files = path if isinstance(path, list) else [path]
    return build_customers(files, transactions(**keys), whitespace, as_of, "the log")


def rows(built: BuiltCustomers) -> list[tuple[Any, ...]]:
    assert built.customers.columns == list(COLUMNS)
    return [
        tuple(value if not isinstance(value, float) else round(value, 6) for value in row)
        for row in built.customers.iter_rows()
    ]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(LOG, encoding="utf-8")
    return path


def test_distinct_orders_are_the_purchases_and_a_return_is_netted(log: Path) -> None:
    built = build(log, amount="amount", order="order")
    # A: three orders (the return is not one), $31 net, last bought Jan 11, first Jan 1;
    # 10 days from first to last over 2 gaps.
    assert rows(built) == [("A", 21.0, 3.0, 31.0, round(31 / 3, 6), 31.0, 5.0), B, C]
    summary = built.summary
    assert summary["as_of"] == "2024-02-01"
    assert summary["as_of_from"] == "the day after the last purchase"
    assert summary["occasion"] == "distinct order"
    assert (summary["rows"], summary["rows_without_customer"]) == (7, 1)
    assert (summary["negative_amounts"], summary["customers"]) == (1, 3)
    assert (summary["first_purchase"], summary["last_purchase"]) == ("2024-01-01", "2024-01-31")


def test_without_an_order_each_customer_day_is_one_purchase(log: Path) -> None:
    built = build(log, amount="amount")
    # A bought on two days (Jan 1 twice, Jan 11): 2 purchases, 10 days apart.
    assert rows(built) == [("A", 21.0, 2.0, 31.0, 15.5, 31.0, 10.0), B, C]
    assert built.summary["occasion"] == "distinct customer-day"


@pytest.mark.parametrize("order", [None, "order"])
def test_returns_drop_leaves_negative_amounts_out(log: Path, order: str | None) -> None:
    built = build(log, amount="amount", order=order, returns="drop")
    # A without the return: $35; three orders 5 days apart, or two days 10 days apart.
    frequency, between = (3.0, 5.0) if order else (2.0, 10.0)
    assert rows(built)[0] == ("A", 21.0, frequency, 35.0, round(35 / frequency, 6), 31.0, between)
    assert built.summary["returns"] == "drop"


def test_an_explicit_as_of(log: Path) -> None:
    built = build(log, as_of="2024-03-01", amount="amount")
    # Jan 11 to Mar 1 2024 (a leap year): 21 + 29 days.
    assert [row[:2] + row[5:6] for row in rows(built)] == [
        ("A", 50.0, 60.0),
        ("B", 56.0, 56.0),
        ("C", 30.0, 30.0),
    ]
    assert built.summary["as_of_from"] == "data.as_of"


def test_rows_without_a_customer_are_left_out_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(LOG.replace("C,2024", "  ,2024"), encoding="utf-8")
    built = build(path, amount="amount")
    assert built.customers["customer_id"].to_list() == ["A", "B"]
    assert built.summary["rows_without_customer"] == 2
    # Neither blank row counts towards the last purchase: as_of follows B's purchase on Jan 11.
    assert built.summary["as_of"] == "2024-01-12"


RETAIL = """InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID
536365,85123A,6,01/12/2010 08:26,2.55,17850
536365,POST,1,01/12/2010 08:26,18.00,17850
536366,22633,0,02/12/2010 08:28,1.85,17850
536367,84879,32,03/12/2010 08:34,1.69,13047
C536368,84879,-2,05/12/2010 09:00,1.69,13047
536369,22745,12,09/12/2010 10:00,2.10,13047
"""


@pytest.fixture
def retail(tmp_path: Path) -> Path:
    path = tmp_path / "retail.csv"
    path.write_text(RETAIL, encoding="utf-8")
    return path


def test_quantity_times_unit_price_with_a_where_filter(retail: Path) -> None:
    built = build(
        retail,
        customer="CustomerID",
        time="InvoiceDate",
        time_format="%d/%m/%Y %H:%M",
        order="InvoiceNo",
        quantity="Quantity",
        unit_price="UnitPrice",
        where="Quantity <> 0 AND StockCode <> 'POST'",
    )
    # 13047: 32 x 1.69 + 12 x 2.10 - 2 x 1.69 over orders 536367 and 536369 (Dec 3 and 9);
    # 17850: 6 x 2.55, postage and the zero line filtered out; as_of is Dec 10.
    assert rows(built) == [
        ("13047", 1.0, 2.0, 75.9, 37.95, 7.0, 6.0),
        ("17850", 9.0, 1.0, 15.3, 15.3, 9.0, None),
    ]
    assert (built.summary["rows"], built.summary["negative_amounts"]) == (4, 1)
    assert built.summary["where"] == "Quantity <> 0 AND StockCode <> 'POST'"


def test_quantity_times_unit_price_equals_the_same_amounts(retail: Path, tmp_path: Path) -> None:
    keys = {"customer": "CustomerID", "time": "InvoiceDate", "time_format": "%d/%m/%Y %H:%M"}
    frame = pl.read_csv(retail, infer_schema=False)
    with_amount = frame.with_columns(
        (pl.col("Quantity").cast(pl.Float64) * pl.col("UnitPrice").cast(pl.Float64)).alias("Amount")
    )
    path = tmp_path / "amount.csv"
    with_amount.write_csv(path)
    by_amount = build(path, amount="Amount", **keys)
    by_parts = build(retail, quantity="Quantity", unit_price="UnitPrice", **keys)
    assert by_amount.customers.equals(by_parts.customers)


def test_a_numeric_where_on_a_csv_compares_numbers(log: Path) -> None:
    # A CSV's columns are read as text; a column of numbers is compared as numbers ("100" > "20").
    built = build(log, amount="amount", where="amount >= 20")
    # Left: A's $20 on Jan 11 and B's $100 on Jan 5; as_of Jan 12.
    assert [row[:4] for row in rows(built)] == [("A", 1.0, 1.0, 20.0), ("B", 7.0, 1.0, 100.0)]


def _frame() -> pl.DataFrame:
    return pl.read_csv(LOG.encode(), infer_schema=False)


def test_tab_separated(log: Path, tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text(LOG.replace(",", "\t"), encoding="utf-8")
    assert build(path, amount="amount").customers.equals(build(log, amount="amount").customers)


CDNOW = (
    " customer_id  date number_of_cds  dollar_value\r\n"
    " 00001 19970101  1   11.77\r\n"
    " 00002 19970112  1   12.00\r\n"
    " 00002 19970112  5   77.00\r\n"
    " 00003 19970102  2   20.76\r\n"
    " 00003 19970330  2   20.76\r\n"
    " 00003 19970402  2   19.54\r\n"
)


def test_whitespace_separated_with_a_header_and_leading_spaces(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_text(CDNOW, encoding="utf-8", newline="")
    built = build(
        path,
        whitespace=True,
        customer="customer_id",
        time="date",
        time_format="%Y%m%d",
        amount="dollar_value",
    )
    # as_of Apr 3 1997; 00002 bought twice on one day (one purchase); 00003 on 3 days.
    assert rows(built) == [
        ("00001", 92.0, 1.0, 11.77, 11.77, 92.0, None),
        ("00002", 81.0, 1.0, 89.0, 89.0, 81.0, None),
        ("00003", 1.0, 3.0, 61.06, round(61.06 / 3, 6), 91.0, 45.0),
    ]
    assert built.summary["as_of"] == "1997-04-03"


@pytest.mark.parametrize("typed", [False, True])
def test_parquet_equals_the_csv(log: Path, tmp_path: Path, typed: bool) -> None:
    frame = _frame()
    if typed:
        frame = frame.with_columns(pl.col("date").str.to_date(), pl.col("amount").cast(pl.Float64))
    path = tmp_path / "log.parquet"
    frame.write_parquet(path)
    expected = build(log, amount="amount", order="order")
    built = build(path, amount="amount", order="order")
    assert built.customers.equals(expected.customers)
    assert built.summary["rows_without_customer"] == 1


def test_a_glob_of_parquet_parts_equals_the_single_file(tmp_path: Path) -> None:
    frame = _frame().with_columns(pl.col("amount").cast(pl.Float64))
    single = tmp_path / "single.parquet"
    frame.write_parquet(single)
    (tmp_path / "logs").mkdir()
    for index, start in enumerate((0, 2, 5)):
        frame.slice(start, (2, 3, 2)[index]).write_parquet(
            tmp_path / "logs" / f"part-{index}.parquet"
        )
    raw = ensure_raw_data(DataConfig(path="logs/*.parquet"), tmp_path / "logs" / "*.parquet")
    assert [path.name for path in raw.files] == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    parts = build(list(raw.files), amount="amount", where="amount > 2")
    whole = build(single, amount="amount", where="amount > 2")
    assert parts.customers.equals(whole.customers)
    assert parts.summary["rows"] == whole.summary["rows"] == 5


# --- the config: a purchase log's keys ----------------------------------------------------------

LOG_CONFIG = """data:
  kind: transactions
  path: logs/*.parquet
transactions:
  customer: customer
  time: date
  amount: amount
"""


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yaml")
    return str(caught.value)


def test_a_purchase_log_config_is_accepted() -> None:
    config = parse_config(LOG_CONFIG)
    assert config.transactions is not None
    assert (config.transactions.returns, config.transactions.currency) == ("net", "$")
    assert config.table.features == ("recency_days", "frequency", "monetary")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            LOG_CONFIG + "  quantity: qty\n  unit_price: price\n",
            r"^cfg\.yaml:4: transactions: give either amount, or quantity and unit_price, not both",
        ),
        (
            LOG_CONFIG.replace("  amount: amount\n", ""),
            r"^cfg\.yaml:4: transactions: give amount, or both quantity and unit_price$",
        ),
        (
            LOG_CONFIG.replace("  amount: amount\n", "  quantity: qty\n"),
            r"^cfg\.yaml:4: transactions: give amount, or both quantity and unit_price$",
        ),
        (
            LOG_CONFIG.replace("  kind: transactions\n", "  kind: customers\n")
            + "columns:\n  - {name: id, type: id}\n  - {name: x, type: numeric}\nfeatures: [x]\n",
            r"^cfg\.yaml:4: transactions: applies to data\.kind: transactions only$",
        ),
        (
            LOG_CONFIG.split("transactions:\n")[0],
            r"^cfg\.yaml:2: data\.kind: a purchase log needs a transactions: section",
        ),
        (
            LOG_CONFIG + "columns:\n  - {name: id, type: id}\n",
            r"^cfg\.yaml:8: columns: a purchase log's customer table declares its own columns; "
            r"leave columns out$",
        ),
        (
            LOG_CONFIG + "features: [recency_days, visits]\n",
            r"^cfg\.yaml:8: features\.1: 'visits' is not a column of the built table: "
            r"recency_days, frequency, monetary, average_order_value",
        ),
        (
            LOG_CONFIG + "  returns: keep\n",
            r"^cfg\.yaml:8: transactions\.returns: Input should be 'net' or 'drop', got 'keep'$",
        ),
    ],
    ids=[
        "amount and quantity",
        "neither amount nor quantity",
        "quantity without unit_price",
        "transactions with kind customers",
        "kind transactions without the section",
        "columns with kind transactions",
        "a feature not in the built table",
        "unknown returns",
    ],
)
def test_config_refusals_name_file_line_and_key(text: str, message: str) -> None:
    assert re.search(message, refused(text)), refused(text)


# --- the dataset hash of a glob ------------------------------------------------------------------


def _hash(folder: Path) -> str:
    return ensure_raw_data(DataConfig(path="logs/*.csv"), folder / "logs" / "*.csv").sha256


def _write(folder: Path, names: list[str], texts: dict[str, str]) -> Path:
    (folder / "logs").mkdir(parents=True)
    for name in names:
        (folder / "logs" / name).write_text(texts[name], encoding="utf-8")
    return folder


def test_the_hash_of_a_glob_covers_every_file_in_sorted_order(tmp_path: Path) -> None:
    texts = {"a.csv": LOG, "b.csv": LOG.replace("100", "101"), "c.csv": LOG[:40]}
    first = _hash(_write(tmp_path / "one", ["a.csv", "b.csv", "c.csv"], texts))
    # Written (and listed by the file system) in another order: the same hash.
    assert _hash(_write(tmp_path / "two", ["c.csv", "a.csv", "b.csv"], texts)) == first
    hashes = {first}
    for name in texts:
        changed = {**texts, name: texts[name] + "D,2024-02-01,o9,1\n"}
        hashes.add(_hash(_write(tmp_path / f"changed-{name}", list(texts), changed)))
    # A file more, or one renamed, changes it too.
    more = {**texts, "d.csv": LOG}
    hashes.add(_hash(_write(tmp_path / "more", list(more), more)))
    renamed = {"a.csv": texts["a.csv"], "b.csv": texts["b.csv"], "z.csv": texts["c.csv"]}
    hashes.add(_hash(_write(tmp_path / "renamed", list(renamed), renamed)))
    assert len(hashes) == 6


def test_a_pinned_glob_hash_is_checked(tmp_path: Path) -> None:
    folder = _write(tmp_path / "one", ["a.csv"], {"a.csv": LOG})
    pinned = _hash(folder)
    pattern = folder / "logs" / "*.csv"
    raw = ensure_raw_data(DataConfig(path="logs/*.csv", sha256=pinned), pattern)
    assert raw.pinned
    (folder / "logs" / "b.csv").write_text(LOG, encoding="utf-8")
    with pytest.raises(Exception, match=r"the files' SHA-256 is [0-9a-f]{64} but data\.sha256"):
        ensure_raw_data(DataConfig(path="logs/*.csv", sha256=pinned), pattern)
