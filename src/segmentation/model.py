"""The saved model (`model.json`): one typed, validated object, plain JSON, no pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from segmentation.config import Scaling
from segmentation.errors import DataError
from segmentation.schema import TableSchema

MODEL_FORMAT: Literal["segmentation-model/2"] = "segmentation-model/2"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScalerState(_Frozen):
    """`(x - center) / scale` per feature-matrix column."""

    method: Scaling
    columns: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]


class SegmentEntry(_Frozen):
    segment_id: int
    name: str
    action: str | None
    traits: str


class KMeansState(_Frozen):
    algorithm: str
    init: str
    n_init: int
    max_iter: int
    seed: int
    inertia: float


class SegmentModel(_Frozen):
    """Everything `segment assign` needs to put new customers through the same steps: the
    declared columns with what prepare learned (imputed values, clip bounds, categories, as_of),
    the scaling, and the centroids."""

    format: Literal["segmentation-model/2"] = MODEL_FORMAT
    table: TableSchema
    """The declared columns with what prepare learned from the data."""
    scaler: ScalerState
    k: int
    centroids_scaled: tuple[tuple[float, ...], ...]
    segments: tuple[SegmentEntry, ...]
    kmeans: KMeansState
    silhouette: str

    @model_validator(mode="after")
    def _consistent(self) -> SegmentModel:
        width = len(self.scaler.columns)
        if len(self.scaler.center) != width or len(self.scaler.scale) != width:
            raise ValueError("scaler: center and scale must have one value per column")
        if self.scaler.columns != self.table.matrix_columns:
            raise ValueError("scaler.columns do not match the schema's feature columns")
        if len(self.centroids_scaled) != self.k or any(
            len(c) != width for c in self.centroids_scaled
        ):
            raise ValueError(f"centroids_scaled must be {self.k} rows of {width} values")
        if [s.segment_id for s in self.segments] != list(range(self.k)):
            raise ValueError(f"segments must list ids 0 to {self.k - 1} in order")
        return self

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    @property
    def centroids(self) -> np.ndarray:
        return np.asarray(self.centroids_scaled, dtype=float)


def load_model(path: Path, data: Any) -> SegmentModel:
    """The model in `data` (read from `path`), validated; a one-line DataError otherwise."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a segmentation model (a {type(data).__name__})")
    if data.get("format") != MODEL_FORMAT:
        raise DataError(
            f"{path}: not a segmentation model of this version (format {data.get('format')!r}, "
            f"expected {MODEL_FORMAT!r}); run `make all` to write it again"
        )
    try:
        return SegmentModel.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        problem = str(error["msg"]).removeprefix("Value error, ")
        raise DataError(
            f"{path}: a damaged model ({f'{key}: ' if key else ''}{problem}); run `make all` to "
            "write it again"
        ) from None
