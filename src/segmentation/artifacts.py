"""Where every output lives, how it is hashed and how it is written (atomically)."""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from segmentation import __version__, faults
from segmentation.errors import BusyError

if TYPE_CHECKING:
    import polars as pl

LATEST = "latest"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Workspace:
    """The project folders, all derived from one root (the folder `make` runs in)."""

    root: Path

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def cache(self) -> Path:
        """Stage results keyed by their inputs' hash, reused across versions."""
        return self.artifacts / ".cache"

    @property
    def spark_log(self) -> Path:
        """The Spark driver's own output (engine: spark): JVM warnings and errors."""
        return self.artifacts / "spark-driver.log"

    @property
    def staging(self) -> Path:
        """Versions being built; renamed into place only once complete."""
        return self.artifacts / ".staging"

    @property
    def report_staging(self) -> Path:
        """Reports being built, beside their final place (artifacts/ may be another file system)."""
        return self.reports / ".staging"

    @property
    def versions_index(self) -> Path:
        """Every complete version's headline figures, kept as versions complete or are pruned."""
        return self.artifacts / "versions.json"

    @property
    def runs_log(self) -> Path:
        """One JSON line per pipeline invocation: which stages ran and which were reused."""
        return self.artifacts / "runs.jsonl"

    def version_dir(self, version: str) -> Path:
        return self.artifacts / version

    def report_dir(self, version: str) -> Path:
        return self.reports / version

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the root unless absolute (`file://` URIs too)."""
        candidate = Path(path.removeprefix("file://"))
        return candidate if candidate.is_absolute() else self.root / candidate


# File names of the outputs contract, relative to artifacts/<version>/.
PREPARED = "prepared.parquet"
PREPARE_SUMMARY = "prepare_summary.json"
REJECTS = "rejects.csv"
K_SELECTION = "k_selection.json"
SEGMENTS = "segments.csv"
ASSIGNMENTS_PARQUET = "assignments.parquet"
ASSIGNMENTS_CSV = "assignments.csv"
MODEL = "model.json"
CHARTS = "charts"
MANIFEST = "manifest.json"
REPORT = "index.html"


@contextlib.contextmanager
def exclusive(workspace: Workspace) -> Iterator[None]:
    """Hold the workspace's lock, so two runs never build or prune in the same folder at once."""
    workspace.artifacts.mkdir(parents=True, exist_ok=True)
    with (workspace.artifacts / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{workspace.artifacts}: another run is using this folder; wait for it to finish"
            ) from None
        try:
            faults.reach("lock.held")
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def chart_index(folder: Path) -> Path:
    """The list of charts a version has, in reading order."""
    return folder / CHARTS / "index.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(data: Any, compact: bool = False) -> str:
    """JSON with sorted keys and fixed separators, so equal data gives equal bytes: indented for
    people to read, or `compact` (one line, written by Python's C encoder: a chart's thousands of
    data points took four times longer indented)."""
    if compact:
        text = json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    else:
        text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


PACKAGE = "segmentation"
# The stage runners import each stage's modules inside their functions. Following those imports
# would put every stage's code in every stage's key, so instead each Stage names the modules its
# runner calls into, and only that module's top-level imports are followed.
RUNNERS = frozenset({"segmentation.stages", "segmentation.spark.runners"})
# The report module renders the templates; they are code of whatever runs it.
TEMPLATES_MODULE = "segmentation.report"
DATA_FOLDERS = {"segmentation.schema": "tables", "segmentation.vocabulary": "vocabularies"}
"""Package data read by a module: the built table's declaration, the shipped vocabularies."""


def _module_file(name: str) -> Path | None:
    """The source file of a module of the package, or None if there is no such module."""
    package, *parts = name.split(".")
    if package != PACKAGE:
        return None
    folder = PACKAGE_DIR.joinpath(*parts)
    candidates = (folder.with_suffix(".py"), folder / "__init__.py")
    return next((path for path in candidates if path.is_file()), None)


def _imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name a module imports, and the parent packages those imports run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    statements = [
        statement
        for statement in tree.body
        if name not in RUNNERS or not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    names: set[str] = set()
    for node in (node for statement in statements for node in ast.walk(statement)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from segmentation import x` imports the module x, or a name from the package.
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    # Importing segmentation.a.b runs segmentation/a/__init__.py too.
    return {full.rsplit(".", depth)[0] for full in names for depth in range(full.count(".") + 1)}


def _closure(modules: tuple[str, ...]) -> set[Path]:
    """The source files of `modules`, of the package itself, and of every package module they
    import, transitively."""
    files: set[Path] = set()
    pending = [PACKAGE, *modules]
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None:
            raise ValueError(f"{name}: not a module of the {PACKAGE} package")
        if path not in files:
            files.add(path)
            pending += [n for n in _imported_names(name, path) if _module_file(n) is not None]
    return files


def _package_files(package_dir: Path) -> list[Path]:
    """Every file of the package in `package_dir` that some code runs or reads: sources,
    templates, package data."""
    return [
        p
        for p in sorted(package_dir.rglob("*"))
        if p.is_file() and (p.suffix in {".py", ".j2"} or p.parent.name in DATA_FOLDERS.values())
    ]


def code_files(modules: tuple[str, ...] | None = None) -> list[Path]:
    """The package's files that some code runs: given modules and what they import, or all.

    Parameters
    ----------
    modules
        Dotted names of package modules. Their imports are followed (those inside functions
        too, except in `RUNNERS`); the package's ``__init__.py`` always counts, and the templates
        count when `TEMPLATES_MODULE` is reached. None: every source file and template.

    Returns
    -------
    list of Path
        The files, sorted.

    Raises
    ------
    ValueError
        If a name is not a module of the package.
    """
    if modules is None:
        return _package_files(PACKAGE_DIR)
    files = _closure(modules)
    if _module_file(TEMPLATES_MODULE) in files:
        files |= set((PACKAGE_DIR / "templates").rglob("*.j2"))
    for module, folder in DATA_FOLDERS.items():
        if _module_file(module) in files:
            files |= set((PACKAGE_DIR / folder).glob("*.yaml"))
    return sorted(files)


def _files_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _package_digest(package_dir: Path) -> str:
    """The hash of every file of the package in `package_dir`: read once per process, however
    many stages ask for their fingerprint."""
    return _files_digest(_package_files(package_dir))


@functools.cache
def code_fingerprint(modules: tuple[str, ...] | None = None) -> str:
    """Package version plus a hash of the source (and templates) that some code runs.

    Outputs depend on the code, so a change to it must never reuse results of the old code.
    Following the imports means parsing every module; the files that result depend only on the
    package's files, so they are kept in the user cache under the hash of all of them.

    Parameters
    ----------
    modules
        Package modules whose code, with what they import, is hashed (see `code_files`); None
        hashes the whole package, as the version id does.

    Returns
    -------
    str
        ``<package version>+<12 hex digits>``.
    """
    package = _package_digest(PACKAGE_DIR)
    if modules is None:
        return f"{__version__}+{package[:12]}"
    listed = memoized_text(
        f"code/{package}-{sha256_text(' '.join(modules))[:16]}.txt",
        lambda: "".join(f"{p.relative_to(PACKAGE_DIR).as_posix()}\n" for p in code_files(modules)),
    )
    files = [PACKAGE_DIR / name for name in listed.splitlines()]
    return f"{__version__}+{_files_digest(files)[:12]}"


def user_cache() -> Path:
    """Files derived only from installed packages, shared by every project of the user
    ($XDG_CACHE_HOME/segmentation on Linux, as pooch places its downloads)."""
    import platformdirs  # pooch's own way to the folder, without importing pooch

    return Path(platformdirs.user_cache_dir("segmentation"))


def memoized_text(name: str, compute: Callable[[], str]) -> str:
    """`compute()`, kept in the user cache as `name`, which must change whenever the result would.

    A kept copy is used only if it matches the SHA-256 written beside it. The cache only saves
    time, so one that cannot be read or written is passed over.
    """
    path = user_cache() / name
    digest = path.with_name(f"{path.name}.sha256")
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text(encoding="utf-8")
        if sha256_text(text) == digest.read_text(encoding="utf-8").strip():
            return text
    text = compute()
    with contextlib.suppress(OSError):
        write_text(path, text)
        write_text(digest, sha256_text(text) + "\n")
    return text


def version_id(
    resolved_config: dict[str, Any], data_sha256: str, vocabulary_sha256: str | None = None
) -> str:
    """A short content hash: the same config, data, vocabulary and code give the same id."""
    # The locations of the data and of a vocabulary file do not change results; their contents do.
    data = {k: v for k, v in resolved_config["data"].items() if k not in ("path", "url")}
    config = {**resolved_config, "data": {**data, "sha256": data_sha256}}
    # Where Spark runs (master, conf) does not change results; its fixed partition count may.
    spark = resolved_config.get("spark", {})
    config["spark"] = (
        {"partitions": spark.get("partitions")}
        if resolved_config.get("engine") == "spark"
        else None
    )
    if vocabulary_sha256 is not None:
        config["naming"] = {"sha256": vocabulary_sha256}
    payload = canonical_json({"config": config, "code": code_fingerprint()})
    return sha256_text(payload)[:12]


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it into place only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        faults.reach("atomic.written")
        temporary.chmod(0o644)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[IO[str]]:
    with (
        atomic_path(target) as temporary,
        temporary.open("w", encoding="utf-8", newline="\n") as out,
    ):
        yield out


def write_text(target: Path, text: str) -> None:
    with atomic_writer(target) as out:
        out.write(text)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def write_json(target: Path, data: Any, compact: bool = False) -> None:
    write_text(target, canonical_json(data, compact))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(target: Path, frame: pl.DataFrame) -> None:
    """Parquet with fixed settings; polars writes no timestamps, so equal frames give equal bytes."""
    # Fixed writer settings keep the bytes identical across runs.
    with atomic_path(target) as temporary:
        frame.write_parquet(temporary, compression="zstd", compression_level=3, statistics=True)


def write_csv(target: Path, frame: pl.DataFrame) -> None:
    with atomic_path(target) as temporary:
        frame.write_csv(temporary, float_precision=6, line_terminator="\n")


def latest_version(folder: Path) -> str | None:
    """The version `folder/latest` points at, or None before the first complete run."""
    link = folder / LATEST
    return link.resolve().name if link.is_symlink() else None


def point_latest(folder: Path, version: str) -> None:
    """Atomically switch `folder/latest` to the given version (a relative symlink)."""
    link = folder / LATEST
    temporary = folder / f".{LATEST}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(version, target_is_directory=True)
    faults.reach("latest.linked")
    temporary.replace(link)
    faults.reach("latest.switched")


def output_hashes(folder: Path, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """SHA-256 of files by path relative to `folder`: the given ones, or all but the manifest."""
    if names is None:
        paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST]
    else:
        paths = [folder / name for name in names]
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in paths}


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a finished file into place (no extra space), copying across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def remove_unfinished(workspace: Workspace) -> None:
    """Remove what killed runs left half-written, outside the staging folders: a `latest` link
    not yet switched, a file not yet renamed into place (`atomic_path`), and a stage's cache
    entry not yet moved into place (each starts with a dot and is never read). Call it holding
    the workspace's lock: another run's are then unfinished only if it was killed."""
    unfinished = [
        *workspace.artifacts.glob(".*.tmp"),
        *workspace.reports.glob(".*.tmp"),
        *(
            entry
            for stage in (workspace.cache.iterdir() if workspace.cache.is_dir() else ())
            if stage.is_dir()
            for entry in stage.glob(".*")
        ),
    ]
    for path in unfinished:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def make_staging_dir(parent: Path, version: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=f"{version}."))
    folder.chmod(0o755)  # mkdtemp makes it private; a finished version is for everyone to read
    return folder


def move_into_place(staging: Path, target: Path) -> bool:
    """Rename a finished folder to its final name; False if another run got there first."""
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging)
        return False
    return True
