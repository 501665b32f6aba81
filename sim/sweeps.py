"""Sweeps: one scenario run at every point of a grid over any of its keys, in parallel.

Points run with joblib's ``loky`` process pool by default; given a dask.distributed scheduler
address, the same ``Parallel`` call runs on that cluster through joblib's dask backend. Each
point is validated before anything starts, and every point uses the same seed, so the users and
their requests are identical across the grid: differences come from the swept settings alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from tqdm import tqdm

from .backends import Backend
from .runner import run
from .scenario import Scenario, load_scenario


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def sweep(
    scenario: Scenario | str | Path,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    seed: int | None = None,
    backend: str | Backend = "fakeredis",
    workers: int = -1,
    scheduler: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run ``scenario`` at every point of ``grid`` (default: its ``[sweep]`` table).

    Returns the points' one-row summaries concatenated, each prefixed with its grid columns
    (named by their dotted keys). ``workers`` is joblib's ``n_jobs`` (-1: one per core);
    ``scheduler`` (``tcp://host:port``) runs the points on a dask.distributed cluster instead.
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    grid = dict(scenario.sweep if grid is None else grid)
    if not grid:
        raise ValueError(f"{scenario.source}: no grid given and no [sweep] table to run")
    points = grid_points(grid)
    scenarios = [scenario.grid_point(point) for point in points]
    seed = scenario.seed if seed is None else seed
    jobs = (joblib.delayed(_summary)(s, seed, backend) for s in scenarios)
    with _backend(scheduler):
        parallel = joblib.Parallel(n_jobs=workers, return_as="generator")
        summaries = list(
            tqdm(parallel(jobs), total=len(points), unit="run", delay=2.0, disable=not progress)
        )
    frames = [
        pd.concat([pd.DataFrame([point]), summary], axis=1)
        for point, summary in zip(points, summaries, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


def _summary(scenario: Scenario, seed: int, backend: str | Backend) -> pd.DataFrame:
    """One point's summary (runs in a worker process)."""
    return run(scenario, seed=seed, backend=backend).summary


@contextmanager
def _backend(scheduler: str | None) -> Iterator[None]:
    """joblib's default (loky) backend, or the dask backend connected to ``scheduler``."""
    if scheduler is None:
        yield
        return
    from dask.distributed import Client  # imported only when a cluster is asked for

    with Client(scheduler), joblib.parallel_config(backend="dask"):
        yield
