"""Deterministic simulation testing at scale: a worker killed at every write boundary, over seeds.

For each seed, one run of a small ``chaos`` scenario records every boundary it passes (the code
lists them: ``sim/crashes.py``); then one run per boundary kills the worker at its first pass,
and every invariant is checked after recovery (``sim.run`` raises on a breach). Prints a table:
each boundary, the seeds it was reached in, and the violations found (which must be 0), then the
totals (boundaries x seeds = runs). ``tests/sim/test_crashes.py`` does the same for one seed.

    python bench/crash_points.py [--seeds 5] [--users 12] [--days 2]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from sim import InvariantViolation, load_scenario, run
from sim.crashes import CrashPlan


def main() -> None:
    """Run every boundary over every seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (5)")
    parser.add_argument("--users", type=int, default=12, help="users per run (12)")
    parser.add_argument("--days", type=float, default=2.0, help="days per run (2)")
    args = parser.parse_args()
    scenario = load_scenario("scenarios/chaos.toml", users=args.users, days=args.days)
    reached: dict[str, int] = defaultdict(int)
    broken: dict[str, list[str]] = defaultdict(list)
    runs, began = 0, time.perf_counter()
    for seed in range(1, args.seeds + 1):
        discovery = CrashPlan()
        run(scenario, seed=seed, backend="memory", crash=discovery)
        for boundary in sorted(discovery.seen):
            reached[boundary] += 1
            runs += 1
            try:
                run(scenario, seed=seed, backend="memory", crash=CrashPlan(at=boundary))
            except InvariantViolation as exc:
                broken[boundary] += [f"seed {seed}: {v}" for v in exc.violations]
        print(f"seed {seed}: {len(discovery.seen)} boundaries passed", flush=True)
    print(f"\n{'boundary (operation/port.method:side)':<48} {'seeds':>5} {'violations':>10}")
    for boundary in sorted(reached):
        print(f"{boundary:<48} {reached[boundary]:>5} {len(broken[boundary]):>10}")
    total = sum(len(v) for v in broken.values())
    print(
        f"\n{len(reached)} boundaries, {args.seeds} seeds: {runs} crash runs"
        f" ({args.users} users x {args.days:g} days of chaos each) in"
        f" {time.perf_counter() - began:.0f} s; {total} invariant violations"
    )
    for boundary, found in sorted(broken.items()):
        for line in found[:5]:
            print(f"  {boundary}: {line}")
    if total:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
