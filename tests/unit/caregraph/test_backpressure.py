"""The backlog gate's states, without a bus: closed above ``high``, open again at ``low``,
a held caller let go when it opens or after ``max_hold_s``."""

from __future__ import annotations

import threading
import time

import pytest

from caregraph.backpressure import BacklogGate


def test_it_closes_above_high_and_opens_at_low() -> None:
    gate = BacklogGate(lambda: 0, 100)
    assert gate.low == 50 and gate.is_open
    gate.update(100)
    assert gate.is_open  # at high: still open
    gate.update(101)
    assert not gate.is_open
    gate.update(51)
    assert not gate.is_open  # between the two: stays as it was
    gate.update(50)
    assert gate.is_open
    gate.update(99)
    assert gate.is_open
    with pytest.raises(ValueError):
        BacklogGate(lambda: 0, 0)


def test_an_open_gate_does_not_hold_and_a_closed_one_holds_at_most_max_hold() -> None:
    gate = BacklogGate(lambda: 0, 10, max_hold_s=0.05)
    assert gate.admit() is False
    gate.update(11)
    started = time.monotonic()
    assert gate.admit() is True
    assert 0.05 <= time.monotonic() - started < 1.0


def test_a_held_caller_goes_when_the_backlog_falls() -> None:
    gate = BacklogGate(lambda: 0, 10, max_hold_s=30.0)
    gate.update(11)
    done = threading.Event()
    caller = threading.Thread(target=lambda: (gate.admit(), done.set()))
    caller.start()
    assert not done.wait(0.2)
    gate.update(5)
    assert done.wait(5.0)
    caller.join()


def test_the_watch_follows_the_backlog_and_opens_when_it_cannot_read_it() -> None:
    readings: list[int | Exception] = [500]

    class Backlog:
        closed = False

        def __call__(self) -> int:
            value = readings[-1]
            if isinstance(value, Exception):
                raise value
            return value

        def close(self) -> None:
            self.closed = True

    backlog = Backlog()
    gate = BacklogGate(backlog, 100, poll_s=0.01)
    gate.start()
    try:
        deadline = time.monotonic() + 5
        while gate.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not gate.is_open
        readings.append(OSError("bus down"))
        while not gate.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gate.is_open
        readings.append(500)
        while gate.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not gate.is_open
    finally:
        gate.stop()
    assert gate.is_open  # stopped: nobody stays held
    assert backlog.closed
