"""The billing settings page as the server sends it (the browser tests use it as a person does:
``tests/browser/test_billing_page.py``): what it offers comes from the tables the API checks
against, its files are served, and its headers keep scripts and frames out."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from sim.billing import TIERS, price_of
from sim.billing.api import build_app
from sim.billing.page import PAGE_PATH, STATIC_PATH, TEST_CARDS, render_page, tier_offer
from sim.billing.payments import StripeGateway
from sim.billing.settings import THRESHOLDS
from sim.stripe_emulator import StripeEmulator

from .conftest import BillingFactory


@pytest.fixture
def client(
    make_billing: BillingFactory, stripe_gateway: StripeGateway, emulator: StripeEmulator
) -> TestClient:
    billing = make_billing(payment_gateway=stripe_gateway)
    return TestClient(build_app(billing, stripe_gateway, "whsec_page").app)


def test_the_page_offers_what_the_api_accepts(client: TestClient) -> None:
    answer = client.get(PAGE_PATH)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    offered = [int(v) for v in re.findall(r'name="credits" value="(\d+)"', html)]
    assert offered == [tier.credits for tier in TIERS]
    subscribable = re.findall(r'<option value="(\d+)"[^>]*>[\d,]+ \+ [\d,]+ bonus', html)
    assert [int(v) for v in subscribable] == [t.credits for t in TIERS if t.monthly_bonus]
    thresholds = re.findall(r'<option value="(\d+)">[\d,]+ credits or less', html)
    assert tuple(int(v) for v in thresholds) == THRESHOLDS
    for tier in TIERS:
        for currency in ("eur", "usd", "jpy"):
            assert f'data-currency="{currency}">{price_of(tier.credits, currency)}<' in html
    assert html.count('class="tier recommended"') == 1
    assert re.findall(r'name="payment_method" value="(pm_\w+)"', html) == list(TEST_CARDS)


def test_the_recommended_tier_is_the_one_the_brief_marks() -> None:
    assert [t.credits for t in TIERS if tier_offer(t).recommended] == [21_000]
    assert tier_offer(TIERS[0]).prices == {"eur": "2.00 EUR", "usd": "3.00 USD", "jpy": "400 JPY"}


def test_the_page_keeps_scripts_frames_and_caches_out(client: TestClient) -> None:
    headers = client.get(PAGE_PATH).headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"


def test_the_page_has_no_inline_script_the_policy_would_block() -> None:
    html = render_page()
    assert re.findall(r"<script[^>]*>", html) == [f'<script src="{STATIC_PATH}/billing.js" defer>']
    assert not re.search(r"<[^>]*\son\w+\s*=", html)  # no onclick= or other handler attribute


def test_the_script_and_styles_are_served(client: TestClient) -> None:
    script = client.get(f"{STATIC_PATH}/billing.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/v1/settings/auto-topup/low-balance" in script.text
    styles = client.get(f"{STATIC_PATH}/billing.css")
    assert styles.status_code == 200 and styles.headers["content-type"].startswith("text/css")
    missing = client.get(f"{STATIC_PATH}/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_without_cards_the_page_takes_no_card() -> None:
    html = render_page(cards=None)
    assert 'name="payment_method"' not in html and "needs Stripe.js" in html
    assert 'id="buy-code"' not in html  # nothing to pay with, so no code asked
