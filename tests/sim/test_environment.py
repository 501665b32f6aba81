"""``Environment.skip_to``: the request stream's shortcut changes no event of a run."""

from __future__ import annotations

from collections.abc import Generator

import pandas as pd
import pytest
import simpy

import sim
from sim.environment import Environment

SCENARIOS = "scenarios"


def test_skip_moves_the_clock_only_when_nothing_is_due_by_then() -> None:
    """An event due at or before the target stops the skip; a later one does not."""
    env = Environment()
    env.timeout(10)
    assert not env.skip_to(10) and env.now == 0
    assert not env.skip_to(11) and env.now == 0
    assert env.skip_to(9) and env.now == 9
    env.run()
    assert env.now == 10
    assert env.skip_to(25) and env.now == 25  # an empty queue never stops it


def test_events_due_at_the_target_run_before_the_process_that_waits_for_it() -> None:
    """Where a skip is refused the process waits as before, after what was already due."""
    env = Environment()
    order: list[str] = []

    def other() -> Generator[simpy.Event]:
        yield env.timeout(5)
        order.append("other at 5")

    def stream() -> Generator[simpy.Event]:
        for t in (3, 5, 7):
            if not env.skip_to(t):
                yield env.timeout(t - env.now)
            order.append(f"stream at {t}")

    env.process(other())
    env.process(stream())
    env.run()
    assert order == ["stream at 3", "other at 5", "stream at 5", "stream at 7"]


@pytest.mark.parametrize("name", ["card_failures", "chaos"])
def test_a_run_logs_the_same_events_without_the_shortcut(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request waiting with a timeout, as before the shortcut, gives the same event log."""
    scenario = sim.load_scenario(f"{SCENARIOS}/{name}.toml", users=20, days=2)
    fast = sim.run(scenario, gateway="direct").events
    monkeypatch.setattr(Environment, "skip_to", lambda self, time: False)
    slow = sim.run(scenario, gateway="direct").events
    assert len(fast) > 100
    pd.testing.assert_frame_equal(fast, slow)
