"""Reproducible K-Means customer segmentation."""

import os

__version__ = "0.1.0"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container may allow fewer than the
    machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
