"""Benchmark: the baseline scenario per backend, against the cost floor of its cache.

Prints requests/s and user-days/s (medians of ``--repeat`` runs) for each backend, and the floor
a fakeredis-backed run cannot beat: one bare fakeredis command, one bare EVALSHA, and one call of
the billing's own deduction script (``RedisCache.deduct``, the single EVALSHA every request
costs), each measured in a tight loop, plus the time the fakeredis runs themselves spent inside
that script. The fakeredis run's cost per request divided by a floor is the simulation's
overhead ratio (target: within 1.5x).

The fastest backend runs the whole baseline month; slower ones run ``--slow-users`` users for
the same 30 days (per-request cost barely depends on the population), unless ``--full``.

    python bench/simulation.py [--repeat 3] [--full] [--slow-users 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis

from sim import Backend, OpenBackend, load_scenario, run
from sim.billing import RedisCache, SQLiteStore
from sim.billing.cache import CachedUser, DeductResult

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.toml"
FLOOR_CALLS = 20_000


def _median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


class TimedRedisCache(RedisCache):
    """The billing's Redis cache, timing each deduction script call (the in-run floor)."""

    seconds = 0.0
    calls = 0
    #: The rules of the latest call (cooldown, ...), so the floor loop calls it the same way.
    rules: tuple[Any, ...] = ()

    def deduct(self, *args: Any, **kwargs: Any) -> DeductResult:
        """Delegate, adding the call's wall time to the class totals."""
        TimedRedisCache.rules = args[3:]
        start = time.perf_counter()
        try:
            return super().deduct(*args, **kwargs)
        finally:
            TimedRedisCache.seconds += time.perf_counter() - start
            TimedRedisCache.calls += 1


def _timed_fakeredis() -> OpenBackend:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return OpenBackend(
        TimedRedisCache(client), SQLiteStore(":memory:"), client.flushdb, client.close
    )


def floors() -> dict[str, float]:
    """Microseconds per call of one bare fakeredis command, EVALSHA, and deduction script
    (called with the rules the fakeredis runs used; run those first)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.hset("k", "balance", 1)
    trivial = client.register_script("return 1")
    cache = RedisCache(client)
    cache.fill("u", CachedUser(10**12, True, 1000, 10_000, None, 0, "active"))

    def per_call(call: Callable[[], object]) -> float:
        def loop() -> None:
            for _ in range(FLOOR_CALLS):
                call()

        return _median_seconds(loop, 3)[0] / FLOOR_CALLS * 1e6

    return {
        "bare command (HGET)": per_call(lambda: client.hget("k", "balance")),
        "bare EVALSHA (return 1)": per_call(lambda: trivial(keys=["k"], args=[1])),
        "deduction script (RedisCache.deduct)": per_call(
            lambda: cache.deduct("u", 1, 0.0, *TimedRedisCache.rules)
        ),
    }


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per backend (median)")
    parser.add_argument("--full", action="store_true", help="full baseline on every backend")
    parser.add_argument("--slow-users", type=int, default=100, help="users on slow backends")
    args = parser.parse_args()

    backends = ["memory", "fakeredis", *(["redis"] if os.environ.get("REDIS_URL") else [])]
    print(f"baseline, median of {args.repeat} run(s) per backend, one core\n")
    print(f"{'backend':<10} {'users':>6} {'days':>5} {'requests':>9} {'seconds':>8}"
          f" {'requests/s':>11} {'user-days/s':>12} {'us/request':>11}")  # fmt: skip
    per_request: dict[str, float] = {}
    for backend in backends:
        users = 1000 if backend == "memory" or args.full else args.slow_users
        scenario = load_scenario(BASELINE, users=users)
        # fakeredis runs through the timed cache: the same scripts, with their time summed.
        chosen = Backend("fakeredis", _timed_fakeredis) if backend == "fakeredis" else backend
        seconds, results = _median_seconds(
            lambda s=scenario, b=chosen: run(s, backend=b), args.repeat
        )
        requests = int(results.summary.loc[0, "requests"])  # type: ignore[attr-defined]
        per_request[backend] = seconds / requests * 1e6
        user_days = users * scenario.days
        print(f"{backend:<10} {users:>6} {scenario.days:>5g} {requests:>9,} {seconds:>8.2f}"
              f" {requests / seconds:>11,.0f} {user_days / seconds:>12,.0f}"
              f" {per_request[backend]:>11.1f}")  # fmt: skip

    print("\nfakeredis floor, microseconds per call (median of 3 x 20,000 calls):")
    measured = floors()
    measured["deduction script, inside the runs"] = (
        TimedRedisCache.seconds / TimedRedisCache.calls * 1e6
    )
    for name, micros in measured.items():
        ratio = per_request["fakeredis"] / micros
        print(f"  {name:<38} {micros:>7.1f}   fakeredis run / floor = {ratio:.2f}x")


if __name__ == "__main__":
    main()
