"""Public routes inside emails: open pixel, click redirect, unsubscribe, "not arrived yet?".

No login: the signed token in the URL is the permission, and it says which shop, message or
enrollment it is for. Unknown or tampered tokens are refused; a click only ever redirects to the
URL that was signed into that email (okapp.emails.tracking).
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, redirect, render_template, request

from okapp.db import utcnow
from okapp.emails import copy, tracking
from okapp.emails.suppression import is_suppressed
from okapp.models import Enrollment, Shop
from okapp.views import db

bp = Blueprint("tracking", __name__, url_prefix="/e")

# The smallest transparent GIF: 1x1, 43 bytes.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _invalid_link():
    return _no_store(Response(render_template("emails/link_invalid.html"), status=404))


@bp.get("/o/<token>.gif")
def open_pixel(token: str):
    try:
        message_id = tracking.read_open(_secret(), token)
    except tracking.InvalidTrackingToken:
        message_id = None
    if message_id is not None:
        tracking.record_open(db(), message_id, utcnow())
        db().commit()
    # Always the image: a broken image in the customer's mail client helps no one.
    return _no_store(Response(PIXEL, mimetype="image/gif"))


@bp.get("/c/<token>")
def click(token: str):
    try:
        message_id, url = tracking.read_click(_secret(), token)
    except tracking.InvalidTrackingToken:
        return _invalid_link()
    tracking.record_click(db(), message_id, utcnow())
    db().commit()
    return _no_store(redirect(url, code=302))


def _read_unsubscribe(token: str) -> tuple[tracking.Unsubscribe, Shop] | None:
    try:
        link = tracking.read_unsubscribe(_secret(), token)
    except tracking.InvalidTrackingToken:
        return None
    shop = db().get(Shop, link.shop_id)
    return (link, shop) if shop is not None else None


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """The footer link: a page with one button. Unsubscribing on GET would let link scanners
    (corporate mail filters follow every link) unsubscribe people who never asked."""
    found = _read_unsubscribe(token)
    if found is None:
        return _invalid_link()
    link, shop = found
    done = is_suppressed(db(), shop.id, link.address)
    return _unsubscribe_page(link, shop, token, done)


def _unsubscribe_page(link: tracking.Unsubscribe, shop: Shop, token: str, done: bool):
    return _no_store(Response(render_template(
        "emails/unsubscribe.html", shop=shop, address=link.address, done=done, token=token,
        locale=_locale(link.locale), t=copy.PUBLIC_PAGES[_locale(link.locale)])))


def _locale(value: str) -> str:
    return value if value in copy.SUPPORTED_LOCALES else "en"


@bp.post("/u/<token>")
def unsubscribe(token: str):
    """RFC 8058 one-click (`List-Unsubscribe=One-Click` posted by the mail client) and the
    page's button: both unsubscribe at once, with no login and no further confirmation."""
    found = _read_unsubscribe(token)
    if found is None:
        return _invalid_link()
    link, shop = found
    tracking.unsubscribe(db(), shop.id, link.address, utcnow())
    db().commit()
    if request.form.get("List-Unsubscribe") == "One-Click":
        return _no_store(Response("Unsubscribed\n", mimetype="text/plain"))
    return _unsubscribe_page(link, shop, token, done=True)


def _read_not_arrived(token: str) -> tuple[Enrollment, str] | None:
    """The enrollment and the email's language, or None for a bad or stale link."""
    try:
        link = tracking.read_not_arrived(_secret(), token)
    except tracking.InvalidTrackingToken:
        return None
    enrollment = db().get(Enrollment, link.enrollment_id)
    if enrollment is None or enrollment.shop_id != link.shop_id:
        return None
    return enrollment, _locale(link.locale)


def _not_arrived_page(enrollment: Enrollment, locale: str, token: str, done: bool):
    shop = db().get(Shop, enrollment.shop_id)
    return _no_store(Response(render_template(
        "emails/not_arrived.html", shop=shop, token=token, done=done, locale=locale,
        t=copy.PUBLIC_PAGES[locale], days=shop.setting("not_arrived_delay_days"))))


@bp.get("/not-arrived/<token>")
def not_arrived_page(token: str):
    """Like unsubscribe: a page with one button, so a link scanner cannot postpone anything."""
    found = _read_not_arrived(token)
    if found is None:
        return _invalid_link()
    return _not_arrived_page(*found, token, done=False)


@bp.post("/not-arrived/<token>")
def not_arrived(token: str):
    from okapp.sequences.enrollments import not_arrived_yet

    found = _read_not_arrived(token)
    if found is None:
        return _invalid_link()
    not_arrived_yet(db(), found[0], utcnow())
    db().commit()
    return _not_arrived_page(*found, token, done=True)
