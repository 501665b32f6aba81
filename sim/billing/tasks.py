"""The task-runner port: how fire-and-forget work (a top-up) runs without blocking a deduction.

A server passes :class:`ThreadRunner` (or an asyncio adapter); the simulation passes a runner that
starts a SimPy process; tests pick :class:`QueueRunner` to prove that a deduction returns before
the top-up runs, or :class:`InlineRunner` for straight-line scripts.

A task may ask to start ``delay`` seconds later (a retry's back-off). The delay is in seconds of
the clock the runner lives on: real seconds in a server, virtual ones in the simulation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

Task = Callable[[], object]


class TaskRunner(Protocol):
    """Runs a task later, somewhere else; never blocks the caller on it."""

    def submit(self, task: Task, delay: float = 0.0) -> None:  # pragma: no mutate
        """Schedule ``task`` to start no sooner than ``delay`` seconds from now."""
        ...


class InlineRunner:
    """Runs each task at once, in the caller's thread (after the caller's own writes).

    It has no clock to wait on, so a delay is not waited: straight-line scripts only.
    """

    def submit(self, task: Task, delay: float = 0.0) -> None:  # pragma: no mutate
        """Run ``task`` now."""
        task()


class QueueRunner:
    """Holds tasks until :meth:`run_pending` is called; a test moves its clock between the two.

    ``delays`` lists the delay each task asked for, in submission order.
    """

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()
        self._lock = threading.Lock()
        self.delays: list[float] = []

    def submit(self, task: Task, delay: float = 0.0) -> None:
        """Queue ``task``."""
        with self._lock:
            self._queue.append(task)
            self.delays.append(delay)

    def __len__(self) -> int:
        return len(self._queue)

    def run_next(self) -> bool:
        """Run the oldest queued task alone; ``False`` when none was queued."""
        with self._lock:
            if not self._queue:
                return False
            task = self._queue.popleft()
        task()
        return True

    def run_pending(self) -> int:
        """Run queued tasks (and tasks they queue) until none is left; return how many ran."""
        ran = 0
        while self.run_next():
            ran += 1
        return ran


class ThreadRunner:
    """Runs tasks on a thread pool, as a server would."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topup")
        self._futures: list[Future[object]] = []
        self._lock = threading.Lock()

    def submit(self, task: Task, delay: float = 0.0) -> None:
        """Start ``task`` on the pool (after sleeping ``delay`` real seconds there)."""
        future = self._pool.submit(_after, delay, task)
        with self._lock:
            self._futures.append(future)

    def join(self) -> None:
        """Wait for every task submitted so far; re-raise the first error a task raised."""
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def shutdown(self) -> None:
        """Wait for running tasks and stop the pool."""
        self._pool.shutdown(wait=True)


def _after(delay: float, task: Task) -> object:
    if delay > 0:
        time.sleep(delay)
    return task()
