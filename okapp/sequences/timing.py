"""Time in the shop's zone: wait due times, the send window, lookback drip slots.

Every function takes the moment it reasons about; none reads the clock. Day arithmetic happens on
the shop's wall clock so "7 days after 10:00" is 10:00 a week later even across a daylight-saving
change, and the send window is placed with real zone rules (zoneinfo).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from okapp.models import Order, Shop

ANCHOR_FULFILLMENT = "fulfillment"
ANCHOR_DELIVERY = "delivery"
ANCHOR_PREVIOUS_EMAIL = "previous_email"


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def shop_zone(shop: Shop) -> ZoneInfo:
    return zone(shop.timezone)


def shop_today(shop: Shop, now: datetime) -> date:
    return now.astimezone(shop_zone(shop)).date()


def local_date(shop: Shop, moment: datetime) -> date:
    return moment.astimezone(shop_zone(shop)).date()


def add_days(moment: datetime, days: int, tz: ZoneInfo) -> datetime:
    """`days` calendar days later on the shop's wall clock (same local time of day)."""
    local = moment.astimezone(tz) + timedelta(days=days)  # aware + timedelta keeps wall time
    return local.replace(fold=0).astimezone(tz).astimezone(moment.tzinfo)


def parse_hhmm(value: str, default: time) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        return default


@dataclass(frozen=True)
class SendWindow:
    tz: ZoneInfo
    start: time
    end: time

    @classmethod
    def of(cls, shop: Shop) -> SendWindow:
        start = parse_hhmm(shop.setting("send_window_start"), time(9))
        end = parse_hhmm(shop.setting("send_window_end"), time(20))
        return cls(shop_zone(shop), start, end)

    def _at(self, day: date, when: time, like: datetime) -> datetime:
        return datetime.combine(day, when, tzinfo=self.tz).astimezone(like.tzinfo)

    def place(self, moment: datetime) -> datetime:
        """`moment` if it falls inside the window, else the next opening of the window."""
        if self.start == self.end:  # a window of the whole day
            return moment
        local = moment.astimezone(self.tz)
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            if self.start <= t < self.end:
                return moment
            day = local.date() if t < self.start else local.date() + timedelta(days=1)
            return self._at(day, self.start, moment)
        # A window across midnight (e.g. 20:00-02:00): closed between end and start.
        if t >= self.start or t < self.end:
            return moment
        return self._at(local.date(), self.start, moment)

    def contains(self, moment: datetime) -> bool:
        return self.place(moment) == moment


def is_domestic(shop: Shop, order: Order) -> bool:
    """Domestic: shipped to the shop's country; an order without a shipping address is domestic."""
    country = (order.shipping_country or "").upper()
    return not country or not shop.country or country == shop.country.upper()


@dataclass(frozen=True)
class WaitDue:
    due_at: datetime | None  # None: cannot be known yet (no anchor)
    why: str


def wait_due(shop: Shop, order: Order, config: dict, entered_at: datetime) -> WaitDue:
    """When a WAIT block ends for this order, and a sentence saying why."""
    tz = shop_zone(shop)
    domestic = is_domestic(shop, order)
    key = "domestic_days" if domestic else "international_days"
    days = int(config.get(key) or 0)
    where = "domestic" if domestic else f"international ({order.shipping_country})"
    anchor = config.get("anchor") or ANCHOR_FULFILLMENT
    if anchor == ANCHOR_PREVIOUS_EMAIL:
        return WaitDue(add_days(entered_at, days, tz), f"{days} days after the previous email")
    fulfilled = order.fulfilled_at
    if fulfilled is None:
        return WaitDue(None, "the order is not fulfilled yet")
    if anchor == ANCHOR_DELIVERY:
        if order.delivered_at is not None:
            return WaitDue(add_days(order.delivered_at, days, tz),
                           f"{days} days after delivery, {where}")
        fallback = int(shop.setting("delivery_fallback_days"))
        due = max(add_days(fulfilled, days, tz), add_days(fulfilled, fallback, tz))
        return WaitDue(due, f"{days} days after fulfillment, {where}: no delivery reported, "
                            f"so the fulfilled date counts after {fallback} days")
    return WaitDue(add_days(fulfilled, days, tz), f"{days} days after fulfillment, {where}")


def drip_slot(window: SendWindow, start: datetime, slot: int) -> datetime:
    """The start of the `slot`-th hour inside the send window from `start` (slot 0: `start`
    placed in the window). Lookback sends take `rate` orders per slot."""
    moment = window.place(start)
    for _ in range(slot):
        moment = window.place(moment + timedelta(hours=1))
    return moment
