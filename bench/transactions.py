"""Synthetic purchase logs from known RFM groups, for the benchmark's transaction rows.

Customers are drawn from five groups that differ in recency, frequency and spend over a two-year
window (2023-01-01 to 2024-12-31):

| group | share | orders | last order (days before the end) | first order | spend per line |
| --- | ---: | --- | --- | --- | --- |
| champions | .10 | 40-250 | 0-20 | 1-2 years before the end | high |
| at risk | .15 | 12-60 | 250-450 | 1.6-2 years before the end | mid-high |
| regulars | .25 | 4-15 | 30-120 | 0.5-2 years before the end | mid |
| new | .20 | 1 (a fifth: 2) | 0-30 | up to 20 days before the last | mid |
| hibernating | .30 | 1-3 | 400-700 | up to 60 days before the last | low |

Each order has 1 + Poisson(1.5) lines (quantity, unit price); about 1% of lines are returned in a
later row of their own (negative quantity, its own order id, 0-14 days after the purchase), and
0.5% of rows are purchases without a customer id (guests). With about 34 rows per customer,
10M transactions are about 290k customers and 100M about 2.9M.

Rows are written as Parquet parts, `parts/part-NNN.parquet` (customer_id text, order_id int64,
invoice_date timestamp, quantity int32, unit_price float64), each part holding whole customers,
its rows sorted by time; the true group of each customer goes to `truth.parquet` (customer_id,
group). A part is drawn in batches of customers and appended row group by row group, so memory
stays at one batch (about 2M rows) whatever the size. Files live in
`bench/data/transactions-<rows>-seed<seed>/` and are reused when `meta.json` matches.

    python bench/transactions.py --rows 10M --seed 7
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from generate import DATA_DIR, parse_rows

GENERATOR_VERSION = 1
"""Bump when the way rows are drawn changes, so cached data is regenerated."""
START = np.datetime64("2023-01-01T00:00:00", "s")
DAYS = 731
"""The window: 2023-01-01 to 2024-12-31; a pipeline's as_of is then 2025-01-01."""
BATCH_ROWS = 2_000_000
"""Rows drawn at once (a few batches per part): the generator's memory stays at one batch."""
LINES_PER_ORDER = 1.5
"""Lines per order: 1 + Poisson(this)."""
RETURN_SHARE = 0.01
GUEST_SHARE = 0.005


@dataclass(frozen=True)
class Group:
    name: str
    weight: float
    orders: tuple[float, float, int, int]
    """Log-normal orders per customer: median, sigma (of the log), min, max."""
    last: tuple[int, int]
    """Days before the end of the window of the last order: uniform between these."""
    span: tuple[int, int]
    """Days between the first and the last order: uniform between these (capped by the window)."""
    quantity: float
    """Quantity per line: 1 + Poisson(this)."""
    price: tuple[float, float]
    """Log-normal unit price: median and sigma (of the log)."""


GROUPS = (
    Group("champions", 0.10, (90, 0.45, 40, 250), (0, 20), (365, 710), 4.0, (12.0, 0.5)),
    Group("at risk", 0.15, (25, 0.4, 12, 60), (250, 450), (200, 450), 2.5, (8.0, 0.5)),
    Group("regulars", 0.25, (7, 0.35, 4, 15), (30, 120), (150, 600), 2.0, (5.0, 0.5)),
    Group("new", 0.20, (1, 0.0, 1, 1), (0, 30), (0, 20), 2.0, (5.0, 0.5)),
    Group("hibernating", 0.30, (1.6, 0.5, 1, 3), (400, 700), (0, 60), 1.0, (2.5, 0.5)),
)
NEW_SECOND_ORDER = 0.2
"""Share of new customers with a second order."""


@dataclass(frozen=True)
class Transactions:
    rows: int
    seed: int
    folder: Path
    parts: list[Path]
    truth: Path

    @property
    def glob(self) -> Path:
        return self.folder / "parts" / "*.parquet"


def folder_for(rows: int, seed: int, root: Path = DATA_DIR) -> Path:
    return root / f"transactions-{rows}-seed{seed}"


def default_parts(rows: int) -> int:
    """10 parts from 10M rows up (10M rows a part at 100M), fewer below (at least 1M a part)."""
    return max(1, min(10, rows // 1_000_000))


def _meta(rows: int, seed: int, parts: int) -> dict[str, Any]:
    meta = {
        "rows": rows,
        "seed": seed,
        "parts": parts,
        "generator_version": GENERATOR_VERSION,
        "groups": [asdict(group) for group in GROUPS],
        "start": str(START),
        "days": DAYS,
    }
    loaded: dict[str, Any] = json.loads(json.dumps(meta))
    return loaded


def expected_rows_per_customer() -> float:
    """Mean rows per customer, by simulation of the group mixture (for sizing the batches)."""
    rng = np.random.default_rng(0)
    groups = _groups(rng, 200_000)
    orders = _orders(rng, groups)
    lines = orders.sum() * (1 + LINES_PER_ORDER)
    return float(lines * (1 + RETURN_SHARE + GUEST_SHARE) / len(groups))


def _groups(rng: np.random.Generator, customers: int) -> np.ndarray:
    weights = np.array([group.weight for group in GROUPS])
    return rng.choice(len(GROUPS), size=customers, p=weights / weights.sum()).astype(np.int8)


def _orders(rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
    """Orders per customer, from its group's log-normal, rounded and clipped."""
    table = np.array([group.orders for group in GROUPS])
    median, sigma, low, high = (table[groups, i] for i in range(4))
    drawn = np.rint(median * np.exp(sigma * rng.standard_normal(len(groups))))
    orders = np.clip(drawn, low, high).astype(np.int64)
    new = groups == [group.name for group in GROUPS].index("new")
    orders[new] += rng.random(int(new.sum())) < NEW_SECOND_ORDER
    return orders


def draw_batch(
    rng: np.random.Generator, first_customer: int, customers: int, first_order: int
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Rows of `customers` customers (numbered from `first_customer`) and some guests, unsorted;
    their truth (number, group); the next free order id."""
    groups = _groups(rng, customers)
    orders = _orders(rng, groups)
    last = np.array([group.last for group in GROUPS])[groups]
    span = np.array([group.span for group in GROUPS])[groups]
    last_day = rng.uniform(last[:, 0], last[:, 1] + 1)  # days before the end
    first_day = np.minimum(last_day + rng.uniform(span[:, 0], span[:, 1] + 1), DAYS - 1)

    # Orders: the first at first_day, the last at last_day (two or more orders), others between.
    owner = np.repeat(np.arange(customers), orders)
    starts = np.cumsum(orders) - orders
    rank = np.arange(len(owner)) - starts[owner]
    position = rng.random(len(owner))
    position[rank == 0] = 0.0
    position[(rank == 1) & (orders[owner] >= 2)] = 1.0
    days_before_end = first_day[owner] - position * (first_day[owner] - last_day[owner])
    seconds = (DAYS - days_before_end) * 86_400.0
    # A time of day between 08:00 and 20:00 on that day.
    order_time = np.floor(seconds / 86_400) * 86_400 + rng.uniform(8, 20, len(owner)) * 3_600
    order_id = first_order + np.arange(len(owner), dtype=np.int64)

    # Lines: 1 + Poisson lines per order, each with a quantity and a unit price.
    lines = 1 + rng.poisson(LINES_PER_ORDER, len(owner))
    line_order = np.repeat(np.arange(len(owner)), lines)
    line_group = groups[owner[line_order]]
    quantity = 1 + rng.poisson(np.array([g.quantity for g in GROUPS])[line_group])
    price_median = np.array([g.price[0] for g in GROUPS])[line_group]
    price_sigma = np.array([g.price[1] for g in GROUPS])[line_group]
    price = np.round(price_median * np.exp(price_sigma * rng.standard_normal(len(line_order))), 2)
    price = np.maximum(price, 0.01)
    customer = owner[line_order]
    when = order_time[line_order]
    order = order_id[line_order]
    next_order = first_order + len(owner)

    # Returns: a later row of their own with a negative quantity and a new order id.
    returned = np.flatnonzero(rng.random(len(line_order)) < RETURN_SHARE)
    back = np.minimum(
        when[returned] + rng.uniform(0, 14, len(returned)) * 86_400, DAYS * 86_400.0 - 1
    )
    returned_quantity = -rng.integers(1, quantity[returned] + 1)
    return_order = next_order + np.arange(len(returned), dtype=np.int64)
    next_order += len(returned)

    customer = np.concatenate([customer, customer[returned]])
    when = np.concatenate([when, back])
    order = np.concatenate([order, return_order])
    quantity = np.concatenate([quantity, returned_quantity])
    price = np.concatenate([price, price[returned]])

    frame = pl.DataFrame(
        {
            "number": customer + first_customer,
            "order_id": order,
            "seconds": when.astype(np.int64),
            "quantity": quantity.astype(np.int32),
            "unit_price": price,
        }
    )
    guests, next_order = guest_rows(rng, rng.binomial(len(customer), GUEST_SHARE), next_order)
    truth = pl.DataFrame({"number": np.arange(customers) + first_customer, "group": groups})
    return pl.concat([frame, guests]), truth, next_order


def guest_rows(rng: np.random.Generator, rows: int, first_order: int) -> tuple[pl.DataFrame, int]:
    """`rows` one-line purchases without a customer id, anywhere in the window; next order id."""
    seconds = np.floor(rng.uniform(0, DAYS, rows)) * 86_400 + rng.uniform(8, 20, rows) * 3_600
    frame = pl.DataFrame(
        {
            "number": pl.Series([None] * rows, dtype=pl.Int64),
            "order_id": first_order + np.arange(rows, dtype=np.int64),
            "seconds": seconds.astype(np.int64),
            "quantity": (1 + rng.poisson(1.0, rows)).astype(np.int32),
            "unit_price": np.round(rng.uniform(1, 20, rows), 2),
        }
    )
    return frame, first_order + rows


def fit(
    rng: np.random.Generator, frame: pl.DataFrame, truth: pl.DataFrame, room: int, next_order: int
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """At most `room` rows: the batch's customers while they fit whole, then guest rows to fill
    exactly `room` (when the batch has more rows than that)."""
    if frame.height <= room:
        return frame, truth, next_order
    sizes = (
        frame.filter(pl.col("number").is_not_null())
        .group_by("number")
        .len()
        .sort("number")
        .filter(pl.col("len").cum_sum() <= room)
    )
    kept = frame.filter(pl.col("number").is_in(sizes["number"].implode()))
    guests, next_order = guest_rows(rng, room - kept.height, next_order)
    truth = truth.filter(pl.col("number").is_in(sizes["number"].implode()))
    return pl.concat([kept, guests]), truth, next_order


def formatted(frame: pl.DataFrame) -> pl.DataFrame:
    """The log as written: sorted by time, text customer ids, timestamps."""
    start = START.astype("datetime64[us]").item()
    return frame.sort("seconds").select(
        customer_id(pl.col("number")).alias("customer_id"),
        "order_id",
        (pl.lit(start) + pl.duration(seconds=pl.col("seconds")))
        .dt.cast_time_unit("us")
        .alias("invoice_date"),
        "quantity",
        "unit_price",
    )


def customer_id(number: pl.Expr) -> pl.Expr:
    """Customer ids as text, e.g. C00001234."""
    return pl.lit("C") + number.cast(pl.String).str.zfill(8)


def generate(rows: int, seed: int, parts: int, folder: Path, say: Callable[[str], None]) -> None:
    """Write `parts` Parquet parts of `rows` rows in all (to the row) and truth.parquet."""
    per_customer = expected_rows_per_customer()
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    for stale in (folder / "parts").glob("*.parquet"):
        stale.unlink()
    truths: list[pl.DataFrame] = []
    next_customer, next_order = 1, 1
    for part in range(parts):
        target = rows // parts + (1 if part < rows % parts else 0)
        rng = np.random.default_rng([seed, part])
        path = folder / "parts" / f"part-{part:03d}.parquet"
        written = 0
        writer: pq.ParquetWriter | None = None
        try:
            while written < target:
                want = min(BATCH_ROWS, target - written)
                customers = max(1, int(want / per_customer))
                frame, truth, next_order = draw_batch(rng, next_customer, customers, next_order)
                frame, truth, next_order = fit(rng, frame, truth, target - written, next_order)
                frame = formatted(frame)
                truth = truth.select(customer_id(pl.col("number")).alias("customer_id"), "group")
                next_customer += customers
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=1_000_000)
                written += frame.height
                truths.append(truth)
                del frame, table
        finally:
            if writer is not None:
                writer.close()
        say(f"  part {part + 1}/{parts}: {written:,} rows, peak memory {peak_mb():,.0f} MB")
    pl.concat(truths).write_parquet(folder / "truth.parquet")


def ensure(
    rows: int,
    seed: int,
    root: Path = DATA_DIR,
    parts: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Transactions:
    """The purchase log for (rows, seed): reused when its meta.json matches, generated otherwise."""
    parts = parts or default_parts(rows)
    folder = folder_for(rows, seed, root)
    paths = [folder / "parts" / f"part-{part:03d}.parquet" for part in range(parts)]
    data = Transactions(rows, seed, folder, paths, folder / "truth.parquet")
    meta_path = folder / "meta.json"
    wanted = _meta(rows, seed, parts)

    def say(line: str) -> None:
        if log is not None:
            log(line)

    files = [*paths, data.truth]
    if meta_path.is_file() and all(path.is_file() for path in files):
        recorded = json.loads(meta_path.read_text())
        sizes = recorded.pop("file_bytes", {})
        recorded.pop("customers", None)
        recorded.pop("generated", None)
        if recorded == wanted and sizes == {p.name: p.stat().st_size for p in files}:
            say(f"data: reusing {data.glob} ({rows:,} transactions, seed {seed})")
            return data
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # a half-written data set is never taken as complete
    say(f"data: generating {rows:,} transactions (seed {seed}) in {parts} parts under {folder}")
    started = time.perf_counter()
    generate(rows, seed, parts, folder, say)
    seconds = time.perf_counter() - started
    customers = pl.scan_parquet(data.truth).select(pl.len()).collect().item()
    wanted["file_bytes"] = {p.name: p.stat().st_size for p in files}
    wanted["customers"] = customers
    wanted["generated"] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb())}
    meta_path.write_text(json.dumps(wanted, indent=2) + "\n")
    say(
        f"data: generated {rows:,} transactions of {customers:,} customers in {seconds:.1f} s "
        f"(generator's peak memory {peak_mb():,.0f} MB; "
        f"{sum(p.stat().st_size for p in paths) / 1e6:,.0f} MB of Parquet)"
    )
    return data


def peak_mb() -> float:
    """This process's peak resident size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=parse_rows, nargs="+", default=[10_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--parts", type=int, help="Parquet parts (default: 10, fewer below 10M)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="default: bench/data")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    for rows in args.rows:
        data = ensure(rows, args.seed, args.out, args.parts, log=say)
        sys.stdout.write(f"{data.glob}\n{data.truth}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
