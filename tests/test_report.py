"""Stage 5: the static HTML report is self-contained and escapes the data it shows."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import vl_convert

from segmentation import prepare, report, visualize
from segmentation.cluster import segment_customers
from segmentation.config import ClusterConfig, SelectKConfig, VisualizeConfig, load_config
from segmentation.select_k import evaluate
from segmentation.stages import VEGA_GLOBALS, environment
from segmentation.vocabulary import load_vocabulary

CONFIG = load_config(Path(__file__).resolve().parents[1] / "config.yaml")

EVIL_ID = "<script>alert(1)</script>"
TITLE = "Segments <b>&</b> co"
# XML namespace names in inline SVG are identifiers, never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


@pytest.fixture(scope="module")
def inputs(
    tmp_path_factory: pytest.TempPathFactory,
    write_customers: Callable[[pl.DataFrame, Path], Path],
    blobs4: pl.DataFrame,
) -> report.ReportInputs:
    """Report inputs from the real stage cores, on data with one invalid, hostile row."""
    hostile = pl.DataFrame(
        {
            "customer_id": [EVIL_ID],
            "gender": ["Male"],
            "age": [200.0],
            "annual_income": [50.0],
            "spending_score": [50.0],
        }
    )
    path = write_customers(
        pl.concat([blobs4, hostile]), tmp_path_factory.mktemp("report") / "customers.csv"
    )
    config = CONFIG
    prepared = prepare.load_customers(path, config.table, "drop")
    schema = prepared.schema
    unscaled = prepare.unscaled_matrix(prepared.customers, schema)
    scaler = prepare.fit_scaler(unscaled, schema, config.scaling)
    matrix = scaler.transform(unscaled)
    summary = prepare.summarise(prepared, scaler, unscaled)
    cluster = ClusterConfig(n_init=4)
    selection = evaluate(
        matrix,
        unscaled,
        SelectKConfig(k_min=2, k_max=6, gap_references=5, bootstrap=5),
        cluster,
        progress=lambda _label, _total: lambda _steps: None,
    )
    result = segment_customers(
        prepared.customers,
        matrix,
        unscaled,
        scaler,
        schema,
        selection["chosen_k"],
        cluster,
        summary["population"],
        summary["category_shares"],
        vocabulary=load_vocabulary(
            "mall", Path(), {"gender", "age", "annual_income", "spending_score"}
        ),
    )
    # A customer id that tries to close the spec's <script> element and run its own.
    hostile_points = pl.DataFrame({"customer_id": [f"</script>{EVIL_ID}"], "segment": ["x"]})
    sizes = visualize.chart_spec(
        "sizes",
        "Segment sizes",
        visualize.sizes_chart(result.segments, VisualizeConfig(width=200, height=150)),
    )
    spec = {**sizes, "datasets": {"hostile": hostile_points.to_dicts()}}
    return report.ReportInputs(
        title=TITLE,
        version="0123456789ab",
        config=config.resolved(),
        data_path="data/customers.csv",
        data_sha256="f" * 64,
        data_pinned=False,
        summary=json.loads(json.dumps(summary)),
        schema=schema,
        rejects=prepared.rejects,
        selection=json.loads(json.dumps(selection)),
        segments=result.segments,
        profiles=result.profiles,
        log=None,
        charts=[
            report.ReportChart(
                name="sizes",
                title="Segment sizes",
                section="segments",
                description="Bar chart of the number of customers in each segment.",
                spec=spec,
            )
        ],
        environment=environment(),
        git={"commit": None, "dirty": None},
        javascript=vl_convert.javascript_bundle(VEGA_GLOBALS),
    )


@pytest.fixture(scope="module")
def html(inputs: report.ReportInputs) -> str:
    return report.render_report(inputs)


def test_every_script_is_inline(html: str) -> None:
    assert "<script" in html
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.IGNORECASE)


def test_report_loads_nothing_from_elsewhere(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html.lower()
    assert "@import" not in html


def test_the_page_outside_its_scripts_names_no_address_but_the_data_url(html: str) -> None:
    outside = re.sub(r"<script.*?</script>", "", html, flags=re.DOTALL)
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", outside))
    assert addresses - NAMESPACES <= {CONFIG.data.url}


def test_each_chart_has_its_spec_and_downloads_drawn_in_the_page(html: str) -> None:
    assert '<script type="application/json" id="spec-sizes">' in html
    # No image files (visualize.images: false): the page draws the PNG and SVG it offers.
    assert 'data-export="png" data-scale="2.0" data-file="sizes.png"' in html
    assert 'data-export="svg" data-scale="1" data-file="sizes.svg"' in html
    assert 'href="charts/sizes.vl.json"' in html
    assert 'href="charts/sizes.png"' not in html


def test_with_image_files_the_downloads_are_the_files(inputs: report.ReportInputs) -> None:
    config = {**inputs.config, "visualize": {**inputs.config["visualize"], "images": True}}
    html = report.render_report(dataclasses.replace(inputs, config=config))
    assert 'href="charts/sizes.png"' in html
    assert 'href="charts/sizes.svg"' in html
    assert '<noscript><img src="charts/sizes.svg"' in html
    assert "data-export=" not in html


def test_data_in_a_spec_cannot_close_its_script_element(html: str) -> None:
    spec_text = html.split('id="spec-sizes">', 1)[1].split("</script>", 1)[0]
    assert "<" not in spec_text
    assert json.loads(spec_text)["datasets"]["hostile"][0]["customer_id"] == f"</script>{EVIL_ID}"


def test_customer_ids_in_rejects_are_escaped(html: str) -> None:
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL_ID not in html


def test_title_is_escaped(html: str) -> None:
    assert "<h1>Segments &lt;b&gt;&amp;&lt;/b&gt; co</h1>" in html


def test_report_names_every_segment(html: str, inputs: report.ReportInputs) -> None:
    for name in inputs.segments["name"]:
        assert f"· {name}</h3>" in html
        assert f"· {name}</strong></td>" in html


def test_report_states_the_chosen_k_and_rule(html: str) -> None:
    assert "It chose <strong>k = 4</strong>." in html
    assert "The rule is <strong>silhouette</strong>" in html


def test_the_method_says_how_each_resample_is_fitted(
    html: str, inputs: report.ReportInputs
) -> None:
    text = re.sub(r"\s+", " ", html)
    resamples = inputs.selection["stability"]["resamples"]
    size = inputs.selection["stability"]["resample_size"]
    starts = inputs.config["cluster"]["n_init"]
    assert f"{resamples} bootstrap resamples, each of {size:,} customers drawn" in text
    assert f"the best of {starts} k-means++ starts" in text


def test_report_lists_the_rejected_row_with_its_line(html: str) -> None:
    # 130 customers after the header: the hostile row is line 132.
    assert re.search(r'<td class="num">132</td><td>&lt;script&gt;', html)


def test_index_links_every_version() -> None:
    versions: list[dict[str, Any]] = [
        {
            "version": version,
            "created": "2026-01-01T00:00:00+00:00",
            "features": ["annual_income"],
            "scaling": "standard",
            "rule": "silhouette",
            "chosen_k": 3,
            "silhouette": 0.5,
            "calinski_harabasz": 100.0,
            "davies_bouldin": 0.5,
            "segments": ["A", "B", "C"],
            "report": f"{version}/index.html",
        }
        for version in ("aaaaaaaaaaaa", "bbbbbbbbbbbb")
    ]
    page = report.render_index(versions, latest="bbbbbbbbbbbb")
    assert 'href="aaaaaaaaaaaa/index.html"' in page
    assert 'href="bbbbbbbbbbbb/index.html"' in page


@pytest.fixture
def fresh_environment() -> Iterator[None]:
    """Templates looked up afresh in the user cache by the test, and again after it."""
    report._environment.cache_clear()
    yield
    report._environment.cache_clear()


def test_templates_compiled_into_the_user_cache_render_the_same_report(
    inputs: report.ReportInputs,
    html: str,
    user_cache: Path,
    tmp_path: Path,
    fresh_environment: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The `html` fixture rendered from the templates compiled into the session's user cache.
    (compiled,) = (user_cache / "segmentation" / "templates").iterdir()
    assert len(list(compiled.glob("tmpl_*.py"))) == len(list(report.TEMPLATES.glob("*.j2")))
    # Without a user cache to write to, the templates are compiled in memory: the same page.
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    with monkeypatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
        assert report.render_report(inputs) == html
    report._environment.cache_clear()
    # A damaged module is not used: the templates are compiled again.
    module = next(compiled.glob("tmpl_*.py"))
    kept = module.read_bytes()
    module.write_text("raise SystemExit('damaged')\n", encoding="utf-8")
    assert report.render_report(inputs) == html
    assert module.read_bytes() == kept
