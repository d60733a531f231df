"""SVG and PNG images of Vega-Lite specs (vl-convert: no browser, no network).

Drawing is most of the visualize stage's time and vl-convert holds Python's global lock while it
draws, so specs are drawn in worker processes, one per core. This module imports nothing but
vl-convert, so that a worker starts quickly.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context, parent_process
from multiprocessing.connection import wait
from typing import Any

import vl_convert as vlc

from segmentation import usable_cores

MAX_WORKERS = 4
"""More workers than this only add start-up time: a run draws about ten charts."""


def stable_svg_ids(svg: str, prefix: str) -> str:
    """Rename the SVG's gradient ids after the chart and their order in the file.

    vl-convert numbers gradients with a per-process counter, so the same chart drawn twice in one
    process would differ; prefixed ids also stay unique when several SVGs share one HTML page.
    """
    numbers: dict[str, int] = {}

    def rename(match: re.Match[str]) -> str:
        return f"{prefix}-gradient-{numbers.setdefault(match.group(0), len(numbers))}"

    return re.sub(r"gradient_\d+", rename, svg)


def draw(name: str, spec: dict[str, Any], png_scale: float) -> tuple[str, bytes]:
    """The chart as SVG, and as PNG rasterised from that SVG (Vega runs once)."""
    svg = stable_svg_ids(vlc.vegalite_to_svg(spec), name)
    return svg, vlc.svg_to_png(svg, scale=png_scale)


WARM_UP = {"mark": "point", "data": {"values": [{"x": 0}]}, "encoding": {"x": {"field": "x"}}}
"""The smallest chart: drawing it starts vl-convert's JavaScript runtime."""


def _start_worker() -> None:
    """Leave Ctrl-C to the main process, which stops the workers and reports it on one line; and
    end with the main process, even when it is killed outright (nothing else would tell us)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = parent_process()
    if parent is not None:

        def exit_with_parent() -> None:
            wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=exit_with_parent, daemon=True).start()
    # The runtime takes about a second to start: start it now, while the charts are being built.
    vlc.vegalite_to_svg(WARM_UP)


class Drawer:
    """Draws specs as they are handed in: in `workers` processes, or here when that is one.

    Use as a context manager; results come back through the futures `submit` returns.
    """

    def __init__(self, png_scale: float, workers: int | None = None) -> None:
        self.png_scale = png_scale
        self.workers = min(usable_cores(), MAX_WORKERS) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Drawer:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=get_context("spawn"), initializer=_start_worker
            )
            # The pool starts a process at each submit while none is idle: start them all now.
            for _ in range(self.workers):
                self._pool.submit(os.getpid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, name: str, spec: dict[str, Any]) -> Future[tuple[str, bytes]]:
        if self._pool is not None:
            return self._pool.submit(draw, name, spec, self.png_scale)
        done: Future[tuple[str, bytes]] = Future()
        done.set_result(draw(name, spec, self.png_scale))
        return done
