"""The one rule for which items of an order are reviewable (shared with recruitment and emails)."""

from __future__ import annotations

from decimal import Decimal

from okapp.models import LineItem
from okapp.sequences.items import products_by_gid, reviewable_items
from tests.factories import make_order, make_product


def _add(order, product=None, **kw):
    kw.setdefault("title", product.title if product else "Tip")
    kw.setdefault("price", Decimal("10.00"))
    item = LineItem(gid=f"gid://shopify/LineItem/x{len(order.line_items)}-{order.id}",
                    product_gid=product.gid if product else "", **kw)
    order.line_items.append(item)
    return item


def test_only_real_products_are_reviewable_priciest_first(session, shop):
    cheap = make_product(session, shop, title="Socks", price=Decimal("5"))
    dear = make_product(session, shop, title="Boots", price=Decimal("120"))
    order = make_order(session, shop, products=[cheap, dear])
    gift = make_product(session, shop, title="Gift card")
    _add(order, gift, gift_card=True)
    _add(order, make_product(session, shop, title="Free sample"), price=Decimal("0"))
    _add(order, None, title="Tip", price=Decimal("3"))
    _add(order, make_product(session, shop, title="Route Package Protection"))
    _add(order, make_product(session, shop, title="Mug", product_type="Shipping Protection"))
    _add(order, make_product(session, shop, title="Hidden", tags=["No-Review"]))
    _add(order, make_product(session, shop, title="Returned"), quantity=1, refunded_quantity=1)
    _add(order, dear, title="Boots (other size)")  # same product twice: one review
    tip_jar = make_product(session, shop, title="Tip jar")
    _add(order, tip_jar)
    unsynced = LineItem(gid="gid://shopify/LineItem/unsynced", product_gid="gid://shopify/Product/0",
                        title="Unknown", price=Decimal("50"))
    order.line_items.append(unsynced)
    session.flush()

    items = reviewable_items(order, shop, products_by_gid(session, order))

    assert [i.product.title for i in items] == ["Boots", "Tip jar", "Socks"]


def test_exclude_tag_follows_the_shop_setting(session, shop):
    product = make_product(session, shop, tags=["sample-pack"])
    order = make_order(session, shop, products=[product])
    assert len(reviewable_items(order, shop, products_by_gid(session, order))) == 1
    shop.settings = {"exclude_product_tag": "sample-pack"}
    assert reviewable_items(order, shop, products_by_gid(session, order)) == []


def test_products_of_another_shop_are_not_used(session, shop):
    from tests.factories import make_shop

    other = make_shop(session)
    foreign = make_product(session, other)
    order = make_order(session, shop, products=[foreign])
    assert products_by_gid(session, order) == {}
    assert reviewable_items(order, shop, products_by_gid(session, order)) == []
