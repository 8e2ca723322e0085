"""Per-sequence and per-block statistics from running totals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from okapp.emails.tracking import record_click, record_open
from okapp.models import BlockCounter, BlockCounterDelta, BlockKind, Review, ReviewMedia
from okapp.sequences.journal import bump, bump_one, fold_counters
from okapp.sequences.recruit import consider_order
from okapp.sequences.scheduler import tick
from okapp.sequences.stats import block_counts, sequence_counts
from tests.engine_support import NOW, blocks_of, counters, messages, running, work
from tests.factories import make_order, make_product


def test_counts_follow_the_journeys(session, runtime, shop):
    sequence = running(session, shop, "review_request_reminder")
    product = make_product(session, shop)
    orders = [make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=7, hours=1))
              for _ in range(3)]
    late = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(hours=1))
    cancelled = make_order(session, shop, [product], fulfilled_at=NOW - timedelta(days=7, hours=1))
    for order in [*orders, late, cancelled]:
        consider_order(session, order, NOW - timedelta(minutes=30))
    cancelled.cancelled_at = NOW - timedelta(minutes=10)
    session.commit()
    tick(runtime, NOW)
    work(runtime)
    first = messages(session)[0]
    record_open(session, first.id, NOW + timedelta(hours=1))
    record_click(session, first.id, NOW + timedelta(hours=2))
    review = Review(shop_id=shop.id, product_id=product.id, order_id=orders[0].id,
                    email=orders[0].email, rating=5, created_at=NOW + timedelta(days=400),
                    updated_at=NOW)
    review.media.append(ReviewMedia(kind="photo", path="p.jpg", content_type="image/jpeg",
                                    size_bytes=1))
    session.add(review)
    session.commit()
    tick(runtime, NOW + timedelta(minutes=1))  # credits the review

    wait, follow_up = blocks_of(sequence, BlockKind.WAIT)
    request, _reminder = blocks_of(sequence, BlockKind.SEND)
    per_block = block_counts(session, sequence)
    assert per_block[sequence.blocks[0].id].recruited == 5
    assert per_block[wait.id].waiting == 1  # the late order
    assert per_block[wait.id].exited == {"order_cancelled": 1}
    assert per_block[follow_up.id].waiting == 3
    assert (per_block[request.id].sent, per_block[request.id].opened,
            per_block[request.id].clicked) == (3, 1, 1)
    assert (per_block[request.id].reviewed, per_block[request.id].reviewed_with_media) == (1, 1)
    totals = sequence_counts(session, shop.id)[sequence.id]
    assert (totals.recruited, totals.waiting, totals.sent, totals.requested) == (5, 4, 3, 3)
    assert totals.review_rate == 1 / 3


def test_folding_the_counters_keeps_every_total(session, runtime, shop):
    sequence = running(session, shop, "review_request")
    recruit, wait = blocks_of(sequence, BlockKind.RECRUIT)[0], blocks_of(sequence, BlockKind.WAIT)[0]
    bump(session, {(sequence.id, recruit.id, "recruited"): 3, (sequence.id, wait.id, "waiting"): 3})
    session.commit()
    bump(session, {(sequence.id, wait.id, "waiting"): -1, (sequence.id, recruit.id, "recruited"): 1})
    bump_one(session, sequence.id, wait.id, "exited:order_cancelled")
    session.commit()
    expected = {(recruit.id, "recruited"): 4, (wait.id, "waiting"): 2,
                (wait.id, "exited:order_cancelled"): 1}
    assert counters(session, sequence) == expected

    assert fold_counters(session, limit=2) == 2  # part now, the rest on the next loop
    session.commit()
    assert counters(session, sequence) == expected
    assert fold_counters(session) == 3
    session.commit()
    assert counters(session, sequence) == expected
    assert session.scalar(select(func.count()).select_from(BlockCounterDelta)) == 0
    assert {(c.block_id, c.name): c.value for c in session.scalars(select(BlockCounter))} == expected
    assert fold_counters(session) == 0


@pytest.mark.postgres
def test_two_transactions_count_on_one_block_without_waiting_for_each_other(runtime, shop,
                                                                            session):
    """Every recruit, advance and send of a sequence counts on the same few blocks: a bump must
    not lock anything another open transaction's bump needs."""
    sequence = running(session, shop, "review_request")
    wait = blocks_of(sequence, BlockKind.WAIT)[0]
    session.commit()
    key = (sequence.id, wait.id, "waiting")
    with runtime.sessions() as first, runtime.sessions() as second:
        bump(first, {key: 1})
        first.flush()
        second.execute(text("SET LOCAL lock_timeout = '2s'"))
        bump(second, {key: 1})  # raised LockNotAvailable when bumps updated the total in place
        second.commit()
        first.commit()
    with runtime.sessions() as check:
        fold_counters(check)
        check.commit()
        assert counters(check, sequence)[(wait.id, "waiting")] == 2
