"""The prepared table's layout: the customers' own columns, then one scaled column per feature.

Later stages read the prepared table through these few functions; they import nothing but Polars,
so that reading it does not load what preparing it needs (scikit-learn, pandera).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import numpy as np

FEATURE_PREFIX = "feature_"
"""The scaled value of feature `x` is the column `feature_x`."""


def feature_columns(prepared: pl.DataFrame) -> pl.DataFrame:
    """The scaled feature columns of a prepared frame, in the matrix's order."""
    return prepared.select(pl.selectors.starts_with(FEATURE_PREFIX))


def feature_matrix(prepared: pl.DataFrame) -> np.ndarray:
    """The scaled feature matrix stored in a prepared frame."""
    return feature_columns(prepared).to_numpy()


def customer_columns(prepared: pl.DataFrame) -> pl.DataFrame:
    """A prepared frame without its scaled feature columns."""
    return prepared.select(pl.exclude(f"^{FEATURE_PREFIX}.*$"))
