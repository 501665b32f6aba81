"""Shared request draws (``sim.draws``): a sweep's points that share their users' draws give the
events each would give alone, and a run whose users differ in any way finds nothing to share."""

from __future__ import annotations

import pandas as pd
import pytest

from sim import draws, run
from sim.scenario import Scenario

from .conftest import shipped


@pytest.fixture(autouse=True)
def _nothing_kept() -> None:
    draws.forget()


def _events(scenario: Scenario, seed: int | None = None) -> pd.DataFrame:
    return run(scenario, seed=seed, backend="memory", gateway="direct").events


def test_points_that_share_their_draws_give_the_events_they_give_alone() -> None:
    """Two settings of one population in turn, sharing: the second reads the first's draws and
    both give exactly their own events (a different seed, then, draws its own)."""
    base = shipped("threshold_grid", users=6, days=2)
    points = [base.grid_point({"auto_topup.amount": a}) for a in (1000, 21000)]
    alone = [_events(point) for point in points]
    with draws.shared():
        first = _events(points[0])
        key = draws.kept_key()
        assert isinstance(key, draws.DrawKey) and len(key.usages) == 6
        second = _events(points[1])
        assert draws.kept_key() == key  # read, not drawn again
        other_seed = _events(points[1], seed=base.seed + 1)
    pd.testing.assert_frame_equal(first, alone[0])
    pd.testing.assert_frame_equal(second, alone[1])
    pd.testing.assert_frame_equal(other_seed, _events(points[1], seed=base.seed + 1))


@pytest.mark.parametrize(
    "change",
    [
        {"users": 7},
        {"days": 3},
        {"groups.regular.usage.requests_per_day": 41},
        {"groups.regular.variation.cost.sigma": 0.31},
        {"groups.regular.cards": {"pm_card_visa": 1.0}},
    ],
    ids=["users", "days", "rate", "variation", "cards"],
)
def test_users_that_differ_in_any_draw_find_nothing_to_share(change: dict[str, object]) -> None:
    """After a run has kept its draws, a run of users who differ (their count, the run's length,
    their usage law, its variation, the cards drawn before it) draws its own: its events are
    those it gives alone."""
    base = shipped("threshold_grid", users=6, days=2)
    changed = base.with_overrides(change)
    with draws.shared():
        _events(base)
        kept = draws.kept_key()
        shared = _events(changed)
        assert draws.kept_key() != kept
    pd.testing.assert_frame_equal(shared, _events(changed))


def test_a_run_outside_a_sweep_keeps_nothing() -> None:
    """``run`` alone shares nothing and keeps nothing: a notebook's process holds no draws."""
    _events(shipped("threshold_grid", users=6, days=2))
    assert draws.kept_key() is None


def test_users_alike_but_for_their_random_streams_find_nothing_to_share() -> None:
    """Without variation every user's usage law is the group's, whatever the seed: only the
    state of their random streams tells two seeds' users apart, and the key holds it."""
    alike = shipped("threshold_grid", users=6, days=2).with_overrides(
        {"groups.regular.variation": {}}
    )
    with draws.shared():
        _events(alike)
        kept = draws.kept_key()
        other = _events(alike, seed=alike.seed + 1)
        assert kept is not None and draws.kept_key() is not None
        assert draws.kept_key().usages == kept.usages  # type: ignore[union-attr]
        assert draws.kept_key() != kept
    pd.testing.assert_frame_equal(other, _events(alike, seed=alike.seed + 1))
