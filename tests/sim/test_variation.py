"""Users who differ: per-user variation of rate, starting balance and cost
(``[groups.<name>.variation]``), and a random phase for constant arrivals (``random_phase``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim import Results, ScenarioError, parse_scenario, run

DAY = 86_400.0


def _scenario(
    *, variation: dict[str, Any] | None = None, random_phase: bool | None = None,
    users: int = 50, days: float = 1.0, arrivals: str = "constant",
) -> dict[str, Any]:  # fmt: skip
    """Users with 144 requests a day (one every 10 minutes) of 10 credits, auto top-up off."""
    usage: dict[str, Any] = {
        "arrivals": arrivals, "requests_per_day": 144, "cost": {"dist": "fixed", "value": 10},
    }  # fmt: skip
    if random_phase is not None:
        usage["random_phase"] = random_phase
    group: dict[str, Any] = {"share": 1.0, "balance": 100_000, "usage": usage}
    if variation is not None:
        group["variation"] = variation
    return {
        "name": "variation", "users": users, "days": days, "seed": 8,
        "auto_topup": {"enabled": False}, "groups": {"g": group},
    }  # fmt: skip


def _run(raw: dict[str, Any]) -> Results:
    return run(parse_scenario(raw, "t.toml"), seed=8, backend="memory", gateway="direct")


def _first_requests(results: Results) -> np.ndarray:
    requests = results.events[results.events["kind"] == "request"]
    return requests.groupby("user")["time"].min().to_numpy()


def test_constant_arrivals_start_together_without_a_random_phase() -> None:
    """Without ``random_phase`` every user's first request is one interval (600 s) in."""
    assert set(_first_requests(_run(_scenario()))) == {600.0}


def test_a_random_phase_spreads_first_requests_over_one_interval() -> None:
    """With it, first requests fall in (0, 600] s, spread like a uniform law (mean 300 s within
    4 standard errors, 600 / sqrt(12) each), and each user keeps their interval after it."""
    results = _run(_scenario(random_phase=True, users=200))
    first = _first_requests(results)
    assert ((first > 0) & (first <= 600)).all()
    assert abs(first.mean() - 300) <= 4 * (600 / 12**0.5) / 200**0.5
    requests = results.events[results.events["kind"] == "request"]
    gaps = requests.groupby("user")["time"].diff().dropna()
    assert np.allclose(gaps, 600, atol=0.001)


def test_rate_variation_multiplies_each_users_rate() -> None:
    """A rate factor fixed at 2 doubles every user's requests (constant arrivals: exactly)."""
    plain = _run(_scenario(users=3)).users["requests"]
    doubled = _run(_scenario(users=3, variation={"rate": {"dist": "fixed", "value": 2}}))
    assert (doubled.users["requests"] == 2 * plain + 1).all()  # 288 in a day, against 143


def test_rate_variation_draws_a_factor_per_user() -> None:
    """Factors uniform in [0.5, 1.5]: users differ, and the mean count is 143 within 4 standard
    errors of the factor's spread (each count is about 144 x its factor)."""
    factors = {"dist": "uniform", "low": 0.5, "high": 1.5}
    varied = _run(_scenario(users=200, variation={"rate": factors}))
    counts = varied.users["requests"].to_numpy()
    assert counts.std() > 20
    assert abs(counts.mean() - 143.5) <= 4 * (144 / 12**0.5) / 200**0.5


def test_balance_and_cost_variation() -> None:
    """A balance factor of 0.5 halves the starting balance; a cost factor of 3 makes each
    10-credit request cost 30."""
    results = _run(_scenario(users=4, variation={
        "balance": {"dist": "fixed", "value": 0.5}, "cost": {"dist": "fixed", "value": 3},
    }))  # fmt: skip
    assert set(results.users["starting_balance"]) == {50_000}
    requests = results.events[results.events["kind"] == "request"]
    assert set(requests["credits"]) == {30}


def test_no_variation_draws_nothing() -> None:
    """An empty variation table is the same run as none (no randomness consumed)."""
    plain = _run(_scenario(arrivals="poisson", users=5))
    empty = _run(_scenario(arrivals="poisson", users=5, variation={}))
    assert plain.events.equals(empty.events)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variation": {"rate": {"dist": "fixed", "value": -1}}}, r"variation\.rate\.value"),
        ({"variation": {"speed": {"dist": "fixed", "value": 1}}}, "unknown key"),
        ({"variation": {"rate": 2}}, r"variation\.rate: must be a table"),
        ({"random_phase": True, "arrivals": "poisson"}, r"usage\.random_phase: applies only"),
        ({"random_phase": "yes"}, r"usage\.random_phase"),
    ],
)
def test_bad_variation_is_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    """Errors name the dotted key."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(**kwargs), "t.toml")
