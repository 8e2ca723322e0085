"""The journey record (JourneyStep rows) and the per-block running totals (BlockCounter rows,
changed through BlockCounterDelta rows).

Both are written in the same transaction as the transition they describe, so `explain()` and the
statistics never disagree with the enrollments they talk about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import Row, delete, func, insert, select, text, union_all
from sqlalchemy.orm import Session

from okapp.models import Block, BlockCounter, BlockCounterDelta, Enrollment, JourneyStep


def record(session: Session, enrollment: Enrollment, block: Block | None, at: datetime,
           event: str, detail: str = "") -> None:
    session.add(JourneyStep(enrollment_id=enrollment.id, block_id=block.id if block else None,
                            at=at, event=event, detail=detail))


def record_many(session: Session, steps: Iterable[dict]) -> None:
    """Bulk insert of steps given as dicts with enrollment_id, block_id, at, event, detail."""
    rows = list(steps)
    if rows:
        session.execute(insert(JourneyStep), rows)


# (sequence_id, block_id, name) -> delta
CounterDeltas = Counter


# Plain SQL that PostgreSQL and SQLite both speak; compiled once, unlike a built statement.
_ADD_DELTA = text("INSERT INTO block_counter_deltas (sequence_id, block_id, name, value) "
                  "VALUES (:sequence_id, :block_id, :name, :value)")


def bump(session: Session, deltas: Mapping[tuple[int, int, str], int]) -> None:
    """Add deltas to block counters, as new `BlockCounterDelta` rows: an insert locks nothing
    that another transaction's bump needs, so busy sequences do not queue on their counters."""
    rows = [{"sequence_id": s, "block_id": b, "name": n, "value": v}
            for (s, b, n), v in deltas.items() if v]
    if rows:
        session.execute(_ADD_DELTA, rows)


def bump_one(session: Session, sequence_id: int, block_id: int, name: str, delta: int = 1) -> None:
    bump(session, {(sequence_id, block_id, name): delta})


_ADD_TO_TOTAL = text(
    "INSERT INTO block_counters (sequence_id, block_id, name, value) "
    "VALUES (:sequence_id, :block_id, :name, :value) "
    "ON CONFLICT (block_id, name) DO UPDATE SET value = block_counters.value + excluded.value")
FOLD_BATCH = 10_000


def fold_counters(session: Session, limit: int = FOLD_BATCH) -> int:
    """Move up to `limit` deltas into the counters' totals; returns how many were moved.

    Any number of schedulers may fold at once: each DELETE ... RETURNING gets rows no other
    fold gets. Totals are updated in key order, so two folds cannot deadlock on them."""
    oldest = select(BlockCounterDelta.id).order_by(BlockCounterDelta.id).limit(limit)
    moved = session.execute(
        delete(BlockCounterDelta).where(BlockCounterDelta.id.in_(oldest))
        .returning(BlockCounterDelta.sequence_id, BlockCounterDelta.block_id,
                   BlockCounterDelta.name, BlockCounterDelta.value)).all()
    totals = Counter()
    for row in moved:
        totals[(row.block_id, row.name, row.sequence_id)] += row.value
    rows = [{"sequence_id": s, "block_id": b, "name": n, "value": v}
            for (b, n, s), v in sorted(totals.items()) if v]
    if rows:
        session.execute(_ADD_TO_TOTAL, rows)
    return len(moved)


def counter_totals(session: Session, sequence_ids) -> list[Row]:
    """(sequence_id, block_id, name, value) of every counter of the given sequences (a list of
    ids or a select of them): its folded total plus the deltas not folded yet."""
    both = union_all(*(
        select(table.sequence_id, table.block_id, table.name, table.value)
        .where(table.sequence_id.in_(sequence_ids))
        for table in (BlockCounter, BlockCounterDelta))).subquery()
    return session.execute(
        select(both.c.sequence_id, both.c.block_id, both.c.name,
               func.sum(both.c.value).label("value"))
        .group_by(both.c.sequence_id, both.c.block_id, both.c.name)).all()
