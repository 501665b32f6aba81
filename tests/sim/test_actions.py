"""Timed actions (``[[actions]]``): a card expires or starts declining, a user saves a new card
or changes settings, at a time or after a delay drawn per user, for a group or a share of it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from sim import ScenarioError, parse_scenario, run

HOUR = 3_600.0


def _scenario(
    actions: list[dict[str, Any]], *, users: int = 1, card: str = "pm_card_visa",
    groups: int = 1, days: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """Users who spend 100 credits a minute from 3,000 and top up 1,000 at a 1,000 threshold
    with a 10-minute cooldown: a charge every 10 minutes, at minutes 20, 30, 40, ..."""
    group = {
        "balance": 3_000, "card": card,
        "usage": {"arrivals": "constant", "requests_per_day": 1_440,
                  "cost": {"dist": "fixed", "value": 100}},
    }  # fmt: skip
    names = ["a", "b"][:groups]
    return {
        "name": "actions", "users": users, "days": days, "seed": 4,
        "billing": {"cooldown_hours": 1 / 6},
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"threshold": 1000, "amount": 1000},
        "groups": {name: {"share": 1 / len(names), **group} for name in names},
        "actions": actions,
    }  # fmt: skip


def _events(raw: dict[str, Any]) -> pd.DataFrame:
    return run(parse_scenario(raw, "t.toml"), seed=4, backend="memory", gateway="direct").events


def test_a_card_that_expires_declines_from_then_on_and_is_suspended() -> None:
    """At 2 h the card expires: every charge before is paid (claims at minutes 20 to 110, each
    charged a second later), every one after declines ``expired_card`` (the claim at minute 120
    is charged at 2 h + 1 s), and the third decline in a row suspends auto top-up."""
    events = _events(_scenario([{"do": "card_expires", "at_hours": 2}]))
    assert events.loc[events["kind"] == "action", ["time", "outcome"]].values.tolist() == [
        [2 * HOUR, "card_expires"]
    ]
    charges = events[events["kind"] == "charge"]
    before, after = charges[charges["time"] < 2 * HOUR], charges[charges["time"] > 2 * HOUR]
    assert len(before) == 10 and set(before["outcome"]) == {"succeeded"}
    assert after["decline_code"].tolist() == ["expired_card"] * 3
    assert (events["kind"] == "topup_suspended").sum() == 1


def test_a_new_card_lifts_a_pause_for_its_group_only() -> None:
    """Two groups on a 3-D Secure card, both paused at minute 20; at 3 h group b saves a Visa
    and is charged again, group a stays paused."""
    events = _events(_scenario(
        [{"do": "replace_card", "at_hours": 3, "group": "b", "card": "pm_card_visa"}],
        users=2, groups=2, card="pm_card_authenticationRequired",
    ))  # fmt: skip
    a, b = "u000001", "u000002"  # one user per group, in the groups' order
    assert events.loc[events["kind"] == "action", "user"].tolist() == [b]
    paid = events[events["kind"] == "topup_succeeded"]
    assert set(paid["user"]) == {b} and paid["time"].min() > 3 * HOUR
    assert (events.loc[events["user"] == a, "kind"] == "topup_action_required").sum() == 1


def test_settings_change_moves_the_trigger() -> None:
    """At 1 h 3 min the user disables auto top-up: the claims at minutes 20 to 60 were the last,
    and requests run dry afterwards."""
    events = _events(_scenario(
        [{"do": "settings", "at_hours": 1.05, "auto_topup": {"enabled": False}}]
    ))  # fmt: skip
    claims = events.loc[events["trigger"] == "claimed", "time"]
    assert claims.tolist() == [60.0 * minute for minute in (20, 30, 40, 50, 60)]
    assert (events.loc[events["time"] > HOUR, "kind"] == "refused").any()


def test_a_new_threshold_claims_at_the_new_level() -> None:
    """At 1 h 3 min the threshold goes from 1,000 to 5,000 and the amount to 10,000. The claim
    at minute 60 still bought 1,000; its cooldown holds the next one to minute 70, when the
    balance, under 5,000, claims 10,000 credits (charged a second later)."""
    change = {"threshold": 5000, "amount": 10000}
    events = _events(_scenario([{"do": "settings", "at_hours": 1.05, "auto_topup": change}]))
    charges = events[events["kind"] == "charge"]
    assert charges.loc[charges["time"] == HOUR + 1.0, "credits"].tolist() == [1_000]
    later = charges[charges["time"] > 1.05 * HOUR]
    assert later.iloc[0][["time", "credits"]].tolist() == [HOUR + 600 + 1.0, 10_000]


def test_a_share_of_users_picked_at_random_and_times_drawn_per_user() -> None:
    """``share`` 0.5 of 200 users, within 4 standard deviations; each picked user's time is
    drawn from the law (uniform 1-3 h), so the times spread over that range."""
    events = _events(_scenario(
        [{"do": "card_declines", "at_hours": {"dist": "uniform", "low": 1, "high": 3},
          "share": 0.5, "declines": {"insufficient_funds": 1.0}}],
        users=200, days=0.15,
    ))  # fmt: skip
    acted = events[events["kind"] == "action"]
    assert abs(len(acted) - 100) <= 4 * (200 * 0.25) ** 0.5
    assert acted["user"].is_unique
    assert acted["time"].between(HOUR, 3 * HOUR).all() and acted["time"].std() > 0.4 * HOUR
    declined = events[(events["kind"] == "charge") & (events["outcome"] == "declined")]
    assert set(declined["user"]) <= set(acted["user"])
    assert set(declined["decline_code"]) == {"insufficient_funds"}


def test_nothing_is_scheduled_past_the_traffic() -> None:
    """An action due after the horizon never happens."""
    events = _events(_scenario([{"do": "card_expires", "at_hours": 100}]))
    assert (events["kind"] == "action").sum() == 0


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"do": "explode", "at_hours": 1}, r"actions\[0\]\.do"),
        ({"do": "card_expires"}, r"actions\[0\]\.at_hours: is required"),
        ({"do": "card_expires", "at_hours": -1}, r"actions\[0\]\.at_hours"),
        ({"do": "card_expires", "at_hours": 1, "group": "z"}, r"actions\[0\]\.group"),
        ({"do": "card_expires", "at_hours": 1, "share": 2}, r"actions\[0\]\.share"),
        ({"do": "card_declines", "at_hours": 1}, r"actions\[0\]\.declines: is required"),
        ({"do": "settings", "at_hours": 1}, r"actions\[0\]\.auto_topup: needs at least one"),
        ({"do": "settings", "at_hours": 1, "auto_topup": {"threshold": 7}}, r"threshold"),
        ({"do": "settings", "at_hours": 1, "auto_topup": {"speed": 7}}, "unknown key"),
        ({"do": "replace_card", "at_hours": 1, "card": "pm_nope"}, r"actions\[0\]\.card"),
        ({"do": "card_expires", "at_hours": 1, "card": "pm_card_visa"}, "unknown key"),
    ],
)
def test_bad_actions_are_refused_by_name(action: dict[str, Any], message: str) -> None:
    """Each error names the action by its index and the key."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario([action]), "t.toml")


def test_actions_must_be_an_array_of_tables() -> None:
    """``actions = 3`` is refused."""
    raw = _scenario([])
    raw["actions"] = 3
    with pytest.raises(ScenarioError, match="actions: must be an array of tables"):
        parse_scenario(raw, "t.toml")


def test_an_action_the_billing_refuses_is_logged_as_failed() -> None:
    """With every Stripe answer lost, enabling auto top-up cannot check the card and saving a
    new card cannot attach it: both actions are ``action_failed`` rows, and nothing changes."""
    raw = _scenario([
        {"do": "settings", "at_hours": 0.5, "auto_topup": {"enabled": True}},
        {"do": "replace_card", "at_hours": 1, "card": "pm_card_visa"},
    ])  # fmt: skip
    raw["auto_topup"]["enabled"] = False
    raw["faults"] = {"gateway": {"lost_response_rate": 1.0}}
    events = _events(raw)
    acted = events[events["kind"].str.startswith("action")]
    assert acted[["time", "kind", "outcome"]].values.tolist() == [
        [0.5 * HOUR, "action_failed", "settings"], [HOUR, "action_failed", "replace_card"],
    ]  # fmt: skip
    assert (events["kind"] == "charge").sum() == 0
