"""``run``: one scenario, one seed, one backend -> :class:`~sim.results.Results`, books checked."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tqdm import tqdm

from .backends import Backend, get_backend
from .crashes import CrashPlan
from .gateways import payments_made
from .invariants import InvariantViolation, check_invariants
from .results import (
    Results,
    events_frame,
    groups_frame,
    metrics_frame,
    summary_frame,
    users_frame,
)
from .scenario import Scenario, load_scenario
from .world import World


def run(
    scenario: Scenario | str | Path,
    *,
    seed: int | None = None,
    backend: str | Backend = "memory",
    check: bool = True,
    progress: bool = False,
    crash: CrashPlan | None = None,
    gateway: str = "stripe",
    on_day: Callable[[float], None] | None = None,
    metrics_interval: float | None = None,
) -> Results:
    """Simulate ``scenario`` (a :class:`Scenario` or a TOML path) and return its frames.

    ``seed`` defaults to the scenario's own (another is checked as the file's: a whole number
    >= 0, else :class:`~sim.scenario.ScenarioError`). With ``check`` (the default) a run that
    breaks an invariant raises :class:`~sim.invariants.InvariantViolation`. ``progress`` shows a
    bar of simulated days on stderr once a run has taken more than two seconds. ``crash`` kills a
    worker where the plan says (see :mod:`sim.crashes`); a scenario's crash rate makes its own.
    ``gateway`` is how payments reach Stripe test mode: ``stripe`` (the default: through the
    ``stripe`` library, as a server does) or ``direct`` (straight into the emulator, the
    sweeps' default; same events, see :mod:`sim.gateways`). ``on_day`` is called with the
    simulated days done after each simulated day, for a caller that shows progress its own way
    (the review explorer's button). ``Results.metrics`` holds the billing's Prometheus metrics
    at the end of the run, and every ``metrics_interval`` simulated seconds when given (e.g.
    ``METRICS_INTERVAL_SECONDS``, 300: what a scrape would have seen, for the alerting rules).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.seeded(seed)
    seed = scenario.seed
    chosen = get_backend(backend)
    # Closed in reverse order, whatever happened: the world (its bulk freed at once), the
    # collector's thresholds, the backend.
    with (
        closing(chosen.open()) as opened,
        fewer_collections(),
        closing(World(scenario, seed, opened, crash, gateway, metrics_interval)) as world,
    ):
        with tqdm(
            total=round(scenario.days, 3), unit="day", desc=scenario.name, delay=2.0,
            disable=not progress, leave=False,
        ) as bar:  # fmt: skip

            def day_done(days: float) -> None:
                bar.update(round(days - bar.n, 3))
                if on_day is not None:
                    on_day(days)

            world.run(day_done)
        return _results(world, check, chosen.name)


def _results(world: World, check: bool, backend: str) -> Results:
    """The run's frames, its books checked first when ``check``."""
    scenario, seed = world.scenario, world.seed
    payments = payments_made(world.emulator)
    if check:
        violations = check_invariants(
            world.billing,
            world.store,
            payments,
            world.gateway.keys,
            world.postman.applied,
            world.notifier.successes,
            world.notifier.finals,
        )
        if violations:
            raise InvariantViolation(violations)
    events = events_frame(world.events, scenario.start)
    users = users_frame(events, world.profiles, world.store, payments, scenario.horizon)
    summary = summary_frame(scenario, seed, events, users, payments)
    groups = groups_frame(scenario, seed, events, users, payments)
    metrics = metrics_frame(world.metric_samples)
    return Results(scenario, seed, backend, events, users, summary, groups, metrics)


#: The cyclic garbage collector's generation-0 threshold while a world is built, runs, and has
#: its books checked and its frames built (Python's is 700). A run allocates millions of small
#: acyclic records (log rows, ledger entries, snapshots) that reference counting frees or that
#: live to the end; at Python's thresholds the collector traversed them over and over: 2.05 s of
#: a 19 s baseline month (2,550 young and 7 full collections), 0.49 s at this threshold (19
#: collections). After the traffic, the books check alone met a full collection of them: 0.5 s.
RUN_GC_THRESHOLD = 100_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect rarely while a run holds its world (and while a benchmark times what a run
    does); Python's thresholds are back afterwards, whatever happened (a sweep's worker runs
    many worlds, and the caller's process goes on), when the world's records are freed and a
    full collection is cheap again."""
    before = gc.get_threshold()
    gc.set_threshold(RUN_GC_THRESHOLD, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
