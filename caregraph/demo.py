"""``caregraph demo``: every built role plus simulated sources, and a running tally.

Sources: bedside monitors and a lab analyzer on pseudo-terminals read by the real serial
drivers, and (as the gateways land) an HIS sending HL7 v2 over MLLP and a modality sending
DICOM. The tally asks the FHIR API itself how many resources of each type it holds, so
what it prints is what a client would see.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx
import typer

from caregraph.runtime import Service, ThreadService
from caregraph.settings import Settings
from caregraph.wiring import Context
from devices.serial import make_driver
from devices.simulators import SimulatorHandle, start_simulator

log = logging.getLogger(__name__)

SERIAL_DEVICES = (("intellivue", "demo-icu-monitor-1"), ("datex", "demo-or-monitor-1"))
TALLY_TYPES = ("Patient", "Encounter", "Observation", "Device", "ImagingStudy")


class SerialSource:
    """A device simulator on a pty and the real driver reading it."""

    def __init__(self, ctx: Context, protocol: str, device_id: str, seed: int) -> None:
        self.name = f"sim:{device_id}"
        self._ctx = ctx
        self._protocol = protocol
        self._device_id = device_id
        self._seed = seed
        self._handle: SimulatorHandle | None = None
        self._driver: ThreadService | None = None

    def start(self) -> None:
        path, self._handle = start_simulator(self._protocol, seed=self._seed)
        driver = make_driver(self._protocol, path, self._device_id, self._ctx.bus)
        self._driver = ThreadService(f"driver:{self._device_id}", driver.run)
        self._driver.start()

    def stop(self) -> None:
        if self._driver is not None:
            self._driver.stop()
        if self._handle is not None:
            self._handle.stop()


def tally(
    settings: Settings, interval_s: float = 3.0, echo: Callable[[str], None] = typer.echo
) -> ThreadService:
    """Every few seconds, one line with the resource counts the FHIR API reports."""
    base = f"http://{settings.http_host}:{settings.http_port}/fhir"

    def run(stop: threading.Event) -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            while not stop.wait(interval_s):
                counts = []
                for kind in TALLY_TYPES:
                    try:
                        r = client.get(f"/{kind}", params={"_summary": "count"})
                        counts.append(f"{kind} {r.json().get('total', '?')}")
                    except (httpx.HTTPError, ValueError) as exc:
                        counts.append(f"{kind} ? ({exc.__class__.__name__})")
                echo("stored: " + ", ".join(counts))

    return ThreadService("tally", run)


def sources(ctx: Context) -> list[Service]:
    """The simulated sources the demo runs beside the roles."""
    out: list[Service] = [
        SerialSource(ctx, protocol, device_id, seed)
        for seed, (protocol, device_id) in enumerate(SERIAL_DEVICES, start=1)
    ]
    out.append(tally(ctx.settings))
    return out
