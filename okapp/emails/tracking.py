"""Signed links inside an email: open pixel, click redirect, unsubscribe, "not arrived yet?".

Every token is signed with the app's secret and a salt per purpose, so a token made for one
purpose cannot be replayed as another. A click token carries the destination it was made for:
the redirect only ever goes to a URL that was written into that email (no open redirect).
Recording functions take a session and `now`; the views in okapp.views.tracking are thin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from okapp.emails.suppression import normalize, suppress
from okapp.models import Enrollment, Message, MessageState
from okapp.sequences.journal import bump_one
from okapp.signed import url_safe_serializer

_SALTS = {
    "open": "okapp-email-open",
    "click": "okapp-email-click",
    "unsubscribe": "okapp-email-unsubscribe",
    "not_arrived": "okapp-email-not-arrived",
}
UNSUBSCRIBED = "unsubscribed"  # the skip reason of messages cancelled by an unsubscribe


class InvalidTrackingToken(Exception):
    """The token was altered or made for another purpose."""


@dataclass(frozen=True)
class Unsubscribe:
    shop_id: int
    address: str
    message_id: int | None
    locale: str = "en"  # the email's language, for the page the link opens


@dataclass(frozen=True)
class NotArrived:
    shop_id: int
    enrollment_id: int
    locale: str = "en"


def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    return url_safe_serializer(secret, _SALTS[purpose])


def _load(secret: str, purpose: str, token: str):
    try:
        return _serializer(secret, purpose).loads(token)
    except BadSignature as exc:
        raise InvalidTrackingToken(f"invalid {purpose} token") from exc


class Links:
    """Builds the signed URLs of one message. With no message (a preview or a test send) links
    stay untracked: there is nothing to count against."""

    def __init__(self, app_url: str, secret: str, shop_id: int, address: str,
                 message_id: int | None = None, enrollment_id: int | None = None,
                 locale: str = "en"):
        self.app_url = app_url
        self.secret = secret
        self.shop_id = shop_id
        self.address = address
        self.message_id = message_id
        self.enrollment_id = enrollment_id
        self.locale = locale
        self._click_signer: Signer | None = None

    def click(self, url: str) -> str:
        if self.message_id is None:
            return url
        if self._click_signer is None:
            self._click_signer = _click_signer(self.secret)
        payload = f"{self.message_id}.{base64.urlsafe_b64encode(url.encode()).decode().rstrip('=')}"
        return f"{self.app_url}/e/c/{self._click_signer.sign(payload).decode()}"

    def open_pixel(self) -> str | None:
        if self.message_id is None:
            return None
        return f"{self.app_url}/e/o/{_serializer(self.secret, 'open').dumps(self.message_id)}.gif"

    def unsubscribe(self) -> str:
        token = _serializer(self.secret, "unsubscribe").dumps(
            {"s": self.shop_id, "a": normalize(self.address), "m": self.message_id,
             "l": self.locale})
        return f"{self.app_url}/e/u/{token}"

    def not_arrived(self) -> str | None:
        if self.enrollment_id is None:
            return None
        token = _serializer(self.secret, "not_arrived").dumps(
            {"s": self.shop_id, "n": self.enrollment_id, "l": self.locale})
        return f"{self.app_url}/e/not-arrived/{token}"


def read_open(secret: str, token: str) -> int:
    message_id = _load(secret, "open", token)
    if not isinstance(message_id, int):
        raise InvalidTrackingToken("invalid open token")
    return message_id


def _click_signer(secret: str) -> Signer:
    # An email holds some 30 click links: a bare signature over "<message id>.<base64 URL>"
    # costs a fraction of a JSON serializer's, and is just as impossible to forge.
    return Signer(secret, salt=_SALTS["click"])


def read_click(secret: str, token: str) -> tuple[int, str]:
    try:
        payload = _click_signer(secret).unsign(token).decode()
        raw_id, _, encoded = payload.partition(".")
        message_id = int(raw_id)
        url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (BadSignature, ValueError, UnicodeDecodeError) as exc:
        raise InvalidTrackingToken("invalid click token") from exc
    if not url.startswith(("https://", "http://")):
        raise InvalidTrackingToken("invalid click token")
    return message_id, url


def read_unsubscribe(secret: str, token: str) -> Unsubscribe:
    data = _load(secret, "unsubscribe", token)
    try:
        message_id = data.get("m")
        return Unsubscribe(int(data["s"]), str(data["a"]),
                           int(message_id) if message_id is not None else None,
                           str(data.get("l") or "en"))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidTrackingToken("invalid unsubscribe token") from exc


def read_not_arrived(secret: str, token: str) -> NotArrived:
    data = _load(secret, "not_arrived", token)
    try:
        return NotArrived(int(data["s"]), int(data["n"]), str(data.get("l") or "en"))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidTrackingToken("invalid not-arrived token") from exc


def _count(session: Session, message_id: int, now: datetime, total, first_at,
           counter: str) -> bool:
    """Add one to a message's total; on the first time, stamp it and bump the block's counter
    (`opened` / `clicked`) that the sequence page shows. Plain UPDATEs: pixels and clicks arrive
    concurrently, and only one of them can turn the first-time column from NULL."""
    first = session.execute(
        update(Message).where(Message.id == message_id, first_at.is_(None))
        .values({first_at.key: now}).execution_options(synchronize_session=False)
    ).rowcount
    counted = session.execute(
        update(Message).where(Message.id == message_id).values({total.key: total + 1})
        .execution_options(synchronize_session=False)
    ).rowcount
    if first:
        row = session.execute(
            select(Enrollment.sequence_id, Message.block_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.id == message_id)).one()
        bump_one(session, row.sequence_id, row.block_id, counter)
    return counted > 0


def record_open(session: Session, message_id: int, now: datetime) -> bool:
    """Count an open. False for a message that no longer exists."""
    return _count(session, message_id, now, Message.opens, Message.first_opened_at, "opened")


def record_click(session: Session, message_id: int, now: datetime) -> bool:
    """Count a click; a click also proves an open when the mail client blocked the pixel."""
    counted = _count(session, message_id, now, Message.clicks, Message.first_clicked_at,
                     "clicked")
    if counted and session.scalar(select(Message.opens).where(Message.id == message_id)) == 0:
        record_open(session, message_id, now)
    return counted


def unsubscribe(session: Session, shop_id: int, address: str, now: datetime) -> int:
    """Suppress the address for this shop and skip its messages still waiting to go out, with
    the reason `unsubscribed` (counted per block). Waiting
    enrollments are left to the engine: it re-checks suppression before every send.

    Returns how many queued messages were skipped. Idempotent: a second call changes nothing.
    """
    address = normalize(address)
    suppress(session, shop_id, address, "unsubscribe", now)
    pending = session.scalars(
        select(Message).where(
            Message.shop_id == shop_id,
            func.lower(Message.recipient) == address,
            Message.state == MessageState.QUEUED.value,
        )
    ).all()
    skipped = 0
    for message in pending:
        # Conditional: a worker may claim the message between the SELECT and here; then the
        # send job's own suppression check (it re-reads after claiming) skips it.
        claimed = session.execute(
            update(Message).where(Message.id == message.id,
                                  Message.state == MessageState.QUEUED.value)
            .values(state=MessageState.SKIPPED.value, skip_reason=UNSUBSCRIBED)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            continue
        skipped += 1
        # The outcome lives on the message (explain() reads it there); the block counts it.
        bump_one(session, message.enrollment.sequence_id, message.block_id,
                 f"skipped:{UNSUBSCRIBED}")
    return skipped
