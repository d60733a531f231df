"""The version store: which versions are complete, putting a finished one in place and publishing
it, listing, resolving, comparing and pruning them.

It never runs the pipeline (the pipeline uses it), so recomputing a version lives in `pipeline`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation import artifacts, faults
from segmentation.artifacts import Workspace
from segmentation.catalog import Catalog
from segmentation.errors import ConfigError, DataError


def is_complete(workspace: Workspace, version: str) -> bool:
    """Whether a version has its manifest and its report, the last files a build puts in place.

    Parameters
    ----------
    workspace
        The project folders.
    version
        A version id.

    Returns
    -------
    bool
        True when the version is complete and may be read, reused and listed.
    """
    return (workspace.version_dir(version) / artifacts.MANIFEST).is_file() and (
        workspace.report_dir(version) / artifacts.REPORT
    ).is_file()


def complete(workspace: Workspace, version: str, staging: Path, report_staging: Path) -> None:
    """Move a finished version into place: the report first, the artifacts (with manifest) last.

    Parameters
    ----------
    workspace
        The project folders.
    version
        The id of the version built in the staging folders.
    staging
        The version's artifacts, with its manifest.
    report_staging
        The version's report folder.
    """
    report_dir = workspace.report_dir(version)
    version_dir = workspace.version_dir(version)
    if version_dir.exists() and not is_complete(workspace, version):
        shutil.rmtree(version_dir)  # left by an older, interrupted layout; never a complete version
    if report_dir.exists() and not version_dir.exists():
        shutil.rmtree(report_dir)  # a report whose version never completed
    workspace.reports.mkdir(parents=True, exist_ok=True)
    artifacts.move_into_place(report_staging, report_dir)
    faults.reach("report.moved")
    artifacts.move_into_place(staging, version_dir)


def publish(workspace: Workspace, version: str) -> None:
    """Point `latest` at a complete version and rewrite the page that lists every version.

    Parameters
    ----------
    workspace
        The project folders.
    version
        A complete version.
    """
    artifacts.point_latest(workspace.artifacts, version)
    artifacts.point_latest(workspace.reports, version)
    write_index(workspace, version)


def write_index(workspace: Workspace, latest: str) -> None:
    """Rewrite reports/index.html, the page listing every complete version.

    Parameters
    ----------
    workspace
        The project folders.
    latest
        The version `latest` points at, marked on the page.
    """
    from segmentation import report

    page = report.render_index(list_versions(workspace), latest=latest)
    artifacts.write_text(workspace.reports / "index.html", page)


def list_versions(workspace: Workspace) -> list[dict[str, Any]]:
    """Every complete version with its headline figures, newest first."""
    import polars as pl

    found = []
    folder = workspace.artifacts
    for version_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        name = version_dir.name
        if name.startswith(".") or version_dir.is_symlink() or not is_complete(workspace, name):
            continue
        manifest = artifacts.read_json(version_dir / artifacts.MANIFEST)
        selection = artifacts.read_json(version_dir / artifacts.K_SELECTION)
        chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
        found.append(
            {
                "version": name,
                "created": manifest["created"],
                "features": manifest["config"]["features"],
                "scaling": manifest["config"]["scaling"],
                "rule": selection["rule"],
                "chosen_k": selection["chosen_k"],
                "silhouette": chosen["silhouette"],
                "calinski_harabasz": chosen["calinski_harabasz"],
                "davies_bouldin": chosen["davies_bouldin"],
                "segments": pl.read_csv(version_dir / artifacts.SEGMENTS)["name"].to_list(),
                "report": f"{name}/{artifacts.REPORT}",
            }
        )
    return sorted(found, key=lambda v: (v["created"], v["version"]), reverse=True)


def resolve_version(workspace: Workspace, name: str) -> str:
    """A version id from a full id, a unique prefix, or `latest`."""
    if name == artifacts.LATEST:
        latest = artifacts.latest_version(workspace.artifacts)
        if latest is None:
            raise ConfigError("no version yet: run `make all` first")
        return latest
    known = [v["version"] for v in list_versions(workspace)]
    matches = [v for v in known if v.startswith(name)]
    if len(matches) != 1:
        choices = ", ".join(known) or "none yet"
        what = "matches several versions" if len(matches) > 1 else "is not a complete version"
        raise ConfigError(f"version '{name}' {what}; known versions: {choices}")
    return str(matches[0])


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class Comparison:
    old: str
    new: str
    config_changes: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, Any, Any]]
    crosstab: list[dict[str, Any]]
    """One row per segment of the old version: its name and how many customers went to each new segment."""
    new_segments: list[str]
    shared_customers: int
    adjusted_rand_index: float


def compare_versions(workspace: Workspace, old: str, new: str) -> Comparison:
    """What differs between two versions: config, metrics, and where customers moved."""
    import polars as pl
    from sklearn.metrics import adjusted_rand_score

    folders = {v: workspace.version_dir(v) for v in (old, new)}
    manifests = {v: artifacts.read_json(folders[v] / artifacts.MANIFEST) for v in (old, new)}
    configs = {v: _flatten(manifests[v]["config"]) for v in (old, new)}
    changes = [
        (key, configs[old].get(key), configs[new].get(key))
        for key in sorted(set(configs[old]) | set(configs[new]))
        if configs[old].get(key) != configs[new].get(key)
    ]
    selections = {v: artifacts.read_json(folders[v] / artifacts.K_SELECTION) for v in (old, new)}
    chosen = {
        v: next(c for c in s["candidates"] if c["k"] == s["chosen_k"])
        for v, s in selections.items()
    }
    metrics = [("chosen k", selections[old]["chosen_k"], selections[new]["chosen_k"])]
    metrics += [
        (name, chosen[old][name], chosen[new][name])
        for name in ("silhouette", "calinski_harabasz", "davies_bouldin", "inertia")
    ]
    assignments = {
        v: Catalog(folders[v]).load("assignments").select("customer_id", "segment_name")
        for v in (old, new)
    }
    joined = assignments[old].join(assignments[new], on="customer_id", suffix="_new")
    if joined.height == 0:
        raise DataError(f"versions {old} and {new} share no customer ids; nothing to compare")
    new_segments = pl.read_csv(folders[new] / artifacts.SEGMENTS)["name"].to_list()
    crosstab = []
    for name in pl.read_csv(folders[old] / artifacts.SEGMENTS)["name"].to_list():
        moved = joined.filter(pl.col("segment_name") == name)["segment_name_new"].value_counts()
        counts = dict(moved.iter_rows())
        crosstab.append({"segment": name, "counts": [int(counts.get(n, 0)) for n in new_segments]})
    return Comparison(
        old=old,
        new=new,
        config_changes=changes,
        metrics=metrics,
        crosstab=crosstab,
        new_segments=new_segments,
        shared_customers=joined.height,
        adjusted_rand_index=float(
            adjusted_rand_score(joined["segment_name"], joined["segment_name_new"])
        ),
    )


def prune(workspace: Workspace, keep: int) -> list[str]:
    """Remove all but the `keep` newest versions; never the one `latest` points at."""
    if keep < 1:
        raise ConfigError("--keep: keep at least 1 version")
    with artifacts.exclusive(workspace):
        return _prune(workspace, keep)


def _prune(workspace: Workspace, keep: int) -> list[str]:
    latest = artifacts.latest_version(workspace.artifacts)
    removed = []
    for entry in list_versions(workspace)[keep:]:
        version = entry["version"]
        if version == latest:
            continue
        # The manifest goes first: without it the version no longer counts as complete.
        (workspace.version_dir(version) / artifacts.MANIFEST).unlink()
        shutil.rmtree(workspace.version_dir(version))
        shutil.rmtree(workspace.report_dir(version), ignore_errors=True)
        for page in (workspace.reports / "compare").glob(f"*{version}*.html"):
            page.unlink()
        removed.append(version)
    return removed
