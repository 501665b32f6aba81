"""Benchmark: wall time of the ``threshold_grid`` sweep (36 runs) with 1 and with 2 workers.

Each point is a 30-day run of the scenario's population on the in-memory backend; joblib's loky
backend spreads the points over worker processes. Prints the wall times, the speed-up, and a
check that both sweeps returned the same figures (workers must not change results).

    python bench/sweep.py [--users 50] [--backend memory]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sim import load_scenario, sweep

GRID = Path(__file__).resolve().parents[1] / "scenarios" / "threshold_grid.toml"


def main() -> None:
    """Run the sweep with 1 and 2 workers and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="users per run (scenario: 200)")
    parser.add_argument("--backend", default="memory", help="cache backend of every run")
    args = parser.parse_args()
    scenario = load_scenario(GRID, users=args.users)
    frames, seconds = {}, {}
    for workers in (1, 2):
        started = time.perf_counter()
        frames[workers] = sweep(scenario, workers=workers, backend=args.backend)
        seconds[workers] = time.perf_counter() - started
    points = len(frames[1])
    print(f"threshold_grid: {points} points x {args.users} users x {scenario.days:g} days")
    for workers, wall in seconds.items():
        print(f"  {workers} worker(s): {wall:7.1f} s wall, {wall / points:5.2f} s per point")
    print(f"  speed-up with 2 workers: {seconds[1] / seconds[2]:.2f}x")
    print(f"  same results with 1 and 2 workers: {frames[1].equals(frames[2])}")


if __name__ == "__main__":
    main()
