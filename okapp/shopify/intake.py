"""Storing webhook deliveries as they arrive: the one write made before Shopify gets its 200.

A web process keeps two connections of its own for this, in autocommit, each behind a
`GroupCommit`: deliveries that arrive together are stored in one INSERT, and no pool checkout or
transaction is paid per delivery. A failed write drops its connection (the next write opens a
new one) and raises to every delivery in it, which are answered 500 and sent again by Shopify:
the INSERT is one statement, so nothing of it was stored.

Most topics are written with `synchronous_commit = off`: the commit does not wait for the WAL
flush, so only a crash of the database server itself (not of the app) could forget the last
fraction of a second of fulfillment and order events, and those are re-read from Shopify by the
periodic reconciliation anyway. Events nothing would re-read (the compliance topics and
`app/uninstalled`) go through the durable connection.
"""

from __future__ import annotations

import threading

from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from okapp.db import make_engine
from okapp.group_commit import GroupCommit
from okapp.shopify.webhooks import COMPLIANCE_TOPICS, store_events

# Deliveries that must survive even a database crash: nothing else would bring them back.
DURABLE_TOPICS = frozenset(COMPLIANCE_TOPICS) | {"app/uninstalled"}


class DeliveryWriter:
    """One held autocommit connection and the group commit in front of it."""

    def __init__(self, database_url: str, durable: bool):
        options = {}
        if not durable and database_url.startswith("postgresql"):
            options["connect_args"] = {"options": "-c synchronous_commit=off"}
        # NullPool: the connection is this writer's alone, and closing it really closes it.
        self.engine = make_engine(database_url, poolclass=NullPool, pool_pre_ping=False,
                                  isolation_level="AUTOCOMMIT", **options)
        self._connection: Connection | None = None
        self.group = GroupCommit(self._write)

    def _write(self, deliveries: list[dict]) -> list[int | None]:
        # Only the group's current writer gets here: the connection is never shared.
        if self._connection is None:
            self._connection = self.engine.connect()
        try:
            return store_events(self._connection, deliveries)
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.invalidate()
            connection.close()

    def close(self) -> None:
        self._drop()
        self.engine.dispose()


class DeliveryStore:
    """A process's webhook intake: `store(delivery)` from any request thread."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._writers: dict[bool, DeliveryWriter] = {}
        self._lock = threading.Lock()

    def store(self, delivery: dict) -> int | None:
        """Store one delivery (a dict as `store_events` takes it): its new row's id, or None if
        its webhook id was stored before."""
        return self.writer(delivery["topic"]).group.submit(delivery)

    def writer(self, topic: str) -> DeliveryWriter:
        durable = topic in DURABLE_TOPICS
        writer = self._writers.get(durable)
        if writer is None:
            with self._lock:
                writer = self._writers.get(durable)
                if writer is None:
                    writer = self._writers[durable] = DeliveryWriter(self.database_url, durable)
        return writer

    def close(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
