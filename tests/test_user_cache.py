"""The user cache of files derived from installed packages (the report's Vega bundle)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from segmentation import artifacts


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "segmentation"


def counting(text: str) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return text

    return calls, compute


def test_a_result_is_computed_once_and_then_read_back(cache: Path) -> None:
    calls, compute = counting("bundle")
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert len(calls) == 1
    assert (cache / "a.js").read_text() == "bundle"


def test_a_damaged_copy_is_computed_again(cache: Path) -> None:
    calls, compute = counting("bundle")
    artifacts.memoized_text("a.js", compute)
    (cache / "a.js").write_text("bundle, edited")
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert len(calls) == 2
    assert (cache / "a.js").read_text() == "bundle"


def test_a_copy_without_its_hash_is_computed_again(cache: Path) -> None:
    calls, compute = counting("bundle")
    cache.mkdir(parents=True)
    (cache / "a.js").write_text("bundle")
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert len(calls) == 1


def test_a_cache_that_cannot_be_written_is_passed_over(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    calls, compute = counting("bundle")
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert artifacts.memoized_text("a.js", compute) == "bundle"
    assert len(calls) == 2
