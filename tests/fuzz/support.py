"""What the fuzz harnesses share: the example budget, a hard time limit, byte mutations."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = max(1, int(os.environ.get("CAREGRAPH_FUZZ_SCALE", "1")))
EXAMPLE_LIMIT_S = float(os.environ.get("CAREGRAPH_FUZZ_EXAMPLE_LIMIT_S", "10"))


def budget(examples: int) -> settings:
    """``@settings`` for a harness: ``examples`` in CI, times ``CAREGRAPH_FUZZ_SCALE``.

    No hypothesis deadline: on a shared machine a slow example is not a bug; a hang is,
    and ``time_limit`` catches it."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(BaseException):
    """An example ran past its time limit. A BaseException, so ``except Exception`` in the
    code under test cannot swallow it."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_LIMIT_S) -> Iterator[None]:
    """Raise ``Hang`` in this (the main) thread if the block runs longer than ``seconds``.

    SIGALRM, restored afterwards with what remained of any outer timer (pytest-timeout's).
    """
    started = time.monotonic()

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"an example ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_left, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:
            left = max(0.001, outer_left - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def apply_mutations(data: bytes, ops: Sequence[tuple[int, int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, length, chunk in ops:
        at = position % (len(out) + 1)
        if kind == 0:  # overwrite
            out[at : at + len(chunk)] = chunk
        elif kind == 1:  # insert
            out[at:at] = chunk
        elif kind == 2:  # delete
            del out[at : at + length]
        elif kind == 3:  # truncate
            del out[at:]
        else:  # repeat a slice
            out[at:at] = bytes(out[at : at + length]) * (1 + len(chunk) % 50)
    return bytes(out)


def mutated(seeds: Sequence[bytes], interesting: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Strategy: a seed with a few byte mutations (overwrite, insert, delete, truncate,
    repeat); inserted chunks are random bytes or ``interesting`` fragments."""
    chunks = st.one_of(
        st.binary(min_size=1, max_size=16),
        *([st.sampled_from(list(interesting))] if interesting else []),
    )
    op = st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 64), chunks)
    return st.builds(apply_mutations, st.sampled_from(list(seeds)), st.lists(op, max_size=6))
