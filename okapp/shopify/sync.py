"""Reading a shop from the Admin API into the database: details, products, orders.

Every order that is stored or changed is handed to the engine's `consider_order`, which recruits it
when it qualifies (it is idempotent, so webhooks, reconciliation and lookbacks may all call it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from okapp.models import Order, Shop
from okapp.runtime import Runtime
from okapp.shopify import orders, queries
from okapp.shopify.graphql import AdminClient

log = logging.getLogger(__name__)

PAGE_SIZE = 100
RECONCILE_WINDOW = timedelta(days=3)
# Shopify's order search is indexed a little after a change: a reconciliation reads again from a
# while before where the last one started, so a change made just before it is not missed.
RECONCILE_OVERLAP = timedelta(minutes=15)


def client_for(runtime: Runtime, shop: Shop) -> AdminClient:
    return AdminClient(runtime, shop.id, shop.domain)


def consider(session: Session, changed: list[Order], now: datetime) -> None:
    """Offer synced orders to the engine (absent until the engine lands: then nothing to do)."""
    try:
        from okapp.sequences.recruit import consider_order
    except ImportError:
        return
    for order in changed:
        consider_order(session, order, now)


def fetch_shop_details(runtime: Runtime, shop_id: int, client: AdminClient | None = None) -> None:
    """Name, email, time zone, country, currency and primary locale, as Shopify has them now."""
    with runtime.session_scope() as session:
        shop = session.get(Shop, shop_id)
        client = client or client_for(runtime, shop)
    data = client.execute("ShopDetails", queries.SHOP)["shop"]
    try:
        locales = client.execute("ShopLocale", queries.SHOP_LOCALE).get("shopLocales") or []
    except Exception:  # the locale is a nicety; never fail an install over it
        locales = []
    primary = next((loc["locale"] for loc in locales if loc.get("primary")), None)
    with runtime.session_scope() as session:
        shop = session.get(Shop, shop_id)
        shop.name = data.get("name") or shop.name
        shop.email = data.get("contactEmail") or data.get("email") or shop.email
        shop.timezone = data.get("ianaTimezone") or shop.timezone
        shop.currency = data.get("currencyCode") or shop.currency
        shop.country = ((data.get("billingAddress") or {}).get("countryCodeV2") or shop.country)
        if primary:
            shop.locale = primary


def import_products(runtime: Runtime, shop_id: int, client: AdminClient | None = None) -> int:
    with runtime.session_scope() as session:
        shop = session.get(Shop, shop_id)
        client = client or client_for(runtime, shop)
    count = 0
    for nodes in client.pages("Products", queries.PRODUCTS, "products", {"first": PAGE_SIZE}):
        with runtime.session_scope() as session:
            count += orders.upsert_products(session, session.get(Shop, shop_id), nodes)
    return count


def search(field: str, start: datetime | None, end: datetime | None) -> str:
    """Admin search syntax for a date range: `updated_at:>='...' AND updated_at:<'...'`."""
    parts = []
    if start:
        parts.append(f"{field}:>='{start.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    if end:
        parts.append(f"{field}:<'{end.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    return " AND ".join(parts)


def import_orders(runtime: Runtime, shop_id: int, query: str, now: datetime,
                  client: AdminClient | None = None, sort_key: str = "UPDATED_AT",
                  on_page: Callable[[int], None] | None = None) -> int:
    """Page through the orders matching an Admin search `query`, storing each page as it comes."""
    with runtime.session_scope() as session:
        shop = session.get(Shop, shop_id)
        client = client or client_for(runtime, shop)
    seen = 0
    variables = {"first": PAGE_SIZE, "query": query or None, "sortKey": sort_key}
    for nodes in client.pages("Orders", queries.ORDERS, "orders", variables):
        with runtime.session_scope() as session:
            shop = session.get(Shop, shop_id)
            consider(session, orders.upsert_orders(session, shop, nodes), now)
        seen += len(nodes)
        if on_page:
            on_page(seen)
    return seen


def count_orders(client: AdminClient, query: str) -> int:
    data = client.execute("OrdersCount", queries.ORDERS_COUNT, {"query": query or None})
    return int((data.get("ordersCount") or {}).get("count") or 0)


def refetch_order(runtime: Runtime, session: Session, shop: Shop, order_gid: str,
                  now: datetime) -> Order | None:
    """Read one order from Shopify and store it (when a webhook names an order we lack)."""
    node = client_for(runtime, shop).execute("Order", queries.ORDER, {"id": order_gid}).get("order")
    if not node:
        return None
    changed = orders.upsert_orders(session, shop, [node])
    consider(session, changed, now)
    return orders.find_order(session, shop.id, order_gid)


def reconcile(runtime: Runtime, shop_id: int, now: datetime) -> int:
    """Re-read orders updated recently, catching fulfillments whose webhooks never came: those
    updated since the last reconciliation of this shop began (less RECONCILE_OVERLAP), or in the
    last RECONCILE_WINDOW when there was none. A busy shop's 50,000 orders of the last three days
    are then read once, not every half hour. The mark is kept in Redis: if Redis loses it, the
    next reconciliation reads the whole window, which is only slower."""
    key = f"okapp:reconciled-from:{shop_id}"
    start = now - RECONCILE_WINDOW
    previous = runtime.redis.get(key)
    if previous:
        start = max(start, datetime.fromisoformat(previous.decode()) - RECONCILE_OVERLAP)
    seen = import_orders(runtime, shop_id, search("updated_at", start, None), now)
    # Set only once the whole range is read: a failed run is read again next time.
    runtime.redis.set(key, now.isoformat(), ex=int(RECONCILE_WINDOW.total_seconds()))
    return seen
