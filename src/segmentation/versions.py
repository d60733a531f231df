"""The version store: which versions are complete, putting a finished one in place and publishing
it, listing, resolving, comparing and pruning them.

It never runs the pipeline (the pipeline uses it), so recomputing a version lives in `pipeline`.
"""

from __future__ import annotations

import csv
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
    record(workspace, version)


def publish(workspace: Workspace, version: str) -> None:
    """Point `latest` at a complete version and keep the page that lists every version current.

    Nothing is written when `latest` already points at the version and the page already shows
    it so: rerunning an unchanged config rewrites no file.

    Parameters
    ----------
    workspace
        The project folders.
    version
        A complete version.
    """
    for folder in (workspace.artifacts, workspace.reports):
        if artifacts.latest_version(folder) != version:
            artifacts.point_latest(folder, version)
    write_index(workspace, version)


def write_index(workspace: Workspace, latest: str) -> None:
    """Rewrite reports/index.html, the page listing every complete version, if what it shows
    (the versions and which is latest) has changed since it was written.

    Parameters
    ----------
    workspace
        The project folders.
    latest
        The version `latest` points at, marked on the page.
    """
    stored = _read_index(workspace)
    listed = _index(workspace, stored)
    shown = artifacts.sha256_text(artifacts.canonical_json({"versions": listed, "latest": latest}))
    page = workspace.reports / "index.html"
    if page.is_file() and stored.get("page") == shown:
        return
    from segmentation import report

    artifacts.write_text(page, report.render_index(listed, latest=latest))
    _write_index(workspace, listed, page=shown)


def summarize(workspace: Workspace, version: str) -> dict[str, Any]:
    """A complete version's headline figures, as the versions page and `segment versions` list them.

    Parameters
    ----------
    workspace
        The project folders.
    version
        A complete version.

    Returns
    -------
    dict
        Its id, creation time, features, scaling, k rule, chosen k, the chosen k's scores, the
        segment names and the path of its report relative to reports/.
    """
    folder = workspace.version_dir(version)
    manifest = artifacts.read_json(folder / artifacts.MANIFEST)
    selection = artifacts.read_json(folder / artifacts.K_SELECTION)
    chosen = next(c for c in selection["candidates"] if c["k"] == selection["chosen_k"])
    with (folder / artifacts.SEGMENTS).open(encoding="utf-8", newline="") as segments:
        names = [row["name"] for row in csv.DictReader(segments)]
    return {
        "version": version,
        "created": manifest["created"],
        "features": manifest["config"]["features"],
        "scaling": manifest["config"]["scaling"],
        "rule": selection["rule"],
        "chosen_k": selection["chosen_k"],
        "silhouette": chosen["silhouette"],
        "calinski_harabasz": chosen["calinski_harabasz"],
        "davies_bouldin": chosen["davies_bouldin"],
        "segments": names,
        "report": f"{version}/{artifacts.REPORT}",
    }


def _read_index(workspace: Workspace) -> dict[str, Any]:
    """The stored list of versions, or an empty one when it is missing or unreadable."""
    try:
        stored = artifacts.read_json(workspace.versions_index)
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) and isinstance(stored.get("versions"), list) else {}


def _write_index(
    workspace: Workspace, listed: list[dict[str, Any]], page: str | None = None
) -> None:
    artifacts.write_json(workspace.versions_index, {"versions": listed, "page": page})


def _index(workspace: Workspace, read: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every complete version's summary, newest first, from the stored list (`read`, when the
    caller has already read it).

    The list is rebuilt from the version folders when it is missing or names a version that is
    no longer complete (removed by hand); otherwise no version's files are read.
    """
    stored = (_read_index(workspace) if read is None else read).get("versions")
    if stored is not None and all(
        isinstance(entry, dict) and is_complete(workspace, str(entry.get("version")))
        for entry in stored
    ):
        return list(stored)
    folder = workspace.artifacts
    found = [
        summarize(workspace, entry.name)
        for entry in (sorted(folder.iterdir()) if folder.is_dir() else [])
        if not entry.name.startswith(".")
        and entry.is_dir()
        and not entry.is_symlink()
        and is_complete(workspace, entry.name)
    ]
    listed = _newest_first(found)
    _write_index(workspace, listed)
    return listed


def _newest_first(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(found, key=lambda v: (v["created"], v["version"]), reverse=True)


def record(workspace: Workspace, version: str) -> None:
    """Add a version that has just been completed to the stored list.

    Parameters
    ----------
    workspace
        The project folders.
    version
        A complete version.
    """
    listed = [entry for entry in _index(workspace) if entry["version"] != version]
    _write_index(workspace, _newest_first([*listed, summarize(workspace, version)]))


def list_versions(workspace: Workspace) -> list[dict[str, Any]]:
    """Every complete version with its headline figures (see `summarize`), newest first."""
    return _index(workspace)


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
    listed = list_versions(workspace)
    for entry in listed[keep:]:
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
    if removed:
        _write_index(workspace, [entry for entry in listed if entry["version"] not in removed])
    return removed
