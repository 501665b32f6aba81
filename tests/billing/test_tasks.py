"""Task runners for fire-and-forget work."""

from __future__ import annotations

import pytest

from sim.billing import InlineRunner, QueueRunner, ThreadRunner


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
