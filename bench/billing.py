"""Benchmark: the deduction path of the billing module, per cache backend, against its floor;
then concurrent deductions on a real Redis, checked for lost updates and double charges.

Part 1 prints the median cost of one ``BillingService.deduct_credits`` call (one SQLite
transaction that takes, decides and claims, then one cache write of the versioned snapshot, and
the service around them) on fakeredis, on a real Redis and on ``MemoryCache``, next to floors
measured in the same run: one bare command (``HGET``) and one bare ``EVALSHA`` for Redis and
fakeredis, the cache write alone, and the store transaction alone. The ratio is what the billing
path costs on top of each.

Part 2 runs N threads deducting from shared users on the real Redis: p50 / p99 latency per call,
throughput, and after the run zero lost updates (every balance = its ledger = start - taken +
credited) and exactly one charge per threshold crossing.

The real Redis is Debian's ``redis-server``, started on a free 127.0.0.1 port and stopped by the
script (or the server at ``REDIS_URL`` if set). Without either, the Redis rows are skipped.

    python bench/billing.py [--calls 20000] [--threads 8]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import redis
from interpreter import print_interpreter

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    MemoryCache,
    QueueRunner,
    RecordingNotifier,
    RedisCache,
    SQLiteStore,
    ThreadRunner,
    Vault,
)
from sim.billing.store import CachedUser
from sim.billing.testing import ScriptedGateway

BATCH = 1_000


@contextlib.contextmanager
def redis_server() -> Iterator[redis.Redis | None]:
    """A real Redis: REDIS_URL's, or a redis-server started here on a free loopback port."""
    if os.environ.get("REDIS_URL"):
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        yield client
        client.close()
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=port)
        try:
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    client.ping()
                    break
                time.sleep(0.05)
            yield client
        finally:
            client.close()
            server.terminate()
            server.wait()


def _service(cache: Any, tasks: Any = None, gateway: Any = None) -> BillingService:
    return BillingService(
        clock=ManualClock(), cache=cache, store=SQLiteStore(":memory:"),
        gateway=gateway or ScriptedGateway(), notifier=RecordingNotifier(),
        tasks=tasks or QueueRunner(), vault=Vault(bytes(32)),
    )  # fmt: skip


def per_call_us(call: Callable[[], object], calls: int) -> float:
    """Median microseconds per call over batches of ``BATCH`` calls."""
    samples = []
    for _ in range(max(1, calls // BATCH)):
        start = time.perf_counter()
        for _ in range(BATCH):
            call()
        samples.append((time.perf_counter() - start) / BATCH * 1e6)
    return statistics.median(samples)


def deduction_rows(name: str, cache_factory: Callable[[], Any], calls: int) -> list[str]:
    """The deduction path and its floors on one backend."""
    cache = cache_factory()
    billing = _service(cache)
    billing.create_user("bench", balance=10**12)
    billing.deduct_credits("bench", 1)  # fill the cache, load the scripts
    path = per_call_us(lambda: billing.deduct_credits("bench", 1), calls)
    floors: dict[str, float] = {}
    if isinstance(cache, redis.Redis):
        cache.hset("floor", "balance", 1)
        trivial = cache.register_script("return 1")
        floors["bare HGET"] = per_call_us(lambda: cache.hget("floor", "balance"), calls)
        floors["bare EVALSHA"] = per_call_us(lambda: trivial(keys=["floor"], args=[1]), calls)
        script = RedisCache(cache, "floor-script")
    else:
        script = cache
    versions = itertools.count(1)
    floors["cache write alone"] = per_call_us(
        lambda: script.put("s", CachedUser(next(versions), 10**12, False, 1000, 10_000,
                                           "active", 0, None)),
        calls,
    )  # fmt: skip
    store = billing.store
    policy = billing.config.policy
    floors["store transaction alone"] = per_call_us(
        lambda: store.deduct("bench", 1, 0.0, policy, lambda *a: b""), calls
    )
    rows = [f"{name:<10} {'deduct_credits':<24} {path:>9.1f} {1e6 / path:>11,.0f}"]
    for floor, micros in floors.items():
        rows.append(
            f"{'':<10} {floor:<24} {micros:>9.1f} {1e6 / micros:>11,.0f}"
            f"   path / floor = {path / micros:.2f}x"
        )
    return rows


def concurrency(client: redis.Redis, threads: int, users: int, per_thread: int) -> list[str]:
    """N threads deducting 10 credits at a time from shared users; verify the books after."""
    client.flushdb()
    gateway = ScriptedGateway()
    runner = ThreadRunner(workers=4)
    billing = _service(client, tasks=runner, gateway=gateway)
    ids = [f"user{i:02d}" for i in range(users)]
    total = threads * per_thread * 10
    start_balance = total // users + 1_000  # each user crosses 1,000 once, near the end
    for user in ids:
        billing.create_user(user, balance=start_balance)
        billing.save_payment_method(user, f"cus_{user}", "pm_card_visa")
        billing.update_settings(user, AutoTopupSettings(True, 1_000, 54_000, "eur"))
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        mine = latencies[index]
        barrier.wait()
        for n in range(per_thread):
            started = time.perf_counter()
            billing.deduct_credits(ids[(index + n) % users], 10)
            mine.append(time.perf_counter() - started)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    runner.join()
    runner.shutdown()
    flat = sorted(t for per in latencies for t in per)
    p50, p99 = flat[len(flat) // 2] * 1e6, flat[int(len(flat) * 0.99)] * 1e6
    store = billing.store
    lost = sum(
        1
        for user in ids
        if not billing.balance(user) == store.get_user(user).balance == store.ledger_sum(user)
    )
    taken = sum(-e.delta for u in ids for e in store.ledger(u) if e.kind == "usage")
    credited = sum(e.delta for u in ids for e in store.ledger(u) if e.kind == "topup")
    expected = users * start_balance - taken + credited
    actual = sum(billing.balance(u) for u in ids)
    charges = len(gateway.succeeded_keys)
    return [
        f"{threads} threads x {per_thread:,} deductions over {users} users: {len(flat):,} calls"
        f" in {elapsed:.2f} s = {len(flat) / elapsed:,.0f} deductions/s",
        f"latency per call: p50 {p50:.0f} us, p99 {p99:.0f} us",
        f"books: {lost} users whose cache, store and ledger disagree; credits taken {taken:,}"
        f" (expected {total:,}); total balance {actual:,} (expected {expected:,})",
        f"charges: {charges} for {users} threshold crossings (expected exactly one each)",
    ]


def main() -> None:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--threads", type=int, default=8, help="threads in part 2")
    args = parser.parse_args()
    print_interpreter()
    print("Part 1: one deduction, median microseconds per call (batches of 1,000)\n")
    print(f"{'backend':<10} {'what':<24} {'us/call':>9} {'calls/s':>11}")
    for row in deduction_rows("memory", MemoryCache, args.calls):
        print(row)
    for row in deduction_rows("fakeredis", fakeredis.FakeRedis, args.calls):
        print(row)
    with redis_server() as client:
        if client is None:
            print("redis      (no redis-server on this machine and no REDIS_URL: skipped)")
        else:
            client.flushdb()
            for row in deduction_rows("redis", lambda: client, args.calls):
                print(row)
            print("\nPart 2: concurrent deductions on the real Redis\n")
            for line in concurrency(client, args.threads, users=10, per_thread=2_500):
                print(line)


if __name__ == "__main__":
    main()
