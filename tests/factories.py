"""Factories for test data: each builds valid rows with sensible defaults, overridable by keyword."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from okapp.models import (
    Block,
    BlockKind,
    Enrollment,
    Fulfillment,
    LineItem,
    Message,
    Order,
    Product,
    Sequence,
    Shop,
)

_ids = itertools.count(1)
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def make_shop(session: Session, **kw) -> Shop:
    n = next(_ids)
    shop = Shop(**{
        "domain": f"shop-{n}.myshopify.com", "name": f"Shop {n}", "email": f"owner{n}@shop.example",
        "timezone": "America/New_York", "country": "US", "currency": "USD", "locale": "en",
        "installed_at": NOW - timedelta(days=30), **kw,
    })
    session.add(shop)
    session.flush()
    return shop


def make_product(session: Session, shop: Shop, **kw) -> Product:
    n = next(_ids)
    product = Product(**{
        "shop_id": shop.id, "gid": f"gid://shopify/Product/{n}", "title": f"Product {n}",
        "handle": f"product-{n}", "image_url": f"https://cdn.example/p{n}.jpg",
        "price": Decimal("25.00"), **kw,
    })
    session.add(product)
    session.flush()
    return product


def make_order(session: Session, shop: Shop, products: list[Product] | None = None,
               fulfilled_at: datetime | None = NOW - timedelta(days=1), **kw) -> Order:
    """A paid order; fulfilled in one parcel at `fulfilled_at` unless that is None."""
    n = next(_ids)
    order = Order(**{
        "shop_id": shop.id, "gid": f"gid://shopify/Order/{n}", "name": f"#{1000 + n}",
        "email": f"customer{n}@example.com", "customer_gid": f"gid://shopify/Customer/{n}",
        "customer_first_name": "Jane", "customer_locale": "en", "shipping_country": "US",
        "financial_status": "PAID", "placed_at": (fulfilled_at or NOW) - timedelta(days=2),
        "shopify_updated_at": fulfilled_at or NOW, **kw,
    })
    for product in products if products is not None else [make_product(session, shop)]:
        order.line_items.append(LineItem(
            gid=f"gid://shopify/LineItem/{next(_ids)}", product_gid=product.gid,
            title=product.title, image_url=product.image_url, price=product.price, quantity=1,
        ))
    if fulfilled_at is not None:
        order.fulfillment_status = "FULFILLED"
        order.fulfilled_at = fulfilled_at
        order.fulfillments.append(Fulfillment(
            gid=f"gid://shopify/Fulfillment/{n}", status="SUCCESS", display_status="FULFILLED",
            created_at=fulfilled_at, shopify_updated_at=fulfilled_at,
            line_item_quantities={li.gid: li.quantity for li in order.line_items},
        ))
        for li in order.line_items:
            li.fulfilled_quantity = li.quantity
    session.add(order)
    session.flush()
    return order


def make_sequence(session: Session, shop: Shop, **kw) -> Sequence:
    """A bare sequence with one RECRUIT and one SEND block (engine tests use the templates)."""
    sequence = Sequence(**{"shop_id": shop.id, "name": "Review Request",
                           "template": "review_request", **kw})
    session.add(sequence)
    session.flush()
    recruit = Block(sequence_id=sequence.id, kind=BlockKind.RECRUIT.value, position=0,
                    config={"start_date": "2026-01-01"})
    session.add(recruit)
    session.flush()
    send = Block(sequence_id=sequence.id, kind=BlockKind.SEND.value, position=1,
                 parent_id=recruit.id, config={})
    session.add(send)
    session.flush()
    return sequence


def make_enrollment(session: Session, sequence: Sequence, order: Order, **kw) -> Enrollment:
    enrollment = Enrollment(**{
        "shop_id": sequence.shop_id, "sequence_id": sequence.id, "order_id": order.id,
        "block_id": sequence.blocks[-1].id if sequence.blocks else None, "email": order.email,
        "due_at": NOW, "recruited_at": NOW, "updated_at": NOW, **kw,
    })
    session.add(enrollment)
    session.flush()
    return enrollment


def make_message(session: Session, enrollment: Enrollment, **kw) -> Message:
    message = Message(**{
        "shop_id": enrollment.shop_id, "enrollment_id": enrollment.id,
        "block_id": enrollment.block_id, "recipient": enrollment.email,
        "message_id_header": f"<m{next(_ids)}@okapp.test>", "queued_at": NOW, **kw,
    })
    session.add(message)
    session.flush()
    return message
