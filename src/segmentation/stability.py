"""How a segment's bootstrap stability reads in words (fpc::clusterboot's classes).

Kept apart from select_k so that the stages that only word the figures (visualize, report) do not
import the fitting libraries.
"""

from __future__ import annotations

# fpc::clusterboot's reading of a segment's mean Jaccard similarity across resamples.
STABILITY_CLASSES = (
    (0.85, "highly stable"),
    (0.75, "stable"),
    (0.6, "doubtful"),
    (0.0, "unstable"),
)


def stability_class(jaccard: float) -> str:
    """The clusterboot class of a mean Jaccard similarity: above 0.85 highly stable, above 0.75
    stable, above 0.6 doubtful, else unstable."""
    return next(
        name for threshold, name in STABILITY_CLASSES if jaccard > threshold or threshold == 0.0
    )
