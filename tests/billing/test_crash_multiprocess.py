"""Crash consistency across real processes: ``bench/crash_multiprocess.py`` at a small size.

Worker processes share one store (a SQLite file, or PostgreSQL at ``POSTGRES_URL``), a real Redis
and the Stripe emulator over HTTP; three are killed with SIGKILL while serving, the cache is
flushed, the rest are killed at stop, and after the reconcile every consistency count must be 0.
Needs a real Redis: Debian's ``redis-server`` (the bench starts one) or ``REDIS_URL``.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .postgres import postgres_schema

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("REDIS_URL"),
    reason="needs a real Redis: redis-server is not installed and REDIS_URL is not set",
)


@contextmanager
def _sqlite() -> Iterator[None]:
    yield None


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigkilled_workers_and_a_flushed_cache_leave_every_count_at_zero(
    monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """3 workers, 12 users, 6 s, 3 SIGKILLs and 1 flush while serving, SIGKILL at stop; on a
    SQLite file, and on PostgreSQL at ``POSTGRES_URL`` (a schema of the run's own)."""
    # On sys.path (inherited by the spawned workers) so that they can import the worker function.
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("crash_multiprocess")
    with postgres_schema() if store == "postgres" else _sqlite() as store_url:
        options = bench.Options(
            workers=3, users=12, seconds=6.0, kills=3, flushes=1, seed=7, kill_at_stop=True,
            store_url=store_url,
        )  # fmt: skip
        _run_and_check(bench, options)


def _run_and_check(bench: Any, options: Any) -> None:
    report = bench.run(options, verbose=False)
    summary = "\n".join(bench.render(report, options))
    assert report.kills == 3 and report.flushes == 1, summary
    assert report.deductions > 0 and report.attempts > 0, summary
    assert report.charges == report.topup_credits, summary
    assert report.problems() == dict.fromkeys(report.problems(), 0), summary
    assert report.details == [], summary
