"""Recruitment (DESIGN §4): which orders enter the running sequence, and why the others do not.

`consider_order` is called by the Shopify sync after every order or fulfillment change; it is
idempotent (the unique (sequence, order) key and insert-or-skip make a webhook, a sync and a
lookback yield one enrollment). Every order it does not recruit gets a `RecruitSkip` row naming
the rule. A lookback applies two more rules (each customer's most recent order; no customer who
already reviewed one of the order's products) and an age cap; `lookback_preview` counts all of it
without writing anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from okapp.emails.suppression import suppression_reason
from okapp.models import (
    Block,
    BlockKind,
    Enrollment,
    EnrollmentState,
    Message,
    Order,
    RecruitSkip,
    Review,
    Sequence,
    SequenceStatus,
    Shop,
)
from okapp.sequences.advance import advance
from okapp.sequences.items import products_by_gid, reviewable_items
from okapp.sequences.store import (
    ACTIVE_MESSAGE_STATES,
    load_context,
    load_travellers,
    save_outcomes,
)
from okapp.sequences.timing import SendWindow, drip_slot, local_date

SKIP_REASONS: dict[str, str] = {
    "not_fulfilled": "not fully fulfilled yet",
    "before_start_date": "fulfilled before the sequence's start date",
    "after_end_date": "fulfilled after the sequence's end date",
    "test_order": "a test order",
    "not_paid": "not paid",
    "cancelled": "cancelled",
    "refunded": "refunded",
    "partially_refunded": "partially refunded",
    "no_email": "no email address",
    "suppressed": "the address must not be emailed (unsubscribed, bounced or blocked)",
    "already_requested": "a review request was already sent for this order",
    "no_reviewable_items": "nothing in it can be reviewed (gift cards, tips, samples, excluded)",
    "too_old": "older than the lookback age cap",
    "not_most_recent": "the customer has a more recent order (lookback keeps the latest)",
    "already_reviewed": "the customer already reviewed one of its products",
}
RULE_ORDER = list(SKIP_REASONS)


def running_sequence(session: Session, shop_id: int) -> Sequence | None:
    return session.scalar(select(Sequence).where(
        Sequence.shop_id == shop_id, Sequence.status == SequenceStatus.RUNNING.value))


def recruit_block(sequence: Sequence) -> Block:
    return next(b for b in sequence.blocks if b.kind == BlockKind.RECRUIT.value)


def date_range(sequence: Sequence) -> tuple[date | None, date | None]:
    config = recruit_block(sequence).config or {}
    start = config.get("start_date") or None
    end = config.get("end_date") or None
    return (date.fromisoformat(start) if start else None, date.fromisoformat(end) if end else None)


def is_lookback_order(sequence: Sequence, order: Order) -> bool:
    """An order fulfilled before the sequence (re)started is recruited by the lookback."""
    return (order.fulfilled_at is not None and sequence.started_at is not None
            and order.fulfilled_at < sequence.started_at)


def skip_reason(session: Session, sequence: Sequence, order: Order, now: datetime,
                lookback: bool) -> str | None:
    """The first rule that keeps this order out of the sequence, or None when it is eligible."""
    shop: Shop = sequence.shop
    if order.fulfilled_at is None:
        return "not_fulfilled"
    start, end = date_range(sequence)
    fulfilled_day = local_date(shop, order.fulfilled_at)
    if start is None or fulfilled_day < start:
        return "before_start_date"
    if end is not None and fulfilled_day > end:
        return "after_end_date"
    if order.test:
        return "test_order"
    status = (order.financial_status or "").upper()
    if order.cancelled_at is not None:
        return "cancelled"
    if order.refunded or status == "REFUNDED":
        return "refunded"
    if order.partially_refunded or status == "PARTIALLY_REFUNDED":
        return "partially_refunded"
    if status != "PAID":
        return "not_paid"
    if not order.email:
        return "no_email"
    if suppression_reason(session, shop.id, order.email):
        return "suppressed"
    if order.review_requested_at is not None or _request_in_flight(session, order):
        return "already_requested"
    products = products_by_gid(session, order)
    items = reviewable_items(order, shop, products)
    if not items:
        return "no_reviewable_items"
    if lookback:
        cap = int(shop.setting("lookback_age_cap_days"))
        if order.fulfilled_at < now - timedelta(days=cap):
            return "too_old"
        if _has_newer_order(session, order):
            return "not_most_recent"
        if _reviewed_any(session, order, [i.product.id for i in items]):
            return "already_reviewed"
    return None


def _request_in_flight(session: Session, order: Order) -> bool:
    """A request email queued, being sent or sent for this order by any sequence of the shop."""
    return session.scalar(
        select(Message.id).join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(Enrollment.order_id == order.id, Message.kind == "request",
               Message.state.in_(ACTIVE_MESSAGE_STATES)).limit(1)
    ) is not None


def _has_newer_order(session: Session, order: Order) -> bool:
    newer = select(Order.id).where(
        Order.shop_id == order.shop_id, Order.email == order.email, Order.id != order.id,
        Order.fulfilled_at.is_not(None), Order.cancelled_at.is_(None),
        (Order.fulfilled_at > order.fulfilled_at)
        | and_(Order.fulfilled_at == order.fulfilled_at, Order.id > order.id),
    ).limit(1)
    return session.scalar(newer) is not None


def _reviewed_any(session: Session, order: Order, product_ids: list[int]) -> bool:
    return session.scalar(
        select(Review.id).where(Review.shop_id == order.shop_id, Review.email == order.email,
                                Review.product_id.in_(product_ids)).limit(1)
    ) is not None


def _record_skip(session: Session, sequence: Sequence, order: Order, reason: str,
                 now: datetime) -> None:
    existing = session.scalar(select(RecruitSkip).where(
        RecruitSkip.sequence_id == sequence.id, RecruitSkip.order_id == order.id))
    if existing is None:
        with session.begin_nested():  # a concurrent recorder may win the unique key; fine
            session.add(RecruitSkip(shop_id=order.shop_id, sequence_id=sequence.id,
                                    order_id=order.id, reason=reason, at=now))
    elif existing.reason != reason:
        existing.reason, existing.at = reason, now


def _enroll(session: Session, sequence: Sequence, order: Order, now: datetime, lookback: bool,
            not_before: datetime | None = None) -> Enrollment:
    """Insert-or-skip the enrollment, then move it to its first wait (never past a SEND: the
    scheduler creates messages)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as insert_or_skip
    else:
        from sqlalchemy.dialects.sqlite import insert as insert_or_skip
    start = recruit_block(sequence)
    new_id = session.scalar(
        insert_or_skip(Enrollment).values(
            shop_id=order.shop_id, sequence_id=sequence.id, order_id=order.id,
            block_id=start.id, email=order.email, state=EnrollmentState.WAITING.value,
            due_at=now, exit_reason="", lookback=lookback, recruited_at=now, updated_at=now,
            entered_at=now,
        ).on_conflict_do_nothing(index_elements=["sequence_id", "order_id"])
        .returning(Enrollment.id)
    )
    if new_id is not None:
        session.execute(delete(RecruitSkip).where(RecruitSkip.sequence_id == sequence.id,
                                                  RecruitSkip.order_id == order.id))
        detail = "lookback" if lookback else "fulfilled while the sequence runs"
        travellers = load_travellers(session, [new_id])
        travellers[0].counted_waiting = False
        ctx = load_context(session, now, travellers, shops={sequence.shop_id: sequence.shop})
        outcome = advance(travellers[0], ctx, arriving=True, not_before=not_before,
                          stop_before_send=True)
        outcome.steps.insert(0, (start.id, now, "recruited", detail))
        outcome.counters[(sequence.id, start.id, "recruited")] += 1
        outcome.changed = True
        save_outcomes(session, travellers, [outcome], now, "")
    return session.scalar(select(Enrollment).where(
        Enrollment.sequence_id == sequence.id, Enrollment.order_id == order.id)
        .execution_options(populate_existing=True))


def consider_order(session: Session, order: Order, now: datetime) -> Enrollment | None:
    """Recruit `order` into its shop's running sequence if the rules allow; otherwise record
    why not. An order already enrolled has its wait recomputed (a delivery may have arrived)."""
    sequence = running_sequence(session, order.shop_id)
    if sequence is None:
        return None
    enrollment = session.scalar(select(Enrollment).where(
        Enrollment.sequence_id == sequence.id, Enrollment.order_id == order.id))
    if enrollment is not None:
        _refresh_wait(session, enrollment, now)
        return enrollment
    lookback = is_lookback_order(sequence, order)
    if lookback and sequence.lookback_state == "running":
        return None  # the lookback import is still fetching; recruit_lookback decides after it
    reason = skip_reason(session, sequence, order, now, lookback)
    if reason is not None:
        _record_skip(session, sequence, order, reason, now)
        session.flush()
        return None
    return _enroll(session, sequence, order, now, lookback)


def _refresh_wait(session: Session, enrollment: Enrollment, now: datetime) -> None:
    """A delivery date may have arrived: move the due time of an enrollment waiting on it."""
    from okapp.sequences.blocks import recompute_one

    block = enrollment.block
    if (enrollment.state == EnrollmentState.WAITING.value and block is not None
            and block.kind == BlockKind.WAIT.value):
        recompute_one(session, enrollment, block, now, "the order's fulfillment changed")
        session.flush()


# -- lookback ------------------------------------------------------------------------------------

@dataclass
class LookbackPreview:
    """What a lookback would do, computed without writing anything."""

    would_recruit: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> orders
    by_age: dict[str, int] = field(default_factory=dict)  # age bucket -> orders to recruit
    oldest: datetime | None = None
    newest: datetime | None = None
    hours_to_send: int = 0  # at the shop's hourly rate

    @property
    def total(self) -> int:
        return self.would_recruit + sum(self.skipped.values())


AGE_BUCKETS = ((7, "under 1 week"), (30, "1–4 weeks"), (90, "1–3 months"), (180, "3–6 months"),
               (365, "6–12 months"), (10**6, "over a year"))


def age_bucket(age: timedelta) -> str:
    for days, label in AGE_BUCKETS:
        if age < timedelta(days=days):
            return label
    return AGE_BUCKETS[-1][1]


def _lookback_orders(session: Session, sequence: Sequence, now: datetime):
    """Orders of the shop fulfilled in range before now, not yet in this sequence."""
    start, end = date_range(sequence)
    enrolled = select(Enrollment.order_id).where(Enrollment.sequence_id == sequence.id)
    query = (select(Order).where(Order.shop_id == sequence.shop_id,
                                 Order.fulfilled_at.is_not(None), Order.fulfilled_at <= now,
                                 Order.id.not_in(enrolled))
             .order_by(Order.fulfilled_at.desc(), Order.id.desc()))
    if start is not None:
        # A day's margin each side: the exact comparison happens in the shop's time zone.
        query = query.where(Order.fulfilled_at >= datetime.combine(
            start - timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo))
    if end is not None:
        query = query.where(Order.fulfilled_at < datetime.combine(
            end + timedelta(days=2), datetime.min.time(), tzinfo=now.tzinfo))
    return session.scalars(query.execution_options(yield_per=500))


def lookback_preview(session: Session, sequence: Sequence, now: datetime) -> LookbackPreview:
    """Counts for the merchant before a lookback starts: nothing is written."""
    preview = LookbackPreview()
    skipped: Counter = Counter()
    seen_emails: set[str] = set()
    with session.no_autoflush:
        for order in _lookback_orders(session, sequence, now):
            reason = skip_reason(session, sequence, order, now, lookback=True)
            if reason is None and order.email in seen_emails:
                reason = "not_most_recent"  # newest first: a second order of a customer
            if reason in ("before_start_date", "after_end_date", "not_fulfilled"):
                continue  # outside the range: not part of the lookback at all
            if reason is not None:
                skipped[reason] += 1
                continue
            seen_emails.add(order.email)
            preview.would_recruit += 1
            bucket = age_bucket(now - order.fulfilled_at)
            preview.by_age[bucket] = preview.by_age.get(bucket, 0) + 1
            preview.newest = preview.newest or order.fulfilled_at
            preview.oldest = order.fulfilled_at
    preview.skipped = {r: skipped[r] for r in RULE_ORDER if skipped[r]}
    preview.by_age = {label: preview.by_age[label] for _, label in AGE_BUCKETS
                      if label in preview.by_age}
    rate = max(1, int(sequence.shop.setting("lookback_hourly_rate")))
    preview.hours_to_send = -(-preview.would_recruit // rate)
    return preview


def recruit_lookback(session: Session, sequence: Sequence, now: datetime) -> int:
    """Recruit the past orders in range (already synced into the database) under the lookback
    rules; their first sends drip at the shop's hourly rate inside the send window.
    Returns how many were recruited. Safe to run again: enrolled orders are left alone."""
    if sequence.status != SequenceStatus.RUNNING.value:
        return 0
    rate = max(1, int(sequence.shop.setting("lookback_hourly_rate")))
    window = SendWindow.of(sequence.shop)
    recruited = 0
    slots: dict[int, datetime] = {}
    orders = list(_lookback_orders(session, sequence, now))
    orders.reverse()  # oldest first: they have waited longest
    for order in orders:
        if not is_lookback_order(sequence, order):
            enrollment = consider_order(session, order, now)
            recruited += enrollment is not None and enrollment.recruited_at == now
            continue
        reason = skip_reason(session, sequence, order, now, lookback=True)
        if reason is not None:
            if reason not in ("before_start_date", "after_end_date"):
                _record_skip(session, sequence, order, reason, now)
            continue
        slot = recruited // rate
        if slot not in slots:
            slots[slot] = drip_slot(window, now, slot)
        _enroll(session, sequence, order, now, lookback=True, not_before=slots[slot])
        recruited += 1
    session.flush()
    return recruited
