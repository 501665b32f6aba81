"""The books must balance: invariants checked at the end of every run.

Each rule is checked against independent evidence: the cache and the store for balances, Stripe's
own records (the emulator) for money that actually moved, the store's claimed attempts for the
cooldown, the postman's count of applied deliveries for webhooks. A run that breaks any of them
raises :class:`InvariantViolation` listing every breach.

Rules (``Violation.rule``):

- ``balance``: each user's cached balance, stored balance and ledger sum are equal.
- ``charged_equals_credited``: every succeeded top-up PaymentIntent and every paid subscription
  invoice is credited once, with what its amount buys at the price table (plus the monthly bonus
  for an invoice).
- ``credit_without_payment``: every top-up or subscription credit references such a payment.
- ``cooldown``: a user's claimed attempts (one charge each) are at least one cooldown apart.
- ``unknown_charge``: every idempotency key the gateway saw belongs to a recorded attempt.
- ``webhook_applied_once``: no webhook event was applied more than once, and every event the
  handler applied is recorded as processed.
- ``notified_once``: every paid top-up told its user of the success exactly once.
- ``cache``: every cached user's snapshot equals the store's (version included).
- ``lease``: no attempt is still open past its lease (a stuck top-up).
- ``notices``: each attempt sent exactly the one final notice its final status calls for
  (none while open or when skipped), never two that contradict each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sim.billing import BillingService, Store
from sim.billing.store import FINAL_NOTICES

from .gateways import Payment

#: The ledger kinds that a payment buys (``usage`` entries are checked by the sum alone).
_PAID_KINDS = ("topup", "subscription")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, for one user."""

    rule: str
    user_id: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.user_id}: {self.detail}"


class InvariantViolation(AssertionError):
    """A run broke the billing's invariants; ``violations`` lists each breach."""

    def __init__(self, violations: list[Violation], limit: int = 20) -> None:
        shown = "\n".join(f"  {v}" for v in violations[:limit])
        more = len(violations) - limit
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(violations)} invariant violation(s):\n{shown}{tail}")
        self.violations = violations


def check_invariants(
    billing: BillingService,
    store: Store,
    payments: Sequence[Payment],
    charged_keys: Mapping[str, str],
    webhooks_applied: Mapping[str, int],
    successes_notified: Mapping[tuple[str, int], int],
    final_notices: Mapping[tuple[str, int], list[str]] | None = None,
) -> list[Violation]:
    """Every breach of the rules above, in user order (empty when the books balance)."""
    out: list[Violation] = []
    cooldown = billing.config.cooldown_seconds
    paid_by_user: dict[str, list[Payment]] = defaultdict(list)
    for payment in payments:
        paid_by_user[payment.user_id].append(payment)
    keys_by_user: dict[str, set[str]] = defaultdict(set)
    for key, user in charged_keys.items():
        keys_by_user[user].add(key)

    for user in store.user_ids():
        record = store.get_user(user)
        total = store.ledger_sum(user)
        stored = record.balance
        cached = billing.balance(user)
        if not cached == stored == total:
            out.append(
                Violation("balance", user, f"cache {cached}, store {stored}, ledger sum {total}")
            )

        credited: dict[tuple[str, str], int] = defaultdict(int)
        for entry in store.ledger(user, kinds=_PAID_KINDS):
            credited[entry.kind, entry.reference or ""] += entry.delta
        for payment in paid_by_user[user]:
            if payment.attempt is not None:
                told = successes_notified.get((user, payment.attempt), 0)
                if told != 1:
                    out.append(
                        Violation(
                            "notified_once",
                            user,
                            f"attempt {payment.attempt} paid by {payment.reference}: {told}"
                            " success notifications",
                        )
                    )
            due = payment.credits
            got = credited.pop((payment.kind, payment.reference), 0)
            if got != due:
                out.append(
                    Violation(
                        "charged_equals_credited",
                        user,
                        f"{payment.kind} {payment.reference} paid {payment.price} (buys {due}),"
                        f" credited {got}",
                    )
                )
        for (kind, reference), credits in sorted(credited.items()):
            out.append(
                Violation(
                    "credit_without_payment",
                    user,
                    f"{credits} {kind} credits under {reference!r}, which no payment matches",
                )
            )

        cached_snapshot = billing.cache.get(user)
        truth = store.snapshot(user)
        if cached_snapshot is not None and cached_snapshot != truth:
            out.append(Violation("cache", user, f"cache {cached_snapshot}, store {truth}"))
        now = billing.clock.now()
        if record.open_attempt is not None and (
            record.lease_until is None or record.lease_until <= now
        ):
            out.append(
                Violation(
                    "lease",
                    user,
                    f"attempt {record.open_attempt} open, its lease ended at {record.lease_until}",
                )
            )

        attempts = store.attempts(user)
        if final_notices is not None:
            for attempt in attempts:
                told = final_notices.get((user, attempt.seq), [])
                expected = FINAL_NOTICES.get(attempt.status)
                if told != ([] if expected is None else [expected]):
                    out.append(
                        Violation(
                            "notices",
                            user,
                            f"attempt {attempt.seq} ended {attempt.status}, its user was told"
                            f" {told}",
                        )
                    )
        for before, after in pairwise(attempts):
            gap = after.claimed_at - before.claimed_at
            if gap < cooldown:
                out.append(
                    Violation(
                        "cooldown",
                        user,
                        f"attempts {before.seq} and {after.seq} claimed {gap:.3f}s apart"
                        f" (cooldown {cooldown:g}s)",
                    )
                )
        recorded = {a.idempotency_key for a in attempts}
        for key in sorted(keys_by_user.pop(user, set()) - recorded):
            out.append(Violation("unknown_charge", user, f"charge {key!r} has no recorded attempt"))
    for user, keys in sorted(keys_by_user.items()):
        for key in sorted(keys):
            out.append(Violation("unknown_charge", user, f"charge {key!r} for an unknown user"))
    for event_id, times in sorted(webhooks_applied.items()):
        if times > 1:
            out.append(Violation("webhook_applied_once", "-", f"{event_id} applied {times} times"))
        if not store.event_processed(event_id):
            out.append(Violation("webhook_applied_once", "-", f"{event_id} not recorded"))
    return out
