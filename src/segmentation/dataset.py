"""Get the raw data file: use it if present, download it with pooch if not, and check its hash."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from segmentation.artifacts import sha256_file
from segmentation.config import DataConfig
from segmentation.errors import DataError, DataUnavailableError


@dataclass(frozen=True)
class RawData:
    path: Path
    """The data file, or the glob pattern of a purchase log's files."""
    sha256: str
    pinned: bool
    """True when the hash was checked against `data.sha256`, False for a user's own file."""
    files: tuple[Path, ...] = ()
    """Every file the data is read from, in sorted order."""
    uris: tuple[str, ...] = ()
    """For data on a cluster file system (s3a://, hdfs://, read by the Spark engine): every
    file's URI, in sorted order; `files` is then empty."""


def is_remote(location: str) -> bool:
    """True for a URI of a file system other than this machine's (s3a://, hdfs://, abfss://)."""
    return "://" in location and not location.startswith("file://")


GLOB_CHARACTERS = frozenset("*?[")


def is_glob(path: str) -> bool:
    return any(character in GLOB_CHARACTERS for character in path)


def _files_of(pattern: Path) -> tuple[Path, ...]:
    """The files a glob matches, sorted by name; refused when there are none."""
    root = Path(pattern.anchor) if pattern.is_absolute() else Path()
    relative = pattern.relative_to(root) if pattern.is_absolute() else pattern
    files = tuple(sorted(path for path in root.glob(str(relative)) if path.is_file()))
    if not files:
        raise DataError(f"{pattern}: data.path matches no file; check the pattern and the folder")
    return files


def _check_files(pattern: Path, files: tuple[Path, ...], expected: str | None) -> RawData:
    """One hash for every file of a glob: over each file's name and SHA-256, in sorted order."""
    listing = "".join(f"{path.name}\0{sha256_file(path)}\n" for path in files)
    actual = hashlib.sha256(listing.encode()).hexdigest()
    if expected is not None and actual != expected:
        raise DataError(
            f"{pattern}: the files' SHA-256 is {actual} but data.sha256 pins {expected}; use the "
            "pinned files, or set data.sha256: null to use your own"
        )
    return RawData(path=pattern, sha256=actual, pinned=expected is not None, files=files)


def _check(path: Path, expected: str | None) -> RawData:
    """The file with its hash, refused when it differs from the pinned one."""
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise DataError(
            f"{path}: SHA-256 is {actual} but data.sha256 pins {expected}; replace the file with "
            "the pinned one, or set data.sha256: null to use your own data"
        )
    return RawData(path=path, sha256=actual, pinned=expected is not None, files=(path,))


def ensure_raw_data(config: DataConfig, path: Path) -> RawData:
    """Return the checked data file at `path`, downloading it from `config.url` when missing; a
    glob (a purchase log in many files) is checked file by file and never downloaded."""
    if is_glob(config.path):
        return _check_files(path, _files_of(path), config.sha256)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; data.path must name a CSV file")
    if path.exists():
        return _check(path, config.sha256)
    hint = f"place the CSV at {path} by hand"
    if config.sha256 is not None:
        hint += f" (SHA-256 {config.sha256})"
    if config.url is None:
        raise DataUnavailableError(f"{path}: data file not found and data.url is null; {hint}")
    import pooch  # only a download needs it

    # pooch logs each download at INFO; our own stage line says it instead.
    pooch.get_logger().setLevel(logging.WARNING)
    try:
        pooch.retrieve(
            config.url,
            known_hash=f"sha256:{config.sha256}" if config.sha256 else None,
            fname=path.name,
            path=path.parent,
            progressbar=False,
        )
    except ValueError as exc:
        # pooch refuses a download whose hash differs from the pinned one.
        raise DataError(
            f"{config.url}: downloaded file does not match data.sha256 ({exc})"
        ) from None
    except Exception as exc:  # network errors come in many types (requests, OSError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataUnavailableError(
            f"{path}: data file not found and the download from data.url failed ({reason}); {hint}"
        ) from None
    return _check(path, config.sha256)
