"""The process's memory housekeeping: glibc's arenas and the heap trimmer."""

from __future__ import annotations

import ctypes
import sys
import threading

import pytest

from caregraph.runtime import ThreadService, heap_trimmer, limit_malloc_arenas, trim_heap


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018 - present on glibc only
    except (OSError, AttributeError):
        return False
    return True


GLIBC = sys.platform == "linux" and _glibc()


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_on_glibc_the_calls_are_made() -> None:
    assert limit_malloc_arenas(16)  # glibc's own limit on this machine kind: harmless
    blocks = [bytes(2048) for _ in range(20_000)]  # malloc'd (beyond pymalloc's 512 B)
    del blocks
    assert isinstance(trim_heap(), bool)  # whether it released any: up to the allocator


@pytest.mark.skipif(GLIBC, reason="not glibc")
def test_elsewhere_nothing_is_called() -> None:
    assert limit_malloc_arenas() is False
    assert trim_heap() is False
    assert heap_trimmer() is None


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_the_trimmer_trims_at_its_interval_and_stops_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import caregraph.runtime as runtime

    trims = threading.Semaphore(0)
    monkeypatch.setattr(runtime, "trim_heap", lambda: bool(trims.release()) or True)
    service = heap_trimmer(interval_s=0.01)
    assert isinstance(service, ThreadService)
    service.start()
    try:
        assert trims.acquire(timeout=5) and trims.acquire(timeout=5)
        assert service.alive
    finally:
        service.stop()
    assert not service.alive
