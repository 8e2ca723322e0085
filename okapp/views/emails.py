"""The email editor: the shop's emails, one editor page each with a live preview and Send Test,
and the Preview / Send Test tools of the SEND block modal."""

from __future__ import annotations

import re
import time
from email import message_from_bytes
from email import policy as email_policy
from email.parser import BytesHeaderParser
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, g, redirect, request, url_for
from sqlalchemy import func, select

from okapp.db import utcnow
from okapp.emails import copy, editor, sandbox, settings
from okapp.emails.render import MAX_HTML_BYTES, render_sample, sample_products
from okapp.emails.transport import DeliveryError, TransportConfigError, deliver
from okapp.models import EmailTemplate, Message, MessageState, Product
from okapp.reviews import ratelimit
from okapp.sequences.templates import ensure_default_emails
from okapp.views import db, is_htmx, render, runtime, with_toast
from okapp.views.auth import merchant_required

bp = Blueprint("emails", __name__, url_prefix="/emails")

# Send Test mails whatever address the merchant types: keep it from becoming a spam cannon.
SEND_TEST_LIMIT = ratelimit.Limit("send-test", max_hits=10, window_seconds=3600)
LOCALE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español"}


def _template_or_404(template_id: int) -> EmailTemplate:
    template = db().scalar(select(EmailTemplate).where(
        EmailTemplate.id == template_id, EmailTemplate.shop_id == g.shop.id))
    if template is None:
        abort(404)
    return template


@bp.get("")
@merchant_required
def index():
    templates = ensure_default_emails(db(), g.shop)
    db().commit()
    emails = sorted(templates.values(), key=lambda t: t.id)
    extra = db().scalars(select(EmailTemplate).where(
        EmailTemplate.shop_id == g.shop.id,
        EmailTemplate.id.not_in([t.id for t in emails])).order_by(EmailTemplate.id)).all()
    emails += list(extra)
    stats = {row.email_template_id: row for row in db().execute(
        select(Message.email_template_id,
               func.count().label("sent"),
               func.count(Message.first_opened_at).label("opened"),
               func.count(Message.first_clicked_at).label("clicked"))
        .where(Message.shop_id == g.shop.id, Message.state == MessageState.SENT.value)
        .group_by(Message.email_template_id))}
    config = current_app.config["OKAPP"]
    return render("emails/index.html", emails=emails, stats=stats,
                  has_outbox=not (config.is_production or config.smtp_url))


def _editor_context(template: EmailTemplate, values: dict, errors: dict | None = None) -> dict:
    return {
        "template": template, "form": values, "errors": errors or {},
        "locales": LOCALE_NAMES, "variables": sandbox.allowed_names(),
        "shop_defaults": {"brand_color": g.shop.setting("brand_color"),
                          "logo_url": g.shop.setting("logo_url")},
        "test_to": request.form.get("test_to", g.shop.email),
        "sample": request.form.get("sample", ""),
    }


@bp.get("/<int:template_id>")
@merchant_required
def edit(template_id: int):
    template = _template_or_404(template_id)
    locale = request.args.get("locale", "")
    if locale not in copy.SUPPORTED_LOCALES:
        locale = copy.pick_locale("", g.shop.locale)
    return render("emails/edit.html", "emails/_form.html",
                  **_editor_context(template, editor.form_values(template, locale)))


@bp.post("/<int:template_id>")
@merchant_required
def save(template_id: int):
    template = _template_or_404(template_id)
    values = editor.read_form(request.form)
    errors = editor.validate(values)
    if errors:
        # Everything typed comes back as typed, with what to fix beside each field.
        return render("emails/edit.html", "emails/_form.html",
                      **_editor_context(template, values, errors)), 422
    editor.save(template, values)
    db().commit()
    if not is_htmx():
        return redirect(url_for("emails.edit", template_id=template.id, locale=values["locale"]),
                        303)
    return with_toast(render("emails/edit.html", "emails/_form.html",
                         **_editor_context(template, values)), "Email saved")


def _sample(shop, raw: str, shuffle: bool) -> list[Product]:
    """The preview's catalogue products: the ones already on screen, so typing does not reshuffle
    them, or a fresh random pick."""
    count = int(shop.setting("max_products_per_email"))
    if not shuffle and raw:
        ids = [int(x) for x in raw.split(",") if x.isdigit()][:count]
        by_id = {p.id: p for p in db().scalars(
            select(Product).where(Product.shop_id == shop.id, Product.id.in_(ids)))}
        chosen = [by_id[i] for i in ids if i in by_id]
        if chosen:
            return chosen
    return sample_products(db(), shop, count)


def _render_preview(template: EmailTemplate, values: dict, recipient: str, products=None):
    return render_sample(
        db(), g.shop, template.kind, {k: values[k] for k in copy.FIELD_NAMES},
        current_app.config["OKAPP"], utcnow(), recipient=recipient, locale=values["locale"],
        brand_color=values["brand_color"], logo_url=values["logo_url"], products=products)


@bp.post("/<int:template_id>/preview")
@merchant_required
def preview(template_id: int):
    """The live preview, re-rendered from the unsaved form as the merchant types."""
    template = _template_or_404(template_id)
    values = editor.read_form(request.form)
    products = _sample(g.shop, request.form.get("sample", ""), bool(request.form.get("shuffle")))
    rendered = _render_preview(template, values, g.shop.email or "customer@example.com", products)
    return render("emails/_preview.html", "emails/_preview.html", rendered=rendered,
                  errors=editor.validate(values, for_save=False), products=products,
                  too_big=len(rendered.html.encode()) > MAX_HTML_BYTES, oob_sample=True)


def _send_test(template: EmailTemplate, values: dict) -> Response:
    recipient = (request.form.get("test_to") or g.shop.email or "").strip()
    if not settings.is_address(recipient):
        return _test_result("Enter one email address to send the test to.", ok=False)
    errors = editor.validate(values, for_save=False)
    if errors:
        return _test_result("Fix the highlighted fields first: " + "; ".join(errors.values()),
                            ok=False)
    wait = ratelimit.hit(runtime().redis, SEND_TEST_LIMIT, str(g.shop.id), time.time())
    if wait:
        return _test_result(f"That's {SEND_TEST_LIMIT.max_hits} test emails this hour; try "
                            f"again in {max(1, wait // 60)} minutes.", ok=False)
    # The products on screen in the editor's preview, so the test shows what the merchant saw.
    products = _sample(g.shop, request.form.get("sample", ""), shuffle=False)
    rendered = _render_preview(template, values, recipient, products)
    rendered.headers["Subject"] = rendered.subject = "[Test] " + rendered.subject
    try:
        deliver(current_app.config["OKAPP"], rendered)
    except (DeliveryError, TransportConfigError) as exc:
        current_app.logger.warning("send test for shop %s failed: %s", g.shop.id, exc)
        return _test_result("The test could not be sent; the mail server said: "
                            f"{exc}", ok=False)
    return _test_result(f"Test sent to {recipient}.", ok=True)


def _test_result(message: str, ok: bool) -> Response:
    body = render("emails/_test_result.html", "emails/_test_result.html", message=message, ok=ok)
    return with_toast(body, message if ok else "Test not sent", 200 if ok else 422)


@bp.post("/<int:template_id>/test")
@merchant_required
def send_test(template_id: int):
    template = _template_or_404(template_id)
    return _send_test(template, editor.read_form(request.form))


# -- the SEND block modal's tools: the saved email, in the shop's language ----------------------

def _chosen_template() -> EmailTemplate:
    raw = request.values.get("email_template_id", "")
    if not raw.isdigit():
        abort(404)
    return _template_or_404(int(raw))


@bp.get("/tools/preview")
@merchant_required
def tool_preview():
    template = _chosen_template()
    values = editor.form_values(template, copy.pick_locale("", g.shop.locale))
    rendered = _render_preview(template, values, g.shop.email or "customer@example.com")
    return render("emails/_preview.html", "emails/_preview.html", rendered=rendered, errors={},
                  products=[], too_big=False, oob_sample=False, compact=True, template=template)


@bp.post("/tools/test")
@merchant_required
def tool_test():
    template = _chosen_template()
    return _send_test(template, editor.form_values(template, copy.pick_locale("", g.shop.locale)))


# -- the development outbox: with no SMTP_URL, every email is a file; this page shows them ------

_OUTBOX_NAME = re.compile(r"^\d+-[0-9a-f]{8}\.eml$")


def _outbox() -> Path:
    config = current_app.config["OKAPP"]
    if config.is_production or config.smtp_url:
        abort(404)
    return Path(config.outbox_path)


@bp.get("/outbox")
@merchant_required
def outbox():
    folder = _outbox()
    names = sorted((p.name for p in folder.glob("*.eml") if _OUTBOX_NAME.match(p.name)),
                   reverse=True)[:200] if folder.is_dir() else []
    mails = []
    for name in names:
        with open(folder / name, "rb") as fh:
            headers = BytesHeaderParser(policy=email_policy.default).parse(fh)
        mails.append({"name": name, "to": headers["To"], "subject": headers["Subject"],
                      "date": headers["Date"]})
    return render("emails/outbox.html", mails=mails, folder=folder)


@bp.get("/outbox/<name>")
@merchant_required
def outbox_message(name: str):
    if not _OUTBOX_NAME.match(name):
        abort(404)
    path = _outbox() / name
    if not path.is_file():
        abort(404)
    msg = message_from_bytes(path.read_bytes(), policy=email_policy.default)
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    return render("emails/outbox_message.html", msg=msg, name=name,
                  html=html_part.get_content() if html_part else "",
                  text=text_part.get_content() if text_part else "")
