"""Run the billing API locally: ``python -m sim.billing.serve``.

Wires the real services for a single process: the system clock; Redis from ``REDIS_URL``, or the
in-process ``MemoryCache`` when unset (right for one process only); the store at ``STORE_URL``
(``sqlite:///path`` or ``postgresql://...``, ``store_url.py``), or a SQLite file (``--db``, which
wins; by default ``billing.sqlite`` in a fresh temporary folder, deleted when the server stops, so
that trying it out leaves nothing behind and can be repeated); the Stripe gateway; a thread pool for
top-ups; and the vault from ``TOPUP_MASTER_KEY`` (a fresh key per run when unset: fine for
trying it out, useless for data that must outlive the process). Stripe is
the offline emulator's HTTP server by default (``--stripe-url``), or real Stripe test mode with
``--stripe-url ''`` and ``STRIPE_API_KEY=sk_test_...``.

Webhooks are verified with a secret no one else knows; there is no default. Against real Stripe,
``STRIPE_WEBHOOK_SECRET`` (or ``--webhook-secret``) is required: the secret of the endpoint
registered with Stripe (the dashboard, or ``stripe listen``). Against the emulator without one,
the server registers its own endpoint (``POST /v1/webhook_endpoints`` for
``http://127.0.0.1:<port>/v1/payments/webhook``, as one would with Stripe's API) and verifies
with the fresh random secret the emulator returns; the emulator signs that endpoint's deliveries
with it.

``--demo-user NAME`` creates that user with a test card, enrols 2FA, and prints the bearer token,
the TOTP secret and the address of the billing settings page signed in as that user
(``/billing#token=...``), so the endpoints can be tried with curl or a browser straight away. A
user the ``--db`` file already holds is reused (same balance; a fresh card, TOTP secret and
token), so the command can be run again; that needs the ``TOPUP_MASTER_KEY`` the user was
created under.

What stops the server before it serves is one line on stderr: exit status 2 for a bad option or
setting (``REDIS_URL``, ``STORE_URL``, ``TOPUP_MASTER_KEY``, ``STRIPE_API_KEY``, ``--db``: a
PostgreSQL server that does not answer is a bad ``STORE_URL``), 1 when Stripe does not answer
(start the emulator first).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import redis
import stripe
import uvicorn

from .api import build_app
from .clock import SystemClock
from .errors import DecryptionError, DuplicateUser, GatewayConfigurationError, TransientGatewayError
from .memory_cache import MemoryCache
from .notify import Notification
from .page import PAGE_PATH
from .payments import API_KEY_ENV, StripeGateway
from .service import BillingService
from .sqlite_store import SQLiteStore
from .store import Store
from .store_url import STORE_URL_ENV, open_store
from .tasks import TaskRunner, ThreadRunner
from .twofactor import TwoFactor
from .vault import MASTER_KEY_ENV, Vault
from .webhooks import HANDLED_EVENTS

#: The secret the product's backend sends as ``X-Service-Token`` to ``POST /v1/usage``.
SERVICE_TOKEN_ENV = "TOPUP_SERVICE_TOKEN"

log = logging.getLogger("sim.billing.serve")

#: Where the webhook signing secret comes from (``--webhook-secret`` overrides it).
WEBHOOK_SECRET_ENV = "STRIPE_WEBHOOK_SECRET"


class SettingError(ValueError):
    """An environment setting the server cannot use; the message names the setting."""


@contextmanager
def _setting(name: str) -> Iterator[None]:
    """Raise what the value of ``name`` makes fail as a :class:`SettingError` naming it: the
    libraries' own messages (a URL scheme, a key length) do not say which variable held it."""
    try:
        yield
    except (ValueError, GatewayConfigurationError) as exc:
        raise SettingError(str(exc) if name in str(exc) else f"{name}: {exc}") from exc


def _unreachable(exc: Exception) -> bool:
    """Whether a failed Stripe call found nothing answering (the gateway wraps stripe-python's
    connection error in a ``TransientGatewayError``)."""
    cause = exc.__cause__ if isinstance(exc, TransientGatewayError) else exc
    return isinstance(cause, stripe.APIConnectionError)


def _stripe_problem(exc: Exception) -> str:
    """A failed Stripe call in one line: stripe-python's connection error is four lines ending
    with Stripe's support address, no help with an emulator that is not running."""
    return "nothing answers there" if _unreachable(exc) else " ".join(str(exc).split())


class LogNotifier:
    """Writes each notification to the log (a deployment sends e-mail or a push instead)."""

    def notify(self, notification: Notification) -> None:
        """Log ``notification``."""
        log.info("notify %s: %s %s", notification.user_id, notification.kind, notification.detail)


def build_billing(
    db: str | None, stripe_url: str, tasks: TaskRunner
) -> tuple[BillingService, StripeGateway]:
    """Wire the real services from the environment (see the module doc); shared by the server
    and the reconcile command, so both see the same store, cache, Stripe and keys. The store is
    the SQLite file ``db``, or with ``None`` the one at ``STORE_URL``."""
    clock = SystemClock()
    if db is None:
        with _setting(STORE_URL_ENV):
            store = open_store(os.environ.get(STORE_URL_ENV, ""))
    else:
        store = SQLiteStore(db)
    url = os.environ.get("REDIS_URL")
    with _setting("REDIS_URL"):
        cache: redis.Redis | MemoryCache = redis.Redis.from_url(url) if url else MemoryCache()
    if os.environ.get(MASTER_KEY_ENV):
        with _setting(MASTER_KEY_ENV):
            vault = Vault.from_env()
    else:
        log.warning("%s is not set: using a throw-away master key for this run", MASTER_KEY_ENV)
        vault = Vault(Vault.generate_master_key())
    with _setting(API_KEY_ENV):
        if stripe_url:
            gateway = StripeGateway(
                os.environ.get(API_KEY_ENV, "sk_test_local"), base_addresses={"api": stripe_url}
            )
        else:
            gateway = StripeGateway.from_env()
    _check_master_key(store, vault)
    billing = BillingService(
        clock=clock, cache=cache, store=store, gateway=gateway,
        notifier=LogNotifier(), tasks=tasks, vault=vault,
    )  # fmt: skip
    return billing, gateway


def _check_master_key(store: Store, vault: Vault) -> None:
    """Refuse a master key that cannot open the store's data keys (the store's first user's,
    by id): with another ``TOPUP_MASTER_KEY`` than the one the store was written with (or none,
    a throw-away one), every request that reads a card or a customer would fail, each as a
    500, and nothing would say why."""
    users = store.user_ids()
    if not users:
        return
    user = store.get_user(users[0])
    if not vault.opens(user.user_id, user.wrapped_key):
        problem = (
            "does not open the data keys this store was written with"
            if os.environ.get(MASTER_KEY_ENV)
            else "is not set, and this store's data keys were written under one"
        )
        raise SettingError(
            f"{MASTER_KEY_ENV} {problem} (user {user.user_id}'s): set the key it was written with"
        )


def register_webhook_endpoint(gateway: StripeGateway, port: int, stripe_url: str) -> str:
    """Register this server's webhook URL with the Stripe at ``stripe_url`` (the emulator) and
    return the endpoint's signing secret, which only the two of them know."""
    url = f"http://127.0.0.1:{port}/v1/payments/webhook"
    try:
        endpoint = gateway.client.v1.webhook_endpoints.create(
            params={"url": url, "enabled_events": list(HANDLED_EVENTS)}
        )
    except stripe.StripeError as exc:
        raise SystemExit(
            f"cannot register the webhook endpoint {url} with the Stripe at {stripe_url}:"
            f" {_stripe_problem(exc)}"
            f" (start the emulator first, or set {WEBHOOK_SECRET_ENV})"
        ) from exc
    log.info("webhook endpoint %s registered at %s for %s", endpoint.id, stripe_url, url)
    return str(endpoint.secret)


def build_billing_or_exit(
    parser: argparse.ArgumentParser, db: str | None, stripe_url: str, tasks: TaskRunner
) -> tuple[BillingService, StripeGateway]:
    """:func:`build_billing` for a command: a setting it cannot use, or a database it cannot
    open, ends the command with one line and status 2 (shared by ``serve`` and ``reconcile``)."""
    try:
        return build_billing(db, stripe_url, tasks)
    except SettingError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except sqlite3.Error as exc:
        parser.exit(
            2,
            f"{parser.prog}: error: cannot open the database {db}: {exc}; give --db a"
            " file in a folder that exists\n",
        )


def _port(text: str) -> int:
    """argparse type of ``--port``: 1 to 65535 (the webhook endpoint registered at Stripe names
    the port, so 0, any free one, cannot serve)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is no TCP port to serve on: give 1 to 65535")
    return port


def main(argv: list[str] | None = None) -> None:
    """Parse options, wire the services, and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sim.billing.serve", description=__doc__)
    parser.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1 (8000)")
    parser.add_argument(
        "--db", help=f"SQLite file to keep the data in (default: the store at {STORE_URL_ENV},"
        " else billing.sqlite in a temporary folder, deleted when the server stops); a user it"
        " holds can be --demo-user again",
    )  # fmt: skip
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
    with ExitStack() as cleanup:
        db = args.db
        if db is None and os.environ.get(STORE_URL_ENV):
            log.info("store at %s", STORE_URL_ENV)
        elif db is None:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="topup-serve-"))
            db = os.path.join(folder, "billing.sqlite")
            log.info("database %s, deleted on exit (--db keeps one)", db)
        billing, gateway = build_billing_or_exit(parser, db, args.stripe_url, ThreadRunner())
        secret = args.webhook_secret or register_webhook_endpoint(
            gateway, args.port, args.stripe_url
        )
        # The usage endpoint's secret: unset, POST /v1/usage refuses every call.
        token = os.environ.get(SERVICE_TOKEN_ENV) or None
        wired = build_app(billing, gateway, secret, service_token=token)
        if args.demo_user:
            try:
                uri = _demo_user(billing, gateway, wired.twofactor, args.demo_user)
            except (TransientGatewayError, stripe.StripeError) as exc:
                where = f"the Stripe at {args.stripe_url}" if args.stripe_url else "Stripe"
                hint = (
                    " (start the emulator first)" if args.stripe_url and _unreachable(exc) else ""
                )
                raise SystemExit(
                    f"cannot set up the demo user {args.demo_user} with {where}:"
                    f" {_stripe_problem(exc)}{hint}"
                ) from exc
            except DecryptionError:
                where = db or STORE_URL_ENV
                parser.exit(2, f"{parser.prog}: error: user {args.demo_user} in {where} was"
                            f" created under another {MASTER_KEY_ENV}: set that one, or give"
                            " another --db\n")  # fmt: skip
            bearer = wired.sessions.issue(args.demo_user)
            print(f"user {args.demo_user}: bearer token {bearer}")
            print(f"TOTP: {uri}")
            print(f"billing page: http://127.0.0.1:{args.port}{PAGE_PATH}#token={bearer}")
        uvicorn.run(wired.app, host="127.0.0.1", port=args.port)


def _demo_user(
    billing: BillingService, gateway: StripeGateway, twofactor: TwoFactor, user_id: str
) -> str:
    """Create ``user_id`` with 1,500 credits, or reuse it when the database already holds it
    (``--db`` from an earlier run); give it a working test card at this Stripe (an emulator
    restarted since knows none of its old ones) and a fresh TOTP secret, whose otpauth:// URI
    is returned (the old one was printed to a terminal that may be gone)."""
    try:
        billing.create_user(user_id, balance=1_500)
    except DuplicateUser:
        log.info("user %s exists in this database: reusing it", user_id)
    customer = gateway.ensure_customer(user_id)
    billing.save_payment_method(user_id, customer, gateway.attach_card(customer, "pm_card_visa"))
    return twofactor.enable(user_id)


if __name__ == "__main__":
    main()
