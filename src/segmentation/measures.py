"""A declared column as a number: how profiles read it, and how K-Means sees it before scaling."""

from __future__ import annotations

import datetime as dt

import polars as pl

from segmentation.schema import ColumnSpec, TableSchema


def measure(column: ColumnSpec, schema: TableSchema) -> pl.Expr:
    """A numeric or date column as a number: dates as days before `schema.as_of`."""
    if column.type == "date":
        reference = dt.date.fromisoformat(schema.as_of or "1970-01-01")
        return (
            (pl.lit(reference) - pl.col(column.name))
            .dt.total_days()
            .cast(pl.Float64)
            .alias(column.name)
        )
    return pl.col(column.name).cast(pl.Float64)


def feature_value(column: ColumnSpec, schema: TableSchema) -> pl.Expr:
    """A numeric or date feature as K-Means sees it before scaling: clipped, then transformed."""
    value = measure(column, schema)
    if column.name in schema.clip_bounds:
        low, high = schema.clip_bounds[column.name]
        value = value.clip(low, high)
    if column.transform == "log1p":
        value = value.log1p()
    return value.alias(column.name)
