"""Reconciliation: compare the cache, the store and Stripe for a user, and repair what drifted.

The protocol converges on its own at each user's next write (see ``docs/architecture.md``); this
job covers users who make no further request, and is the operator's tool after an incident:

- **cache**: a cached snapshot that differs from the store's is replaced (a missing one is left
  missing: the next read refills it); with the cache down this step is skipped and logged, and
  the others still run;
- **attempts**: an attempt open past its lease is taken over and run again under its idempotency
  key, so Stripe answers what happened to it;
- **charges without credit**: every succeeded auto top-up PaymentIntent of the user's customer is
  checked against the ledger; one that was never credited is credited now (once per intent, as
  always) and listed; so is every succeeded purchase, when a checkout gateway is given (a
  purchase paid while the server died before answering, and its webhooks were lost); and every
  paid invoice of a monthly top-up subscription, when the subscriptions are given (an invoice
  is credited only by its webhook, so one whose deliveries all failed was credited by nothing);
- **notices**: outbox notices a dead worker left unsent are sent (under their stable ids).

The command's report also lists the newest dead-lettered webhook events (signed events that can
never apply, kept with their reason by :mod:`~sim.billing.webhooks`): nothing repairs those, a
person reads them.

A deployment runs it periodically from one process (every few minutes: more often than the
attempt lease gains nothing), as ``python -m sim.billing.reconcile`` from cron or a systemd timer
with the server's environment (``REDIS_URL``, ``STORE_URL``, ``TOPUP_MASTER_KEY``,
``STRIPE_API_KEY``), or calls :func:`reconcile_all` from its own scheduler. It is safe beside
running workers: every repair it makes goes through the same fenced, idempotent writes they use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import BillingError, CacheUnavailable
from .gateway import CheckoutGateway
from .metrics import log_event
from .purchases import PURCHASE_KIND, settle_purchase
from .service import BillingService
from .store import DeadLetter
from .subscriptions import SUBSCRIPTION_KIND, Subscriptions
from .tasks import InlineRunner
from .webhooks import PERMANENT

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What reconciling one user found and did."""

    user_id: str
    #: The cache held a snapshot that differed from the store's; it now holds the store's.
    cache_repaired: bool
    #: The open attempt taken over because its lease ran out (run again under the same key).
    attempt_recovered: int | None
    #: PaymentIntents that had succeeded at Stripe without a credit; credited now.
    uncredited_charges: tuple[str, ...]
    #: Outbox notices a dead worker left unsent; sent now.
    notices_sent: int = 0
    #: Purchase PaymentIntents that had succeeded at Stripe without a credit; credited now.
    uncredited_purchases: tuple[str, ...] = ()
    #: Subscription invoices paid at Stripe without a credit; credited now.
    uncredited_invoices: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """Nothing needed repair."""
        return not (
            self.cache_repaired
            or self.attempt_recovered
            or self.uncredited_charges
            or self.notices_sent
            or self.uncredited_purchases
            or self.uncredited_invoices
        )


def reconcile_user(
    billing: BillingService,
    user_id: str,
    checkout: CheckoutGateway | None = None,
    subscriptions: Subscriptions | None = None,
) -> Reconciliation:
    """Reconcile one user: cache against store, expired attempts, charges (and, with
    ``checkout``, purchases; with ``subscriptions``, paid invoices) against the ledger, unsent
    notices."""
    try:
        repaired = _repair_cache(billing, user_id)
    except CacheUnavailable:
        # The cache is only a cache: the money-moving repairs below need the store and Stripe,
        # and the cache catches up at the user's next write once it is back.
        repaired = False
        log_event(log, logging.WARNING, "reconcile_cache_unavailable", user=user_id)
    recovered = billing.recover(user_id)
    if recovered is not None:
        billing.metrics.stuck_attempt()
        log_event(log, logging.WARNING, "reconcile_stuck_attempt", user=user_id, attempt=recovered)
    uncredited = []
    saved = billing.payment_method(user_id)
    if saved is not None:
        credited = {e.reference for e in billing.store.ledger(user_id, kinds=("topup",))}
        for charge in billing.gateway.succeeded_charges(saved[0]):
            if charge.payment_intent_id in credited:
                continue
            if charge.metadata.get("user_id") != user_id:
                continue
            billing.settle_payment(user_id, charge.payment_intent_id, charge.price, charge.metadata)
            uncredited.append(charge.payment_intent_id)
            billing.metrics.uncredited_charge()
            log_event(log, logging.WARNING, "reconcile_uncredited_charge", user=user_id,
                      payment_intent=charge.payment_intent_id)  # fmt: skip
    purchases = [] if checkout is None else _credit_lost_purchases(billing, checkout, user_id)
    invoices = [] if subscriptions is None else _credit_lost_invoices(subscriptions, user_id)
    sent = billing.send_pending_notices(user_id)
    return Reconciliation(
        user_id=user_id,
        cache_repaired=repaired,
        attempt_recovered=recovered,
        uncredited_charges=tuple(uncredited),
        notices_sent=sent,
        uncredited_purchases=tuple(purchases),
        uncredited_invoices=tuple(invoices),
    )


def _repair_cache(billing: BillingService, user_id: str) -> bool:
    """Replace a cached snapshot that differs from the store's; whether one did."""
    truth = billing.store.snapshot(user_id)
    cached = billing.cache.get(user_id)
    repaired = cached is not None and cached != truth
    if repaired:
        billing.cache.forget(user_id)
        billing.cache.put(user_id, truth)
        log_event(log, logging.INFO, "reconcile_cache_repaired", user=user_id)
    return repaired


def _credit_lost_purchases(
    billing: BillingService, checkout: CheckoutGateway, user_id: str
) -> list[str]:
    """Credit the user's succeeded purchases the ledger lacks (through the one settle path,
    once per PaymentIntent); their ids. A user who never started a purchase has no customer."""
    customer = billing.customer_id(user_id)
    if customer is None:
        return []
    credited = {e.reference for e in billing.store.ledger(user_id, kinds=(PURCHASE_KIND,))}
    found = []
    for paid in checkout.succeeded_purchases(customer):
        if paid.payment_intent_id in credited or paid.metadata.get("user_id") != user_id:
            continue
        if settle_purchase(billing, user_id, paid.payment_intent_id, paid.price, paid.metadata):
            found.append(paid.payment_intent_id)
            billing.metrics.uncredited_charge()
            log_event(log, logging.WARNING, "reconcile_uncredited_purchase", user=user_id,
                      payment_intent=paid.payment_intent_id)  # fmt: skip
    return found


def _credit_lost_invoices(subscriptions: Subscriptions, user_id: str) -> list[str]:
    """Credit the user's paid subscription invoices the ledger lacks (through the webhook's own
    check and credit, once per invoice); their ids. An invoice the webhook would dead-letter
    (another customer's, a wrong amount) is logged and left: a person must look. Only a user
    with a subscription on record is looked at: one whose server died before Stripe answered
    the subscribe, and whose every webhook was lost, is not found."""
    billing = subscriptions.billing
    if not billing.store.subscriptions(user_id):
        return []  # never subscribed: no invoice to look for (and no Stripe call per user)
    customer = billing.customer_id(user_id)
    if customer is None:
        return []
    credited = {e.reference for e in billing.store.ledger(user_id, kinds=(SUBSCRIPTION_KIND,))}
    found = []
    for invoice in subscriptions.gateway.paid_invoices(customer):
        if invoice.invoice_id in credited:
            continue
        try:
            of = subscriptions.invoice_record(invoice, paid=True)
        except PERMANENT as exc:
            log_event(log, logging.WARNING, "reconcile_invoice_refused", user=user_id,
                      invoice=invoice.invoice_id, reason=repr(str(exc)))  # fmt: skip
            continue
        if of is None or of.record.user_id != user_id:
            continue
        if subscriptions.credit_invoice(of, invoice):
            found.append(invoice.invoice_id)
            billing.metrics.uncredited_charge()
            log_event(log, logging.WARNING, "reconcile_uncredited_invoice", user=user_id,
                      invoice=invoice.invoice_id)  # fmt: skip
    return found


def reconcile_all(
    billing: BillingService,
    user_ids: Iterable[str] | None = None,
    checkout: CheckoutGateway | None = None,
    subscriptions: Subscriptions | None = None,
) -> list[Reconciliation]:
    """Reconcile every user (or those given), in order; a user whose reconciliation hits an
    outage is skipped with a log line and picked up by the next run."""
    out = []
    for user_id in billing.store.user_ids() if user_ids is None else user_ids:
        try:
            out.append(reconcile_user(billing, user_id, checkout, subscriptions))
        except BillingError:
            log.exception("reconcile of %s failed; the next run retries it", user_id)
    return out


#: How many of the newest dead-lettered webhook events the report lists.
DEAD_LETTERS_SHOWN = 20


def report_lines(found: list[Reconciliation], dead_letters: list[DeadLetter]) -> list[str]:
    """The reconcile report: one line per user that needed repair, a total line, and the newest
    dead-lettered webhook events (signed events that can never apply: a person must look)."""
    lines = [
        f"{item.user_id}: cache repaired={item.cache_repaired}"
        f" attempt recovered={item.attempt_recovered}"
        f" charges credited={list(item.uncredited_charges)}"
        f" purchases credited={list(item.uncredited_purchases)}"
        f" invoices credited={list(item.uncredited_invoices)}"
        f" notices sent={item.notices_sent}"
        for item in found
        if not item.clean
    ]
    dirty = sum(not item.clean for item in found)
    lines.append(f"reconciled {len(found)} users: {dirty} needed repair")
    lines += [
        f"dead letter {letter.event_id} ({letter.type}) at {letter.received_at:.0f}:"
        f" {letter.reason}"
        for letter in dead_letters
    ]
    if dead_letters:
        lines.append(f"{len(dead_letters)} dead-lettered webhook events shown (newest first)")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.billing.reconcile``: reconcile every user (or ``--user``), print what was
    repaired, one line per user that needed it, and a total line."""
    import argparse

    from .serve import build_billing_or_exit
    from .store_url import STORE_URL_ENV

    parser = argparse.ArgumentParser(
        prog="python -m sim.billing.reconcile",
        description="Compare cache, store and Stripe for each user; repair what drifted.",
    )
    parser.add_argument(
        "--db", help="SQLite file (default: the store at STORE_URL, else billing.sqlite)"
    )
    parser.add_argument(
        "--stripe-url", default="http://127.0.0.1:12111",
        help="Stripe API base; the emulator's server by default, '' for real Stripe test mode",
    )  # fmt: skip
    parser.add_argument("--user", action="append", help="only this user (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stripe").setLevel(logging.WARNING)
    # Recoveries run in this process, now: a reconcile that exits has finished its repairs.
    db = args.db or (None if os.environ.get(STORE_URL_ENV) else "billing.sqlite")
    billing, gateway = build_billing_or_exit(parser, db, args.stripe_url, InlineRunner())
    subscriptions = Subscriptions(billing=billing, gateway=gateway)
    found = reconcile_all(billing, args.user, gateway, subscriptions)
    print("\n".join(report_lines(found, billing.store.dead_letters(limit=DEAD_LETTERS_SHOWN))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
