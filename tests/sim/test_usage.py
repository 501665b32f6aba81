"""Usage profiles: request times and costs drawn per user, per day."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sim.usage import TICKS, request_costs, request_times, requests_between

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


def test_many_users_at_once_draw_exactly_what_each_draws_alone() -> None:
    """``requests_between`` (the world's batch for a whole population) gives each user exactly
    the times and costs that ``request_times`` then ``request_costs`` give that user alone, from
    the same generator: constant and Poisson users, with and without a diurnal cycle, bursts, a
    user whose rate is 0, scaled costs of every kind."""
    usages = [
        one_group(constant(600, 7)).groups[0].usage,
        _usage(diurnal_amplitude=0.8, peak_hour=9),
        _usage(diurnal_amplitude=0.0, bursts_per_day=6, burst_minutes=20, burst_factor=8),
        _usage(
            diurnal_amplitude=0.5,
            bursts_per_day=3,
            burst_factor=4,
            cost={"dist": "lognormal", "median": 30, "sigma": 0.9},
        ),
        _usage(requests_per_day=0, diurnal_amplitude=0.3),
        _usage(cost={"dist": "choice", "values": [1, 5, 50], "weights": [0.5, 0.3, 0.2]}),
        replace(_usage(diurnal_amplitude=0.2), cost_scale=1.7),
    ]
    for start, end in [(0.0, 86_400.0), (86_400.0, 2 * 86_400.0), (3_600.0, 5_000.0)]:
        alone_t, alone_c, alone_u = [], [], []
        for position, usage in enumerate(usages):
            rng = np.random.default_rng([9, position, int(start)])
            times = request_times(usage, rng, start, end)
            alone_t.append(times)
            alone_c.append(request_costs(usage, rng, len(times)))
            alone_u.append(np.full(len(times), position))
        rngs = [np.random.default_rng([9, p, int(start)]) for p in range(len(usages))]
        ticks, owners, costs = requests_between(usages, rngs, start, end)
        assert ticks.tolist() == np.concatenate(alone_t).tolist()
        assert owners.tolist() == np.concatenate(alone_u).tolist()
        assert costs.tolist() == np.concatenate(alone_c).tolist()
        assert len(ticks) > 100  # the case is not vacuous
