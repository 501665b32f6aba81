"""Benchmark: wall time of the ``threshold_grid`` sweep (36 points), against its target.

By default the decision grid itself: every point at 1,000 users over 30 days on 2 workers,
through joblib's loky backend, on the sweeps' defaults (the ``memory`` backend, the ``direct``
gateway). Target: at most 10 minutes on 2 cores; ``--users`` runs a smaller grid.

The target was set for a grid of about 31 million requests (36 points of the baseline's 864,000).
Since its users differ and react (bursts, retries), the grid serves about 55.7 million, so the
bench prints the rate as well: requests served a second, against the target's 31 million in 10
minutes.

``--speedup`` runs the grid with 1 and with 2 workers instead, prints both and the speed-up, and
checks that both returned the same figures (workers must not change results).

    python bench/sweep.py [--users 1000] [--workers 2] [--speedup]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from interpreter import print_interpreter

from sim import load_scenario, sweep

GRID = Path(__file__).resolve().parents[1] / "scenarios" / "threshold_grid.toml"
#: The decision grid's size and target (issue: 36 points x 1,000 users x 30 days, 2 cores).
TARGET_USERS, TARGET_WORKERS, TARGET_SECONDS = 1_000, 2, 600.0
#: The request count the target was set for (36 points x the baseline month's 864,000 requests).
TARGET_REQUESTS = 36 * 864_000


def timed(users: int, workers: int, backend: str) -> tuple[float, pd.DataFrame]:
    """Seconds of wall time for the whole grid, and its frame."""
    scenario = load_scenario(GRID, users=users)
    started = time.perf_counter()
    frame = sweep(scenario, workers=workers, backend=backend, progress=True)
    return time.perf_counter() - started, frame


def main() -> None:
    """Run the grid and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=TARGET_USERS, help="users per point")
    parser.add_argument("--workers", type=int, default=TARGET_WORKERS, help="worker processes")
    parser.add_argument("--backend", default="memory", help="backend of every point")
    parser.add_argument("--speedup", action="store_true", help="1 against 2 workers")
    args = parser.parse_args()
    print_interpreter()
    runs = (1, 2) if args.speedup else (args.workers,)
    seconds, frames = {}, {}
    for workers in runs:
        seconds[workers], frames[workers] = timed(args.users, workers, args.backend)
    points = len(frames[runs[0]])
    requests = int(frames[runs[0]]["requests"].sum())
    print(f"threshold_grid: {points} points x {args.users:,} users x 30 days,"
          f" {requests:,} requests served")  # fmt: skip
    for workers, wall in seconds.items():
        print(f"  {workers} worker(s): {wall / 60:6.1f} min wall, {wall / points:6.1f} s a point")
    if args.speedup:
        print(f"  speed-up with 2 workers: {seconds[1] / seconds[2]:.2f}x")
        print(f"  same results with 1 and 2 workers: {frames[1].equals(frames[2])}")
    elif (args.users, args.workers) == (TARGET_USERS, TARGET_WORKERS):
        wall = seconds[args.workers]
        verdict = "met" if wall <= TARGET_SECONDS else "missed"
        print(f"  target: the decision grid in <= {TARGET_SECONDS / 60:.0f} min on 2 workers:"
              f" {verdict} ({wall / TARGET_SECONDS:.2f}x the target)")  # fmt: skip
        rate, target_rate = requests / wall, TARGET_REQUESTS / TARGET_SECONDS
        verdict = "met" if rate >= target_rate else "missed"
        print(f"  rate: {rate:,.0f} requests a second against the {target_rate:,.0f} of"
              f" {TARGET_REQUESTS / 1e6:.1f} M requests in {TARGET_SECONDS / 60:.0f} min:"
              f" {verdict} ({target_rate / rate:.2f}x the time)")  # fmt: skip


if __name__ == "__main__":
    main()
