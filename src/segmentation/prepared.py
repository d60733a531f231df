"""The prepared table's layout: the customers' own columns, then one scaled column per feature.

Later stages read the prepared table through these few functions; they import nothing heavier than
Polars, so that reading it does not load what preparing it needs (scikit-learn, pandera).
"""

from __future__ import annotations

import numpy as np
import polars as pl

FEATURE_PREFIX = "feature_"
"""The scaled value of feature `x` is the column `feature_x`."""


def feature_matrix(prepared: pl.DataFrame) -> np.ndarray:
    """The scaled feature matrix stored in a prepared frame."""
    return prepared.select(pl.selectors.starts_with(FEATURE_PREFIX)).to_numpy()


def customer_columns(prepared: pl.DataFrame) -> pl.DataFrame:
    """A prepared frame without its scaled feature columns."""
    return prepared.select(pl.exclude(f"^{FEATURE_PREFIX}.*$"))
