"""Sweeps: one scenario run at every point of a grid over any of its keys, in parallel.

Points run with joblib's ``loky`` process pool by default; given a dask.distributed scheduler
address, the same ``Parallel`` call runs on that cluster through joblib's dask backend. Each
point is validated before anything starts, and every point uses the same seed, so the users and
their requests are identical across the grid: differences come from the swept settings alone.

Given a folder (``points``), each finished point's summary is written there as soon as it
completes, under a key made of the point's scenario, the seed, the backend and the code of the
``sim`` package; a sweep run again reads the points already there instead of running them. So an
interrupted sweep (Ctrl-C, a lost machine) keeps what it finished, and a changed scenario or
changed code recomputes exactly the points it changes.

Points start longest first (:func:`expected_work`): a pool that is handed a long point last
finishes it alone while the other workers idle. Which worker runs a point never changes its
figures, and the frame keeps the grid's order.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from tqdm import tqdm

from . import draws
from .backends import Backend
from .runner import run
from .scenario import Scenario, ScenarioError, load_scenario

#: The ``group`` of a point's run-wide row in a sweep by group.
ALL_GROUPS = "all"
#: What one auto top-up costs a run, counted in requests: its card check, charge, webhook and
#: records against one deduction (about 600 µs against 9 µs, docs/performance.md).
TOPUP_COST_IN_REQUESTS = 70


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def sweep(
    scenario: Scenario | str | Path,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    seed: int | None = None,
    backend: str | Backend = "memory",
    workers: int = -1,
    scheduler: str | None = None,
    progress: bool = False,
    points: Path | None = None,
    gateway: str = "direct",
    by_group: bool = False,
) -> pd.DataFrame:
    """Run ``scenario`` at every point of ``grid`` (default: its ``[sweep]`` table).

    Returns the points' one-row summaries concatenated, each prefixed with its grid columns
    (named by their dotted keys). ``workers`` is joblib's ``n_jobs`` (-1: one per core);
    ``scheduler`` (``tcp://host:port``) runs the points on a dask.distributed cluster instead.
    ``points`` is a folder that keeps each finished point (see the module doc). ``gateway``
    defaults to ``direct``: a sweep runs many points, and the direct path gives the same events
    as the ``stripe`` library's at two thirds of the cost per top-up (``sim.gateways``).
    ``by_group`` gives each point one row per group of users too (a ``group`` column: ``all``
    for the run-wide row, then each group's own figures, as ``Results.groups``).
    """
    folder = points
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.seeded(seed)
    seed = scenario.seed
    grid = dict(scenario.sweep if grid is None else grid)
    if not grid:
        raise ScenarioError(
            scenario.source, "sweep", "no [sweep] table and no grid given: add a [sweep] table"
            " of values to try, or run the file as one point with `python -m sim run`",
        )  # fmt: skip
    points = grid_points(grid)
    scenarios = [scenario.grid_point(point) for point in points]
    files = [None if folder is None else folder / f"{point_key(s, seed, backend, gateway)}.parquet"
             for s in scenarios]  # fmt: skip
    summaries: list[pd.DataFrame | None] = [
        None if path is None or not path.exists() else pd.read_parquet(path) for path in files
    ]
    todo = [i for i, summary in enumerate(summaries) if summary is None]
    todo.sort(key=lambda i: -expected_work(scenarios[i]))  # longest first; ties in grid order
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    jobs = (joblib.delayed(_indexed_summary)(i, scenarios[i], seed, backend, gateway) for i in todo)
    bar = tqdm(
        total=len(points), initial=len(points) - len(todo), unit="point", delay=2.0,
        disable=not progress,
    )  # fmt: skip
    with _backend(scheduler), bar:
        parallel = joblib.Parallel(n_jobs=workers, return_as="generator_unordered")
        try:
            for index, summary in parallel(jobs):
                path = files[index]
                if path is not None:  # written as it completes: an interruption keeps it
                    summary.to_parquet(path.with_suffix(".partial"), index=False)
                    path.with_suffix(".partial").replace(path)
                summaries[index] = summary
                bar.update()
        finally:
            draws.forget()  # what points run in this process (workers=1) kept of their draws
    frames = []
    for point, summary in zip(points, summaries, strict=True):
        if not by_group:
            summary = summary[summary["group"] == ALL_GROUPS].drop(columns="group")
        rows = pd.DataFrame([point] * len(summary))
        frames.append(pd.concat([rows, summary.reset_index(drop=True)], axis=1))
    return pd.concat(frames, ignore_index=True)


def expected_work(scenario: Scenario) -> float:
    """What a run of ``scenario`` should cost, in requests: each group's requests over the run,
    and its expected top-ups (its credits spent over its auto top-up amount) at
    :data:`TOPUP_COST_IN_REQUESTS` each. Only an order for a sweep's points: bursts, retries
    and declines move every point of a grid alike, and the amount is what sets them apart (a
    1,000-credit point of ``threshold_grid`` tops up ten times as often as a 10,000-credit one).
    """
    work = 0.0
    for group, users in zip(scenario.groups, scenario.counts(), strict=True):
        requests = users * group.usage.requests_per_day * scenario.days
        work += requests
        if group.settings.enabled:
            spent = requests * group.usage.cost.expected()
            work += spent / group.settings.amount * TOPUP_COST_IN_REQUESTS
    return work


def point_key(
    scenario: Scenario, seed: int, backend: str | Backend, gateway: str = "direct"
) -> str:
    """What a point's summary depends on, hashed: the whole scenario at that point, the seed,
    the backend's and gateway's names and the source of the ``sim`` package (any code change
    recomputes)."""
    name = backend if isinstance(backend, str) else backend.name
    text = f"{scenario!r}|{seed}|{name}|{gateway}|{_code_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@functools.cache
def _code_version() -> str:
    """A digest of every source file of the ``sim`` package (read once per process: every point
    of a grid asks for it)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _indexed_summary(
    index: int, scenario: Scenario, seed: int, backend: str | Backend, gateway: str
) -> tuple[int, pd.DataFrame]:
    """One point's summary and its place in the grid (runs in a worker process)."""
    return index, _summary(scenario, seed, backend, gateway)


def _summary(scenario: Scenario, seed: int, backend: str | Backend, gateway: str) -> pd.DataFrame:
    """One point's summary rows: the run-wide one (``group`` = ``all``), then one per group."""
    with draws.shared():  # the points a worker runs in turn share their request draws
        results = run(scenario, seed=seed, backend=backend, gateway=gateway)
    whole = results.summary.copy()
    whole.insert(0, "group", ALL_GROUPS)
    return pd.concat([whole, results.groups], ignore_index=True)


class SchedulerUnavailable(Exception):
    """The dask scheduler asked for cannot be used: its address is none, or nothing answers
    there. Raised before any point runs, as one line naming the address and what to give."""


@contextmanager
def _backend(scheduler: str | None) -> Iterator[None]:
    """joblib's default (loky) backend, or the dask backend connected to ``scheduler``."""
    if scheduler is None:
        yield
        return
    from dask.distributed import Client  # imported only when a cluster is asked for

    try:
        client = Client(scheduler)
    except (ValueError, TypeError, OSError) as exc:  # a bad address; nobody answering
        raise SchedulerUnavailable(
            f"dask scheduler {scheduler!r}: {exc}; give the tcp://host:port of a running"
            " scheduler (`dask scheduler` starts one)"
        ) from None
    with client, joblib.parallel_config(backend="dask"):
        yield
