"""The monthly auto top-up limit in a run: held top-ups in the events and the summary, one notice
per user and month, the reset at the turn of the month, the scenario key and its sweep."""

from __future__ import annotations

import pytest

from sim import ScenarioError, run, sweep
from sim.scenario import Scenario

from .conftest import constant, one_group, shipped

#: Midnight UTC at the turn of January into February, in seconds from the test run's start.
RESET = 86_400.0


def _capped(limit: int) -> Scenario:
    """One user spending 48,000 credits a day (200 every 6 minutes) on 10,000-credit top-ups,
    from the last day of January into the first of February: a crossing every 5 hours."""
    scenario = one_group(
        constant(360, 200), days=2, auto_topup={"monthly_limit": limit}, latency=1.0
    )
    return scenario.with_overrides({"start": "2026-01-31T00:00:00Z"})


def test_limit_holds_top_ups_tells_once_a_month_and_resumes_at_the_reset() -> None:
    """Under a 20,000-credit limit, two top-ups a month succeed; the next crossing is held
    (``limited`` on the request rows, served or refused), the user is told once each month, and
    the first request of February claims again. The summary counts what was held."""
    results = run(_capped(20_000), backend="memory")
    events = results.events
    month = events["timestamp"].dt.strftime("%Y-%m")
    paid = events[events["kind"] == "topup_succeeded"]
    assert month[paid.index].value_counts().to_dict() == {"2026-01": 2, "2026-02": 2}
    told = events[events["kind"] == "topup_limit_reached"]
    assert list(month[told.index]) == ["2026-01", "2026-02"]
    held = events[(events["trigger"] == "limited").fillna(False)]
    assert set(held["kind"]) == {"request", "refused"}
    january = held[held["time"] < RESET]
    assert len(january) > 0 and told["time"].iloc[0] == january["time"].iloc[0]
    first_of_february = events[
        (events["time"] >= RESET) & events["kind"].isin(["request", "refused"])
    ]
    assert first_of_february["trigger"].iloc[0] == "claimed"
    summary = results.summary.iloc[0]
    assert (summary["requests_held_by_limit"], summary["users_held_by_limit"]) == (len(held), 1)


def test_no_limit_holds_nothing() -> None:
    """0 is no limit (TOML has no null): nothing is held and the top-ups follow the use."""
    results = run(_capped(0), backend="memory")
    assert not (results.events["trigger"] == "limited").fillna(False).any()
    assert results.users["monthly_limit"].isna().all()
    summary = results.summary.iloc[0]
    assert (summary["requests_held_by_limit"], summary["users_held_by_limit"]) == (0, 0)
    assert summary["topups"] > 4


def test_a_sweep_overrides_the_limit() -> None:
    """``auto_topup.monthly_limit`` is a sweep key like any other: each point runs its limit."""
    grid = sweep(_capped(0), {"auto_topup.monthly_limit": [0, 20_000, 30_000]}, workers=1)
    assert list(grid["auto_topup.monthly_limit"]) == [0, 20_000, 30_000]
    assert list(grid["users_held_by_limit"]) == [0, 1, 1]
    assert list(grid["topups"][1:]) == [4, 6] and grid["topups"][0] > 6


def test_scenario_reads_the_limit_per_group() -> None:
    """The scenario's ``[auto_topup] monthly_limit`` applies to every group that does not give
    its own; a group's own (0 included) wins."""
    scenario = shipped("monthly_limit")
    limits = {group.name: group.settings.monthly_limit for group in scenario.groups}
    assert limits == {"steady": 40_000, "busy": 40_000, "team": 5_000}
    lifted = scenario.with_overrides({"groups.team.auto_topup.monthly_limit": 0})
    assert {g.name: g.settings.monthly_limit for g in lifted.groups}["team"] is None


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"auto_topup.monthly_limit": 5_000}, r"toml: auto_topup\.monthly_limit: 5000 is not"
         r" allowed; allowed: 0 \(no limit\), 10000\.\.10000000$"),
        ({"groups.team.auto_topup.monthly_limit": 500}, r"team\.auto_topup\.monthly_limit: 500 is"
         r" not allowed; allowed: 0 \(no limit\), 1000\.\.10000000$"),
        ({"auto_topup.monthly_limit": -1}, r"auto_topup\.monthly_limit: must be >= 0"),
        ({"auto_topup.monthly_limit": "lots"}, r"auto_topup\.monthly_limit: must be a whole"),
    ],
)  # fmt: skip
def test_bad_limit_names_the_key_and_what_it_allows(
    overrides: dict[str, object], says: str
) -> None:
    """A limit the settings refuse is a scenario error naming the dotted key, with the range
    (under the amount would hold every top-up), and says when a group inherited it."""
    with pytest.raises(ScenarioError, match=says):
        shipped("monthly_limit").with_overrides(overrides)


def test_limit_a_group_inherits_under_its_amount_says_so() -> None:
    """A scenario-wide limit under a group's own amount (baseline's heavy users buy 54,000) is
    refused at the group's key, saying where the limit came from."""
    with pytest.raises(
        ScenarioError,
        match=r"heavy\.auto_topup\.monthly_limit: 20000 is not"
        r" allowed; .* \(inherited from \[auto_topup\]; give the group its own\)",
    ):
        shipped("baseline").with_overrides({"auto_topup.monthly_limit": 20_000})


def test_shipped_scenario_holds_top_ups_at_reduced_size() -> None:
    """Even cut to 20 users and a day, the shipped scenario holds the team's top-ups, so the
    tests that run every shipped scenario on every backend compare held top-ups too."""
    results = run(shipped("monthly_limit"), backend="memory")
    assert results.summary.loc[0, "users_held_by_limit"] >= 1
    limits = results.users.groupby("group")["monthly_limit"].unique()
    assert {group: list(values) for group, values in limits.items()} == {
        "busy": [40_000], "steady": [40_000], "team": [5_000],
    }  # fmt: skip
