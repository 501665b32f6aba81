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

import threading
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

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
    """This process's sharing: how many callers have it on, and the one entry kept.

    The entry is one attribute holding key and batches together, so that a thread reading it
    (a dask worker runs points in threads of one process) never pairs one run's key with
    another's batches; the count is changed under a lock for the same reason."""

    on: int = 0
    entry: tuple[DrawKey, list[Batch]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_shared = _Shared()


def stream_state(rng: np.random.Generator) -> Hashable:
    """A random stream's state as a hashable value: its bit generator's, which is all of it."""
    return repr(rng.bit_generator.state)


@contextmanager
def shared() -> Iterator[None]:
    """Within: worlds share their draws through this process's entry (kept after, for the next
    point the process runs)."""
    with _shared.lock:
        _shared.on += 1
    try:
        yield
    finally:
        with _shared.lock:
            _shared.on -= 1


def sharing() -> bool:
    """Whether worlds share their draws now."""
    return _shared.on > 0


def kept_key() -> DrawKey | None:
    """The key of the entry kept, if any."""
    entry = _shared.entry
    return None if entry is None else entry[0]


def lookup(key: DrawKey) -> Sequence[Batch] | None:
    """Every day's batch drawn under ``key`` by an earlier run in this process, or ``None``."""
    entry = _shared.entry
    if not sharing() or entry is None or entry[0] != key:
        return None
    return entry[1]


def keep(key: DrawKey, batches: list[Batch]) -> None:
    """Keep a whole run's batches under ``key`` (replacing the entry there was)."""
    if sharing():
        _shared.entry = (key, batches)


def forget() -> None:
    """Drop the kept entry (tests; a process that is done sweeping)."""
    _shared.entry = None
