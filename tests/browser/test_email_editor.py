"""The email editor in Chromium: the live preview shows catalogue products and follows the fields
as the merchant types, at desktop and phone width; merchant HTML shows as text; the SEND block
modal previews the chosen email."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from playwright.sync_api import expect

from okapp.models import BlockKind
from okapp.sequences.templates import create_sequence, ensure_default_emails
from tests.factories import make_product


def _catalogue(session, shop):
    products = [make_product(session, shop, title=f"Catalogue lamp {i}", price=Decimal(10 + i),
                             image_url="") for i in range(7)]
    emails = ensure_default_emails(session, shop)
    session.commit()
    request = next(e for e in emails.values() if e.kind == "request")
    return products, request


def test_preview_uses_the_catalogue_and_follows_the_fields(page, session, shop):
    products, request = _catalogue(session, shop)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"/emails/{request.id}")

    frame = page.frame_locator("#preview iframe")
    expect(frame.get_by_text("How was your order?")).to_be_visible()
    shown = [p.title for p in products if frame.get_by_text(p.title).count()]
    assert len(shown) == 5  # random catalogue products, as many as an email shows

    # Typing re-renders the preview (debounced); the products stay the same while typing.
    page.get_by_label("Heading").fill("We'd love your opinion, {{ customer.first_name }}")
    expect(frame.get_by_text("We'd love your opinion, Jane")).to_be_visible()
    assert [p.title for p in products if frame.get_by_text(p.title).count()] == shown
    page.get_by_label("Button text").fill("Rate my lamps")
    expect(frame.get_by_role("link", name="Rate my lamps")).to_be_visible()

    # Merchant HTML is text in the email; nothing runs.
    page.get_by_label("Heading").fill("<img src=x onerror=alert(1)><script>alert(2)</script>Hi")
    expect(frame.get_by_text("<img src=x onerror=alert(1)><script>alert(2)</script>Hi")) \
        .to_be_visible()
    assert dialogs == []

    # Phone width.
    desktop = page.locator("#preview iframe").bounding_box()["width"]
    page.get_by_label("Mobile").check()
    page.wait_for_function("document.querySelector('#preview iframe')"
                           ".getBoundingClientRect().width <= 375")
    assert desktop > 500

    # Other products on request.
    page.get_by_role("button", name="Other products").click()
    expect(frame.get_by_text("Catalogue lamp", exact=False).first).to_be_visible()


def test_refused_jinja_keeps_the_input_and_says_why(page, session, shop):
    _products, request = _catalogue(session, shop)
    page.goto(f"/emails/{request.id}")
    typed = "Hi {{ ''.__class__ }}"
    page.get_by_label("Subject", exact=True).fill(typed)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#subject-error")).to_contain_text("is not allowed here")
    expect(page.get_by_label("Subject", exact=True)).to_have_value(typed)


def test_send_block_modal_previews_the_chosen_email(page, session, shop):
    _catalogue(session, shop)
    sequence = create_sequence(session, shop, "review_request", datetime.now(UTC))
    send = next(b for b in sequence.blocks if b.kind == BlockKind.SEND.value)
    session.commit()
    page.goto(f"/sequences/{sequence.id}")
    page.locator(f"#block-{send.id} .block-open").click()
    modal = page.locator("#modal")
    expect(modal.get_by_label("Email")).to_be_visible()
    modal.get_by_role("button", name="Preview").click()
    frame = modal.frame_locator("iframe")
    expect(frame.get_by_text("How was your order?")).to_be_visible()
