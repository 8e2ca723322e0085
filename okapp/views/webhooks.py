"""The webhook endpoint: verify, store once, enqueue, answer — in milliseconds.

Shopify signs the raw body; `shopify_app.verify_webhook_req` checks that HMAC (constant-time,
old secret too during rotation) before anything else is looked at. A bad or missing signature is
answered 401 and nothing is stored. Every path `shopify.app.toml` declares lands here; the topic
comes from the signed delivery's headers.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from okapp.db import utcnow
from okapp.shopify import api
from okapp.shopify.tokens import parse_iso
from okapp.shopify.webhooks import store_event
from okapp.views import db, runtime

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks")
@bp.post("/webhooks/<path:_subscription>")
def receive(_subscription: str = ""):
    raw = request.get_data(cache=False)
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Response("Unauthorized", status=401)
    verified = api.shopify_app(current_app.config["OKAPP"]).verify_webhook_req(
        {"method": request.method, "headers": dict(request.headers), "url": request.url,
         "body": body})
    if not verified.ok:
        # A missing signature is as untrusted as a wrong one (App Store rule: 401).
        status = 401 if verified.response.status in (400, 401) else verified.response.status
        return Response("Unauthorized" if status == 401 else verified.response.body, status=status)
    headers = request.headers
    topic = headers.get("X-Shopify-Topic", "")
    webhook_id = headers.get("X-Shopify-Webhook-Id") or headers.get("X-Shopify-Event-Id")
    shop_domain = api.valid_shop_domain(headers.get("X-Shopify-Shop-Domain"))
    if not topic or not webhook_id or shop_domain is None:
        return Response("Missing webhook headers", status=400)
    session = db()
    try:
        triggered_at = parse_iso(headers.get("X-Shopify-Triggered-At"))
    except ValueError:
        triggered_at = None
    event_id = store_event(
        session, webhook_id=webhook_id[:128], event_id=headers.get("X-Shopify-Event-Id", "")[:128],
        shop_domain=shop_domain, topic=topic[:64],
        api_version=headers.get("X-Shopify-API-Version", "")[:16], triggered_at=triggered_at,
        payload=body, received_at=utcnow(),
    )
    session.commit()
    if event_id is not None:
        from okapp.jobs.webhooks import enqueue

        enqueue(runtime(), event_id)
    return Response(status=200)
