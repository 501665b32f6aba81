"""Benchmark: the baseline scenario per backend and gateway, against its targets and floors.

Prints wall time, requests/s, user-days/s and µs per request (medians of ``--repeat`` runs) for:

- ``memory`` + ``direct``: the path sweeps use, on the whole baseline month (target <= 10 s);
- ``memory`` + ``stripe``: ``python -m sim run``'s default (payments through the stripe library);
- ``fakeredis`` + ``stripe``: the real Lua script per request, ``--slow-users`` users for the same
  30 days (per-request cost barely depends on the population), unless ``--full``;
- ``redis`` + ``stripe`` when ``REDIS_URL`` is set.

Then the fakeredis floor measured in the same process: one bare command, one bare EVALSHA and the
cache write script alone (``RedisCache.put`` of a newer snapshot, the one EVALSHA every request
costs), plus the time the fakeredis runs spent inside that script. The fakeredis run's cost per
request divided by the script alone is its overhead ratio (target: within 1.2x).

    python bench/simulation.py [--repeat 3] [--full] [--users 1000] [--slow-users 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
from interpreter import print_interpreter

from sim import Backend, OpenBackend, load_scenario, run
from sim.billing import MemoryStore, RedisCache
from sim.billing.store import CachedUser

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
    """The billing's Redis cache, timing each cache write script call (the in-run floor)."""

    seconds = 0.0
    calls = 0

    def put(self, user_id: str, user: CachedUser) -> bool:
        """Delegate, adding the call's wall time to the class totals."""
        start = time.perf_counter()
        try:
            return super().put(user_id, user)
        finally:
            TimedRedisCache.seconds += time.perf_counter() - start
            TimedRedisCache.calls += 1


def _timed_fakeredis() -> OpenBackend:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    cache = TimedRedisCache(client)
    return OpenBackend(cache, MemoryStore(), cache.clear, client.close)


def floors() -> dict[str, float]:
    """Microseconds per call of one bare fakeredis command, EVALSHA, and cache write script
    (a newer snapshot every call, as every request writes)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.hset("k", "balance", 1)
    trivial = client.register_script("return 1")
    cache = RedisCache(client)
    snapshot = CachedUser(1, 10**12, True, 1_000, 10_000, "active", 0, None)
    versions = iter(range(2, 10**9))

    def per_call(call: Callable[[], object]) -> float:
        def loop() -> None:
            for _ in range(FLOOR_CALLS):
                call()

        return _median_seconds(loop, 3)[0] / FLOOR_CALLS * 1e6

    return {
        "bare command (HGET)": per_call(lambda: client.hget("k", "balance")),
        "bare EVALSHA (return 1)": per_call(lambda: trivial(keys=["k"], args=[1])),
        "cache write script (RedisCache.put)": per_call(
            lambda: cache.put("u", replace(snapshot, version=next(versions)))
        ),
    }


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--full", action="store_true", help="full baseline on every backend")
    parser.add_argument("--users", type=int, default=1000, help="users on memory (the month)")
    parser.add_argument("--slow-users", type=int, default=100, help="users on Redis backends")
    args = parser.parse_args()
    print_interpreter()

    rows = [("memory", "direct"), ("memory", "stripe"), ("fakeredis", "stripe")]
    if os.environ.get("REDIS_URL"):
        rows.append(("redis", "stripe"))
    print(f"baseline, median of {args.repeat} run(s) per row, one core\n")
    print(f"{'backend':<10} {'gateway':<7} {'users':>6} {'days':>5} {'requests':>9}"
          f" {'seconds':>8} {'requests/s':>11} {'user-days/s':>12} {'µs/request':>11}")  # fmt: skip
    per_request: dict[str, float] = {}
    seconds: dict[tuple[str, str], float] = {}
    for backend, gateway in rows:
        users = args.users if backend == "memory" or args.full else args.slow_users
        scenario = load_scenario(BASELINE, users=users)
        # fakeredis runs through the timed cache: the same script, with its time summed.
        chosen: Any = Backend("fakeredis", _timed_fakeredis) if backend == "fakeredis" else backend
        wall, results = _median_seconds(
            lambda s=scenario, b=chosen, g=gateway: run(s, backend=b, gateway=g), args.repeat
        )
        requests = int(results.summary.loc[0, "requests"])  # type: ignore[attr-defined]
        per_request[backend] = wall / requests * 1e6
        seconds[backend, gateway] = wall
        user_days = users * scenario.days
        print(f"{backend:<10} {gateway:<7} {users:>6} {scenario.days:>5g} {requests:>9,}"
              f" {wall:>8.2f} {requests / wall:>11,.0f} {user_days / wall:>12,.0f}"
              f" {per_request[backend]:>11.1f}")  # fmt: skip
    month = seconds["memory", "direct"]
    verdict = "met" if month <= 10 else "missed"
    target = f" (target for 1,000 users <= 10 s: {verdict})" if args.users == 1000 else ""
    library = seconds["memory", "stripe"]
    print(f"\nbaseline, {args.users:,} users x 30 days, on the sweeps' path: {month:.1f} s{target};"
          f" through the stripe library: {library:.1f} s, {library / month:.2f}x")  # fmt: skip

    print("\nfakeredis floor, microseconds per call (median of 3 x 20,000 calls):")
    measured = floors()
    measured["cache write script, inside the runs"] = (
        TimedRedisCache.seconds / TimedRedisCache.calls * 1e6
    )
    for name, micros in measured.items():
        ratio = per_request["fakeredis"] / micros
        print(f"  {name:<38} {micros:>7.1f}   fakeredis run / floor = {ratio:.2f}x")


if __name__ == "__main__":
    main()
