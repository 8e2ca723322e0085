"""The review page customers reach from their emails (`/r/<token>`, no login), the media files it
stores (`/media/...`), and the merchant's Reviews page with moderation (`/reviews`)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.security import safe_join

from okapp.db import utcnow
from okapp.models import Order, ReviewMedia, Shop
from okapp.reviews import moderation, ratelimit
from okapp.reviews.media import MediaLimits
from okapp.reviews.submissions import (
    Answer,
    Upload,
    default_display_name,
    field_name,
    page_items,
    submit,
)
from okapp.reviews.tokens import InvalidReviewToken, read_token
from okapp.views import db, is_htmx, render, runtime
from okapp.views.auth import merchant_required

bp = Blueprint("reviews", __name__)

# The customer page loads only its own CSS, JS and the product images; customer text can never
# run as script even if something escaped the template's escaping.
PAGE_CSP = ("default-src 'self'; img-src 'self' https: http: blob:; media-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
UNAVAILABLE = {
    "invalid": "This review link is not valid. Please use the link in your email exactly as it is.",
    "expired": "This review link has expired.",
    "gone": "This order can no longer be reviewed.",
}


def _config():
    return current_app.config["OKAPP"]


def _secure(response, status: int | None = None):
    if status is not None:
        response.status_code = status
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response.headers["Cache-Control"] = "no-store"
    return response


def _unavailable(reason: str, status: int):
    """Stop here with a friendly page that shows nothing of any shop or order."""
    page = render("reviews/unavailable.html", message=UNAVAILABLE[reason])
    abort(_secure(current_app.make_response(page), status))


def _resolve(token: str) -> tuple[Shop, Order]:
    """The shop and order a link names; anything else ends the request (`_unavailable`)."""
    try:
        link = read_token(_config().secret_key, token)
    except InvalidReviewToken as exc:
        _unavailable("expired" if exc.expired else "invalid", 410 if exc.expired else 404)
    order = db().scalar(select(Order).where(Order.id == link.order_id,
                                            Order.shop_id == link.shop_id))
    shop = db().get(Shop, link.shop_id) if order is not None else None
    if order is None or shop is None or not shop.is_installed:
        _unavailable("gone", 404)
    return shop, order


def _form_page(token: str, shop: Shop, order: Order, status: int = 200, errors=None,
               values=None, saved: bool = False):
    items = page_items(db(), shop, order)
    values = values or {}
    if not values:
        # A star clicked in the email: that product first, with that rating chosen.
        wanted, rating = request.args.get("product", ""), request.args.get("rating", "")
        for item in items:
            if str(item.product.id) == wanted and rating in ("1", "2", "3", "4", "5"):
                values[field_name("rating", item.product.id)] = rating
                items.sort(key=lambda i: i is not item)
    page = render(
        "reviews/page.html", shop=shop, order=order, items=items, errors=errors or {},
        values=values, saved=saved, token=token, field_name=field_name,
        display_name=values.get("name", next(
            (i.review.reviewer_name for i in items if i.review), default_display_name(order))),
        limits=MediaLimits.from_config(_config()), lang=(order.customer_locale or "en")[:2],
        brand_color=_brand_color(shop),
    )
    return _secure(current_app.make_response(page), status)


def _brand_color(shop: Shop) -> str:
    color = shop.setting("brand_color") or ""
    return color if re.fullmatch(r"#[0-9a-fA-F]{3,8}", color) else ""


@bp.get("/r/<token>")
def page(token: str):
    shop, order = _resolve(token)
    return _form_page(token, shop, order, saved=request.args.get("saved") == "1")


@bp.post("/r/<token>")
def save(token: str):
    shop, order = _resolve(token)
    wait = ratelimit.check_all(runtime().redis, [
        (ratelimit.PER_LINK, token), (ratelimit.PER_ADDRESS, request.remote_addr or "")],
        time.time())
    if wait:
        response = _form_page(token, shop, order, 429, errors={
            "form": f"Too many submissions from here. Please try again in {wait // 60 + 1} "
                    "minutes."})
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        return _form_page(token, shop, order, 413, errors={
            "form": "Those files are too large to send together. Nothing was saved; please "
                    "send fewer or smaller files at a time."})
    answers = []
    for item in page_items(db(), shop, order):
        pid = item.product.id
        answers.append(Answer(
            product_id=pid, rating=form.get(field_name("rating", pid), ""),
            title=form.get(field_name("title", pid), ""),
            body=form.get(field_name("body", pid), ""),
            uploads=[Upload(f.filename or "", f.stream)
                     for f in files.getlist(field_name("media", pid)) if f.filename]))
    config = _config()
    result = submit(db(), shop, order, answers, form.get("name", ""), config.media_root,
                    MediaLimits.from_config(config), utcnow())
    if not result.ok:
        if any(a.uploads for a in answers) and not any(k.startswith("media-")
                                                       for k in result.errors):
            result.errors["files"] = "Please choose your photos and videos again."
        return _form_page(token, shop, order, 422, errors=result.errors,
                          values=form.to_dict())
    return redirect(url_for("reviews.page", token=token, saved=1), 303)


@bp.get("/media/<path:name>")
def media(name: str):
    """A stored photo or video, served as the type we stored and nothing else."""
    row = db().scalar(select(ReviewMedia).where(ReviewMedia.path == name))
    root = Path(_config().media_root)
    full = safe_join(str(root), row.path) if row is not None else None
    if full is None or not Path(full).is_file():
        abort(404)
    response = send_file(full, mimetype=row.content_type, conditional=True, max_age=86400,
                         download_name=Path(row.path).name, as_attachment=False)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline"
    return response


@bp.get("/reviews")
@merchant_required
def index():
    f = moderation.ReviewFilter.from_args(request.args)
    listing = moderation.list_reviews(db(), g.shop.id, f)
    return render("reviews/index.html", "reviews/_list.html", listing=listing, f=f,
                  counts=moderation.counts(db(), g.shop.id))


@bp.post("/reviews/<int:review_id>/status")
@merchant_required
def set_status(review_id: int):
    status = request.form.get("status", "")
    if status not in moderation.STATUSES:
        abort(400, "Status must be pending, published or rejected.")
    review = moderation.set_status(db(), g.shop.id, review_id, status)
    if review is None:
        abort(404)
    if not is_htmx():
        back = request.form.get("next", "")
        safe = back.startswith("/reviews") and "//" not in back and "\\" not in back
        return redirect(back if safe else url_for("reviews.index"), 303)
    order_names = dict(db().execute(select(Order.id, Order.name).where(
        Order.shop_id == g.shop.id, Order.id == review.order_id)).all())
    return render_template("reviews/_moderated.html", review=review, order_names=order_names,
                           counts=moderation.counts(db(), g.shop.id))
