"""Fault schedules that repeat every day (``daily_outages``, ``flush_daily_at_hours``): written
once, expanded over the run's days, and failing where the hand count says."""

from __future__ import annotations

from typing import Any

import pytest

from sim import ScenarioError, parse_scenario, run

HOUR = 3_600.0


def _scenario(faults: dict[str, Any], days: float = 3.0) -> dict[str, Any]:
    """One user, a request every 10 minutes, auto top-up off."""
    return {
        "name": "daily", "users": 1, "days": days, "seed": 1,
        "auto_topup": {"enabled": False},
        "groups": {"g": {"share": 1.0, "balance": 10**9, "usage": {
            "arrivals": "constant", "requests_per_day": 144,
            "cost": {"dist": "fixed", "value": 1},
        }}},
        "faults": faults,
    }  # fmt: skip


def test_daily_outages_repeat_on_every_day_of_the_run() -> None:
    """03:00-04:00 every day of a 2.5-day run, plus a one-off window: the windows in seconds,
    in order, the third day's included because the run reaches into it."""
    scenario = parse_scenario(_scenario(
        {"gateway": {"daily_outages": [[3, 4]], "outages": [[10, 11]]}}, days=2.5,
    ), "t.toml")  # fmt: skip
    hours = [(a / HOUR, b / HOUR) for a, b in scenario.faults.gateway.outages]
    assert hours == [(3, 4), (10, 11), (27, 28), (51, 52)]


def test_a_nightly_store_outage_fails_the_requests_inside_it_every_night() -> None:
    """A store down 03:00-04:00 fails exactly the 6 requests of that hour (03:00 to 03:50), on
    each of the 3 nights, and none outside."""
    events = run(
        parse_scenario(_scenario({"store": {"daily_outages": [[3, 4]]}}), "t.toml"),
        seed=1, backend="memory", gateway="direct",
    ).events  # fmt: skip
    failed = events.loc[events["kind"] == "request_failed", "time"]
    expected = [day * 24 * HOUR + 3 * HOUR + 600 * k for day in range(3) for k in range(6)]
    assert failed.tolist() == expected


def test_daily_flushes_happen_at_their_hour_every_day() -> None:
    """``flush_daily_at_hours = [2]`` flushes the cache at 02:00 each day."""
    events = run(
        parse_scenario(_scenario({"cache": {"flush_daily_at_hours": [2]}}), "t.toml"),
        seed=1, backend="memory", gateway="direct",
    ).events  # fmt: skip
    flushes = events.loc[events["kind"] == "cache_flush", "time"].tolist()
    assert flushes == [2 * HOUR, 26 * HOUR, 50 * HOUR]


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"gateway": {"daily_outages": [[23, 25]]}}, r"gateway\.daily_outages: hours of the day"),
        ({"store": {"daily_outages": [[4, 3]]}}, r"store\.daily_outages: must be a list"),
        ({"cache": {"flush_daily_at_hours": [24]}}, r"cache\.flush_daily_at_hours"),
    ],
)
def test_bad_daily_schedules_are_refused_by_name(faults: dict[str, Any], message: str) -> None:
    """Errors name the dotted key."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(faults), "t.toml")
