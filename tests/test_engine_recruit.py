"""Recruitment rules (DESIGN §4) with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from okapp.models import Enrollment, RecruitSkip
from okapp.sequences.lifecycle import start_sequence
from okapp.sequences.recruit import consider_order
from okapp.sequences.templates import create_sequence
from tests.factories import make_order

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def running(session, shop, template="review_request", start="2026-11-01"):
    sequence = create_sequence(session, shop, template, NOW - timedelta(days=3))
    sequence.blocks[0].config = {"start_date": start, "end_date": ""}
    start_sequence(session, sequence, NOW - timedelta(days=1))
    session.flush()
    return sequence


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
