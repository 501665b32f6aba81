"""``run``: one scenario, one seed, one backend -> :class:`~sim.results.Results`, books checked."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .backends import Backend, get_backend
from .crashes import CrashPlan
from .gateways import payments_made
from .invariants import InvariantViolation, check_invariants
from .results import Results, events_frame, summary_frame, users_frame
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
) -> Results:
    """Simulate ``scenario`` (a :class:`Scenario` or a TOML path) and return its frames.

    ``seed`` defaults to the scenario's own. With ``check`` (the default) a run that breaks an
    invariant raises :class:`~sim.invariants.InvariantViolation`. ``progress`` shows a bar of
    simulated days on stderr once a run has taken more than two seconds. ``crash`` kills a
    worker where the plan says (see :mod:`sim.crashes`); a scenario's crash rate makes its own.
    ``gateway`` is how payments reach Stripe test mode: ``stripe`` (the default: through the
    ``stripe`` library, as a server does) or ``direct`` (straight into the emulator, the
    sweeps' default; same events, see :mod:`sim.gateways`).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    seed = scenario.seed if seed is None else seed
    chosen = get_backend(backend)
    opened = chosen.open()
    try:
        world = World(scenario, seed, opened, crash, gateway)
        with tqdm(
            total=round(scenario.days, 3), unit="day", desc=scenario.name, delay=2.0,
            disable=not progress, leave=False,
        ) as bar:  # fmt: skip

            def on_day(days: float) -> None:
                bar.update(round(days - bar.n, 3))

            world.run(on_day)
        payments = payments_made(world.stripe)
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
        events = events_frame(world.events.rows)
        users = users_frame(events, world.profiles, world.store, payments, scenario.horizon)
        summary = summary_frame(scenario, seed, events, users, payments)
        return Results(scenario, seed, chosen.name, events, users, summary)
    finally:
        opened.close()
