"""The `segment` command: a thin Click layer over the pipeline stages."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segmentation import __version__, artifacts, pipeline
from segmentation.artifacts import Workspace
from segmentation.errors import ConfigError, DataError, SegmentationError

console = Console(stderr=True, highlight=False)


class SegmentGroup(click.Group):
    """Turns user-facing errors into one line on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SegmentationError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            console.print(
                "[bold red]interrupted:[/] stopped by the user; finished outputs are kept"
            )
            sys.exit(130)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("config.yaml"),
    show_default=True,
    help="The pipeline config (YAML).",
)


@contextmanager
def _progress() -> Iterator[pipeline.Progress]:
    bar = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )

    def start(label: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(label, total=total)
        return lambda steps: bar.advance(task, steps)

    with bar:
        yield start


def _stage_line(outcome: pipeline.StageOutcome) -> None:
    console.print(
        f"[green]✓[/] {outcome.stage:<10} {outcome.seconds:6.2f} s  {outcome.summary}",
        soft_wrap=True,
    )


def _shown(path: Path) -> Path:
    """A path as the user would type it: relative to the working folder when inside it."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _run(config_path: Path, stages: tuple[str, ...]) -> None:
    started = time.perf_counter()
    run = pipeline.open_run(config_path, Workspace(Path.cwd()))
    console.print(f"version {run.version}  (config {config_path}, data {_shown(run.raw.path)})")
    with _progress() as progress:
        report = pipeline.execute(run, stages, progress, _stage_line)
    console.print(f"done in {time.perf_counter() - started:.1f} s; outputs in {_shown(run.folder)}")
    if report is not None:
        click.echo(f"Report: {_shown(report)}")


@click.group(cls=SegmentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segment")
def main() -> None:
    """Reproducible K-Means customer segmentation.

    Exit codes: 0 success, 2 config or usage error, 3 invalid data, 4 data unavailable,
    130 interrupted.
    """


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run every stage (prepare, select-k, cluster, visualize, report) in one process."""
    _run(config_path, pipeline.STAGES)


@main.command()
@config_option
def fetch(config_path: Path) -> None:
    """Download the data set if it is missing, and check its SHA-256."""
    run_ = pipeline.open_run(config_path, Workspace(Path.cwd()))
    state = "checked against data.sha256" if run_.raw.pinned else "recorded (data.sha256 is null)"
    click.echo(f"{run_.raw.path}: SHA-256 {run_.raw.sha256} {state}")


def _stage_command(stage: str, help_text: str) -> None:
    @main.command(name=stage, help=help_text)
    @config_option
    def command(config_path: Path) -> None:
        _run(config_path, (stage,))


_stage_command("prepare", "Validate the data and build the scaled feature matrix.")
_stage_command("select-k", "Sweep k, score every solution and choose k.")
_stage_command("cluster", "Fit the final model; name, profile and save the segments.")
_stage_command("visualize", "Draw every chart as Vega-Lite JSON, PNG and SVG.")
_stage_command("report", "Write the static HTML report and update the list of versions.")


@main.command()
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="CSV of customers with the same columns as the training data.",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="CSV to write: customer_id, segment_id, segment_name, distance_to_centroid.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("artifacts/latest/model.json"),
    show_default=True,
    help="A model.json written by the cluster stage.",
)
def assign(input_path: Path, output_path: Path, model_path: Path) -> None:
    """Label new customers with the segments of a saved model."""
    from segmentation import cluster, prepare

    if not model_path.exists():
        raise ConfigError(f"{model_path}: model not found; run `make all` first or pass --model")
    model = artifacts.read_json(model_path)
    if model.get("format") != cluster.MODEL_FORMAT:
        raise DataError(f"{model_path}: not a segmentation model (format {model.get('format')!r})")
    text = prepare.read_customers_csv(input_path)
    customers = prepare.validate_customers(text, input_path, on_invalid="fail").customers
    features = tuple(model["features"])
    labelled = cluster.assign_segments(
        customers, prepare.unscaled_matrix(customers, features), model
    )
    artifacts.write_csv(output_path, labelled)
    counts = labelled["segment_name"].value_counts(sort=True)
    console.print(
        f"labelled {labelled.height} customers into {counts.height} segment(s): {output_path}"
    )
