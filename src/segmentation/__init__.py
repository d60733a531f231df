"""Reproducible K-Means customer segmentation."""

import os
from importlib.metadata import version

__version__ = version("segmentation")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container may allow fewer than the
    machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
