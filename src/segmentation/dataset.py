"""Get the raw data file: use it if present, download it with pooch if not, and check its hash."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pooch

from segmentation.artifacts import sha256_file
from segmentation.config import DataConfig
from segmentation.errors import DataError, DataUnavailableError


@dataclass(frozen=True)
class RawData:
    path: Path
    sha256: str
    pinned: bool
    """True when the hash was checked against `data.sha256`, False for a user's own file."""


def _check(path: Path, expected: str | None) -> RawData:
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise DataError(
            f"{path}: SHA-256 is {actual} but data.sha256 pins {expected}; replace the file with "
            "the pinned one, or set data.sha256: null to use your own data"
        )
    return RawData(path=path, sha256=actual, pinned=expected is not None)


def ensure_raw_data(config: DataConfig, path: Path) -> RawData:
    """Return the checked data file at `path`, downloading it from `config.url` when missing."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder; data.path must name a CSV file")
    if path.exists():
        return _check(path, config.sha256)
    hint = f"place the CSV at {path} by hand"
    if config.sha256 is not None:
        hint += f" (SHA-256 {config.sha256})"
    if config.url is None:
        raise DataUnavailableError(f"{path}: data file not found and data.url is null; {hint}")
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
