"""The Vega-Lite building blocks: named datasets, shared data and shared selections."""

from __future__ import annotations

import polars as pl

from conftest import validate_vega_lite
from segmentation import vegalite as vl

PICK = {"name": "pick", "select": {"type": "point", "fields": ["g"]}}


def dots(data: vl.Spec | None, **properties: object) -> vl.Spec:
    encoding = {"x": vl.quantitative("x"), "y": vl.quantitative("y")}
    return vl.unit(data, "circle", encoding, mark={"size": 25}, **properties)


def test_inline_data_becomes_a_dataset_named_by_its_content() -> None:
    frame = pl.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    spec = vl.top_level(vl.layer(dots(vl.values(frame)), dots(vl.values(frame.clone()))))
    (name,) = spec["datasets"]
    assert name == vl.dataset_name([{"x": 1.0, "y": 3.0}, {"x": 2.0, "y": 4.0}])
    assert [layer["data"] for layer in spec["layer"]] == [{"name": name}] * 2
    validate_vega_lite(spec)


def test_data_shared_by_every_child_moves_up_to_their_parent() -> None:
    shared = {"values": [{"x": 1, "y": 2}]}
    spec = vl.hconcat(dots(shared), dots(shared))
    assert spec["data"] is shared
    assert all("data" not in child for child in spec["hconcat"])
    other = vl.layer(dots(shared), dots({"values": [{"x": 1, "y": 2}]}))
    assert "data" not in other


def test_a_selection_in_several_views_is_declared_once_at_the_top() -> None:
    shared = {"values": [{"x": 1, "y": 2, "g": "a"}]}
    cells = [{**dots(None), "params": [PICK]} for _ in range(3)]
    spec = vl.top_level(vl.vconcat(vl.hconcat(cells[0]), vl.hconcat(*cells[1:]), data=shared))
    assert spec["params"] == [{**PICK, "views": ["view_0", "view_1", "view_2"]}]
    views = [cell for row in spec["vconcat"] for cell in row["hconcat"]]
    assert [view["name"] for view in views] == ["view_0", "view_1", "view_2"]
    assert all("params" not in view for view in views)
    assert cells[0]["params"] == [PICK]  # the parts built are left as they were
    validate_vega_lite(spec)
