"""Reading a scenario's TOML tables: typed reads that name the file and the dotted key of any
error, refuse unknown keys, and build the random quantities (``Distribution``) scenarios use.

``sim.scenario`` builds the model from these; a table is read key by key with :meth:`Table.take`
(and friends), then :meth:`Table.done` refuses any key nobody read, so a typo never runs
silently with a default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.stripe_emulator import DECLINE_CODES

#: Seconds in a day and an hour: scenarios speak in hours and days, the clock in seconds.
DAY = 86_400.0
HOUR = 3_600.0

DISTRIBUTIONS = ("fixed", "uniform", "lognormal", "exponential", "choice")


class ScenarioError(ValueError):
    """A scenario file or override is invalid: names the file, the key and what is allowed."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}")
        self.source = source
        self.key = key


_MISSING: Any = object()


class Table:
    """A TOML table being read: typed ``take`` calls, then ``done`` refuses what was not read."""

    def __init__(self, data: object, key: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(source, key or "<top level>", "must be a table")
        self.data, self.key, self.source = data, key, source
        self.read: list[str] = []

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, message: str) -> ScenarioError:
        return ScenarioError(self.source, self.path(name), message)

    def has(self, name: str) -> bool:
        return name in self.data

    def table(self, name: str, default: Mapping[str, Any] | None = None) -> Table:
        self.read.append(name)
        value = self.data.get(name, {} if default is None else default)
        return Table(value, self.path(name), self.source)

    def take(
        self,
        name: str,
        kind: type,
        default: Any = _MISSING,
        *,
        allowed: Sequence[Any] | None = None,
        low: float | None = None,
        high: float | None = None,
        below: float | None = None,
    ) -> Any:
        """Read one scalar, checking its type, its allowed values and its range."""
        self.read.append(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        value = _coerce(value, kind)
        if value is None:
            raise self.error(name, f"must be {_KIND_NAMES[kind]}, got {self.data[name]!r}")
        if allowed is not None and value not in allowed:
            listing = ", ".join(repr(a) for a in allowed)
            raise self.error(name, f"{value!r} is not allowed; allowed: {listing}")
        if low is not None and value < low:
            raise self.error(name, f"must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise self.error(name, f"must be <= {high}, got {value!r}")
        if below is not None and value >= below:
            raise self.error(name, f"must be < {below}, got {value!r}")
        return value

    def numbers(self, name: str, default: Sequence[float] = ()) -> tuple[float, ...]:
        """Read a list of non-negative numbers."""
        self.read.append(name)
        raw = self.data.get(name, list(default))
        values = [_coerce(v, float) for v in raw] if isinstance(raw, list) else [None]
        if any(v is None or v < 0 for v in values):
            raise self.error(name, f"must be a list of numbers >= 0, got {raw!r}")
        return tuple(float(v) for v in values if v is not None)

    def windows(self, name: str) -> tuple[tuple[float, float], ...]:
        """Read a list of ``[start_hour, end_hour]`` pairs."""
        self.read.append(name)
        raw = self.data.get(name, [])
        ok = isinstance(raw, list) and all(
            isinstance(w, list)
            and len(w) == 2
            and all(_coerce(x, float) is not None for x in w)
            and 0 <= float(w[0]) < float(w[1])
            for w in raw
        )
        if not ok:
            raise self.error(name, f"must be a list of [start_hour, end_hour] pairs, got {raw!r}")
        return tuple((float(a) * HOUR, float(b) * HOUR) for a, b in raw)

    def outages(self, days: float) -> tuple[tuple[float, float], ...]:
        """Outage windows in seconds from the start, sorted: ``outages`` (``[start_hour,
        end_hour]`` pairs from the start) and ``daily_outages`` (pairs of hours of the day, 0 to
        24, repeated every day of a ``days``-long run: "every night from 03:00 to 04:00")."""
        once = self.windows("outages")
        daily = self.windows("daily_outages")
        if any(end > DAY for _, end in daily):
            raise self.error("daily_outages", "hours of the day end by 24")
        repeated = [(day + a, day + b) for day in day_starts(days) for a, b in daily]
        return tuple(sorted([*once, *repeated]))

    def done(self) -> None:
        """Refuse any key that was not read."""
        for name in self.data:
            if name not in self.read:
                allowed = ", ".join(sorted(set(self.read)))
                raise self.error(name, f"unknown key; allowed here: {allowed}")


def day_starts(days: float) -> list[float]:
    """The start of each day a ``days``-long run reaches into, in seconds from its start: what a
    daily schedule repeats over (a run of 2.5 days reaches into its third day)."""
    return [day * DAY for day in range(math.ceil(days))]


_KIND_NAMES = {
    int: "a whole number",
    float: "a finite number",
    str: "a string",
    bool: "true or false",
}


def _coerce(value: object, kind: type) -> Any:
    """``value`` as ``kind`` if it is one (an int counts as a float, a bool as a bool only; a
    float must be finite: TOML's ``inf`` and ``nan``, and integers past a float's range, which
    TOML reads whole, are numbers no setting means)."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float:
        if not isinstance(value, int | float):
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer past a float's range
            return None
        return number if math.isfinite(number) else None
    return value if isinstance(value, kind) else None


@dataclass(frozen=True, slots=True)
class Distribution:
    """A random quantity: ``fixed``, ``uniform``, ``lognormal``, ``exponential`` or ``choice``."""

    dist: str
    value: float = 0.0
    low: float = 0.0
    high: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    mean: float = 0.0
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values (a fixed distribution draws nothing, so it consumes no randomness)."""
        if self.dist == "fixed":
            return np.full(n, self.value)
        if self.dist == "uniform":
            return rng.uniform(self.low, self.high, n)
        if self.dist == "lognormal":
            return rng.lognormal(math.log(self.median), self.sigma, n)
        if self.dist == "exponential":
            return rng.exponential(self.mean, n)
        return rng.choice(np.asarray(self.values), n, p=np.asarray(self.weights))

    def expected(self) -> float:
        """The mean (before any rounding the caller applies)."""
        if self.dist == "fixed":
            return self.value
        if self.dist == "uniform":
            return (self.low + self.high) / 2
        if self.dist == "lognormal":
            return self.median * math.exp(self.sigma**2 / 2)
        if self.dist == "exponential":
            return self.mean
        return float(np.dot(self.values, self.weights))


def read_distribution(t: Table) -> Distribution:
    dist = t.take("dist", str, allowed=DISTRIBUTIONS)
    out: Distribution
    if dist == "fixed":
        out = Distribution(dist, value=t.take("value", float, low=0))
    elif dist == "uniform":
        low = t.take("low", float, low=0)
        out = Distribution(dist, low=low, high=t.take("high", float, low=low))
    elif dist == "lognormal":
        out = Distribution(
            dist, median=t.take("median", float, low=1e-9), sigma=t.take("sigma", float, low=0)
        )
    elif dist == "exponential":
        out = Distribution(dist, mean=t.take("mean", float, low=0))
    else:
        values, weights = t.numbers("values"), t.numbers("weights")
        if not values or len(values) != len(weights) or not math.isclose(sum(weights), 1.0):
            raise t.error("weights", "needs one weight per value, summing to 1")
        out = Distribution(dist, values=values, weights=weights)
    t.done()
    return out


def read_declines(t: Table) -> tuple[tuple[str, float], ...]:
    """A per-charge decline law: decline code -> chance, the chances adding up to at most 1."""
    for code in t.data:
        if code not in DECLINE_CODES:
            raise t.error(code, f"unknown decline code; allowed: {', '.join(DECLINE_CODES)}")
    law = tuple((code, float(t.take(code, float, low=0, high=1))) for code in list(t.data))
    if sum(rate for _, rate in law) > 1.0 + 1e-9:
        raise ScenarioError(t.source, t.key, "the chances of declines must add up to at most 1")
    t.done()
    return law
