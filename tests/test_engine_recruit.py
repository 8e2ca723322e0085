"""Recruitment rules (DESIGN §4) with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from okapp.emails.suppression import suppress
from okapp.models import BlockKind, Enrollment, RecruitSkip, Review
from okapp.sequences.lifecycle import delete_sequence, start_sequence, stop_sequence
from okapp.sequences.recruit import (
    RULE_ORDER,
    SKIP_REASONS,
    consider_order,
    lookback_preview,
    recruit_lookback,
    skip_reason,
)
from okapp.sequences.scheduler import tick
from okapp.sequences.templates import create_sequence
from tests.engine_support import NOW, blocks_of, events, work
from tests.engine_support import running as running_since
from tests.factories import make_order, make_product


def running(session, shop, template="review_request", start="2026-11-01",
            started=NOW - timedelta(days=1)):
    return running_since(session, shop, template, start, started)


def skip_of(session, order):
    return session.scalar(select(RecruitSkip.reason).where(RecruitSkip.order_id == order.id))


def test_a_fulfilled_paid_order_is_recruited_once_and_waits(session, shop):
    sequence = running(session, shop)
    order = make_order(session, shop, fulfilled_at=NOW - timedelta(hours=2))
    first = consider_order(session, order, NOW)
    again = consider_order(session, order, NOW + timedelta(minutes=5))
    assert first is not None and again.id == first.id
    assert session.scalar(select(Enrollment.id).where(Enrollment.order_id == order.id)) == first.id
    wait = sequence.blocks[1]
    assert first.block_id == wait.id
    # 7 domestic days after fulfillment, on the shop's wall clock.
    assert first.due_at == NOW - timedelta(hours=2) + timedelta(days=7)


# -- every rule that keeps an order out, with its recorded reason ----------------------------

def _order(session, shop, **kw):
    return make_order(session, shop, fulfilled_at=kw.pop("fulfilled_at", NOW - timedelta(hours=3)),
                      **kw)


@pytest.mark.parametrize("change, reason", [
    (lambda o: setattr(o, "fulfilled_at", None), "not_fulfilled"),
    (lambda o: setattr(o, "test", True), "test_order"),
    (lambda o: setattr(o, "financial_status", "PENDING"), "not_paid"),
    (lambda o: setattr(o, "cancelled_at", NOW), "cancelled"),
    (lambda o: setattr(o, "refunded", True), "refunded"),
    (lambda o: setattr(o, "financial_status", "PARTIALLY_REFUNDED"), "partially_refunded"),
    (lambda o: setattr(o, "email", ""), "no_email"),
    (lambda o: setattr(o, "review_requested_at", NOW - timedelta(days=30)), "already_requested"),
    (lambda o: [setattr(li, "gift_card", True) for li in o.line_items], "no_reviewable_items"),
])
def test_each_rule_records_why_an_order_is_not_recruited(session, shop, change, reason):
    running(session, shop)
    order = _order(session, shop)
    change(order)
    session.flush()
    assert consider_order(session, order, NOW) is None
    assert skip_of(session, order) == reason
    assert RULE_ORDER.index(reason) >= 0 and SKIP_REASONS[reason]


def test_suppressed_address_and_domain(session, shop):
    running(session, shop)
    one = _order(session, shop, email="jo@blocked.example")
    two = _order(session, shop, email="al@nope.example")
    suppress(session, shop.id, "jo@blocked.example", "unsubscribe", NOW)
    suppress(session, shop.id, "*@nope.example", "blocklist", NOW)
    assert consider_order(session, one, NOW) is None and skip_of(session, one) == "suppressed"
    assert consider_order(session, two, NOW) is None and skip_of(session, two) == "suppressed"


def test_date_range_in_the_shop_time_zone(session, shop):
    sequence = running(session, shop, start="2026-11-02")
    sequence.blocks[0].config = {"start_date": "2026-11-02", "end_date": "2026-11-02"}
    session.flush()
    # 03:00 UTC on 2 Nov is still 1 Nov in New York: before the start date.
    early = _order(session, shop, fulfilled_at=datetime(2026, 11, 2, 3, 0, tzinfo=UTC))
    # 04:30 UTC on 3 Nov is 23:30 on 2 Nov in New York: inside.
    late_evening = _order(session, shop, fulfilled_at=datetime(2026, 11, 3, 4, 30, tzinfo=UTC))
    after = _order(session, shop, fulfilled_at=datetime(2026, 11, 3, 5, 30, tzinfo=UTC))
    now = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)
    assert consider_order(session, early, now) is None
    assert skip_of(session, early) == "before_start_date"
    assert consider_order(session, late_evening, now) is not None
    assert consider_order(session, after, now) is None
    assert skip_of(session, after) == "after_end_date"


def test_a_skipped_order_recruited_later_loses_its_skip_record(session, shop):
    running(session, shop)
    order = _order(session, shop, fulfilled_at=None)
    assert consider_order(session, order, NOW) is None and skip_of(session, order) == "not_fulfilled"
    order.fulfilled_at = NOW - timedelta(hours=1)  # the last parcel shipped
    session.flush()
    assert consider_order(session, order, NOW) is not None
    assert skip_of(session, order) is None


def test_no_running_sequence_recruits_nothing(session, shop):
    order = _order(session, shop)
    assert consider_order(session, order, NOW) is None
    assert session.scalar(select(RecruitSkip.id)) is None


def test_a_request_in_flight_in_another_sequence_blocks_recruitment(session, shop, runtime):
    first = running(session, shop, start="2026-10-01")
    order = _order(session, shop, fulfilled_at=NOW - timedelta(days=8))
    consider_order(session, order, NOW - timedelta(hours=1))
    session.commit()
    tick(runtime, NOW)  # the request is queued
    stop_sequence(session, first, NOW)
    second = running(session, shop, start="2026-10-01", started=NOW + timedelta(minutes=1))
    session.refresh(order)
    assert order.review_requested_at is None  # queued, not sent yet: the message row counts
    assert skip_reason(session, second, order, NOW, lookback=True) == "already_requested"


def test_a_sent_request_is_remembered_after_its_sequence_is_deleted(session, shop, runtime):
    first = running(session, shop, start="2026-10-01")
    order = _order(session, shop, fulfilled_at=NOW - timedelta(days=8))
    consider_order(session, order, NOW - timedelta(hours=1))
    session.commit()
    tick(runtime, NOW)
    work(runtime)
    stop_sequence(session, first, NOW)
    delete_sequence(session, first)
    session.commit()
    session.refresh(order)
    assert order.review_requested_at is not None
    second = running(session, shop, start="2026-10-01", started=NOW + timedelta(minutes=1))
    assert consider_order(session, order, NOW + timedelta(minutes=2)) is None
    assert skip_of(session, order) == "already_requested"
    assert second.status == "running"


def test_delivery_arriving_later_moves_the_wait(session, shop):
    sequence = running(session, shop)
    wait = blocks_of(sequence, BlockKind.WAIT)[0]
    wait.config = {"anchor": "delivery", "domestic_days": 3, "international_days": 3}
    session.commit()
    fulfilled = NOW - timedelta(days=1)
    order = _order(session, shop, fulfilled_at=fulfilled)
    enrollment = consider_order(session, order, NOW)
    assert enrollment.due_at == fulfilled + timedelta(days=14)  # fallback until delivered
    order.delivered_at = NOW + timedelta(days=2)
    session.flush()
    consider_order(session, order, NOW + timedelta(days=2))
    session.refresh(enrollment)
    assert enrollment.due_at == NOW + timedelta(days=5)
    assert "rescheduled" in events(session, enrollment)


# -- lookback ------------------------------------------------------------------------------------

def _lookback_shop(session, shop):
    """Orders fulfilled before the sequence starts: two of Ann's, one reviewed by Bob, one
    too old, one of Cy's."""
    product = make_product(session, shop)
    ann_old = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=60),
                         email="ann@example.com")
    ann_new = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=20),
                         email="ann@example.com")
    bob = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=10),
                     email="bob@example.com")
    session.add(Review(shop_id=shop.id, product_id=product.id, email="bob@example.com",
                       rating=5, created_at=NOW - timedelta(days=100)))
    old = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=200),
                     email="old@example.com")
    cy = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=8),
                    email="cy@example.com")
    session.commit()
    return ann_old, ann_new, bob, old, cy


def test_lookback_preview_counts_without_writing(session, shop):
    ann_old, ann_new, bob, old, cy = _lookback_shop(session, shop)
    sequence = create_sequence(session, shop, "review_request", NOW)
    sequence.blocks[0].config = {"start_date": "2026-01-01", "end_date": ""}
    session.commit()
    preview = lookback_preview(session, sequence, NOW)
    assert preview.would_recruit == 2  # Ann's latest and Cy's
    assert preview.skipped == {"too_old": 1, "not_most_recent": 1, "already_reviewed": 1}
    assert preview.by_age == {"1–4 weeks": 2}
    assert preview.hours_to_send == 1
    session.rollback()
    assert session.scalar(select(RecruitSkip.id)) is None
    assert session.scalar(select(Enrollment.id)) is None


def test_lookback_recruits_most_recent_orders_and_drips(session, shop):
    shop.settings = {"lookback_hourly_rate": 1}
    ann_old, ann_new, bob, old, cy = _lookback_shop(session, shop)
    sequence = create_sequence(session, shop, "review_request", NOW - timedelta(days=1))
    sequence.blocks[0].config = {"start_date": "2026-01-01", "end_date": ""}
    assert start_sequence(session, sequence, NOW).lookback
    # While the import runs, the sync leaves past orders to the lookback.
    assert consider_order(session, ann_old, NOW) is None and skip_of(session, ann_old) is None
    sequence.lookback_state = "done"
    assert recruit_lookback(session, sequence, NOW) == 2
    assert recruit_lookback(session, sequence, NOW) == 0  # idempotent
    session.commit()
    enrolled = {e.order_id: e for e in session.scalars(select(Enrollment))}
    assert set(enrolled) == {ann_new.id, cy.id}
    assert all(e.lookback for e in enrolled.values())
    assert {skip_of(session, o) for o in (ann_old, bob, old)} == {
        "not_most_recent", "already_reviewed", "too_old"}
    # Overdue: due now, one per hour (rate 1), oldest first, inside the send window.
    assert enrolled[ann_new.id].due_at == NOW
    assert enrolled[cy.id].due_at == NOW + timedelta(hours=1)
