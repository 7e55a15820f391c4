"""Which partition a record goes to, and which member of a group reads which partition.

Both are pure functions shared by the in-process and the embedded bus, so the two agree and
can be tested without I/O. (The Kafka bus leaves partitioning to kafka-python's default
murmur2 partitioner, which gives the same guarantee: one key, one partition.)
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key``: stable across processes and versions (CRC-32, not ``hash``).

    Python's ``hash`` of bytes is salted per process, so it cannot be used: two publishers
    would disagree and per-key order would break.
    """
    if partitions < 1:
        raise ValueError(f"a topic needs at least one partition, not {partitions}")
    return zlib.crc32(key) % partitions


TopicPartition = tuple[str, int]


def assign(
    subscriptions: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
) -> dict[str, frozenset[TopicPartition]]:
    """Share the partitions of each topic among the members subscribed to it.

    ``subscriptions`` maps member id -> topics it reads; ``partition_counts`` maps topic ->
    number of partitions (topics missing from it have none yet). Every member computes the
    same answer from the same inputs, which is what lets processes that share only a
    database agree without a coordinator: members are sorted, partition ``i`` of a topic
    goes to subscriber ``(i + offset) % n`` where ``offset`` spreads topics over members.
    """
    result: dict[str, set[TopicPartition]] = {member: set() for member in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for index, topic in enumerate(topics):
        readers = sorted(m for m, ts in subscriptions.items() if topic in ts)
        for p in range(partition_counts.get(topic, 0)):
            result[readers[(p + index) % len(readers)]].add((topic, p))
    return {member: frozenset(tps) for member, tps in result.items()}
