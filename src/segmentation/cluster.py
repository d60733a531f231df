"""Stage 3, cluster: the final K-Means, canonical segment ids, profiles, names and actions.

Everything here works on any declared table: profiles cover every numeric, date and categorical
column; names come from the clustered columns' labels (or a vocabulary's words, or the cell of its
score grid); actions come from a vocabulary's rule table (or grid), and without one each segment's
distinguishing traits are given instead. The customers of a purchase log also get RFM scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import silhouette_samples

from segmentation.config import ClusterConfig
from segmentation.kmeans import canonical_ids, fit_from_labels, fit_kmeans
from segmentation.measures import feature_value, measure
from segmentation.model import KMeansState, ScalerState, SegmentEntry, SegmentModel
from segmentation.prepare import Scaler
from segmentation.schema import CATEGORY_SEPARATOR, ID, ColumnSpec, TableSchema
from segmentation.vocabulary import SCORES, CategoryPhrases, Grid, Vocabulary

CHUNK_ROWS = 500_000
"""Customers per block when computing distances to every centroid."""
LEVEL_THRESHOLD = 0.5
"""A segment is 'high' or 'low' on a column when its mean is this many population SDs away."""
FINE_THRESHOLD = 1.0
"""Beyond this many SDs a level is 'very' high or low (used only to separate equal names)."""
ONLY_SHARE, MOSTLY_SHARE = 0.9, 0.65
"""A categorical column reads as its top category from these shares of the segment on."""
TOP_CATEGORIES = 5
"""Categories profiled per categorical column (the most common among all customers)."""
TRAITS = 3
"""Distinguishing traits given per segment."""
NAME_PARTS = 3
"""The most clustered columns a segment's name speaks of (those where it stands out most)."""
LEVEL_NAMES = {-1: "low", 0: "mid", 1: "high"}


@dataclass(frozen=True)
class Segmentation:
    segments: pl.DataFrame
    profiles: pl.DataFrame
    """Long form: segment_id, column, category, statistic, value, everyone, z."""
    assignments: pl.DataFrame
    model: SegmentModel


def _level(z: float, fine: bool = False) -> int:
    """-1/0/1 for low/mid/high, or -2..2 when `fine` adds very low and very high."""
    if fine and abs(z) >= FINE_THRESHOLD:
        return 2 if z > 0 else -2
    if abs(z) >= LEVEL_THRESHOLD:
        return 1 if z > 0 else -1
    return 0


def score_customers(
    customers: pl.DataFrame, scores: Mapping[str, Mapping[str, Any]]
) -> pl.DataFrame:
    """Each customer's scores from 1 to 5: the quintile of their value among all customers.

    `scores` maps each score's name to `{column: ..., descending: ...}` (`schema.rfm_scores()`);
    with `descending: true` the lowest values score highest (recency in days: the most recent get
    5). The rule, ties included: score = ceil(5 * rank / n), n customers, where a customer's rank
    is 1 + the number of customers with a strictly worse value (lower; higher when descending).
    Equal values thus get equal scores, the score of the worst-placed of them: a one-time buyer
    has F = 1 however many one-time buyers there are. Without ties the scores are exact quintiles.
    """
    n = customers.height
    top = len(SCORES)
    return customers.select(
        (
            (
                top
                * pl.col(spec["column"])
                .rank("min", descending=bool(spec.get("descending")))
                .cast(pl.Int64)
                + n
                - 1
            )
            // n
        ).alias(name)
        for name, spec in scores.items()
    )


def score_medians(scored: pl.DataFrame, segment_ids: np.ndarray) -> pl.DataFrame:
    """Per segment (by id): the median and mean of every score (`median_<score>`, `mean_<score>`)."""
    return (
        scored.with_columns(pl.Series("segment_id", segment_ids, dtype=pl.Int64))
        .group_by("segment_id")
        .agg(
            *[pl.col(name).median().alias(f"median_{name}") for name in scored.columns],
            *[pl.col(name).mean().alias(f"mean_{name}") for name in scored.columns],
        )
        .sort("segment_id")
    )


def profile_segments(
    customers: pl.DataFrame, segment_ids: np.ndarray, schema: TableSchema
) -> pl.DataFrame:
    """Size, share, the mean and median of every numeric and date column (dates as days before
    as_of), the mean of each as K-Means sees it (`level_<column>`: clipped and transformed, for
    levels and names), and the top category with its share of every categorical column."""
    total = customers.height
    measures = schema.measures
    categorical = schema.of_type("categorical")
    frame = customers.with_columns(pl.Series("segment_id", segment_ids, dtype=pl.Int64))
    return (
        frame.select(
            "segment_id",
            *[measure(c, schema) for c in measures],
            *[feature_value(c, schema).alias(f"level_{c.name}") for c in measures],
            *[pl.col(c.name) for c in categorical],
        )
        .group_by("segment_id")
        .agg(
            pl.len().cast(pl.Int64).alias("size"),
            (pl.len() / total).alias("share"),
            *[pl.col(c.name).mean().alias(f"mean_{c.name}") for c in measures],
            *[pl.col(c.name).median().alias(f"median_{c.name}") for c in measures],
            *[pl.col(f"level_{c.name}").mean() for c in measures],
            *[
                pl.col(c.name).drop_nulls().mode().sort().first().alias(f"top_{c.name}")
                for c in categorical
            ],
        )
        .sort("segment_id")
        .with_columns(
            *[
                _top_share(frame, c.name, segment_ids).alias(f"top_{c.name}_share")
                for c in categorical
            ]
        )
    )


def _top_share(frame: pl.DataFrame, column: str, segment_ids: np.ndarray) -> pl.Series:
    """Per segment (by id), the share of its customers in its most common category."""
    k = int(segment_ids.max()) + 1 if len(segment_ids) else 0
    counts = (
        frame.group_by("segment_id", column)
        .len()
        .sort("segment_id", "len", descending=[False, True])
    )
    best = counts.group_by("segment_id", maintain_order=True).agg(
        pl.col("len").first(), pl.col("len").sum().alias("all")
    )
    shares = dict(
        zip(best["segment_id"].to_list(), (best["len"] / best["all"]).to_list(), strict=True)
    )
    return pl.Series([shares.get(i, 0.0) for i in range(k)], dtype=pl.Float64)


def category_profiles(
    customers: pl.DataFrame,
    segment_ids: np.ndarray,
    schema: TableSchema,
    shares: dict[str, dict[str, float]],
) -> pl.DataFrame:
    """Long form: each segment's share of each categorical column's top categories (among all
    customers), with all customers' share beside it."""
    k = int(segment_ids.max()) + 1
    ids = pl.Series("segment_id", segment_ids, dtype=pl.Int64)
    counts: dict[str, dict[tuple[int, str], int]] = {}
    for column in schema.of_type("categorical"):
        top = list(shares[column.name])[:TOP_CATEGORIES]
        found = (
            customers.select(pl.col(column.name))
            .with_columns(ids)
            .filter(pl.col(column.name).is_in(top))
            .group_by("segment_id", column.name)
            .len()
        )
        counts[column.name] = {(s, c): n for s, c, n in found.iter_rows()}
    sizes = np.bincount(segment_ids, minlength=k)
    return profiles_from_counts(counts, [int(size) for size in sizes], shares)


def profiles_from_counts(
    counts: dict[str, dict[tuple[int, str], int]],
    sizes: list[int],
    shares: dict[str, dict[str, float]],
) -> pl.DataFrame:
    """The long-form table of `category_profiles`, from counts that either engine computes.

    Parameters
    ----------
    counts
        For each categorical column, the customers of each (segment id, category) among the
        column's top `TOP_CATEGORIES` categories; a pair left out counts 0.
    sizes
        Each segment's size, by segment id.
    shares
        For each categorical column, every category's share of all customers, largest first.
    """
    rows: list[tuple[int, str, str, float, float]] = []
    for column, found in counts.items():
        for segment, size in enumerate(sizes):
            for category in list(shares[column])[:TOP_CATEGORIES]:
                value = found.get((segment, category), 0) / max(size, 1)
                rows.append((segment, column, category, value, shares[column][category]))
    return pl.DataFrame(
        rows,
        schema={
            "segment_id": pl.Int64,
            "column": pl.String,
            "category": pl.String,
            "value": pl.Float64,
            "everyone": pl.Float64,
        },
        orient="row",
    )


def _z(
    profile: pl.DataFrame, row: int, name: str, population: dict[str, dict[str, float]]
) -> float:
    """How many SDs the segment's mean (as K-Means sees the column) is from all customers'."""
    stats = population[name]
    mean = float(profile[f"level_{name}"][row])
    return (mean - stats["feature_mean"]) / (stats["feature_std"] or 1.0)


def _level_words(column: ColumnSpec, vocabulary: Vocabulary | None) -> tuple[str, ...]:
    if vocabulary is not None and column.name in vocabulary.levels:
        return vocabulary.levels[column.name]
    title = column.title
    if column.type == "date":
        # Low means few days before as_of: recent.
        return (
            f"Very recent {title}",
            f"Recent {title}",
            f"Mid {title}",
            f"Earlier {title}",
            f"Much earlier {title}",
        )
    return (
        f"Very low {title}",
        f"Low {title}",
        f"Mid {title}",
        f"High {title}",
        f"Very high {title}",
    )


def _category_phrase(
    column: ColumnSpec, top: str | None, share: float, vocabulary: Vocabulary | None
) -> str:
    phrases = (vocabulary.categories.get(column.name) if vocabulary else None) or CategoryPhrases()
    shown = column.category_text(str(top))
    values = {
        "category": shown,
        "category_lower": shown.lower(),
        "title": column.title,
        "title_lower": column.title.lower(),
    }
    template = (
        phrases.only
        if share >= ONLY_SHARE
        else phrases.mostly
        if share >= MOSTLY_SHARE
        else phrases.mixed
    )
    return template.format(**values)


def _named_features(
    profile: pl.DataFrame, row: int, schema: TableSchema, population: dict[str, dict[str, float]]
) -> list[str]:
    """The clustered columns a segment's name speaks of: all of them up to NAME_PARTS, else the
    NAME_PARTS where the segment stands out most (numeric: SDs from everyone; categorical: how
    dominant its top category is), in feature order."""
    if len(schema.features) <= NAME_PARTS:
        return list(schema.features)

    def salience(feature: str) -> float:
        if schema.column(feature).type == "categorical":
            # A category held by every customer of the segment weighs like 2 SDs.
            return 2.0 * float(profile[f"top_{feature}_share"][row])
        return abs(_z(profile, row, feature, population))

    ranked = sorted(schema.features, key=lambda feature: -salience(feature))[:NAME_PARTS]
    return [feature for feature in schema.features if feature in ranked]


def name_segments(
    profile: pl.DataFrame,
    schema: TableSchema,
    population: dict[str, dict[str, float]],
    vocabulary: Vocabulary | None = None,
) -> list[str]:
    """A name per segment from its clustered columns compared with all customers, unique in the run.

    Coarse levels first (low / mid / high); segments that would share a name get finer levels,
    and if they still collide, their mean values are added. A vocabulary with a grid names each
    segment by its grid cell instead (`grid_names`).
    """
    if vocabulary is not None and vocabulary.grid is not None:
        return grid_names(profile, schema, population, vocabulary.grid, vocabulary)

    named = [_named_features(profile, row, schema, population) for row in range(profile.height)]

    def describe(row: int, fine: bool) -> str:
        parts = []
        for feature in named[row]:
            column = schema.column(feature)
            if column.type == "categorical":
                parts.append(
                    _category_phrase(
                        column,
                        profile[f"top_{feature}"][row],
                        profile[f"top_{feature}_share"][row],
                        vocabulary,
                    )
                )
            else:
                level = _level(_z(profile, row, feature, population), fine)
                parts.append(_level_words(column, vocabulary)[level + 2])
        return " · ".join(parts)

    names = [describe(row, fine=False) for row in range(profile.height)]
    for fine in (True, None):
        clashing = {name for name in names if names.count(name) > 1}
        for row, name in enumerate(names):
            if name not in clashing:
                continue
            if fine:
                names[row] = describe(row, fine=True)
            else:
                values = ", ".join(
                    f"{schema.column(f).title.lower()} {profile[f'mean_{f}'][row]:.1f}"
                    for f in named[row]
                    if schema.column(f).type != "categorical"
                ) or ", ".join(
                    f"{profile[f'top_{f}_share'][row]:.0%} {profile[f'top_{f}'][row]}"
                    for f in named[row]
                )
                names[row] = f"{name} ({values})"
    return names


def grid_cells(profile: pl.DataFrame, grid: Grid) -> list[str]:
    """Each segment's grid cell, from its customers' median scores (`median_<score>` columns of
    the profile; a .5 rounded up)."""
    for score in (grid.x, grid.y):
        if f"median_{score}" not in profile.columns:
            raise ValueError(f"the grid's score {score} was not computed for these customers")
    return [
        grid.cell(float(x), float(y)).name
        for x, y in zip(profile[f"median_{grid.x}"], profile[f"median_{grid.y}"], strict=True)
    ]


def grid_names(
    profile: pl.DataFrame,
    schema: TableSchema,
    population: dict[str, dict[str, float]],
    grid: Grid,
    vocabulary: Vocabulary | None = None,
) -> list[str]:
    """A name per segment: its grid cell's name. Segments in the same cell get their level on
    the grid's `apart_by` column after it ("At risk · High Monetary value"), finer levels if that
    is not enough, and their mean `apart_by` value (or median scores) if even that is not."""
    cells = grid_cells(profile, grid)
    names = list(cells)
    apart = grid.apart_by
    if apart is not None:
        words = _level_words(schema.column(apart), vocabulary)
        for fine in (False, True):
            clashing = {name for name in names if names.count(name) > 1}
            for row, name in enumerate(names):
                if name in clashing:
                    level = _level(_z(profile, row, apart, population), fine)
                    names[row] = f"{cells[row]} · {words[level + 2]}"
    clashing = {name for name in names if names.count(name) > 1}
    for row, name in enumerate(names):
        if name in clashing:
            if apart is not None:
                column = schema.column(apart)
                mean = float(profile[f"mean_{apart}"][row])
                names[row] = f"{name} (mean {column.with_unit(_number(mean))})"
            else:
                medians = ", ".join(
                    f"{score} {float(profile[f'median_{score}'][row]):g}"
                    for score in (grid.x, grid.y)
                )
                names[row] = f"{name} (median {medians})"
    return names


def _matches(when: Mapping[str, str], levels: Mapping[str, str]) -> bool:
    return all(levels.get(name) == level for name, level in when.items())


def suggest_actions(
    profile: pl.DataFrame,
    population: dict[str, dict[str, float]],
    vocabulary: Vocabulary,
) -> list[str | None]:
    """A marketing action per segment: its grid cell's action (with a grid), else the
    vocabulary's first matching rule; plus every matching addition; None when nothing matches."""
    grid = vocabulary.grid
    by_cell = {cell.name: cell.action for cell in grid.cells} if grid is not None else {}
    cells = grid_cells(profile, grid) if grid is not None else [None] * profile.height
    actions: list[str | None] = []
    for row in range(profile.height):
        levels = {
            name: LEVEL_NAMES[_level(_z(profile, row, name, population))] for name in population
        }
        cell = cells[row]
        action = by_cell.get(cell) if cell is not None else None
        if action is None:
            action = next((r.action for r in vocabulary.actions if _matches(r.when, levels)), None)
        if action is not None:
            extra = [a.text for a in vocabulary.additions if _matches(a.when, levels)]
            action = " ".join([action, *extra])
        actions.append(action)
    return actions


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def distinguishing_traits(
    profile: pl.DataFrame,
    categories: pl.DataFrame,
    schema: TableSchema,
    population: dict[str, dict[str, float]],
) -> list[str]:
    """Per segment, the columns where it differs most from all customers, in the data's units:
    numeric and date columns by how many SDs their mean (as K-Means sees them) is away, categories
    by how far their share is from everyone's (in binomial SDs)."""
    traits = []
    for row in range(profile.height):
        segment = int(profile["segment_id"][row])
        scored: list[tuple[float, str]] = []
        for column in schema.measures:
            z = _z(profile, row, column.name, population)
            median = column.with_unit(_number(profile[f"median_{column.name}"][row]))
            everyone = column.with_unit(_number(population[column.name]["median"]))
            scored.append((abs(z), f"{column.title}: median {median} (all customers {everyone})"))
        for column, category, value, everyone in (
            categories.filter(pl.col("segment_id") == segment)
            .select("column", "category", "value", "everyone")
            .iter_rows()
        ):
            spread = (everyone * (1 - everyone)) ** 0.5 or 1.0
            title = schema.column(column).title
            scored.append(
                (
                    abs(value - everyone) / spread,
                    f"{title} {category}: {value:.0%} (all customers {everyone:.0%})",
                )
            )
        top = sorted(scored, key=lambda item: -item[0])[:TRAITS]
        traits.append("; ".join(text for _, text in top))
    return traits


def _nearest_two(
    matrix: np.ndarray, centroids: np.ndarray, chunk: int = CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: the nearest centroid, its distance, and the distance to the next nearest.

    Computed in chunks of rows, so memory stays proportional to the chunk, not the data.
    """
    rows = matrix.shape[0]
    nearest = np.empty(rows, dtype=np.int64)
    first = np.empty(rows)
    second = np.full(rows, np.inf)
    for start in range(0, rows, chunk):
        block = matrix[start : start + chunk]
        distances = np.sqrt(((block[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
        order = np.argsort(distances, axis=1, kind="stable")
        nearest[start : start + chunk] = order[:, 0]
        first[start : start + chunk] = distances[np.arange(len(block)), order[:, 0]]
        if centroids.shape[0] > 1:
            second[start : start + chunk] = distances[np.arange(len(block)), order[:, 1]]
    return nearest, first, second


def customer_silhouettes(
    matrix: np.ndarray, segment_ids: np.ndarray, centroids: np.ndarray, exact_up_to: int
) -> tuple[np.ndarray, str]:
    """Each customer's silhouette, exact up to `exact_up_to` customers, simplified beyond.

    The exact silhouette compares every pair of customers (quadratic); the simplified one
    (Hruschka et al.) compares each customer with the centroids: (b - a) / max(a, b), with a the
    distance to its own centroid and b to the nearest other one.
    """
    if matrix.shape[0] <= exact_up_to:
        return silhouette_samples(matrix, segment_ids), "exact"
    _, own, other = _nearest_two(matrix, centroids)
    return (other - own) / np.maximum(np.maximum(own, other), 1e-12), "simplified (centroid-based)"


def centroids_in_data_units(centroids: np.ndarray, schema: TableSchema) -> np.ndarray:
    """Unscaled centroids with log1p undone, so a centroid reads in the column's own units
    (indicator columns read as shares)."""
    readable = centroids.copy()
    for index, name in enumerate(schema.matrix_columns):
        column = schema.column(name.partition(CATEGORY_SEPARATOR)[0])
        if column.transform == "log1p":
            readable[:, index] = np.expm1(readable[:, index])
    return readable


def segment_customers(
    customers: pl.DataFrame,
    matrix: np.ndarray,
    unscaled: np.ndarray,
    scaler: Scaler,
    schema: TableSchema,
    k: int,
    config: ClusterConfig,
    population: dict[str, dict[str, float]],
    category_shares: dict[str, dict[str, float]],
    vocabulary: Vocabulary | None = None,
    initial_centers: np.ndarray | None = None,
    stability: dict[str, float | None] | None = None,
    exact_silhouette_up_to: int = 20_000,
    scores: Mapping[str, Mapping[str, Any]] | None = None,
) -> Segmentation:
    """Fit the final model at k on every customer and describe every segment.

    Parameters
    ----------
    customers : pl.DataFrame
        The prepared customers (`customer_id` and the declared columns).
    matrix, unscaled : np.ndarray
        The feature matrix, scaled and before scaling.
    scaler : Scaler
        The scaling that turned `unscaled` into `matrix`.
    schema : TableSchema
        The declared table with what prepare learned.
    k : int
        The number of segments.
    config : ClusterConfig
        K-Means settings (algorithm, starts, iterations, seed).
    population, category_shares : dict
        All customers' statistics, from prepare's summary.
    vocabulary : Vocabulary or None, default None
        Words and action rules; None names segments from the columns' labels and gives no action.
    initial_centers : np.ndarray or None, default None
        The select-k fit's centres (by its segment ids), where the final fit starts.
    stability : dict or None, default None
        Those segments' mean Jaccard similarity, carried over to the final ids.
    exact_silhouette_up_to : int, default 20_000
        Above this many customers the silhouette is the centroid-based one.
    scores : mapping or None, default None
        Scores to give every customer (`schema.rfm_scores()` for a purchase log; see
        `score_customers`): written with the assignments, their median and mean per segment with
        the segments. Required by a vocabulary with a grid.
    """
    fit = fit_kmeans(matrix, k, config, initial=initial_centers)
    labels = fit.labels
    original_centroids = fit_from_labels(unscaled, labels, k).centers
    mapping = canonical_ids(labels, original_centroids)
    segment_ids = mapping[labels]
    order = np.argsort(mapping)  # order[new_id] = old label
    centroids = fit.centers[order]

    profile = profile_segments(customers, segment_ids, schema)
    scored = score_customers(customers, scores) if scores else pl.DataFrame()
    if scores:
        profile = profile.join(score_medians(scored, segment_ids), on="segment_id", how="left")
    categories = category_profiles(customers, segment_ids, schema, category_shares)
    described = describe_segments(
        profile=profile,
        categories=categories,
        schema=schema,
        population=population,
        vocabulary=vocabulary,
        original_centroids=centroids_in_data_units(original_centroids[order], schema),
        scaler=scaler,
        stability=[(stability or {}).get(str(int(old))) for old in order],
    )
    silhouettes, method = customer_silhouettes(
        matrix, segment_ids, centroids, exact_silhouette_up_to
    )
    distances = np.sqrt(((matrix - centroids[segment_ids]) ** 2).sum(axis=1))
    ids = pl.Series("segment_id", segment_ids, dtype=pl.Int64)
    assignments = pl.DataFrame(
        {
            ID: customers[ID],
            "segment_id": ids,
            "segment_name": pl.Series(described.names, dtype=pl.String).gather(ids),
            **{name: scored[name] for name in scored.columns},
            "distance_to_centroid": distances,
            "silhouette": silhouettes,
        }
    )
    model = segment_model(
        described, schema, scaler, centroids, config, fit.inertia, method, initial_centers is None
    )
    return Segmentation(
        segments=described.segments, profiles=categories, assignments=assignments, model=model
    )


@dataclass(frozen=True)
class Described:
    segments: pl.DataFrame
    names: list[str]
    actions: list[str | None]
    traits: list[str]


def describe_segments(
    profile: pl.DataFrame,
    categories: pl.DataFrame,
    schema: TableSchema,
    population: dict[str, dict[str, float]],
    vocabulary: Vocabulary | None,
    original_centroids: np.ndarray,
    scaler: Scaler,
    stability: list[float | None],
) -> Described:
    """Names, actions, traits and the segments table from the segments' profiles (by final id):
    the part of the stage that reads aggregates only, the same for both engines."""
    k = profile.height
    grid = vocabulary.grid if vocabulary is not None else None
    cells = grid_cells(profile, grid) if grid is not None else None
    names = name_segments(profile, schema, population, vocabulary)
    actions: list[str | None] = (
        suggest_actions(profile, population, vocabulary) if vocabulary else [None] * k
    )
    traits = distinguishing_traits(profile, categories, schema, population)
    centroid_columns = {
        f"centroid_{column}": original_centroids[:, i] for i, column in enumerate(scaler.columns)
    }
    segments = (
        profile.drop(pl.selectors.starts_with("level_"))
        .with_columns(
            pl.Series("name", names),
            *[pl.Series(name, values) for name, values in centroid_columns.items()],
            pl.Series("stability_jaccard", stability, dtype=pl.Float64),
            *([pl.Series("grid_cell", cells, dtype=pl.String)] if cells is not None else []),
            pl.Series("action", actions, dtype=pl.String),
            pl.Series("traits", traits, dtype=pl.String),
        )
        .select(
            "segment_id",
            "name",
            "size",
            "share",
            *centroid_columns,
            pl.exclude(
                "segment_id", "name", "size", "share", "action", "traits", *centroid_columns
            ),
            "action",
            "traits",
        )
    )
    return Described(segments=segments, names=names, actions=actions, traits=traits)


def segment_model(
    described: Described,
    schema: TableSchema,
    scaler: Scaler,
    centroids: np.ndarray,
    config: ClusterConfig,
    inertia: float,
    silhouette: str,
    seeded: bool,
) -> SegmentModel:
    """The saved model: scaling, centroids (by final id) and each segment's name and action."""
    k = centroids.shape[0]
    return SegmentModel(
        table=schema,
        scaler=ScalerState(**scaler.to_dict()),
        k=k,
        centroids_scaled=tuple(tuple(float(v) for v in row) for row in centroids),
        segments=tuple(
            SegmentEntry(
                segment_id=i,
                name=described.names[i],
                action=described.actions[i],
                traits=described.traits[i],
            )
            for i in range(k)
        ),
        kmeans=KMeansState(
            algorithm=config.algorithm,
            init="k-means++" if seeded else "select-k centres",
            n_init=config.n_init if seeded else 1,
            max_iter=config.max_iter,
            seed=config.seed,
            inertia=inertia,
        ),
        silhouette=silhouette,
    )


def assign_segments(
    customers: pl.DataFrame, unscaled: np.ndarray, model: SegmentModel
) -> pl.DataFrame:
    """Label customers with the nearest centroid of a saved model (plain data, no pickle)."""
    scaler = Scaler.from_dict(model.scaler.model_dump(mode="json"))
    nearest, distance, _ = _nearest_two(scaler.transform(unscaled), model.centroids)
    names = pl.Series([segment.name for segment in model.segments], dtype=pl.String)
    ids = pl.Series("segment_id", nearest, dtype=pl.Int64)
    return pl.DataFrame(
        {
            ID: customers[ID],
            "segment_id": ids,
            "segment_name": names.gather(ids),
            "distance_to_centroid": distance,
        }
    )
