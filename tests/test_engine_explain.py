"""explain(order) and `okapp explain SHOP ORDER`."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from okapp import cli
from okapp.sequences.explain import explain
from okapp.sequences.recruit import consider_order
from okapp.sequences.scheduler import tick
from tests.engine_support import NOW, running, work
from tests.factories import make_order


def test_journey_of_a_recruited_order(session, runtime, shop):
    running(session, shop, "review_request_reminder")
    order = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1))
    consider_order(session, order, NOW - timedelta(days=7))
    session.commit()
    tick(runtime, NOW)
    work(runtime)
    journey = explain(session, order)
    assert journey.recruited
    titles = [e.title for e in journey.entries]
    assert titles[:2] == ["Recruited", "Waiting"]
    assert "Email “Review request”" in titles and "Journey complete" not in titles
    assert "Next" in titles  # (the worker stamps real time, after this test's clock)
    assert journey.next_due == NOW + timedelta(days=5)
    text = "\n".join(journey.lines())
    assert "Wait 7 days (14 international) after fulfillment" in text
    assert "Email “Review request”: sent to " + order.email in text
    assert "Next: Wait 5 days after the previous email" in text
    assert "EST" in text  # shop time


def test_journey_of_an_order_not_recruited(session, shop):
    order = make_order(session, shop, fulfilled_at=NOW - timedelta(hours=2))
    assert [e.detail for e in explain(session, order).entries] == ["no sequence is running"]
    running(session, shop)
    order.cancelled_at = NOW
    consider_order(session, order, NOW)
    session.commit()
    journey = explain(session, order)
    assert not journey.recruited
    assert [(e.title, e.detail) for e in journey.entries] == [("Not recruited", "cancelled")]


def test_cli_prints_the_journey(session, runtime, shop, monkeypatch):
    running(session, shop)
    order = make_order(session, shop, fulfilled_at=NOW - timedelta(hours=2))
    consider_order(session, order, NOW)
    session.commit()
    monkeypatch.setattr(cli, "_runtime", lambda: runtime)
    result = CliRunner().invoke(cli.main, ["explain", shop.domain, order.name.lstrip("#")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Order {order.name}")
    assert "Recruited: into “Review Request” (running)" in result.output
    missing = CliRunner().invoke(cli.main, ["explain", shop.domain, "#999999"])
    assert missing.exit_code != 0 and "no order" in missing.output
