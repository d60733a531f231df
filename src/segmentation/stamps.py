"""Run stamps: what a finished run read, so that rerunning an unchanged config is found at once.

Like DVC's stage lock, a stamp records the config file's SHA-256, the code's fingerprint and the
size, modification time and inode of every other file the run read (the data file, a vocabulary
file of the user's). When all of them are as recorded, the config, data and code are those of
the version it names, so the rerun need not validate the config, hash the data or import the
stages: it only checks that the version is still complete and `latest` still points at it.
Anything else (a changed byte, a data glob or a cluster's files, a missing or damaged stamp)
takes the full way, which validates and hashes everything.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation import artifacts, runs, versions
from segmentation.artifacts import Workspace


@dataclass(frozen=True)
class Stamp:
    version: str
    data: str
    """The data's path as the run showed it."""
    stages: tuple[str, ...]


def stamp_path(workspace: Workspace, config_path: Path) -> Path:
    """Where the stamp of a config file's last finished run is kept (one per config file)."""
    key = artifacts.sha256_text(str(config_path.resolve()))[:16]
    return workspace.cache / "stamps" / f"{key}.json"


def _file_state(path: Path) -> list[int]:
    state = path.stat()
    return [state.st_size, state.st_mtime_ns, state.st_ino]


def write(
    workspace: Workspace,
    config_path: Path,
    version: str,
    read: tuple[Path, ...],
    data: str,
    stages: tuple[str, ...],
) -> None:
    """Record a finished run of `config_path` that built or reused `version`.

    Parameters
    ----------
    workspace
        The project folders.
    config_path
        The config the run read.
    version
        The complete version the run ended on.
    read
        Every file besides the config and the package that the run read (data, vocabulary).
    data
        The data's path as shown to the user.
    stages
        The stages of the pipeline, in order.
    """
    record = {
        "version": version,
        "config_sha256": artifacts.sha256_file(config_path),
        "code": artifacts.code_fingerprint(),
        "files": {str(path.resolve()): _file_state(path) for path in read},
        "data": data,
        "stages": list(stages),
    }
    target = stamp_path(workspace, config_path)
    if _read(target) != record:
        artifacts.write_json(target, record)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = artifacts.read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def unchanged(workspace: Workspace, config_path: Path) -> Stamp | None:
    """The stamp of the config's last finished run when nothing it read has changed since.

    Parameters
    ----------
    workspace
        The project folders.
    config_path
        The config about to run.

    Returns
    -------
    Stamp or None
        None when there is no stamp, or the config, the code or any file read differs from it.
    """
    record = _read(stamp_path(workspace, config_path))
    if record is None:
        return None
    with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
        if (
            artifacts.sha256_file(config_path) == record["config_sha256"]
            and artifacts.code_fingerprint() == record["code"]
            and all(_file_state(Path(path)) == state for path, state in record["files"].items())
        ):
            return Stamp(
                version=str(record["version"]),
                data=str(record["data"]),
                stages=tuple(str(stage) for stage in record["stages"]),
            )
    return None


def rerun(workspace: Workspace, config_path: Path, stamp: Stamp) -> runs.Result | None:
    """Finish a rerun of an unchanged config from its stamp: every stage reused, `latest` pointed
    at the stamped version (the versions page rewritten only if that changes it), the run logged.

    Parameters
    ----------
    workspace
        The project folders.
    config_path
        The config being rerun.
    stamp
        What `unchanged` found for it.

    Returns
    -------
    runs.Result or None
        None when the stamped version is no longer complete (pruned, removed by hand): the run
        must take the full way.
    """
    with artifacts.exclusive(workspace):
        if not versions.is_complete(workspace, stamp.version):
            return None
        result = runs.reused(workspace, stamp.version, stamp.stages)
        versions.publish(workspace, stamp.version)
        runs.log_run(workspace, config_path, result)
        return result
