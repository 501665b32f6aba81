"""The SimPy world against theory: top-up counts and runs dry where a hand calculation says."""

from __future__ import annotations

import numpy as np
import simpy

from sim import run
from sim.world import ProcessRunner, SimClock

from .conftest import constant, one_group, shipped

START = 1_767_225_600.0


def test_clock_reads_the_environment() -> None:
    """The billing clock is the start epoch plus SimPy's milliseconds."""
    env = simpy.Environment()
    clock = SimClock(env, START)
    env.run(until=1500)
    assert clock.now() == START + 1.5


def test_runner_starts_the_task_after_the_latency() -> None:
    """A submitted task runs as a process after the drawn latency, not at once."""
    env = simpy.Environment()
    ran: list[float] = []
    runner = ProcessRunner(env, lambda: 2500)
    runner.submit(lambda: ran.append(env.now))
    assert ran == []
    env.run()
    assert ran == [2500]


def test_runner_waits_a_retry_delay_on_virtual_time() -> None:
    """A task that asks for a back-off starts that many virtual seconds later (plus latency)."""
    env = simpy.Environment()
    ran: list[float] = []
    runner = ProcessRunner(env, lambda: 2500)
    runner.submit(lambda: ran.append(env.now), delay=1.5)
    env.run()
    assert ran == [1500 + 2500]


def test_constant_usage_top_ups_match_the_closed_form() -> None:
    """With constant consumption and no faults, top-ups = floor((C - (B0 - T)) / A) + 1."""
    every, cost, b0, threshold, amount = 60, 100, 5_000, 1_000, 10_000
    results = run(one_group(constant(every, cost), days=2, balance=b0), seed=0, backend="memory")
    requests = (2 * 86_400 - 1) // every  # request k at k * 60 s, strictly inside the horizon
    expected = (requests * cost - (b0 - threshold)) // amount + 1
    events = results.events
    assert (events["kind"] == "refused").sum() == 0
    assert (events["kind"] == "topup_succeeded").sum() == expected == 29
    # Top-up n is claimed by request k_n = ceil((B0 - T + (n - 1) A) / cost).
    claims = events.loc[events["trigger"] == "claimed", "time"].tolist()
    assert claims == [every * -(-(b0 - threshold + n * amount) // cost) for n in range(expected)]


def test_poisson_mean_top_ups_match_theory() -> None:
    """Over many Poisson users, mean top-ups = (consumption - (B0 - T)) / A within 3%."""
    rate, cost, days, b0, threshold, amount = 100, 100, 5, 5_000, 2_000, 1_000
    usage = {"requests_per_day": rate, "cost": {"dist": "fixed", "value": cost}}
    scenario = one_group(
        usage,
        users=40,
        days=days,
        balance=b0,
        latency=1.0,
        auto_topup={"threshold": threshold, "amount": amount},
    )
    results = run(scenario, seed=7, backend="memory")
    theory = (rate * days * cost - (b0 - threshold)) / amount
    assert abs(results.users["topups"].mean() / theory - 1) < 0.03


def test_cooldown_longer_than_a_top_up_runs_dry_as_calculated() -> None:
    """A 1 h cooldown against a top-up that lasts 10 min: dry exactly where the hand count says.

    100 credits a minute from 2,000; threshold 1,000, +1,000 per top-up, no latency. Request 10
    (t=600) claims; the balance is 0 after request 30; requests 31-69 are refused; request 70
    (t=4200, one cooldown later) is refused too but claims; 80 empties it again; 81-129 refused;
    130 claims; 140 empties it; 141-179 refused (the next claim, request 190, is past the end).
    """
    scenario = one_group(
        constant(60, 100), days=3 / 24, balance=2_000, auto_topup={"amount": 1_000}
    )
    results = run(scenario, seed=0, backend="memory")
    events = results.events
    refused = (events.loc[events["kind"] == "refused", "time"] / 60).astype(int).tolist()
    expected = [*range(31, 71), *range(81, 131), *range(141, 180)]
    assert refused == expected
    credited = events.loc[events["kind"] == "topup_succeeded", "time"].tolist()
    assert credited == [600, 4200, 7800]
    user = results.users.iloc[0]
    assert user["dry_seconds"] == (4200 - 1860) + (7800 - 4860) + (10800 - 8460)
    assert user["first_dry_at_s"] == 1860


def test_requests_run_in_time_order_across_users() -> None:
    """The merged stream of every user's requests is logged in time order."""
    usage = {"requests_per_day": 500, "cost": {"dist": "fixed", "value": 1}}
    events = run(one_group(usage, users=5), seed=1, backend="memory").events
    assert (np.diff(events["time"].to_numpy()) >= 0).all()


def test_subscriptions_renew_monthly_and_credit_each_invoice_once() -> None:
    """Over two months every subscriber pays the first month and two renewals, and each paid
    invoice credits the tier plus its bonus exactly once, though webhooks come late, twice and
    out of order."""
    results = run(shipped("subscriptions", users=12, days=62), backend="memory")
    events, users = results.events, results.users
    created = set(events.loc[events["kind"] == "subscription_created", "user"])
    subscribers = users[users["user"].isin(created)]
    assert len(subscribers) > 0
    bonus = subscribers["subscription"].map({21_000: 1_000, 54_000: 3_000})
    assert (subscribers["subscription_credits"] == 3 * (subscribers["subscription"] + bonus)).all()
    webhooks = events[events["kind"] == "webhook"]
    assert (webhooks["outcome"] == "duplicate").any()
