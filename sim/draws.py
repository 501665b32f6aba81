"""Request draws that the points of a sweep share, drawn once per worker process.

Every point of a grid has the same users and the same requests: only the swept settings differ
(``sim.sweeps``). A user's requests are a pure function of their usage law and of their random
stream as the world's set-up left it, so a worker that runs several points draws the same days
again for each: about 1 s of a 1,000-user point's 20 to 60 s. Inside :func:`shared` (what a
sweep's worker runs its points in), a world looks its draws up here under a :class:`DrawKey`,
made of exactly those inputs, and keeps them here when it drew every day of its run.

Right by construction rather than by care: the key holds each user's usage law and the state of
their random stream, not the scenario's name or settings, so a point whose users differ in any
way that changes a draw (another seed, user count, group, variation, card mix) finds nothing
and draws its own; and a run that drew only some of its days (it stopped early) keeps nothing.
Users who replay a trace are not drawn at all, and a world with any of them does not share.

One entry is kept, the last: a sweep's worker runs one population's points in turn, and an
entry holds three numbers a request (about 40 MB for a month of 1,000 users).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: One day's requests, in time order: times (ticks), user indices, costs.
Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class DrawKey:
    """Everything a run's request draws depend on: each user's usage law, the state of each
    user's random stream before the first draw, and the run's horizon (the days drawn)."""

    usages: tuple[Hashable, ...]
    streams: tuple[Hashable, ...]
    horizon: float


@dataclass(slots=True)
class _Shared:
    """This process's sharing: whether it is on, and the one entry kept."""

    on: bool = False
    key: DrawKey | None = None
    batches: list[Batch] | None = None


_shared = _Shared()


def stream_state(rng: np.random.Generator) -> Hashable:
    """A random stream's state as a hashable value: its bit generator's, which is all of it."""
    return repr(rng.bit_generator.state)


@contextmanager
def shared() -> Iterator[None]:
    """Within: worlds share their draws through this process's entry (kept after, for the next
    point the process runs)."""
    before = _shared.on
    _shared.on = True
    try:
        yield
    finally:
        _shared.on = before


def sharing() -> bool:
    """Whether worlds share their draws now."""
    return _shared.on


def kept_key() -> DrawKey | None:
    """The key of the entry kept, if any."""
    return _shared.key


def lookup(key: DrawKey) -> Sequence[Batch] | None:
    """Every day's batch drawn under ``key`` by an earlier run in this process, or ``None``."""
    if not _shared.on or _shared.key != key:
        return None
    return _shared.batches


def keep(key: DrawKey, batches: list[Batch]) -> None:
    """Keep a whole run's batches under ``key`` (replacing the entry there was)."""
    if _shared.on:
        _shared.key, _shared.batches = key, batches


def forget() -> None:
    """Drop the kept entry (tests; a process that is done sweeping)."""
    _shared.key = _shared.batches = None
