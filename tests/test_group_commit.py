"""GroupCommit: concurrent submits share writes, each caller gets its own item's outcome."""

import threading
import time

import pytest

from okapp.group_commit import GroupCommit


def _submit_all(group, items):
    """Submit every item from a thread of its own, all at once; outcome or exception by item."""
    results = {}
    start = threading.Barrier(len(items))

    def submit(item):
        start.wait()
        try:
            results[item] = group.submit(item)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each caller got
            results[item] = exc

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a submit never returned"
    return results


def test_callers_arriving_together_share_writes_and_get_their_own_outcomes():
    batches = []

    def write(items):
        batches.append(list(items))
        time.sleep(0.02)  # a write long enough for the others to queue behind it
        return [item * 10 for item in items]

    group = GroupCommit(write)
    results = _submit_all(group, list(range(40)))

    assert results == {item: item * 10 for item in range(40)}
    written = [item for batch in batches for item in batch]
    assert sorted(written) == list(range(40))  # each item written exactly once
    assert len(batches) < 40 and max(len(batch) for batch in batches) > 1


def test_a_caller_alone_writes_at_once():
    group = GroupCommit(lambda items: [f"stored {item}" for item in items])
    assert group.submit("a") == "stored a"
    assert group.submit("b") == "stored b"


def test_no_write_takes_more_than_max_batch():
    sizes = []

    def write(items):
        sizes.append(len(items))
        time.sleep(0.02)
        return items

    group = GroupCommit(write, max_batch=3)
    results = _submit_all(group, list(range(20)))
    assert results == {item: item for item in range(20)}
    assert max(sizes) <= 3 and sum(sizes) == 20


def test_a_failed_write_raises_to_every_caller_in_it_and_the_next_write_goes_on():
    failing = threading.Event()
    failing.set()
    written = []

    def write(items):
        time.sleep(0.02)
        if failing.is_set() and 0 in items:
            raise RuntimeError("database went away")
        written.extend(items)
        return [True] * len(items)

    group = GroupCommit(write)
    results = _submit_all(group, list(range(12)))

    failed = {item for item, outcome in results.items() if isinstance(outcome, RuntimeError)}
    assert 0 in failed
    assert all(results[item] is True for item in set(range(12)) - failed)
    assert sorted(written) == sorted(set(range(12)) - failed)  # a failed write stored nothing
    failing.clear()
    assert group.submit(99) is True  # the lead was handed on: nothing hangs after a failure


def test_a_write_returning_the_wrong_number_of_outcomes_is_an_error():
    group = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 outcomes for 1 items"):
        group.submit("x")
