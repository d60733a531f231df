"""Stage 5, report: one self-contained static HTML page per version, and the list of versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
import polars as pl
import yaml
from markupsafe import Markup

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
class ReportInputs:
    title: str
    version: str
    config: dict[str, Any]
    data_path: str
    data_sha256: str
    data_pinned: bool
    summary: dict[str, Any]
    rejects: pl.DataFrame
    selection: dict[str, Any]
    segments: pl.DataFrame
    charts: list[tuple[str, str]]
    """(title, SVG markup) of each chart, in reading order."""
    environment: dict[str, Any]
    git: dict[str, Any]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("segmentation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(inputs: ReportInputs) -> str:
    """The report as one HTML string: charts inline as SVG, no scripts, no network."""
    selection = inputs.selection
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    charts = {title: Markup(svg) for title, svg in inputs.charts}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            inputs=inputs,
            chosen=chosen,
            candidates=[c for c in selection["candidates"] if c["silhouette"] is not None],
            segments=inputs.segments.to_dicts(),
            rejects=inputs.rejects.head(50).to_dicts(),
            charts=charts,
            scaling_words=SCALING_WORDS[inputs.config["scaling"]],
            rule_words=RULE_WORDS[selection["rule"]],
        criteria=CRITERIA,
            config_yaml=yaml.safe_dump(inputs.config, sort_keys=False),
        )
    )


def render_index(versions: list[dict[str, Any]], latest: str) -> str:
    """The page listing every version, newest first, with a link to each report."""
    return _environment().get_template("index.html.j2").render(versions=versions, latest=latest)


def render_comparison(comparison: Any) -> str:
    """The page comparing two versions (a `versions.Comparison`)."""
    return _environment().get_template("compare.html.j2").render(c=comparison)
