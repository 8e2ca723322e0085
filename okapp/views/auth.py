"""Who the merchant is.

Inside the Shopify admin a merchant is identified by a Shopify ID token (see okapp.shopify). Outside
it, in development and in the demo only, a signed development login stands in; its blueprint is not
even registered when OKAPP_ENV=production.
"""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from okapp.models import Shop
from okapp.views import db

bp = Blueprint("auth", __name__)
dev_bp = Blueprint("dev", __name__, url_prefix="/dev")

DEV_LOGIN_PARAM = "dev_login"


def _dev_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="okapp-dev-login")


def dev_login_token(shop_domain: str) -> str:
    return _dev_serializer().dumps({"shop": shop_domain})


def dev_login_url(app_url: str, shop_domain: str, path: str = "/sequences") -> str:
    """A URL that logs into the shop in development and shows `path` straight away."""
    return f"{app_url}{path}?{DEV_LOGIN_PARAM}={dev_login_token(shop_domain)}"


def _dev_shop() -> Shop | None:
    if current_app.config["OKAPP"].is_production:
        return None
    token = request.args.get(DEV_LOGIN_PARAM)
    if token:
        try:
            domain = _dev_serializer().loads(token)["shop"]
        except (BadSignature, KeyError, TypeError):
            abort(403, "This development login link is not valid.")
        shop = db().scalar(select(Shop).where(Shop.domain == domain))
        if shop is None:
            abort(404, "No such shop.")
        session["dev_shop_id"] = shop.id
        return shop
    shop_id = session.get("dev_shop_id")
    return db().get(Shop, shop_id) if shop_id else None


def authenticate_merchant() -> Shop | None:
    """The shop the request speaks for, or None. Shopify ID tokens first, then dev login."""
    from okapp.shopify import session_auth

    shop = session_auth.shop_from_request()
    if shop is None:
        shop = _dev_shop()
    return shop


def merchant_required(view):
    """Every merchant route: resolves `g.shop`, so each query can be scoped to it."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        shop = authenticate_merchant()
        if shop is None:
            return session_auth_missing()
        g.shop = shop
        return view(*args, **kwargs)

    return wrapped


def session_auth_missing():
    from okapp.shopify import session_auth

    return session_auth.unauthenticated_response()


@dev_bp.get("/login")
def dev_login():
    """`/dev/login?shop=demo.myshopify.com`: the demo's way in without Shopify."""
    domain = request.args.get("shop", "")
    shop = db().scalar(select(Shop).where(Shop.domain == domain))
    if shop is None:
        abort(404, "No such shop; run `okapp demo` to create the demo shop.")
    session["dev_shop_id"] = shop.id
    return redirect(url_for("sequences.index"))
