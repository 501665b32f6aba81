"""Fixtures for the billing core: every port is a small in-process stand-in.

The cache fixture runs each test against fakeredis, the in-memory cache and, when ``REDIS_URL`` is
set, a real Redis too (CI starts one).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis

from sim.billing import (
    AutoTopupSettings,
    BalanceCache,
    BillingConfig,
    BillingService,
    ManualClock,
    MemoryCache,
    MemoryStore,
    PaymentGateway,
    QueueRunner,
    RecordingNotifier,
    RedisCache,
    SQLiteStore,
    Store,
    StoreUnavailable,
    TaskRunner,
    ThreadRunner,
    Vault,
)
from sim.billing.payments import StripeGateway
from sim.billing.testing import ScriptedGateway
from sim.stripe_emulator import StripeEmulator

from .postgres import postgres_store

MASTER_KEY = bytes(range(32))
#: State-machine steps run in this session (``test_properties``); printed at the end of the run.
STEPS = [0]


#: Fuzzed requests answered in this session, by (endpoint, status) (``test_fuzz``).
FUZZ: Counter[tuple[str, int]] = Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many state-machine steps the property tests ran and how many fuzzed requests
    were answered with what, by endpoint (a search's real size)."""
    if STEPS[0]:
        terminalreporter.write_line(f"billing state machine: {STEPS[0]:,} steps")
    if FUZZ:
        terminalreporter.write_line(f"fuzzed requests: {sum(FUZZ.values()):,}")
        for endpoint in sorted({endpoint for endpoint, _ in FUZZ}):
            statuses = sorted((s, n) for (e, s), n in FUZZ.items() if e == endpoint)
            shown = ", ".join(f"{status}: {count:,}" for status, count in statuses)
            terminalreporter.write_line(f"  {endpoint}: {shown}")


_prefixes = itertools.count()


def _backends() -> list[str]:
    real = ["redis"] if os.environ.get("REDIS_URL") else []
    return ["fakeredis", "memory", *real]


@dataclass
class CacheBackend:
    """A cache under test, and how to flush it (what a Redis restart does)."""

    name: str
    cache: BalanceCache
    flush: Callable[[], None]


@pytest.fixture(params=_backends())
def cache_backend(request: pytest.FixtureRequest) -> Iterator[CacheBackend]:
    """Each cache implementation in turn: fakeredis, in-memory, and real Redis at REDIS_URL.

    Real-Redis tests use a fresh key prefix and delete only their own keys.
    """
    if request.param == "memory":
        memory = MemoryCache()
        yield CacheBackend("memory", memory, memory.clear)
        return
    if request.param == "fakeredis":
        client: redis.Redis = fakeredis.FakeRedis()
    else:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
    cache = RedisCache(client, f"topup-test-{os.getpid()}-{next(_prefixes)}")
    yield CacheBackend(request.param, cache, cache.clear)
    cache.clear()
    client.close()


class FlakyStore:
    """Wraps a store; methods named in ``failing`` raise ``StoreUnavailable`` instead of writing."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failing: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name in self.failing:

            def fail(*args: object, **kwargs: object) -> None:
                raise StoreUnavailable(f"injected failure in {name}")

            return fail
        return getattr(self.inner, name)


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time, starting 2026-01-01T00:00:00Z."""
    return ManualClock()


@contextmanager
def _closed_after(store: SQLiteStore) -> Iterator[Store]:
    yield store
    store.close()


@contextmanager
def _memory() -> Iterator[Store]:
    yield MemoryStore()


#: Every Store implementation, by name, each a context that opens a fresh store and cleans up:
#: the store suite runs against each (PostgreSQL at ``POSTGRES_URL``, in a schema of its own).
STORES: dict[str, Callable[[], AbstractContextManager[Store]]] = {
    "sqlite": lambda: _closed_after(SQLiteStore(":memory:")),
    "memory": _memory,
    "postgres": postgres_store,  # type: ignore[dict-item]
}


@pytest.fixture
def store() -> Iterator[FlakyStore]:
    """An in-memory SQLite store that can be told to fail; ``BILLING_STORE=memory`` (or
    ``postgres``) runs the service tests on that store instead."""
    with STORES[os.environ.get("BILLING_STORE", "sqlite")]() as chosen:
        yield FlakyStore(chosen)


@pytest.fixture
def gateway() -> ScriptedGateway:
    """A gateway that succeeds unless scripted otherwise."""
    return ScriptedGateway()


@pytest.fixture
def notifier() -> RecordingNotifier:
    """Records notifications."""
    return RecordingNotifier()


@pytest.fixture
def tasks() -> QueueRunner:
    """Holds top-ups until the test runs them, proving deductions never wait for them."""
    return QueueRunner()


@pytest.fixture
def vault() -> Vault:
    """A vault with a fixed master key."""
    return Vault(MASTER_KEY)


BillingFactory = Callable[..., BillingService]


@pytest.fixture
def make_billing(
    clock: ManualClock,
    cache_backend: CacheBackend,
    store: FlakyStore,
    gateway: ScriptedGateway,
    notifier: RecordingNotifier,
    tasks: QueueRunner,
    vault: Vault,
) -> BillingFactory:
    """Build a service from the fixtures, overriding any port or the config."""

    def build(
        *,
        config: BillingConfig | None = None,
        tasks_runner: TaskRunner | None = None,
        payment_gateway: PaymentGateway | None = None,
    ) -> BillingService:
        return BillingService(
            clock=clock,
            cache=cache_backend.cache,
            store=store,  # type: ignore[arg-type]
            gateway=payment_gateway or gateway,
            notifier=notifier,
            tasks=tasks_runner or tasks,
            vault=vault,
            config=config,
        )

    return build


@pytest.fixture
def billing(make_billing: BillingFactory) -> BillingService:
    """The service with default rules (threshold per user, cooldown 1 h)."""
    return make_billing()


@pytest.fixture
def add_user(billing: BillingService) -> Callable[..., str]:
    """Create a user with a card and auto top-up settings (enabled unless told otherwise)."""

    def add(
        user_id: str = "u1",
        *,
        balance: int = 5_000,
        threshold: int = 1_000,
        amount: int = 10_000,
        currency: str = "eur",
        card: str = "pm_card_visa",
        enabled: bool = True,
        service: BillingService | None = None,
    ) -> str:
        service = service or billing
        service.create_user(user_id, email=f"{user_id}@example.com", balance=balance)
        service.save_payment_method(user_id, f"cus_{user_id}", card)
        service.update_settings(user_id, AutoTopupSettings(enabled, threshold, amount, currency))
        return user_id

    return add


@pytest.fixture
def emulator(clock: ManualClock) -> StripeEmulator:
    """The offline Stripe emulator on the test's virtual clock."""
    return StripeEmulator(clock=clock, seed=7)


@pytest.fixture
def stripe_gateway(emulator: StripeEmulator) -> StripeGateway:
    """The Stripe gateway, talking to the emulator in-process through the real stripe library."""
    return StripeGateway("sk_test_billing", http_client=emulator.http_client())


def run_concurrently(count: int, work: Callable[[], None], runner: ThreadRunner) -> None:
    """Start ``count`` threads on ``work`` at once (a barrier), wait for them and for the top-ups
    they handed to ``runner``; re-raise the first error a thread hit, so none fails silently."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runner.join()
    runner.shutdown()
    if errors:
        raise errors[0]
