"""Usage traces: real request logs that drive a group of users instead of a usage profile, and a
profile fitted to a trace.

A trace is a CSV or Parquet file with one row per request and three columns:

=============  ==========================================================================
``user``       who sent it: any id (each distinct id is one user of the trace)
``timestamp``  when: seconds from the run's start (a number), or a time with its zone
               (ISO 8601, e.g. ``2026-01-01T09:30:00Z``), placed against the scenario's ``start``
``credits``    what it cost: a whole number >= 1
=============  ==========================================================================

A group with ``arrivals = "trace"`` and ``trace = "<file>"`` (a path relative to the scenario
file) replays it: the group's k-th user sends exactly the requests of the trace's k-th user (ids
sorted; with more users than the trace has, the trace's users are used again in turn). Requests
outside the run (before its start, at or after its end) are left out. :func:`fit_usage` turns a
trace into a usage table for a scenario, to run "our users, at other thresholds" or at another
size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .tables import DAY, HOUR, ScenarioError

#: A trace's columns, in the order the format above lists them.
TRACE_COLUMNS = ("user", "timestamp", "credits")


@dataclass(frozen=True)
class Trace:
    """A loaded trace: per user (ids sorted), request times in seconds from the run's start
    (sorted) and their costs in credits."""

    path: str
    users: tuple[str, ...]
    times: tuple[np.ndarray, ...]
    credits: tuple[np.ndarray, ...]

    @property
    def requests(self) -> int:
        """Requests in the trace, all users."""
        return sum(len(t) for t in self.times)

    @property
    def requests_per_user_day(self) -> float:
        """The mean rate of one user: requests per user over the days the trace spans (an hour
        at the least)."""
        times = np.concatenate(self.times)
        span_days = max(float(times.max() - times.min()) / DAY, 1 / 24)
        return self.requests / len(self.users) / span_days


def load_trace(path: str | Path, start: float) -> Trace:
    """Read and check a trace (see the module docstring); ``start`` is the run's start epoch,
    against which timestamps with a zone are placed. Raises ``ScenarioError`` naming the file,
    the column and the first bad row."""
    resolved = Path(path).resolve()
    if resolved.is_dir():
        raise ScenarioError(str(path), "trace", "is a directory; give a CSV or Parquet file")
    if not resolved.is_file():
        raise ScenarioError(str(path), "trace", "no such file")
    return _load(str(resolved), resolved.stat().st_mtime_ns, start)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, start: float) -> Trace:
    """The trace at ``path`` as of ``mtime_ns`` (cached: a sweep's points share one read)."""
    del mtime_ns  # part of the cache key only: an edited file is read again
    try:
        frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(path, "trace", f"cannot be read: {reason}") from exc
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if missing:
        columns = ", ".join(TRACE_COLUMNS)
        raise ScenarioError(path, missing[0], f"missing column; a trace has {columns}")
    if frame.empty:
        raise ScenarioError(path, "trace", "has no rows")
    seconds = _seconds(frame["timestamp"], path, start)
    credits = pd.to_numeric(frame["credits"], errors="coerce")
    bad = ~(credits.notna() & (credits >= 1) & (credits == credits.round()))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raw = frame["credits"].tolist()[row]
        raise ScenarioError(path, "credits", f"row {row + 2}: {raw!r} is not a whole number >= 1")
    table = pd.DataFrame(
        {"user": frame["user"].astype(str), "t": seconds, "c": credits.astype(np.int64)}
    ).sort_values(["user", "t"], kind="stable")
    users, times, costs = [], [], []
    for user, rows in table.groupby("user", sort=True):
        users.append(str(user))
        times.append(rows["t"].to_numpy(dtype=np.float64))
        costs.append(rows["c"].to_numpy(dtype=np.int64))
    return Trace(path, tuple(users), tuple(times), tuple(costs))


def _seconds(column: pd.Series, path: str, start: float) -> np.ndarray:
    """Timestamps as seconds from the run's start: numbers as they are, times with a zone
    against ``start``."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        values = numbers.to_numpy(dtype=np.float64)
    else:
        values = np.empty(len(column))
        for row, (raw, number) in enumerate(zip(column.tolist(), numbers.tolist(), strict=True)):
            if number == number:  # not NaN: this row is seconds
                values[row] = number
                continue
            when = raw if isinstance(raw, datetime) else _iso(raw)
            if when is None or when.tzinfo is None:
                raise ScenarioError(path, "timestamp", f"row {row + 2}: {raw!r} is neither "
                                    "seconds nor a time with its zone")  # fmt: skip
            values[row] = when.timestamp() - start
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ScenarioError(path, "timestamp", f"row {row + 2}: not a finite time")
    return values


def _iso(raw: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        return None


def fit_usage(trace: Trace) -> dict[str, Any]:
    """A usage table (as a scenario writes it) fitted to ``trace``: Poisson arrivals at the
    trace's mean rate per user, a diurnal cycle from the first harmonic of the hours of the day
    (amplitude and peak hour), and a lognormal cost (median and sigma of the log). Bursts are
    not fitted."""
    times = np.concatenate(trace.times)
    costs = np.concatenate(trace.credits).astype(np.float64)
    angle = 2 * np.pi * (times % DAY) / DAY
    a, b = float(np.cos(angle).mean()), float(np.sin(angle).mean())
    # For a density 1 + A cos(angle - peak), the mean of cos(angle - peak) is A / 2.
    amplitude = min(2 * math.hypot(a, b), 0.95)
    peak_hour = (math.atan2(b, a) * DAY / (2 * np.pi) / HOUR) % 24
    logs = np.log(costs)
    return {
        "arrivals": "poisson",
        "requests_per_day": round(trace.requests_per_user_day, 3),
        "diurnal_amplitude": round(amplitude, 3),
        "peak_hour": round(peak_hour, 2),
        "cost": {
            "dist": "lognormal",
            "median": round(float(np.exp(logs.mean())), 3),
            "sigma": round(float(logs.std()), 3),
        },
    }
