"""Usage profiles: when a user sends requests and what each costs, drawn in vectorised batches.

A user's requests for a whole chunk of time (one simulated day) are drawn at once with numpy from
the user's own generator, instead of one SimPy timeout per request: the world merges every user's
batch and steps through it in time order, so the semantics are exact and the cost is one array
operation per user per day.

Poisson usage is a non-homogeneous Poisson process: a base rate shaped by a diurnal cosine
(drawn by thinning, which is exact), plus bursts that multiply the rate by ``burst_factor`` for
``burst_minutes``. A burst is the superposition of a second Poisson process over its window, and is
cut at the chunk's end. Constant usage sends one request every ``86400 / requests_per_day``
seconds, the first one interval after the start (the case with a closed-form answer), or, with
``random_phase``, ``phase_seconds`` earlier: a user's own offset within the first interval.

Times are whole milliseconds (the world's tick), so simulated time is exact integer arithmetic
and the event log does not depend on the last bit a platform's ``cos`` returns.
"""

from __future__ import annotations

import math

import numpy as np

from .scenario import DAY, Usage

#: Simulation ticks per second: SimPy time is integer milliseconds.
TICKS = 1000


def request_times(usage: Usage, rng: np.random.Generator, start: float, end: float) -> np.ndarray:
    """Sorted request times in ``[start, end)`` seconds, as int64 ticks since the start."""
    if usage.arrivals == "constant":
        if usage.requests_per_day <= 0:  # a user whose rate factor came out 0
            return np.empty(0, dtype=np.int64)
        interval, shift = DAY / usage.requests_per_day, usage.phase_seconds
        first = max(1, math.ceil((start + shift) / interval))
        k = np.arange(first, math.ceil((end + shift) / interval) + 1, dtype=np.float64)
        times = k * interval - shift
        return np.rint(times[(times >= start) & (times < end)] * TICKS).astype(np.int64)
    rate = usage.requests_per_day / DAY
    times = [_poisson(usage, rng, rate, start, end)]
    if usage.bursts_per_day and usage.burst_factor > 1:
        n_bursts = rng.poisson(usage.bursts_per_day * (end - start) / DAY)
        for burst_start in np.sort(rng.uniform(start, end, n_bursts)):
            burst_end = min(burst_start + usage.burst_minutes * 60, end)
            extra = rate * (usage.burst_factor - 1)
            times.append(_poisson(usage, rng, extra, burst_start, burst_end))
    out = np.rint(np.concatenate(times) * TICKS).astype(np.int64)
    out.sort()
    return out[out < round(end * TICKS)]


def _poisson(
    usage: Usage, rng: np.random.Generator, rate: float, start: float, end: float
) -> np.ndarray:
    """A Poisson process of mean ``rate`` per second, shaped by the diurnal cycle (thinning)."""
    peak = 1 + usage.diurnal_amplitude
    n = rng.poisson(rate * peak * (end - start))
    times = rng.uniform(start, end, n)
    if usage.diurnal_amplitude:
        phase = 2 * np.pi * (times / DAY - usage.peak_hour / 24)
        keep = rng.random(n) * peak < 1 + usage.diurnal_amplitude * np.cos(phase)
        times = times[keep]
    return times


def request_costs(usage: Usage, rng: np.random.Generator, n: int) -> np.ndarray:
    """Credits per request: drawn from the cost distribution, times the user's ``cost_scale``,
    rounded, at least 1."""
    drawn = usage.cost.sample(rng, n) * usage.cost_scale
    return np.maximum(np.rint(drawn), 1).astype(np.int64)
