"""Shared fixtures: synthetic customers of known structure, their features, and a scratch project."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from segmentation import prepare
from segmentation.config import Scaling

# Well-separated groups in (annual_income, spending_score); sizes differ so that the canonical ids
# (largest segment first) are known in advance.
THREE_CENTERS = ((20.0, 20.0), (80.0, 80.0), (80.0, 20.0))
THREE_SIZES = (40, 30, 20)
FOUR_CENTERS = ((20.0, 20.0), (20.0, 80.0), (80.0, 20.0), (80.0, 80.0))
FOUR_SIZES = (40, 35, 30, 25)


def _blobs(
    centers: Sequence[tuple[float, float]],
    sizes: Sequence[int],
    seed: int = 0,
    spread: float = 3.0,
) -> pl.DataFrame:
    """Customers in Gaussian blobs of income and spending, with canonical columns and types."""
    rng = np.random.RandomState(seed)
    income: list[float] = []
    spending: list[float] = []
    for (center_income, center_spending), size in zip(centers, sizes, strict=True):
        income += list(np.clip(center_income + rng.normal(0, spread, size), 0, None))
        spending += list(np.clip(center_spending + rng.normal(0, spread, size), 1, 100))
    total = sum(sizes)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(total)],
            "gender": rng.choice(["Female", "Male"], total).tolist(),
            "age": rng.uniform(18, 70, total).round(0),
            "annual_income": np.round(income, 1),
            "spending_score": np.round(spending, 1),
        },
        schema={
            "customer_id": pl.String,
            "gender": pl.String,
            "age": pl.Float64,
            "annual_income": pl.Float64,
            "spending_score": pl.Float64,
        },
    )


MakeBlobs = Callable[..., pl.DataFrame]
WriteCsv = Callable[[pl.DataFrame, Path], Path]


@pytest.fixture(scope="session")
def make_blobs() -> MakeBlobs:
    """Factory: `make_blobs(centers, sizes, seed=0, spread=3.0)` -> a customer frame."""
    return _blobs


@pytest.fixture(scope="session")
def blobs3() -> pl.DataFrame:
    return _blobs(THREE_CENTERS, THREE_SIZES)


@pytest.fixture(scope="session")
def blobs4() -> pl.DataFrame:
    return _blobs(FOUR_CENTERS, FOUR_SIZES)


def _write_csv(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


@pytest.fixture(scope="session")
def write_customers() -> WriteCsv:
    """Factory: write a customer frame as CSV (canonical header) and return its path."""
    return _write_csv


@dataclass(frozen=True)
class Featurized:
    """A customer frame run through the prepare core: everything the later stages take."""

    customers: pl.DataFrame
    features: tuple[str, ...]
    unscaled: np.ndarray
    scaler: prepare.Scaler
    matrix: np.ndarray
    population: dict[str, dict[str, float]]


def _featurize(
    customers: pl.DataFrame,
    features: tuple[str, ...] = ("annual_income", "spending_score"),
    scaling: Scaling = Scaling.STANDARD,
) -> Featurized:
    unscaled = prepare.unscaled_matrix(customers, features)
    scaler = prepare.fit_scaler(unscaled, prepare.feature_columns(features), scaling)
    prepared = prepare.Prepared(
        customers=customers,
        rejects=pl.DataFrame(
            schema={"source_line": pl.Int64, "customer_id": pl.String, "reason": pl.String}
        ),
        blank_lines=0,
    )
    summary = prepare.summarise(prepared, scaler, features)
    return Featurized(
        customers=customers,
        features=features,
        unscaled=unscaled,
        scaler=scaler,
        matrix=scaler.transform(unscaled),
        population=summary["population"],
    )


@pytest.fixture(scope="session")
def featurize() -> Callable[..., Featurized]:
    """Factory: `featurize(customers, features=..., scaling=...)` -> a Featurized bundle."""
    return _featurize


def _make_project(
    root: Path, customers: pl.DataFrame, overrides: dict[str, Any] | None = None
) -> Path:
    """A project folder with the customers at data/customers.csv and a config.yaml using them."""
    _write_csv(customers, root / "data" / "customers.csv")
    config: dict[str, Any] = {
        "data": {"path": "data/customers.csv", "url": None, "sha256": None},
        "features": ["annual_income", "spending_score"],
        "select_k": {"k_min": 2, "k_max": 6},
        "cluster": {"n_init": 4},
        "visualize": {"width": 200, "height": 150, "png_scale": 1.0},
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def make_project() -> Callable[..., Path]:
    """Factory: `make_project(root, customers, overrides=None)` -> the config.yaml written."""
    return _make_project
