"""Where a process's memory is, read at scrape time: ``caregraph_memory_bytes{kind=...}``.

Resident memory alone cannot tell a leak from a cache filling or a file mapped: a 10-minute
run at 50 beds showed VmRSS swinging by 100+ MiB from one second to the next with the SQLite
store's mmap, while the heap grew from SQLite page caches and allocator slack, not from
Python objects. The kinds, each left out where the platform cannot tell it:

- ``rss_anon``: RssAnon of ``/proc/self/status``, the heap; what a leak grows.
- ``rss_file``: RssFile, code and mapped files (the SQLite store's mmap); the kernel
  reclaims it under pressure.
- ``sqlite``: ``sqlite3_memory_used()``, what SQLite holds for every connection of the
  process: page caches (bounded by each connection's ``cache_size``) and prepared
  statements (a multi-row INSERT of 500 rows is ~300 KiB; bounded by the number each
  connection caches); in a 50-bed run up to ~35 MiB of pages (the connection that wrote
  last: in WAL mode the others drop theirs) and ~10-20 MiB of statements.
- ``malloc_free``: glibc's ``mallinfo2().fordblks``, freed heap the allocator keeps rather
  than returning it to the system. ``caregraph up`` trims it every 30 s
  (``caregraph.runtime.heap_trimmer``), which hands the pages inside free chunks back but
  leaves the chunks counted here: after a trim most of this is no longer resident.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _sqlite_memory_used() -> Callable[[], int] | None:
    """``sqlite3_memory_used`` of the SQLite that Python's ``sqlite3`` uses (looked up
    through the extension module, so a static build is found too), or None."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        used = lib.sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    used.argtypes = []
    return lambda: int(used())


def _malloc_free() -> Callable[[], int] | None:
    """Free bytes glibc's allocator holds (``mallinfo2``, glibc 2.33+), or None."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    return lambda: int(mallinfo2().fordblks)


def read_status(path: Path = Path("/proc/self/status")) -> dict[str, int]:
    """RssAnon and RssFile in bytes (``rss_anon``, ``rss_file``); empty off Linux."""
    out: dict[str, int] = {}
    names = {"RssAnon": "rss_anon", "RssFile": "rss_file"}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in names:
            out[names[key]] = int(value.split()[0]) * 1024
    return out


class MemoryCollector(Collector):
    """``caregraph_memory_bytes{kind}``, read at each scrape (a few microseconds; glibc's
    count walks its free lists, well under a millisecond at the sizes seen here)."""

    def __init__(self) -> None:
        self._sqlite = _sqlite_memory_used()
        self._malloc_free = _malloc_free()

    def values(self) -> dict[str, int]:
        out = read_status()
        if self._sqlite is not None:
            out["sqlite"] = self._sqlite()
        if self._malloc_free is not None:
            out["malloc_free"] = self._malloc_free()
        return out

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "caregraph_memory_bytes",
            "this process's memory by kind: rss_anon (heap), rss_file (code, mapped files),"
            " sqlite (SQLite's page caches and statements), malloc_free (freed heap the"
            " allocator keeps)",
            labels=["kind"],
        )
        for kind, value in sorted(self.values().items()):
            family.add_metric([kind], float(value))
        yield family
