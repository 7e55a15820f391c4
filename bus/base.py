"""The bus interface. Both implementations pass ``tests/integration/bus/test_contract.py``.

Semantics, as Kafka's: topics split into partitions; a message's key picks its partition, so
all messages with one key (one patient) keep their order; consumers join a group, the group
shares the partitions, and each group remembers a committed offset per partition. Delivery
is at-least-once: a consumer commits only after its handler succeeded, so after a crash the
uncommitted tail is delivered again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


@dataclass(frozen=True, slots=True)
class Record:
    """A message to publish."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """A message as consumed: where it sits in the log, and what it holds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, str]
    timestamp_ms: int


class Consumer(ABC):
    """One member of a consumer group, reading the partitions the group assigned to it."""

    @abstractmethod
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Next messages after this member's position; empty after ``timeout_s`` if none."""

    @abstractmethod
    def commit(self, messages: Sequence[Message]) -> None:
        """Commit, per partition, the position just past the highest of ``messages``."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group; uncommitted messages go to whoever takes the partition next."""

    @abstractmethod
    def assignment(self) -> frozenset[tuple[str, int]]:
        """The (topic, partition) pairs this member reads now; known after a ``poll``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Bus(ABC):
    """Publish durably, consume in groups. Errors are ``caregraph.errors.BusError``."""

    @abstractmethod
    def publish_many(self, records: Sequence[Record]) -> None:
        """Publish a batch; when this returns every record is durable (acks=all / on disk)."""

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish one message; durable when this returns."""
        self.publish_many([Record(topic, value, key, headers or {})])

    @abstractmethod
    def subscribe(self, group: str, topics: Iterable[str]) -> Consumer:
        """Join ``group`` as a new member reading ``topics``."""

    @abstractmethod
    def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create the topics that do not exist yet, with the configured partition count."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``BusUnavailable`` with a one-line reason unless the bus is reachable."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release connections or files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
