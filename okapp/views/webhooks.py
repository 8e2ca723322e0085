"""The webhook endpoint: verify, store once, signal the worker, answer — in milliseconds.

Shopify signs the raw body; `shopify_app.verify_webhook_req` checks that HMAC (constant-time,
old secret too during rotation) before anything else is looked at. A bad or missing signature is
answered 401 and nothing is stored. Every path `shopify.app.toml` declares lands here; the topic
comes from the signed delivery's headers.

Deliveries are answered by `WebhookIntake`, a WSGI layer in front of Flask: a webhook needs no
session, template, CSRF or security headers, and skipping Flask's request machinery more than
halves the time of each delivery, which a burst of fulfillments makes count (bench/webhooks.py).

Storing is `runtime.deliveries` (okapp.shopify.intake): one INSERT shared by the deliveries that
arrive together, on connections kept for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from redis.exceptions import RedisError

from okapp.db import utcnow
from okapp.jobs.webhooks import signal_drain
from okapp.runtime import Runtime
from okapp.shopify import api
from okapp.shopify.tokens import parse_iso

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # far above any order payload Shopify sends


def receive(runtime: Runtime, headers: Mapping[str, str], path: str,
            raw: bytes) -> tuple[int, str]:
    """Verify and store one delivery: the HTTP status and body to answer with."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 401, "Unauthorized"
    verified = api.shopify_app(runtime.config).verify_webhook_req(
        {"method": "POST", "headers": dict(headers), "url": path, "body": body})
    if not verified.ok:
        # A missing signature is as untrusted as a wrong one (App Store rule: 401).
        status = 401 if verified.response.status in (400, 401) else verified.response.status
        return status, "Unauthorized" if status == 401 else verified.response.body
    topic = headers.get("X-Shopify-Topic", "")
    webhook_id = headers.get("X-Shopify-Webhook-Id") or headers.get("X-Shopify-Event-Id")
    shop_domain = api.valid_shop_domain(headers.get("X-Shopify-Shop-Domain"))
    if not topic or not webhook_id or shop_domain is None:
        return 400, "Missing webhook headers"
    try:
        triggered_at = parse_iso(headers.get("X-Shopify-Triggered-At"))
    except ValueError:
        triggered_at = None
    stored = runtime.deliveries.store(dict(
        webhook_id=webhook_id[:128], event_id=headers.get("X-Shopify-Event-Id", "")[:128],
        shop_domain=shop_domain, topic=topic[:64],
        api_version=headers.get("X-Shopify-API-Version", "")[:16], triggered_at=triggered_at,
        payload=body, received_at=utcnow(),
    ))
    if stored is not None:
        try:
            signal_drain(runtime)
        except RedisError:
            # Stored is safe: the schedulers' repair sweep (`requeue_stale`) drains it once Redis
            # is back, so Shopify gets its 200 and nothing is lost (tests/faults: Redis stopped).
            log.warning("webhook stored; drain deferred while Redis is down")
    return 200, ""


class WebhookIntake:
    """WSGI middleware answering `POST /webhooks[/...]` with `receive`; the rest goes to Flask."""

    def __init__(self, app, runtime: Runtime):
        self.app = app
        self.runtime = runtime

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not (path == "/webhooks" or path.startswith("/webhooks/")):
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, "Method Not Allowed", [("Allow", "POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _answer(start_response, 400, "Bad Content-Length")
        if length > MAX_BODY_BYTES:
            return _answer(start_response, 413, "Payload Too Large")
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {key[5:].replace("_", "-").title(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        try:
            status, body = receive(self.runtime, headers, path, raw)
        except Exception:
            # Not stored: Shopify retries a 5xx, so the delivery is not lost.
            log.exception("webhook intake failed")
            status, body = 500, "Internal Server Error"
        return _answer(start_response, status, body)


def _answer(start_response, status: int, body: str, headers=()):
    data = body.encode()
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(data))), *headers])
    return [data]
