"""Actions on one enrollment from outside the scheduler: "not arrived yet" from the email link."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import Enrollment, EnrollmentState, JourneyStep
from okapp.sequences.journal import record

NOT_ARRIVED = "not_arrived"


def not_arrived_yet(session: Session, enrollment: Enrollment, now: datetime,
                    days: int | None = None) -> datetime | None:
    """The customer says the order has not arrived: push the remaining steps back (the shop's
    `not_arrived_delay_days`, default 7) and record it. Once per block, so a second click (or a
    link scanner after the first) does not push again. Returns the new due time, or None when
    nothing was moved (journey over, or already pushed at this block)."""
    if enrollment.state != EnrollmentState.WAITING.value or enrollment.due_at is None:
        return None
    already = session.scalar(select(JourneyStep.id).where(
        JourneyStep.enrollment_id == enrollment.id, JourneyStep.block_id == enrollment.block_id,
        JourneyStep.event == NOT_ARRIVED).limit(1))
    if already is not None:
        return None
    if days is None:
        days = int(enrollment.sequence.shop.setting("not_arrived_delay_days"))
    new_due = max(enrollment.due_at, now) + timedelta(days=days)
    enrollment.due_at, enrollment.updated_at = new_due, now
    record(session, enrollment, enrollment.block, now, NOT_ARRIVED,
           f"the customer said the order has not arrived: next step moved {days} days, "
           f"to {new_due.isoformat()}")
    session.flush()
    return new_due
