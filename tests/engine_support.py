"""Helpers for the engine tests: a running sequence from a template, a burst worker, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq import SimpleWorker
from sqlalchemy import select

from okapp.models import BlockKind, JourneyStep, Message, Sequence
from okapp.sequences.journal import counter_totals
from okapp.sequences.lifecycle import start_sequence
from okapp.sequences.templates import create_sequence

# Monday 2 November 2026, 15:00 UTC = 10:00 in New York (EST, the day after DST ended).
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def running(session, shop, template="review_request", start="2026-10-01",
            started=NOW - timedelta(days=40)) -> Sequence:
    """A sequence from `template`, started at `started` with RECRUIT from `start`."""
    sequence = create_sequence(session, shop, template, started - timedelta(hours=1))
    sequence.blocks[0].config = {"start_date": start, "end_date": ""}
    start_sequence(session, sequence, started)
    sequence.lookback_state = ""
    session.commit()
    return sequence


def blocks_of(sequence, kind: BlockKind):
    return [b for b in sequence.blocks if b.kind == kind.value]


def set_wait(session, sequence, index, **config):
    block = blocks_of(sequence, BlockKind.WAIT)[index]
    block.config = {**block.config, **config}
    session.commit()
    return block


class BurstWorker(SimpleWorker):
    """An in-process worker without the command channel: RQ's pubsub thread sleeps up to 60 s
    in `get_message`, and closing it at the end of a burst can wait for that."""

    def subscribe(self):
        pass

    def unsubscribe(self):
        pass


def work(runtime) -> int:
    """Run every queued send job in this process; returns how many jobs ran."""
    queue = runtime.queue("sends")
    before = queue.count
    BurstWorker([queue], connection=runtime.redis).work(burst=True)
    return before - queue.count


def messages(session, **where):
    session.expire_all()
    query = select(Message).order_by(Message.id)
    for key, value in where.items():
        query = query.where(getattr(Message, key) == value)
    return session.scalars(query).all()


def counters(session, sequence) -> dict[tuple[int, str], int]:
    session.expire_all()
    return {(c.block_id, c.name): c.value for c in counter_totals(session, [sequence.id])
            if c.value}


def events(session, enrollment) -> list[str]:
    return list(session.scalars(select(JourneyStep.event).where(
        JourneyStep.enrollment_id == enrollment.id).order_by(JourneyStep.id)))
