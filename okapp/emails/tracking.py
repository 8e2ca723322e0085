"""Signed links inside an email: open pixel, click redirect, unsubscribe, "not arrived yet?".

Every token is signed with the app's secret and a salt per purpose, so a token made for one
purpose cannot be replayed as another. A click token carries the destination it was made for:
the redirect only ever goes to a URL that was written into that email (no open redirect).
Recording functions take a session and `now`; the views in okapp.views.tracking are thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from okapp.emails.suppression import normalize, suppress
from okapp.models import Message, MessageState

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


def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALTS[purpose])


def _load(secret: str, purpose: str, token: str):
    try:
        return _serializer(secret, purpose).loads(token)
    except BadSignature as exc:
        raise InvalidTrackingToken(f"invalid {purpose} token") from exc


class Links:
    """Builds the signed URLs of one message. With no message (a preview or a test send) links
    stay untracked: there is nothing to count against."""

    def __init__(self, app_url: str, secret: str, shop_id: int, address: str,
                 message_id: int | None = None, enrollment_id: int | None = None):
        self.app_url = app_url
        self.secret = secret
        self.shop_id = shop_id
        self.address = address
        self.message_id = message_id
        self.enrollment_id = enrollment_id

    def click(self, url: str) -> str:
        if self.message_id is None:
            return url
        token = _serializer(self.secret, "click").dumps({"m": self.message_id, "u": url})
        return f"{self.app_url}/e/c/{token}"

    def open_pixel(self) -> str | None:
        if self.message_id is None:
            return None
        return f"{self.app_url}/e/o/{_serializer(self.secret, 'open').dumps(self.message_id)}.gif"

    def unsubscribe(self) -> str:
        token = _serializer(self.secret, "unsubscribe").dumps(
            {"s": self.shop_id, "a": normalize(self.address), "m": self.message_id})
        return f"{self.app_url}/e/u/{token}"

    def not_arrived(self) -> str | None:
        if self.enrollment_id is None:
            return None
        token = _serializer(self.secret, "not_arrived").dumps(
            {"s": self.shop_id, "n": self.enrollment_id})
        return f"{self.app_url}/e/not-arrived/{token}"


def read_open(secret: str, token: str) -> int:
    message_id = _load(secret, "open", token)
    if not isinstance(message_id, int):
        raise InvalidTrackingToken("invalid open token")
    return message_id


def read_click(secret: str, token: str) -> tuple[int, str]:
    data = _load(secret, "click", token)
    try:
        message_id, url = int(data["m"]), str(data["u"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTrackingToken("invalid click token") from exc
    if not url.startswith(("https://", "http://")):
        raise InvalidTrackingToken("invalid click token")
    return message_id, url


def read_unsubscribe(secret: str, token: str) -> Unsubscribe:
    data = _load(secret, "unsubscribe", token)
    try:
        message_id = data.get("m")
        return Unsubscribe(int(data["s"]), str(data["a"]),
                           int(message_id) if message_id is not None else None)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidTrackingToken("invalid unsubscribe token") from exc


def read_not_arrived(secret: str, token: str) -> tuple[int, int]:
    """(shop id, enrollment id)."""
    data = _load(secret, "not_arrived", token)
    try:
        return int(data["s"]), int(data["n"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTrackingToken("invalid not-arrived token") from exc


def record_open(session: Session, message_id: int, now: datetime) -> bool:
    """Count an open in one UPDATE (pixels arrive concurrently). False for an unknown message."""
    result = session.execute(
        update(Message).where(Message.id == message_id).values(
            opens=Message.opens + 1,
            first_opened_at=func.coalesce(Message.first_opened_at, now),
        )
    )
    return result.rowcount > 0


def record_click(session: Session, message_id: int, now: datetime) -> bool:
    """Count a click; a click also proves an open when the client blocked the pixel."""
    result = session.execute(
        update(Message).where(Message.id == message_id).values(
            clicks=Message.clicks + 1,
            first_clicked_at=func.coalesce(Message.first_clicked_at, now),
        )
    )
    if result.rowcount:
        session.execute(
            update(Message).where(Message.id == message_id, Message.opens == 0).values(
                opens=1, first_opened_at=func.coalesce(Message.first_opened_at, now))
        )
    return result.rowcount > 0


def unsubscribe(session: Session, shop_id: int, address: str, now: datetime) -> int:
    """Suppress the address for this shop and skip its messages still waiting to go out.

    Returns how many queued messages were skipped. Idempotent: a second call changes nothing.
    """
    address = normalize(address)
    suppress(session, shop_id, address, "unsubscribe", now)
    pending = session.scalars(
        select(Message.id).where(
            Message.shop_id == shop_id,
            func.lower(Message.recipient) == address,
            Message.state == MessageState.QUEUED.value,
        )
    ).all()
    if pending:
        session.execute(
            update(Message).where(Message.id.in_(pending),
                                  Message.state == MessageState.QUEUED.value)
            .values(state=MessageState.SKIPPED.value, skip_reason=UNSUBSCRIBED)
        )
    return len(pending)
