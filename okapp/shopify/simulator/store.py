"""The simulator's shops: products, customers, orders, fulfillments, refunds, and tokens.

Plain data in memory, changed under one lock. Orders are kept close to Shopify's own model so that
GraphQL nodes and REST webhook payloads can both be rendered from them.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

CATALOGUE = [
    ("Linen Throw Pillow", "Home", "39.00"), ("Merino Wool Beanie", "Accessories", "34.00"),
    ("Ceramic Pour-Over Set", "Kitchen", "58.00"), ("Organic Cotton Tee", "Apparel", "28.00"),
    ("Waxed Canvas Tote", "Bags", "72.00"), ("Cold Brew Coffee Beans 1kg", "Pantry", "24.00"),
    ("Beeswax Candle Trio", "Home", "32.00"), ("Leather Card Wallet", "Accessories", "45.00"),
    ("Stoneware Mug", "Kitchen", "22.00"), ("Recycled Wool Blanket", "Home", "129.00"),
    ("Trail Running Socks", "Apparel", "16.00"), ("Gift Card", "Gift cards", "50.00"),
]
FIRST_NAMES = ["Ava", "Noah", "Mia", "Liam", "Emma", "Lucas", "Sofia", "Jonas", "Léa", "Mateo",
               "Hannah", "Chloé", "Lena", "Diego", "Olivia", "Elias", "Camille", "Lucía"]
LAST_NAMES = ["Smith", "Martin", "Müller", "García", "Dubois", "Brown", "Rossi", "Novak"]
COUNTRIES = ["US", "US", "US", "US", "CA", "GB", "DE", "FR", "ES", "AU"]
LOCALES = {"US": "en", "CA": "en", "GB": "en", "DE": "de", "FR": "fr", "ES": "es", "AU": "en"}

_ids = itertools.count(1_000_001)


def next_id() -> int:
    return next(_ids)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class Bucket:
    """Shopify's leaky bucket of query cost points."""

    maximum: float = 1000.0
    restore_rate: float = 100.0
    available: float = 1000.0
    at: float = 0.0

    def refill(self, now: float) -> None:
        if self.at:
            self.available = min(self.maximum, self.available + (now - self.at) * self.restore_rate)
        self.at = now

    def status(self) -> dict:
        return {"maximumAvailable": self.maximum, "currentlyAvailable": round(self.available, 1),
                "restoreRate": self.restore_rate}


@dataclass
class SimShop:
    sub: str
    name: str = "Simulated Shop"
    email: str = "owner@shop.example"
    timezone: str = "America/New_York"
    currency: str = "USD"
    country: str = "US"
    locale: str = "en"
    products: list[dict] = field(default_factory=list)
    orders: dict[int, dict] = field(default_factory=dict)
    access_tokens: dict[str, datetime] = field(default_factory=dict)
    refresh_tokens: dict[str, dict] = field(default_factory=dict)
    codes: dict[str, datetime] = field(default_factory=dict)
    installed: bool = False
    bucket: Bucket = field(default_factory=Bucket)
    counters: dict[str, int] = field(default_factory=lambda: {
        "graphql": 0, "throttled": 0, "refreshes": 0, "exchanges": 0, "unauthorized": 0})

    @property
    def domain(self) -> str:
        return f"{self.sub}.myshopify.com"

    # --- tokens ----------------------------------------------------------------------------

    def issue_tokens(self, now: datetime, access_ttl: int, refresh_ttl: int,
                     expiring: bool = True) -> dict:
        access = "shpat_" + secrets.token_hex(16)
        self.installed = True
        if not expiring:
            self.access_tokens[access] = now + timedelta(days=36500)
            return {"access_token": access, "scope": "", "_refresh": None}
        self.access_tokens[access] = now + timedelta(seconds=access_ttl)
        refresh = "shprt_" + secrets.token_hex(16)
        self.refresh_tokens[refresh] = {"expires": now + timedelta(seconds=refresh_ttl),
                                        "successor": None, "used": False}
        return {"access_token": access, "expires_in": access_ttl, "refresh_token": refresh,
                "refresh_token_expires_in": refresh_ttl}

    def access_ok(self, token: str, now: datetime) -> bool:
        expires = self.access_tokens.get(token)
        return self.installed and expires is not None and expires > now

    def revoke_all(self) -> None:
        self.access_tokens.clear()
        self.refresh_tokens.clear()
        self.installed = False

    # --- orders ----------------------------------------------------------------------------

    def order(self, order_id: int) -> dict:
        try:
            return self.orders[int(order_id)]
        except (KeyError, ValueError):
            raise LookupError(f"order {order_id} does not exist in {self.domain}") from None

    def product(self, product_id: int) -> dict | None:
        """The product, or None once it was deleted (Shopify then answers `product: null`)."""
        return next((p for p in self.products if p["id"] == product_id), None)

    def fulfillment(self, fulfillment_id: int) -> tuple[dict, dict]:
        for order in self.orders.values():
            for parcel in order["fulfillments"]:
                if parcel["id"] == int(fulfillment_id):
                    return order, parcel
        raise LookupError(f"fulfillment {fulfillment_id} does not exist in {self.domain}")


def shipped_quantities(order: dict) -> dict[int, int]:
    shipped: dict[int, int] = {}
    for parcel in order["fulfillments"]:
        if parcel["status"] == "success":
            for item_id, qty in parcel["line_items"].items():
                shipped[item_id] = shipped.get(item_id, 0) + qty
    return shipped


def refunded_quantities(order: dict) -> dict[int, int]:
    refunded: dict[int, int] = {}
    for refund in order["refunds"]:
        for item_id, qty in refund["line_items"].items():
            refunded[item_id] = refunded.get(item_id, 0) + qty
    return refunded


def unfulfilled(order: dict) -> dict[int, int]:
    """Line item id -> quantity still to ship (refunded units never ship)."""
    shipped, refunded = shipped_quantities(order), refunded_quantities(order)
    remaining = {}
    for item in order["line_items"]:
        if not item["requires_shipping"]:
            continue
        left = item["quantity"] - refunded.get(item["id"], 0) - shipped.get(item["id"], 0)
        if left > 0:
            remaining[item["id"]] = left
    return remaining


def financial_status(order: dict) -> str:
    refunded = refunded_quantities(order)
    if not refunded:
        return "PAID"
    total = sum(i["quantity"] for i in order["line_items"])
    return "REFUNDED" if sum(refunded.values()) >= total else "PARTIALLY_REFUNDED"


def fulfillment_status(order: dict) -> str:
    if not any(p["status"] == "success" for p in order["fulfillments"]):
        return "UNFULFILLED"
    return "PARTIALLY_FULFILLED" if unfulfilled(order) else "FULFILLED"


class Store:
    """Every simulated shop, behind one lock."""

    def __init__(self):
        self.lock = threading.RLock()
        self.shops: dict[str, SimShop] = {}

    def shop(self, sub: str) -> SimShop:
        sub = sub.removesuffix(".myshopify.com")
        shop = self.shops.get(sub)
        if shop is None:
            raise LookupError(f"no simulated shop {sub}")
        return shop

    def create_shop(self, sub: str, **details) -> SimShop:
        with self.lock:
            sub = sub.removesuffix(".myshopify.com")
            shop = self.shops.get(sub) or SimShop(sub=sub)
            for key, value in details.items():
                setattr(shop, key, value)
            self.shops[sub] = shop
            return shop

    def add_order(self, shop: SimShop, *, created: datetime, customer: dict | None,
                  country: str | None, items: list[tuple[dict, int]], email: str | None,
                  number: int | None = None) -> dict:
        order_id = next_id()
        number = number or 1001 + len(shop.orders)
        order = {
            "id": order_id, "name": f"#{number}", "created_at": created, "updated_at": created,
            "cancelled_at": None, "email": email, "customer": customer, "country": country,
            "locale": LOCALES.get(country or "US", "en"), "currency": shop.currency,
            "test": False, "fulfillments": [], "refunds": [],
            "line_items": [{
                "id": next_id(), "product_id": product["id"], "variant_id": product["id"] + 7,
                "title": product["title"], "variant_title": "", "quantity": qty,
                "price": product["price"], "requires_shipping": not product["gift_card"],
                "gift_card": product["gift_card"], "image_url": product["image_url"],
            } for product, qty in items],
        }
        shop.orders[order_id] = order
        return order

    def generate(self, sub: str, products: int = 12, orders: int = 120, now: datetime | None = None,
                 seed: int = 7, months: int = 4, **details) -> SimShop:
        """A shop with a catalogue and a history of orders spread over the past months.

        Several countries, multi-parcel orders, partial and full refunds, cancellations, orders
        without an email and repeat customers, so every rule of the engine has something to bite.
        """
        now = now or datetime.now(UTC)
        rng = random.Random(seed)
        with self.lock:
            shop = self.create_shop(sub, **details)
            for n in range(products):
                title, ptype, price = CATALOGUE[n % len(CATALOGUE)]
                if n >= len(CATALOGUE):
                    title = f"{title} No. {n // len(CATALOGUE) + 1}"
                handle = title.lower().replace(" ", "-").replace(".", "")
                shop.products.append({
                    "id": next_id(), "title": title, "handle": handle, "product_type": ptype,
                    "price": price, "gift_card": ptype == "Gift cards", "status": "ACTIVE",
                    "tags": ["gift-card"] if ptype == "Gift cards" else [],
                    "image_url": f"https://picsum.photos/seed/{handle}/400/400",
                    "updated_at": now - timedelta(days=200),
                })
            customers: list[dict] = []
            for _ in range(orders):
                if customers and rng.random() < 0.2:
                    customer = rng.choice(customers)  # a repeat customer
                else:
                    first = rng.choice(FIRST_NAMES)
                    plain = first.lower().replace("é", "e").replace("í", "i")
                    customer = {"id": next_id(), "first_name": first,
                                "last_name": rng.choice(LAST_NAMES),
                                "email": f"{plain}.{len(customers)}@example.com"}
                    customers.append(customer)
                no_email = rng.random() < 0.04
                created = now - timedelta(days=rng.uniform(0.5, months * 30),
                                          hours=rng.uniform(0, 23))
                picks = rng.sample(shop.products, min(len(shop.products), rng.randint(1, 3)))
                order = self.add_order(
                    shop, created=created, customer=None if no_email else customer,
                    country=None if rng.random() < 0.03 else rng.choice(COUNTRIES),
                    items=[(p, rng.randint(1, 2)) for p in picks],
                    email=None if no_email else customer["email"])
                self._history(shop, order, now, rng)
            return shop

    def _history(self, shop: SimShop, order: dict, now: datetime, rng: random.Random) -> None:
        """What happened to a generated order since it was placed."""
        age = (now - order["created_at"]).days
        if rng.random() < 0.03:
            order["cancelled_at"] = order["updated_at"] = order["created_at"] + timedelta(hours=3)
            return
        if age < 2:
            return
        remaining = unfulfilled(order)
        if not remaining:
            return
        shipped_at = order["created_at"] + timedelta(days=rng.uniform(0.3, 1.5))
        items = list(remaining.items())
        split = len(items) > 1 and rng.random() < 0.25
        parcels = [dict(items[:1]), dict(items[1:])] if split else [dict(items)]
        for k, parcel_items in enumerate(parcels):
            at = shipped_at + timedelta(days=k * rng.uniform(1, 4))
            if at > now:
                break
            parcel = self.add_fulfillment(order, parcel_items, at)
            delivered = at + timedelta(days=rng.uniform(2, 9))
            if delivered < now and rng.random() < 0.85:
                self.mark_delivered(order, parcel, delivered)
        if rng.random() < 0.05:
            item = order["line_items"][0]
            self.add_refund(order, {item["id"]: 1}, order["updated_at"] + timedelta(days=1))

    # --- changes (the caller sends the webhooks) -------------------------------------------

    @staticmethod
    def add_fulfillment(order: dict, items: dict[int, int], at: datetime) -> dict:
        parcel = {"id": next_id(), "status": "success", "created_at": at, "updated_at": at,
                  "delivered_at": None, "shipment_status": None, "line_items": dict(items),
                  "tracking_number": "1Z" + secrets.token_hex(6).upper(),
                  "name": f"{order['name']}.{len(order['fulfillments']) + 1}"}
        order["fulfillments"].append(parcel)
        order["updated_at"] = max(order["updated_at"], at)
        return parcel

    @staticmethod
    def mark_delivered(order: dict, parcel: dict, at: datetime) -> None:
        parcel["delivered_at"] = at
        parcel["shipment_status"] = "delivered"
        parcel["updated_at"] = max(parcel["updated_at"], at)
        order["updated_at"] = max(order["updated_at"], at)

    @staticmethod
    def add_refund(order: dict, items: dict[int, int], at: datetime) -> dict:
        refund = {"id": next_id(), "created_at": at, "line_items": dict(items)}
        order["refunds"].append(refund)
        order["updated_at"] = max(order["updated_at"], at)
        return refund
