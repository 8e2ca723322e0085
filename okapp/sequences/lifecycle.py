"""Start, stop, rename and delete a sequence (DESIGN §4).

At most one sequence per shop runs; the database enforces it with a partial unique index, and
`start_sequence` turns a refusal (from the check or from the index, when two starts race) into a
`StartRefused` that names the running sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from okapp.models import Sequence, SequenceStatus
from okapp.sequences.blocks import BlockValidationError
from okapp.sequences.recruit import date_range, running_sequence
from okapp.sequences.timing import shop_today

MAX_NAME = 255


class StartRefused(Exception):
    """Another sequence of the shop is running (`running`), or this one cannot start."""

    def __init__(self, message: str, running: Sequence | None = None):
        super().__init__(message)
        self.running = running


class DeleteRefused(Exception):
    """A running sequence cannot be deleted."""


@dataclass(frozen=True)
class StartResult:
    sequence: Sequence
    lookback: bool  # the start date is in the past: past orders are to be imported and recruited
    resumed: bool  # it had run before; waiting enrollments carry on where they were


def _refuse_for(session: Session, sequence: Sequence) -> StartRefused | None:
    other = running_sequence(session, sequence.shop_id)
    if other is not None and other.id != sequence.id:
        return StartRefused(f"“{other.name}” is running. Stop it before starting "
                            f"“{sequence.name}”: only one sequence runs at a time.", other)
    return None


def starts_with_lookback(sequence: Sequence, now: datetime) -> bool:
    """Whether starting now is a lookback: the RECRUIT start date is before today (shop time)."""
    start, _ = date_range(sequence)
    return start is not None and start < shop_today(sequence.shop, now)


def start_sequence(session: Session, sequence: Sequence, now: datetime) -> StartResult:
    if sequence.status == SequenceStatus.RUNNING.value:
        return StartResult(sequence, lookback=False, resumed=False)
    start, _ = date_range(sequence)
    if start is None:
        raise StartRefused("Set the start date of the Recruit block before starting.")
    refusal = _refuse_for(session, sequence)
    if refusal:
        raise refusal
    resumed = sequence.started_at is not None
    lookback = starts_with_lookback(sequence, now)
    try:
        with session.begin_nested():
            sequence.status = SequenceStatus.RUNNING.value
            sequence.started_at = now
            sequence.stopped_at = None
            if lookback:
                # consider_order leaves past orders to the lookback until the import finishes.
                sequence.lookback_state = "running"
                sequence.lookback_total = sequence.lookback_done = 0
                sequence.lookback_error = ""
            session.flush()
    except IntegrityError:
        # Lost a race with another start: the partial unique index said no.
        session.refresh(sequence)
        refusal = _refuse_for(session, sequence) or StartRefused(
            "Another sequence started at the same moment; reload and try again.")
        raise refusal from None
    return StartResult(sequence, lookback=lookback, resumed=resumed)


def stop_sequence(session: Session, sequence: Sequence, now: datetime) -> Sequence:
    """Stop recruiting and sending. Waiting enrollments keep their place for a restart."""
    if sequence.status == SequenceStatus.RUNNING.value:
        sequence.status = SequenceStatus.STOPPED.value
        sequence.stopped_at = now
        session.flush()
    return sequence


def rename_sequence(session: Session, sequence: Sequence, name: str) -> Sequence:
    name = (name or "").strip()
    if not name:
        raise BlockValidationError({"name": "Enter a name."})
    if len(name) > MAX_NAME:
        raise BlockValidationError({"name": f"Use at most {MAX_NAME} characters."})
    sequence.name = name
    session.flush()
    return sequence


def delete_sequence(session: Session, sequence: Sequence) -> None:
    """Delete a draft or stopped sequence with its blocks and enrollments. Orders it asked for a
    review keep `review_requested_at`, so a later sequence never asks them again."""
    if sequence.status == SequenceStatus.RUNNING.value:
        raise DeleteRefused(f"“{sequence.name}” is running. Stop it before deleting it.")
    # The database cascades to blocks, enrollments, messages and counters in one statement.
    session.execute(delete(Sequence).where(Sequence.id == sequence.id))
    session.expunge(sequence)


def get_sequence(session: Session, shop_id: int, sequence_id: int) -> Sequence | None:
    """A sequence of this shop (None for another shop's id)."""
    return session.scalar(select(Sequence).where(Sequence.id == sequence_id,
                                                 Sequence.shop_id == shop_id))
