"""The listener's publish outcome: what each connection (and each repeat's) waits on."""

from __future__ import annotations

import threading

import pytest

from devices.mllp.listener import _Outcome


def test_every_waiter_passes_once_published() -> None:
    outcome = _Outcome()
    passed: list[int] = []
    waiters = [
        threading.Thread(target=lambda i=i: (outcome.wait(5), passed.append(i))) for i in range(8)
    ]
    for t in waiters:
        t.start()
    outcome.set()
    for t in waiters:
        t.join(5)
    assert sorted(passed) == list(range(8))
    outcome.wait(0)  # and any later waiter at once


def test_a_failed_publish_is_raised_to_every_waiter() -> None:
    outcome = _Outcome()
    outcome.set(OSError("disk full"))
    for _ in range(2):
        with pytest.raises(OSError, match="disk full"):
            outcome.wait(1)


def test_an_unset_outcome_times_out() -> None:
    with pytest.raises(TimeoutError):
        _Outcome().wait(0.01)
