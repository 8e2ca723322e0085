"""Jinja filters that show dates in the merchant's time zone and numbers the way people read them."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import g


def _shop_zone() -> ZoneInfo:
    shop = g.get("shop")
    try:
        return ZoneInfo(shop.timezone) if shop is not None and shop.timezone else ZoneInfo("UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def shopdate(value: datetime | date | str | None) -> str:
    """`Nov 2, 2026`, in the shop's time zone for datetimes."""
    if not value:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.astimezone(_shop_zone())
    return f"{value:%b} {value.day}, {value.year}"


def shopdatetime(value: datetime | None) -> str:
    """`Nov 2, 2026, 3:05 PM` in the shop's time zone."""
    if not value:
        return ""
    local = value.astimezone(_shop_zone())
    hour = local.hour % 12 or 12
    return f"{shopdate(local)}, {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"


def number(value: int | float | None) -> str:
    return f"{value or 0:,}"


def percent(part: int | float | None, whole: int | float | None) -> str:
    return f"{100 * (part or 0) / whole:.0f}%" if whole else "—"


FILTERS = {"shopdate": shopdate, "shopdatetime": shopdatetime, "number": number}
GLOBALS = {"percent": percent}
