"""Usage profiles: request times and costs drawn per user, per day."""

from __future__ import annotations

import numpy as np

from sim.usage import TICKS, request_costs, request_times

from .conftest import constant, one_group


def _usage(**fields: object):  # type: ignore[no-untyped-def]
    table = {"requests_per_day": 1000, "cost": {"dist": "fixed", "value": 10}} | fields
    return one_group(table).groups[0].usage


def test_constant_arrivals_are_exact() -> None:
    """Constant usage sends a request every interval, the first one interval after the start."""
    usage = one_group(constant(60, 5)).groups[0].usage
    times = request_times(usage, np.random.default_rng(0), 0, 600)
    assert times.tolist() == [k * 60 * TICKS for k in range(1, 10)]
    assert request_times(usage, np.random.default_rng(0), 600, 660).tolist() == [600 * TICKS]


def test_poisson_rate_matches_requests_per_day() -> None:
    """Poisson usage averages requests_per_day, diurnal cycle included."""
    usage = _usage(diurnal_amplitude=0.8)
    rng = np.random.default_rng(1)
    counts = [len(request_times(usage, rng, d * 86400.0, (d + 1) * 86400.0)) for d in range(40)]
    assert abs(np.mean(counts) / 1000 - 1) < 0.02


def test_diurnal_cycle_peaks_at_peak_hour() -> None:
    """More requests arrive around peak_hour than twelve hours away from it."""
    usage = _usage(diurnal_amplitude=0.9, peak_hour=14)
    hours = request_times(usage, np.random.default_rng(2), 0, 20 * 86400.0) / TICKS / 3600 % 24
    near = ((hours > 12) & (hours < 16)).sum()
    far = (hours < 4).sum()
    assert near > 5 * far


def test_bursts_add_requests() -> None:
    """Bursts add burst_factor-1 times the base rate for burst_minutes each."""
    usage = _usage(bursts_per_day=4, burst_minutes=30, burst_factor=11)
    rng = np.random.default_rng(3)
    total = sum(len(request_times(usage, rng, d * 86400.0, (d + 1) * 86400.0)) for d in range(30))
    expected = 1000 * (1 + 4 * 1800 / 86400 * 10) * 30
    assert abs(total / expected - 1) < 0.05


def test_times_are_sorted_whole_milliseconds_inside_the_chunk() -> None:
    """Times are int64 ticks, sorted, inside [start, end)."""
    times = request_times(
        _usage(bursts_per_day=5, burst_factor=5), np.random.default_rng(4), 0, 3600
    )
    assert times.dtype == np.int64
    assert (np.diff(times) >= 0).all() and times.min() >= 0 and times.max() < 3600 * TICKS


def test_costs_are_whole_credits_of_at_least_one() -> None:
    """Costs are rounded to whole credits and never below 1."""
    usage = _usage(cost={"dist": "lognormal", "median": 1, "sigma": 1.5})
    costs = request_costs(usage, np.random.default_rng(5), 1000)
    assert costs.dtype == np.int64 and costs.min() >= 1
