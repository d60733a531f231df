"""Reading text files: YAML documents, and a table's shape (header line, delimiter) before its rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it: the same documents, read several times faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _readably(read: Callable[[type[Any]], Any]) -> Any:
    """`read(SAFE_LOADER)`; on a syntax error, PyYAML's own parser raises it instead, because its
    messages name the offending character (a tab, a quote) where libyaml's do not."""
    try:
        return read(SAFE_LOADER)
    except yaml.YAMLError:
        return read(yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, with libyaml's parser when available."""
    return _readably(lambda loader: yaml.load(text, Loader=loader))


def compose_yaml(text: str) -> yaml.Node | None:
    """`yaml.compose` with the safe loader (nodes carry line numbers), libyaml's when available."""
    return _readably(lambda loader: yaml.compose(text, Loader=loader))  # type: ignore[no-any-return]


SEPARATORS = (",", ";", "\t", "|")
"""Delimiters a CSV may use; a comma unless another one splits the header more."""


def detect_separator(header: str) -> str:
    """The delimiter of a header line: a comma unless semicolons, tabs or bars are what split it."""
    counts = {separator: header.count(separator) for separator in SEPARATORS}
    best = max(counts, key=lambda separator: counts[separator])
    return best if counts[best] > counts[","] else ","


def header_line(path: Path) -> str:
    """The first line of a text file, without a UTF-8 BOM or line ending (old Mac CR endings too)."""
    with path.open("rb") as handle:
        first = handle.readline()
    text = first.decode("utf-8-sig")
    return text.split("\r", 1)[0].rstrip("\n")
