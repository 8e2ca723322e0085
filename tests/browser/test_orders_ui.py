"""Order lookup in Chromium: find an order by name or email and read its journey."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from okapp.sequences.lifecycle import start_sequence
from okapp.sequences.recruit import consider_order
from okapp.sequences.templates import create_sequence
from tests.factories import make_order


def test_look_up_an_order_and_see_its_timeline(page: Page, session, shop):
    now = datetime.now(UTC)
    sequence = create_sequence(session, shop, "review_request", now - timedelta(days=1),
                               name="Autumn asks")
    start_sequence(session, sequence, now - timedelta(days=1))
    recruited = make_order(session, shop, fulfilled_at=now - timedelta(hours=2),
                           email="ana@example.com")
    refunded = make_order(session, shop, fulfilled_at=now - timedelta(hours=3),
                          email="ana@example.com", refunded=True)
    assert consider_order(session, recruited, now) is not None
    assert consider_order(session, refunded, now) is None
    session.commit()

    page.goto("/orders")
    page.get_by_role("searchbox").fill(recruited.name)
    page.get_by_role("button", name="Look up").click()
    journey = page.locator("#order-journey")
    expect(journey).to_contain_text(f"Order {recruited.name}")
    expect(journey.locator(".badge")).to_have_text("Recruited")
    steps = journey.locator(".timeline li")
    expect(steps.first).to_contain_text("Recruited")
    expect(steps.first).to_contain_text("Autumn asks")
    expect(journey.locator(".timeline li.is-next")).to_contain_text("Wait 7 days")
    expect(page).to_have_url(re.compile(r"/orders\?q=%23"))  # the search is in the address bar

    # By email: both of the customer's orders; the refunded one says why it was left out.
    page.get_by_role("searchbox").fill("ANA@example.com")
    page.get_by_role("button", name="Look up").click()
    rows = page.locator("#order-results tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_role("link", name=refunded.name).click()
    journey = page.locator("#order-journey")
    expect(journey.locator(".badge")).to_have_text("Not recruited")
    expect(journey.locator(".timeline li.is-skip")).to_contain_text("refunded")


def test_an_unknown_order_says_so(page: Page):
    page.goto("/orders")
    page.get_by_role("searchbox").fill("#999999")
    page.keyboard.press("Enter")
    expect(page.locator("#order-results")).to_contain_text("No order matches “#999999”")
