"""The billing settings page (``GET /billing``) in a real browser, used as a person uses it.

The API app is served by uvicorn on a free port, on the Stripe emulator (in-process, through the
real ``stripe`` library) and a virtual clock; headless Chromium opens the page signed in as a
fresh user per test, clicks, types codes from the user's authenticator, and reads what the page
shows; each test then checks the store and Stripe behind it too. Webhooks are delivered to the
server over HTTP as Stripe would send them, and auto top-up tasks run when the test says, so
every step is deterministic.

The seed's frontend test list, and the test here that covers each: the purchase flow end to end
(:func:`test_buy_a_tier_and_see_the_balance_change`, the 3-D Secure one in
:func:`test_a_three_d_secure_purchase_completes_after_the_bank_confirms`); error states
(:func:`test_a_declined_card_shows_its_error_and_changes_nothing`, and on the card view
:func:`test_replace_the_card_after_the_bank_confirms_and_a_declined_card_keeps_the_old`);
subscription management (:func:`test_subscribe_then_cancel`); auto top-up configuration and
2FA enforcement (:func:`test_auto_topup_with_a_wrong_code_then_the_right_one`,
:func:`test_a_malformed_code_is_refused_before_anything_is_sent`); the top-up landing
(:func:`test_spending_below_the_threshold_shows_the_top_up_land`); responsive design
(:func:`test_no_view_is_wider_than_a_phone_or_a_tablet`). Screenshots of each view go to
``test-output/browser/billing-*.png``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pyotp
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from sim.billing import (
    AutoTopupSettings,
    BillingService,
    ManualClock,
    MemoryCache,
    MemoryStore,
    QueueRunner,
    RecordingNotifier,
    Vault,
)
from sim.billing.api import build_app
from sim.billing.page import PAGE_PATH
from sim.billing.payments import StripeGateway
from sim.billing.purchases import PURCHASE_KIND
from sim.billing.twofactor import TwoFactor
from sim.stripe_emulator import StripeEmulator

from .conftest import OUTPUT, WAIT_S, changed, find, free_port, read, require_browser, wait

INSUFFICIENT_FUNDS = "pm_card_chargeDeclinedInsufficientFunds"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SERVICE_TOKEN = "svc-browser-test-0123456789"
#: The views, by their address fragment.
VIEWS = ("overview", "buy", "subscription", "auto-topup", "card")
#: What a figure shows before the user's data arrives (an en dash).
NOTHING_YET = "\u2013"
#: Phone and tablet widths the layout must fit.
WIDTHS = (375, 768)

pytestmark = pytest.mark.timeout(180)


@dataclass
class Shop:
    """The served app and everything behind it."""

    url: str
    clock: ManualClock
    billing: BillingService
    gateway: StripeGateway
    emulator: StripeEmulator
    twofactor: TwoFactor
    tasks: QueueRunner
    issue: object  # Sessions.issue

    def code(self) -> str:
        """The next step's TOTP code (each code is accepted once, so time moves 30 s first)."""
        self.clock.advance(30)
        return pyotp.TOTP(SECRET).at(self.clock.now())

    def wrong_code(self) -> str:
        """Six digits that are none of the codes valid now."""
        now = self.clock.now()
        valid = {pyotp.TOTP(SECRET).at(now + 30 * step) for step in (-1, 0, 1)}
        return next(c for c in ("000000", "111111", "222222") if c not in valid)

    def deliver_webhooks(self) -> list[int]:
        """POST every due webhook to the server, signed, as Stripe does; the status codes."""
        now = int(self.clock.now())
        return [
            httpx.post(
                f"{self.url}/v1/payments/webhook",
                content=d.payload,
                headers=d.signed_headers(now),
            ).status_code
            for d in self.emulator.due_deliveries()
        ]

    def user(self, user_id: str, *, balance: int = 1_500, card: bool = True) -> str:
        """Create ``user_id`` with 2FA (and a Visa), and return its bearer token."""
        self.billing.create_user(user_id, balance=balance)
        if card:
            customer = self.gateway.ensure_customer(user_id)
            method = self.gateway.attach_card(customer, "pm_card_visa")
            self.billing.save_payment_method(user_id, customer, method)
        self.twofactor.enable(user_id, SECRET)
        return str(self.issue(user_id))  # type: ignore[operator]


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    """The API app on uvicorn, on a free port, until the module's tests are done."""
    require_browser()
    clock = ManualClock()
    emulator = StripeEmulator(clock=clock, seed=11)
    gateway = StripeGateway("sk_test_browser", http_client=emulator.http_client())
    tasks = QueueRunner()
    billing = BillingService(
        clock=clock, cache=MemoryCache(), store=MemoryStore(), gateway=gateway,
        notifier=RecordingNotifier(), tasks=tasks, vault=Vault(bytes(range(32))),
    )  # fmt: skip
    port = free_port()
    emulator.add_webhook_endpoint(f"http://127.0.0.1:{port}/v1/payments/webhook")
    wired = build_app(billing, gateway, emulator.webhook_secret, service_token=SERVICE_TOKEN)
    server = uvicorn.Server(
        uvicorn.Config(wired.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Shop(
            f"http://127.0.0.1:{port}", clock, billing, gateway, emulator, wired.twofactor,
            tasks, wired.sessions.issue,
        )  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _open(browser: webdriver.Chrome, shop: Shop, token: str, view: str = "overview") -> None:
    """Open the page signed in with ``token`` (as ``serve --demo-user`` prints it), at ``view``."""
    browser.get("about:blank")
    browser.get(f"{shop.url}{PAGE_PATH}#token={token}")
    assert "#token" not in browser.current_url  # the token left the address bar
    find(browser, "#balance")
    wait(browser).until(lambda b: read(b, "#balance") != NOTHING_YET)
    if view != "overview":
        find(browser, f'a[href="#{view}"]').click()
        find(browser, f'[data-view="{view}"] h2')


def _screenshot(browser: webdriver.Chrome, name: str) -> None:
    path = OUTPUT / f"billing-{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")


def _choose(browser: webdriver.Chrome, css: str) -> None:
    """Click a radio or checkbox as a person does: on its label."""
    field = browser.find_element(By.CSS_SELECTOR, css)
    field.find_element(By.XPATH, "./ancestor::label").click()
    assert field.is_selected()


def _select(browser: webdriver.Chrome, css: str, text: str) -> None:
    """Pick the option that reads ``text`` in the drop-down ``css``."""
    Select(find(browser, css)).select_by_visible_text(text)


def _type_code(browser: webdriver.Chrome, form: str, code: str) -> None:
    field = find(browser, f"{form} input[name=totp_code]")
    field.clear()
    field.send_keys(code)


def _message(browser: webdriver.Chrome, view: str, before: str = "") -> str:
    """The view's message once it says something other than ``before`` or "Working…"."""
    css = f'[data-view="{view}"] [data-message]'
    return wait(browser).until(
        lambda b: (text := read(b, css)) not in (before, "Working…", "") and text
    )


# ---------------------------------------------------------------------------------- buying


def test_buy_a_tier_and_see_the_balance_change(browser: webdriver.Chrome, shop: Shop) -> None:
    """The tiers show their prices in the chosen currency, the recommended one marked and
    chosen, the bonus of a subscription shown; paying for 1,000 credits adds them, once."""
    _open(browser, shop, shop.user("buyer"), "buy")
    recommended = find(browser, ".tier.recommended")
    assert "Recommended" in recommended.text and "21,000 credits" in recommended.text
    assert recommended.find_element(By.CSS_SELECTOR, "input").is_selected()
    assert "+1,000 bonus credits a month" in recommended.text
    in_euros = recommended.text
    assert "20.00 EUR" in in_euros and "30.00 USD" not in in_euros
    _select(browser, "#buy-currency", "JPY")
    assert "4000 JPY" in changed(browser, ".tier.recommended", in_euros)
    _select(browser, "#buy-currency", "EUR")
    _choose(browser, 'input[name="credits"][value="1000"]')
    _choose(browser, 'input[name="payment_method"][value="pm_card_visa"]')
    _type_code(browser, "#buy-form", shop.code())
    _screenshot(browser, "buy")
    find(browser, "#buy-form button[type=submit]").click()
    message = _message(browser, "buy")
    assert message.startswith("Paid: 1,000 credits added. Balance: 2,500 credits."), message
    shop.deliver_webhooks()  # Stripe's copy of the same payment credits nothing more
    find(browser, 'a.back[href="#overview"]').click()
    wait(browser).until(lambda b: read(b, "#balance") == "2,500")
    assert shop.billing.balance("buyer") == 2_500
    assert len(shop.billing.store.ledger("buyer", kinds=(PURCHASE_KIND,))) == 1
    _screenshot(browser, "overview")


def test_a_declined_card_shows_its_error_and_changes_nothing(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    token = shop.user("declined")
    card_before = shop.billing.payment_method("declined")
    _open(browser, shop, token, "buy")
    _choose(browser, 'input[name="credits"][value="10000"]')
    _choose(
        browser, 'input[name="payment_method"][value="pm_card_chargeDeclinedInsufficientFunds"]'
    )
    _type_code(browser, "#buy-form", shop.code())
    find(browser, "#buy-form button[type=submit]").click()
    message = _message(browser, "buy")
    assert message == "The card was declined (insufficient funds). Nothing was charged."
    box = find(browser, '[data-view="buy"] [data-message]')
    assert box.get_attribute("role") == "alert" and "error" in box.get_attribute("class")
    _screenshot(browser, "declined")
    shop.deliver_webhooks()
    assert shop.billing.balance("declined") == 1_500
    assert shop.billing.store.ledger("declined", kinds=(PURCHASE_KIND,)) == []
    assert shop.billing.payment_method("declined") == card_before  # save_card was ticked


def test_a_three_d_secure_purchase_completes_after_the_bank_confirms(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    _open(browser, shop, shop.user("secure"), "buy")
    _choose(browser, 'input[name="credits"][value="1000"]')
    _choose(browser, 'input[name="payment_method"][value="pm_card_authenticationRequired"]')
    _type_code(browser, "#buy-form", shop.code())
    find(browser, "#buy-form button[type=submit]").click()
    assert _message(browser, "buy") == "Waiting for your bank: confirm to finish."
    assert shop.billing.balance("secure") == 1_500
    _screenshot(browser, "three-d-secure")
    find(browser, "#buy-confirm-button").click()
    message = _message(browser, "buy", "Waiting for your bank: confirm to finish.")
    assert message.startswith("Paid: 1,000 credits added. Balance: 2,500 credits.")
    assert not browser.find_element(By.CSS_SELECTOR, "#buy-confirm").is_displayed()
    shop.deliver_webhooks()
    assert shop.billing.balance("secure") == 2_500


def test_replace_the_card_after_the_bank_confirms_and_a_declined_card_keeps_the_old(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    """The card view: a declined card is refused in words and the Visa stays; a card that
    asks for 3-D Secure is saved once the bank confirms, and the overview says which."""
    token = shop.user("carder")
    visa = shop.billing.payment_method("carder")
    _open(browser, shop, token, "card")
    assert "Visa ending in 4242" in read(browser, "#card-status")
    _choose(browser, 'input[name="card_payment_method"][value="pm_card_chargeDeclined"]')
    _type_code(browser, "#card-form", shop.code())
    find(browser, "#card-form button[type=submit]").click()
    declined = _message(browser, "card")
    assert declined == "The card was declined (generic decline). Nothing was charged."
    assert shop.billing.payment_method("carder") == visa
    _choose(browser, 'input[name="card_payment_method"][value="pm_card_authenticationRequired"]')
    _type_code(browser, "#card-form", shop.code())
    find(browser, "#card-form button[type=submit]").click()
    assert _message(browser, "card", declined) == "Waiting for your bank: confirm to finish."
    assert shop.billing.payment_method("carder") == visa
    _screenshot(browser, "card-three-d-secure")
    find(browser, "#card-confirm-button").click()
    saved = _message(browser, "card", "Waiting for your bank: confirm to finish.")
    assert saved.startswith("Card saved.") and "auto top-up can use it" in saved
    assert shop.billing.payment_method("carder") != visa
    find(browser, '[data-view="card"] a.back').click()
    assert read(browser, "#go-card") == "Replace the card"


# ---------------------------------------------------------------------------------- subscription


def test_subscribe_then_cancel(browser: webdriver.Chrome, shop: Shop) -> None:
    """No subscription -> subscribe to 10,000 a month in EUR (the first invoice is paid, its
    webhook grants credits and bonus) -> cancel: it ends at the period's end."""
    token = shop.user("subscriber")
    _open(browser, shop, token, "subscription")
    assert read(browser, "#subscription-status") == "No subscription"
    _select(browser, "#subscribe-credits", "10,000 + 500 bonus credits a month")
    assert read(browser, "#cancel-form", "hidden") == "true"
    _type_code(browser, "#subscribe-form", shop.code())
    find(browser, "#subscribe-form button[type=submit]").click()
    assert _message(browser, "subscription").startswith("Subscribed.")
    assert read(browser, "#subscription-status") == "active"
    assert read(browser, "#subscription-credits") == "10,000"
    assert read(browser, "#subscription-price") == "10.00 EUR a month"
    answer = httpx.get(
        f"{shop.url}/v1/settings/billing", headers={"Authorization": f"Bearer {token}"}
    )
    period_end = datetime.fromtimestamp(answer.json()["subscription"]["current_period_end"], UTC)
    assert read(browser, "#subscription-next") == period_end.date().isoformat()
    _screenshot(browser, "subscription")
    assert shop.deliver_webhooks()  # the first invoice: credits and bonus
    assert shop.billing.balance("subscriber") == 1_500 + 10_000 + 500

    _type_code(browser, "#cancel-form", shop.code())
    find(browser, "#cancel-form button[type=submit]").click()
    assert _message(browser, "subscription", "Subscribed.").startswith("Cancelled.")
    status = read(browser, "#subscription-status")
    assert status == "active, cancelled: ends at the end of the period"
    assert read(browser, "#subscription-next") == "none (cancelled)"
    assert shop.emulator.objects_of("subscription")[-1]["cancel_at_period_end"] is True


# ---------------------------------------------------------------------------------- auto top-up


def test_auto_topup_with_a_wrong_code_then_the_right_one(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    """The form shows the saved settings and the card; a wrong code is refused in words with
    nothing saved; the right code saves exactly what the form says."""
    _open(browser, shop, shop.user("configurer"), "auto-topup")
    assert "Visa ending in 4242" in read(browser, "#topup-card-status")
    assert "6-digit code" in read(browser, '[data-view="auto-topup"] .twofa-notice')
    before = shop.billing.store.get_user("configurer").settings
    assert not find(browser, "#topup-enabled").is_selected()
    _choose(browser, "#topup-enabled")
    _select(browser, "#topup-threshold", "2,000 credits or less")
    _select(browser, "#topup-amount", "21,000 credits")
    _select(browser, "#topup-currency", "USD")
    find(browser, "#topup-limit").send_keys("50000")
    _type_code(browser, "#topup-form", shop.wrong_code())
    find(browser, "#topup-form button[type=submit]").click()
    error = _message(browser, "auto-topup")
    assert error.startswith("That code is not right.") and "Nothing was changed" in error
    _screenshot(browser, "auto-topup-wrong-code")
    assert shop.billing.store.get_user("configurer").settings == before

    _type_code(browser, "#topup-form", shop.code())
    find(browser, "#topup-form button[type=submit]").click()
    saved = _message(browser, "auto-topup", error)
    assert saved.startswith("Saved. Buys 21,000 credits (USD) when the balance falls to 2,000")
    assert "at most 50,000 credits a month" in saved
    # Enabled under the threshold (1,500 <= 2,000): a top-up was claimed at once, and counts.
    assert saved.endswith("This month: 21,000 of 50,000 credits.")
    assert shop.billing.store.get_user("configurer").settings == AutoTopupSettings(
        True, 2_000, 21_000, "usd", 50_000
    )
    _screenshot(browser, "auto-topup")


def test_a_malformed_code_is_refused_before_anything_is_sent(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    """ "12ab" never reaches the server: the field is marked and the page says what a code is;
    no wrong attempt is counted against the user."""
    _open(browser, shop, shop.user("typo"), "auto-topup")
    _choose(browser, "#topup-enabled")
    _type_code(browser, "#topup-form", "12ab")
    find(browser, "#topup-form button[type=submit]").click()
    message = _message(browser, "auto-topup")
    assert message == "Enter the 6-digit code from your authenticator app (digits only)."
    field = find(browser, "#topup-form input[name=totp_code]")
    assert field.get_attribute("aria-invalid") == "true"
    user = shop.billing.store.get_user("typo")
    assert not user.settings.enabled
    assert shop.billing.store.tfa_failures_since("typo", 0) == []


def test_spending_below_the_threshold_shows_the_top_up_land(
    browser: webdriver.Chrome, shop: Shop
) -> None:
    """Auto top-up on at 1,000 for 10,000; the product spends 600 of 1,500 credits over HTTP;
    the top-up runs; the open page shows the new balance without being reloaded."""
    token = shop.user("spender")
    shop.billing.update_settings("spender", AutoTopupSettings(True, 1_000, 10_000, "eur"))
    _open(browser, shop, token)
    assert read(browser, "#balance") == "1,500"
    assert read(browser, "#topup-summary").startswith("Buys 10,000 credits (EUR) when the")
    spent = httpx.post(
        f"{shop.url}/v1/usage",
        json={"user_id": "spender", "credits": 600},
        headers={"X-Service-Token": SERVICE_TOKEN, "Idempotency-Key": "spend-1"},
    )
    assert spent.status_code == 200, spent.text
    wait(browser).until(lambda b: read(b, "#balance") == "900")
    assert shop.tasks.run_pending() >= 1  # the top-up the deduction claimed
    shop.deliver_webhooks()
    wait(browser).until(lambda b: read(b, "#balance") == "10,900")
    _screenshot(browser, "topped-up")
    assert shop.billing.balance("spender") == 10_900


# ---------------------------------------------------------------------------------- layout


def test_no_view_is_wider_than_a_phone_or_a_tablet(browser: webdriver.Chrome, shop: Shop) -> None:
    """At 375 px and 768 px wide, every view fits the screen: no horizontal scrolling."""
    token = shop.user("mobile")
    try:
        for width in WIDTHS:
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
            )
            _open(browser, shop, token)
            for view in VIEWS:
                browser.get(f"{shop.url}{PAGE_PATH}#{view}")
                find(browser, f'[data-view="{view}"]')
                overflow = browser.execute_script(
                    "return [document.documentElement.scrollWidth, window.innerWidth];"
                )
                assert overflow[0] <= overflow[1], (view, width, overflow)
                _screenshot(browser, f"{view}-{width}")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
