"""`explain(order)`: the journey of one order, in words (DESIGN §4 "Every decision is
explainable"): whether it was recruited and why not, each block it passed and when, what is due
next and why, and what became of each email. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import (
    Block,
    Enrollment,
    EnrollmentState,
    JourneyStep,
    Message,
    Order,
    RecruitSkip,
    Sequence,
    Shop,
)
from okapp.sequences.advance import EXIT_REASONS
from okapp.sequences.blocks import _email_names, describe
from okapp.sequences.recruit import SKIP_REASONS, running_sequence
from okapp.sequences.timing import shop_zone

EVENT_TITLES = {
    "recruited": "Recruited",
    "waiting": "Waiting",
    "waited": "Wait over",
    "deferred": "Email deferred",
    "queued": "Email queued",
    "split": "Split",
    "done": "Journey complete",
    "exited": "Left the sequence",
    "rescheduled": "Rescheduled",
    "not_arrived": "Customer: not arrived yet",
    "sent": "Email sent",
    "skipped": "Email skipped",
    "failed": "Email failed",
}


@dataclass
class Entry:
    at: datetime | None
    title: str
    detail: str = ""
    sequence: str = ""


@dataclass
class Journey:
    order: Order
    shop: Shop
    entries: list[Entry] = field(default_factory=list)
    recruited: bool = False
    next_due: datetime | None = None

    def local(self, moment: datetime | None) -> str:
        if moment is None:
            return ""
        return moment.astimezone(shop_zone(self.shop)).strftime("%Y-%m-%d %H:%M %Z")

    def lines(self) -> list[str]:
        out = [f"Order {self.order.name} ({self.order.email or 'no email'}) at {self.shop.domain}"]
        for e in self.entries:
            when = self.local(e.at)
            head = f"{when:<22} {e.title}" if when else f"{'':<22} {e.title}"
            out.append(head + (f": {e.detail}" if e.detail else ""))
        return out


def explain(session: Session, order: Order) -> Journey:
    shop = session.get(Shop, order.shop_id)
    journey = Journey(order=order, shop=shop)
    enrollments = session.scalars(select(Enrollment).where(Enrollment.order_id == order.id)
                                  .order_by(Enrollment.recruited_at)).all()
    skips = session.execute(
        select(RecruitSkip.reason, RecruitSkip.at, Sequence.name)
        .join(Sequence, Sequence.id == RecruitSkip.sequence_id)
        .where(RecruitSkip.order_id == order.id).order_by(RecruitSkip.at)).all()
    for reason, at, name in skips:
        journey.entries.append(Entry(at, "Not recruited", SKIP_REASONS.get(reason, reason), name))
    if not enrollments:
        running = running_sequence(session, order.shop_id)
        if running is None:
            journey.entries.append(Entry(None, "Not recruited", "no sequence is running"))
        elif not any(name == running.name for _, _, name in skips):
            journey.entries.append(Entry(None, "Not recruited yet", (
                "not fully fulfilled yet" if order.fulfilled_at is None
                else f"“{running.name}” has not considered it yet (the next sync will)")))
        return journey
    journey.recruited = True
    for enrollment in enrollments:
        _explain_enrollment(session, journey, enrollment)
    return journey


def _explain_enrollment(session: Session, journey: Journey, enrollment: Enrollment) -> None:
    sequence = session.get(Sequence, enrollment.sequence_id)
    blocks = {b.id: b for b in sequence.blocks}
    names = _email_names(sequence)
    where = f"“{sequence.name}” ({sequence.status})"
    messages = {m.block_id: m for m in session.scalars(
        select(Message).where(Message.enrollment_id == enrollment.id))}
    for step in session.scalars(select(JourneyStep).where(
            JourneyStep.enrollment_id == enrollment.id).order_by(JourneyStep.at, JourneyStep.id)):
        block: Block | None = blocks.get(step.block_id)
        title = EVENT_TITLES.get(step.event, step.event)
        detail = step.detail
        if block is not None and step.event in ("waiting", "waited", "queued", "split",
                                                "deferred"):
            detail = f"{describe(block, names)} — {detail}"
        if step.event == "recruited":
            detail = f"into {where}: {detail}"
        journey.entries.append(Entry(step.at, title, detail, sequence.name))
    if enrollment.state == EnrollmentState.WAITING.value:
        block = blocks.get(enrollment.block_id)
        what = describe(block, names) if block is not None else "the next step"
        paused = "" if sequence.status == "running" else f" (paused: the sequence is {sequence.status})"
        journey.next_due = enrollment.due_at
        journey.entries.append(Entry(enrollment.due_at, "Next", f"{what}{paused}", sequence.name))
    elif enrollment.state == EnrollmentState.DONE.value:
        journey.entries.append(Entry(enrollment.updated_at, "Journey complete", "", sequence.name))
    elif enrollment.state == EnrollmentState.EXITED.value:
        journey.entries.append(Entry(enrollment.updated_at, "Exited",
                                     EXIT_REASONS.get(enrollment.exit_reason,
                                                      enrollment.exit_reason), sequence.name))
    for block_id, m in messages.items():
        label = names.get(blocks[block_id].config.get("email_template_id"), m.kind) \
            if block_id in blocks else m.kind
        state = m.state
        if m.skip_reason:
            state += f" ({m.skip_reason})"
        if m.error:
            state += f" — {m.error}"
        extra = f", opened {m.opens}×, clicked {m.clicks}×" if (m.opens or m.clicks) else ""
        journey.entries.append(Entry(m.sent_at or m.queued_at, f"Email “{label}”",
                                     f"{state} to {m.recipient}{extra}", sequence.name))
    journey.entries.sort(key=lambda e: (e.at is None, e.at or datetime.min))


def find_order(session: Session, shop: Shop, name: str) -> Order | None:
    """An order of the shop by its name, with or without the leading #."""
    name = name.strip()
    candidates = {name, name.lstrip("#"), "#" + name.lstrip("#")}
    return session.scalar(select(Order).where(Order.shop_id == shop.id,
                                              Order.name.in_(candidates)).limit(1))
