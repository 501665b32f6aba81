"""Symmetric-log axes labelled in plain numbers.

A symmetric-log scale shows zeros, small values and large ones on one axis (crossings claimed at
once and those that wait hours; a rare decline beside thousands of credited top-ups), but
matplotlib labels it ``0``, ``10^0``, ``10^1``. Readers want ``0, 1, 10, 100, 1,000``.
"""

from __future__ import annotations

import math
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator


def plain_symlog(
    ax: Axes, axis: Literal["x", "y"], *, linthresh: float, top: float, room: float = 1.0
) -> None:
    """Make ``axis`` of ``ax`` symmetric-log, linear up to ``linthresh``, with ticks at 0 and at
    ``linthresh`` times each power of ten up to the first at or above ``top``, labelled with
    thousands separators; the axis runs from a little below 0 (so that a line or bar at 0 is not
    hidden under the spine) to that last tick times ``room`` (above 1 to leave space for labels
    written past the largest value)."""
    decades = max(0, math.ceil(math.log10(max(top / linthresh, 1.0)) - 1e-9))
    ticks = [0.0, *(linthresh * 10.0**k for k in range(decades + 1))]
    scale = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("symlog", linthresh=linthresh)
    scale.set_major_locator(FixedLocator(ticks))
    scale.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,g}"))
    scale.set_minor_locator(NullLocator())
    (ax.set_xlim if axis == "x" else ax.set_ylim)(-0.1 * linthresh, ticks[-1] * room)
