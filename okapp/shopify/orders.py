"""Orders as Shopify describes them, stored locally: from GraphQL reads and from webhook payloads.

Shopify delivers webhooks late, twice, or out of order, so every write compares the timestamp of
what it is told with what is stored and ignores anything older. The dates the engine recruits on
are derived here in one place (`derive_dates`): an order is fulfilled when every shippable,
non-refunded item has shipped (at the last fulfillment's time), and delivered when every parcel
has arrived (at the last delivery's time).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from okapp.models import Fulfillment, LineItem, Order, Product, Shop
from okapp.shopify.tokens import parse_iso

log = logging.getLogger(__name__)

REFUND_STATUSES = {"REFUNDED": (True, False), "PARTIALLY_REFUNDED": (False, True)}


def gid(kind: str, value) -> str:
    text = str(value)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


def _money(value) -> Decimal:
    try:
        return Decimal(str(value or "0"))
    except InvalidOperation:
        return Decimal("0")


def _dig(node: dict | None, *path):
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _is_stale(incoming: datetime | None, stored: datetime | None) -> bool:
    return incoming is not None and stored is not None and incoming < stored


def load_orders(session: Session, shop_id: int, gids: list[str]) -> dict[str, Order]:
    rows = session.scalars(
        select(Order).where(Order.shop_id == shop_id, Order.gid.in_(gids))
        .options(selectinload(Order.line_items), selectinload(Order.fulfillments))
    ).all()
    return {order.gid: order for order in rows}


def upsert_orders(session: Session, shop: Shop, nodes: list[dict]) -> list[Order]:
    """Store a page of GraphQL order nodes; returns the orders that changed."""
    existing = load_orders(session, shop.id, [node["id"] for node in nodes])
    products = {item["product"]["id"]: item["product"] for node in nodes
                for item in _dig(node, "lineItems", "nodes") or []
                if (item.get("product") or {}).get("title") is not None}
    if products:
        upsert_products(session, shop, list(products.values()))
    changed = []
    for node in nodes:
        order = existing.get(node["id"])
        updated = parse_iso(node.get("updatedAt"))
        if order is not None and _is_stale(updated, order.shopify_updated_at):
            continue
        if order is None:
            order = Order(shop_id=shop.id, gid=node["id"])
            session.add(order)
        _apply_order_node(order, node, updated)
        changed.append(order)
    session.flush()
    return changed


def _apply_order_node(order: Order, node: dict, updated: datetime | None) -> None:
    customer = node.get("customer") or {}
    email = node.get("email") or _dig(customer, "defaultEmailAddress", "emailAddress") or ""
    order.name = node.get("name") or ""
    order.email = email.strip().lower()
    order.customer_gid = customer.get("id") or ""
    order.customer_first_name = customer.get("firstName") or ""
    order.customer_last_name = customer.get("lastName") or ""
    order.customer_locale = node.get("customerLocale") or ""
    order.shipping_country = _dig(node, "shippingAddress", "countryCodeV2") or ""
    order.financial_status = node.get("displayFinancialStatus") or ""
    order.fulfillment_status = node.get("displayFulfillmentStatus") or ""
    order.cancelled_at = parse_iso(node.get("cancelledAt"))
    order.refunded, order.partially_refunded = REFUND_STATUSES.get(order.financial_status,
                                                                   (False, False))
    order.test = bool(node.get("test"))
    order.currency = node.get("currencyCode") or _dig(node, "totalPriceSet", "shopMoney",
                                                      "currencyCode") or ""
    order.total_price = _money(_dig(node, "totalPriceSet", "shopMoney", "amount"))
    order.placed_at = parse_iso(node.get("processedAt") or node.get("createdAt"))
    order.shopify_updated_at = updated

    refunded: dict[str, int] = defaultdict(int)
    for refund in node.get("refunds") or []:
        for item in _dig(refund, "refundLineItems", "nodes") or []:
            refunded[_dig(item, "lineItem", "id")] += int(item.get("quantity") or 0)

    items = {li.gid: li for li in order.line_items}
    for item in _dig(node, "lineItems", "nodes") or []:
        line = items.get(item["id"])
        if line is None:
            line = LineItem(gid=item["id"])
            order.line_items.append(line)
        line.product_gid = _dig(item, "product", "id") or ""
        line.variant_gid = _dig(item, "variant", "id") or ""
        line.title = item.get("title") or ""
        line.variant_title = item.get("variantTitle") or ""
        line.image_url = (_dig(item, "image", "url") or _dig(item, "variant", "image", "url")
                          or "")
        line.quantity = int(item.get("quantity") or 0)
        line.refunded_quantity = refunded.get(item["id"], 0)
        line.price = _money(_dig(item, "originalUnitPriceSet", "shopMoney", "amount"))
        line.requires_shipping = bool(item.get("requiresShipping", True))
        line.gift_card = bool(item.get("isGiftCard", False))

    parcels = {f.gid: f for f in order.fulfillments}
    for node_f in node.get("fulfillments") or []:
        parcel = parcels.get(node_f["id"])
        f_updated = parse_iso(node_f.get("updatedAt"))
        if parcel is not None and _is_stale(f_updated, parcel.shopify_updated_at):
            continue
        if parcel is None:
            parcel = Fulfillment(gid=node_f["id"])
            order.fulfillments.append(parcel)
        parcel.status = (node_f.get("status") or "SUCCESS").upper()
        parcel.display_status = node_f.get("displayStatus") or ""
        parcel.created_at = parse_iso(node_f.get("createdAt"))
        parcel.delivered_at = parse_iso(node_f.get("deliveredAt"))
        parcel.shopify_updated_at = f_updated
        parcel.line_item_quantities = {
            _dig(fli, "lineItem", "id"): int(fli.get("quantity") or 0)
            for fli in _dig(node_f, "fulfillmentLineItems", "nodes") or []
        }
    derive_dates(order)


def derive_dates(order: Order) -> None:
    """Set `fulfilled_at`, `delivered_at` and the items' fulfilled quantities from the parcels."""
    parcels = [f for f in order.fulfillments if f.status == "SUCCESS"]
    shipped: dict[str, int] = defaultdict(int)
    for parcel in parcels:
        for item_gid, quantity in (parcel.line_item_quantities or {}).items():
            shipped[item_gid] += int(quantity)
    shippable = [li for li in order.line_items
                 if li.requires_shipping and not li.gift_card
                 and li.quantity - li.refunded_quantity > 0]
    for line in order.line_items:
        line.fulfilled_quantity = min(line.quantity, shipped.get(line.gid, 0))
    complete = bool(shippable) and all(
        shipped.get(li.gid, 0) >= li.quantity - li.refunded_quantity for li in shippable)
    relevant = [f for f in parcels
                if any(li.gid in (f.line_item_quantities or {}) for li in shippable)]
    if not complete or not relevant:
        order.fulfilled_at = None
        order.delivered_at = None
        return
    order.fulfilled_at = max(f.created_at for f in relevant)
    if all(f.delivered_at for f in relevant):
        order.delivered_at = max(f.delivered_at for f in relevant)
    else:
        order.delivered_at = None
    if order.fulfillment_status in ("", "UNFULFILLED", "PARTIALLY_FULFILLED", "IN_PROGRESS"):
        order.fulfillment_status = "FULFILLED"


# --- webhook payloads (REST shapes) -------------------------------------------------------------

def find_order(session: Session, shop_id: int, order_id) -> Order | None:
    return load_orders(session, shop_id, [gid("Order", order_id)]).get(gid("Order", order_id))


def apply_fulfillment(session: Session, order: Order, payload: dict,
                      triggered_at: datetime | None) -> bool:
    """A `fulfillments/create|update` payload. Returns False when it was older than what we have."""
    fulfillment_gid = payload.get("admin_graphql_api_id") or gid("Fulfillment", payload["id"])
    updated = parse_iso(payload.get("updated_at")) or triggered_at
    parcel = next((f for f in order.fulfillments if f.gid == fulfillment_gid), None)
    if parcel is not None and _is_stale(updated, parcel.shopify_updated_at):
        return False
    if parcel is None:
        parcel = Fulfillment(gid=fulfillment_gid)
        order.fulfillments.append(parcel)
    status = (payload.get("status") or "success").upper()
    parcel.status = "CANCELLED" if status == "CANCELLED" else status
    shipment = (payload.get("shipment_status") or "").upper()
    parcel.display_status = shipment or ("CANCELED" if status == "CANCELLED" else "FULFILLED")
    parcel.created_at = parse_iso(payload.get("created_at")) or updated
    if shipment == "DELIVERED" and parcel.delivered_at is None:
        parcel.delivered_at = updated
    parcel.shopify_updated_at = updated
    parcel.line_item_quantities = {
        gid("LineItem", item["id"]): int(item.get("quantity") or 0)
        for item in payload.get("line_items") or []
    }
    derive_dates(order)
    session.flush()
    return True


def apply_fulfillment_event(session: Session, order: Order, payload: dict) -> bool | None:
    """A `fulfillment_events/create` payload. None when the parcel is unknown (re-read the order)."""
    parcel = next((f for f in order.fulfillments
                   if f.gid == gid("Fulfillment", payload.get("fulfillment_id"))), None)
    if parcel is None:
        return None
    status = (payload.get("status") or "").upper()
    happened = parse_iso(payload.get("happened_at") or payload.get("created_at"))
    if status != "DELIVERED" or happened is None:
        return False
    if parcel.delivered_at is not None and parcel.delivered_at >= happened:
        return False
    parcel.delivered_at = happened
    parcel.display_status = "DELIVERED"
    derive_dates(order)
    session.flush()
    return True


def upsert_products(session: Session, shop: Shop, nodes: list[dict]) -> int:
    gids = [node["id"] for node in nodes]
    existing = {p.gid: p for p in session.scalars(
        select(Product).where(Product.shop_id == shop.id, Product.gid.in_(gids)))}
    for node in nodes:
        product = existing.get(node["id"])
        if product is None:
            product = Product(shop_id=shop.id, gid=node["id"])
            session.add(product)
        product.title = node.get("title") or ""
        product.handle = node.get("handle") or ""
        product.status = node.get("status") or "ACTIVE"
        product.product_type = node.get("productType") or ""
        product.tags = list(node.get("tags") or [])
        product.image_url = _dig(node, "featuredMedia", "preview", "image", "url") or ""
        product.price = _money(_dig(node, "priceRangeV2", "maxVariantPrice", "amount"))
    session.flush()
    return len(nodes)
