"""Benchmark: deductions from worker processes on one host, per store: SQLite and PostgreSQL.

N worker processes (1, 4 and 8 by default) each build their own ``BillingService`` over one shared
store and deduct 1-50 credits at a time from 40 shared users picked at random, all starting
together, for a fixed time (``--seconds``) or a fixed number of calls each (``--calls``). The
stores: one SQLite file in WAL mode, where a deduction holds the whole file's write lock (``BEGIN
IMMEDIATE``), and PostgreSQL at ``POSTGRES_URL``, where it holds its user's row lock (decision
51), in a schema of the run's own, created and migrated first and dropped afterwards; without
``POSTGRES_URL`` its rows are skipped with a line saying so. The stores take turns at each worker
count, so that the drift of a busy machine falls on both alike.

The cache is one real Redis that every process shares, as in a deployment (``bench/servers.py``:
the server at ``REDIS_URL``, or a ``redis-server`` started on a free loopback port), under a key
prefix of the run's own. ``--cache memory`` gives each process a ``MemoryCache`` of its own
instead: the store is then the only shared part (and the cache is not checked). Top-ups are off
(no user has auto top-up), so this measures the deduction alone: its store transaction and its
cache write. Top-ups under concurrency and kills are ``bench/crash_multiprocess.py``'s.

Printed per store and worker count: deductions per second (all workers together, from the first
timed call to the last), p50 and p99 of one call's latency, and the throughput's ratio to SQLite
at the same count and to the same store with one worker. After each run, the books: every balance
equals its ledger sum; no lost update (one usage entry per served call, and the credits the
workers were told they took = the usage entries' sum = the fall of the total balance); the cached
snapshot, where there is one, equals the store's; no call failed. The script exits 1 when one of
them does not hold.

Each store's durability is printed with its first row (SQLite's journal mode and
``synchronous``, PostgreSQL's ``fsync`` and ``synchronous_commit``): a flush to disk per commit is
most of a deduction on one worker, so the two compare fairly only when both flush (a throwaway
test cluster often runs with both settings off). The workers, the database server and Redis share
the host's cores: with more workers than cores the figures say how a store behaves
oversubscribed, not how it scales.

    python bench/stores.py [--workers 1,4,8] [--seconds 5] [--calls N] [--users 40]
        [--stores sqlite,postgres] [--cache redis|memory] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from interpreter import print_interpreter
from servers import postgres_schema, redis_url

from sim.billing import (
    BillingError,
    BillingService,
    InlineRunner,
    MemoryCache,
    RecordingNotifier,
    RedisCache,
    SystemClock,
    Vault,
)
from sim.billing.store import Store
from sim.billing.store_url import open_store, sqlite_path
from sim.billing.testing import ScriptedGateway

#: Large enough that no user runs dry, so that every call is a served deduction.
START_BALANCE = 10**12
MAX_DEDUCTION = 50
#: Seconds to wait for the workers to start (each imports the billing module and connects).
START_TIMEOUT = 120.0
HEADER = (
    f"{'store':<9} {'workers':>7} {'calls':>8} {'seconds':>8} {'deductions/s':>13}"
    f" {'p50 us':>8} {'p99 us':>8}"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker of one run needs: where the shared state is, and when to stop."""

    store_url: str
    redis_url: str | None
    cache_prefix: str
    users: int
    seconds: float
    calls: int | None
    seed: int


@dataclass(slots=True)
class Served:
    """One worker's tally, sent to the parent when it stops (times are ``time.monotonic``,
    which is one clock for every process on Linux)."""

    calls: int = 0
    taken: int = 0
    errors: int = 0
    first: float = 0.0
    last: float = 0.0
    #: Seconds per call, an ``array('d')``'s bytes: small to send through a queue.
    latencies: bytes = b""


@dataclass(slots=True)
class Books:
    """The invariants after a run, as counts that must agree."""

    users_off_ledger: int = 0
    stale_cache: int | None = 0
    usage_entries: int = 0
    usage_credits: int = 0
    balance_fall: int = 0
    served: int = 0
    taken: int = 0
    errors: int = 0

    @property
    def ok(self) -> bool:
        """Every balance is its ledger, nothing was lost, the cache agrees, nothing failed."""
        return (
            self.users_off_ledger == 0
            and not self.stale_cache
            and self.errors == 0
            and self.usage_entries == self.served
            and self.usage_credits == self.taken == self.balance_fall
        )

    def line(self) -> str:
        """The books in words."""
        cache = (
            "cache not checked (one per process)"
            if self.stale_cache is None
            else f"{self.stale_cache} cached users unlike the store"
        )
        return (
            f"{'ok' if self.ok else 'FAIL'}: {self.users_off_ledger} balances off their ledger;"
            f" {self.usage_entries:,} usage entries for {self.served:,} served calls;"
            f" credits taken {self.taken:,} = ledger {self.usage_credits:,} = balance fall"
            f" {self.balance_fall:,}; {cache}; {self.errors} failed calls"
        )


@dataclass(slots=True)
class Result:
    """One store at one worker count."""

    store: str
    workers: int
    calls: int
    seconds: float
    p50_us: float
    p99_us: float
    books: Books = field(default_factory=Books)

    @property
    def rate(self) -> float:
        """Deductions per second, all workers together."""
        return self.calls / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        """The result under :data:`HEADER`."""
        return (
            f"{self.store:<9} {self.workers:>7} {self.calls:>8,} {self.seconds:>8.2f}"
            f" {self.rate:>13,.0f} {self.p50_us:>8,.0f} {self.p99_us:>8,.0f}"
        )


def user_ids(count: int) -> list[str]:
    """The shared users."""
    return [f"user{i:03d}" for i in range(count)]


def build(plan: Plan, store: Store, cache: redis.Redis | MemoryCache) -> BillingService:
    """One process's service: no gateway call happens (top-ups are off), nothing runs later."""
    return BillingService(
        clock=SystemClock(), cache=cache, store=store, gateway=ScriptedGateway(),
        notifier=RecordingNotifier(), tasks=InlineRunner(), vault=Vault(bytes(32)),
        cache_prefix=plan.cache_prefix,
    )  # fmt: skip


def worker(index: int, plan: Plan, start: Any, results: Any) -> None:
    """Deduct until the plan says stop; put ``(index, Served)`` on ``results``.

    Runs in its own process. Connects and reads one balance before the start barrier, so that
    connecting and the first cache fill are not timed."""
    store = open_store(plan.store_url)
    client = None if plan.redis_url is None else redis.Redis.from_url(plan.redis_url)
    billing = build(plan, store, MemoryCache() if client is None else client)
    users = user_ids(plan.users)
    rng = random.Random(f"{plan.seed}:{index}")
    billing.balance(users[index % len(users)])
    served, latencies = Served(), array("d")
    start.wait(START_TIMEOUT)
    served.first = time.monotonic()
    deadline = served.first + plan.seconds
    while served.calls < plan.calls if plan.calls is not None else time.monotonic() < deadline:
        user, credits = rng.choice(users), rng.randint(1, MAX_DEDUCTION)
        began = time.perf_counter()
        try:
            billing.deduct_credits(user, credits)
        except BillingError:
            served.errors += 1
        else:
            served.taken += credits
        latencies.append(time.perf_counter() - began)
        served.calls += 1
    served.last = time.monotonic()
    served.latencies = latencies.tobytes()
    results.put((index, served))
    store.close()
    if client is not None:
        client.close()


def collect(processes: Sequence[Any], results: Any) -> list[Served]:
    """Every worker's tally; an error when a worker died without sending one."""
    got: dict[int, Served] = {}
    while len(got) < len(processes):
        try:
            index, served = results.get(timeout=1.0)
        except queue.Empty:
            if not any(process.is_alive() for process in processes):
                raise RuntimeError("a worker died before reporting") from None
            continue
        got[index] = served
    for process in processes:
        process.join()
    return [got[index] for index in sorted(got)]


def check(billing: BillingService, cache: RedisCache | None, users: Sequence[str],
          tallies: Sequence[Served]) -> Books:  # fmt: skip
    """The books of the run (see the module docstring)."""
    store = billing.store
    books = Books(
        stale_cache=None if cache is None else 0,
        served=sum(t.calls - t.errors for t in tallies),
        taken=sum(t.taken for t in tallies),
        errors=sum(t.errors for t in tallies),
    )
    for user in users:
        balance = store.get_user(user).balance
        books.users_off_ledger += balance != store.ledger_sum(user)
        books.balance_fall += START_BALANCE - balance
        usage = store.ledger(user, kinds=("usage",))
        books.usage_entries += len(usage)
        books.usage_credits += sum(-entry.delta for entry in usage)
        if cache is not None:
            cached = cache.get(user)
            stale = cached is not None and cached != store.snapshot(user)
            books.stale_cache = (books.stale_cache or 0) + stale
    return books


def run_once(store_name: str, workers: int, plan: Plan) -> Result:
    """Create the users, serve with ``workers`` processes, check the books."""
    users = user_ids(plan.users)
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(contextlib.closing(open_store(plan.store_url)))
        client = None if plan.redis_url is None else redis.Redis.from_url(plan.redis_url)
        cache = None
        if client is not None:
            stack.callback(client.close)
            cache = RedisCache(client, plan.cache_prefix)
            stack.callback(cache.clear)
        billing = build(plan, store, MemoryCache() if client is None else client)
        for user in users:
            billing.create_user(user, balance=START_BALANCE)
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(workers + 1), context.Queue()
        processes = [
            context.Process(target=worker, args=(index, plan, start, results), daemon=True)
            for index in range(workers)
        ]
        for process in processes:
            process.start()
        start.wait(START_TIMEOUT)
        tallies = collect(processes, results)
        flat = array("d")
        for tally in tallies:
            flat.frombytes(tally.latencies)
        cuts = statistics.quantiles(flat, n=100) if len(flat) > 1 else [flat[0]] * 99
        return Result(
            store=store_name,
            workers=workers,
            calls=sum(t.calls for t in tallies),
            seconds=max(t.last for t in tallies) - min(t.first for t in tallies),
            p50_us=cuts[49] * 1e6,
            p99_us=cuts[98] * 1e6,
            books=check(billing, cache, users, tallies),
        )


@contextlib.contextmanager
def fresh_store(name: str) -> Iterator[str]:
    """A new, empty store for one run: a SQLite file in a temporary folder, or a schema at
    ``POSTGRES_URL``; gone afterwards."""
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-stores-") as folder:
            yield f"sqlite:///{folder}/billing.sqlite3"
    else:
        with postgres_schema(os.environ["POSTGRES_URL"], "bench_stores") as url:
            yield url


def durability(name: str, url: str) -> str:
    """How the store makes a commit durable, in one line: a flush to disk per commit costs
    milliseconds, so two stores compare fairly only at the same setting."""
    if name == "sqlite":
        with contextlib.closing(sqlite3.connect(sqlite_path(url))) as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            level = db.execute("PRAGMA synchronous").fetchone()[0]
        sync = ("OFF", "NORMAL", "FULL", "EXTRA")[level]
        return f"sqlite {sqlite3.sqlite_version}: journal_mode={mode}, synchronous={sync}"
    import psycopg

    with psycopg.connect(url) as db:
        version, fsync, commit = (
            db.execute(f"SHOW {setting}").fetchone()[0]  # type: ignore[index]
            for setting in ("server_version", "fsync", "synchronous_commit")
        )
    return f"postgres {version}: fsync={fsync}, synchronous_commit={commit}"


def ratios(results: Sequence[Result]) -> list[str]:
    """Each row's throughput against SQLite at its worker count and against its store's 1."""
    by = {(r.store, r.workers): r for r in results}
    lines = [f"{'store':<9} {'workers':>7} {'vs sqlite':>10} {'vs 1 worker':>12}"]
    for r in results:
        sqlite, one = by.get(("sqlite", r.workers)), by.get((r.store, 1))
        lines.append(
            f"{r.store:<9} {r.workers:>7} "
            f"{f'{r.rate / sqlite.rate:.2f}x' if sqlite and sqlite.rate else '':>10} "
            f"{f'{r.rate / one.rate:.2f}x' if one and one.rate else '':>12}"
        )
    return lines


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", default="1,4,8", help="worker counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="serving time of each run, s")
    parser.add_argument("--calls", type=int, help="calls per worker instead of --seconds")
    parser.add_argument("--users", type=int, default=40, help="shared users")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--cache", choices=("redis", "memory"), default="redis",
                        help="one shared real Redis, or a MemoryCache per process")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    args.workers = [int(n) for n in args.workers.split(",")]
    args.stores = args.stores.split(",")
    if min(args.workers) < 1 or args.users < 1 or args.seconds <= 0 or (args.calls or 1) < 1:
        parser.error("--workers, --users and --calls must be >= 1, --seconds > 0")
    if not set(args.stores) <= {"sqlite", "postgres"}:
        parser.error("--stores takes sqlite, postgres or both")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every store at every worker count; print the rows, the books and the ratios."""
    args = parse(argv)
    print_interpreter()
    stores = list(args.stores)
    if "postgres" in stores and not os.environ.get("POSTGRES_URL"):
        print("postgres  (POSTGRES_URL is not set: skipped)")
        stores.remove("postgres")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_url()) if args.cache == "redis" else None
        if args.cache == "redis" and url is None:
            print("(no redis-server on this machine and no REDIS_URL: a MemoryCache per process)")
        size = f"{args.calls:,} calls per worker" if args.calls else f"{args.seconds:g} s a run"
        cache = "one real Redis" if url else "a MemoryCache per process"
        print(f"{args.users} shared users, 1-{MAX_DEDUCTION} credits a call, top-ups off,"
              f" {cache}, {size}\n")  # fmt: skip
        print(HEADER)
        results: list[Result] = []
        described: set[str] = set()
        for workers in args.workers:
            for name in stores:
                with fresh_store(name) as shared:
                    plan = Plan(
                        store_url=shared, redis_url=url,
                        cache_prefix=f"bench-stores-{uuid.uuid4().hex[:12]}", users=args.users,
                        seconds=args.seconds, calls=args.calls, seed=args.seed,
                    )  # fmt: skip
                    result = run_once(name, workers, plan)
                    if name not in described:  # after the run: the store has set its journal
                        described.add(name)
                        print(f"({durability(name, shared)})")
                results.append(result)
                print(result.row())
                print(f"{'':<9} books {result.books.line()}")
    print()
    for line in ratios(results):
        print(line)
    return 0 if all(r.books.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
