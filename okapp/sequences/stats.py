"""Statistics per sequence and per block (DESIGN §4 "Measured like the leaders measure it").

Nothing here counts the big tables. Every figure is a running total in `block_counters`, moved in
the same transaction as the transition it counts: `recruited` (on the RECRUIT block), `waiting`
(where the enrollment waits), `queued`/`sent`/`failed`/`skipped:<reason>` (on a SEND block, by
the tick and the send job), `opened`/`clicked` (by email tracking, first time only),
`exited:<reason>`, and `reviewed`/`reviewed_media`, credited by `attribute_reviews` to the last
email sent before the review. Reading a sequence page is one indexed query over a few dozen rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from okapp.models import (
    Block,
    BlockKind,
    EmailKind,
    EmailTemplate,
    Enrollment,
    Message,
    MessageState,
    Review,
    ReviewMedia,
    Sequence,
)
from okapp.sequences.journal import bump, counter_totals


@dataclass
class Counts:
    recruited: int = 0
    waiting: int = 0
    queued: int = 0
    sent: int = 0
    failed: int = 0
    opened: int = 0
    clicked: int = 0
    reviewed: int = 0
    reviewed_with_media: int = 0
    requested: int = 0  # orders sent a review request (the review rate's denominator)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> messages
    exited: dict[str, int] = field(default_factory=dict)  # reason -> enrollments

    @property
    def review_rate(self) -> float | None:
        """Reviews ÷ orders sent a request; None before any request went out."""
        return self.reviewed / self.requested if self.requested else None

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add(self, name: str, value: int, is_request: bool = False) -> None:
        if name.startswith("skipped:"):
            reason = name.split(":", 1)[1]
            self.skipped[reason] = self.skipped.get(reason, 0) + value
        elif name.startswith("exited:"):
            reason = name.split(":", 1)[1]
            self.exited[reason] = self.exited.get(reason, 0) + value
        elif name == "reviewed_media":
            self.reviewed_with_media += value
        elif hasattr(self, name) and name != "requested":
            setattr(self, name, getattr(self, name) + value)
        if name == "sent" and is_request:
            self.requested += value


def _request_blocks(session: Session, sequence_ids: list[int]) -> set[int]:
    """SEND blocks whose email is a review request (their `sent` is the rate's denominator)."""
    rows = session.execute(
        select(Block.id, Block.config).where(Block.sequence_id.in_(sequence_ids),
                                             Block.kind == BlockKind.SEND.value)).all()
    template_ids = {r.config.get("email_template_id") for r in rows} - {None}
    kinds = dict(session.execute(select(EmailTemplate.id, EmailTemplate.kind)
                                 .where(EmailTemplate.id.in_(template_ids))).all())
    return {r.id for r in rows
            if kinds.get(r.config.get("email_template_id")) == EmailKind.REQUEST.value}


def sequence_counts(session: Session, shop_id: int) -> dict[int, Counts]:
    """Counts of every sequence of the shop, by sequence id (absent: nothing counted yet)."""
    rows = counter_totals(session, select(Sequence.id).where(Sequence.shop_id == shop_id))
    requests = _request_blocks(session, list({r.sequence_id for r in rows})) if rows else set()
    out: dict[int, Counts] = defaultdict(Counts)
    for r in rows:
        out[r.sequence_id].add(r.name, r.value, r.block_id in requests)
    return dict(out)


def block_counts(session: Session, sequence: Sequence) -> dict[int, Counts]:
    """Counts of each block of the sequence, by block id (every block present)."""
    requests = _request_blocks(session, [sequence.id])
    out = {b.id: Counts() for b in sequence.blocks}
    for row in counter_totals(session, [sequence.id]):
        out.setdefault(row.block_id, Counts()).add(row.name, row.value, row.block_id in requests)
    return out


def combined(parts: Iterable[Counts]) -> Counts:
    """The sum of several lines: a sequence's total from its `block_counts`, with no query."""
    out = Counts()
    for part in parts:
        for f in fields(Counts):
            value = getattr(part, f.name)
            if isinstance(value, dict):
                mine = getattr(out, f.name)
                for key, n in value.items():
                    mine[key] = mine.get(key, 0) + n
            else:
                setattr(out, f.name, getattr(out, f.name) + value)
    return out


def totals(session: Session, sequence: Sequence) -> Counts:
    """The sequence's own line: the sum over its blocks."""
    return sequence_counts(session, sequence.shop_id).get(sequence.id, Counts())


# -- crediting reviews ---------------------------------------------------------------------------

def attribute_reviews(session: Session, now: datetime, limit: int = 500) -> int:
    """Credit reviews not yet counted to the last email sent for their order before the review:
    `reviewed` (and `reviewed_media`) on that SEND block, once per enrollment. A review written
    before any email, or for an order in no sequence, is marked and counts nowhere."""
    query = (select(Review.id, Review.order_id, Review.created_at)
             .where(Review.attributed_at.is_(None)).order_by(Review.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    reviews = session.execute(query).all()
    if not reviews:
        return 0
    ids = [r.id for r in reviews]
    order_ids = {r.order_id for r in reviews if r.order_id is not None}
    with_media = set(session.scalars(select(ReviewMedia.review_id)
                                     .where(ReviewMedia.review_id.in_(ids))))
    # Orders already credited (an earlier review of another product of the same order).
    credited: dict[int, set[str]] = defaultdict(set)
    for order_id, has_media in session.execute(
        select(Review.order_id, func.count(ReviewMedia.id))
        .outerjoin(ReviewMedia, ReviewMedia.review_id == Review.id)
        .where(Review.order_id.in_(order_ids), Review.attributed_at.is_not(None))
        .group_by(Review.id, Review.order_id)):
        credited[order_id].add("reviewed")
        if has_media:
            credited[order_id].add("reviewed_media")
    sent = session.execute(
        select(Enrollment.order_id, Enrollment.sequence_id, Message.block_id, Message.sent_at)
        .join(Message, Message.enrollment_id == Enrollment.id)
        .where(Enrollment.order_id.in_(order_ids), Message.state == MessageState.SENT.value)
    ).all()
    deltas: dict = defaultdict(int)
    for review in reviews:
        before = [s for s in sent if s.order_id == review.order_id and s.sent_at is not None
                  and s.sent_at <= review.created_at]
        if not before:
            continue
        last = max(before, key=lambda s: s.sent_at)
        names = ["reviewed"] + (["reviewed_media"] if review.id in with_media else [])
        for name in names:
            if name not in credited[review.order_id]:
                deltas[(last.sequence_id, last.block_id, name)] += 1
                credited[review.order_id].add(name)
    session.execute(update(Review).where(Review.id.in_(ids)).values(attributed_at=now)
                    .execution_options(synchronize_session=False))
    bump(session, deltas)
    return len(ids)
