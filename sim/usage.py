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
from collections.abc import Sequence

import numpy as np

from .scenario import DAY, Usage

#: Simulation ticks per second: SimPy time is integer milliseconds.
TICKS = 1000


def request_times(usage: Usage, rng: np.random.Generator, start: float, end: float) -> np.ndarray:
    """Sorted request times in ``[start, end)`` seconds, as int64 ticks since the start."""
    if usage.arrivals == "constant":
        return _constant_times(usage, start, end)
    times, thinning = _draw(usage, rng, start, end)
    keep = _kept(times, thinning, usage.diurnal_amplitude, usage.peak_hour)
    out = np.rint(times[keep] * TICKS).astype(np.int64)
    out.sort()
    return out[out < round(end * TICKS)]


def request_costs(usage: Usage, rng: np.random.Generator, n: int) -> np.ndarray:
    """Credits per request: drawn from the cost distribution, times the user's ``cost_scale``,
    rounded, at least 1."""
    return _credits(usage.cost.sample(rng, n), usage.cost_scale)


def requests_between(
    usages: Sequence[Usage], rngs: Sequence[np.random.Generator], start: float, end: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every user's requests in ``[start, end)``: ticks, the user's position in ``usages``, and
    credits; user after user, each user's own in time order.

    Exactly what :func:`request_times` then :func:`request_costs` give user after user (each user
    draws from its own generator, in the same order), but the arithmetic between the draws (the
    diurnal thinning, the rounding to ticks, the sort, the costs' scaling) runs once over every
    user's draws instead of once per user: a day of a thousand users is a few thousand numpy
    calls on small arrays otherwise, a tenth of a month's run.
    """
    times, thinning, owners, amplitudes, peak_hours = [], [], [], [], []
    ticks, tick_owners = [], []
    for position, (usage, rng) in enumerate(zip(usages, rngs, strict=True)):
        if usage.arrivals == "constant":
            exact = _constant_times(usage, start, end)
            ticks.append(exact)
            tick_owners.append(np.full(len(exact), position, dtype=np.int64))
            continue
        drawn, thin = _draw(usage, rng, start, end)
        times.append(drawn)
        # Without a cycle nothing was drawn to thin with; a zero with an amplitude of 0 makes
        # the test 0 < 1, which keeps every candidate, as the one-user path does.
        thinning.append(np.zeros(len(drawn)) if thin is None else thin)
        owners.append(position)
        amplitudes.append(usage.diurnal_amplitude)
        peak_hours.append(usage.peak_hour)
    if times:
        counts = [len(t) for t in times]
        every = np.concatenate(times)
        amplitude = np.repeat(amplitudes, counts)
        keep = _kept(every, np.concatenate(thinning), amplitude, np.repeat(peak_hours, counts))
        ticks.append(np.rint(every[keep] * TICKS).astype(np.int64))
        tick_owners.append(np.repeat(np.asarray(owners, dtype=np.int64), counts)[keep])
    if not ticks:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    all_ticks, all_owners = np.concatenate(ticks), np.concatenate(tick_owners)
    inside = all_ticks < round(end * TICKS)
    all_ticks, all_owners = all_ticks[inside], all_owners[inside]
    order = np.lexsort((all_ticks, all_owners))
    all_ticks, all_owners = all_ticks[order], all_owners[order]
    per_user = np.bincount(all_owners, minlength=len(usages)).tolist()
    drawn_costs = [
        usage.cost.sample(rng, n).astype(np.float64)
        for usage, rng, n in zip(usages, rngs, per_user, strict=True)
    ]
    scale = np.repeat([usage.cost_scale for usage in usages], per_user)
    return all_ticks, all_owners, _credits(np.concatenate(drawn_costs), scale)


def _constant_times(usage: Usage, start: float, end: float) -> np.ndarray:
    """Constant arrivals in ``[start, end)``: exact, and drawing nothing."""
    if usage.requests_per_day <= 0:  # a user whose rate factor came out 0
        return np.empty(0, dtype=np.int64)
    interval, shift = DAY / usage.requests_per_day, usage.phase_seconds
    first = max(1, math.ceil((start + shift) / interval))
    k = np.arange(first, math.ceil((end + shift) / interval) + 1, dtype=np.float64)
    times = k * interval - shift
    return np.rint(times[(times >= start) & (times < end)] * TICKS).astype(np.int64)


def _draw(
    usage: Usage, rng: np.random.Generator, start: float, end: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """A Poisson user's draws for ``[start, end)``, before thinning: candidate times in seconds
    (the base process, then each burst's) and the uniforms that thin them by the diurnal cycle
    (``None`` without a cycle). The order of draws from ``rng`` is the run's randomness: keep it."""
    rate = usage.requests_per_day / DAY
    drawn, thin = _candidates(usage, rng, rate, start, end)
    parts, thin_parts = [drawn], [thin]
    if usage.bursts_per_day and usage.burst_factor > 1:
        n_bursts = rng.poisson(usage.bursts_per_day * (end - start) / DAY)
        for burst_start in np.sort(rng.uniform(start, end, n_bursts)):
            burst_end = min(burst_start + usage.burst_minutes * 60, end)
            extra = rate * (usage.burst_factor - 1)
            drawn, thin = _candidates(usage, rng, extra, burst_start, burst_end)
            parts.append(drawn)
            thin_parts.append(thin)
    times = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if not usage.diurnal_amplitude:
        return times, None
    return times, thin_parts[0] if len(thin_parts) == 1 else np.concatenate(thin_parts)


def _candidates(
    usage: Usage, rng: np.random.Generator, rate: float, start: float, end: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """A Poisson process of mean ``rate`` per second at the diurnal cycle's peak, and the
    uniforms that thin it to the cycle (thinning is exact)."""
    peak = 1 + usage.diurnal_amplitude
    n = rng.poisson(rate * peak * (end - start))
    times = rng.uniform(start, end, n)
    return times, (rng.random(n) if usage.diurnal_amplitude else None)


def _kept(
    times: np.ndarray,
    thinning: np.ndarray | None,
    amplitude: float | np.ndarray,
    peak_hour: float | np.ndarray,
) -> np.ndarray | slice:
    """Which candidate times the diurnal cycle keeps (scalars for one user, or one value per
    candidate for many: the same arithmetic, element by element)."""
    if thinning is None:
        return slice(None)
    phase = 2 * np.pi * (times / DAY - peak_hour / 24)
    return thinning * (1 + amplitude) < 1 + amplitude * np.cos(phase)


def _credits(drawn: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """Drawn costs times the user's scale, rounded to whole credits, at least 1."""
    return np.maximum(np.rint(drawn * scale), 1).astype(np.int64)
