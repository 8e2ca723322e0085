"""The journey record (JourneyStep rows) and the per-block running totals (BlockCounter rows).

Both are written in the same transaction as the transition they describe, so `explain()` and the
statistics never disagree with the enrollments they talk about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from okapp.models import Block, Enrollment, JourneyStep


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
_UPSERT = text(
    "INSERT INTO block_counters (sequence_id, block_id, name, value) "
    "VALUES (:sequence_id, :block_id, :name, :value) "
    "ON CONFLICT (block_id, name) DO UPDATE SET value = block_counters.value + excluded.value")


def bump(session: Session, deltas: Mapping[tuple[int, int, str], int]) -> None:
    """Add deltas to block counters (upsert). Keys are sorted so that concurrent transactions
    lock counter rows in the same order and cannot deadlock on them."""
    rows = [{"sequence_id": s, "block_id": b, "name": n, "value": v}
            for (s, b, n), v in sorted(deltas.items(), key=lambda kv: (kv[0][1], kv[0][2])) if v]
    if rows:
        session.execute(_UPSERT, rows)


def bump_one(session: Session, sequence_id: int, block_id: int, name: str, delta: int = 1) -> None:
    bump(session, {(sequence_id, block_id, name): delta})
