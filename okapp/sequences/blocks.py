"""Blocks: walking a sequence's tree, describing each block, and validating a merchant's edit.

An edit is all or nothing: on any invalid field `update_block` raises `BlockValidationError` with
one message per field and leaves the block as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from okapp.models import (
    Block,
    BlockKind,
    EmailTemplate,
    Enrollment,
    EnrollmentState,
    Sequence,
    SequenceStatus,
)
from okapp.sequences.timing import (
    ANCHOR_DELIVERY,
    ANCHOR_FULFILLMENT,
    ANCHOR_PREVIOUS_EMAIL,
    wait_due,
)

MAX_WAIT_DAYS = 365

ANCHOR_LABELS = {
    ANCHOR_FULFILLMENT: "after fulfillment",
    ANCHOR_DELIVERY: "after delivery",
    ANCHOR_PREVIOUS_EMAIL: "after the previous email",
}

# condition -> (question shown on the block, [(branch, label)] in drawing order)
SPLIT_CONDITIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "reviewed": ("Has the customer reviewed?", [("no", "Not reviewed"), ("yes", "Reviewed")]),
    "review_media": ("What did the customer review?", [
        ("no_review", "No review"),
        ("high_rating_no_media", "4–5 stars, no photo or video"),
        ("other", "Anything else"),
    ]),
}


class BlockValidationError(ValueError):
    """The merchant's input for a block is not valid; `errors` maps each field to a message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


# -- walking the tree --------------------------------------------------------------------------

def children(block: Block) -> list[Block]:
    """The blocks hanging directly under `block`, in drawing order."""
    return [b for b in block.sequence.blocks if b.parent_id == block.id]


def next_block(block: Block, branch: str = "") -> Block | None:
    """The block that follows `block` (on `branch` under a SPLIT); None ends the journey."""
    for child in children(block):
        if child.branch == branch:
            return child
    return None


def root(sequence: Sequence) -> Block | None:
    return next((b for b in sequence.blocks if b.parent_id is None), None)


def is_after_email(block: Block) -> bool:
    """Whether an email comes before this block on its path (a follow-up wait counts from it)."""
    by_id = {b.id: b for b in block.sequence.blocks}
    parent = by_id.get(block.parent_id)
    while parent is not None:
        if parent.kind == BlockKind.SEND.value:
            return True
        parent = by_id.get(parent.parent_id)
    return False


def anchor_choices(block: Block) -> list[tuple[str, str]]:
    """The anchors a WAIT may count from: a follow-up wait may also count from the last email."""
    keys = [ANCHOR_FULFILLMENT, ANCHOR_DELIVERY]
    if is_after_email(block):
        keys.append(ANCHOR_PREVIOUS_EMAIL)
    return [(k, ANCHOR_LABELS[k]) for k in keys]


@dataclass(frozen=True)
class FlowItem:
    """One row of the drawn flow. `block` is None for a branch that ends with no block."""

    block: Block | None
    depth: int
    branch: str = ""
    branch_label: str = ""  # set on the first row of each SPLIT branch
    summary: str = ""


def _email_names(sequence: Sequence) -> dict[int, str]:
    session = object_session(sequence)
    if session is None:
        return {}
    rows = session.execute(
        select(EmailTemplate.id, EmailTemplate.name).where(EmailTemplate.shop_id == sequence.shop_id)
    )
    return {row.id: row.name for row in rows}


def describe(block: Block, email_names: Mapping[int, str] | None = None) -> str:
    """A one-line summary of a block's settings, as the flow shows it."""
    c = block.config or {}
    if block.kind == BlockKind.RECRUIT.value:
        start, end = c.get("start_date") or "?", c.get("end_date")
        return f"Orders fulfilled from {start}" + (f" to {end}" if end else "")
    if block.kind == BlockKind.WAIT.value:
        dom, intl = c.get("domestic_days", 0), c.get("international_days", 0)
        anchor = ANCHOR_LABELS.get(c.get("anchor", ""), "")
        days = f"{dom} days" if dom == intl else f"{dom} days ({intl} international)"
        return f"Wait {days} {anchor}"
    if block.kind == BlockKind.SEND.value:
        name = (email_names or {}).get(c.get("email_template_id"), "an email")
        return f"Send “{name}”"
    question, _ = SPLIT_CONDITIONS.get(c.get("condition", ""), ("Split", []))
    return question


def flow(sequence: Sequence) -> list[FlowItem]:
    """The blocks in drawing order (depth first), with each SPLIT branch labelled; a branch with
    no block shows as an item with `block=None` (the journey ends there)."""
    names = _email_names(sequence)
    out: list[FlowItem] = []

    def walk(block: Block | None, depth: int, branch: str, label: str) -> None:
        while block is not None:
            out.append(FlowItem(block, depth, branch, label, describe(block, names)))
            label = ""
            if block.kind == BlockKind.SPLIT.value:
                _, branches = SPLIT_CONDITIONS.get(block.config.get("condition", ""), ("", []))
                for key, text in branches:
                    child = next_block(block, key)
                    if child is None:
                        out.append(FlowItem(None, depth + 1, key, text, "End"))
                    else:
                        walk(child, depth + 1, key, text)
                return
            block = next_block(block)

    walk(root(sequence), 0, "", "")
    return out


# -- validation ----------------------------------------------------------------------------------

def _parse_date(value: str) -> date:
    return date.fromisoformat(value.strip())


def _whole_days(value: str | None, errors: dict[str, str], field: str) -> int | None:
    text = (value or "").strip()
    if not text:
        errors[field] = "Enter a number of days."
        return None
    if not text.isdigit():
        errors[field] = "Enter whole days (0 to 365)."
        return None
    days = int(text)
    if days > MAX_WAIT_DAYS:
        errors[field] = "Enter whole days (0 to 365)."
        return None
    return days


def validate(session: Session, block: Block, data: Mapping[str, str]) -> dict:
    """The new config for `block` from form data, or BlockValidationError."""
    errors: dict[str, str] = {}
    kind = block.kind
    running = block.sequence.status == SequenceStatus.RUNNING.value
    if kind == BlockKind.SPLIT.value:
        raise BlockValidationError({"condition": "A split's condition is fixed and cannot be edited."})
    if kind == BlockKind.RECRUIT.value:
        start_text = (data.get("start_date") or "").strip()
        end_text = (data.get("end_date") or "").strip()
        start = end = None
        if not start_text:
            errors["start_date"] = "Enter a start date."
        else:
            try:
                start = _parse_date(start_text)
            except ValueError:
                errors["start_date"] = "Enter a date as YYYY-MM-DD."
        if end_text:
            try:
                end = _parse_date(end_text)
            except ValueError:
                errors["end_date"] = "Enter a date as YYYY-MM-DD."
        if start and end and end < start:
            errors["end_date"] = "The end date cannot be before the start date."
        if start and running and start.isoformat() != block.config.get("start_date"):
            errors["start_date"] = "Stop the sequence to change its start date."
        if errors:
            raise BlockValidationError(errors)
        return {"start_date": start.isoformat(), "end_date": end.isoformat() if end else ""}
    if kind == BlockKind.WAIT.value:
        anchor = (data.get("anchor") or "").strip()
        allowed = [key for key, _ in anchor_choices(block)]
        if anchor not in allowed:
            errors["anchor"] = "Choose " + " or ".join(ANCHOR_LABELS[k] for k in allowed) + "."
        domestic = _whole_days(data.get("domestic_days"), errors, "domestic_days")
        international = _whole_days(data.get("international_days"), errors, "international_days")
        if errors:
            raise BlockValidationError(errors)
        return {"anchor": anchor, "domestic_days": domestic, "international_days": international}
    if kind == BlockKind.SEND.value:
        raw = (data.get("email_template_id") or "").strip()
        email = None
        if raw.isdigit():
            email = session.scalar(select(EmailTemplate).where(
                EmailTemplate.id == int(raw), EmailTemplate.shop_id == block.sequence.shop_id))
        if email is None:
            raise BlockValidationError({"email_template_id": "Choose one of this shop's emails."})
        return {"email_template_id": email.id}
    raise BlockValidationError({"kind": f"Unknown block kind {kind!r}."})


def update_block(session: Session, block: Block, data: Mapping[str, str], now: datetime) -> Block:
    """Validate and save a block's settings. On a running sequence, an edited WAIT moves the due
    time of every enrollment waiting in it (those before it will use the new days when they get
    there; a SEND's new email applies to every message not created yet)."""
    config = validate(session, block, data)
    block.config = config  # a new dict, so the JSON column is seen as changed
    session.flush()
    if block.kind == BlockKind.WAIT.value and block.sequence.status == SequenceStatus.RUNNING.value:
        recompute_waiting(session, block, now)
    return block


def recompute_waiting(session: Session, block: Block, now: datetime) -> int:
    """Recompute `due_at` of the enrollments waiting in a WAIT block; returns how many moved."""
    moved = 0
    enrollments = session.scalars(
        select(Enrollment).where(Enrollment.block_id == block.id,
                                 Enrollment.state == EnrollmentState.WAITING.value)
    ).all()
    for enrollment in enrollments:
        moved += recompute_one(session, enrollment, block, now, "the wait was edited")
    session.flush()
    return moved


def recompute_one(session: Session, enrollment: Enrollment, block: Block, now: datetime,
                  because: str) -> bool:
    """Move one waiting enrollment's due time to what its WAIT block now says."""
    from okapp.sequences.journal import record  # the journal writes explain()'s timeline

    due = wait_due(block.sequence.shop, enrollment.order, block.config,
                   enrollment.entered_at or now)
    new_due = max(due.due_at, now) if due.due_at else now
    if new_due == enrollment.due_at:
        return False
    enrollment.due_at = new_due
    enrollment.updated_at = now
    record(session, enrollment, block, now, "rescheduled",
           f"{because}: until {new_due.isoformat()}, {due.why}")
    return True
