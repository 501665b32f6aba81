"""Billing period arithmetic: calendar months and years, as Stripe bills them.

A monthly subscription anchored on the 31st renews on the last day of shorter months and returns to
the 31st afterwards, so periods are computed from the anchor (the n-th period end), never by adding
a month to the previous end.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta


def period_end(anchor: int, interval: str, count: int, n: int) -> int:
    """Epoch seconds of the end of the ``n``-th period (1-based) after ``anchor``."""
    start = datetime.fromtimestamp(anchor, UTC)
    steps = count * n
    if interval == "day":
        return int((start + timedelta(days=steps)).timestamp())
    if interval == "week":
        return int((start + timedelta(weeks=steps)).timestamp())
    months = steps * 12 if interval == "year" else steps
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())
