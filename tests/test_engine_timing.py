"""Waits and the send window in the shop's time zone, with an injected clock (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from okapp.models import Order, Shop
from okapp.sequences.timing import SendWindow, add_days, drip_slot, is_domestic, wait_due, zone

NY = zone("America/New_York")


def shop(**settings) -> Shop:
    return Shop(domain="t.myshopify.com", timezone="America/New_York", country="US",
                settings=settings)


def order(country="US", fulfilled=None, delivered=None) -> Order:
    return Order(shipping_country=country, fulfilled_at=fulfilled, delivered_at=delivered)


def test_days_are_counted_on_the_shop_wall_clock_across_daylight_saving():
    # 10:00 EDT on Saturday 31 Oct 2026; clocks go back on 1 Nov. A week later is 10:00 EST.
    fulfilled = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)
    later = add_days(fulfilled, 7, NY)
    assert later == datetime(2026, 11, 7, 15, 0, tzinfo=UTC)
    assert later.astimezone(NY).hour == 10
    # And forward in March: 10:00 EST on 7 Mar -> 10:00 EDT on 14 Mar (one hour less of UTC).
    assert add_days(datetime(2026, 3, 7, 15, 0, tzinfo=UTC), 7, NY) == \
        datetime(2026, 3, 14, 14, 0, tzinfo=UTC)


def test_send_window_places_sends_at_nine_shop_time_on_the_daylight_saving_day():
    window = SendWindow.of(shop())
    # 1 Nov 2026, 05:30 UTC = 01:30 EDT/EST (the ambiguous hour): the window opens at 09:00 EST.
    placed = window.place(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    assert placed == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    # The day before, 09:00 was still EDT (13:00 UTC).
    assert window.place(datetime(2026, 10, 31, 5, 30, tzinfo=UTC)) == \
        datetime(2026, 10, 31, 13, 0, tzinfo=UTC)
    # Spring forward: 8 Mar 2026 02:00 does not exist; 09:00 EDT is 13:00 UTC.
    assert window.place(datetime(2026, 3, 8, 7, 30, tzinfo=UTC)) == \
        datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_send_window_inside_after_closing_and_custom_hours():
    window = SendWindow.of(shop())
    inside = datetime(2026, 11, 2, 20, 0, tzinfo=UTC)  # 15:00 EST
    assert window.place(inside) == inside and window.contains(inside)
    late = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # 21:00 EST on the 2nd: next morning 09:00
    assert window.place(late) == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    evening = SendWindow.of(shop(send_window_start="18:00", send_window_end="22:00"))
    assert evening.place(inside) == datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
    overnight = SendWindow.of(shop(send_window_start="20:00", send_window_end="02:00"))
    one_am = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)  # 01:00 EST: inside a window across midnight
    assert overnight.place(one_am) == one_am
    assert overnight.place(inside) == datetime(2026, 11, 3, 1, 0, tzinfo=UTC)


def test_domestic_international_and_no_address():
    s = shop()
    assert is_domestic(s, order("US")) and is_domestic(s, order("us"))
    assert is_domestic(s, order(""))  # no shipping address counts as domestic
    assert not is_domestic(s, order("CA"))
    fulfilled = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    config = {"anchor": "fulfillment", "domestic_days": 7, "international_days": 14}
    assert wait_due(s, order("US", fulfilled), config, fulfilled).due_at == \
        fulfilled + timedelta(days=7)
    intl = wait_due(s, order("DE", fulfilled), config, fulfilled)
    assert intl.due_at == fulfilled + timedelta(days=14) and "international (DE)" in intl.why


def test_delivery_anchor_and_its_fallback_to_the_fulfilled_date():
    s = shop(delivery_fallback_days=14)
    fulfilled = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    config = {"anchor": "delivery", "domestic_days": 3, "international_days": 10}
    delivered = fulfilled + timedelta(days=4)
    assert wait_due(s, order("US", fulfilled, delivered), config, fulfilled).due_at == \
        delivered + timedelta(days=3)
    # No delivery reported: wait for it up to 14 days after fulfillment, then go.
    fallback = wait_due(s, order("US", fulfilled), config, fulfilled)
    assert fallback.due_at == fulfilled + timedelta(days=14)
    assert "no delivery reported" in fallback.why
    # International waits longer than the fallback: the longer one wins.
    assert wait_due(s, order("FR", fulfilled), config, fulfilled).due_at == \
        fulfilled + timedelta(days=14)
    s.settings = {"delivery_fallback_days": 20}
    assert wait_due(s, order("FR", fulfilled), config, fulfilled).due_at == \
        fulfilled + timedelta(days=20)


def test_follow_up_wait_counts_from_the_previous_email():
    s = shop()
    sent = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    due = wait_due(s, order("DE", sent - timedelta(days=9)),
                   {"anchor": "previous_email", "domestic_days": 5, "international_days": 5}, sent)
    assert due.due_at == sent + timedelta(days=5)


def test_lookback_drip_slots_are_hours_inside_the_window():
    window = SendWindow.of(shop())
    start = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # 18:30 EST
    slots = [drip_slot(window, start, n) for n in range(4)]
    assert [s.astimezone(NY).strftime("%d %H:%M") for s in slots] == \
        ["02 18:30", "02 19:30", "03 09:00", "03 10:00"]
