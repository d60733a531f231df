"""Stage 5, report: one self-contained static HTML page per version, and the list of versions."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import yaml
from markupsafe import Markup

from segmentation import artifacts
from segmentation.schema import TableSchema, rfm_scores
from segmentation.stability import stability_class

SCALING_WORDS = {
    "standard": "standardised: each column centred on its mean and divided by its standard deviation",
    "minmax": "min-max: each column mapped onto 0..1 from its minimum and maximum",
    "robust": "robust: each column centred on its median and divided by its interquartile range",
    "none": "not scaled: columns used in their own units",
}
RULE_WORDS = {
    "silhouette": "the k with the highest mean silhouette (ties go to the smaller k)",
    "elbow": "the knee of the inertia curve, found by kneed",
    "gap": "the gap statistic's 1-SE rule (the smallest k whose gap is within one standard error of the next)",
    "calinski_harabasz": "the k with the highest Calinski-Harabasz index",
    "davies_bouldin": "the k with the lowest Davies-Bouldin index",
    "stability": "the k whose segments are found most consistently across bootstrap resamples",
    "vote": "the k most criteria choose (a tie goes to the higher silhouette)",
    "fixed": "fixed in the config (cluster.k)",
}
CRITERIA = {
    "silhouette": "Silhouette: how much closer customers are to their own segment than to the next",
    "elbow": "Elbow: where adding a segment stops reducing the spread much",
    "gap": "Gap statistic: how much tighter the segments are than in structureless data (1-SE rule)",
    "calinski_harabasz": "Calinski-Harabasz: spread between segments against spread within them",
    "davies_bouldin": "Davies-Bouldin: how similar each segment is to its nearest neighbour (lower is better)",
    "stability": "Bootstrap stability: how consistently resampled data gives the same segments",
}


@dataclass(frozen=True)
class ReportChart:
    name: str
    title: str
    section: str
    """"segments" or "k": the part of the report the chart belongs to."""
    description: str
    spec: dict[str, Any]
    """The Vega-Lite spec, drawn in the page by Vega-Embed."""


@dataclass(frozen=True)
class ReportInputs:
    title: str
    version: str
    config: dict[str, Any]
    data_path: str
    data_sha256: str
    data_pinned: bool
    summary: dict[str, Any]
    schema: TableSchema
    rejects: pl.DataFrame
    selection: dict[str, Any]
    segments: pl.DataFrame
    profiles: pl.DataFrame
    log: dict[str, Any] | None
    """A purchase log's summary (customers_summary.json); None for a customer table."""
    """Each segment's share of the top categories of every categorical column (long form)."""
    charts: list[ReportChart]
    environment: dict[str, Any]
    git: dict[str, Any]
    javascript: str
    """Vega, Vega-Lite and Vega-Embed in one bundle, inlined so the page needs no network."""


TEMPLATES = Path(__file__).parent / "templates"
COMPILED_HASHES = "sha256.json"


def _new_environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates, compiled to Python modules once and kept in the user cache: Jinja parses
    and compiles a template more slowly than the report renders. Like the rest of the user cache
    this only saves time: kept modules are used if they match the hashes recorded beside them,
    and without a writable cache the templates are compiled in memory."""
    packaged = _new_environment(jinja2.PackageLoader("segmentation", "templates"))
    compiled = artifacts.user_cache() / "templates" / _templates_key()
    if not _intact(compiled):
        shutil.rmtree(compiled, ignore_errors=True)
        with contextlib.suppress(OSError):
            _compile_into(packaged, compiled)
    return _new_environment(jinja2.ModuleLoader(compiled)) if _intact(compiled) else packaged


def _templates_key() -> str:
    """What the compiled code depends on: Jinja's version, the templates and this module (the
    environment's settings above shape the code)."""
    digest = hashlib.sha256(jinja2.__version__.encode())
    for path in [Path(__file__), *sorted(TEMPLATES.glob("*.j2"))]:
        digest.update(f"{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _compile_into(environment: jinja2.Environment, target: Path) -> None:
    """Compile every template into a folder built aside and moved into place when complete."""
    staging = artifacts.make_staging_dir(target.parent, target.name)
    try:
        environment.compile_templates(str(staging), zip=None, ignore_errors=False)
        names = tuple(sorted(path.name for path in staging.glob("*.py")))
        artifacts.write_json(staging / COMPILED_HASHES, artifacts.output_hashes(staging, names))
        artifacts.move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _intact(folder: Path) -> bool:
    try:
        recorded: dict[str, str] = artifacts.read_json(folder / COMPILED_HASHES)
        return bool(recorded) and artifacts.output_hashes(folder, tuple(recorded)) == recorded
    except (OSError, ValueError, TypeError):
        return False


def script_json(data: Any) -> Markup:
    """JSON safe inside a <script> element: no data string can close the element or open markup."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False)
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escape)
    return Markup(text)


PROFILE_BARS = 12
"""The most bars a segment card shows (clustered columns first)."""
SUMMARY_COLUMNS = 4
"""The columns the summary's "who they are" names (clustered first)."""


def _number(value: float) -> str:
    """A value as a table shows it: whole above 100, one decimal above 1, two digits below."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


def _profile_bars(
    segment: dict[str, Any], summary: dict[str, Any], schema: TableSchema, profiles: pl.DataFrame
) -> list[dict[str, Any]]:
    """Segment against all customers on every column, in the data's units, scaled for small bars:
    the mean of numeric and date columns, the top categories' shares of categorical ones."""
    rows = []
    for column in sorted(schema.measures, key=lambda c: c.name not in schema.features):
        population = summary["population"][column.name]
        value = segment[f"mean_{column.name}"]
        # A log1p column spans orders of magnitude: its bars are drawn on the same log scale.
        scale = math.log1p if column.transform == "log1p" else float
        low, high = scale(min(population["min"], 0.0)), scale(population["max"])
        span = (high - low) or 1.0
        rows.append(
            {
                "label": column.title,
                "value": column.with_unit(_number(value)),
                "everyone": column.with_unit(_number(population["mean"])),
                "width": max(0.0, min(100.0, 100 * (scale(value) - low) / span)),
                "everyone_width": max(
                    0.0, min(100.0, 100 * (scale(population["mean"]) - low) / span)
                ),
            }
        )
    # A table without categorical columns has an empty profiles.csv, read back with text columns.
    shares = (
        profiles.filter(pl.col("segment_id") == segment["segment_id"])
        if profiles.height
        else profiles
    )
    for column, category, value, everyone in shares.select(
        "column", "category", "value", "everyone"
    ).iter_rows():
        rows.append(
            {
                "label": f"{schema.column(column).title}: {category}",
                "value": f"{100 * value:.0f}%",
                "everyone": f"{100 * everyone:.0f}%",
                "width": 100 * value,
                "everyone_width": 100 * everyone,
            }
        )
    return rows[:PROFILE_BARS]


def _who(segment: dict[str, Any], schema: TableSchema) -> str:
    """One line on who a segment's customers are: means of the clustered columns first."""
    parts = []
    for column in sorted(schema.measures, key=lambda c: c.name not in schema.features):
        mean = column.with_unit(_number(segment[f"mean_{column.name}"]))
        parts.append(f"{column.title.lower()} {mean}")
    for column in schema.of_type("categorical"):
        share = segment[f"top_{column.name}_share"]
        parts.append(
            f"{100 * share:.0f}% {column.category_text(str(segment[f'top_{column.name}']))}"
        )
    return "average " + ", ".join(parts[:SUMMARY_COLUMNS])


def _scores(segments: pl.DataFrame, schema: TableSchema) -> list[dict[str, Any]]:
    """The scores each segment has medians of (a purchase log's RFM scores), as the page names
    them."""
    return [
        {
            "name": name,
            "label": spec.get("label", name),
            "title": schema.column(spec["column"]).title.lower(),
            "descending": bool(spec.get("descending")),
        }
        for name, spec in rfm_scores().items()
        if f"median_{name}" in segments.columns
    ]


def render_report(inputs: ReportInputs) -> str:
    """The report as one HTML file: charts drawn in the page from inline specs, no network."""
    selection = inputs.selection
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    segments = inputs.segments.to_dicts()
    shown = inputs.config["visualize"]["max_points"]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            inputs=inputs,
            chosen=chosen,
            candidates=[c for c in selection["candidates"] if c["silhouette"] is not None],
            segments=segments,
            bars={
                s["segment_id"]: _profile_bars(s, inputs.summary, inputs.schema, inputs.profiles)
                for s in segments
            },
            who={s["segment_id"]: _who(s, inputs.schema) for s in segments},
            has_actions=any(s["action"] for s in segments),
            scores=_scores(inputs.segments, inputs.schema),
            grid_named="grid_cell" in inputs.segments.columns,
            feature_titles=[inputs.schema.column(f).title for f in inputs.schema.features],
            categorical_features=[
                c.title
                for c in inputs.schema.of_type("categorical")
                if c.name in inputs.schema.features
            ],
            transformed=[
                f"{c.title}: {'clipped, then ' if c.clip else ''}{c.transform}"
                for c in inputs.schema.of_type("numeric")
                if c.name in inputs.schema.features and (c.transform != "none" or c.clip)
            ],
            centroids={
                s["segment_id"]: "; ".join(
                    f"{inputs.schema.matrix_title(m)} {_number(s[f'centroid_{m}'])}"
                    for m in inputs.schema.matrix_columns
                )
                for s in segments
            },
            rejects=inputs.rejects.head(50).to_dicts(),
            charts={
                section: [c for c in inputs.charts if c.section == section]
                for section in ("segments", "k")
            },
            specs={c.name: script_json(c.spec) for c in inputs.charts},
            images=inputs.config["visualize"]["images"],
            png_scale=inputs.config["visualize"]["png_scale"],
            sampled=inputs.summary["rows_valid"] > shown,
            shown=shown,
            scaling_words=SCALING_WORDS[inputs.config["scaling"]],
            rule_words=RULE_WORDS[selection["rule"]],
            criteria=CRITERIA,
            stability_class=stability_class,
            config_yaml=yaml.safe_dump(inputs.config, sort_keys=False),
            javascript=Markup(inputs.javascript.replace("</script", "<\\/script")),
        )
    )


def render_index(versions: list[dict[str, Any]], latest: str) -> str:
    """The page listing every version, newest first, with a link to each report."""
    return _environment().get_template("index.html.j2").render(versions=versions, latest=latest)


def render_comparison(comparison: Any) -> str:
    """The page comparing two versions (a `versions.Comparison`)."""
    return _environment().get_template("compare.html.j2").render(c=comparison)
