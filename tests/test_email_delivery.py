"""Review emails as a real SMTP server (aiosmtpd) receives them, and the links inside them."""

from __future__ import annotations

import base64
import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from okapp.emails import tracking, transport
from okapp.emails.render import MAX_HTML_BYTES, NothingToReview, render_message
from okapp.emails.transport import (
    DeliveryOutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
    close_connections,
    deliver,
)
from okapp.models import (
    BlockCounter,
    BlockCounterDelta,
    EmailTemplate,
    Enrollment,
    JourneyStep,
    LineItem,
    Message,
    MessageState,
    Review,
    Suppression,
)
from okapp.reviews.tokens import ReviewLink, read_token
from tests.factories import (
    NOW,
    make_enrollment,
    make_message,
    make_order,
    make_product,
    make_sequence,
)
from tests.smtp_sink import SmtpSink, smtp_sink_fixture  # noqa: F401


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[tuple[str, dict]] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.hrefs.append((attrs["href"], attrs))
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


@pytest.fixture(autouse=True)
def _fresh_connections():
    yield
    close_connections()


@pytest.fixture
def order_message(session, shop):
    """A queued request for a real order: three reviewable products and three that are not."""
    shop.settings = {"postal_address": "12 Rue de la Paix, 75002 Paris", "sender_name": "Acme Reviews",
                     "reply_to": "care@acme.example"}
    boots = make_product(session, shop, title="Boots", price=Decimal("120"),
                         image_url="https://cdn.example/boots.jpg")
    socks = make_product(session, shop, title="Socks", price=Decimal("5"),
                         image_url="https://cdn.example/socks.jpg")
    hat = make_product(session, shop, title="Hat", price=Decimal("30"),
                       image_url="https://cdn.example/hat.jpg")
    hidden = make_product(session, shop, title="Sample", tags=["no-review"],
                          image_url="https://cdn.example/sample.jpg")
    order = make_order(session, shop, products=[socks, boots, hat, hidden])
    gift = make_product(session, shop, title="Gift card", image_url="https://cdn.example/gift.jpg")
    order.line_items.append(LineItem(gid="gid://shopify/LineItem/gift", product_gid=gift.gid,
                                     title="Gift card", price=Decimal("50"), gift_card=True,
                                     image_url=gift.image_url))
    sequence = make_sequence(session, shop)
    enrollment = make_enrollment(session, sequence, order)
    message = make_message(session, enrollment)
    session.commit()
    return message, order, {"boots": boots, "socks": socks, "hat": hat}


def test_request_email_as_received_over_smtp(session, config, smtp_sink, order_message):
    message, order, products = order_message
    config.smtp_url = smtp_sink.url
    deliver(config, render_message(session, message, config, NOW))

    [(mail_from, rcpt_tos, raw)] = smtp_sink.raw()
    # The raw header, as a mail client reads it: a plain <URL>, never RFC 2047 encoded words.
    assert re.search(rb"\r\nList-Unsubscribe: <http://okapp\.test/e/u/[\w.-]+>\r\n", raw)
    assert mail_from == config.mail_from and rcpt_tos == [order.email]
    [msg] = smtp_sink.messages()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"] == message.message_id_header
    assert msg["Date"].datetime == NOW
    assert msg["From"].addresses[0].display_name == "Acme Reviews"
    assert msg["From"].addresses[0].addr_spec == config.mail_from
    assert str(msg["Reply-To"]) == "care@acme.example"
    assert msg["To"] == order.email
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<http://okapp\.test/e/u/[^>]+>", msg["List-Unsubscribe"])
    assert "How did you like your order" in msg["Subject"]

    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert len(html.encode()) < MAX_HTML_BYTES
    links = _parse(html)
    # The real order's reviewable products, priciest first; gift card and tagged item left out.
    assert [src for src in links.images if "cdn.example" in src] == [
        "https://cdn.example/boots.jpg", "https://cdn.example/hat.jpg",
        "https://cdn.example/socks.jpg"]
    assert "Gift card" not in html and "Sample" not in html
    assert html.index("Boots") < html.index("Hat") < html.index("Socks")
    assert "12 Rue de la Paix, 75002 Paris" in html and "12 Rue de la Paix" in text
    assert "Boots" in text and "Unsubscribe: http://okapp.test/e/u/" in text

    # Five star links per product, each a signed click that lands on the review page with that
    # product and rating chosen.
    stars: dict[int, list[int]] = {}
    for href, attrs in links.hrefs:
        if not attrs.get("title", "").startswith("Rate "):
            continue
        message_id, target = tracking.read_click(config.secret_key,
                                                 href.removeprefix("http://okapp.test/e/c/"))
        assert message_id == message.id
        parts = urlsplit(target)
        link = read_token(config.secret_key, parts.path.removeprefix("/r/"))
        assert (link.shop_id, link.order_id) == (order.shop_id, order.id)
        query = parse_qs(parts.query)
        stars.setdefault(int(query["product"][0]), []).append(int(query["rating"][0]))
    assert stars == {p.id: [1, 2, 3, 4, 5] for p in products.values()}


def test_tracked_links_count_opens_and_clicks(session, config, client, smtp_sink, order_message):
    message, _order, _products = order_message
    config.smtp_url = smtp_sink.url
    deliver(config, render_message(session, message, config, NOW))
    html = smtp_sink.messages()[0].get_body(("html",)).get_content()
    links = _parse(html)
    [pixel] = [src for src in links.images if "/e/o/" in src]
    button = next(href for href, _ in links.hrefs if "/e/c/" in href and "title" not in _)

    assert client.get(pixel.removeprefix("http://okapp.test")).mimetype == "image/gif"
    client.get(pixel.removeprefix("http://okapp.test"))
    response = client.get(button.removeprefix("http://okapp.test"))
    assert response.status_code == 302
    assert response.location.startswith("http://okapp.test/r/")

    session.expire_all()
    row = session.get(Message, message.id)
    assert (row.opens, row.clicks) == (2, 1)
    assert row.first_opened_at is not None and row.first_clicked_at is not None
    # The block's counters count people, not pixels: one opened, one clicked.
    assert _counters(session, message.block_id) == {"opened": 1, "clicked": 1}


def _counters(session, block_id) -> dict[str, int]:
    totals = Counter()
    for table in (BlockCounter, BlockCounterDelta):  # the folded totals and the newer deltas
        for row in session.scalars(select(table).where(table.block_id == block_id)):
            totals[row.name] += row.value
    return dict(totals)


def test_a_click_without_the_pixel_counts_as_an_open(session, config, client, order_message):
    message, _order, _products = order_message
    links = tracking.Links(config.app_url, config.secret_key, message.shop_id, message.recipient,
                           message_id=message.id)
    assert client.get(links.click("https://shop.example/a").removeprefix(
        "http://okapp.test")).status_code == 302
    session.expire_all()
    row = session.get(Message, message.id)
    assert (row.opens, row.clicks) == (1, 1)
    assert _counters(session, message.block_id) == {"opened": 1, "clicked": 1}


def test_not_arrived_link_pushes_the_next_step_back_once(session, config, client, order_message):
    message, _order, _products = order_message
    enrollment = message.enrollment
    due = enrollment.due_at
    rendered = render_message(session, message, config, NOW)
    [url] = [line for line in rendered.text.splitlines() if "/e/not-arrived/" in line]
    path = url.strip().removeprefix("http://okapp.test")
    page = client.get(path)
    assert b"It hasn&#39;t arrived yet" in page.data or b"It hasn't arrived yet" in page.data
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).due_at == due  # a GET changes nothing
    assert b"Thanks for letting us know" in client.post(path).data
    session.expire_all()
    pushed = session.get(Enrollment, enrollment.id).due_at
    assert pushed >= due + timedelta(days=7)
    steps = session.scalars(select(JourneyStep.event).where(
        JourneyStep.enrollment_id == enrollment.id)).all()
    assert "not_arrived" in steps
    client.post(path)  # a second click does not push again
    session.expire_all()
    assert session.get(Enrollment, enrollment.id).due_at == pushed
    assert client.post(path[:-4] + "AAAA").status_code == 404


def test_click_tokens_cannot_be_tampered_or_pointed_elsewhere(session, config, client):
    good = tracking.Links(config.app_url, config.secret_key, 1, "a@b.c", message_id=7)
    token = good.click("https://shop.example/ok").removeprefix("http://okapp.test/e/c/")
    # Same message, another destination, signed with a different key: refused.
    forged = tracking.Links(config.app_url, "not-the-secret", 1, "a@b.c", message_id=7)
    forged_token = forged.click("https://evil.example/").removeprefix("http://okapp.test/e/c/")
    assert client.get(f"/e/c/{forged_token}").status_code == 404
    assert client.get(f"/e/c/{token[:-2]}xx").status_code == 404
    # A token of another purpose (the open pixel) is not a click token either.
    pixel = good.open_pixel().removeprefix("http://okapp.test/e/o/").removesuffix(".gif")
    assert client.get(f"/e/c/{pixel}").status_code == 404
    assert client.get(f"/e/c/{token}").location == "https://shop.example/ok"


def test_one_click_unsubscribe_suppresses_and_skips_the_pending_reminder(
        session, config, client, smtp_sink, shop, order_message):
    message, order, _products = order_message
    config.smtp_url = smtp_sink.url
    deliver(config, render_message(session, message, config, NOW))
    message.state = MessageState.SENT.value
    # The reminder is already queued for the same address (another SEND block).
    enrollment = message.enrollment
    reminder_block = make_sequence(session, shop).blocks[-1]
    reminder = make_message(session, enrollment, block_id=reminder_block.id, kind="reminder")
    session.commit()

    [msg] = smtp_sink.messages()
    url = msg["List-Unsubscribe"].strip("<>")
    # RFC 8058: the mail client POSTs this body, with no cookie and no confirmation step.
    response = client.post(url.removeprefix("http://okapp.test"),
                           data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200

    session.expire_all()
    suppression = session.scalars(select(Suppression).where(
        Suppression.shop_id == order.shop_id)).one()
    assert (suppression.address, suppression.reason) == (order.email, "unsubscribe")
    reminder = session.get(Message, reminder.id)
    assert (reminder.state, reminder.skip_reason) == ("skipped", "unsubscribed")
    assert _counters(session, reminder_block.id) == {"skipped:unsubscribed": 1}
    assert session.get(Message, message.id).state == "sent"  # history is left alone

    # The footer link shows a page that says so; posting again changes nothing.
    page = client.get(url.removeprefix("http://okapp.test"))
    assert b"You are unsubscribed" in page.data
    assert client.post(url.removeprefix("http://okapp.test")).status_code == 200
    assert session.scalar(select(Suppression.id).where(Suppression.shop_id == order.shop_id))


def test_unsubscribe_link_is_for_one_shop_and_refuses_tampering(session, config, client, shop):
    links = tracking.Links(config.app_url, config.secret_key, shop.id, "x@y.example")
    path = links.unsubscribe().removeprefix("http://okapp.test")
    page = client.get(path)
    assert b"Unsubscribe from" in page.data  # a button, not an unsubscribe on GET
    assert session.scalar(select(Suppression.id)) is None
    assert client.post(path[:-3] + "abc", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert session.scalar(select(Suppression.id)) is None


def test_links_in_emails_already_sent_keep_working(session, config, client, shop):
    """Tokens are now made without itsdangerous's zlib attempt; the ones it made before (the
    compressed form included, for a long address) must still unsubscribe and open the review."""
    from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

    address = "a.very.long.address." * 4 + "@example.com"
    old = URLSafeSerializer(config.secret_key, salt="okapp-email-unsubscribe").dumps(
        {"s": shop.id, "a": address, "m": None, "l": "en"})
    assert old.startswith(".")  # the compressed form
    assert client.post(f"/e/u/{old}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert session.scalar(select(Suppression.address)) == address
    review = URLSafeTimedSerializer(config.secret_key, salt="okapp-review-link").dumps(
        {"s": shop.id, "o": 42})
    assert read_token(config.secret_key, review) == ReviewLink(shop_id=shop.id, order_id=42)
    new = tracking.Links(config.app_url, config.secret_key, shop.id, address).unsubscribe()
    assert not new.rsplit("/", 1)[1].startswith(".")  # made plain, read the same way


def test_merchant_fields_are_text_never_code(session, config, smtp_sink, order_message):
    message, order, _products = order_message
    template = EmailTemplate(shop_id=order.shop_id, kind="request", name="Request", fields={"en": {
        "subject": "Hi {{ customer.first_name }} <b>bold</b>",
        "heading": "<script>alert('x')</script>",
        "body": "{{ ''.__class__.__mro__ }} and <img src=x onerror=alert(1)>",
        "button_text": "{{ shop.name.__class__ }}",
    }})
    session.add(template)
    session.flush()
    message.email_template_id = template.id
    session.commit()
    config.smtp_url = smtp_sink.url
    deliver(config, render_message(session, message, config, NOW))
    [msg] = smtp_sink.messages()
    html = msg.get_body(("html",)).get_content()
    assert msg["Subject"] == "Hi Jane <b>bold</b>"  # a header is text: nothing to execute
    assert "<script>" not in html and "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    # Jinja reaching for Python internals is shown as typed, not evaluated.
    assert "{{ &#39;&#39;.__class__.__mro__ }}" in html or "{{ ''.__class__.__mro__ }}" in html
    assert "&lt;class" not in html and "object" not in html.split("<body")[1].split("Boots")[0]
    assert "{{ shop.name.__class__ }}" in msg.get_body(("plain",)).get_content()


def test_customer_locale_then_shop_language(session, config, shop, order_message):
    message, order, _products = order_message
    order.customer_locale = "de-CH"
    session.commit()
    assert "Bestellung" in render_message(session, message, config, NOW).subject
    order.customer_locale = "pt-BR"
    shop.locale = "fr"
    session.commit()
    rendered = render_message(session, message, config, NOW)
    assert "Votre commande" in rendered.subject and "Se désabonner" in rendered.text


def test_order_with_nothing_left_to_review_is_not_rendered(session, config, order_message):
    message, order, _products = order_message
    for item in order.line_items:
        item.refunded_quantity = item.quantity
    session.commit()
    with pytest.raises(NothingToReview):
        render_message(session, message, config, NOW)


def test_delivery_errors_are_transient_or_permanent(session, config, smtp_sink, order_message):
    message, order, _products = order_message
    rendered = render_message(session, message, config, NOW)
    config.smtp_url = smtp_sink.url
    smtp_sink.refuse[order.email] = "550 5.1.1 No such user"
    with pytest.raises(PermanentDeliveryError, match="550"):
        deliver(config, rendered)
    smtp_sink.refuse[order.email] = "451 4.7.1 Try again later"
    with pytest.raises(TransientDeliveryError, match="451"):
        deliver(config, rendered)
    del smtp_sink.refuse[order.email]
    deliver(config, rendered)  # the same kept-open connection still works
    assert smtp_sink.count == 1
    smtp_sink.stop()
    with pytest.raises(TransientDeliveryError):  # connection refused
        deliver(config, rendered)


def test_an_answer_lost_after_the_whole_message_went_out_is_never_resent(
        session, config, smtp_sink, order_message):
    """A timeout before the data is a plain retry; one after it may follow an accepted message
    (test_engine_tick: the send job then records it failed, outcome unknown)."""
    message, order, _products = order_message
    rendered = render_message(session, message, config, NOW)
    config.smtp_url = smtp_sink.url.replace("timeout=5", "timeout=0.5")
    smtp_sink.slow["RCPT"] = 1.5
    with pytest.raises(TransientDeliveryError) as before_data:
        deliver(config, rendered)
    assert not isinstance(before_data.value, DeliveryOutcomeUnknown) and smtp_sink.count == 0
    smtp_sink.slow.clear()
    smtp_sink.slow["DATA"] = 1.5
    with pytest.raises(DeliveryOutcomeUnknown, match="answer never came"):
        deliver(config, rendered)
    assert smtp_sink.count == 1  # the server had it


def test_outbox_and_dkim(session, config, tmp_path, order_message):
    message, _order, _products = order_message
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    config.dkim_private_key_path, config.dkim_selector, config.dkim_domain = (
        str(key_path), "okapp", "okapp.localhost")
    config.smtp_url = ""
    deliver(config, render_message(session, message, config, NOW))
    [eml] = list(config.outbox_path.glob("*.eml"))
    data = eml.read_bytes()
    assert data.startswith(b"DKIM-Signature:")
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name, timeout=5):  # the DNS TXT record a real domain would publish
        assert name == b"okapp._domainkey.okapp.localhost."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Boots", b"Boats"), dnsfunc=dns)


def test_html_stays_under_gmails_clipping_size(session, config, shop):
    shop.settings = {"max_products_per_email": 10}
    products = [make_product(session, shop, title=f"{i} " + "Very long product title " * 20,
                             price=Decimal(100 - i), image_url=f"https://cdn.example/{i}.jpg")
                for i in range(10)]
    order = make_order(session, shop, products=products)
    template = EmailTemplate(shop_id=shop.id, kind="request", name="Long", fields={"en": {
        "body": "\n\n".join(["A long paragraph of merchant text. " * 12] * 12)}})
    session.add(template)
    session.flush()
    enrollment = make_enrollment(session, make_sequence(session, shop), order)
    message = make_message(session, enrollment, email_template_id=template.id)
    session.commit()
    rendered = render_message(session, message, config, NOW)
    # The worst the settings allow (10 products with 500-character titles, a 5,000-character
    # message, 50 tracked star links) still fits; past it, the cheapest products would go first.
    assert len(rendered.html.encode()) < MAX_HTML_BYTES
    assert all(f"{i} Very long" in rendered.html for i in range(10))
    assert "Unsubscribe" in rendered.html


def test_footer_pages_speak_the_emails_language(session, config, client, order_message):
    message, order, _products = order_message
    order.customer_locale = "de"
    session.commit()
    rendered = render_message(session, message, config, NOW)
    unsubscribe = rendered.headers["List-Unsubscribe"].strip("<>").removeprefix("http://okapp.test")
    page = client.get(unsubscribe).get_data(as_text=True)
    assert '<html lang="de">' in page and "abmelden?" in page
    assert "Sie sind abgemeldet" in client.post(unsubscribe).get_data(as_text=True)
    [not_arrived] = [line.strip() for line in rendered.text.splitlines() if "/e/not-arrived/" in line]
    page = client.get(not_arrived.removeprefix("http://okapp.test")).get_data(as_text=True)
    assert "Ist Ihre Bestellung noch nicht angekommen?" in page


def test_a_connection_the_server_dropped_is_reopened_before_sending(
        session, config, smtp_sink, order_message, monkeypatch):
    message, _order, _products = order_message
    rendered = render_message(session, message, config, NOW)
    config.smtp_url = smtp_sink.url
    deliver(config, rendered)
    # The server goes away (an idle timeout, a restart) and comes back on the same port.
    smtp_sink.stop()
    again = SmtpSink(port=smtp_sink.port).start()
    try:
        monkeypatch.setattr(transport, "IDLE_CHECK_SECONDS", 0)
        deliver(config, rendered)  # NOOP finds the old connection dead; a new one is opened
        assert (smtp_sink.count, again.count) == (1, 1)
    finally:
        again.stop()


def test_media_request_asks_for_photos_of_what_was_reviewed(session, config, order_message):
    message, order, products = order_message
    message.kind = "media_request"
    session.add(Review(shop_id=order.shop_id, product_id=products["hat"].id, order_id=order.id,
                       email=order.email, rating=5, title="Lovely"))
    session.commit()
    rendered = render_message(session, message, config, NOW)
    assert "Thanks for your review" in rendered.subject
    assert "Hat" in rendered.html and "Boots" not in rendered.html
    assert "Add a photo or video" in rendered.html and "Rate 5 out of 5" not in rendered.html
    assert "/e/not-arrived/" not in rendered.html  # they have it: no "not arrived yet?"



@pytest.mark.parametrize("kind", ["request", "reminder", "second_reminder", "media_request"])
def test_the_compiled_layout_cache_gives_the_same_html_as_compiling_afresh(
        session, config, order_message, kind, monkeypatch):
    """Emails fill a layout compiled once per shape; whatever the texts hold (markup, quotes,
    ampersands, accents, line breaks, something shaped like a slot), the HTML is byte for byte
    what MJML gives for that email on its own."""
    from okapp.emails import render

    seen = []
    cached = render.layout_html
    monkeypatch.setattr(render, "_compiled", {})
    monkeypatch.setattr(render, "layout_html",
                        lambda kind, ctx: seen.append((kind, ctx, cached(kind, ctx))) or seen[-1][2])
    message, order, _products = order_message
    hostile = ["<b>\"Joe\" & 'Ann'</b>", "Zoë &amp; Ünïcode ✓", f"{render._SLOT}0z", "a\nb\n\nc",
               "</mj-text><mj-raw><script>x</script></mj-raw>", "https://x.example/?a=1&b=\"2\""]
    for i, value in enumerate(hostile):
        order.customer_first_name = value
        template = EmailTemplate(shop_id=order.shop_id, kind=kind, name=f"T{i}", fields={"en": {
            "heading": f"Hello {{{{ customer.first_name }}}} {value}",
            "body": f"First {value}\n\nSecond line\nthird {{{{ order.name }}}}",
            "button_text": value}}, logo_url="" if i % 2 else f"https://cdn.example/l.png?{i}&x")
        session.add(template)
        session.flush()
        message.email_template_id = template.id
        render_message(session, message, config, NOW)
        layout_kind, ctx, html = seen[-1]
        assert html == render.compile_layout(layout_kind, ctx), f"differs for {value!r}"
        assert "<script>x" not in html
    assert len(render._compiled) < len(seen)  # some emails did reuse a compiled layout
