"""Running several services in one process: start them in order, stop them in reverse.

Each role (api, mllp, normalizer, ...) is a ``Service``; ``caregraph up`` starts the chosen
ones and waits for SIGINT/SIGTERM. One service failing to start stops the ones already up.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Allocations between young-generation collections (CPython's default is 700). A store
#: writer's batch allocates a dozen index-row tuples per resource, few of them in cycles:
#: collecting every 700 cost ~7% of its CPU (scratch profile, 30k monitor readings).
GC_YOUNG_THRESHOLD = 20_000


def settle_memory() -> None:
    """Once the services are built: what exists now lives as long as the process, so the
    collector stops scanning it (``gc.freeze``), and young collections run less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Service(Protocol):
    """Anything with a name that can be started (non-blocking) and stopped."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ThreadService:
    """A service whose work is one blocking function run on a thread until ``stop`` is set."""

    name: str
    run: Callable[[threading.Event], None]
    stop_event: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run(self.stop_event)
        except BaseException as exc:  # a crashed role must be visible, not silent
            self.error = exc
            log.exception("service %s failed", self.name)

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def run_services(services: Sequence[Service], stop: threading.Event | None = None) -> None:
    """Start every service, block until SIGINT/SIGTERM (or ``stop``), then stop them all."""
    stop = stop or threading.Event()
    started: list[Service] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        for service in services:
            service.start()
            started.append(service)
            log.info("started %s", service.name)
        while not stop.wait(0.5):
            failed = [s for s in started if not getattr(s, "alive", True)]
            if failed:
                names = ", ".join(s.name for s in failed)
                raise RuntimeError(f"service stopped unexpectedly: {names}")
    finally:
        for service in reversed(started):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: glibc malloc arenas for the whole process. glibc gives a thread that finds the arenas
#: locked one of its own (up to 8 per core), and each keeps its freed chunks for that
#: arena alone: SQLite and the API's worker threads allocate outside the interpreter
#: lock, so a 50-bed run ended up with ~20 arenas, each holding tens of MiB of slack.
MALLOC_ARENA_MAX = 2
#: Seconds between two ``malloc_trim(0)`` of ``heap_trimmer``.
HEAP_TRIM_INTERVAL_S = 30.0
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's <malloc.h>


@cache
def _glibc() -> Any:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else None;
    looked up once."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = MALLOC_ARENA_MAX) -> bool:
    """Cap glibc's arenas (``mallopt(M_ARENA_MAX)``); whether the cap was set (False off
    glibc). Call it before the services start their threads: arenas already made stay."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def trim_heap() -> bool:
    """Give the freed heap glibc keeps back to the system (``malloc_trim(0)``: the top of
    every arena and the free pages inside them); whether any was released (False off
    glibc, where there is nothing to call)."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def heap_trimmer(interval_s: float = HEAP_TRIM_INTERVAL_S) -> ThreadService | None:
    """A service that trims the heap every ``interval_s`` (None off glibc).

    glibc returns freed memory to the system only from the top of the main heap, so
    freed chunks in the middle of an arena stay resident: in a 50-bed run they were 100
    MiB of the process's RssAnon after two minutes. A trim every 30 s gave back 20-80 MiB
    each time, for a few milliseconds of one thread (it walks the arenas' free lists).
    """
    if _glibc() is None:
        return None

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            trim_heap()

    return ThreadService("heap-trimmer", run)
