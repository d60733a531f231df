"""The notebook way of building the customer table from a purchase log: pandas, as RFM notebooks do.

`pd.read_parquet` of each part and `pd.concat`; rows without a customer id dropped; line value
quantity x unit price; as of the day after the last purchase; then one `groupby(customer).agg(...)`
with pandas' built-in reductions (no Python lambdas, which would be far slower) for the six columns
the pipeline's `customers` stage builds:

- recency_days: days from the customer's last purchase to as_of;
- frequency: purchase occasions, the distinct orders with a positive quantity;
- monetary: the net total, returns (negative quantities) included;
- average_order_value: monetary / frequency;
- tenure_days: days from the first purchase to as_of;
- mean_days_between_purchases: (last - first purchase) / (frequency - 1), empty for one purchase.

Days are whole days (the difference of the dates, floored). Writes a JSON result: customers, the
time of reading and of aggregating (`seconds`: both, without the imports), peak RSS, and with
`--out` the customer table as Parquet.

    python bench/baseline_transactions.py --parts 'bench/data/transactions-10000000-seed7/parts/*.parquet'
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CUSTOMER, ORDER, TIME, QUANTITY, PRICE = (
    "customer_id",
    "order_id",
    "invoice_date",
    "quantity",
    "unit_price",
)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def read(pattern: str) -> pd.DataFrame:
    """Every part, read with pandas and concatenated (a glob in the file name only)."""
    path = Path(pattern)
    parts = sorted(path.parent.glob(path.name))
    if not parts:
        raise SystemExit(f"no file matches {pattern}")
    return pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)


def customer_table(df: pd.DataFrame) -> pd.DataFrame:
    """The notebook's cells: one row per customer with the six columns."""
    df = df.dropna(subset=[CUSTOMER])
    df["amount"] = df[QUANTITY] * df[PRICE]
    as_of = df[TIME].max().normalize() + pd.Timedelta(days=1)

    purchases = df[df[QUANTITY] > 0]
    rfm = purchases.groupby(CUSTOMER).agg(
        last=(TIME, "max"), first=(TIME, "min"), frequency=(ORDER, "nunique")
    )
    rfm["monetary"] = df.groupby(CUSTOMER)["amount"].sum()
    rfm["recency_days"] = (as_of - rfm["last"].dt.normalize()).dt.days
    rfm["tenure_days"] = (as_of - rfm["first"].dt.normalize()).dt.days
    rfm["average_order_value"] = rfm["monetary"] / rfm["frequency"]
    span = (rfm["last"] - rfm["first"]).dt.total_seconds() / 86_400
    rfm["mean_days_between_purchases"] = span / (rfm["frequency"] - 1).replace(0, np.nan)
    return rfm.drop(columns=["last", "first"]).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--parts", required=True, help="glob of the Parquet parts (quoted)")
    parser.add_argument("--out", type=Path, help="write the customer table here (Parquet)")
    parser.add_argument("--result", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    df = read(args.parts)
    read_seconds = time.perf_counter() - started
    rows = len(df)
    rfm = customer_table(df)
    seconds = time.perf_counter() - started
    del df
    if args.out:
        rfm.to_parquet(args.out, index=False)
    found: dict[str, Any] = {
        "transactions": rows,
        "customers": len(rfm),
        "read_seconds": read_seconds,
        "aggregate_seconds": seconds - read_seconds,
        "seconds": seconds,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    text = json.dumps(found, indent=2) + "\n"
    if args.result:
        args.result.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
