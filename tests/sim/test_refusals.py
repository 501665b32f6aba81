"""What users do when a request is refused (``[groups.<name>.reactions]``): send it again, give
up for the day, or leave for good; each against a hand count or its closed form."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from sim import Results, ScenarioError, parse_scenario, run


def _scenario(
    reactions: dict[str, Any], *, balance: int, topup: bool = False, users: int = 1,
    days: float = 0.5, cost: int = 100, cooldown_hours: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """Users who send a ``cost``-credit request every minute (at 60 s, 120 s, ...); with
    ``topup``, a 1,000-credit top-up under 1,000 credits (claimed at once at the start when the
    balance is under it) and a one-second charge."""
    return {
        "name": "refusals", "users": users, "days": days, "seed": 6,
        "billing": {"cooldown_hours": cooldown_hours},
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"enabled": topup, "threshold": 1000, "amount": 1000},
        "groups": {"g": {
            "share": 1.0, "balance": balance, "reactions": reactions,
            "usage": {"arrivals": "constant", "requests_per_day": 1_440,
                      "cost": {"dist": "fixed", "value": cost}},
        }},
    }  # fmt: skip


def _run(raw: dict[str, Any]) -> Results:
    return run(parse_scenario(raw, "t.toml"), seed=6, backend="memory", gateway="direct")


def _rows(events: pd.DataFrame, *kinds: str) -> list[tuple[float, str, Any]]:
    rows = events[events["kind"].isin(kinds)]
    outcomes = [None if pd.isna(o) else o for o in rows["outcome"]]
    return list(zip(rows["time"], rows["kind"], outcomes, strict=True))


def test_a_refused_request_is_sent_again_after_its_delay() -> None:
    """250 credits: served at 60 s and 120 s, refused at 180 s, then sent again at 190 s and
    200 s (``retries`` 2, 10 s apart), refused both times and marked ``retry``."""
    events = _run(_scenario(
        {"retries": 2, "retry_after_seconds": {"dist": "fixed", "value": 10}}, balance=250,
        days=1 / 24,
    )).events  # fmt: skip
    assert _rows(events[events["time"] <= 200], "request", "refused") == [
        (60.0, "request", None), (120.0, "request", None), (180.0, "refused", None),
        (190.0, "refused", "retry"), (200.0, "refused", "retry"),
    ]  # fmt: skip


def test_a_retry_after_the_top_up_is_served() -> None:
    """200-credit requests from 1,000 (the start's top-up), a cooldown of 337.5 s: the balance
    is 0 after 300 s, the request at 360 s is refused and claims (the cooldown is over), the
    top-up lands at 361 s, so its retry at 390 s is served."""
    events = _run(_scenario(
        {"retries": 1, "retry_after_seconds": {"dist": "fixed", "value": 30}}, balance=0,
        topup=True, cost=200, cooldown_hours=0.09375, days=1 / 24,
    )).events  # fmt: skip
    assert _rows(events[events["time"].between(300, 420)], "request", "refused") == [
        (300.0, "request", None), (360.0, "refused", None), (390.0, "request", "retry"),
        (420.0, "request", None),
    ]  # fmt: skip


def test_giving_up_stops_the_user_until_the_next_day() -> None:
    """After 3 refusals in a row (180, 240, 300 s with 250 credits) the user sends nothing more
    until midnight; the next day's requests come again (and are refused)."""
    events = _run(_scenario({"give_up_after": 3}, balance=250, days=1.01)).events
    assert _rows(events, "gave_up")[0] == (300.0, "gave_up", None)
    sent = events[events["kind"].isin(["request", "refused"])]["time"]
    assert sent[sent < 86_400].max() == 300.0
    assert sent[sent >= 86_400].min() == 86_400.0


def test_a_served_request_ends_a_streak_of_refusals() -> None:
    """As above, each refusal (360 s, 720 s, ...) claims a top-up that lands before the next
    request, which is served. With ``give_up_after`` 2 nobody gives up: without the reset the
    refusal at 720 s would be the second of a streak."""
    events = _run(_scenario(
        {"give_up_after": 2}, balance=0, topup=True, cost=200, cooldown_hours=0.09375,
        days=1 / 24,
    )).events  # fmt: skip
    refused = events.loc[events["kind"] == "refused", "time"].tolist()
    assert refused[:2] == [360.0, 720.0]
    assert _rows(events, "gave_up") == []


def test_users_leave_at_the_stated_chance_per_dry_hour() -> None:
    """Always dry (no credits, no top-up), 200 users leave at 0.5 per dry hour: the time from
    the first refusal to leaving is exponential with mean 1 / ln 2 hours, plus at most the
    minute to the request that notices it; the mean is within 4 standard errors."""
    results = _run(_scenario({"churn_per_dry_hour": 0.5}, balance=0, users=200))
    churned = results.events[results.events["kind"] == "churned"]
    assert len(churned) == 200 and churned["user"].is_unique
    assert int(results.summary["users_churned"].iloc[0]) == 200
    waited = (churned["time"] - 60.0) / 3_600
    mean = 1 / math.log(2)
    assert abs(waited.mean() - (mean + 0.5 / 60)) <= 4 * mean / math.sqrt(200)
    after = results.events[results.events["kind"] == "refused"].merge(
        churned[["user", "time"]], on="user", suffixes=("", "_left")
    )
    assert (after["time"] <= after["time_left"]).all()  # nothing sent after leaving


@pytest.mark.parametrize(
    ("reactions", "message"),
    [
        ({"retries": -1}, r"reactions\.retries"),
        ({"churn_per_dry_hour": 1.0}, r"reactions\.churn_per_dry_hour: must be < 1"),
        ({"give_up_after": 1.5}, r"reactions\.give_up_after"),
        ({"retry_after_seconds": 5}, r"reactions\.retry_after_seconds: must be a table"),
        ({"patience": 3}, "unknown key"),
    ],
)
def test_bad_refusal_reactions_are_refused_by_name(reactions: dict[str, Any], message: str) -> None:
    """Errors name the dotted key."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(reactions, balance=0), "t.toml")
