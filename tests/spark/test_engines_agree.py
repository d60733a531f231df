"""The Spark engine on a real standalone cluster against the Polars engine, on the Mall data and
on 1M generated customers: the same k, ARI >= 0.99 between the assignments, every segment's size
within 1% and the inertia within 0.5%; and two Spark runs with the same partitions write the same
data outputs byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml
from sklearn.metrics import adjusted_rand_score

from conftest import pinned_data

REPO = Path(__file__).resolve().parents[2]
SEGMENT = Path(sys.executable).with_name("segment")
MILLION = 1_000_000

sys.path.insert(0, str(REPO / "bench"))
from generate import ensure  # noqa: E402

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Run:
    version: Path
    seconds: float

    def json(self, name: str) -> dict:  # type: ignore[type-arg]
        return json.loads((self.version / name).read_text(encoding="utf-8"))

    def assignments(self) -> pl.DataFrame:
        path = self.version / "assignments.parquet"
        return pl.read_parquet(path / "*.parquet" if path.is_dir() else path)

    def sizes(self) -> dict[int, int]:
        segments = pl.read_csv(self.version / "segments.csv")
        return dict(zip(segments["segment_id"], segments["size"], strict=True))


def run(project: Path, data: Path, engine: dict[str, object]) -> Run:
    """`segment run` on the shipped config, with the data at `data` and the engine's keys."""
    project.mkdir(parents=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["data"] = {**config["data"], "path": str(data), "url": None, "sha256": None}
    config.update(engine)
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run(
        [str(SEGMENT), "run", "--config", "config.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Run((project / "artifacts" / "latest").resolve(), time.monotonic() - started)


def on_cluster(master: str) -> dict[str, object]:
    return {"engine": "spark", "spark": {"master": master, "partitions": 4}}


def agreement(polars: Run, spark: Run, label: str) -> None:
    k = (polars.json("k_selection.json")["chosen_k"], spark.json("k_selection.json")["chosen_k"])
    joined = polars.assignments().join(spark.assignments(), on="customer_id", suffix="_spark")
    ari = adjusted_rand_score(joined["segment_id"], joined["segment_id_spark"])
    sizes = (polars.sizes(), spark.sizes())
    inertia = tuple(run.json("model.json")["kmeans"]["inertia"] for run in (polars, spark))
    # The measured agreement goes to the test log (`pytest -s`, or -rP), for the record.
    print(  # noqa: T201
        f"\n{label}: k {k}, ARI {ari:.6f}, sizes {sizes[0]} / {sizes[1]}, inertia "
        f"{inertia[0]:.6f} / {inertia[1]:.6f}, wall {polars.seconds:.1f} s / {spark.seconds:.1f} s"
    )
    assert k[0] == k[1]
    assert joined.height == polars.assignments().height
    assert ari >= 0.99
    for segment, size in sizes[0].items():
        assert abs(sizes[1][segment] - size) <= 0.01 * size, segment
    assert abs(inertia[1] - inertia[0]) <= 0.005 * inertia[0]


def data_hashes(version: Path) -> dict[str, str]:
    """SHA-256 of every data output (the charts and the manifest aside)."""
    return {
        path.relative_to(version).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(version.rglob("*"))
        if path.is_file() and "charts" not in path.parts and path.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def mall() -> Path:
    return pinned_data(REPO / "config.yaml", "Mall_Customers.csv")


def test_the_engines_agree_on_the_mall_data(
    mall: Path, spark_master: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("mall")
    agreement(
        run(root / "polars", mall, {}), run(root / "spark", mall, on_cluster(spark_master)), "Mall"
    )


def test_two_spark_runs_write_the_same_bytes(
    mall: Path, spark_master: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("twice")
    first = run(root / "first", mall, on_cluster(spark_master))
    second = run(root / "second", mall, on_cluster(spark_master))
    hashes = data_hashes(first.version)
    assert any(name.startswith("assignments.parquet/part-") for name in hashes)
    assert any(name.startswith("prepared.parquet/part-") for name in hashes)
    assert hashes == data_hashes(second.version)


def test_the_engines_agree_on_a_million_customers(
    spark_master: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("million")
    data = ensure(MILLION, 7, root / "data").csv
    polars = run(root / "polars", data, {})
    spark = run(root / "spark", data, on_cluster(spark_master))
    agreement(polars, spark, "1M")
