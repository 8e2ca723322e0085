"""The simulator's HTTP side: Shopify's endpoints for the app, and a control API for tests/demo.

Shopify's side signs with the app's client secret, so here (and only here) JWTs and HMACs are
produced by hand: ID tokens as App Bridge would mint them, webhook signatures as Shopify computes
them, and the OAuth callback's query HMAC (with ShopifyAPI's own algorithm).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import shopify
from flask import Flask, abort, jsonify, redirect, request
from werkzeug.serving import make_server

from okapp.config import PROJECT_ROOT
from okapp.shopify.simulator import admin_api
from okapp.shopify.simulator.store import SimShop, Store, iso, next_id, unfulfilled

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_VERSION = "2026-10"


def webhook_routes(toml_path: Path = PROJECT_ROOT / "shopify.app.toml") -> dict[str, str]:
    """Topic -> path, as shopify.app.toml subscribes them."""
    config = tomllib.loads(toml_path.read_text())
    routes = {}
    for sub in config.get("webhooks", {}).get("subscriptions", []):
        for topic in sub.get("topics", []) + sub.get("compliance_topics", []):
            routes[topic] = sub["uri"]
    return routes


class Simulator:
    def __init__(self, client_id: str, client_secret: str, app_url: str = "",
                 access_ttl: int = 3600, refresh_ttl: int = 90 * 24 * 3600,
                 bucket_size: float = 1000.0, restore_rate: float = 100.0,
                 refresh_grace: bool = True, clock=lambda: datetime.now(UTC)):
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_url = app_url.rstrip("/")
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.bucket_size = bucket_size
        self.restore_rate = restore_rate
        # Shopify keeps a used refresh token valid until its replacement is first used; off, a
        # refresh token works exactly once (a stricter world for testing refresh races).
        self.refresh_grace = refresh_grace
        self.clock = clock
        self.store = Store()
        self.routes = webhook_routes()
        self.deliveries: list[dict] = []  # every webhook sent: topic, status, headers, body
        self.flask = self._build_app()
        self._server = None
        self._thread = None
        self.http = httpx.Client(timeout=10)

    # --- running --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def admin_base_url(self) -> str:
        """The app's SHOPIFY_ADMIN_BASE_URL for this simulator."""
        return self.base_url + "/{shop}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        self._server = make_server(host, port, self.flask, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self, host: str, port: int) -> None:
        self._server = make_server(host, port, self.flask, threaded=True)
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.http.close()

    # --- shops ----------------------------------------------------------------------------

    def shop(self, sub: str) -> SimShop:
        return self.store.shop(sub)

    def generate(self, sub: str, **kwargs) -> SimShop:
        shop = self.store.generate(sub, **kwargs)
        shop.bucket.maximum = shop.bucket.available = self.bucket_size
        shop.bucket.restore_rate = self.restore_rate
        return shop

    def id_token(self, sub: str, *, ttl: int = 60, user_id: int = 42,
                 client_id: str | None = None, secret: str | None = None) -> str:
        """An ID token as App Bridge hands it to the app inside the admin."""
        now = int(time.time())
        domain = f"{sub.removesuffix('.myshopify.com')}.myshopify.com"
        claims = {"iss": f"https://{domain}/admin", "dest": f"https://{domain}",
                  "aud": client_id or self.client_id, "sub": str(user_id), "exp": now + ttl,
                  "nbf": now - 5, "iat": now, "jti": str(uuid.uuid4()),
                  "sid": secrets.token_hex(16)}
        return jwt.encode(claims, secret or self.client_secret, algorithm="HS256")

    def expire_access_tokens(self, sub: str) -> None:
        with self.store.lock:
            shop = self.shop(sub)
            for token in shop.access_tokens:
                shop.access_tokens[token] = self.clock() - timedelta(seconds=1)

    # --- merchant and customer actions: change the shop, then tell the app ----------------

    def fulfill(self, sub: str, order_id: int, items: dict[int, int] | None = None,
                at: datetime | None = None) -> dict:
        with self.store.lock:
            shop = self.shop(sub)
            order = shop.order(order_id)
            items = items or unfulfilled(order)
            parcel = self.store.add_fulfillment(order, items, at or self.clock())
            payload = admin_api.fulfillment_payload(order, parcel)
        self.send_webhook(sub, "fulfillments/create", payload)
        return parcel

    def deliver(self, sub: str, fulfillment_id: int, at: datetime | None = None) -> None:
        with self.store.lock:
            shop = self.shop(sub)
            order, parcel = shop.fulfillment(fulfillment_id)
            self.store.mark_delivered(order, parcel, at or self.clock())
            event = admin_api.fulfillment_event_payload(order, parcel, next_id())
            update = admin_api.fulfillment_payload(order, parcel)
        self.send_webhook(sub, "fulfillment_events/create", event)
        self.send_webhook(sub, "fulfillments/update", update)

    def cancel(self, sub: str, order_id: int, at: datetime | None = None) -> None:
        with self.store.lock:
            order = self.shop(sub).order(order_id)
            order["cancelled_at"] = order["updated_at"] = at or self.clock()
            payload = admin_api.order_payload(order)
        self.send_webhook(sub, "orders/cancelled", payload)

    def refund(self, sub: str, order_id: int, items: dict[int, int] | None = None,
               at: datetime | None = None) -> dict:
        with self.store.lock:
            order = self.shop(sub).order(order_id)
            items = items or {order["line_items"][0]["id"]: 1}
            refund = self.store.add_refund(order, items, at or self.clock())
            payload = admin_api.refund_payload(order, refund)
        self.send_webhook(sub, "refunds/create", payload)
        return refund

    def uninstall(self, sub: str) -> None:
        with self.store.lock:
            shop = self.shop(sub)
            shop.revoke_all()
            payload = {"id": 1, "name": shop.name, "email": shop.email, "domain": shop.domain,
                       "myshopify_domain": shop.domain}
        self.send_webhook(sub, "app/uninstalled", payload)

    def redact_customer(self, sub: str, customer_id: int) -> None:
        with self.store.lock:
            shop = self.shop(sub)
            orders = [o for o in shop.orders.values()
                      if (o["customer"] or {}).get("id") == customer_id]
            customer = next(o["customer"] for o in orders)
            payload = {"shop_id": 1, "shop_domain": shop.domain,
                       "customer": {"id": customer_id, "email": customer["email"],
                                    "phone": None},
                       "orders_to_redact": [o["id"] for o in orders]}
        self.send_webhook(sub, "customers/redact", payload)

    def redact_shop(self, sub: str) -> None:
        shop = self.shop(sub)
        self.send_webhook(sub, "shop/redact", {"shop_id": 1, "shop_domain": shop.domain})

    # --- webhooks -------------------------------------------------------------------------

    def signed_webhook(self, sub: str, topic: str, payload: dict,
                       triggered_at: datetime | None = None) -> tuple[bytes, dict]:
        """The body and headers of a webhook, signed as Shopify signs them."""
        body = json.dumps(payload).encode()
        digest = hmac.new(self.client_secret.encode(), body, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": f"{sub.removesuffix('.myshopify.com')}.myshopify.com",
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": iso(triggered_at or self.clock()),
        }
        return body, headers

    def send_webhook(self, sub: str, topic: str, payload: dict) -> int:
        body, headers = self.signed_webhook(sub, topic, payload)
        status = 0
        if self.app_url:
            try:
                status = self.http.post(self.app_url + self.routes.get(topic, "/webhooks"),
                                        content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = 0  # Shopify would retry later; the reconciliation catches it anyway
        self.deliveries.append({"topic": topic, "status": status, "headers": headers,
                                "body": body})
        return status

    # --- the HTTP app ---------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("shopify-simulator")
        sim = self

        def shop_or_404(sub: str) -> SimShop:
            try:
                return sim.shop(sub)
            except LookupError:
                abort(404)

        @app.get("/<sub>/admin/oauth/authorize")
        def authorize(sub):
            """The merchant approves at once: back to the app with a signed code."""
            shop = shop_or_404(sub)
            if request.args.get("client_id") != sim.client_id:
                abort(400, "unknown client_id")
            code = secrets.token_hex(16)
            with sim.store.lock:
                shop.codes[code] = sim.clock() + timedelta(minutes=1)
            params = {"code": code, "shop": shop.domain, "state": request.args.get("state", ""),
                      "timestamp": str(int(time.time())),
                      "host": base64.b64encode(f"admin.shopify.com/store/{sub}".encode()).decode()}
            params["hmac"] = _CallbackSigner.sign(sim.client_secret, params)
            return redirect(request.args["redirect_uri"] + "?" + urlencode(params))

        @app.get("/<sub>/admin/apps/<client_id>")
        def open_app(sub, client_id):
            """The app opened from the admin: its URL with embedded=1 and a fresh ID token."""
            shop = shop_or_404(sub)
            params = {"embedded": "1", "shop": shop.domain,
                      "host": base64.b64encode(f"admin.shopify.com/store/{sub}".encode()).decode(),
                      "id_token": sim.id_token(sub)}
            return redirect(f"{sim.app_url}/sequences?{urlencode(params)}")

        @app.post("/<sub>/admin/oauth/access_token")
        def access_token(sub):
            shop = shop_or_404(sub)
            data = request.get_json(silent=True) or request.form.to_dict()
            if (data.get("client_id") != sim.client_id
                    or data.get("client_secret") != sim.client_secret):
                return jsonify(error="invalid_client"), 401
            expiring = str(data.get("expiring", "0")) == "1"
            with sim.store.lock:
                now = sim.clock()
                grant = data.get("grant_type")
                if grant == TOKEN_EXCHANGE:
                    try:
                        claims = jwt.decode(data.get("subject_token", ""), sim.client_secret,
                                            algorithms=["HS256"], audience=sim.client_id,
                                            leeway=10)
                    except jwt.PyJWTError:
                        return jsonify(error="invalid_subject_token"), 400
                    if claims.get("dest") != f"https://{shop.domain}":
                        return jsonify(error="invalid_subject_token"), 400
                    shop.counters["exchanges"] += 1
                elif grant == "refresh_token":
                    if not sim._use_refresh_token(shop, data.get("refresh_token", ""), now):
                        return jsonify(error="invalid_grant"), 400
                    shop.counters["refreshes"] += 1
                    expiring = True
                elif "code" in data:
                    if shop.codes.pop(data["code"], now - timedelta(1)) < now:
                        return jsonify(error="invalid_request"), 400
                else:
                    return jsonify(error="unsupported_grant_type"), 400
                issued = shop.issue_tokens(now, sim.access_ttl, sim.refresh_ttl, expiring)
                if grant == "refresh_token":
                    shop.refresh_tokens[data["refresh_token"]]["successor"] = issued[
                        "refresh_token"]
                issued.pop("_refresh", None)
                issued["scope"] = "read_orders,read_all_orders,read_fulfillments,read_products,read_customers"
            return jsonify(issued)

        @app.post("/<sub>/admin/api/<version>/graphql.json")
        def graphql(sub, version):
            shop = shop_or_404(sub)
            with sim.store.lock:
                if not shop.access_ok(request.headers.get("X-Shopify-Access-Token", ""),
                                      sim.clock()):
                    shop.counters["unauthorized"] += 1
                    return jsonify(errors="[API] Invalid API key or access token "
                                          "(unrecognized login or wrong password)"), 401
                body = request.get_json(silent=True) or {}
                match = admin_api.OPERATION.match(body.get("query") or "")
                if not match:
                    return jsonify(errors=[{"message": "Parse error: query has no name"}])
                operation, variables = match.group(1), body.get("variables") or {}
                shop.counters["graphql"] += 1
                cost = admin_api.requested_cost(operation, variables)
                shop.bucket.refill(time.monotonic())
                if shop.bucket.available < cost:
                    shop.counters["throttled"] += 1
                    return jsonify(errors=[{"message": "Throttled", "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                        extensions={"cost": {"requestedQueryCost": cost, "actualQueryCost": None,
                                             "throttleStatus": shop.bucket.status()}})
                try:
                    data = admin_api.answer(shop, operation, variables)
                except admin_api.GraphQLProblem as exc:
                    return jsonify(errors=[{"message": str(exc)}])
                actual = admin_api.actual_cost(operation, data)
                shop.bucket.available -= actual
                return jsonify(data=data, extensions={"cost": {
                    "requestedQueryCost": cost, "actualQueryCost": actual,
                    "throttleStatus": shop.bucket.status()}})

        # Control API, for `okapp demo` and anyone driving the simulator from outside.
        @app.post("/_sim/shops/<sub>")
        def generate_shop(sub):
            options = request.get_json(silent=True) or {}
            shop = sim.generate(sub, **options)
            return jsonify(domain=shop.domain, orders=len(shop.orders))

        @app.post("/_sim/shops/<sub>/id-token")
        def mint_id_token(sub):
            shop_or_404(sub)
            return jsonify(id_token=sim.id_token(sub))

        @app.post("/_sim/shops/<sub>/orders/<int:order_id>/<action>")
        def order_action(sub, order_id, action):
            shop_or_404(sub)
            try:
                if action == "fulfill":
                    return jsonify(fulfillment_id=sim.fulfill(sub, order_id)["id"])
                if action == "cancel":
                    sim.cancel(sub, order_id)
                elif action == "refund":
                    sim.refund(sub, order_id)
                else:
                    abort(404)
            except LookupError as exc:
                abort(404, str(exc))
            return jsonify(ok=True)

        @app.post("/_sim/shops/<sub>/fulfillments/<int:fulfillment_id>/deliver")
        def deliver(sub, fulfillment_id):
            shop_or_404(sub)
            sim.deliver(sub, fulfillment_id)
            return jsonify(ok=True)

        @app.post("/_sim/shops/<sub>/uninstall")
        def uninstall(sub):
            shop_or_404(sub)
            sim.uninstall(sub)
            return jsonify(ok=True)

        @app.get("/_sim/shops/<sub>")
        def describe(sub):
            shop = shop_or_404(sub)
            return jsonify(domain=shop.domain, orders=len(shop.orders), counters=shop.counters,
                           unfulfilled=[o["id"] for o in shop.orders.values()
                                        if unfulfilled(o) and not o["cancelled_at"]][:50])

        return app

    def _use_refresh_token(self, shop: SimShop, token: str, now: datetime) -> bool:
        record = shop.refresh_tokens.get(token)
        if record is None or record["expires"] <= now:
            return False
        successor = record["successor"]
        if successor is not None:
            # Used before: allowed only in the grace window, until its replacement is used.
            if not self.refresh_grace or shop.refresh_tokens.get(successor, {}).get("used"):
                return False
        record["used"] = True
        return True


class _CallbackSigner(shopify.Session):
    """ShopifyAPI's query-HMAC algorithm, keyed per call (the simulator is Shopify's side)."""

    @classmethod
    def sign(cls, secret: str, params: dict) -> str:
        cls.secret = secret
        return cls.calculate_hmac(params)
