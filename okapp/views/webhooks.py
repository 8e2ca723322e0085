"""The webhook endpoint: verify, store once, signal the worker, answer — in milliseconds.

Shopify signs the raw body; `shopify_app.verify_webhook_req` checks that HMAC (constant-time,
old secret too during rotation) before anything else is looked at. A bad or missing signature is
answered 401 and nothing is stored. Every path `shopify.app.toml` declares lands here; the topic
comes from the signed delivery's headers.

The INSERT runs in autocommit on a pool without pre-ping (one round trip instead of three): a
dead connection makes this request fail with 500, and Shopify delivers it again. On PostgreSQL
that pool also commits asynchronously (`synchronous_commit = off`): the commit does not wait for
the WAL flush, so only a crash of the database server itself (not of the app) could forget the
last fraction of a second of fulfillment and order events, and those are re-read from Shopify by
the periodic reconciliation anyway. Events nothing would re-read (the compliance topics and
`app/uninstalled`) are committed durably on the main pool.
"""

from __future__ import annotations

import threading

from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from okapp.db import make_engine, utcnow
from okapp.jobs.webhooks import signal_drain
from okapp.shopify import api
from okapp.shopify.tokens import parse_iso
from okapp.shopify.webhooks import COMPLIANCE_TOPICS, store_event
from okapp.views import runtime

bp = Blueprint("webhooks", __name__)

# Deliveries that must survive even a database crash: nothing else would bring them back.
DURABLE_TOPICS = frozenset(COMPLIANCE_TOPICS) | {"app/uninstalled"}

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _intake_engine(topic: str) -> Engine:
    if topic in DURABLE_TOPICS:
        return runtime().engine
    url = runtime().config.database_url
    with _engines_lock:
        if url not in _engines:
            options = {}
            if url.startswith("postgresql"):
                options["connect_args"] = {"options": "-c synchronous_commit=off"}
            _engines[url] = make_engine(url, pool_pre_ping=False, isolation_level="AUTOCOMMIT",
                                        **options)
        return _engines[url]


@bp.post("/webhooks")
@bp.post("/webhooks/<path:_subscription>")
def receive(_subscription: str = ""):
    raw = request.get_data(cache=False)
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Response("Unauthorized", status=401)
    verified = api.shopify_app(current_app.config["OKAPP"]).verify_webhook_req(
        {"method": request.method, "headers": dict(request.headers), "url": request.path,
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
    try:
        triggered_at = parse_iso(headers.get("X-Shopify-Triggered-At"))
    except ValueError:
        triggered_at = None
    with _intake_engine(topic).begin() as conn:
        stored = store_event(
            conn, webhook_id=webhook_id[:128], event_id=headers.get("X-Shopify-Event-Id", "")[:128],
            shop_domain=shop_domain, topic=topic[:64],
            api_version=headers.get("X-Shopify-API-Version", "")[:16], triggered_at=triggered_at,
            payload=body, received_at=utcnow(),
        )
    if stored is not None:
        try:
            signal_drain(runtime())
        except RedisError:
            # Stored is safe: the schedulers' repair sweep (`requeue_stale`) drains it once Redis
            # is back, so Shopify gets its 200 and nothing is lost (tests/faults: Redis stopped).
            current_app.logger.warning("webhook stored; drain deferred while Redis is down")
    return Response(status=200)
