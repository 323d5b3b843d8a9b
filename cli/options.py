"""Parse-time checks of option values: a bad value is one usage line (exit 2)
before any model, input or output is touched, never an internal error later.

Bounds are wide enough for any real job and narrow enough that no later
arithmetic or allocation can overflow: a batch of 65,536 examples is 1.6 GB of
log-mel input; a hop or commit interval of a day.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

MAX_BATCH_SIZE = 65_536
MAX_SECONDS = 86_400.0
MAX_PROCESSES = 1_024
# The longest name the job puts beside its output: OUT.failures.csv, and OUT.partial/ with its journal.
COMPANION_SUFFIX_BYTES = len(".failures.csv.partial")


def seconds(zero_allowed: bool = False) -> Callable[[Optional[float]], Optional[float]]:
    """A finite number of seconds in (0, MAX_SECONDS], or [0, MAX_SECONDS] when ``zero_allowed``."""
    def check(value: Optional[float]) -> Optional[float]:
        if value is not None and not (math.isfinite(value) and (0.0 <= value if zero_allowed else 0.0 < value)
                                      and value <= MAX_SECONDS):
            raise typer.BadParameter(f"must be a finite number of seconds, {'0' if zero_allowed else 'above 0'} to "
                                     f"{MAX_SECONDS:,.0f} (a day); got {value}")
        return value
    return check


def count(low: int, high: int) -> Callable[[Optional[int]], Optional[int]]:
    """An integer in [low, high]."""
    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"must be from {low:,} to {high:,}, got {value:,}")
        return value
    return check


def output_path(value: Optional[Path]) -> Optional[Path]:
    """An output name that leaves room, within the file system's name limit, for the companions beside it."""
    if value is None:
        return value
    directory = value.parent if str(value.parent) else Path(".")
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    length = len(os.fsencode(value.name))
    if length + COMPANION_SUFFIX_BYTES > limit:
        raise typer.BadParameter(f"the name is {length} bytes; at most {limit - COMPANION_SUFFIX_BYTES} here, to leave "
                                 "room for the files written beside it (.partial, .index.csv, .failures.csv)")
    return value
