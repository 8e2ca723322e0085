"""Authenticating merchant requests with Shopify ID (session) tokens.

Document loads carry `id_token` in the query (with the bounce page when it is missing or stale);
htmx requests carry `Authorization: Bearer` from `await shopify.idToken()` and are answered 401 with
`X-Shopify-Retry-Invalid-Session-Request: 1` when the token is stale, so the page's JS retries once
with a fresh one. `shopify_app.verify_app_home_req` does the JWT checks (HS256 with the client
secret, expiry with 10 s leeway, audience = our client id).

The first verified request of a shop that has no usable token installs it (managed installation:
token exchange of the same ID token for an expiring offline token), so reopening the app also
heals a shop whose refresh token died.
"""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Response, abort, current_app, g, request
from sqlalchemy import select

from okapp.db import utcnow
from okapp.models import Shop
from okapp.shopify import api, tokens

BOUNCE_PATH = "/auth/session-token"
RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"


def request_input() -> dict:
    """The request as `shopify_app` verifiers take it."""
    return {"method": request.method, "headers": dict(request.headers), "url": request.url,
            "body": ""}


def _to_flask(res) -> Response:
    response = Response(res.body or "", status=res.status)
    for name, value in (res.headers or {}).items():
        response.headers[name] = value
    return response


def _refuse(res) -> None:
    """Stop the request with Shopify's prescribed answer (302 to the bounce page, or 401)."""
    abort(_to_flask(res))


def _runtime():
    return current_app.extensions["okapp"]


def shop_from_request() -> Shop | None:
    """The shop of a verified ID token on this request, or None when there is no token at all.

    A token that is present but invalid ends the request here (it never falls back to another
    way of signing in).
    """
    has_bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    if not has_bearer and not request.args.get("id_token"):
        return None
    config = current_app.config["OKAPP"]
    result = api.shopify_app(config).verify_app_home_req(request_input(), BOUNCE_PATH)
    if not result.ok:
        _refuse(result.response)
    claims = result.id_token.claims
    domain = api.valid_shop_domain(urlparse(claims.get("dest", "")).hostname)
    issuer = urlparse(claims.get("iss", "")).hostname
    named = request.args.get("shop")
    if domain is None or issuer != domain or (named and api.valid_shop_domain(named) != domain):
        _refuse(result.invalid_token_response)
    g.embedded = True


    from okapp.views import db

    shop = db().scalar(select(Shop).where(Shop.domain == domain))
    if shop is None or not shop.is_installed or shop.needs_reauth or not shop.access_token:
        shop = _install(domain, result)
    return shop


def _install(domain: str, verified) -> Shop:
    """Managed installation: exchange the verified ID token for the shop's offline token."""
    from okapp.shopify import sync
    from okapp.views import db

    runtime = _runtime()
    try:
        token = tokens.exchange_id_token(runtime, verified.id_token)
    except tokens.ShopifyError as exc:
        current_app.logger.warning("token exchange for %s failed: %s", domain, exc.code)
        if exc.code == "invalid_subject_token":
            _refuse(verified.invalid_token_response)  # App Bridge fetches a fresh ID token
        # Shopify unreachable or refusing us: say so, rather than bounce for ever.
        abort(Response("okapp could not reach Shopify to finish signing you in. Please try "
                       "again in a minute.", status=503, mimetype="text/plain",
                       headers={"Retry-After": "30"}))
    session = db()
    shop = tokens.install(session, domain, token, utcnow())
    session.commit()
    try:
        sync.fetch_shop_details(runtime, shop.id)
    except tokens.ShopifyError as exc:  # details can be read later; the install stands
        current_app.logger.warning("could not read details of %s: %s", domain, exc)
    from okapp.jobs.sync import enqueue_initial_import

    enqueue_initial_import(runtime, shop.id)
    session.refresh(shop)
    return shop


def unauthenticated_response():
    """No ID token and no development login: bounce an embedded load, else explain."""
    if request.headers.get("HX-Request") or request.headers.get("Authorization"):
        return Response("Your session has ended; reload the app.", status=401,
                        headers={RETRY_HEADER: "1"})
    if request.args.get("embedded") == "1" and api.valid_shop_domain(request.args.get("shop")):
        config = current_app.config["OKAPP"]
        result = api.shopify_app(config).verify_app_home_req(request_input(), BOUNCE_PATH)
        return _to_flask(result.response)
    shop = api.valid_shop_domain(request.args.get("shop"))
    if shop:  # opened outside the admin, e.g. from the install link: authorize, then go in
        from flask import redirect, url_for

        return redirect(url_for("shopify_auth.install", shop=shop))
    return Response(
        "Open okapp from your Shopify admin (Apps → okapp) to sign in.",
        status=401,
        mimetype="text/plain",
    )


def frame_ancestors() -> str:
    """CSP for this response: the shop's admin may frame us; nobody else may."""
    shop = getattr(g, "shop", None)
    domain = shop.domain if shop is not None else api.valid_shop_domain(request.args.get("shop"))
    if domain:
        return f"frame-ancestors https://{domain} https://admin.shopify.com;"
    return "frame-ancestors 'none';"


def add_csp(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", frame_ancestors())
    return response
