"""The billing settings page: ``GET /billing``, served by the API app.

One page with five views, in the order a user meets them: the **overview** (balance, auto
top-up, card, subscription), **buy credits** (the tiers with their prices, the recommended one
marked, the subscription bonus shown, then the card and the 2FA code), **subscription** (status,
credits, price, next billing date; subscribe or cancel), **auto top-up** (enable, threshold,
amount, currency, monthly limit, the card's status, the 2FA notice and code) and **card** (save or
replace the card without buying). A view is an address fragment (``/billing#buy``), so the
browser's back button and each view's own "Back" link both return to the overview.

What the server renders (Jinja2, ``templates/billing.html``) comes from the tables the API itself
validates against: :data:`~sim.billing.pricing.TIERS`, :data:`~sim.billing.settings.THRESHOLDS`
and :data:`~sim.billing.pricing.CURRENCIES`, so the page cannot offer a choice the API refuses.
What belongs to the user (balance, settings, card, subscription) is read by a little plain
JavaScript (``static/billing.js``) from the JSON API with the user's bearer token, and every
change goes through the same API routes as any client's, 2FA included. The script checks the
six-digit code before it sends anything and shows every refusal in words, next to the form.

**Signing in.** The page takes the bearer token from its address's fragment
(``/billing#token=...``: a fragment is never sent to a server, so it appears in no access log),
keeps it in the tab's ``sessionStorage`` and removes it from the address bar; without one it asks
for it. ``python -m sim.billing.serve --demo-user NAME`` prints that address. A deployment that
signs users in with its own cookies overrides :func:`~sim.billing.api.current_user` and the
script's ``authHeaders``, as it would for any client.

**Cards.** The gateway takes Stripe test keys only (live keys are refused), so the card step
offers Stripe's test cards by name (:data:`TEST_CARDS`) in place of a card form, in test mode and
with the emulator alike. With ``cards=None`` the buy and card views say that card entry needs
Stripe.js, which this page does not include (the place a deployment taking real cards would add
Stripe's Payment Element); the overview, subscription and auto top-up views work the same.

The page sends a strict Content-Security-Policy (scripts and styles from this server only, no
inline script), is never cached and cannot be framed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from .pricing import CURRENCIES, TIERS, Tier, price_of
from .settings import THRESHOLDS

#: Where the page is served, and its scripts and styles.
PAGE_PATH: Final = "/billing"
STATIC_PATH: Final = "/billing/static"

#: Stripe's test PaymentMethods the card step offers, id -> what a person calls it (each works in
#: Stripe test mode and in the emulator).
TEST_CARDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "pm_card_visa": "Visa that works",
        "pm_card_chargeDeclined": "Card that is declined",
        "pm_card_chargeDeclinedInsufficientFunds": "Card with insufficient funds",
        "pm_card_authenticationRequired": "Card that asks for 3-D Secure",
    }
)

#: The page's response headers: no inline script runs, nothing is cached, no one frames it.
_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
            " connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
)


@dataclass(frozen=True, slots=True)
class TierOffer:
    """A tier as the page shows it: its credits, its price in each currency (``"20.00 EUR"``),
    the monthly bonus a subscription to it adds (0: cannot be subscribed), and whether it is the
    recommended one."""

    credits: int
    prices: Mapping[str, str]
    monthly_bonus: int
    recommended: bool


def tier_offer(tier: Tier) -> TierOffer:
    """The page's view of ``tier``, priced in every currency by :func:`price_of`."""
    prices = {currency: str(price_of(tier.credits, currency)) for currency in CURRENCIES}
    return TierOffer(tier.credits, prices, tier.monthly_bonus, tier.recommended)


def render_page(cards: Mapping[str, str] | None = TEST_CARDS) -> str:
    """The page's HTML: the tiers, thresholds, currencies and ``cards`` it offers."""
    environment = Environment(
        loader=PackageLoader("sim.billing", "templates"),
        autoescape=select_autoescape(default=True),
    )
    return environment.get_template("billing.html").render(
        tiers=[tier_offer(tier) for tier in TIERS],
        thresholds=THRESHOLDS,
        currencies=CURRENCIES,
        cards=dict(cards) if cards is not None else None,
        static=STATIC_PATH,
    )


def add_page_routes(app: FastAPI, *, cards: Mapping[str, str] | None = TEST_CARDS) -> None:
    """Serve the page at :data:`PAGE_PATH` and its files at :data:`STATIC_PATH` on ``app``.
    The HTML is rendered once: nothing in it depends on the request or the user."""
    html = render_page(cards)
    app.mount(STATIC_PATH, StaticFiles(packages=[("sim.billing", "static")]), name="billing-static")

    @app.get(PAGE_PATH, include_in_schema=False)
    def billing_page() -> HTMLResponse:
        """The billing settings page (the user's data is read by its script)."""
        return HTMLResponse(html, headers=dict(_HEADERS))
