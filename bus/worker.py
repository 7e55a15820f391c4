"""The consume loop every role runs: poll a batch, handle it, dead-letter what cannot be
handled, commit, repeat, until told to stop.

Failure policy, in order:

1. The whole batch is retried up to ``retry.max_attempts`` times with exponential backoff
   (a flaky dependency usually recovers within a second).
2. Then the batch is split in halves, each tried once, and a half that fails again is
   split in turn, down to single messages, which get the same bounded retries: one
   poison message among 5,000 costs some thirty tries of ever smaller parts, not 5,000
   single-message transactions, and does not take its neighbours with it.
3. A message that still fails goes to ``deadletter`` (``bus.deadletter``: original bytes,
   error, source topic/partition/offset, headers, time) and the stream goes on.

Exceptions listed in ``transient`` (by default the store and the bus being unreachable)
are outages, not bad messages: dead-lettering them would empty the whole stream into the
deadletter topic, so they are retried with capped backoff until they pass or ``stop`` is set.

The batch is committed only after every message in it was handled or dead-lettered, so a
crash anywhere in between redelivers the batch (at-least-once; handlers must be idempotent,
which deterministic resource ids make them).

Every message reaches the handler with a ``trace-id`` header: the one it carries, or the one
``bus.headers`` derives from it (the same at every delivery), so what a handler publishes
and logs carries the trace on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bus.base import Bus, Consumer, Message, Record
from bus.deadletter import deadletter_record, describe
from bus.errors import CommitFailed
from bus.headers import traced
from bus.topics import DEADLETTER
from caregraph.errors import BusError, BusUnavailable, StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[list[Message]], None]

#: The most messages one poll hands the handler, unless the caller says otherwise.
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: ``base_delay_s * 2**n``, capped at ``max_delay_s``."""

    max_attempts: int = 5
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")

    def delay(self, failures: int) -> float:
        """How long to wait after the ``failures``-th failure (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)))


@dataclass
class WorkerStats:
    """Counters a worker updates as it goes; read them for metrics or in tests."""

    batches: int = 0
    handled: int = 0
    retries: int = 0
    deadlettered: int = 0
    commit_failures: int = 0
    last_error: str | None = None


class Stopped(Exception):
    """``stop`` was set while waiting to retry; the batch stays uncommitted."""


def run_consumer(
    bus: Bus,
    group: str,
    topics: Iterable[str],
    handler: Handler,
    *,
    stop: threading.Event,
    retry: RetryPolicy = RetryPolicy(),  # frozen value object: safe as a default
    batch_size: int = BATCH_SIZE,
    poll_timeout_s: float = 0.5,
    linger_s: float = 0.0,
    deadletter_topic: str = DEADLETTER,
    transient: tuple[type[BaseException], ...] = (StoreUnavailable, BusUnavailable),
    stats: WorkerStats | None = None,
) -> None:
    """Consume ``topics`` as a member of ``group`` until ``stop`` is set; blocks the thread.

    Run one per thread (or process); several in one group share the partitions. Returns
    after ``stop`` is set and the current batch is finished (or abandoned uncommitted, if
    it was waiting on a retry). ``linger_s`` > 0 keeps polling for up to that long after
    a batch smaller than ``batch_size`` arrives, as Kafka's ``fetch.max.wait.ms`` does: a
    handler whose cost is mostly per batch (a database commit writes every page the batch
    touched) handles more per call when messages trickle in, for that much latency.
    A poll that finds the bus unreachable is retried with
    backoff; any other poll failure raises ``BusError``. A failed commit after a rebalance is
    logged and the loop goes on (the batch is redelivered elsewhere).
    """
    loop = _Loop(
        bus,
        group,
        handler,
        stop,
        retry,
        deadletter_topic,
        transient,
        stats if stats is not None else WorkerStats(),
    )
    consumer = bus.subscribe(group, topics)
    try:
        outages = 0
        while not stop.is_set():
            try:
                batch = consumer.poll(poll_timeout_s, batch_size)
            except BusUnavailable as exc:
                # the broker restarting or a connection cut: wait and poll again, as for a
                # handler's outage; nothing was taken, so nothing is lost
                outages += 1
                loop.stats.last_error = str(exc)
                log.warning("group %s: %s; polling again", group, exc)
                stop.wait(retry.delay(min(outages, 10)))
                continue
            outages = 0
            if not batch:
                continue
            if linger_s > 0 and len(batch) < batch_size:
                batch = _linger(consumer, batch, batch_size, linger_s, poll_timeout_s, stop)
            batch = [traced(m) for m in batch]
            try:
                loop.handle(batch)
            except Stopped:
                return
            try:
                consumer.commit(batch)
            except CommitFailed as exc:
                loop.stats.commit_failures += 1
                log.warning("group %s: %s; the batch will be delivered again", group, exc)
    finally:
        consumer.close()


def _linger(
    consumer: Consumer,
    batch: list[Message],
    size: int,
    linger_s: float,
    poll_s: float,
    stop: threading.Event,
) -> list[Message]:
    """``batch`` topped up by further polls until it holds ``size`` or ``linger_s`` passed.
    Each poll waits at most ``poll_s``, so ``stop`` is seen as soon as in the main loop.
    A poll failing now ends the wait: what was taken is handled, the outage met next time."""
    deadline = time.monotonic() + linger_s
    while len(batch) < size and not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            batch = batch + consumer.poll(min(left, poll_s), size - len(batch))
        except BusUnavailable:
            break
    return batch


@dataclass(frozen=True, slots=True)
class _Loop:
    """What every step of the loop needs; one per ``run_consumer`` call."""

    bus: Bus
    group: str
    handler: Handler
    stop: threading.Event
    retry: RetryPolicy
    deadletter_topic: str
    transient: tuple[type[BaseException], ...]
    stats: WorkerStats

    def handle(self, batch: list[Message]) -> None:
        """Handle ``batch``; dead-letter (durably) what could not be handled."""
        self.stats.batches += 1
        error = self._attempt(batch)
        if error is None:
            self.stats.handled += len(batch)
            return
        dead: list[Record] = []
        if len(batch) == 1:
            dead.append(self._dead(batch[0], error))
        else:
            log.warning(
                "group %s: batch of %d failed %d times (%s); handling it in halves",
                self.group,
                len(batch),
                self.retry.max_attempts,
                error,
            )
            self._halves(batch, dead)
        self._publish_until_done(dead)
        self.stats.deadlettered += len(dead)

    def _halves(self, batch: list[Message], dead: list[Record]) -> None:
        """Handle the two halves of a failed batch, in order: each once, a half that fails
        split again; a single message gets the bounded retries, then ``dead``."""
        middle = len(batch) // 2
        for part in (batch[:middle], batch[middle:]):
            if len(part) == 1:
                error = self._attempt(part)
                if error is not None:
                    dead.append(self._dead(part[0], error))
                    continue
            elif self._attempt(part, attempts=1) is not None:
                self._halves(part, dead)
                continue
            self.stats.handled += len(part)

    def _attempt(self, messages: list[Message], attempts: int | None = None) -> str | None:
        """Call the handler up to ``attempts`` times (the policy's by default), an outage
        not counted; ``None`` on success, else the last error."""
        limit = self.retry.max_attempts if attempts is None else attempts
        failures = 0
        outage = 0
        while True:
            try:
                self.handler(messages)
                return None
            except self.transient as exc:
                outage += 1
                wait = self.retry.delay(outage)
                log.warning("outage (%s); retrying in %.2fs", describe(exc), wait)
            except Exception as exc:
                failures += 1
                if failures >= limit:
                    return describe(exc)
                wait = self.retry.delay(failures)
            self.stats.retries += 1
            if self.stop.wait(wait):
                raise Stopped

    def _dead(self, message: Message, error: str) -> Record:
        log.error(
            "group %s: giving up on %s/%d@%d after %d attempts: %s",
            self.group,
            message.topic,
            message.partition,
            message.offset,
            self.retry.max_attempts,
            error,
        )
        self.stats.last_error = error
        return deadletter_record(
            message, self.group, error, self.retry.max_attempts, topic=self.deadletter_topic
        )

    def _publish_until_done(self, records: list[Record]) -> None:
        """Dead letters must be durable before the batch is committed, or they are lost."""
        failures = 0
        while records:
            try:
                self.bus.publish_many(records)
                return
            except BusError as exc:
                failures += 1
                wait = self.retry.delay(failures)
                log.warning("cannot publish dead letters (%s); retrying in %.2fs", exc, wait)
            if self.stop.wait(wait):
                raise Stopped
