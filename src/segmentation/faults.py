"""Named points where a run can be made to fail on purpose, so that tests kill it at a known place.

A test sets ``SEGMENTATION_FAULT=<point>[:<action>[:<nth>]]`` for a ``segment`` process; the nth
time (the first by default) that process reaches the point, it sends itself a signal:

- ``kill``: SIGKILL (the default), as a power cut or ``kill -9``: nothing gets to clean up;
- ``interrupt``: SIGINT, as Ctrl-C;
- ``stop``: SIGSTOP, so that a test can act while the run waits there (holding the lock, say),
  then let it go on with SIGCONT.

Unset, the variable costs one dictionary lookup per point. A point or action that is not in the
lists is refused, so that a misspelt fault fails the test instead of testing nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import NamedTuple

from segmentation.errors import ConfigError

VARIABLE = "SEGMENTATION_FAULT"
POINTS = (
    "lock.held",
    "customers.written",
    "customers.stored",
    "prepare.written",
    "prepare.stored",
    "select-k.written",
    "select-k.stored",
    "cluster.written",
    "cluster.stored",
    "visualize.written",
    "visualize.stored",
    "report.written",
    "manifest.written",
    "report.moved",
    "latest.linked",
    "latest.switched",
    "atomic.written",
)
"""Every named point, in the order a run that builds a version reaches them.

``lock.held``: the run holds the folder's lock and has not touched anything yet.
``<stage>.written``: the stage's outputs are written in the staging folder.
``<stage>.stored``: they are also in the stage cache (the report stage is not cached).
``manifest.written``: the version is whole in the staging folder, not yet renamed into place.
``report.moved``: the report folder is in place, the artifacts folder not yet.
``latest.linked``: a temporary link to the new version is made beside ``latest``, not yet renamed
over it; reached for artifacts/ first, then for reports/ (so the 2nd time, only one is switched).
``latest.switched``: ``latest`` points at the new version; artifacts/ first, then reports/.
``atomic.written``: a file's content is written under a temporary name beside it, not yet renamed
into place; reached by every file the run writes.
"""
ACTIONS = {"kill": signal.SIGKILL, "interrupt": signal.SIGINT, "stop": signal.SIGSTOP}

_reached: Counter[str] = Counter()
"""How many times this process has reached each point."""


class Fault(NamedTuple):
    point: str
    action: str
    nth: int


def planned() -> Fault | None:
    """The fault the environment asks for.

    Returns
    -------
    Fault or None
        The point, the action and which time the point is reached; None when the variable is unset
        or empty.

    Raises
    ------
    ConfigError
        If the point or the action is unknown, or the count is not a positive whole number.
    """
    value = os.environ.get(VARIABLE, "")
    if not value:
        return None
    point, _, rest = value.partition(":")
    action, _, nth = rest.partition(":")
    action = action or "kill"
    if point not in POINTS:
        raise ConfigError(
            f"{VARIABLE}={value}: unknown point {point!r}; one of {', '.join(POINTS)}"
        )
    if action not in ACTIONS:
        raise ConfigError(
            f"{VARIABLE}={value}: unknown action {action!r}; one of {', '.join(ACTIONS)}"
        )
    if nth and not (nth.isdigit() and int(nth) > 0):
        raise ConfigError(f"{VARIABLE}={value}: {nth!r} is not a positive count")
    return Fault(point, action, int(nth or 1))


def reach(point: str) -> None:
    """Mark that the run has reached `point`; fail there if the environment asks for it.

    Parameters
    ----------
    point
        One of `POINTS`.

    Raises
    ------
    ValueError
        If `point` is not one of `POINTS` (a call site the list does not document).
    ConfigError
        If the environment's fault is malformed (see `planned`).
    KeyboardInterrupt
        When the fault's action is ``interrupt`` and this is its point and count.
    """
    if point not in POINTS:
        raise ValueError(f"{point}: not one of segmentation.faults.POINTS")
    _reached[point] += 1
    fault = planned()
    if fault is not None and fault.point == point and _reached[point] == fault.nth:
        signal.raise_signal(ACTIONS[fault.action])
