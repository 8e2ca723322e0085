"""The email editor: sandboxed fields refused or shown as text, preview from the catalogue,
Send Test to a real SMTP server with a rate limit, and the SEND block modal's tools."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from markupsafe import escape
from sqlalchemy import select

from okapp.emails import sandbox
from okapp.emails.transport import close_connections
from okapp.models import EmailTemplate
from okapp.sequences.templates import ensure_default_emails
from tests.factories import make_product, make_shop
from tests.smtp_sink import smtp_sink_fixture  # noqa: F401

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _fresh_connections():
    yield
    close_connections()


@pytest.fixture
def request_email(session, shop):
    email = ensure_default_emails(session, shop)
    session.commit()
    return next(e for e in email.values() if e.kind == "request")


def _form(**overrides) -> dict:
    form = {"locale": "en", "name": "Review request", "subject": "How was {{ order.name }}?",
            "preheader": "One click", "heading": "Hello", "body": "Hi {{ customer.first_name }}",
            "button_text": "Review", "brand_color": "", "logo_url": ""}
    form.update(overrides)
    return form


def test_sandbox_allows_only_the_listed_variables():
    sandbox.check("Hi {% if customer.first_name %}{{ customer.first_name|title }}{% endif %}")
    for bad, why in [
        ("{{ ''.__class__ }}", "'.__class__' is not allowed"),
        ("{{ customer.first_name.__class__ }}", "'.__class__' is not allowed"),
        ("{{ customer.email }}", "unknown variable 'customer.email'"),
        ("{{ config }}", "unknown variable 'config'"),
        ("{{ shop.name|attr('__class__') }}", "not allowed"),
        ("{% for x in shop %}{% endfor %}", "not allowed"),
        ("{{ range(10) }}", "not allowed"),
        ("{{ customer.first_name", "line 1"),
    ]:
        with pytest.raises(sandbox.FieldError, match=re.escape(why)):
            sandbox.check(bad)
    # Rendering never executes a refused field: it comes back exactly as typed.
    assert sandbox.render_field("{{ ''.__class__ }}", sandbox.Variables()) == "{{ ''.__class__ }}"


def test_index_lists_the_four_emails(merchant, shop):
    page = merchant.get("/emails")
    assert page.status_code == 200
    for name in ("Review request", "Reminder", "Second reminder", "Photo and video request"):
        assert name.encode() in page.data


def test_editor_shows_built_in_copy_per_language(merchant, request_email):
    page = merchant.get(f"/emails/{request_email.id}?locale=de").get_data(as_text=True)
    assert "Bewertung schreiben" in page
    page = merchant.get(f"/emails/{request_email.id}").get_data(as_text=True)
    assert "Write a review" in page and "{{ customer.first_name }}" in html.unescape(page)


def test_save_refuses_jinja_that_reaches_for_python_and_keeps_the_input(
        merchant, session, request_email):
    typed = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    response = merchant.post(f"/emails/{request_email.id}", data=_form(body=typed), headers=HX)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "is not allowed here" in text
    assert str(escape(typed)) in text  # the merchant's text comes back as typed, escaped
    unknown = merchant.post(f"/emails/{request_email.id}",
                            data=_form(subject="Hi {{ customer.email }}"), headers=HX)
    assert unknown.status_code == 422 and "unknown variable &#39;customer.email&#39;" in \
        unknown.get_data(as_text=True)
    session.expire_all()
    assert session.get(EmailTemplate, request_email.id).fields == {}


def test_save_stores_changed_fields_per_locale(merchant, session, request_email):
    response = merchant.post(f"/emails/{request_email.id}", headers=HX, data=_form(
        locale="fr", subject="Votre avis sur {{ order.name }} ?", heading="<b>Merci</b>",
        body="Bonjour", button_text="Donner mon avis", brand_color="#ff0000"))
    assert response.status_code == 200 and "toast" in response.headers["HX-Trigger"]
    session.expire_all()
    saved = session.get(EmailTemplate, request_email.id)
    # "Donner mon avis" is the built-in French button: not stored, so it follows future copy.
    assert saved.fields == {"fr": {"subject": "Votre avis sur {{ order.name }} ?",
                                   "preheader": "One click", "heading": "<b>Merci</b>",
                                   "body": "Bonjour"}}
    assert saved.brand_color == "#ff0000"
    bad = merchant.post(f"/emails/{request_email.id}", headers=HX,
                        data=_form(brand_color="red;background:url(x)", logo_url="javascript:x"))
    assert bad.status_code == 422 and b"hex colour" in bad.data and b"https://" in bad.data


def test_preview_uses_catalogue_products_and_follows_the_fields(merchant, session, shop,
                                                                request_email):
    products = [make_product(session, shop, title=f"Catalogue item {i}", price=Decimal(i + 1))
                for i in range(8)]
    make_product(session, shop, title="Archived thing", status="ARCHIVED")
    other = make_shop(session)
    make_product(session, other, title="Another shop's product")
    session.commit()

    first = merchant.post(f"/emails/{request_email.id}/preview", headers=HX,
                          data=_form(heading="Tell us <script>alert(1)</script>"))
    text = first.get_data(as_text=True)
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', text).group(1))
    shown = [p.title for p in products if p.title in srcdoc]
    assert len(shown) == 5  # max_products_per_email, all from this shop's active catalogue
    assert "Archived thing" not in srcdoc and "Another shop" not in srcdoc
    assert "Tell us &lt;script&gt;alert(1)&lt;/script&gt;" in srcdoc and "<script>" not in srcdoc
    assert 'sandbox srcdoc' in text  # and the frame could not run a script anyway
    sample = re.search(r'id="sample" name="sample" value="([\d,]+)"', text).group(1)

    # Typing keeps the same products (no reshuffle on every keystroke) and shows the new text.
    second = merchant.post(f"/emails/{request_email.id}/preview", headers=HX,
                           data=_form(heading="Fresh heading", sample=sample))
    srcdoc2 = html.unescape(re.search(r'srcdoc="([^"]*)"', second.get_data(as_text=True)).group(1))
    assert "Fresh heading" in srcdoc2 and "Tell us" not in srcdoc2
    assert [p.title for p in products if p.title in srcdoc2] == shown
    # A field that would be refused on save is previewed as typed, with the reason beside it.
    third = merchant.post(f"/emails/{request_email.id}/preview", headers=HX,
                          data=_form(heading="{{ ''.__class__ }}", sample=sample))
    assert b"Shown as typed until fixed" in third.data
    assert "{{ &#39;&#39;.__class__ }}" in html.unescape(third.get_data(as_text=True))


def test_send_test_goes_to_the_smtp_server_and_is_rate_limited(
        merchant, session, shop, config, smtp_sink, request_email):
    config.smtp_url = smtp_sink.url
    make_product(session, shop, title="Catalogue boots", image_url="https://cdn.example/b.jpg")
    session.commit()
    response = merchant.post(f"/emails/{request_email.id}/test", headers=HX,
                             data=_form(subject="Trying {{ shop.name }}", test_to="me@merchant.example"))
    assert response.status_code == 200 and b"Test sent to me@merchant.example" in response.data
    [msg] = smtp_sink.messages()
    assert msg["To"] == "me@merchant.example"
    assert msg["Subject"] == f"[Test] Trying {shop.name}"
    assert msg.get_content_type() == "multipart/alternative"
    assert "https://cdn.example/b.jpg" in msg.get_body(("html",)).get_content()

    bad = merchant.post(f"/emails/{request_email.id}/test", headers=HX,
                        data=_form(test_to="a@b.example, c@d.example"))
    assert bad.status_code == 422 and b"Enter one email address" in bad.data
    for _ in range(9):
        assert merchant.post(f"/emails/{request_email.id}/test", headers=HX,
                             data=_form(test_to="me@merchant.example")).status_code == 200
    limited = merchant.post(f"/emails/{request_email.id}/test", headers=HX,
                            data=_form(test_to="me@merchant.example"))
    assert limited.status_code == 422 and b"10 test emails this hour" in limited.data
    assert smtp_sink.count == 10


def test_send_block_tools_preview_and_test(merchant, session, shop, config, smtp_sink,
                                           request_email):
    config.smtp_url = smtp_sink.url
    preview = merchant.get(f"/emails/tools/preview?email_template_id={request_email.id}",
                           headers=HX)
    assert preview.status_code == 200 and b"<iframe" in preview.data
    assert b"How did you like your order" in preview.data
    sent = merchant.post("/emails/tools/test", headers=HX,
                         data={"email_template_id": request_email.id, "test_to": "me@x.example"})
    assert sent.status_code == 200 and smtp_sink.count == 1


def test_another_shops_email_is_not_found(merchant, session, request_email):
    other = make_shop(session)
    theirs = ensure_default_emails(session, other)
    session.commit()
    their_id = next(iter(theirs.values())).id
    assert merchant.get(f"/emails/{their_id}").status_code == 404
    assert merchant.post(f"/emails/{their_id}", data=_form()).status_code == 404
    assert merchant.get(f"/emails/tools/preview?email_template_id={their_id}").status_code == 404
    assert session.scalar(select(EmailTemplate.name).where(EmailTemplate.id == their_id))


def test_development_outbox_shows_what_was_written(merchant, session, shop, config,
                                                   request_email):
    config.smtp_url = ""
    response = merchant.post(f"/emails/{request_email.id}/test", headers=HX,
                             data=_form(subject="Outbox check", test_to="me@merchant.example"))
    assert response.status_code == 200
    [eml] = list(config.outbox_path.glob("*.eml"))
    listing = merchant.get("/emails/outbox").get_data(as_text=True)
    assert "[Test] Outbox check" in listing and "me@merchant.example" in listing
    one = merchant.get(f"/emails/outbox/{eml.name}").get_data(as_text=True)
    assert "List-Unsubscribe-Post" in one and "<iframe" in one and "sandbox" in one
    assert merchant.get("/emails/outbox/..%2F..%2Fokapp.db").status_code == 404
    config.smtp_url = "smtp://127.0.0.1:1"
    assert merchant.get("/emails/outbox").status_code == 404  # only without SMTP
