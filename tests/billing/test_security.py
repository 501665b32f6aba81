"""Secrets stay secret: nothing sensitive in the store file in plaintext, nor in our logs.

Other security checks live next to the code they test: TOTP replay and brute force in
``test_twofactor.py`` and ``test_api.py``; forged, stale and replayed webhook signatures in
``test_payments.py``, ``test_webhooks.py`` and ``test_api.py``; live Stripe keys in
``test_payments.py``; tampered ciphertexts in ``test_vault.py`` and ``test_service.py``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import fakeredis
import pytest

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    QueueRunner,
    RecordingNotifier,
    SQLiteStore,
    TwoFactor,
    Vault,
)
from sim.billing.payments import StripeGateway
from sim.stripe_emulator import Faults, StripeEmulator

from .conftest import MASTER_KEY

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
EMAIL = "grace.hopper@example.com"


def _run_flows(path: Path, clock: ManualClock) -> tuple[BillingService, StripeEmulator, list[str]]:
    """Users with working, declined and 3-D Secure cards, a Stripe outage and a store outage."""
    store = SQLiteStore(str(path))
    emulator = StripeEmulator(clock=clock, seed=5)
    gateway = StripeGateway("sk_test_sec", http_client=emulator.http_client())
    tasks = QueueRunner()
    billing = BillingService(
        clock=clock, cache=fakeredis.FakeRedis(), store=store, gateway=gateway,
        notifier=RecordingNotifier(), tasks=tasks, vault=Vault(MASTER_KEY),
    )  # fmt: skip
    cards = []
    kinds = ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired")
    for n, card in enumerate(kinds):
        user = f"u{n}"
        billing.create_user(user, email=EMAIL, balance=1_200)
        customer = gateway.ensure_customer(user, EMAIL)
        card_id = gateway.attach_card(customer, card)
        cards.append(card_id)
        billing.save_payment_method(user, customer, card_id)
        billing.update_settings(user, AutoTopupSettings(True, 1_000, 10_000, "eur"))
    TwoFactor(store=store, vault=billing.vault, clock=clock).enable("u0", TOTP_SECRET)
    for user in ("u0", "u1", "u2"):
        billing.deduct_credits(user, 300)
    emulator.faults = Faults(server_error_rate=1.0)
    tasks.run_pending()
    emulator.faults = Faults()
    clock.advance(3_600)
    for user in ("u0", "u1", "u2"):
        billing.deduct_credits(user, 1)
    tasks.run_pending()
    return billing, emulator, cards


def test_store_file_holds_no_plaintext_secret(tmp_path: Path) -> None:
    """Card ids, e-mail, TOTP secret and last-triggered times are only stored encrypted."""
    clock = ManualClock()
    billing, _, cards = _run_flows(tmp_path / "billing.sqlite", clock)
    last = billing.last_triggered("u0")
    billing.store.close()  # type: ignore[attr-defined]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in [*cards, EMAIL, TOTP_SECRET, repr(last)]:
        assert secret.encode() not in raw, secret


def test_logs_hold_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Everything the billing module logs, at every level, names no card, e-mail or secret."""
    caplog.set_level(logging.DEBUG, logger="sim")
    _, _, cards = _run_flows(tmp_path / "billing.sqlite", ManualClock())
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith("sim")
    )
    assert re.search(r"event=topup_\w+_transient ", logged)  # the outage was logged...
    for secret in [*cards, EMAIL, TOTP_SECRET]:
        assert secret not in logged  # ...without any secret
