"""What only the Kafka bus does: topic creation, error mapping, reachability checks."""

from __future__ import annotations

import time
import uuid
import warnings

import pytest

from bus.base import Record
from bus.kafka import KafkaBus
from caregraph.errors import BusError, BusUnavailable
from tests.support.services import free_port

with warnings.catch_warnings():  # kafka-python's own import-time DeprecationWarning
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from kafka import KafkaAdminClient

pytestmark = pytest.mark.integration


def test_ping_unreachable_is_one_clear_line_and_quick(capfd: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BusUnavailable) as caught:
        KafkaBus(address).ping()
    assert time.monotonic() - started < 5
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"cannot reach Kafka at {address}: ")
    assert text.endswith("; check CAREGRAPH_KAFKA_BOOTSTRAP")
    assert capfd.readouterr().err == ""


def test_ping_reachable(kafka_bootstrap: str) -> None:
    with KafkaBus(kafka_bootstrap) as bus:
        bus.ping()


def test_topics_are_created_with_the_configured_partition_count(kafka_bootstrap: str) -> None:
    topic = f"parts-{uuid.uuid4().hex[:8]}"
    with KafkaBus(kafka_bootstrap, partitions=3) as bus:
        bus.ensure_topics([topic])
    with KafkaBus(kafka_bootstrap, partitions=9) as bus:
        bus.ensure_topics([topic])  # exists already: no error, no change
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3


def test_publish_failure_is_a_bus_error(kafka_bootstrap: str) -> None:
    topic = f"big-{uuid.uuid4().hex[:8]}"
    with KafkaBus(kafka_bootstrap, max_message_bytes=2000) as bus:
        bus.ensure_topics([topic])
        with pytest.raises(BusError, match="Kafka publish failed"):
            bus.publish(topic, b"x" * 5000)


def test_publish_to_an_unreachable_broker_fails_within_the_timeout() -> None:
    started = time.monotonic()
    with (
        KafkaBus(f"127.0.0.1:{free_port()}", request_timeout_ms=1500) as bus,
        pytest.raises(BusUnavailable, match="check CAREGRAPH_KAFKA_BOOTSTRAP"),
    ):
        bus.publish("t", b"x")
    assert time.monotonic() - started < 10


def test_subscribe_and_ensure_topics_on_an_unreachable_broker_fail_clearly() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}")
    with pytest.raises(BusUnavailable, match="cannot reach Kafka"):
        bus.subscribe("g", ["t"])
    with pytest.raises(BusUnavailable, match="cannot reach Kafka"):
        bus.ensure_topics(["t"])
    bus.close()
    with pytest.raises(BusError, match="closed"):
        bus.publish("t", b"x")


def test_producer_does_not_spin_after_new_topics(kafka_bootstrap: str) -> None:
    """Regression: kafka-python's producer thread busy-looped once a second topic appeared."""
    first, second = f"spin-a-{uuid.uuid4().hex[:8]}", f"spin-b-{uuid.uuid4().hex[:8]}"
    with KafkaBus(kafka_bootstrap) as bus:
        bus.ensure_topics([first])
        bus.publish_many([Record(first, b"x", key=b"%d" % i) for i in range(100)])
        bus.ensure_topics([second])
        bus.publish_many([Record(second, b"x", key=b"%d" % i) for i in range(100)])
        time.sleep(0.5)  # let the metadata refresh settle
        cpu = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - cpu < 0.3, "a Kafka client thread is busy while idle"
