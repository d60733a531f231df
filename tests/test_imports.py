"""The package's modules import each other without a circle, imports inside functions included."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import segmentation

PACKAGE = "segmentation"
SOURCE = Path(segmentation.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join((PACKAGE, *parts[: -1 if parts[-1] == "__init__" else None]))


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """The package's modules that a module imports anywhere in it (a name from the package itself,
    such as `__version__`, counts as the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


def test_the_module_list_is_the_package() -> None:
    assert {"segmentation", "segmentation.pipeline", "segmentation.versions"} <= set(MODULES)


def test_function_level_imports_are_seen() -> None:
    # stages imports each stage's module inside its runner only.
    assert "segmentation.visualize" in imported(MODULES["segmentation.stages"])


def test_the_version_store_does_not_import_the_pipeline() -> None:
    assert "segmentation.pipeline" not in imported(MODULES["segmentation.versions"])


def test_the_imports_form_no_circle() -> None:
    graph = {name: imported(path) for name, path in MODULES.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None
