"""Users who react when auto top-up stops for them (``[groups.<name>.reactions]``): with a
chance, they save a working card some hours after the notice, which lifts the pause or the
suspension; without reactions a paused user stays dry to the end."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from sim import ScenarioError, parse_scenario, run

HOUR = 3_600.0


def _scenario(
    reactions: dict[str, Any] | None, *, card: str, users: int = 1, days: float = 0.5
) -> dict[str, Any]:
    """Users who spend 100 credits a minute from 3,000, with a card that fails off-session."""
    group: dict[str, Any] = {
        "share": 1.0, "balance": 3_000, "card": card,
        "usage": {"arrivals": "constant", "requests_per_day": 1_440,
                  "cost": {"dist": "fixed", "value": 100}},
    }  # fmt: skip
    if reactions is not None:
        group["reactions"] = reactions
    return {
        "name": "reactions", "users": users, "days": days, "seed": 2,
        "payments": {"latency": {"dist": "fixed", "value": 1.0}},
        "auto_topup": {"threshold": 1000, "amount": 10000},
        "groups": {"all": group},
    }  # fmt: skip


def _events(raw: dict[str, Any]) -> pd.DataFrame:
    return run(parse_scenario(raw, "t.toml"), seed=2, backend="memory", gateway="direct").events


def test_a_paused_user_saves_a_card_after_the_stated_delay_and_is_topped_up() -> None:
    """Hand count: the 3-D Secure card pauses top-ups at the first crossing (request 21, at
    20 min, claims; the charge answers 1 s later). Two hours after that notice the user saves a
    Visa; the next request claims again and is credited; no request is refused after that."""
    events = _events(_scenario(
        {"fix_card_rate": 1.0, "fix_card_after_hours": {"dist": "fixed", "value": 2.0}},
        card="pm_card_authenticationRequired",
    ))  # fmt: skip
    paused = events.loc[events["kind"] == "topup_action_required", "time"].tolist()
    saved = events.loc[events["kind"] == "card_saved", "time"].tolist()
    assert paused == [20 * 60 + 1.0]
    assert saved == [paused[0] + 2 * HOUR]
    assert events.loc[events["kind"] == "card_saved", "outcome"].tolist() == ["pm_card_visa"]
    credited = events.loc[events["kind"] == "topup_succeeded", "time"].tolist()
    assert credited and credited[0] == pytest.approx(saved[0] + 60 - saved[0] % 60 + 1.0)
    refused = events.loc[events["kind"] == "refused", "time"]
    assert len(refused) > 0 and refused.max() < credited[0]


def test_without_reactions_a_paused_user_stays_dry_to_the_end() -> None:
    """The same user with no reactions: paused once, never charged again, refused to the end."""
    events = _events(_scenario(None, card="pm_card_authenticationRequired"))
    assert (events["kind"] == "card_saved").sum() == 0
    assert (events["kind"] == "topup_succeeded").sum() == 0
    last_request = events.loc[events["kind"].isin(["request", "refused"]), "kind"].iloc[-1]
    assert last_request == "refused"


def test_a_suspended_user_comes_back_with_a_new_card() -> None:
    """A card that always declines is suspended after three declines; the user's new Visa lifts
    the suspension and is charged."""
    events = _events(_scenario(
        {"fix_card_rate": 1.0, "fix_card_after_hours": {"dist": "fixed", "value": 0.5}},
        card="pm_card_chargeDeclinedInsufficientFunds",
    ))  # fmt: skip
    suspended = events.loc[events["kind"] == "topup_suspended", "time"].tolist()
    saved = events.loc[events["kind"] == "card_saved", "time"].tolist()
    assert len(suspended) == 1 and saved == [suspended[0] + 0.5 * HOUR]
    charges = events[events["kind"] == "charge"]
    assert charges.loc[charges["time"] < saved[0], "outcome"].tolist() == ["declined"] * 3
    assert set(charges.loc[charges["time"] > saved[0], "outcome"]) == {"succeeded"}


def test_users_react_at_the_stated_rate() -> None:
    """With ``fix_card_rate`` 0.5 over 200 paused users, the share who save a card is within 4
    standard deviations of one half (each user draws once: their single pause; a delay past
    the 4-hour horizon, chance e^-3.7 at a mean of an hour, is a user who did not come back)."""
    events = _events(_scenario(
        {"fix_card_rate": 0.5, "fix_card_after_hours": {"dist": "exponential", "mean": 1.0}},
        users=200, days=1 / 6, card="pm_card_authenticationRequired",
    ))  # fmt: skip
    assert (events["kind"] == "topup_action_required").sum() == 200
    fixed = (events["kind"] == "card_saved").sum()
    assert abs(fixed - 100) <= 4 * (200 * 0.25) ** 0.5


def test_no_fix_is_scheduled_past_the_traffic() -> None:
    """A delay that ends after the horizon is never scheduled: the run ends on time."""
    events = _events(_scenario(
        {"fix_card_rate": 1.0, "fix_card_after_hours": {"dist": "fixed", "value": 100.0}},
        card="pm_card_authenticationRequired",
    ))  # fmt: skip
    assert (events["kind"] == "card_saved").sum() == 0


@pytest.mark.parametrize(
    ("reactions", "message"),
    [
        ({"fix_card_rate": 2}, r"groups\.all\.reactions\.fix_card_rate"),
        ({"fix_card": "pm_nope"}, r"groups\.all\.reactions\.fix_card"),
        ({"fix_card_after_hours": {"dist": "fixed", "value": -1}}, r"fix_card_after_hours\.value"),
        ({"retry": True}, "unknown key"),
    ],
)
def test_bad_reactions_are_refused_by_name(reactions: dict[str, Any], message: str) -> None:
    """The error names the dotted key."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(reactions, card="pm_card_visa"), "t.toml")
