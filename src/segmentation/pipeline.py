"""Running the stages: hash each stage's inputs first, reuse cached results, build versions atomically.

A version is built in `artifacts/.staging/` and renamed into `artifacts/<version>/` only once every
stage has finished and its manifest is written, so a complete version is never modified and a failed
or killed run leaves no partial version behind. `latest` is switched after that (both through the
version store, `versions`). Verifying a version recomputes it, so it lives here too.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segmentation import artifacts, faults, runs, stages, stamps, versions
from segmentation.artifacts import Workspace
from segmentation.catalog import Catalog
from segmentation.config import Config, load_config, locate
from segmentation.context import Progress, StageContext
from segmentation.dataset import RawData, ensure_raw_data, is_glob, is_remote
from segmentation.errors import ConfigError
from segmentation.runs import Result, StageOutcome
from segmentation.stages import STAGES
from segmentation.vocabulary import SHIPPED, known_columns, load_vocabulary, vocabulary_path

STAGE_ORDER = tuple(STAGES)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "POLARS_MAX_THREADS",
)


@dataclass(frozen=True)
class Run:
    """One run of the pipeline on one config: what it reads and where its version goes."""

    config: Config
    config_path: Path
    workspace: Workspace
    raw: RawData
    version: str
    keys: dict[str, str]
    """Each stage's cache key, computed before anything runs."""
    code_root: Path
    """The checkout whose git commit is recorded (the workspace, unless verifying elsewhere)."""
    vocabulary_sha256: str | None = None
    """The SHA-256 of the naming vocabulary's file, when `naming` names one."""

    @property
    def folder(self) -> Path:
        return self.workspace.version_dir(self.version)


def stage_keys(
    config: Config, data_sha256: str, vocabulary_sha256: str | None = None
) -> dict[str, str]:
    """Hash what each stage depends on: its config keys, upstream keys, the data, the naming
    vocabulary's content (for the stages that read `naming`) and its code."""
    keys: dict[str, str] = {}
    for name, stage in STAGES.items():
        payload = {
            "stage": name,
            "code": artifacts.code_fingerprint(stage.code),
            "params": stage.param_values(config),
            "upstream": {up: keys[up] for up in stage.upstream},
            "data": data_sha256 if stage.reads_data else None,
            "vocabulary": vocabulary_sha256 if "naming" in stage.params else None,
        }
        keys[name] = artifacts.sha256_text(artifacts.canonical_json(payload))
    return keys


def open_run(config_path: Path, workspace: Workspace, code_root: Path | None = None) -> Run:
    """Validate the config, make sure the data is there and checked, and derive every hash."""
    config = load_config(config_path)
    vocabulary = _vocabulary_sha256(config, config_path, workspace)
    if config.engine == "spark":
        # A missing install or an unreachable master is told before any stage runs.
        from segmentation.spark.session import check_installed, check_master

        check_installed()
        check_master(config.spark.master)
    if config.engine == "spark" and is_remote(config.data.path):
        from segmentation.spark.io import remote_data

        raw = remote_data(config, workspace.spark_log)
    else:
        raw = ensure_raw_data(config.data, workspace.resolve(config.data.path))
    return Run(
        config=config,
        config_path=config_path,
        workspace=workspace,
        raw=raw,
        version=artifacts.version_id(config.resolved(), raw.sha256, vocabulary),
        keys=stage_keys(config, raw.sha256, vocabulary),
        code_root=code_root or workspace.root,
        vocabulary_sha256=vocabulary,
    )


def _vocabulary_sha256(config: Config, config_path: Path, workspace: Workspace) -> str | None:
    """The hash of the file `naming` points at, checked against the declared columns before any
    work: a missing or unsuitable vocabulary is refused at once, not after the k sweep."""
    if config.naming is None:
        return None
    known = known_columns(config.table.columns, config.data.kind == "transactions")
    try:
        load_vocabulary(config.naming, workspace.root, known)
    except ConfigError as exc:
        raise ConfigError(f"{locate(config_path, 'naming')}: {exc}") from None
    return artifacts.sha256_file(vocabulary_path(config.naming, workspace.root))


def _cache_entry(run: Run, stage: str) -> Path:
    return run.workspace.cache / stage / run.keys[stage]


def _restore(entry: Path, folder: Path) -> bool:
    """Link a cached stage result into `folder`; False if the entry is damaged or incomplete."""
    files = entry / "files"
    try:
        hashes: dict[str, str] = artifacts.read_json(entry / "hashes.json")
        if artifacts.output_hashes(files, tuple(hashes)) != hashes:
            return False
    except (OSError, ValueError, TypeError):
        return False  # missing, unreadable or malformed: recompute rather than trust it
    for name in hashes:
        artifacts.link_or_copy(files / name, folder / name)
    return True


def _store(run: Run, stage: str, folder: Path) -> None:
    """Keep a stage's outputs in the cache under its key, with their hashes."""
    names = tuple(
        path.relative_to(folder).as_posix()
        for output in STAGES[stage].outputs
        for path in (
            [folder / output]
            if (folder / output).is_file()
            else sorted((folder / output).rglob("*"))
        )
        if path.is_file()
    )
    entry = _cache_entry(run, stage)
    if entry.is_dir():
        shutil.rmtree(entry)  # damaged: _restore refused it
    staging = artifacts.make_staging_dir(entry.parent, f".{entry.name}")
    for name in names:
        artifacts.link_or_copy(folder / name, staging / "files" / name)
    artifacts.write_json(staging / "hashes.json", artifacts.output_hashes(folder, names))
    artifacts.move_into_place(staging, entry)


def _thread_settings() -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    return {
        "cpu_count": os.cpu_count(),
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "thread_pools": sorted(
            (
                {"api": pool["internal_api"], "threads": pool["num_threads"]}
                for pool in threadpool_info()
            ),
            key=lambda pool: str(pool["api"]),
        ),
    }


def _manifest(
    run: Run, folder: Path, report_folder: Path, outcomes: list[StageOutcome], git: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to trust and reproduce the version; outputs are hashed, never timestamps."""
    return {
        "version": run.version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "inputs": {
            "data": {
                "path": run.config.data.path,
                "sha256": run.raw.sha256,
                "pinned": run.raw.pinned,
                **_log_dates(folder),
            },
            "config": {
                "path": str(run.config_path),
                "sha256": artifacts.sha256_file(run.config_path),
            },
            "code": artifacts.code_fingerprint(),
        },
        "config": run.config.resolved(),
        "seeds": {"cluster.seed": run.config.cluster.seed},
        "threads": _thread_settings(),
        "environment": stages.environment(),
        "git": git,
        "stages": {
            outcome.stage: {
                "status": outcome.status,
                "seconds": round(outcome.seconds, 3),
                "key": run.keys[outcome.stage],
            }
            for outcome in outcomes
        },
        "outputs": artifacts.output_hashes(folder),
        "report": {
            "path": f"reports/{run.version}/{artifacts.REPORT}",
            "sha256": artifacts.sha256_file(report_folder / artifacts.REPORT),
        },
    }


def _log_dates(folder: Path) -> dict[str, Any]:
    """A purchase log's reference date and span, as the customers stage recorded them."""
    summary = Catalog(folder).path("customers_summary")
    if not summary.is_file():
        return {}
    recorded = artifacts.read_json(summary)
    keys = ("as_of", "as_of_from", "first_purchase", "last_purchase", "files")
    return {key: recorded[key] for key in keys}


def _stamp(run: Run) -> None:
    """Record what a finished run read, for `stamps.unchanged`; only for the files on this machine
    that the Polars engine reads (a glob could match a new file without any recorded one changing).
    """
    if run.config.engine != "polars" or is_glob(run.config.data.path):
        return
    read = run.raw.files or (run.raw.path,)
    if run.config.naming is not None and run.config.naming not in SHIPPED:
        read += (vocabulary_path(run.config.naming, run.workspace.root),)
    stamps.write(run.workspace, run.config_path, run.version, read, str(run.raw.path), STAGE_ORDER)


def execute(
    run: Run,
    targets: tuple[str, ...],
    progress: Progress,
    on_stage: Callable[[StageOutcome], None],
    force: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> Result:
    """Bring the given stages (and the stages they need) up to date, holding the folder's lock."""
    with artifacts.exclusive(run.workspace):
        return _execute(run, targets, progress, on_stage, force, log)


def _execute(
    run: Run,
    targets: tuple[str, ...],
    progress: Progress,
    on_stage: Callable[[StageOutcome], None],
    force: bool,
    log: Callable[[str], None],
) -> Result:
    """Bring the given stages (and the stages they need) up to date, reusing what is cached.

    With `force`, stages run even when a cached result exists. When the report stage is among
    the targets, the version is completed, published and `latest` switched to it.
    """
    last = max(STAGE_ORDER.index(stage) for stage in targets)
    needed = STAGE_ORDER[: last + 1]
    result = Result(version=run.version)
    if (
        not force
        and STAGE_ORDER[last] == "report"
        and versions.is_complete(run.workspace, run.version)
    ):
        result = runs.reused(run.workspace, run.version, needed)
        for outcome in result.outcomes:
            on_stage(outcome)
        versions.publish(run.workspace, run.version)
        _stamp(run)
        runs.log_run(run.workspace, run.config_path, result)
        return result

    current = "start"
    # With the lock held, anything left in the staging folders is from a run that was killed.
    for leftovers in (run.workspace.staging, run.workspace.report_staging):
        shutil.rmtree(leftovers, ignore_errors=True)
    artifacts.remove_unfinished(run.workspace)
    staging = artifacts.make_staging_dir(run.workspace.staging, run.version)
    report_staging = artifacts.make_staging_dir(run.workspace.report_staging, run.version)
    try:
        git = stages.git_state(run.code_root)
        context = StageContext(
            config=run.config,
            config_path=run.config_path,
            raw=run.raw,
            version=run.version,
            folder=staging,
            report_folder=report_staging,
            git=git,
            progress=progress,
            log=log,
            root=run.workspace.root,
        )
        for stage in needed:
            current = stage
            start = time.perf_counter()
            cached = stage != "report" and not (force and stage in targets)
            if cached and _restore(_cache_entry(run, stage), staging):
                outcome = StageOutcome(
                    stage, "reused", time.perf_counter() - start, "cached result"
                )
            else:
                summary = STAGES[stage].run(context)
                faults.reach(f"{stage}.written")
                if stage != "report":
                    _store(run, stage, staging)
                    faults.reach(f"{stage}.stored")
                outcome = StageOutcome(stage, "ran", time.perf_counter() - start, summary)
            result.outcomes.append(outcome)
            on_stage(outcome)
        if STAGE_ORDER[last] != "report":
            result.outputs = {stage: _cache_entry(run, stage) / "files" for stage in needed}
        else:
            manifest = _manifest(run, staging, report_staging, result.outcomes, git)
            artifacts.write_json(staging / artifacts.MANIFEST, manifest)
            faults.reach("manifest.written")
            versions.complete(run.workspace, run.version, staging, report_staging)
            result.report = run.workspace.report_dir(run.version) / artifacts.REPORT
            versions.publish(run.workspace, run.version)
            _stamp(run)
        runs.log_run(run.workspace, run.config_path, result)
    except BaseException:
        runs.log_run(run.workspace, run.config_path, result, failed=current)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(report_staging, ignore_errors=True)
    return result


@dataclass(frozen=True)
class Verification:
    version: str
    recomputed_version: str
    differing: list[str]
    """Outputs whose manifest hash, bytes on disk and recomputed bytes do not all agree."""
    checked: int


def verify(workspace: Workspace, version: str) -> Verification:
    """Recompute a version from its recorded config and data in a scratch folder; compare hashes."""
    manifest = artifacts.read_json(workspace.version_dir(version) / artifacts.MANIFEST)
    recorded = artifacts.output_hashes(workspace.version_dir(version))
    config = manifest["config"]
    location = config["data"]["path"]
    config["data"] = {
        **config["data"],
        "path": location if is_remote(location) else str(workspace.resolve(location).resolve()),
        "url": None,
        "sha256": manifest["inputs"]["data"]["sha256"],
    }
    if config.get("naming") is not None and config["naming"] not in SHIPPED:
        # The scratch folder is elsewhere: a vocabulary file is named by its absolute path.
        config["naming"] = str(vocabulary_path(config["naming"], workspace.root).resolve())
    with tempfile.TemporaryDirectory(prefix="segmentation-verify-") as scratch:
        scratch_root = Path(scratch)
        config_path = scratch_root / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        run = open_run(config_path, Workspace(scratch_root), code_root=workspace.root)
        execute(
            run,
            ("report",),
            progress=lambda _label, _total: lambda _steps: None,
            on_stage=lambda _o: None,
        )
        recomputed = artifacts.output_hashes(run.folder)
    stated: dict[str, str] = manifest["outputs"]
    differing = sorted(
        name
        for name in set(stated) | set(recorded) | set(recomputed)
        if not stated.get(name) == recorded.get(name) == recomputed.get(name)
    )
    return Verification(
        version=version, recomputed_version=run.version, differing=differing, checked=len(stated)
    )
