"""Vega-Lite specs as plain dicts: the few building blocks the charts are made of.

The charts are written as the JSON they are saved as. Building them through Altair's objects took
most of the visualize stage's time (its import, and a search of its schema classes for every
encoding given as text); the specs' shape is Altair's, and the tests validate them against the
Vega-Lite schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import polars as pl

Spec = dict[str, Any]
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.4.1.json"
DEFAULT_CONFIG: Spec = {"view": {"continuousHeight": 300, "continuousWidth": 300}}
"""The size of a view that sets none (Altair's default theme)."""
COMPOSITIONS = ("layer", "hconcat", "vconcat", "spec")


def values(frame: pl.DataFrame) -> Spec:
    """A data frame as inline data (`top_level` moves it to the named datasets)."""
    return {"values": frame.rows(named=True)}


def field(name: str, kind: str, **properties: Any) -> Spec:
    """An encoding of the field `name`; `kind` is quantitative, nominal or ordinal."""
    return {"field": name, "type": kind, **properties}


def quantitative(name: str, **properties: Any) -> Spec:
    """An encoding of a number field."""
    return field(name, "quantitative", **properties)


def nominal(name: str, **properties: Any) -> Spec:
    """An encoding of a category field."""
    return field(name, "nominal", **properties)


def condition(test: str, if_true: Any, otherwise: Any) -> Spec:
    """A value that depends on a Vega expression."""
    return {"condition": {"test": test, "value": if_true}, "value": otherwise}


def unit(
    data: Spec | None, kind: str, encoding: Spec, mark: Spec | None = None, **properties: Any
) -> Spec:
    """A view of marks of one `kind` ("bar", "line", ...): `mark` holds the marks' own
    properties (size, color), `properties` the view's (width, height); no data: its parent's."""
    spec: Spec = {"mark": {"type": kind, **(mark or {})}, "encoding": encoding, **properties}
    if data is not None:
        spec["data"] = data
    return spec


def _shared_data(charts: tuple[Spec, ...]) -> tuple[Spec | None, list[Spec]]:
    """The data every chart draws from, taken up to their parent, when it is one and the same."""
    first = charts[0].get("data") if charts else None
    if first is None or any(chart.get("data") is not first for chart in charts):
        return None, list(charts)
    return first, [{k: v for k, v in chart.items() if k != "data"} for chart in charts]


def _composed(key: str, charts: tuple[Spec, ...], properties: Spec) -> Spec:
    """`charts` composed under `key`, their common data (if any) moved up to the result."""
    data, children = _shared_data(charts)
    spec: Spec = {key: children, **properties}
    if data is not None:
        spec["data"] = data
    return spec


def layer(*charts: Spec, **properties: Any) -> Spec:
    """Charts drawn over one another."""
    return _composed("layer", charts, properties)


def hconcat(*charts: Spec, **properties: Any) -> Spec:
    """Charts side by side."""
    return _composed("hconcat", charts, properties)


def vconcat(*charts: Spec, **properties: Any) -> Spec:
    """Charts one above the other."""
    return _composed("vconcat", charts, properties)


def facet(chart: Spec, row: Spec, **properties: Any) -> Spec:
    """`chart` repeated for each value of the `row` encoding; its data is the facet's."""
    inner = {k: v for k, v in chart.items() if k != "data"}
    return {"data": chart["data"], "facet": {"row": row}, "spec": inner, **properties}


def dataset_name(rows: list[Any]) -> str:
    """A name from the rows' content: equal data is stored once, under the same name."""
    text = json.dumps(rows, sort_keys=True, default=str)
    return "data-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _named_datasets(node: Any, datasets: dict[str, list[Any]]) -> Any:
    """`node` with every inline data replaced by a reference to its rows in `datasets`."""
    if isinstance(node, list):
        return [_named_datasets(item, datasets) for item in node]
    if not isinstance(node, dict):
        return node
    replaced = {}
    for key, value in node.items():
        if key == "data" and isinstance(value, dict) and "values" in value:
            name = dataset_name(value["values"])
            datasets[name] = value["values"]
            replaced[key] = {"name": name}
        else:
            replaced[key] = _named_datasets(value, datasets)
    return replaced


def _views(spec: Spec) -> Iterator[Spec]:
    """Every view inside `spec`, depth first."""
    for key in COMPOSITIONS:
        children = spec.get(key, [])
        for child in [children] if isinstance(children, dict) else children:
            yield child
            yield from _views(child)


def _lifted_selections(spec: Spec) -> list[Spec]:
    """Take the selections out of the views inside `spec`, naming those views: a selection
    declared once at the top with the views it applies to is one selection shared by all of
    them, where copies in each view would clash."""
    found: dict[str, Spec] = {}
    for number, view in enumerate(v for v in list(_views(spec)) if _selections(v)):
        view.setdefault("name", f"view_{number}")
        for selection in _selections(view):
            found.setdefault(selection["name"], {**selection, "views": []})["views"].append(
                view["name"]
            )
        view["params"] = [p for p in view["params"] if "select" not in p]
        if not view["params"]:
            del view["params"]
    return list(found.values())


def _selections(view: Spec) -> list[Spec]:
    """The view's selection parameters (those with `select`)."""
    return [param for param in view.get("params", []) if "select" in param]


def top_level(spec: Spec) -> Spec:
    """The complete spec as it is saved, with its data in named datasets.

    Parameters
    ----------
    spec : dict
        A chart built from these blocks, with its data inline; it is left unchanged.

    Returns
    -------
    dict
        The chart with `$schema`, the default view size, each distinct data set once under
        `datasets` (named by its content) and its selections declared at the top.
    """
    datasets: dict[str, list[Any]] = {}
    named: Spec = _named_datasets(spec, datasets)
    selections = _lifted_selections(named)
    if selections:
        named["params"] = [*named.get("params", []), *selections]
    config = {"view": dict(DEFAULT_CONFIG["view"])}
    return {"$schema": SCHEMA, "config": config, "datasets": datasets, **named}
