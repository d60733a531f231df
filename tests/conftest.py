"""Shared fixtures: synthetic customers of known structure, their features, and a scratch project."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner, Result

from preloaded import PreloadedSegment
from segmentation import images, prepare
from segmentation.cli import main
from segmentation.config import Scaling
from segmentation.schema import ColumnSpec, TableSchema

ROOT = Path(__file__).resolve().parents[1]

# The Spark tests start JVMs (5-15 s a session) and some need a cluster: `make test` (plain
# `pytest`) leaves them out; `pytest tests/spark` names them, as `make spark-test` does.
collect_ignore = ["spark"]
MALL_COLUMNS: list[dict[str, Any]] = yaml.safe_load((ROOT / "config.yaml").read_text())["columns"]
"""The Mall schema as the shipped config.yaml declares it."""


def mall_schema(features: Sequence[str] = ("annual_income", "spending_score")) -> TableSchema:
    """The shipped Mall schema with the given features."""
    return TableSchema(
        columns=tuple(ColumnSpec.model_validate(c) for c in MALL_COLUMNS), features=tuple(features)
    )


# Well-separated groups in (annual_income, spending_score); sizes differ so that the canonical ids
# (largest segment first) are known in advance.
THREE_CENTERS = ((20.0, 20.0), (80.0, 80.0), (80.0, 20.0))
THREE_SIZES = (40, 30, 20)
FOUR_CENTERS = ((20.0, 20.0), (20.0, 80.0), (80.0, 20.0), (80.0, 80.0))
FOUR_SIZES = (40, 35, 30, 25)


def _blobs(
    centers: Sequence[tuple[float, float]],
    sizes: Sequence[int],
    seed: int = 0,
    spread: float = 3.0,
) -> pl.DataFrame:
    """Customers in Gaussian blobs of income and spending, with canonical columns and types."""
    rng = np.random.RandomState(seed)
    income: list[float] = []
    spending: list[float] = []
    for (center_income, center_spending), size in zip(centers, sizes, strict=True):
        income += list(np.clip(center_income + rng.normal(0, spread, size), 0, None))
        spending += list(np.clip(center_spending + rng.normal(0, spread, size), 1, 100))
    total = sum(sizes)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(total)],
            "gender": rng.choice(["Female", "Male"], total).tolist(),
            "age": rng.uniform(18, 70, total).round(0),
            "annual_income": np.round(income, 1),
            "spending_score": np.round(spending, 1),
        },
        schema={
            "customer_id": pl.String,
            "gender": pl.String,
            "age": pl.Float64,
            "annual_income": pl.Float64,
            "spending_score": pl.Float64,
        },
    )


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user cache of the tests' own, shared by the session (and by the CLI runs it starts)."""
    folder = tmp_path_factory.mktemp("user-cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session", autouse=True)
def preloaded_process(
    request: pytest.FixtureRequest, user_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PreloadedSegment | None]:
    """The process test_faults forks its runs from (tests/preloaded.py), when a test that uses
    it (through its `preloaded` fixture) is to run; None otherwise.

    Started with the session, in the session's user cache, it imports the package and its
    libraries (seconds of CPU) while the first tests run.
    """
    if not any("preloaded" in item.fixturenames for item in request.session.items):
        yield None
        return
    runs = PreloadedSegment(tmp_path_factory.mktemp("preloaded") / "stderr.log")
    yield runs
    runs.close()


@pytest.fixture(scope="session", autouse=True)
def charts_drawn_in_process() -> Iterator[None]:
    """The runs of the session draw their charts in the test process, not in worker processes.

    Each worker starts vl-convert's JavaScript engine, at every run: about 3 s of CPU, more than
    the tests' small charts take to draw. In the test process it starts once. test_visualize
    checks that workers draw the same bytes, and the runs test_faults starts as processes of their
    own draw in workers.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "MAX_WORKERS", 1)
        yield


MakeBlobs = Callable[..., pl.DataFrame]
WriteCsv = Callable[[pl.DataFrame, Path], Path]


@pytest.fixture(scope="session")
def make_blobs() -> MakeBlobs:
    """Factory: `make_blobs(centers, sizes, seed=0, spread=3.0)` -> a customer frame."""
    return _blobs


@pytest.fixture(scope="session")
def blobs3() -> pl.DataFrame:
    return _blobs(THREE_CENTERS, THREE_SIZES)


@pytest.fixture(scope="session")
def blobs4() -> pl.DataFrame:
    return _blobs(FOUR_CENTERS, FOUR_SIZES)


def _write_csv(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


@pytest.fixture(scope="session")
def write_customers() -> WriteCsv:
    """Factory: write a customer frame as CSV (canonical header) and return its path."""
    return _write_csv


@dataclass(frozen=True)
class Featurized:
    """A customer frame run through the prepare core: everything the later stages take."""

    customers: pl.DataFrame
    features: tuple[str, ...]
    schema: TableSchema
    unscaled: np.ndarray
    scaler: prepare.Scaler
    matrix: np.ndarray
    population: dict[str, dict[str, float]]
    category_shares: dict[str, dict[str, float]]


def _featurize(
    customers: pl.DataFrame,
    features: tuple[str, ...] = ("annual_income", "spending_score"),
    scaling: Scaling = Scaling.STANDARD,
) -> Featurized:
    schema = mall_schema(features)
    schema = schema.model_copy(update={"categories": {"gender": ("Female", "Male")}})
    unscaled = prepare.unscaled_matrix(customers, schema)
    scaler = prepare.fit_scaler(unscaled, schema, scaling)
    return Featurized(
        customers=customers,
        features=features,
        schema=schema,
        unscaled=unscaled,
        scaler=scaler,
        matrix=scaler.transform(unscaled),
        population=prepare.population(customers, schema),
        category_shares=prepare.category_shares(customers, schema),
    )


@pytest.fixture(scope="session")
def featurize() -> Callable[..., Featurized]:
    """Factory: `featurize(customers, features=..., scaling=...)` -> a Featurized bundle."""
    return _featurize


def _make_project(
    root: Path, customers: pl.DataFrame, overrides: dict[str, Any] | None = None
) -> Path:
    """A project folder with the customers at data/customers.csv and a config.yaml using them."""
    _write_csv(customers, root / "data" / "customers.csv")
    config: dict[str, Any] = {
        "data": {"path": "data/customers.csv", "url": None, "sha256": None},
        "columns": MALL_COLUMNS,
        "features": ["annual_income", "spending_score"],
        "naming": "mall",
        # Few gap references and resamples: enough to exercise them, quick in every run.
        "select_k": {"k_min": 2, "k_max": 6, "gap_references": 5, "bootstrap": 5},
        "cluster": {"n_init": 4},
        # With the image files, so that the runs of the tests write every output there is.
        "visualize": {"width": 200, "height": 150, "png_scale": 1.0, "images": True},
    }
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def make_project() -> Callable[..., Path]:
    """Factory: `make_project(root, customers, overrides=None)` -> the config.yaml written."""
    return _make_project


# --- the Vega-Lite schema ------------------------------------------------------------------------


@functools.cache
def _vega_lite_validator() -> Any:
    """A validator of the Vega-Lite schema altair ships, the schema itself checked once.

    `jsonschema.validate` checks the schema against its meta-schema at every call, most of a
    second for Vega-Lite's; the checks of every spec are the same with one validator.
    """
    import jsonschema
    from altair.vegalite.v6.schema import load_schema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_vega_lite(spec: Any) -> None:
    """`jsonschema.validate(spec, load_schema())`: raise the best-matching error if `spec` is not
    valid Vega-Lite."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_vega_lite_validator().iter_errors(spec))
    if error is not None:
        raise error


# --- a project with versions, shared by the CLI, version, cache and fault tests -------------------

REPORT_LINE = re.compile(r"^Report: reports/(\w+)/index\.html$", re.M)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _built_version(result: Result) -> str:
    """The version a `segment run` completed, from the `Report:` line it prints."""
    assert result.exit_code == 0, result.output
    match = REPORT_LINE.search(result.stdout)
    assert match, result.output
    return match.group(1)


def _write_variant(root: Path, name: str, overrides: dict[str, Any]) -> Path:
    """Write `root/name`: root/config.yaml with some `section: {key: value}` entries changed."""
    config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    for section, values in overrides.items():
        if isinstance(values, dict):
            config[section] = {**config.get(section, {}), **values}
        else:
            config[section] = values
    path = root / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _file_states(root: Path, version: str) -> dict[str, tuple[str, int, int]]:
    """(SHA-256, mtime in ns, inode) of every file of a version: its artifacts and its report."""
    states = {}
    for folder in (root / "artifacts" / version, root / "reports" / version):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                states[path.relative_to(root).as_posix()] = (digest, stat.st_mtime_ns, stat.st_ino)
    return states


def _project_states(root: Path) -> dict[str, tuple[str, int, int]]:
    """(content, mtime in ns, inode) of everything under artifacts/ and reports/ but the runs log;
    a symlink's content is its target, and its own times are taken (`latest` switched counts)."""
    states = {}
    for folder in (root / "artifacts", root / "reports"):
        for path in sorted(folder.rglob("*")):
            if path == root / "artifacts" / "runs.jsonl" or (
                path.is_dir() and not path.is_symlink()
            ):
                continue
            stat = path.lstat()
            content = (
                str(path.readlink())
                if path.is_symlink()
                else hashlib.sha256(path.read_bytes()).hexdigest()
            )
            states[path.relative_to(root).as_posix()] = (content, stat.st_mtime_ns, stat.st_ino)
    return states


@dataclass(frozen=True)
class VersionedProject:
    """A project where `segment run` built version `a` (config.yaml), ran again on the same config,
    then built version `b` (wide.yaml: only visualize.width differs), so `latest` is `b`.

    Shared by every test of the session: read it, never change it; copy it first (`copy_project`).
    """

    root: Path
    a: str
    b: str
    first: Result
    rerun: Result
    wide: Result
    a_after_first: dict[str, tuple[str, int, int]]
    a_after_rerun: dict[str, tuple[str, int, int]]
    a_after_wide: dict[str, tuple[str, int, int]]
    project_after_first: dict[str, tuple[str, int, int]]
    project_after_rerun: dict[str, tuple[str, int, int]]
    """Every file and link of artifacts/ and reports/ (the runs log aside) after each run."""
    runs_after_rerun: list[dict[str, Any]]
    """The lines of artifacts/runs.jsonl right after the rerun of config.yaml."""


@pytest.fixture(scope="session")
def versioned_project(
    tmp_path_factory: pytest.TempPathFactory, blobs4: pl.DataFrame
) -> VersionedProject:
    root = tmp_path_factory.mktemp("versioned")
    _make_project(root, blobs4)
    _write_variant(root, "wide.yaml", {"visualize": {"width": 320}})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        first = _invoke("run")
        a = _built_version(first)
        a_after_first = _file_states(root, a)
        project_after_first = _project_states(root)
        rerun = _invoke("run")
        a_after_rerun = _file_states(root, a)
        project_after_rerun = _project_states(root)
        runs_log = (root / "artifacts" / "runs.jsonl").read_text(encoding="utf-8")
        wide = _invoke("run", "--config", "wide.yaml")
        b = _built_version(wide)
    return VersionedProject(
        root=root,
        a=a,
        b=b,
        first=first,
        rerun=rerun,
        wide=wide,
        a_after_first=a_after_first,
        a_after_rerun=a_after_rerun,
        a_after_wide=_file_states(root, a),
        project_after_first=project_after_first,
        project_after_rerun=project_after_rerun,
        runs_after_rerun=[json.loads(line) for line in runs_log.splitlines()],
    )


@pytest.fixture
def copy_project(
    versioned_project: VersionedProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A private copy of the versioned project (the working folder of the test), free to change.

    The copy holds plain files: hard links between versions and the stage cache are not kept.
    """
    root = tmp_path / "project"
    shutil.copytree(versioned_project.root, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def write_variant() -> Callable[[Path, str, dict[str, Any]], Path]:
    """Factory: `write_variant(root, name, {section: {key: value}})` -> a changed copy of the config."""
    return _write_variant


# --- the shipped configs on their pinned data, shared by the end-to-end and browser tests --------

SHARED_DATA = ROOT.parent / "shared" / "data"
"""Where CI keeps the data sets, beside the checkout (.ci/run copies them to data/raw/ too)."""
REQUIRE_DATA = "SEGMENTATION_REQUIRE_DATA"
"""Set (the GitHub workflow does), a missing data set fails the tests that need it: no skip."""


def pinned_data(config: Path, shared_name: str) -> Path:
    """The data file a shipped config pins; the test that needs it is skipped when it is absent.

    Parameters
    ----------
    config
        The shipped config (config.yaml or one of examples/).
    shared_name
        The file's name in ../shared/data/.

    Returns
    -------
    Path
        ../shared/data/`shared_name` beside the checkout if it is there, else the config's
        `data.path` in the checkout (data/raw/), where `make data CONFIG=<config>` downloads the
        file and checks its SHA-256. When neither is there, the test is skipped, or fails if
        SEGMENTATION_REQUIRE_DATA is set.
    """
    relative = yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["path"]
    for candidate in (SHARED_DATA / shared_name, ROOT / relative):
        if candidate.is_file():
            return candidate
    missing = (
        f"{SHARED_DATA / shared_name} is absent, and so is {relative} "
        f"(make data CONFIG={config.relative_to(ROOT)} downloads it)"
    )
    if os.environ.get(REQUIRE_DATA):
        pytest.fail(missing)
    pytest.skip(missing)


@dataclass(frozen=True)
class ShippedRun:
    """`segment run` of a shipped config on its pinned data, in a folder of its own.

    Shared by every test of the session: read it, never change it.
    """

    root: Path
    result: Result
    config: dict[str, Any]
    """The config as the file has it."""

    @property
    def folder(self) -> Path:
        return self.root / "artifacts" / "latest"

    def read_json(self, name: str) -> Any:
        return json.loads((self.folder / name).read_text(encoding="utf-8"))


def _run_shipped(root: Path, config: Path, shared_name: str) -> ShippedRun:
    """Copy a shipped config and its data into `root` (no download) and run it there."""
    data = pinned_data(config, shared_name)
    relative = config.relative_to(ROOT)
    text = config.read_text(encoding="utf-8")
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_text(text, encoding="utf-8")
    parsed = yaml.safe_load(text)
    raw = root / parsed["data"]["path"]
    raw.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(data, raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = _invoke("run", "--config", relative.as_posix())
    return ShippedRun(root=root, result=result, config=parsed)


@pytest.fixture(scope="session")
def mall_run(tmp_path_factory: pytest.TempPathFactory) -> ShippedRun:
    """config.yaml on the Mall Customers file."""
    return _run_shipped(tmp_path_factory.mktemp("mall"), ROOT / "config.yaml", "Mall_Customers.csv")


@pytest.fixture(scope="session")
def cc_run(tmp_path_factory: pytest.TempPathFactory) -> ShippedRun:
    """examples/cc_general.yaml on the credit-card customers file."""
    return _run_shipped(
        tmp_path_factory.mktemp("cc"),
        ROOT / "examples" / "cc_general.yaml",
        "cc_general/CC GENERAL.csv",
    )


@pytest.fixture(scope="session")
def cdnow_run(tmp_path_factory: pytest.TempPathFactory) -> ShippedRun:
    """examples/cdnow.yaml on the CDNOW purchase log."""
    return _run_shipped(
        tmp_path_factory.mktemp("cdnow"), ROOT / "examples" / "cdnow.yaml", "cdnow/CDNOW_master.txt"
    )
