"""Reading Shopify in the background: the first import, lookbacks, periodic reconciliation."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from okapp.db import utcnow
from okapp.models import BlockKind, Sequence, Shop
from okapp.runtime import Runtime, current
from okapp.shopify import sync
from okapp.shopify.tokens import ReauthRequired, ShopifyError

log = logging.getLogger(__name__)

INITIAL_IMPORT_DAYS = 60
RECONCILE_EVERY = timedelta(minutes=30)


def enqueue_initial_import(runtime: Runtime, shop_id: int) -> None:
    runtime.queue("default").enqueue(initial_import, shop_id, job_id=f"initial-import-{shop_id}",
                                     job_timeout=3600, result_ttl=600)


def initial_import(shop_id: int) -> dict:
    """After an install: the catalogue and the last weeks of orders."""
    runtime = current()
    now = utcnow()
    products = sync.import_products(runtime, shop_id)
    orders = sync.import_orders(
        runtime, shop_id, sync.search("updated_at", now - timedelta(days=INITIAL_IMPORT_DAYS), None),
        now)
    return {"products": products, "orders": orders}


def lookback_window(shop: Shop, sequence: Sequence, now: datetime) -> datetime:
    """From the RECRUIT block's start date (shop time), but never older than the age cap."""
    recruit = next((b for b in sequence.blocks if b.kind == BlockKind.RECRUIT.value), None)
    start_text = (recruit.config or {}).get("start_date") if recruit else None
    cap = now - timedelta(days=int(shop.setting("lookback_age_cap_days")))
    if not start_text:
        return cap
    start = datetime.combine(datetime.fromisoformat(str(start_text)).date(), time.min,
                             tzinfo=ZoneInfo(shop.timezone or "UTC"))
    return max(start, cap)


def lookback_import(sequence_id: int) -> dict:
    """Fetch the orders a lookback may recruit, with progress on the Sequence, then recruit them.

    Orders fulfilled since the start date were updated since then (a fulfillment updates its
    order), so `updated_at >= start` finds them all without fetching the whole history.
    """
    runtime = current()
    now = utcnow()
    with runtime.session_scope() as session:
        sequence = session.get(Sequence, sequence_id)
        if sequence is None:
            return {"error": "no such sequence"}
        shop = session.get(Shop, sequence.shop_id)
        query = sync.search("updated_at", lookback_window(shop, sequence, now), None)
        sequence.lookback_state = "running"
        sequence.lookback_done = 0
        sequence.lookback_error = ""
        shop_id = shop.id
    client = sync.AdminClient(runtime, shop_id, shop.domain)

    def progress(**values):
        with runtime.session_scope() as session:
            session.execute(update(Sequence).where(Sequence.id == sequence_id).values(**values))

    try:
        # The engine decides what is reviewable from the catalogue: have it current first.
        sync.import_products(runtime, shop_id, client)
        progress(lookback_total=sync.count_orders(client, query))
        seen = sync.import_orders(runtime, shop_id, query, now, client=client,
                                  on_page=lambda done: progress(lookback_done=done))
        with runtime.session_scope() as session:
            sequence = session.get(Sequence, sequence_id)
            sequence.lookback_done = seen
            sequence.lookback_total = max(sequence.lookback_total, seen)
            recruited = _recruit_lookback(session, sequence, now)
            sequence.lookback_state = "done"
    except ReauthRequired:
        progress(lookback_state="failed",
                 lookback_error="Shopify access has lapsed: open okapp from your Shopify admin "
                                "again, then restart the lookback.")
        raise
    except ShopifyError as exc:
        progress(lookback_state="failed", lookback_error=f"Reading orders from Shopify failed: {exc}")
        raise
    return {"orders": seen, "recruited": recruited, "throttle_waits": client.throttle_waits,
            "calls": client.calls}


def _recruit_lookback(session, sequence: Sequence, now: datetime):
    try:
        from okapp.sequences.recruit import recruit_lookback
    except ImportError:
        return None
    return recruit_lookback(session, sequence, now)


def reconcile_shop(shop_id: int) -> int:
    return sync.reconcile(current(), shop_id, utcnow())


def reconcile_all(runtime: Runtime | None = None, now: datetime | None = None) -> int:
    """Enqueue a reconciliation for every installed shop, at most once per RECONCILE_EVERY.

    Safe to call from every scheduler loop: a Redis key with an expiry lets one caller through.
    """
    runtime = runtime or current()
    if not runtime.redis.set("okapp:reconcile-all", "1", nx=True,
                             ex=int(RECONCILE_EVERY.total_seconds())):
        return 0
    with runtime.session_scope() as session:
        shop_ids = session.scalars(select(Shop.id).where(
            Shop.installed_at.is_not(None), Shop.uninstalled_at.is_(None),
            Shop.needs_reauth.is_(False))).all()
    queue = runtime.queue("default")
    for shop_id in shop_ids:
        queue.enqueue(reconcile_shop, shop_id, job_timeout=1800, result_ttl=600)
    return len(shop_ids)


__all__ = ["enqueue_initial_import", "initial_import", "lookback_import",
           "reconcile_all", "reconcile_shop"]
