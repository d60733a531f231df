"""Reproducible K-Means customer segmentation."""

from importlib.metadata import version

__version__ = version("segmentation")
