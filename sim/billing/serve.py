"""Run the billing API locally: ``python -m sim.billing.serve``.

Wires the real services for a single process: the system clock; Redis from ``REDIS_URL``, or the
in-process ``MemoryCache`` when unset (right for one process only); a SQLite file; the Stripe
gateway; a thread pool for top-ups; and the vault from ``TOPUP_MASTER_KEY`` (a fresh key per run
when unset: fine for trying it out, useless for data that must outlive the process). Stripe is
the offline emulator's HTTP server by default (``--stripe-url``), or real Stripe test mode with
``--stripe-url ''`` and ``STRIPE_API_KEY=sk_test_...``.

Webhooks are verified with a secret no one else knows; there is no default. Against real Stripe,
``STRIPE_WEBHOOK_SECRET`` (or ``--webhook-secret``) is required: the secret of the endpoint
registered with Stripe (the dashboard, or ``stripe listen``). Against the emulator without one,
the server registers its own endpoint (``POST /v1/webhook_endpoints`` for
``http://127.0.0.1:<port>/v1/payments/webhook``, as one would with Stripe's API) and verifies
with the fresh random secret the emulator returns; the emulator signs that endpoint's deliveries
with it.

``--demo-user NAME`` creates that user with a test card, enrols 2FA, and prints the bearer token
and TOTP secret, so the endpoints can be tried with curl straight away.
"""

from __future__ import annotations

import argparse
import logging
import os

import redis
import stripe
import uvicorn

from .api import build_app
from .clock import SystemClock
from .memory_cache import MemoryCache
from .notify import Notification
from .payments import API_KEY_ENV, StripeGateway
from .service import BillingService
from .sqlite_store import SQLiteStore
from .tasks import TaskRunner, ThreadRunner
from .vault import MASTER_KEY_ENV, Vault

log = logging.getLogger("sim.billing.serve")

#: Where the webhook signing secret comes from (``--webhook-secret`` overrides it).
WEBHOOK_SECRET_ENV = "STRIPE_WEBHOOK_SECRET"


class LogNotifier:
    """Writes each notification to the log (a deployment sends e-mail or a push instead)."""

    def notify(self, notification: Notification) -> None:
        """Log ``notification``."""
        log.info("notify %s: %s %s", notification.user_id, notification.kind, notification.detail)


def build_billing(
    db: str, stripe_url: str, tasks: TaskRunner
) -> tuple[BillingService, StripeGateway]:
    """Wire the real services from the environment (see the module doc); shared by the server
    and the reconcile command, so both see the same store, cache, Stripe and keys."""
    clock = SystemClock()
    url = os.environ.get("REDIS_URL")
    cache: redis.Redis | MemoryCache = redis.Redis.from_url(url) if url else MemoryCache()
    if os.environ.get(MASTER_KEY_ENV):
        vault = Vault.from_env()
    else:
        log.warning("%s is not set: using a throw-away master key for this run", MASTER_KEY_ENV)
        vault = Vault(Vault.generate_master_key())
    if stripe_url:
        gateway = StripeGateway(
            os.environ.get(API_KEY_ENV, "sk_test_local"), base_addresses={"api": stripe_url}
        )
    else:
        gateway = StripeGateway.from_env()
    billing = BillingService(
        clock=clock, cache=cache, store=SQLiteStore(db), gateway=gateway,
        notifier=LogNotifier(), tasks=tasks, vault=vault,
    )  # fmt: skip
    return billing, gateway


def register_webhook_endpoint(gateway: StripeGateway, port: int, stripe_url: str) -> str:
    """Register this server's webhook URL with the Stripe at ``stripe_url`` (the emulator) and
    return the endpoint's signing secret, which only the two of them know."""
    url = f"http://127.0.0.1:{port}/v1/payments/webhook"
    try:
        endpoint = gateway.client.v1.webhook_endpoints.create(
            params={"url": url, "enabled_events": ["*"]}
        )
    except stripe.StripeError as exc:
        raise SystemExit(
            f"cannot register the webhook endpoint {url} with the Stripe at {stripe_url}: {exc}"
            f" (start the emulator first, or set {WEBHOOK_SECRET_ENV})"
        ) from exc
    log.info("webhook endpoint %s registered at %s for %s", endpoint.id, stripe_url, url)
    return str(endpoint.secret)


def main(argv: list[str] | None = None) -> None:
    """Parse options, wire the services, and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sim.billing.serve", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    parser.add_argument("--db", default="billing.sqlite", help="SQLite file (billing.sqlite)")
    parser.add_argument(
        "--stripe-url", default="http://127.0.0.1:12111",
        help="Stripe API base; the emulator's server by default, '' for real Stripe test mode",
    )  # fmt: skip
    parser.add_argument(
        "--webhook-secret", default=os.environ.get(WEBHOOK_SECRET_ENV),
        help=f"secret that signs webhook deliveries ({WEBHOOK_SECRET_ENV}); required against"
        " real Stripe; against the emulator, the server registers an endpoint and uses its secret",
    )  # fmt: skip
    parser.add_argument("--demo-user", help="create this user with a card and 2FA, print a token")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # stripe-python logs request paths and bodies (card and customer ids) at INFO and DEBUG.
    logging.getLogger("stripe").setLevel(logging.WARNING)

    if not args.webhook_secret and not args.stripe_url:
        parser.error(
            f"{WEBHOOK_SECRET_ENV} (or --webhook-secret) is required against real Stripe: the"
            " signing secret of the webhook endpoint registered there"
        )
    billing, gateway = build_billing(args.db, args.stripe_url, ThreadRunner())
    secret = args.webhook_secret or register_webhook_endpoint(gateway, args.port, args.stripe_url)
    wired = build_app(billing, gateway, secret)
    if args.demo_user:
        billing.create_user(args.demo_user, balance=1_500)
        customer = gateway.ensure_customer(args.demo_user)
        billing.save_payment_method(
            args.demo_user, customer, gateway.attach_card(customer, "pm_card_visa")
        )
        uri = wired.twofactor.enable(args.demo_user)
        print(f"user {args.demo_user}: bearer token {wired.sessions.issue(args.demo_user)}")
        print(f"TOTP: {uri}")
    uvicorn.run(wired.app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
