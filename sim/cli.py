"""The command line: ``python -m sim run <scenario.toml>`` and ``python -m sim sweep <...>``.

``run`` prints the summary as a table and writes the frames to ``--out`` (Parquet, and CSV with
``--csv``); ``sweep`` prints one row per grid point and writes ``sweep.parquet``. Progress bars go
to stderr and appear only when a run takes more than two seconds. Exit status: 0 on success, 1
when a run broke an invariant, 2 for a bad scenario or bad options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .backends import BACKENDS
from .invariants import InvariantViolation
from .runner import run
from .scenario import Scenario, ScenarioError, load_scenario
from .sweeps import sweep

_SWEEP_COLUMNS = (
    "dry_per_1000_users", "topups_per_user_month", "failed_topups", "refused",
    "revenue_eur", "revenue_usd", "revenue_jpy",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sim",
        description="Simulate virtual users against the real billing module (auto top-up).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("scenario", type=Path, help="a scenario file, e.g. scenarios/baseline.toml")
    common.add_argument(
        "--seed", type=int, help="random seed (default: the scenario's `seed`); same seed, same run"
    )
    common.add_argument(
        "--backend",
        choices=BACKENDS,
        default="fakeredis",
        help="cache backend: fakeredis (default, runs the real Lua scripts), redis (a real Redis"
        " at $REDIS_URL) or memory (fastest); all give the same events",
    )
    common.add_argument("--users", type=int, help="override the number of users")
    common.add_argument("--days", type=float, help="override the simulated days")
    common.add_argument("--out", type=Path, help="directory to write the frames to (Parquet)")
    common.add_argument("-v", "--verbose", action="store_true", help="show the billing's log")

    run_cmd = commands.add_parser(
        "run", parents=[common], help="run one scenario and print its summary"
    )
    run_cmd.add_argument(
        "--csv", action="store_true", help="also write CSV files next to the Parquet ones"
    )
    sweep_cmd = commands.add_parser(
        "sweep", parents=[common], help="run a scenario over its [sweep] grid, in parallel"
    )
    sweep_cmd.add_argument(
        "--workers", type=int, default=-1, help="parallel processes (default -1: one per core)"
    )
    sweep_cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a dask.distributed scheduler (tcp://host:8786) to run the points on instead",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, return the exit status."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        scenario = _scenario(args)
        if args.command == "run":
            return _run(scenario, args)
        return _sweep(scenario, args)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvariantViolation as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1


def _scenario(args: argparse.Namespace) -> Scenario:
    overrides: dict[str, object] = {}
    if args.users is not None:
        overrides["users"] = args.users
    if args.days is not None:
        overrides["days"] = args.days
    return load_scenario(args.scenario, **overrides)


def _run(scenario: Scenario, args: argparse.Namespace) -> int:
    results = run(scenario, seed=args.seed, backend=args.backend, progress=True)
    print(f"{scenario.name}: {scenario.description}".rstrip(": "))
    print(results.table())
    if args.out is not None:
        for path in results.write(args.out, csv=args.csv):
            print(f"wrote {path}")
    return 0


def _sweep(scenario: Scenario, args: argparse.Namespace) -> int:
    frame = sweep(
        scenario,
        seed=args.seed,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=True,
    )
    columns = [*scenario.sweep, *_SWEEP_COLUMNS]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(frame[columns].round(3).to_string(index=False))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "sweep.parquet"
        frame.to_parquet(path, index=False)
        print(f"wrote {path}")
    return 0
