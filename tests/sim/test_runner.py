"""run(): the same scenario and seed give the same events, on every backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim import run

from .conftest import SCENARIOS, SHIPPED, backends, shipped


@pytest.mark.parametrize("name", SHIPPED)
def test_same_seed_same_events_other_seed_other_events(name: str) -> None:
    """Two runs with one seed give identical events; another seed gives different ones."""
    scenario = shipped(name)
    first = run(scenario, seed=11, backend="memory").events
    pd.testing.assert_frame_equal(first, run(scenario, seed=11, backend="memory").events)
    assert not first.equals(run(scenario, seed=12, backend="memory").events)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_backend_gives_the_fakeredis_events(name: str) -> None:
    """Memory, SQLite (and real Redis when REDIS_URL is set) log exactly what fakeredis logs:
    the SQL store and the cache's Lua script each give the in-memory ports' events."""
    scenario = shipped(name)
    reference = run(scenario, backend="fakeredis").events
    for backend in backends()[1:]:
        pd.testing.assert_frame_equal(run(scenario, backend=backend).events, reference)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_direct_gateway_gives_the_stripe_library_events(name: str) -> None:
    """Payments handed straight to the emulator log exactly what the stripe library's path logs
    (faults, lost answers, declines, subscriptions and all): sweeps may take the faster one."""
    scenario = shipped(name)
    library = run(scenario, backend="memory", gateway="stripe").events
    pd.testing.assert_frame_equal(run(scenario, backend="memory", gateway="direct").events, library)


def test_run_accepts_a_path_and_defaults_to_the_scenario_seed(tmp_path: Path) -> None:
    """A TOML path runs directly, with the scenario's own seed."""
    text = (SCENARIOS / "card_failures.toml").read_text()
    path = tmp_path / "small.toml"
    path.write_text(text.replace("users = 500", "users = 10").replace("days = 30", "days = 1"))
    results = run(path, backend="memory")
    assert results.seed == 3 and results.backend == "memory"
    assert results.summary.loc[0, "users"] == 10


def test_the_default_backend_is_the_fastest_proven_equal() -> None:
    """``run`` and the CLI default to ``memory``: the backend the test above proves equal to
    fakeredis for every scenario, and the fastest."""
    results = run(shipped("baseline", users=2, days=0.1))
    assert results.backend == "memory"
    from sim.cli import _parser

    assert _parser().parse_args(["run", "x.toml"]).backend == "memory"


def test_gateway_defaults_stripe_for_run_direct_for_sweep() -> None:
    """``run`` goes through the stripe library (Stripe test mode's code path); a sweep, many
    runs long, goes direct; ``--gateway`` picks either; an unknown name is refused."""
    import inspect

    from sim import sweep
    from sim.cli import main

    assert inspect.signature(run).parameters["gateway"].default == "stripe"
    assert inspect.signature(sweep).parameters["gateway"].default == "direct"
    with pytest.raises(ValueError, match="unknown gateway 'paypal'; allowed: stripe, direct"):
        run(shipped("baseline", users=2, days=0.1), gateway="paypal")
    with pytest.raises(SystemExit):
        main(["run", "x.toml", "--gateway", "paypal"])


def test_a_run_collects_rarely_and_gives_the_thresholds_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the world is built, runs, has its books checked and its frames built, the
    collector's first threshold is ``RUN_GC_THRESHOLD``; after the run, and after a run that
    raised, the caller's thresholds are back."""
    import gc

    from sim import runner
    from sim.world import World

    seen: dict[str, tuple[int, int, int]] = {}

    def watched(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[name] = gc.get_threshold()
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(World, "__init__", watched("build", World.__init__))
    monkeypatch.setattr(World, "run", watched("run", World.run))
    for name in ("check_invariants", "events_frame", "groups_frame"):
        monkeypatch.setattr(runner, name, watched(name, getattr(runner, name)))
    before = gc.get_threshold()
    gc.set_threshold(123, 4, 5)
    try:
        run(shipped("baseline", users=2, days=0.1))
        assert seen == dict.fromkeys(
            ("build", "run", "check_invariants", "events_frame", "groups_frame"),
            (runner.RUN_GC_THRESHOLD, 50, 100),
        )
        assert gc.get_threshold() == (123, 4, 5)

        def broken(self: World, *args: object) -> None:
            raise RuntimeError("the world broke")

        monkeypatch.setattr(World, "run", broken)
        with pytest.raises(RuntimeError, match="the world broke"):
            run(shipped("baseline", users=2, days=0.1))
        assert gc.get_threshold() == (123, 4, 5)
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_run_lets_go_of_its_world_without_the_cyclic_collector(name: str) -> None:
    """A world is all reference cycles, so what it holds is freed only when the collector
    walks it, unless the run empties the holders of its bulk: with the collector off, no
    PaymentIntent, Stripe event or log row of a finished run is left in the process."""
    import gc

    from sim.billing import MemoryStore
    from sim.eventlog import EventLog

    gc.collect()  # the youngest generation is empty now, and stays the run's own while off
    gc.disable()
    try:
        results = run(shipped(name, users=20, days=3), gateway="direct")
        new = gc.get_objects(generation=0)
    finally:
        gc.enable()
    assert len(results.events) > 0
    stripe_objects = [o for o in new if type(o) is dict and o.get("object") in _HELD]
    logs = [o for o in new if isinstance(o, EventLog) and len(o)]
    stores = [o for o in new if isinstance(o, MemoryStore) and o.user_ids()]
    assert (stripe_objects, logs, stores) == ([], [], [])


#: What a finished run's emulator held most of.
_HELD = ("payment_intent", "charge", "event", "customer", "payment_method")


def test_on_day_is_told_each_simulated_day_done() -> None:
    """A caller showing its own progress hears of every simulated day, the last one included."""
    days: list[float] = []
    run(shipped("threshold_grid", users=2, days=3), backend="memory", on_day=days.append)
    assert days == [1.0, 2.0, 3.0]
