"""Order lookup: find an order by its name or the customer's email and see its journey."""

from __future__ import annotations

from flask import Blueprint, abort, g, request
from sqlalchemy import or_, select

from okapp.models import Order
from okapp.views import db, render
from okapp.views.auth import merchant_required

bp = Blueprint("orders", __name__, url_prefix="/orders")

MAX_RESULTS = 25


def find_orders(shop_id: int, query: str) -> list[Order]:
    """Exact order name (with or without '#') or email first; else a prefix match on either."""
    query = query.strip()
    if not query:
        return []
    names = {query, "#" + query.lstrip("#")}
    base = select(Order).where(Order.shop_id == shop_id)
    exact = db().scalars(
        base.where(or_(Order.name.in_(names), Order.email == query.lower()))
        .order_by(Order.placed_at.desc()).limit(MAX_RESULTS)
    ).all()
    if exact:
        return list(exact)
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(db().scalars(
        base.where(or_(Order.name.like("#" + escaped.lstrip("#") + "%", escape="\\"),
                       Order.email.like(escaped + "%", escape="\\")))
        .order_by(Order.placed_at.desc()).limit(MAX_RESULTS)
    ).all())


def _journey(order: Order):
    from okapp.sequences.explain import explain

    return explain(db(), order)


@bp.get("")
@merchant_required
def index():
    query = request.args.get("q", "").strip()
    orders = find_orders(g.shop.id, query) if query else []
    # One match is what a merchant searching "#1042" wants: show its journey straight away.
    order = orders[0] if len(orders) == 1 else None
    journey = _journey(order) if order else None
    return render("orders/index.html", "orders/_results.html",
                  query=query, orders=orders, order=order, journey=journey)


@bp.get("/<int:order_id>")
@merchant_required
def show(order_id: int):
    order = db().get(Order, order_id)
    if order is None or order.shop_id != g.shop.id:
        abort(404)
    return render("orders/show.html", "orders/_journey.html",
                  order=order, journey=_journey(order), query="")
