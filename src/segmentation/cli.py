"""The `segment` command: a thin Click layer over the pipeline and the version store."""

from __future__ import annotations

import atexit
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

INTERRUPTED = "interrupted: stopped by the user; complete versions are kept"
# pyspark warns about the pandas version whenever both are installed (pandera imports
# pyspark.pandas when it finds pyspark); the project does not use pandas on Spark.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

try:  # Ctrl-C while the command is still starting up: the same line, not a traceback
    import click
    from rich.console import Console
    from rich.markup import escape

    from segmentation import __version__, artifacts, runs, stamps, versions
    from segmentation.artifacts import Workspace
    from segmentation.errors import ConfigError, DataError, SegmentationError, VerificationError
except KeyboardInterrupt:
    sys.stderr.write(INTERRUPTED + "\n")
    raise SystemExit(130) from None

if TYPE_CHECKING:
    from segmentation.context import Progress as ProgressFactory

console = Console(stderr=True, highlight=False, emoji=False)
FEATURE_NAME_WIDTH = 24
"""Feature names up to this long are never folded in `segment versions` on 80 columns."""
WIDE_OUTPUT = 10_000
"""The console width of `--wide` output: tables keep their natural width, never cut."""


def _one_line(text: str) -> str:
    """An error message as one line: line breaks and control characters from the data escaped."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda match: repr(match.group())[1:-1], text)


class SegmentGroup(click.Group):
    """Turns user-facing errors into one line on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SegmentationError as exc:
            console.print(f"[bold red]error:[/] {escape(_one_line(str(exc)))}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            # Disk full, permissions, a vanished folder: say which file, never a traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            console.print(
                f"[bold red]error:[/] {escape(_one_line(where + (exc.strerror or str(exc))))}",
                soft_wrap=True,
            )
            sys.exit(1)
        except KeyboardInterrupt:
            console.print(
                "[bold red]interrupted:[/] stopped by the user; complete versions are kept"
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
force_option = click.option(
    "--force", is_flag=True, help="Recompute the stage(s) even when a cached result matches."
)


def _workspace() -> Workspace:
    return Workspace(Path.cwd())


def _shown(path: Path) -> Path:
    """A path as the user would type it: relative to the working folder when inside it."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


@contextmanager
def _progress() -> Iterator[ProgressFactory]:
    # Imported here, as the tables are: a command that draws neither starts faster.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

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


def _stage_line(outcome: runs.StageOutcome) -> None:
    mark = "[green]✓[/]" if outcome.status == "ran" else "[dim]=[/]"
    console.print(
        f"{mark} {outcome.stage:<10} {outcome.status:<6} {outcome.seconds:6.2f} s  "
        f"{escape(outcome.summary)}",
        soft_wrap=True,
    )


def _stamped_rerun(config_path: Path) -> runs.Result | None:
    """The rerun of an unchanged config, finished from its stamp without loading the stages."""
    workspace = _workspace()
    stamp = stamps.unchanged(workspace, config_path)
    if stamp is None:
        return None
    result = stamps.rerun(workspace, config_path, stamp)
    if result is not None:
        console.print(
            f"version {stamp.version}  (config {config_path}, data {_shown(Path(stamp.data))})"
        )
        for outcome in result.outcomes:
            _stage_line(outcome)
    return result


def _run(config_path: Path, targets: tuple[str, ...] | None, force: bool) -> None:
    """Bring the target stages (None: every stage) up to date and say what ran."""
    started = time.perf_counter()
    # The report is the last stage: asking for it (or for all) with nothing changed needs no stage.
    wants_report = targets is None or "report" in targets
    result = _stamped_rerun(config_path) if wants_report and not force else None
    if result is None:
        from segmentation import pipeline

        run = pipeline.open_run(config_path, _workspace())
        console.print(f"version {run.version}  (config {config_path}, data {_shown(run.raw.path)})")
        with _progress() as progress:
            result = pipeline.execute(
                run,
                targets or pipeline.STAGE_ORDER,
                progress,
                _stage_line,
                force=force,
                log=lambda line: console.print(f"  [dim]{escape(line)}[/]", soft_wrap=True),
            )
    ran = sum(outcome.status == "ran" for outcome in result.outcomes)
    work = f"{ran} stage(s) ran" if ran else "nothing to compute"
    console.print(
        f"done in {time.perf_counter() - started:.1f} s ({work}); version {result.version}"
    )
    if result.report is not None:
        click.echo(f"Report: {_shown(result.report)}")
    for stage, folder in result.outputs.items():
        click.echo(f"{stage} outputs: {_shown(folder)}")


@click.group(cls=SegmentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segment")
def main() -> None:
    """Reproducible K-Means customer segmentation.

    Exit codes: 0 success, 2 config or usage error, 3 invalid data, 4 data unavailable,
    5 verification found differences, 130 interrupted.
    """


def entry() -> None:
    """The `segment` console script: `main`, then an exit that skips tearing down the modules.

    A run loads about 1,300 modules (NumPy, SciPy, scikit-learn, Polars); freeing them one by one
    at interpreter shutdown took 0.25 s of a 4 s run on the Mall file. By then every output is
    written and closed; the exit handlers still run and the standard streams are flushed.
    (`main` itself, which tests call in-process, exits normally.)
    """
    try:
        main()
        code: object = 0
    except SystemExit as stop:
        code = stop.code
    if isinstance(code, str):  # sys.exit("message"): the message, and status 1
        sys.stderr.write(code + "\n")
    status = code if isinstance(code, int) else 0 if code is None else 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@main.command()
@config_option
@force_option
def run(config_path: Path, force: bool) -> None:
    """Run every stage (prepare, select-k, cluster, visualize, report) in one process."""
    _run(config_path, None, force)


@main.command()
@config_option
def fetch(config_path: Path) -> None:
    """Download the data set if it is missing, and check its SHA-256."""
    from segmentation import pipeline

    run_ = pipeline.open_run(config_path, _workspace())
    state = "checked against data.sha256" if run_.raw.pinned else "recorded (data.sha256 is null)"
    click.echo(f"{_shown(run_.raw.path)}: SHA-256 {run_.raw.sha256} {state}")


def _stage_command(stage: str, help_text: str) -> None:
    @main.command(name=stage, help=help_text)
    @config_option
    @force_option
    def command(config_path: Path, force: bool) -> None:
        _run(config_path, (stage,), force)


_stage_command(
    "customers", "Aggregate a purchase log into one row per customer (data.kind: transactions)."
)
_stage_command("prepare", "Validate the data and build the scaled feature matrix.")
_stage_command("select-k", "Sweep k, score every solution and choose k.")
_stage_command("cluster", "Fit the final model; name, profile and save the segments.")
_stage_command("visualize", "Write every chart as Vega-Lite JSON (SVG, PNG: visualize.images).")
_stage_command("report", "Write the report, complete the version and switch `latest` to it.")


def _versions_table(found: list[dict[str, Any]], wide: bool) -> Any:
    """The versions as a table. Narrow: long cells wrap at spaces (rule names and feature lists
    have them), never cut. Wide: one line per version, with every score and the segment names."""
    from rich.table import Column, Table

    # A feature name is kept whole when the terminal allows: other columns wrap first.
    longest_name = min(max(len(name) for v in found for name in v["features"]), FEATURE_NAME_WIDTH)
    table = Table(
        # Whole ids, never cut: they are what compare, verify and prune take.
        Column("version", no_wrap=True, min_width=12),
        Column("created (UTC)", no_wrap=wide, max_width=None if wide else 10),
        Column("k", justify="right", no_wrap=True),
        Column("silhouette" if wide else "silh.", justify="right", no_wrap=True),
        Column("k rule", max_width=None if wide else 10),
        Column("scaling", no_wrap=True),
        # Wraps at the spaces after commas; a name longer than the column is folded, not cut.
        Column("features", overflow="fold", no_wrap=wide, min_width=longest_name + 1),
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    if wide:
        table.add_column("Calinski-Harabasz", justify="right", no_wrap=True)
        table.add_column("Davies-Bouldin", justify="right", no_wrap=True)
        table.add_column("segments", no_wrap=True)
    for v in found:
        cells = [
            v["version"],
            v["created"][:16].replace("T", " "),
            str(v["chosen_k"]),
            f"{v['silhouette']:.3f}",
            v["rule"] if wide else v["rule"].replace("_", " "),
            v["scaling"],
            ", ".join(v["features"]),
        ]
        if wide:
            cells += [
                f"{v['calinski_harabasz']:.1f}",
                f"{v['davies_bouldin']:.3f}",
                "; ".join(v["segments"]),
            ]
        table.add_row(*cells)
    return table


@main.command(name="versions")
@click.option(
    "--wide",
    is_flag=True,
    help="One line per version, with every score and the segment names, however wide.",
)
def list_versions(wide: bool) -> None:
    """List every version, newest first."""
    found = versions.list_versions(_workspace())
    if not found:
        console.print("no versions yet: run `make all`")
        return
    table = _versions_table(found, wide)
    # Wide: as wide as the table needs, whatever the terminal (for scripts and wide windows).
    out = Console(width=WIDE_OUTPUT) if wide else Console()
    out.print(table)


def _crosstab_table(comparison: versions.Comparison, new_ids: list[str]) -> Any:
    """Customers by old segment (rows, names wrapped to fit) and new segment id (columns)."""
    from rich.table import Column, Table

    # Columns by segment id keep the table narrow (ten 5-digit counts fit 80 columns); the names
    # are listed underneath and wrap here.
    table = Table(
        Column("segment", overflow="fold", min_width=8),
        *(Column(segment_id, justify="right", no_wrap=True) for segment_id in new_ids),
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    for row in comparison.crosstab:
        table.add_row(row["segment"], *(str(count) for count in row["counts"]))
    return table


@main.command()
@click.argument("old")
@click.argument("new")
def compare(old: str, new: str) -> None:
    """Compare two versions (ids, unique prefixes or `latest`): config, metrics, moves."""
    from segmentation import report

    workspace = _workspace()
    comparison = versions.compare_versions(
        workspace,
        versions.resolve_version(workspace, old),
        versions.resolve_version(workspace, new),
    )
    page = workspace.reports / "compare" / f"{comparison.old}-{comparison.new}.html"
    artifacts.write_text(page, report.render_comparison(comparison))
    out = Console()
    for key, before, after in comparison.config_changes:
        out.print(f"config  {key}: {before!r} -> {after!r}", soft_wrap=True)
    for name, before, after in comparison.metrics:
        out.print(f"metric  {name}: {before:.4g} -> {after:.4g}")
    new_ids = [str(i) for i in range(len(comparison.new_segments))]
    out.print(
        f"customers by segment: rows are {comparison.old}'s, columns {comparison.new}'s",
        soft_wrap=True,
    )
    out.print(_crosstab_table(comparison, new_ids))
    for segment_id, name in zip(new_ids, comparison.new_segments, strict=True):
        out.print(f"  {segment_id}: {name}")
    out.print(
        f"adjusted Rand index {comparison.adjusted_rand_index:.3f} over "
        f"{comparison.shared_customers} shared customers"
    )
    click.echo(f"Comparison: {_shown(page)}")


@main.command(name="prune")
@click.option("--keep", type=int, required=True, help="How many of the newest versions to keep.")
def prune_versions(keep: int) -> None:
    """Remove old versions; the one `latest` points at is always kept."""
    workspace = _workspace()
    removed = versions.prune(workspace, keep)
    latest = artifacts.latest_version(workspace.artifacts)
    if removed and latest is not None:
        versions.write_index(workspace, latest)
    console.print(
        f"removed {len(removed)} version(s){': ' + ', '.join(removed) if removed else ''}"
    )


@main.command(name="verify")
@click.argument("version", default=artifacts.LATEST)
def verify_version(version: str) -> None:
    """Recompute a version in a scratch folder and compare every output with its manifest."""
    workspace = _workspace()
    name = versions.resolve_version(workspace, version)
    console.print(f"recomputing version {name} in a scratch folder ...")
    from segmentation import pipeline

    outcome = pipeline.verify(workspace, name)
    if outcome.recomputed_version != name:
        raise VerificationError(
            f"recomputing gave version {outcome.recomputed_version}, not {name}: the code or "
            "package versions differ from the ones that made it"
        )
    if outcome.differing:
        raise VerificationError(
            f"version {name}: {len(outcome.differing)} of {outcome.checked} outputs differ from "
            f"the manifest: {', '.join(outcome.differing)}"
        )
    click.echo(f"version {name}: all {outcome.checked} outputs match the manifest byte for byte")


@main.command()
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="CSV or Parquet of customers with the columns the model was fitted on.",
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
    from segmentation.model import load_model

    if not model_path.exists():
        raise ConfigError(f"{model_path}: model not found; run `make all` first or pass --model")
    try:
        data = artifacts.read_json(model_path)
    except ValueError as exc:
        raise DataError(f"{model_path}: not valid JSON ({exc}); pass a model.json") from None
    model = load_model(model_path, data)
    customers = prepare.load_customers(input_path, model.table, on_invalid="fail", learn=False)
    unscaled = prepare.unscaled_matrix(customers.customers, model.table)
    labelled = cluster.assign_segments(customers.customers, unscaled, model)
    artifacts.write_csv(output_path, labelled)
    counts = labelled["segment_name"].n_unique()
    console.print(f"labelled {labelled.height} customers into {counts} segment(s): {output_path}")


@main.command(name="init")
@click.argument("data_file", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The config to write.  [default: <data file stem>.yaml in this folder]",
)
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
def init(data_file: Path, output_path: Path | None, force: bool) -> None:
    """Write a commented config for your own table (CSV or Parquet): each column's type inferred."""
    from segmentation import infer

    output = output_path if output_path is not None else Path(f"{data_file.stem}.yaml")
    if output.exists() and output.resolve() == data_file.resolve():
        raise ConfigError(f"{output}: that is the data file; pass --output another file")
    if output.exists() and not force:
        raise ConfigError(
            f"{output}: already exists; pass --force to overwrite it, or --output another file"
        )
    inference = infer.infer_columns(infer.read_table(data_file))
    for decision in inference.decisions:
        console.print(escape(decision), soft_wrap=True)
    # data.path is relative to the project root, the folder `make` runs in: this one.
    data_path = _shown(data_file) if data_file.is_absolute() else data_file
    text = infer.render_config(
        inference, data_path.as_posix(), title=f"Customer segments: {data_file.stem}"
    )
    artifacts.write_text(output, text)
    click.echo(f"Config: {output}")
    click.echo(f"next: edit it, then make all CONFIG={output}")
