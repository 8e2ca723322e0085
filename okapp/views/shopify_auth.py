"""Installing okapp and the ID-token bounce page.

The main path is Shopify's managed installation: the admin opens the app with an `id_token`, and
`okapp.shopify.session_auth` exchanges it for an offline token. This module serves the bounce page
App Bridge uses to fetch a fresh ID token, and the authorization-code flow kept as the fallback
(shop validated against `*.myshopify.com`, single-use state nonce, callback HMAC and timestamp
verified by ShopifyAPI before the code is exchanged).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import shopify
from flask import Blueprint, Response, abort, current_app, redirect, request, url_for

from okapp.db import utcnow
from okapp.shopify import api, session_auth, tokens
from okapp.views import db, runtime

bp = Blueprint("shopify_auth", __name__)

STATE_TTL = 600  # seconds a merchant has to approve the install


def _config():
    return current_app.config["OKAPP"]


def _signer() -> type[shopify.Session]:
    """ShopifyAPI's query-HMAC checks, keyed with our client secret."""
    config = _config()
    shopify.Session.setup(api_key=config.shopify_api_key, secret=config.shopify_api_secret)
    return shopify.Session


@bp.get(session_auth.BOUNCE_PATH)
def session_token():
    """Only App Bridge: it fetches a fresh ID token and reloads `shopify-reload` with it."""
    result = api.shopify_app(_config()).app_home_patch_id_token(session_auth.request_input())
    response = Response(result.response.body, status=result.response.status,
                        mimetype="text/html")
    for name, value in (result.response.headers or {}).items():
        response.headers[name] = value
    return response


@bp.get("/auth/install")
def install():
    """Start the authorization-code flow: redirect the merchant to Shopify's consent screen."""
    domain = api.valid_shop_domain(request.args.get("shop"))
    if domain is None:
        abort(400, "shop must be a *.myshopify.com domain")
    if "hmac" in request.args and not _signer().validate_params(request.args.to_dict()):
        abort(400, "The install link's signature is not valid.")
    state = secrets.token_urlsafe(24)
    runtime().redis.set(f"okapp:oauth-state:{state}", domain, ex=STATE_TTL)
    permission = _signer()(domain, _config().shopify_api_version).create_permission_url(
        _config().shopify_scopes.split(","), url_for("shopify_auth.callback", _external=True),
        state=state,
    )
    return redirect(api.admin_url(_config(), domain, "/admin/oauth/authorize?")
                    + urlsplit(permission).query)


@bp.get("/auth/callback")
def callback():
    """Shopify sends the merchant back with a code: verify everything, then exchange it."""
    params = request.args.to_dict()
    domain = api.valid_shop_domain(params.get("shop"))
    if domain is None:
        abort(400, "shop must be a *.myshopify.com domain")
    if not _signer().validate_params(params):
        abort(400, "The callback's signature is not valid or it is too old.")
    expected = runtime().redis.getdel(f"okapp:oauth-state:{params.get('state', '')}")
    if expected is None or expected.decode() != domain:
        abort(400, "This install link has expired or was already used; start again from Shopify.")
    token = _exchange_code(domain, params.get("code", ""))
    shop = tokens.install(db(), domain, token, utcnow())
    db().commit()
    from okapp.jobs.sync import enqueue_initial_import
    from okapp.shopify import sync

    try:
        sync.fetch_shop_details(runtime(), shop.id)
    except tokens.ShopifyError as exc:
        current_app.logger.warning("could not read details of %s: %s", domain, exc)
    enqueue_initial_import(runtime(), shop.id)
    # Into the app inside the shop's admin, where managed auth takes over.
    return redirect(api.admin_url(_config(), domain,
                                  f"/admin/apps/{_config().shopify_api_key}"))


def _exchange_code(domain: str, code: str):
    from shopify_app import TokenExchangeAccessToken

    config = _config()
    response = api.http_client(config).post(
        f"https://{domain}/admin/oauth/access_token",
        json={"client_id": config.shopify_api_key, "client_secret": config.shopify_api_secret,
              "code": code, "expiring": "1"},
        headers={"Accept": "application/json"},
    )
    if response.status_code != 200:
        abort(400, "Shopify refused the authorization code; start the install again.")
    data = response.json()
    now = utcnow()

    def later(seconds):
        return (now + timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%SZ") if seconds else None

    return TokenExchangeAccessToken(
        shop=api.subdomain(domain), token=data["access_token"],
        expires=later(data.get("expires_in")), scope=data.get("scope", ""),
        access_mode="offline", refresh_token=data.get("refresh_token"),
        refresh_token_expires=later(data.get("refresh_token_expires_in")), user=None,
    )


@bp.after_app_request
def content_security_policy(response):
    """Every response says who may frame it: the shop's admin, or nobody."""
    return session_auth.add_csp(response)
