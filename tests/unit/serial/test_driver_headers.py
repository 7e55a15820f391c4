"""What a driver stamps on raw.device beyond the frame: the registration's patient id system,
which the gateway hands a running driver without reopening its line."""

from __future__ import annotations

from pathlib import Path

from adapters.serial import headers as dh
from bus.memory import MemoryBus
from bus.topics import RAW_DEVICE
from devices.serial import make_driver
from devices.serial.gateway import DeviceConnection, SerialGateway


def test_the_patient_id_system_is_stamped_only_when_registered() -> None:
    bus = MemoryBus()
    bus.ensure_topics([RAW_DEVICE])
    driver = make_driver("astm", "/dev/null", "lab-1", bus)
    assert driver.publish_raw(b"plain")
    driver.patient_id_system = "urn:oid:1.2.3"
    assert driver.publish_raw(b"with system")
    consumer = bus.subscribe("t", [RAW_DEVICE])
    got = {m.value: m.headers for m in consumer.poll(1.0)}
    consumer.close()
    assert dh.PATIENT_ID_SYSTEM not in got[b"plain"]
    assert got[b"with system"][dh.PATIENT_ID_SYSTEM] == "urn:oid:1.2.3"


def test_the_gateway_gives_a_running_driver_a_new_system_without_a_restart(
    tmp_path: Path,
) -> None:
    gateway = SerialGateway(MemoryBus())
    port = str(tmp_path / "no-such-tty")  # the driver keeps retrying; nothing is read
    try:
        gateway.apply([DeviceConnection("lab-1", "astm", port)])
        (first,) = gateway._running.values()
        assert first.driver.patient_id_system is None
        gateway.apply([DeviceConnection("lab-1", "astm", port, patient_id_system="urn:oid:9")])
        (same,) = gateway._running.values()
        assert same.driver is first.driver and same.thread is first.thread
        assert same.driver.patient_id_system == "urn:oid:9"
        assert same.connection.patient_id_system == "urn:oid:9"
        # a new port is a new session, and the new driver gets the system from the start
        gateway.apply([DeviceConnection("lab-1", "astm", port + "2", patient_id_system="urn:x:y")])
        (moved,) = gateway._running.values()
        assert moved.driver is not first.driver
        assert moved.driver.patient_id_system == "urn:x:y"
    finally:
        gateway.apply([])
