"""The notebook-style baseline the benchmark compares against: what Kaggle-style Mall notebooks do.

pandas `read_csv`; annual income and spending score, unscaled; `KMeans(k, init="k-means++",
n_init=10, random_state=42)` on every row for k = 1..10 (the elbow's inertia); the silhouette for
k = 2..10, on a sample of at most 10,000 rows (on every row it is O(n^2): hours at a million); k
with the highest silhouette; a final fit; the elbow and the segments scatter saved as PNG with
matplotlib (Agg). Writes a JSON result (chosen k, inertias, silhouettes, ARI against the true
groups when --truth gives them, plot bytes, its own wall time and peak RSS).

The columns are taken by position, as the notebooks do (3 and 4: income and score), so it runs
on the Mall file itself as well as on the generated data sets, which share its layout:

    python bench/baseline.py --csv bench/data/100000-seed7/customers.csv \\
        --truth bench/data/100000-seed7/truth.parquet --out-dir /tmp/baseline
    python bench/baseline.py --csv data/raw/Mall_Customers.csv --out-dir /tmp/baseline-mall
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

K_RANGE = range(1, 11)
SILHOUETTE_SAMPLE = 10_000


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def run(csv: Path, out_dir: Path) -> dict[str, Any]:
    """The notebook, cell by cell; returns what it found (labels included, for the ARI)."""
    df = pd.read_csv(csv)
    x = df.iloc[:, [3, 4]].values  # Annual Income (k$), Spending Score (1-100)
    n = len(x)

    inertias: dict[int, float] = {}
    silhouettes: dict[int, float] = {}
    for k in K_RANGE:
        model = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=42).fit(x)
        inertias[k] = float(model.inertia_)
        if k >= 2:
            silhouettes[k] = float(
                silhouette_score(
                    x, model.labels_, sample_size=min(n, SILHOUETTE_SAMPLE), random_state=42
                )
            )
    best_k = max(silhouettes, key=lambda k: silhouettes[k])

    final = KMeans(n_clusters=best_k, init="k-means++", n_init=10, random_state=42)
    y_kmeans = final.fit_predict(x)

    out_dir.mkdir(parents=True, exist_ok=True)
    plt.figure(figsize=(8, 5))
    plt.plot(list(inertias), list(inertias.values()), marker="o")
    plt.title("The Elbow Method")
    plt.xlabel("Number of clusters")
    plt.ylabel("WCSS")
    plt.savefig(out_dir / "elbow.png", dpi=100)
    plt.close()

    plt.figure(figsize=(10, 7))
    for label in range(best_k):
        members = x[y_kmeans == label]
        plt.scatter(members[:, 0], members[:, 1], s=10, label=f"Cluster {label + 1}")
    centres = final.cluster_centers_
    plt.scatter(centres[:, 0], centres[:, 1], s=200, c="yellow", label="Centroids")
    plt.title("Clusters of customers")
    plt.xlabel("Annual Income (k$)")
    plt.ylabel("Spending Score (1-100)")
    plt.legend()
    plt.savefig(out_dir / "clusters.png", dpi=100)
    plt.close()

    return {
        "rows": n,
        "chosen_k": best_k,
        "inertia": {str(k): v for k, v in inertias.items()},
        "silhouette": {str(k): v for k, v in silhouettes.items()},
        "plot_bytes": sum(path.stat().st_size for path in out_dir.glob("*.png")),
        "customer_id": df["CustomerID"].to_numpy(),
        "labels": y_kmeans,
    }


def ari_against(truth: Path, customer_id: np.ndarray, labels: np.ndarray) -> float:
    """Adjusted Rand index of the labels against the true groups, matched on customer_id."""
    groups = pd.read_parquet(truth).set_index("customer_id")["group"]
    return float(adjusted_rand_score(groups.loc[customer_id].to_numpy(), labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--truth", type=Path, help="truth.parquet, for the ARI (optional)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the PNG plots go")
    parser.add_argument("--result", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    found = run(args.csv, args.out_dir)
    customer_id, labels = found.pop("customer_id"), found.pop("labels")
    found["seconds"] = time.perf_counter() - started
    found["peak_rss_bytes"] = peak_rss_bytes()
    found["ari"] = ari_against(args.truth, customer_id, labels) if args.truth else None

    text = json.dumps(found, indent=2) + "\n"
    if args.result:
        args.result.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
