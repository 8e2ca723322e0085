"""The migrations build the schema the models describe, and the constraints refuse duplicates."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from okapp import migrate
from okapp.db import make_engine
from okapp.models import Sequence, SequenceStatus, Shop, WebhookEvent
from tests.factories import (
    NOW,
    make_enrollment,
    make_message,
    make_order,
    make_sequence,
    make_shop,
)


def test_upgrade_on_empty_database_then_no_drift(empty_database):
    url = empty_database()
    engine = make_engine(url)
    assert inspect(engine).get_table_names() == []
    migrate.upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"shops", "orders", "enrollments", "messages", "webhook_events"} <= tables
    assert migrate.drift(engine) == []
    engine.dispose()


def test_drift_check_notices_a_missing_column(empty_database):
    url = empty_database()
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE shops DROP COLUMN needs_reauth"))
    assert any("needs_reauth" in repr(d) for d in migrate.drift(engine))
    engine.dispose()


def _refused(session, fn):
    with pytest.raises(IntegrityError):
        fn()
        session.flush()
    session.rollback()


def test_one_enrollment_per_sequence_and_order(session):
    shop = make_shop(session)
    seq = make_sequence(session, shop)
    order = make_order(session, shop)
    make_enrollment(session, seq, order)
    session.commit()
    _refused(session, lambda: make_enrollment(session, seq, order))
    # Another sequence may enroll the same order.
    other = make_sequence(session, shop, name="Other")
    make_enrollment(session, other, order)
    session.commit()


def test_one_message_per_enrollment_and_block(session):
    shop = make_shop(session)
    seq = make_sequence(session, shop)
    enrollment = make_enrollment(session, seq, make_order(session, shop))
    make_message(session, enrollment)
    session.commit()
    _refused(session, lambda: make_message(session, enrollment))


def test_at_most_one_running_sequence_per_shop(session):
    shop = make_shop(session)
    make_sequence(session, shop, status=SequenceStatus.RUNNING.value)
    make_sequence(session, shop, status=SequenceStatus.STOPPED.value)
    make_sequence(session, shop, status=SequenceStatus.DRAFT.value)
    session.commit()
    _refused(session, lambda: make_sequence(session, shop, status="running"))
    # Another shop may run its own.
    make_sequence(session, make_shop(session), status="running")
    session.commit()
    # Stopping the running one frees the slot.
    running = session.query(Sequence).filter_by(shop_id=shop.id, status="running").one()
    running.status = "stopped"
    session.commit()
    make_sequence(session, shop, status="running")
    session.commit()


def test_webhook_events_unique_by_id(session):
    def add():
        session.add(WebhookEvent(webhook_id="w-1", shop_domain="a.myshopify.com",
                                 topic="fulfillments/create", payload="{}"))
        session.flush()

    add()
    session.commit()
    _refused(session, add)


def test_sequence_status_must_be_known(session):
    shop = make_shop(session)
    _refused(session, lambda: make_sequence(session, shop, status="paused"))


def test_due_enrollments_have_a_partial_index(runtime):
    indexes = {ix["name"]: ix for ix in inspect(runtime.engine).get_indexes("enrollments")}
    assert indexes["ix_enrollments_due"]["column_names"] == ["due_at"]


def test_access_tokens_are_encrypted_at_rest(session, runtime):
    shop = make_shop(session, access_token="shpat_secret_value", refresh_token="shprt_other")
    session.commit()
    with runtime.engine.connect() as conn:
        raw = conn.execute(text("SELECT access_token, refresh_token FROM shops WHERE id = :id"),
                           {"id": shop.id}).one()
    assert "shpat_secret_value" not in raw[0] and "shprt_other" not in raw[1]
    session.expire_all()
    assert session.get(Shop, shop.id).access_token == "shpat_secret_value"


def test_datetimes_come_back_aware_utc(session):
    shop = make_shop(session, installed_at=NOW)
    session.commit()
    session.expire_all()
    assert session.get(Shop, shop.id).installed_at == NOW
    assert session.get(Shop, shop.id).installed_at.utcoffset().total_seconds() == 0


def test_sqlite_and_postgres_both_supported():
    # The engine factory turns a plain postgresql:// URL into the psycopg 3 driver.
    engine = make_engine("postgresql://u@127.0.0.1:1/x")
    assert engine.url.drivername == "postgresql+psycopg"
    assert create_engine("sqlite://").dialect.name == "sqlite"
