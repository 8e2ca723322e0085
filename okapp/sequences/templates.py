"""The four starting templates (DESIGN §3) and the creation of a sequence from one.

A template is a small tree of block specs: a chain of blocks, where a SPLIT ends the chain and
hangs one chain per branch. Creating a sequence writes that tree as Block rows (parent, branch,
drawing position), each SEND pointing at the shop's default email of its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import Block, BlockKind, EmailKind, EmailTemplate, Sequence, SequenceStatus, Shop


@dataclass
class Spec:
    """One block of a template; a SPLIT carries its branches as chains of specs."""

    kind: BlockKind
    config: dict[str, Any] = field(default_factory=dict)
    branches: dict[str, list[Spec]] = field(default_factory=dict)
    email_kind: EmailKind | None = None  # SEND: which default email


def recruit() -> Spec:
    return Spec(BlockKind.RECRUIT, {"start_date": "", "end_date": ""})


def wait(domestic: int, international: int, anchor: str = "fulfillment") -> Spec:
    return Spec(BlockKind.WAIT, {"anchor": anchor, "domestic_days": domestic,
                                 "international_days": international})


def after_email(days: int) -> Spec:
    """A follow-up wait: counted from the previous email, the same for every destination."""
    return wait(days, days, anchor="previous_email")


def send(kind: EmailKind) -> Spec:
    return Spec(BlockKind.SEND, {}, email_kind=kind)


def split(condition: str, **branches: list[Spec]) -> Spec:
    return Spec(BlockKind.SPLIT, {"condition": condition}, branches=dict(branches))


@dataclass(frozen=True)
class Template:
    key: str
    name: str
    description: str
    build: Callable[[], list[Spec]]


def _request() -> list[Spec]:
    return [recruit(), wait(7, 14), send(EmailKind.REQUEST)]


def _with_reminder() -> list[Spec]:
    return _request() + [
        after_email(5),
        split("reviewed", no=[send(EmailKind.REMINDER)], yes=[]),
    ]


def _with_two_reminders() -> list[Spec]:
    return _request() + [
        after_email(5),
        split("reviewed", no=[
            send(EmailKind.REMINDER),
            after_email(7),
            split("reviewed", no=[send(EmailKind.SECOND_REMINDER)], yes=[]),
        ], yes=[]),
    ]


def _with_photo_reminder() -> list[Spec]:
    return _request() + [
        after_email(7),
        split("review_media",
              no_review=[send(EmailKind.REMINDER)],
              high_rating_no_media=[send(EmailKind.MEDIA_REQUEST)],
              other=[]),
    ]


TEMPLATES: dict[str, Template] = {
    t.key: t for t in (
        Template("review_request", "Review Request",
                 "One email asking for a review a week after the order ships.", _request),
        Template("review_request_reminder", "Review Request with Reminder",
                 "The request, then one reminder to customers who have not reviewed.",
                 _with_reminder),
        Template("review_request_two_reminders", "Review Request with Two Reminders",
                 "The request, then up to two reminders while there is no review.",
                 _with_two_reminders),
        Template("review_request_photo_reminder", "Review Request with Photo Reminder",
                 "The request; then a reminder, or a request for photos after a 4–5 star review.",
                 _with_photo_reminder),
    )
}

DEFAULT_EMAIL_NAMES: dict[EmailKind, str] = {
    EmailKind.REQUEST: "Review request",
    EmailKind.REMINDER: "Reminder",
    EmailKind.SECOND_REMINDER: "Second reminder",
    EmailKind.MEDIA_REQUEST: "Photo and video request",
}


def ensure_default_emails(session: Session, shop: Shop) -> dict[EmailKind, EmailTemplate]:
    """The shop's default email of each kind, created when missing (empty `fields` means the
    built-in copy)."""
    existing: dict[str, EmailTemplate] = {}
    for email in session.scalars(
        select(EmailTemplate).where(EmailTemplate.shop_id == shop.id).order_by(EmailTemplate.id)
    ):
        existing.setdefault(email.kind, email)
    out: dict[EmailKind, EmailTemplate] = {}
    for kind, name in DEFAULT_EMAIL_NAMES.items():
        email = existing.get(kind.value)
        if email is None:
            email = EmailTemplate(shop_id=shop.id, kind=kind.value, name=name, fields={})
            session.add(email)
        out[kind] = email
    session.flush()
    return out


def create_sequence(session: Session, shop: Shop, template_key: str, now: datetime,
                    name: str | None = None) -> Sequence:
    """A draft sequence built from a template, named after it unless the merchant named it.

    The RECRUIT block starts on the creation day (shop time), so starting it is not a lookback
    unless the merchant moves the date back.
    """
    from okapp.sequences.timing import shop_today  # one place for shop-local dates

    template = TEMPLATES.get(template_key)
    if template is None:
        raise ValueError(f"unknown template {template_key!r}; choose one of {', '.join(TEMPLATES)}")
    name = (name or "").strip() or template.name
    if len(name) > 255:
        raise ValueError("a sequence name has at most 255 characters")
    emails = ensure_default_emails(session, shop)
    sequence = Sequence(shop_id=shop.id, name=name, template=template.key,
                        status=SequenceStatus.DRAFT.value, created_at=now)
    session.add(sequence)
    session.flush()
    position = 0

    def write(chain: list[Spec], parent: Block | None, branch: str) -> None:
        nonlocal position
        for spec in chain:
            config = dict(spec.config)
            if spec.kind is BlockKind.RECRUIT:
                config["start_date"] = shop_today(shop, now).isoformat()
            if spec.email_kind is not None:
                config["email_template_id"] = emails[spec.email_kind].id
            block = Block(sequence_id=sequence.id, parent_id=parent.id if parent else None,
                          branch=branch, position=position, kind=spec.kind.value, config=config)
            position += 1
            session.add(block)
            session.flush()
            for label, sub_chain in spec.branches.items():
                write(sub_chain, block, label)
            parent, branch = block, ""

    write(template.build(), None, "")
    session.expire(sequence, ["blocks"])  # reload the tree, in drawing order, on next use
    return sequence
