"""Task runners for fire-and-forget work."""

from __future__ import annotations

import threading
import time

import pytest

from sim.billing import InlineRunner, QueueRunner, ThreadRunner
from sim.billing import tasks as tasks_module


def test_inline_runner_runs_at_once() -> None:
    """InlineRunner runs the task before submit returns."""
    ran: list[int] = []
    InlineRunner().submit(lambda: ran.append(1))
    assert ran == [1]


def test_queue_runner_waits_and_runs_tasks_queued_by_tasks() -> None:
    """QueueRunner holds tasks until run_pending, which also runs tasks they queue."""
    runner = QueueRunner()
    ran: list[str] = []
    runner.submit(lambda: (ran.append("a"), runner.submit(lambda: ran.append("b"))))
    assert ran == [] and len(runner) == 1
    assert runner.run_pending() == 2
    assert ran == ["a", "b"]


def test_thread_runner_join_reraises_a_task_error() -> None:
    """A failing background task is not lost: join raises its error."""
    runner = ThreadRunner(workers=1)

    def boom() -> None:
        raise RuntimeError("task failed")

    runner.submit(boom)
    with pytest.raises(RuntimeError, match="task failed"):
        runner.join()
    runner.shutdown()


def test_thread_runner_runs_four_tasks_at_a_time_by_default() -> None:
    """By default the pool runs at most four top-ups at once; a fifth waits for a free thread."""
    runner = ThreadRunner()
    started: list[int] = []
    gate = threading.Event()

    def task() -> None:
        started.append(1)
        gate.wait(5)

    for _ in range(6):
        runner.submit(task)
    try:
        deadline = time.monotonic() + 5
        while len(started) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # room for a fifth to start, were there a fifth thread
        assert len(started) == 4
    finally:
        gate.set()
    runner.join()
    runner.shutdown()
    assert len(started) == 6


def test_thread_runner_names_its_threads_topup() -> None:
    """Pool threads are named ``topup_<n>``, so logs and thread dumps show the top-up workers."""
    runner = ThreadRunner(workers=1)
    names: list[str] = []
    runner.submit(lambda: names.append(threading.current_thread().name))
    runner.join()
    runner.shutdown()
    assert names == ["topup_0"]


def test_thread_runner_sleeps_only_for_a_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task without a delay starts at once; one with a delay sleeps that long first."""
    slept: list[object] = []
    monkeypatch.setattr(tasks_module.time, "sleep", slept.append)
    runner = ThreadRunner(workers=1)
    ran: list[str] = []
    runner.submit(lambda: ran.append("now"))
    runner.submit(lambda: ran.append("later"), delay=0.25)
    runner.join()
    runner.shutdown()
    assert (ran, slept) == (["now", "later"], [0.25])


def test_thread_runner_shutdown_waits_for_running_tasks() -> None:
    """Shutdown returns only once the tasks already started have finished."""
    runner = ThreadRunner(workers=1)
    done: list[int] = []
    started = threading.Event()

    def task() -> None:
        started.set()
        time.sleep(0.2)
        done.append(1)

    runner.submit(task)
    started.wait(5)
    runner.shutdown()
    assert done == [1]
