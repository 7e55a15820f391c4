"""Serial drivers: one thread per device port, each publishing raw frames to
``raw.device``; ``run_normalizer`` turns those into ``fhir.Observation``.

Composition root usage, one device::

    stop = threading.Event()
    driver = make_driver("intellivue", "/dev/ttyUSB0", "icu-bed-4-monitor", bus)
    threading.Thread(target=driver.run, args=(stop,), daemon=True).start()
    threading.Thread(target=run_normalizer, args=(bus, stop), daemon=True).start()

Many devices, reconfigured live from the registry (``--role serial``)::

    gateway = SerialGateway(bus)            # devices.serial.gateway
    gateway.apply([DeviceConnection("icu-bed-4-monitor", "intellivue", "/dev/ttyUSB0")])
    gateway.health()                        # connected, last frame, errors, silent?

Drivers never raise out of ``run``: port errors, silence and bugs end the session, are
counted in ``driver.stats`` and the port is opened again.
"""

from __future__ import annotations

import threading
from typing import Any

from bus.base import Bus
from devices.serial.base import DriverStats, SerialDriver
from devices.serial.normalizer import run_normalizer

PROTOCOLS = ("astm", "intellivue", "datex", "medibus")


def driver_class(protocol: str) -> type[SerialDriver]:
    """The driver class for ``protocol`` (one of ``PROTOCOLS``)."""
    if protocol == "astm":
        from devices.serial.astm import AstmDriver

        return AstmDriver
    if protocol == "intellivue":
        from devices.serial.intellivue import IntelliVueDriver

        return IntelliVueDriver
    if protocol == "datex":
        from devices.serial.datex import DatexDriver

        return DatexDriver
    if protocol == "medibus":
        from devices.serial.medibus import MedibusDriver

        return MedibusDriver
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


def make_driver(protocol: str, port: str, device_id: str, bus: Bus, **options: Any) -> SerialDriver:
    """A driver for one device on ``port``; call ``.run(stop)`` in a thread of its own."""
    return driver_class(protocol)(port, device_id, bus, **options)


def run_driver(
    protocol: str, port: str, device_id: str, bus: Bus, stop: threading.Event, **options: Any
) -> None:
    """Read ``port`` until ``stop`` is set (blocks; run it in its own thread)."""
    make_driver(protocol, port, device_id, bus, **options).run(stop)


__all__ = [
    "PROTOCOLS",
    "DriverStats",
    "SerialDriver",
    "driver_class",
    "make_driver",
    "run_driver",
    "run_normalizer",
]
