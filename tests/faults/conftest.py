"""The fault suite needs PostgreSQL (it drops connections, races schedulers on row locks)."""

from tests.conftest import BACKEND


def pytest_collection_modifyitems(config, items):
    if BACKEND != "sqlite":
        return
    chosen = [item for item in items if "faults" not in item.keywords]
    dropped = [item for item in items if "faults" in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
