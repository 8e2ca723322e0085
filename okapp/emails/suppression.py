"""Addresses and domains a shop must never email (unsubscribe, bounce, complaint, blocklist)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import Suppression

REASONS = ("unsubscribe", "bounce", "complaint", "blocklist")


def normalize(address: str) -> str:
    return address.strip().lower()


def domain_entry(address: str) -> str:
    """`jane@example.com` -> `*@example.com`, the form a whole-domain block is stored in."""
    return "*@" + normalize(address).rpartition("@")[2]


def hashed_entry(address: str) -> str:
    """How the suppression of a customer erased on request (GDPR) is kept: still matched, no
    longer readable. The unsubscribe must outlive the erasure, or their next order would email
    them again."""
    return "sha256:" + hashlib.sha256(normalize(address).encode()).hexdigest()


def lookup_entries(address: str) -> list[str] | None:
    """The stored entries that would suppress this address (itself, its `*@domain`, its erased
    form), or None when it is no address at all."""
    address = normalize(address)
    if not address or "@" not in address:
        return None
    return [address, domain_entry(address), hashed_entry(address)]


def suppression_reason(session: Session, shop_id: int, address: str) -> str | None:
    """Why this address must not be emailed by this shop, or None when it may be."""
    entries = lookup_entries(address)
    if entries is None:
        return "invalid_address"
    row = session.execute(
        select(Suppression.address, Suppression.reason).where(
            Suppression.shop_id == shop_id, Suppression.address.in_(entries))
    ).first()
    return row.reason if row else None


def is_suppressed(session: Session, shop_id: int, address: str) -> bool:
    return suppression_reason(session, shop_id, address) is not None


def suppress(session: Session, shop_id: int, address: str, reason: str, now: datetime) -> bool:
    """Suppress an address (or `*@domain`). Returns False when it already was."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    address = normalize(address)
    exists = session.scalar(
        select(Suppression.id).where(Suppression.shop_id == shop_id, Suppression.address == address)
    )
    if exists:
        return False
    session.add(Suppression(shop_id=shop_id, address=address, reason=reason, created_at=now))
    session.flush()
    return True
