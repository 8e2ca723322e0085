"""Which items of an order a customer is asked to review: ONE rule shared by recruitment, emails
and the review page, so an item never shows up in one place and not in another (DESIGN §4).

Left out: gift cards, zero-price items (free samples, gifts with purchase), items fully refunded,
custom items without a product (tips are line items with no product), shipping protection and
similar add-ons, products the merchant tagged with the shop's `exclude_product_tag`, and products
okapp has not synced (a review must name a product). One entry per product, priciest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import LineItem, Order, Product, Shop

# Add-ons sold as products that nobody reviews (Route, Navidium, Corso "Shipping Protection").
# Phrases match anywhere in a title or product type; a tip sold as a product is matched whole,
# so a "Tip jar" mug stays reviewable.
ADD_ON_PHRASES = (
    "shipping protection", "package protection", "order protection", "shipping insurance",
    "route package", "route protection", "delivery guarantee",
)
ADD_ON_TITLES = {"tip", "tips", "gratuity", "donation"}


@dataclass(frozen=True)
class ReviewableItem:
    line_item: LineItem
    product: Product


def _is_add_on(*names: str) -> bool:
    for name in names:
        lowered = " ".join((name or "").lower().split())
        if lowered in ADD_ON_TITLES or any(phrase in lowered for phrase in ADD_ON_PHRASES):
            return True
    return False


def _excluded_by_tag(product: Product, shop: Shop) -> bool:
    tag = (shop.setting("exclude_product_tag") or "").strip().lower()
    return bool(tag) and tag in {t.strip().lower() for t in (product.tags or [])}


def is_reviewable(line_item: LineItem, product: Product | None, shop: Shop) -> bool:
    if product is None or not line_item.product_gid:
        return False
    if line_item.gift_card or line_item.price <= 0:
        return False
    if line_item.quantity - line_item.refunded_quantity <= 0:
        return False
    if _is_add_on(line_item.title, product.title, product.product_type):
        return False
    return not _excluded_by_tag(product, shop)


def reviewable_items(order: Order, shop: Shop,
                     products_by_gid: Mapping[str, Product]) -> list[ReviewableItem]:
    """The order's reviewable items, one per product, priciest first (ties: order of the cart)."""
    chosen: dict[str, ReviewableItem] = {}
    for line_item in order.line_items:
        product = products_by_gid.get(line_item.product_gid)
        if line_item.product_gid in chosen or not is_reviewable(line_item, product, shop):
            continue
        chosen[line_item.product_gid] = ReviewableItem(line_item, product)
    return sorted(chosen.values(), key=lambda item: -item.line_item.price)


def products_by_gid(session: Session, order: Order) -> dict[str, Product]:
    """The shop's products named by the order's line items, keyed by GID (one query)."""
    return products_for_orders(session, [order])[order.id]


def products_for_orders(session: Session,
                        orders: Iterable[Order]) -> dict[int, dict[str, Product]]:
    """`products_by_gid` for many orders in one query: order id -> {gid: product}."""
    orders = list(orders)
    gids = {li.product_gid for o in orders for li in o.line_items if li.product_gid}
    found: dict[tuple[int, str], Product] = {}
    if gids:
        for product in session.scalars(select(Product).where(
                Product.shop_id.in_({o.shop_id for o in orders}), Product.gid.in_(gids))):
            found[(product.shop_id, product.gid)] = product
    return {o.id: {li.product_gid: found[(o.shop_id, li.product_gid)] for li in o.line_items
                   if (o.shop_id, li.product_gid) in found}
            for o in orders}
