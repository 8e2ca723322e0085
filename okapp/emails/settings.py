"""A shop's sending settings and blocklist: validation and CSV import/export, with no Flask.

Settings live in `Shop.settings` (JSON) over `SHOP_SETTING_DEFAULTS`; only values that differ from
the defaults are stored, so improving a default later reaches every shop that never changed it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from okapp.emails.suppression import normalize, suppress
from okapp.models import SHOP_SETTING_DEFAULTS, Shop, Suppression

# One address, or `*@domain` for a whole domain. Deliberately simple: no display names, no lists.
_ADDRESS = re.compile(r"^[^@\s,;<>\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_DOMAIN_ENTRY = re.compile(r"^\*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
MAX_IMPORT_ROWS = 50_000

# (name, kind, bounds) of every setting the Settings page edits.
_INTEGERS = {
    "min_days_between_emails": (0, 60),
    "max_products_per_email": (1, 10),
    "delivery_fallback_days": (1, 90),
    "not_arrived_delay_days": (1, 60),
}
_TEXTS = {"sender_name": 100, "postal_address": 300, "exclude_product_tag": 255}
EDITABLE = ("sender_name", "reply_to", "postal_address", "send_window_start", "send_window_end",
            *_INTEGERS, "exclude_product_tag", "brand_color", "logo_url")


def is_address(value: str) -> bool:
    return bool(_ADDRESS.match(value or ""))


def valid_entry(value: str) -> bool:
    """A blocklist entry: `jane@example.com` or `*@example.com`."""
    value = normalize(value)
    return bool(_ADDRESS.match(value) or _DOMAIN_ENTRY.match(value))


def current(shop: Shop) -> dict[str, Any]:
    return {name: shop.setting(name) for name in EDITABLE}


def validate(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(clean values, errors by field). Errors are written for the merchant."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, limit in _TEXTS.items():
        value = " ".join((form.get(name) or "").split())  # one line: it may end up in a header
        if len(value) > limit:
            errors[name] = f"Keep this under {limit} characters."
        values[name] = value
    reply_to = (form.get("reply_to") or "").strip()
    if reply_to and not is_address(reply_to):
        errors["reply_to"] = "Enter one email address, like support@yourshop.com."
    values["reply_to"] = reply_to
    for name in ("send_window_start", "send_window_end"):
        value = (form.get(name) or "").strip()
        if not _TIME.match(value):
            errors[name] = "Use a 24-hour time, like 09:00."
        values[name] = value
    if ("send_window_start" not in errors and "send_window_end" not in errors
            and values["send_window_start"] >= values["send_window_end"]):
        errors["send_window_end"] = "The window must end after it starts (same day, shop time)."
    for name, (low, high) in _INTEGERS.items():
        raw = (form.get(name) or "").strip()
        try:
            number = int(raw)
        except ValueError:
            errors[name] = f"Enter a whole number from {low} to {high}."
            values[name] = raw
            continue
        if not low <= number <= high:
            errors[name] = f"Enter a whole number from {low} to {high}."
        values[name] = number
    color = (form.get("brand_color") or "").strip()
    if not _HEX_COLOR.match(color):
        errors["brand_color"] = "Use a hex colour, like #008060."
    values["brand_color"] = color
    logo = (form.get("logo_url") or "").strip()
    if logo and not logo.startswith("https://"):
        errors["logo_url"] = "Use an https:// address of an image."
    values["logo_url"] = logo
    return values, errors


def save(shop: Shop, values: Mapping[str, Any]) -> None:
    """Store only what differs from the defaults (assigns a new dict so the JSON column updates)."""
    stored = dict(shop.settings or {})
    for name in EDITABLE:
        if name not in values:
            continue
        if values[name] == SHOP_SETTING_DEFAULTS[name]:
            stored.pop(name, None)
        else:
            stored[name] = values[name]
    shop.settings = stored


# -- blocklist -----------------------------------------------------------------------------------

@dataclass
class ImportResult:
    added: int = 0
    already: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, value)


def add_to_blocklist(session: Session, shop: Shop, entry: str, now: datetime) -> bool:
    """Block an address or `*@domain`. False when it was already suppressed for any reason."""
    if not valid_entry(entry):
        raise ValueError("Enter an email address (jane@example.com) or a whole domain (*@example.com).")
    return suppress(session, shop.id, entry, "blocklist", now)


def remove_from_blocklist(session: Session, shop: Shop, suppression_id: int) -> bool:
    """Only merchant blocklist entries can be removed: an unsubscribe is the customer's choice."""
    result = session.execute(delete(Suppression).where(
        Suppression.id == suppression_id, Suppression.shop_id == shop.id,
        Suppression.reason == "blocklist"))
    return result.rowcount > 0


def _csv_values(text: str) -> Iterable[tuple[int, str]]:
    """(line number, first cell) of each non-empty row; a header row naming the column is skipped."""
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not row[0].strip():
            continue
        value = row[0].strip()
        if number == 1 and value.lower() in ("email", "address", "e-mail", "email address"):
            continue
        yield number, value


def import_csv(session: Session, shop: Shop, text: str, now: datetime) -> ImportResult:
    """Add every valid entry of the first column; report the rest with their line numbers.
    Valid lines are kept even when others are not: nothing the merchant sent is silently lost."""
    result = ImportResult()
    rows = list(_csv_values(text))
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValueError(f"That file has {len(rows):,} rows; import at most {MAX_IMPORT_ROWS:,} at once.")
    wanted: dict[str, int] = {}
    for number, value in rows:
        if valid_entry(value):
            wanted.setdefault(normalize(value), number)
        else:
            result.invalid.append((number, value[:200]))
    existing: set[str] = set()
    entries = list(wanted)
    for start in range(0, len(entries), 1000):  # one query per thousand, not one per row
        existing.update(session.scalars(select(Suppression.address).where(
            Suppression.shop_id == shop.id, Suppression.address.in_(entries[start:start + 1000]))))
    for entry in entries:
        if entry in existing:
            result.already += 1
        else:
            session.add(Suppression(shop_id=shop.id, address=entry, reason="blocklist",
                                    created_at=now))
            result.added += 1
    session.flush()
    return result


def export_csv(session: Session, shop: Shop) -> str:
    """Every suppressed address of the shop with its reason, as the import reads it back."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "reason", "since"])
    for row in session.execute(
        select(Suppression.address, Suppression.reason, Suppression.created_at)
        .where(Suppression.shop_id == shop.id).order_by(Suppression.address)
    ):
        writer.writerow([_csv_safe(row.address), row.reason, row.created_at.isoformat()])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas (CSV injection); quote them."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def search(session: Session, shop: Shop, query: str, limit: int = 100) -> tuple[list[Suppression], int]:
    base = select(Suppression).where(Suppression.shop_id == shop.id)
    query = normalize(query)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        base = base.where(Suppression.address.like(f"%{escaped}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(base.subquery()))
    rows = session.scalars(base.order_by(Suppression.created_at.desc(), Suppression.id.desc())
                           .limit(limit)).all()
    return list(rows), total or 0
