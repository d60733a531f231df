"""Synthetic Mall-like customers from a known mixture, for the benchmark (`make bench`).

Five groups in (annual income, spending score), shaped like the segments of the Mall Customers
data: a large middle group and four corners. Each group's income and score are normal around its
centre with a spread of 6-9 units, rounded and clipped to the schema's ranges; age and gender are
drawn per group. The groups are far enough apart that K-Means can recover them (adjusted Rand
index about 0.99 against the true groups) while neighbouring groups still touch.

The CSV has the Mall schema only; the true group of each customer goes to a separate
`truth.parquet` (customer_id, group) so no tool can see it. Files live in
`bench/data/<rows>-seed<seed>/` and are reused when `meta.json` there matches the rows, seed and
mixture asked for.

    python bench/generate.py --rows 100000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HEADER = ("CustomerID", "Gender", "Age", "Annual Income (k$)", "Spending Score (1-100)")
DATA_DIR = Path(__file__).resolve().parent / "data"
GENERATOR_VERSION = 1
"""Bump when the way rows are drawn from the mixture changes, so cached data is regenerated."""


@dataclass(frozen=True)
class Group:
    name: str
    weight: float
    income: tuple[float, float]
    """Mean and standard deviation of annual income (k$)."""
    score: tuple[float, float]
    """Mean and standard deviation of spending score (1-100)."""
    age: tuple[float, float]
    """Mean and standard deviation of age (clipped to AGE_RANGE)."""
    female_share: float


MIXTURE = (
    Group("mid income, mid spending", 0.40, (55, 8.0), (50, 6.0), (43, 12.0), 0.58),
    Group("high income, high spending", 0.20, (87, 9.0), (82, 8.0), (33, 5.0), 0.54),
    Group("high income, low spending", 0.18, (88, 9.0), (17, 8.5), (41, 11.0), 0.46),
    Group("low income, high spending", 0.11, (26, 6.5), (79, 8.0), (25, 5.5), 0.59),
    Group("low income, low spending", 0.11, (26, 6.5), (21, 8.0), (45, 13.0), 0.61),
)
AGE_RANGE = (18, 70)


@dataclass(frozen=True)
class Dataset:
    rows: int
    seed: int
    csv: Path
    truth: Path


def folder_for(rows: int, seed: int, root: Path = DATA_DIR) -> Path:
    return root / f"{rows}-seed{seed}"


def _meta(rows: int, seed: int) -> dict[str, Any]:
    """What identifies a data set, as it reads back from meta.json (tuples become lists)."""
    meta = {
        "rows": rows,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "mixture": [asdict(group) for group in MIXTURE],
        "age_range": list(AGE_RANGE),
    }
    loaded: dict[str, Any] = json.loads(json.dumps(meta))
    return loaded


def draw(rows: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(customers with the Mall header, truth with customer_id and group), from one seeded stream."""
    rng = np.random.default_rng(seed)
    weights = np.array([group.weight for group in MIXTURE])
    groups = rng.choice(len(MIXTURE), size=rows, p=weights / weights.sum()).astype(np.int8)

    def normal(field: str) -> np.ndarray:
        """One draw per customer from its group's normal distribution for `field`."""
        means = np.array([getattr(group, field)[0] for group in MIXTURE])[groups]
        sds = np.array([getattr(group, field)[1] for group in MIXTURE])[groups]
        return means + sds * rng.standard_normal(rows)

    income, score, age = normal("income"), normal("score"), normal("age")
    female = rng.random(rows) < np.array([group.female_share for group in MIXTURE])[groups]

    customer_id = np.arange(1, rows + 1, dtype=np.int64)
    customers = pl.DataFrame(
        {
            HEADER[0]: customer_id,
            HEADER[1]: np.where(female, "Female", "Male"),
            HEADER[2]: np.clip(np.rint(age), *AGE_RANGE).astype(np.int64),
            HEADER[3]: np.maximum(np.rint(income), 0).astype(np.int64),
            HEADER[4]: np.clip(np.rint(score), 1, 100).astype(np.int64),
        }
    )
    truth = pl.DataFrame({"customer_id": customer_id, "group": groups})
    return customers, truth


def ensure(
    rows: int, seed: int, root: Path = DATA_DIR, log: Callable[[str], None] | None = None
) -> Dataset:
    """The data set for (rows, seed): reused when its meta.json matches, generated otherwise."""
    folder = folder_for(rows, seed, root)
    dataset = Dataset(rows, seed, folder / "customers.csv", folder / "truth.parquet")
    meta_path = folder / "meta.json"
    wanted = _meta(rows, seed)
    if meta_path.is_file() and dataset.csv.is_file() and dataset.truth.is_file():
        recorded = json.loads(meta_path.read_text())
        sizes = recorded.pop("file_bytes", {})
        if recorded == wanted and sizes == {
            "customers.csv": dataset.csv.stat().st_size,
            "truth.parquet": dataset.truth.stat().st_size,
        }:
            _say(log, f"data: reusing {dataset.csv} ({rows:,} rows, seed {seed})")
            return dataset
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # a half-written data set is never taken as complete
    started = time.perf_counter()
    customers, truth = draw(rows, seed)
    customers.write_csv(dataset.csv)  # polars' writer: under a second per million rows
    truth.write_parquet(dataset.truth)
    wanted["file_bytes"] = {
        "customers.csv": dataset.csv.stat().st_size,
        "truth.parquet": dataset.truth.stat().st_size,
    }
    meta_path.write_text(json.dumps(wanted, indent=2) + "\n")
    _say(
        log,
        f"data: generated {dataset.csv} ({rows:,} rows, seed {seed}) "
        f"in {time.perf_counter() - started:.1f} s",
    )
    return dataset


def _say(log: Callable[[str], None] | None, line: str) -> None:
    if log is not None:
        log(line)


def parse_rows(text: str) -> int:
    """A row count: 100000, 100_000, 100k or 1M."""
    value = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    number = value[:-1] if factor > 1 else value
    try:
        rows = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r}") from None
    if rows < 100:
        raise argparse.ArgumentTypeError(f"at least 100 rows, got {text!r}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=parse_rows, nargs="+", default=[100_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="default: bench/data")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")

    for rows in args.rows:
        dataset = ensure(rows, args.seed, args.out, log=say)
        sys.stdout.write(f"{dataset.csv}\n{dataset.truth}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
