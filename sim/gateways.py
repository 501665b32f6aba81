"""Stripe test mode for a run, offline: the emulator, the real Stripe gateway, the webhook endpoint.

Each run gets its own :class:`~sim.stripe_emulator.StripeEmulator` on the run's clock and seed,
and the billing module's own :class:`~sim.billing.payments.StripeGateway` on top of it. How the
gateway's requests reach the emulator is the run's ``gateway`` (:data:`GATEWAYS`):

- ``stripe`` (the default of ``run``): through the real ``stripe`` library over the emulator's
  in-process transport, the code path a server uses against Stripe minus the network;
- ``direct`` (the default of ``sweep``): the same requests handed straight to the emulator by
  :class:`EmulatorRequester`, without the library's request building, about a third cheaper per
  top-up (``docs/performance.md``). A test runs every shipped scenario both ways and compares
  the event logs.

Cards are Stripe's test payment methods (``pm_card_visa``,
``pm_card_chargeDeclinedInsufficientFunds``, ...), declined or challenged at charge time exactly
as Stripe test mode does.

The emulator is also the ground truth of a run's money: :func:`payments_made` lists every
succeeded auto top-up PaymentIntent and every paid subscription invoice, whatever the billing
module saw of them (an answer lost on the way still moved money).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sim.billing import Clock, Money, TransientGatewayError, UnknownTier, tier_for
from sim.billing.claims import TOPUP_PURPOSE
from sim.billing.payments import StripeGateway
from sim.billing.pricing import credits_for_payment
from sim.billing.stripe_transport import StripeAnswer
from sim.billing.subscriptions import PURPOSE as SUBSCRIPTION_PURPOSE
from sim.billing.webhooks import HANDLED_EVENTS
from sim.stripe_emulator import TEST_CARD_ALIASES, Faults, StripeEmulator, form_values

#: Stripe's test payment methods a scenario may give its users.
TEST_CARDS: Final[tuple[str, ...]] = tuple(sorted(TEST_CARD_ALIASES))

WEBHOOK_URL: Final = "sim://billing/v1/payments/webhook"
#: How the gateway's requests reach the emulator (see the module's docstring).
GATEWAYS: Final = ("stripe", "direct")
_API_KEY: Final = "sk_test_simulation"


class EmulatorRequester:
    """The gateway's :class:`~sim.billing.stripe_transport.StripeRequester` straight into one
    emulator: the parameters as the emulator reads them from the body stripe-python would send
    (``form_values``, proven equal to reading ``form_encode``'s text), the headers it reads
    (key, idempotency key), and the answer as the JSON values a parser reads from its body
    (``StripeEmulator.handle_parsed``: the same values, proven equal to parsing the text, as
    the requester's own copy, without the text written and parsed). A dropped
    connection (the emulator's lost-answer fault) is a ``TransientGatewayError``, as the
    library's connection error is through ``LibraryRequester``."""

    def __init__(self, emulator: StripeEmulator, api_key: str = _API_KEY) -> None:
        self._emulator = emulator
        self._auth = f"Bearer {api_key}"

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> StripeAnswer:
        """One request, answered by the emulator in process."""
        headers = {"Authorization": self._auth}
        if method == "post" and idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        answer = self._emulator.handle_parsed(method, path, headers, form=form_values(params))
        if answer.dropped:
            raise TransientGatewayError(f"no answer from Stripe to {method.upper()} (dropped)")
        return StripeAnswer(answer.status, answer.data)


@dataclass(frozen=True, slots=True)
class StripeTestMode:
    """The emulator of one run and the gateway the billing module charges through."""

    emulator: StripeEmulator
    gateway: StripeGateway


def stripe_test_mode(
    clock: Clock, seed: int, faults: Faults, webhooks: bool, gateway: str = "stripe"
) -> StripeTestMode:
    """A fresh emulator on ``clock`` (ids and faults from ``seed``) and a gateway into it, through
    the ``stripe`` library or ``direct`` (:data:`GATEWAYS`).

    With ``webhooks`` the billing module's endpoint is registered for :data:`HANDLED_EVENTS`.
    """
    if gateway not in GATEWAYS:
        raise ValueError(f"unknown gateway {gateway!r}; allowed: {', '.join(GATEWAYS)}")
    emulator = StripeEmulator(clock=clock, seed=seed, faults=faults)
    if webhooks:
        emulator.add_webhook_endpoint(WEBHOOK_URL, HANDLED_EVENTS)
    if gateway == "direct":
        chosen = StripeGateway(_API_KEY, requester=EmulatorRequester(emulator))
    else:
        chosen = StripeGateway(_API_KEY, http_client=emulator.http_client())
    return StripeTestMode(emulator, chosen)


@dataclass(frozen=True, slots=True)
class Payment:
    """Money that moved: a succeeded top-up PaymentIntent or a paid subscription invoice."""

    user_id: str
    reference: str
    kind: str  #: ``topup`` or ``subscription``, as the ledger entry that credits it
    price: Money
    #: The auto top-up attempt a PaymentIntent paid for (``None`` for an invoice).
    attempt: int | None = None

    @property
    def credits(self) -> int:
        """What it buys at the price table, plus the monthly bonus for a subscription invoice
        (-1 when the amount matches no tier: then no credit can be right)."""
        try:
            credits = credits_for_payment(self.price.amount_minor, self.price.currency)
        except UnknownTier:
            return -1
        return credits + (tier_for(credits).monthly_bonus if self.kind == "subscription" else 0)


def payments_made(emulator: StripeEmulator) -> list[Payment]:
    """Every payment of the run as Stripe holds it, ordered by user and reference.

    Read from the emulator's own records, not through the billing module's gateway: the ground
    truth of the money does not go through the code it checks (and a month's tens of thousands
    of PaymentIntents need no pages of JSON)."""
    found = []
    for intent in emulator.objects_of("payment_intent"):
        metadata = intent.get("metadata") or {}
        if intent["status"] == "succeeded" and metadata.get("purpose") == TOPUP_PURPOSE:
            price = Money(intent["amount_received"], intent["currency"])
            attempt = int(metadata["attempt"])
            found.append(Payment(metadata["user_id"], intent["id"], "topup", price, attempt))
    for invoice in emulator.objects_of("invoice"):
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        metadata = details.get("metadata") or {}
        if invoice["status"] == "paid" and metadata.get("purpose") == SUBSCRIPTION_PURPOSE:
            price = Money(invoice["amount_paid"], invoice["currency"])
            found.append(Payment(metadata["user_id"], invoice["id"], "subscription", price))
    return sorted(found, key=lambda p: (p.user_id, p.reference))
