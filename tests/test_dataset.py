"""Getting the raw file: hash checks, and clear errors when it is missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from segmentation.config import DataConfig
from segmentation.dataset import ensure_raw_data
from segmentation.errors import DataError, DataUnavailableError

UNREACHABLE = "http://127.0.0.1:9/x.csv"
CONTENT = b"customer_id,gender,age,annual_income,spending_score\n1,Male,19,15,39\n"


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "raw" / "customers.csv"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def test_matching_hash_passes_and_is_pinned(data_file: Path) -> None:
    digest = hashlib.sha256(CONTENT).hexdigest()
    raw = ensure_raw_data(DataConfig(path=str(data_file), url=None, sha256=digest), data_file)
    assert (raw.path, raw.sha256, raw.pinned) == (data_file, digest, True)


def test_mismatching_hash_names_both_hashes(data_file: Path) -> None:
    pinned = "0" * 64
    actual = hashlib.sha256(CONTENT).hexdigest()
    with pytest.raises(DataError) as caught:
        ensure_raw_data(DataConfig(path=str(data_file), url=None, sha256=pinned), data_file)
    assert actual in str(caught.value)
    assert pinned in str(caught.value)


def test_null_hash_records_the_hash_without_pinning(data_file: Path) -> None:
    raw = ensure_raw_data(DataConfig(path=str(data_file), url=None, sha256=None), data_file)
    assert (raw.sha256, raw.pinned) == (hashlib.sha256(CONTENT).hexdigest(), False)


def test_missing_file_without_url_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DataUnavailableError, match=r"data\.url is null.*by hand"):
        ensure_raw_data(DataConfig(path=str(path), url=None, sha256=None), path)


def test_missing_file_hint_gives_the_pinned_hash(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DataUnavailableError, match="SHA-256 " + "a" * 64):
        ensure_raw_data(DataConfig(path=str(path), url=None, sha256="a" * 64), path)


def test_unreachable_url_says_how_to_place_the_file_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "absent.csv"
    with pytest.raises(DataUnavailableError) as caught:
        ensure_raw_data(DataConfig(path=str(path), url=UNREACHABLE, sha256=None), path)
    message = str(caught.value)
    assert "download from data.url failed" in message
    assert f"place the CSV at {path} by hand" in message


def test_failed_download_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "absent.csv"
    with pytest.raises(DataUnavailableError):
        ensure_raw_data(DataConfig(path=str(path), url=UNREACHABLE, sha256=None), path)
    assert not path.exists()


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        ensure_raw_data(DataConfig(path=str(tmp_path), url=None, sha256=None), tmp_path)
