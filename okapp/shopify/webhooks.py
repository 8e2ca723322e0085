"""Webhooks: store each delivery once, then apply it (on a worker) by topic.

Receiving is kept to the minimum that must happen before answering Shopify: the HMAC check (done
by the view with `shopify_app`), one INSERT that ignores a webhook id seen before, and one enqueue.
Applying is idempotent and order-tolerant: every payload is compared with what is stored by its
`updated_at` (or `X-Shopify-Triggered-At`), and orders we do not have are read from GraphQL.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from okapp.emails.suppression import hashed_entry
from okapp.models import (
    Enrollment,
    JourneyStep,
    Message,
    Order,
    Review,
    ReviewMedia,
    Shop,
    Suppression,
    WebhookEvent,
)
from okapp.runtime import Runtime
from okapp.shopify import orders, sync
from okapp.shopify.api import domain_of
from okapp.shopify.tokens import parse_iso

log = logging.getLogger(__name__)

COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
REDACTED_PAYLOAD = '{"redacted": true}'


_COLUMNS = ("webhook_id", "event_id", "shop_domain", "topic", "api_version", "triggered_at",
            "payload", "received_at")


@functools.lru_cache(maxsize=128)
def _pg_insert(rows: int) -> str:
    """The INSERT for `rows` deliveries (psycopg prepares each size it sees often)."""
    row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ", 0, '')"
    return (f"INSERT INTO webhook_events ({', '.join(_COLUMNS)}, attempts, error)"
            f" VALUES {', '.join([row] * rows)}"
            " ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id, id")


def _naive_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value else None


def store_events(conn: Connection, deliveries: list[dict]) -> list[int | None]:
    """Insert the deliveries whose webhook id is not known yet, in one statement: for each, the
    new row's id, or None when that id was stored before (or earlier in the same list).

    Each delivery is a dict of webhook_id, event_id, shop_domain, topic, api_version,
    triggered_at, payload and received_at. On PostgreSQL this is the hot path of webhook intake,
    so the statement goes straight to psycopg, in the connection's transaction: SQLAlchemy's
    execution layer costs more than the INSERT (about 250 against 100 us of CPU a row,
    measured). It stores naive UTC exactly as `UTCDateTime` does.
    """
    if conn.dialect.name == "postgresql":
        params = [_naive_utc(d[name]) if name in ("triggered_at", "received_at") else d[name]
                  for d in deliveries for name in _COLUMNS]
        cursor = conn.connection.driver_connection.execute(_pg_insert(len(deliveries)), params)
        inserted = dict(cursor.fetchall())
    else:
        stmt = (sqlite.insert(WebhookEvent)
                .values([{**d, "attempts": 0, "error": ""} for d in deliveries])
                .on_conflict_do_nothing(index_elements=["webhook_id"])
                .returning(WebhookEvent.webhook_id, WebhookEvent.id))
        inserted = dict(conn.execute(stmt).all())
    # A webhook id twice in one list is stored once: the first delivery gets the row.
    return [inserted.pop(d["webhook_id"], None) for d in deliveries]


def store_event(conn: Connection, **delivery) -> int | None:
    """`store_events` for one delivery."""
    return store_events(conn, [delivery])[0]


def apply_event(runtime: Runtime, session: Session, event: WebhookEvent, now: datetime) -> str:
    """Apply one stored webhook. Returns what was done, for the event's record and logs."""
    payload = json.loads(event.payload)
    shop = session.scalar(select(Shop).where(Shop.domain == domain_of(event.shop_domain)))
    topic = event.topic
    if topic == "shop/redact":
        return redact_shop(runtime, session, event.shop_domain)
    if shop is None:
        return "ignored: unknown shop"
    if topic == "app/uninstalled":
        # A late retry of an uninstall from before the latest install is stale. (Timestamps
        # are to the second; within a minute it applies, and reopening the app heals that.)
        if (event.triggered_at and shop.installed_at and shop.is_installed
                and event.triggered_at + timedelta(minutes=1) < shop.installed_at):
            return "ignored: the shop reinstalled after this uninstall"
        return uninstall(session, shop, now)
    if topic == "customers/redact":
        return redact_customer(runtime, session, shop, payload)
    if topic == "customers/data_request":
        return data_request(session, shop, payload)
    if not shop.is_installed:
        return "ignored: app not installed"
    if topic in ("fulfillments/create", "fulfillments/update"):
        return _on_fulfillment(runtime, session, shop, payload, event.triggered_at, now)
    if topic == "fulfillment_events/create":
        return _on_fulfillment_event(runtime, session, shop, payload, now)
    if topic in ("orders/updated", "orders/cancelled", "orders/fulfilled",
                 "orders/partially_fulfilled", "refunds/create"):
        return _on_order_change(runtime, session, shop, payload, event.triggered_at, topic, now)
    return f"ignored: topic {topic}"


def _on_fulfillment(runtime, session, shop, payload, triggered_at, now) -> str:
    order = orders.find_order(session, shop.id, payload["order_id"])
    if order is None:
        # We never saw this order: read it whole (it includes this fulfillment).
        sync.refetch_order(runtime, session, shop, orders.gid("Order", payload["order_id"]), now)
        return "order read from Shopify"
    if not orders.apply_fulfillment(session, order, payload, triggered_at):
        return "ignored: older than the stored fulfillment"
    sync.consider(session, [order], now)
    return "fulfillment applied"


def _on_fulfillment_event(runtime, session, shop, payload, now) -> str:
    order = orders.find_order(session, shop.id, payload["order_id"])
    applied = orders.apply_fulfillment_event(session, order, payload) if order else None
    if applied is None:
        sync.refetch_order(runtime, session, shop, orders.gid("Order", payload["order_id"]), now)
        return "order read from Shopify"
    if not applied:
        return "ignored: not a newer delivery"
    sync.consider(session, [order], now)
    return "delivery applied"


def _on_order_change(runtime, session, shop, payload, triggered_at, topic, now) -> str:
    order_id = payload["order_id"] if topic == "refunds/create" else payload["id"]
    order = orders.find_order(session, shop.id, order_id)
    updated = parse_iso(payload.get("updated_at")) or triggered_at
    if (order is not None and topic != "refunds/create" and updated is not None
            and order.shopify_updated_at is not None and updated < order.shopify_updated_at):
        return "ignored: older than the stored order"
    # Refunds and cancellations change amounts and quantities all over the order: read it whole.
    sync.refetch_order(runtime, session, shop, orders.gid("Order", order_id), now)
    return "order read from Shopify"


def uninstall(session: Session, shop: Shop, now: datetime) -> str:
    """Stop everything: the tokens go, and `is_installed` turns false for every send re-check."""
    shop.access_token = None
    shop.refresh_token = None
    shop.access_token_expires_at = None
    shop.refresh_token_expires_at = None
    if shop.uninstalled_at is None:
        shop.uninstalled_at = now
    session.flush()
    return "uninstalled"


def redact_customer(runtime: Runtime, session: Session, shop: Shop, payload: dict) -> str:
    """Erase one customer's personal data from every table (GDPR / `customers/redact`).

    Orders stay (counts and the merchant's statistics need them) with every personal field
    emptied; messages lose recipient, subject and error text; the customer's reviews and their
    media are deleted (their text is the customer's own words). A suppression is kept, hashed:
    an unsubscribe must outlive the erasure, or a future order would email them again.
    """
    customer = payload.get("customer") or {}
    email = (customer.get("email") or "").strip().lower()
    customer_gid = orders.gid("Customer", customer["id"]) if customer.get("id") else None
    order_gids = [orders.gid("Order", i) for i in payload.get("orders_to_redact") or []]
    matches = [Order.gid.in_(order_gids)] if order_gids else []
    if email:
        matches.append(Order.email == email)
    if customer_gid:
        matches.append(Order.customer_gid == customer_gid)
    if not matches:
        return "nothing to redact"
    order_ids = list(session.scalars(
        select(Order.id).where(Order.shop_id == shop.id, or_(*matches))))
    emails = {email} if email else set()
    emails |= set(session.scalars(select(Order.email).where(Order.id.in_(order_ids))))
    emails.discard("")

    enrollment_match = [Enrollment.order_id.in_(order_ids)]
    if emails:
        enrollment_match.append(Enrollment.email.in_(emails))
    enrollment_ids = list(session.scalars(select(Enrollment.id).where(
        Enrollment.shop_id == shop.id, or_(*enrollment_match))))

    session.execute(update(Order).where(Order.id.in_(order_ids)).values(
        email="", customer_gid="", customer_first_name="", customer_last_name="",
        customer_locale="", shipping_country=""))
    session.execute(update(Enrollment).where(Enrollment.id.in_(enrollment_ids)).values(email=""))
    session.execute(update(JourneyStep).where(JourneyStep.enrollment_id.in_(enrollment_ids))
                    .values(detail=""))
    message_match = [Message.enrollment_id.in_(enrollment_ids)]
    if emails:
        message_match.append(Message.recipient.in_(emails))
    session.execute(update(Message).where(Message.shop_id == shop.id, or_(*message_match))
                    .values(recipient="", subject="", error=""))

    review_match = [Review.order_id.in_(order_ids)]
    if emails:
        review_match.append(Review.email.in_(emails))
    reviews = list(session.scalars(select(Review).where(Review.shop_id == shop.id,
                                                        or_(*review_match))))
    _delete_media(runtime, [m.path for r in reviews for m in r.media])
    for review in reviews:
        session.delete(review)

    for address in emails:
        row = session.scalar(select(Suppression).where(Suppression.shop_id == shop.id,
                                                       Suppression.address == address))
        if row is not None:
            hashed = hashed_entry(address)
            exists = session.scalar(select(Suppression.id).where(
                Suppression.shop_id == shop.id, Suppression.address == hashed))
            if exists:
                session.delete(row)
            else:
                row.address = hashed
    _redact_webhook_payloads(session, shop.domain, emails, order_gids, customer)
    session.flush()
    return f"redacted {len(order_ids)} orders, {len(reviews)} reviews"


def _redact_webhook_payloads(session, domain, emails, order_gids, customer) -> None:
    """Stored webhook bodies carry names and addresses too: empty the ones about this customer."""
    needles = list(emails) + [str(customer.get("id") or "")] + [
        g.rsplit("/", 1)[-1] for g in order_gids]
    needles = [n for n in needles if n]
    if not needles:
        return
    session.execute(update(WebhookEvent).where(
        WebhookEvent.shop_domain.in_([domain, domain.removesuffix(".myshopify.com")]),
        or_(*[WebhookEvent.payload.contains(n) for n in needles]),
    ).values(payload=REDACTED_PAYLOAD))


def data_request(session: Session, shop: Shop, payload: dict) -> str:
    """What we hold about a customer, logged for the merchant's records (we hold no extra data)."""
    email = ((payload.get("customer") or {}).get("email") or "").lower()
    count = len(session.scalars(select(Order.id).where(Order.shop_id == shop.id,
                                                       Order.email == email)).all())
    return f"data request noted: {count} orders"


def redact_shop(runtime: Runtime, session: Session, shop_domain: str) -> str:
    """Erase everything about a shop (48 h after uninstall, `shop/redact`)."""
    domain = domain_of(shop_domain)
    shop = session.scalar(select(Shop).where(Shop.domain == domain))
    if shop is not None:
        paths = session.scalars(select(ReviewMedia.path).join(Review).where(
            Review.shop_id == shop.id)).all()
        _delete_media(runtime, list(paths))
        # Every table of a shop cascades from shops.id in the database itself.
        session.execute(delete(Shop).where(Shop.id == shop.id))
    session.execute(delete(WebhookEvent).where(
        WebhookEvent.shop_domain.in_([domain, domain.removesuffix(".myshopify.com")]),
        WebhookEvent.topic != "shop/redact"))
    session.flush()
    return "shop erased"


def _delete_media(runtime: Runtime, paths: list[str]) -> None:
    root = Path(runtime.config.media_root).resolve()
    for relative in paths:
        target = (root / relative).resolve()
        if root in target.parents and target.exists():
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
