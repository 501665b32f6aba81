"""The command line: ``python -m sim run <scenario.toml>``, ``python -m sim sweep <...>`` and
``python -m sim fit-trace <trace>`` (a usage profile fitted to a usage trace, as a scenario table).

``run`` prints the summary for a reader (``Results.report``: the run's real size, then requests,
top-ups, failures and money) and writes the frames to ``--out`` (Parquet, and CSV with ``--csv``);
its last line says whether every invariant held. ``sweep`` prints one row per grid point and
writes ``sweep.parquet``. Progress bars go to stderr and appear only when a run takes more than
two seconds.

Every error is one line on stderr, never a traceback (a bad option also gets argparse's usage
line). Exit status (:data:`EXIT_STATUSES`): 0 on success; 1 when a run broke an invariant (each
breach listed, then a line naming the rules); 2 when nothing ran: a scenario path that is no
readable file, an invalid scenario or seed, a bad option, an ``--out`` folder it cannot create,
a backend it cannot open (``REDIS_URL`` unset, Redis not answering) or a dask scheduler it cannot
reach; 141 when the reader of stdout went away (``| head``): quietly, with
the status a shell gives a tool that SIGPIPE ended, as Unix tools do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from .backends import BACKENDS, BackendUnavailable, get_backend
from .gateways import GATEWAYS
from .invariants import InvariantViolation
from .runner import run
from .scenario import Scenario, ScenarioError, load_scenario
from .sweeps import SchedulerUnavailable, sweep
from .traces import fit_usage, load_trace

_SWEEP_COLUMNS = (
    "dry_per_1000_users", "topups_per_user_month", "failed_topups", "refused",
    "revenue_eur", "revenue_usd", "revenue_jpy",
)  # fmt: skip
#: 128 + SIGPIPE (13): what a shell reports for a tool that a closed pipe ended.
BROKEN_PIPE = 141
#: The exit statuses, as ``--help`` shows them.
EXIT_STATUSES = (
    "exit status: 0 success; 1 a run broke an invariant; 2 nothing ran (no such scenario file,"
    " an invalid scenario, seed or option, an --out folder that cannot be created, REDIS_URL"
    " unset or Redis not answering, no dask scheduler at --scheduler); 141 stdout was"
    " closed early (| head), as for any Unix tool; 130 a sweep interrupted (Ctrl-C), its"
    " finished points kept under --out/points"
)


class UsageError(Exception):
    """What was asked cannot run (a scenario path that is no readable file): one line, status 2.

    Its message names the problem and what to give instead.
    """


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sim",
        description="Simulate virtual users against the real billing module (auto top-up).",
        epilog=EXIT_STATUSES,
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
        default="memory",
        help="backend: memory (default, fastest), sqlite (the SQL store in the loop), fakeredis"
        " (the cache's real Lua script) or redis (a real Redis at $REDIS_URL over SQLite); all"
        " give the same events",
    )
    common.add_argument(
        "--gateway",
        choices=GATEWAYS,
        help="how payments reach the offline Stripe: stripe (through the stripe library, as a"
        " server does; the default of run) or direct (straight into the emulator, a third"
        " cheaper per top-up; the default of sweep); both give the same events",
    )
    common.add_argument("--users", type=int, help="override the number of users")
    common.add_argument("--days", type=float, help="override the simulated days")
    common.add_argument(
        "--out", type=Path,
        help="directory to write the frames to (Parquet); a sweep also keeps each finished point"
        " in DIR/points and skips those already there when run again",
    )  # fmt: skip
    common.add_argument("-v", "--verbose", action="store_true", help="show the billing's log")

    run_cmd = commands.add_parser(
        "run", parents=[common], help="run one scenario and print its summary",
        epilog=EXIT_STATUSES,
    )  # fmt: skip
    run_cmd.add_argument(
        "--csv", action="store_true", help="also write CSV files next to the Parquet ones"
    )
    sweep_cmd = commands.add_parser(
        "sweep", parents=[common], help="run a scenario over its [sweep] grid, in parallel",
        epilog=EXIT_STATUSES,
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--workers", type=workers_option, default=-1,
        help="parallel processes (default -1: one per core; -2: all cores but one, and so on)",
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--by-group", action="store_true",
        help="one row per point and group of users too (group 'all': the run-wide row)",
    )  # fmt: skip
    sweep_cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a dask.distributed scheduler (tcp://host:8786) to run the points on instead",
    )
    fit_cmd = commands.add_parser(
        "fit-trace", help="fit a usage profile to a usage trace and print it as a scenario table",
        epilog=EXIT_STATUSES,
    )  # fmt: skip
    fit_cmd.add_argument(
        "trace", type=Path, help="a trace file (CSV or Parquet: user, timestamp, credits)"
    )
    fit_cmd.add_argument(
        "--start", default="2026-01-01T00:00:00Z",
        help="the run's start, against which timestamps with a zone are placed",
    )  # fmt: skip
    fit_cmd.add_argument("--group", default="traced", help="the group name in the printed table")
    return parser


def workers_option(text: str) -> int:
    """argparse type of ``--workers``: a whole number other than 0 (joblib's ``n_jobs``:
    negative counts back from the number of cores)."""
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if workers == 0:
        raise argparse.ArgumentTypeError("0 runs nothing; give 1 or more, or -1 for one per core")
    return workers


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, return the exit status (see the module doc)."""
    args = _parser().parse_args(argv)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        status = _command(args)
        sys.stdout.flush()  # so that a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        return _stdout_closed()
    return status


def _command(args: argparse.Namespace) -> int:
    """Run the command; turn each error a user can make into one line on stderr and a status."""
    try:
        if args.command == "fit-trace":
            return _fit_trace(args)
        scenario = _scenario(args).seeded(args.seed)  # a bad seed is found before anything
        if args.command == "run":
            return _run(scenario, args)
        return _sweep(scenario, args)
    except (UsageError, ScenarioError, BackendUnavailable, SchedulerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvariantViolation as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        broken = Counter(v.rule for v in exc.violations)
        rules = ", ".join(
            f"{rule} ({n:,} {'breach' if n == 1 else 'breaches'})" for rule, n in broken.items()
        )
        print(f"Invariants: {len(broken)} did not hold: {rules}", file=sys.stderr)
        return 1


def _fit_trace(args: argparse.Namespace) -> int:
    """Print the usage table :func:`~sim.traces.fit_usage` fits to the trace, ready to paste."""
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        start = None
    if start is None or start.tzinfo is None:
        raise UsageError(
            f"--start {args.start!r}: give a time with its zone, e.g. 2026-01-01T00:00:00Z"
        )
    trace = load_trace(args.trace, start.timestamp())
    usage = fit_usage(trace)
    cost = usage.pop("cost")
    print(f"# fitted to {args.trace}: {len(trace.users):,} users, {trace.requests:,} requests")
    print(f"[groups.{args.group}.usage]")
    for key, value in usage.items():
        print(f"{key} = {value!r}".replace("'", '"'))
    print(f'cost = {{ dist = "lognormal", median = {cost["median"]}, sigma = {cost["sigma"]} }}')
    return 0


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a Unix tool does.

    Python ignores SIGPIPE, so the write raised instead of ending the process. What is still
    buffered would raise again when the interpreter flushes stdout at exit, so stdout is pointed
    at the null device first (the recipe in Python's ``signal`` docs). The status is the one a
    shell reports for a tool that SIGPIPE ended, not 1, which here means a run broke an invariant.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file descriptor: nothing is left to flush
        pass
    return BROKEN_PIPE


def _scenario(args: argparse.Namespace) -> Scenario:
    overrides: dict[str, object] = {}
    if args.users is not None:
        overrides["users"] = args.users
    if args.days is not None:
        overrides["days"] = args.days
    return read_scenario(args.scenario, **overrides)


def read_scenario(path: Path, **overrides: object) -> Scenario:
    """:func:`~sim.scenario.load_scenario` for a command line: a path that is no readable file
    is a :class:`UsageError` saying what to give instead (an invalid file stays a
    ``ScenarioError``)."""
    try:
        return load_scenario(path, **overrides)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: OSError | UnicodeDecodeError) -> str:
    """Why ``path`` cannot be read as a scenario, and what to give instead."""
    if path.is_dir():
        found = sorted(path.glob("*.toml"))
        instead = f"one of its scenario files, e.g. {found[0]}" if found else "a scenario file"
        return f"{path}: is a directory; give {instead}"
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file; give a scenario file, e.g. scenarios/baseline.toml"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not a text file; a scenario is a TOML file, e.g. scenarios/baseline.toml"
    return f"{path}: cannot read it: {exc.strerror or exc}"


def make_out_folder(out: Path | None) -> None:
    """Create the ``--out`` folder (if given) before anything runs: a path that cannot hold the
    frames is a usage error now, not after a long run whose frames would then be lost."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; give a folder for the frames")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create that folder: {exc.strerror or exc}") from None


def _run(scenario: Scenario, args: argparse.Namespace) -> int:
    """Run with the invariants checked (a breach raises), print the report, write the frames."""
    make_out_folder(args.out)
    results = run(
        scenario, seed=args.seed, backend=args.backend, check=True, progress=True,
        gateway=args.gateway or "stripe",
    )  # fmt: skip
    # A scenario's description states its file's size; --users or --days make it untrue.
    resized = args.users is not None or args.days is not None
    print(results.report(description=not resized))
    print()
    if args.out is not None:
        for path in results.write(args.out, csv=args.csv):
            print(f"wrote {path}")
    print("Invariants: all held (checked against Stripe's records at the end of the run)")
    return 0


def _sweep(scenario: Scenario, args: argparse.Namespace) -> int:
    # Open the backend once here: one that cannot open fails now, in one line, instead of in
    # every worker of the pool.
    get_backend(args.backend).open().close()
    make_out_folder(args.out)
    points = None if args.out is None else args.out / "points"
    try:
        frame = sweep(
            scenario,
            seed=args.seed,
            backend=args.backend,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=True,
            points=points,
            gateway=args.gateway or "direct",
            by_group=args.by_group,
        )
    except KeyboardInterrupt:
        kept = "nothing is kept (give --out to keep finished points)"
        if points is not None:
            kept = f"finished points are kept in {points}; the same command resumes"
        print(f"python -m sim sweep: interrupted; {kept}", file=sys.stderr)
        return 130
    columns = [*scenario.sweep, *(["group"] if args.by_group else []), *_SWEEP_COLUMNS]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(frame[columns].round(3).to_string(index=False))
    if args.out is not None:
        path = args.out / "sweep.parquet"
        frame.to_parquet(path, index=False)
        print(f"wrote {path}")
    return 0
