"""Reading a table's shape before reading its rows: the header line and the delimiter."""

from __future__ import annotations

from pathlib import Path

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
