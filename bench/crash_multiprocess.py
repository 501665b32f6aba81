"""Crash consistency across real processes: SIGKILLed workers and a flushed cache lose nothing.

What it proves. N worker processes serve deductions against one store (a SQLite file in WAL mode,
or PostgreSQL with ``--store-url``), one real Redis and one Stripe emulator over HTTP, each with
its own ``BillingService`` and a thread pool running the auto top-ups. While they serve, random
workers are killed with SIGKILL (mid-transaction, mid-charge, between Stripe's answer and the
credit: wherever they happen to be) and replaced, and the cache is flushed. After the workers stop
and every lease has run out, one ``reconcile_all`` pass repairs what the kills left behind, and a
second pass finds nothing. Then,
for every user:

- the cached snapshot, when cached, equals the store's (no divergent cache);
- no top-up attempt is still open (none stuck);
- every succeeded auto top-up PaymentIntent at the emulator is credited in the ledger, and every
  top-up credit has its succeeded PaymentIntent;
- no attempt was charged twice, and no two charges come from claims less than a cooldown apart;
- the balance equals the sum of the ledger.

Every one of those counts must be 0; the script exits 1 otherwise (or when the kills or flushes
asked for did not all happen).

The Redis is Debian's ``redis-server`` on a free 127.0.0.1 port (started and stopped here, with
``bench/servers.py``'s helper), or the server at ``REDIS_URL`` under a key prefix of this run's
own (only those keys are flushed). With ``--store-url postgresql://...`` the store is a schema of
the run's own on that server, created and migrated first and dropped afterwards. The emulator is
served from a child process on a free 127.0.0.1 port; while the workers serve it answers each
call after ``--stripe-latency`` seconds (real Stripe takes a few hundred milliseconds), which
widens the window in which a kill lands between a charge and its credit.

Run it from the repository root:

    .venv/bin/python bench/crash_multiprocess.py [--workers 4] [--users 40] [--seconds 20]
        [--kills 3] [--flushes 1] [--seed 1] [--stripe-latency 0.05] [--kill-at-stop]
        [--store-url postgresql://user:password@host:5432/database]

The workers stop on a flag (finishing the top-ups they have in flight); ``--kill-at-stop`` stops
them with SIGKILL instead, so that the reconcile has a dead fleet's leftovers to repair.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import multiprocessing
import os
import random
import signal
import socketserver
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import pairwise
from types import FrameType
from typing import Any

import redis
from servers import is_postgres, postgres_schema, redis_url

from sim.billing import (
    AutoTopupSettings,
    BillingConfig,
    BillingError,
    BillingService,
    InlineRunner,
    InsufficientCredits,
    RecordingNotifier,
    RedisCache,
    SystemClock,
    TaskRunner,
    ThreadRunner,
    Trigger,
    Vault,
)
from sim.billing.payments import StripeGateway
from sim.billing.reconcile import Reconciliation, reconcile_all
from sim.billing.store_url import open_store

log = logging.getLogger("crash_multiprocess")

API_KEY = "sk_test_crash_multiprocess"
TEST_CARD = "pm_card_visa"
#: A fixed master key shared by every process (a bench, not a deployment).
MASTER_KEY = bytes(32)
#: Top up 1,000 credits (2 EUR) at or below 1,000: small, so that users cross it often.
SETTINGS = AutoTopupSettings(True, 1_000, 1_000, "eur")
START_BALANCE = 2_000
MAX_DEDUCTION = 50

# Columns of each worker's row of shared counters. Plain shared memory, no lock: a worker killed
# while holding a lock would hang every other process that takes it; each row has one writer.
READY, CALLS, REFUSED, ERRORS, TAKEN_OVER = range(5)
COLUMNS = 5


@dataclass(frozen=True, slots=True)
class Options:
    """The run's size and timing; every duration in seconds."""

    workers: int = 4
    users: int = 40
    seconds: float = 20.0
    kills: int = 3
    flushes: int = 1
    seed: int = 1
    cooldown: float = 1.0
    lease: float = 2.0
    backoff: float = 0.05
    stripe_latency: float = 0.05
    #: Stop the workers with SIGKILL rather than the stop flag, leaving their top-ups in flight
    #: (and their unsent notices) to the reconcile.
    kill_at_stop: bool = False
    #: The store every process shares: a ``sqlite:///`` or ``postgresql://`` URL (an empty,
    #: migrated database of the run's own), or ``None`` for a SQLite file in a temporary folder.
    store_url: str | None = None

    def config(self) -> BillingConfig:
        """The billing rules every process uses: short, so leases run out within the run."""
        return BillingConfig(
            cooldown_seconds=self.cooldown,
            attempt_lease_seconds=self.lease,
            retry_backoff_seconds=self.backoff,
        )


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the shared state lives: what a worker needs to build its own BillingService."""

    store_url: str
    redis_url: str
    cache_prefix: str
    stripe_url: str


@dataclass(slots=True)
class Report:
    """What happened, and the counts that must all be 0."""

    users: int = 0
    deductions: int = 0
    calls: int = 0
    refused: int = 0
    worker_errors: int = 0
    taken_over: int = 0
    serving_seconds: float = 0.0
    kills: int = 0
    flushes: int = 0
    flushed_keys: int = 0
    forced_stops: int = 0
    lease_wait_seconds: float = 0.0
    open_before_reconcile: int = 0
    first_pass: dict[str, int] = field(default_factory=dict)
    second_pass: dict[str, int] = field(default_factory=dict)
    charges: int = 0
    topup_credits: int = 0
    attempts: int = 0
    divergent_users: int = 0
    stuck_attempts: int = 0
    charges_without_credit: int = 0
    credits_without_charge: int = 0
    double_charges: int = 0
    balance_ledger_mismatches: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Deductions per second of serving time."""
        return self.deductions / self.serving_seconds if self.serving_seconds else 0.0

    def problems(self) -> dict[str, int]:
        """Every count that must be 0, by name."""
        return {
            "divergent users": self.divergent_users,
            "stuck attempts": self.stuck_attempts,
            "charges without credit": self.charges_without_credit,
            "credits without charge": self.credits_without_charge,
            "double charges": self.double_charges,
            "balances that differ from their ledger": self.balance_ledger_mismatches,
            "repairs still needed by the second reconcile pass": sum(self.second_pass.values()),
        }

    @property
    def ok(self) -> bool:
        """Every count is 0."""
        return not any(self.problems().values())


# ------------------------------------------------------------------------------ shared services


def build_billing(
    endpoints: Endpoints, options: Options, tasks: TaskRunner
) -> tuple[BillingService, redis.Redis, Any]:
    """One process's BillingService over the shared store, Redis and emulator."""
    store = open_store(endpoints.store_url)
    client = redis.Redis.from_url(endpoints.redis_url)
    billing = BillingService(
        clock=SystemClock(),
        cache=client,
        store=store,
        gateway=StripeGateway(API_KEY, base_addresses={"api": endpoints.stripe_url}),
        notifier=RecordingNotifier(),
        tasks=tasks,
        vault=Vault(MASTER_KEY),
        config=options.config(),
        cache_prefix=endpoints.cache_prefix,
    )
    return billing, client, store


def user_ids(count: int) -> list[str]:
    """The users of the run."""
    return [f"user{i:03d}" for i in range(count)]


# ------------------------------------------------------------------------------ the workers

_terminated = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminated
    _terminated = True


def worker(
    row: int,
    endpoints: Endpoints,
    options: Options,
    counters: ctypes.Array[ctypes.c_int64],
    go: ctypes.c_int8,
    stop: ctypes.c_int8,
) -> None:
    """Serve random deductions until told to stop (the flag, SIGTERM, or a safety deadline).

    Runs in its own process; ``row`` is its row of ``counters`` (a replacement gets a new row, so
    a killed worker's counts stay).
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s: %(message)s")
    runner = ThreadRunner(workers=4)
    billing, client, store = build_billing(endpoints, options, runner)
    users = user_ids(options.users)
    rng = random.Random(f"{options.seed}:{row}")
    counts, base = counters, row * COLUMNS
    counts[base + READY] = 1
    while not go.value and not stop.value and not _terminated:
        time.sleep(0.01)
    deadline = time.monotonic() + options.seconds * 2 + 30
    while not stop.value and not _terminated and time.monotonic() < deadline:
        user = rng.choice(users)
        try:
            done = billing.deduct_credits(user, rng.randint(1, MAX_DEDUCTION))
            if done.trigger is Trigger.RECOVER:
                counts[base + TAKEN_OVER] += 1
        except InsufficientCredits:
            counts[base + REFUSED] += 1
        except BillingError:
            counts[base + ERRORS] += 1
            log.exception("deduction for %s failed", user)
        counts[base + CALLS] += 1
    runner.shutdown()  # let the top-ups in flight finish: a graceful stop
    store.close()
    client.close()


# ------------------------------------------------------------------------------ the services


class Emulator:
    """The Stripe emulator's HTTP server in a child process; its latency can be changed live."""

    def __init__(self, seed: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-stripe-emulator", "--seed", str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        self.url = self._stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the Stripe emulator did not start (said {self.url!r})")

    def set_latency(self, seconds: float) -> None:
        """Answer each call after ``seconds`` from now on (acknowledged before returning)."""
        self._stdin.write(f"{seconds}\n")
        self._stdin.flush()
        self._stdout.readline()

    def close(self) -> None:
        """Stop the server (closing its stdin ends it)."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stdout.close()


def serve_stripe_emulator(seed: int) -> None:
    """The emulator process: serve on a free loopback port, print the URL, then read latencies
    (seconds, one a line) from stdin until it closes."""
    from sim.stripe_emulator import EmulatorServer, Faults, StripeEmulator

    def quiet(request: object, client_address: object) -> None:
        # A worker killed mid-request leaves a broken connection: expected here, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            socketserver.BaseServer.handle_error(server._httpd, request, client_address)

    emulator = StripeEmulator(seed=seed)
    server = EmulatorServer(emulator, port=0, deliver_webhooks=False)
    server._httpd.handle_error = quiet  # type: ignore[method-assign]
    with server:
        print(server.url, flush=True)
        for line in sys.stdin:
            emulator.faults = Faults(latency=float(line))
            print("ok", flush=True)


# ------------------------------------------------------------------------------ the run


class Fleet:
    """The worker processes: start, kill, replace, stop."""

    def __init__(self, endpoints: Endpoints, options: Options) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._endpoints = endpoints
        self._options = options
        rows = options.workers + options.kills + 1
        # Raw shared memory: no lock for a killed worker to die holding.
        self.counters: ctypes.Array[ctypes.c_int64] = self._ctx.RawArray(
            ctypes.c_int64, rows * COLUMNS
        )
        self.go: ctypes.c_int8 = self._ctx.RawValue(ctypes.c_int8, 0)
        self.stop: ctypes.c_int8 = self._ctx.RawValue(ctypes.c_int8, 0)
        self.slots: list[multiprocessing.process.BaseProcess] = []
        self._rows = 0

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        row, self._rows = self._rows, self._rows + 1
        process = self._ctx.Process(
            target=worker,
            args=(row, self._endpoints, self._options, self.counters, self.go, self.stop),
            name=f"worker-{row}",
            daemon=True,
        )
        process.start()
        return process

    def start(self, timeout: float = 120.0) -> None:
        """Start the workers and wait until each has built its service."""
        self.slots = [self._spawn() for _ in range(self._options.workers)]
        until = time.monotonic() + timeout
        counts = self.counters
        while not all(counts[row * COLUMNS + READY] for row in range(len(self.slots))):
            if time.monotonic() > until or not all(p.is_alive() for p in self.slots):
                raise RuntimeError("a worker did not start")
            time.sleep(0.02)

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random worker and start its replacement; what was done, in words."""
        slot = rng.randrange(len(self.slots))
        victim = self.slots[slot]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        self.slots[slot] = self._spawn()
        return f"killed {victim.name} (pid {victim.pid}), started {self.slots[slot].name}"

    def stop_all(self, timeout: float = 30.0, *, kill: bool = False) -> int:
        """Raise the stop flag (or SIGKILL every worker) and wait; a worker that does not stop
        is killed. How many had to be."""
        if kill:
            for process in self.slots:
                if process.pid is not None and process.is_alive():
                    os.kill(process.pid, signal.SIGKILL)
        self.stop.value = 1
        forced = 0
        until = time.monotonic() + timeout
        for process in self.slots:
            process.join(max(0.0, until - time.monotonic()))
            if process.is_alive():
                forced += 1
                process.kill()
                process.join()
        return forced

    def totals(self) -> Counter[str]:
        """Calls, refusals and errors summed over every worker, killed ones included."""
        counts = self.counters
        total: Counter[str] = Counter()
        for row in range(self._rows):
            total["calls"] += counts[row * COLUMNS + CALLS]
            total["refused"] += counts[row * COLUMNS + REFUSED]
            total["errors"] += counts[row * COLUMNS + ERRORS]
            total["taken over"] += counts[row * COLUMNS + TAKEN_OVER]
        return total


def setup_users(billing: BillingService, users: Sequence[str]) -> None:
    """Create each user with a balance, a Stripe customer, the test card and auto top-up on."""

    def one(user: str) -> None:
        billing.create_user(user, balance=START_BALANCE)
        gateway = billing.gateway
        assert isinstance(gateway, StripeGateway)
        customer = gateway.ensure_customer(user)
        card = gateway.attach_card(customer, TEST_CARD)
        billing.save_payment_method(user, customer, card)
        billing.update_settings(user, SETTINGS)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, users))


def timeline(options: Options) -> list[tuple[float, str]]:
    """When (seconds into serving) each kill and each flush happens, in order."""
    events = [
        (options.seconds * k / (options.kills + 1), "kill") for k in range(1, 1 + options.kills)
    ]
    events += [
        (options.seconds * (j + 0.6) / (options.flushes + 1), "flush")
        for j in range(options.flushes)
    ]
    return sorted(events)


def wait_for_leases(billing: BillingService, users: Sequence[str]) -> float:
    """Sleep until every open attempt's lease has run out; the seconds slept."""
    ends = []
    for user in users:
        record = billing.store.get_user(user)
        if record.open_attempt is not None and record.lease_until is not None:
            ends.append(record.lease_until)
    wait = max(0.0, max(ends, default=0.0) - billing.clock.now() + 0.05)
    time.sleep(wait)
    return wait


def tally(results: Sequence[Reconciliation], users: int) -> dict[str, int]:
    """What one reconcile pass repaired, by kind."""
    return {
        "caches repaired": sum(r.cache_repaired for r in results),
        "attempts taken over": sum(r.attempt_recovered is not None for r in results),
        "charges credited": sum(len(r.uncredited_charges) for r in results),
        "notices sent": sum(r.notices_sent for r in results),
        "users skipped on an error": users - len(results),
    }


def check(billing: BillingService, cache: RedisCache, users: Sequence[str], report: Report) -> None:
    """Count, for every user, what must never happen (see the module docstring)."""
    store = billing.store
    gateway = billing.gateway
    assert isinstance(gateway, StripeGateway)
    cooldown = billing.config.cooldown_seconds
    for user in users:
        truth = store.snapshot(user)
        cached = cache.get(user)
        if cached is not None and cached != truth:
            report.divergent_users += 1
            report.details.append(f"{user}: cache holds {cached}, store holds {truth}")
        record = store.get_user(user)
        if record.open_attempt is not None:
            report.stuck_attempts += 1
            attempt = store.attempt(user, record.open_attempt)
            report.details.append(f"{user}: attempt still open: {attempt}")
        if record.balance != store.ledger_sum(user):
            report.balance_ledger_mismatches += 1
            report.details.append(
                f"{user}: balance {record.balance}, ledger sum {store.ledger_sum(user)}"
            )
        attempts = {a.seq: a for a in store.attempts(user)}
        report.attempts += len(attempts)
        credited = {e.reference for e in store.ledger(user) if e.kind == "topup"}
        report.topup_credits += len(credited)
        saved = billing.payment_method(user)
        charges = [] if saved is None else gateway.succeeded_charges(saved[0])
        report.charges += len(charges)
        paid = {c.payment_intent_id for c in charges}
        for charge in charges:
            if charge.payment_intent_id not in credited:
                report.charges_without_credit += 1
                report.details.append(f"{user}: {charge.payment_intent_id} paid, not credited")
        for reference in sorted(credited - paid):
            report.credits_without_charge += 1
            report.details.append(f"{user}: {reference} credited, no succeeded charge")
        per_attempt = Counter(
            (c.metadata.get("user_id"), c.metadata.get("attempt")) for c in charges
        )
        for (owner, seq), times in per_attempt.items():
            if times > 1:
                report.double_charges += times - 1
                report.details.append(f"{user}: attempt {seq} of {owner} charged {times} times")
        claimed = sorted(
            attempts[int(seq)].claimed_at
            for _, seq in per_attempt
            if seq is not None and int(seq) in attempts
        )
        for earlier, later in pairwise(claimed):
            if later - earlier < cooldown:
                report.double_charges += 1
                report.details.append(
                    f"{user}: two charges from claims {later - earlier:.3f} s apart"
                    f" (cooldown {cooldown} s)"
                )


def run(options: Options, *, verbose: bool = True) -> Report:
    """Set everything up, serve with kills and flushes, reconcile, check; the report."""
    say = print if verbose else (lambda *args, **kwargs: None)
    report = Report(users=options.users)
    rng = random.Random(f"crash-multiprocess:{options.seed}")
    users = user_ids(options.users)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="crash-mp-"))
        url = stack.enter_context(redis_url())
        if url is None:
            raise RuntimeError("no redis-server on this machine and no REDIS_URL")
        emulator = Emulator(options.seed)
        stack.callback(emulator.close)
        endpoints = Endpoints(
            store_url=options.store_url or f"sqlite:///{workdir}/billing.sqlite3",
            redis_url=url,
            cache_prefix=f"crash-mp-{uuid.uuid4().hex[:12]}",
            stripe_url=emulator.url,
        )
        billing, client, store = build_billing(endpoints, options, InlineRunner())
        stack.callback(client.close)
        stack.callback(store.close)
        cache = RedisCache(client, endpoints.cache_prefix)
        stack.callback(cache.clear)
        say(f"redis {url} (key prefix {endpoints.cache_prefix}), Stripe emulator {emulator.url},")
        say("PostgreSQL (--store-url)" if options.store_url else f"{endpoints.store_url}")
        setup_users(billing, users)
        say(
            f"{options.users} users with {START_BALANCE:,} credits each, auto top-up of"
            f" {SETTINGS.amount:,} credits at {SETTINGS.threshold:,},"
            f" cooldown {options.cooldown} s, lease {options.lease} s"
        )

        fleet = Fleet(endpoints, options)
        stack.callback(fleet.stop_all, 5.0)
        fleet.start()
        emulator.set_latency(options.stripe_latency)
        say(
            f"{options.workers} worker processes serving for {options.seconds:g} s"
            f" (Stripe answers in {options.stripe_latency * 1000:.0f} ms)"
        )
        began = time.monotonic()
        fleet.go.value = 1
        for at, kind in timeline(options):
            time.sleep(max(0.0, began + at - time.monotonic()))
            if kind == "kill":
                done = fleet.kill_one(rng)
                report.kills += 1
            else:
                keys = sum(1 for _ in client.scan_iter(match=f"{endpoints.cache_prefix}:*"))
                cache.clear()
                report.flushes += 1
                report.flushed_keys += keys
                done = f"flushed the cache ({keys} cached users deleted)"
            say(f"  {time.monotonic() - began:5.1f} s  {done}")
        time.sleep(max(0.0, began + options.seconds - time.monotonic()))
        report.serving_seconds = time.monotonic() - began
        report.forced_stops = fleet.stop_all(kill=options.kill_at_stop)
        emulator.set_latency(0.0)
        totals = fleet.totals()
        report.calls, report.refused = totals["calls"], totals["refused"]
        report.worker_errors = totals["errors"]
        report.taken_over = totals["taken over"]
        report.deductions = sum(
            1 for user in users for entry in store.ledger(user) if entry.kind == "usage"
        )
        report.open_before_reconcile = sum(
            store.get_user(user).open_attempt is not None for user in users
        )
        report.lease_wait_seconds = wait_for_leases(billing, users)
        report.first_pass = tally(reconcile_all(billing), len(users))
        report.second_pass = tally(reconcile_all(billing), len(users))
        check(billing, cache, users, report)
    return report


def render(report: Report, options: Options) -> list[str]:
    """The report in plain words, with units."""
    lines = [
        "",
        f"served: {report.deductions:,} deductions in {report.serving_seconds:.1f} s ="
        f" {report.throughput:,.0f} deductions/s ({report.calls:,} calls counted by live workers,"
        f" {report.refused:,} refused for insufficient credits, {report.worker_errors} errors)",
        f"top-ups: {report.attempts} attempts claimed; {report.taken_over} attempts of dead"
        f" workers taken over by a later served deduction once their lease ran out",
        f"crashes: {report.kills} of {options.kills} workers killed with SIGKILL and replaced,"
        f" {report.flushes} of {options.flushes} cache flushes ({report.flushed_keys} keys)"
        + (
            ", and every worker killed with SIGKILL at stop"
            if options.kill_at_stop
            else f", {report.forced_stops} workers that had to be killed at stop"
        ),
        f"after stop: {report.open_before_reconcile} attempts open; waited"
        f" {report.lease_wait_seconds:.1f} s for their leases to run out",
        "reconcile pass 1 repaired: " + _counts(report.first_pass),
        "reconcile pass 2 repaired: " + _counts(report.second_pass),
        f"books: {report.attempts} top-up attempts claimed, {report.charges} succeeded charges at"
        f" the emulator, {report.topup_credits} top-up credits in the ledger",
        "",
        "must be 0:",
    ]
    lines += [f"  {name}: {count}" for name, count in report.problems().items()]
    lines += [f"  ! {line}" for line in report.details]
    ran_all = report.kills == options.kills and report.flushes == options.flushes
    verdict = "PASS" if report.ok and ran_all else "FAIL"
    lines.append(f"{verdict}: {options.users} users stayed consistent" if verdict == "PASS"
                 else f"{verdict}: see the counts above")  # fmt: skip
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def parse(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    """The command line as Options (and the raw namespace, for the emulator mode)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    defaults = Options()
    parser.add_argument("--workers", type=int, default=defaults.workers, help="worker processes")
    parser.add_argument("--users", type=int, default=defaults.users, help="users")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="serving time, s")
    parser.add_argument("--kills", type=int, default=defaults.kills, help="SIGKILLs while serving")
    parser.add_argument("--flushes", type=int, default=defaults.flushes, help="cache flushes")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--cooldown", type=float, default=defaults.cooldown, help="cooldown, s")
    parser.add_argument("--lease", type=float, default=defaults.lease, help="attempt lease, s")
    parser.add_argument(
        "--stripe-latency", type=float, default=defaults.stripe_latency,
        help="seconds the emulator takes to answer each call while the workers serve",
    )  # fmt: skip
    parser.add_argument(
        "--kill-at-stop", action="store_true",
        help="stop the workers with SIGKILL, leaving their top-ups in flight to the reconcile",
    )  # fmt: skip
    parser.add_argument(
        "--store-url",
        help="the shared store: a postgresql:// server URL, where the run makes a schema of its"
        " own and drops it afterwards, or a sqlite:/// URL (default: a SQLite file in a temporary"
        " folder)",
    )
    parser.add_argument("--serve-stripe-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.users < 1 or args.seconds <= 0 or min(args.kills, args.flushes) < 0:
        parser.error("--workers and --users must be >= 1, --seconds > 0, --kills/--flushes >= 0")
    options = Options(
        workers=args.workers, users=args.users, seconds=args.seconds, kills=args.kills,
        flushes=args.flushes, seed=args.seed, cooldown=args.cooldown, lease=args.lease,
        stripe_latency=args.stripe_latency, kill_at_stop=args.kill_at_stop,
        store_url=args.store_url,
    )  # fmt: skip
    return options, args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its report; 0 when every count is 0, else 1."""
    options, args = parse(argv)
    if args.serve_stripe_emulator:
        serve_stripe_emulator(options.seed)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        if options.store_url is not None and is_postgres(options.store_url):
            scoped = stack.enter_context(postgres_schema(options.store_url, "crash_mp"))
            options = replace(options, store_url=scoped)
        report = run(options)
    for line in render(report, options):
        print(line)
    ran_all = report.kills == options.kills and report.flushes == options.flushes
    return 0 if report.ok and ran_all else 1


if __name__ == "__main__":
    sys.exit(main())
