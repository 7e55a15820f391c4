"""``caregraph demo``: every built role plus simulated sources, and a running tally.

Sources: bedside monitors and a lab analyzer on pseudo-terminals read by the real serial
drivers, and (as the gateways land) an HIS sending HL7 v2 over MLLP and a modality sending
DICOM. The tally asks the FHIR API itself how many resources of each type it holds, so
what it prints is what a client would see.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import typer

from adapters.hl7v2.parties import patient_id_for
from adapters.registry.device import Registration, SerialConnection
from caregraph.device_admin import DeviceAdmin, RegistryRefused
from caregraph.runtime import Service, ThreadService
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from caregraph.wiring import Context
from devices.feeds.hl7 import HospitalFeed, SimPatient
from devices.feeds.modality import SAMPLE_FILES, PatientLabel, relabel, send
from devices.mllp.client import MllpClient
from devices.simulators import SimulatorHandle, start_simulator

log = logging.getLogger(__name__)

SERIAL_DEVICES = (("intellivue", "demo-icu-monitor-1"), ("datex", "demo-or-monitor-1"))
TALLY_TYPES = ("Patient", "Encounter", "Observation", "Device", "ImagingStudy")


class RegisteredMonitor(ThreadService):
    """A monitor simulator on a pty, registered in the device registry so that the serial
    role opens its port, and attached to a feed patient as soon as that patient is admitted.

    Readings from before the attachment stay unassigned (tagged so), as on a real ward
    where a monitor is switched on before it is connected to the patient.
    """

    def __init__(
        self, ctx: Context, protocol: str, device_id: str, seed: int, patient_id: str
    ) -> None:
        self._ctx = ctx
        self._protocol = protocol
        self._device_id = device_id
        self._seed = seed
        self._patient_id = patient_id
        self._handle: SimulatorHandle | None = None
        super().__init__(f"sim:{device_id}", self._attach_when_admitted)

    def start(self) -> None:
        path, self._handle = start_simulator(self._protocol, seed=self._seed)
        admin = DeviceAdmin(self._ctx.store)
        connection = SerialConnection(self._protocol, path)
        if admin.find(self._device_id) is None:
            admin.add(
                Registration(
                    self._device_id,
                    name=f"Demo {self._protocol} monitor",
                    type_text="patient monitor",
                    connection=connection,
                ),
                location="ICU bed 01" if "icu" in self._device_id else "OR 2",
            )
        else:  # a new pty each run: follow it, and bring the device back into service
            reg, base = admin.get(self._device_id)
            admin.save(replace(reg, connection=connection, status="active"), base)
        super().start()

    def _attach_when_admitted(self, stop: threading.Event) -> None:
        admin = DeviceAdmin(self._ctx.store)
        while not stop.wait(1):
            try:
                subject = admin.patient(f"Patient/{self._patient_id}")
            except RegistryRefused:
                continue  # not admitted yet
            admin.attach(self._device_id, subject, datetime.now(UTC), None)
            log.info("%s attached to %s", self._device_id, subject.get("display"))
            stop.wait()  # a source lives as long as the demo
            return

    def stop(self) -> None:
        super().stop()
        if self._handle is not None:
            self._handle.stop()


def adt_patient_id(feed: HospitalFeed, p: SimPatient) -> str:
    """The id the HL7 mapping gives the Patient that ``p``'s ADT admission creates."""
    mrn = {"system": f"urn:oid:{feed.authority_oid}", "value": p.mrn}
    return str(patient_id_for([{**mrn, "type": {"coding": [{"code": "MR"}]}}]))


class Hl7Source(ThreadService):
    """A simulated HIS: admits the feed's patients, then sends their vitals every interval."""

    def __init__(self, settings: Settings, feed: HospitalFeed, interval_s: float = 2.0) -> None:
        self.feed = feed
        self.acks: dict[str, int] = {}
        self._settings = settings
        self._interval_s = interval_s
        super().__init__("sim:his", self._send_forever)

    def _messages(self, stop: threading.Event) -> Iterator[bytes]:
        for p in self.feed.patients:
            yield self.feed.admission(p, datetime.now(UTC))
        while not stop.is_set():
            now = datetime.now(UTC)
            for p in self.feed.patients:
                yield self.feed.vitals(p, now)
            stop.wait(self._interval_s)

    def _send_forever(self, stop: threading.Event) -> None:
        messages = self._messages(stop)
        pending = next(messages, None)
        while pending is not None and not stop.is_set():
            try:
                client = MllpClient(self._settings.http_host, self._settings.mllp_port)
            except OSError:
                stop.wait(1)
                continue
            try:
                while pending is not None:
                    code = _ack_code(client.send(pending))
                    self.acks[code] = self.acks.get(code, 0) + 1
                    pending = next(messages, None)
            except (OSError, ValueError) as exc:
                log.warning("HIS feed: %s; reconnecting", exc)
                stop.wait(1)
            finally:
                client.close()


def _ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK (AA, AE, AR, CA, ...), or ``?`` when there is no MSA."""
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", "replace")
    return "?"


class ModalitySource(ThreadService):
    """A simulated CT/MR: once the feed's first patients are admitted, sends their images."""

    def __init__(self, settings: Settings, feed: HospitalFeed, delay_s: float = 3.0) -> None:
        self._settings = settings
        self._feed = feed
        self._delay_s = delay_s
        self.statuses: list[int] = []
        super().__init__("sim:modality", self._send_once)

    def _send_once(self, stop: threading.Event) -> None:
        if stop.wait(self._delay_s):
            return
        datasets = [
            relabel(sample, _label(self._feed, p), "demo")
            for p, sample in zip(self._feed.patients, SAMPLE_FILES, strict=False)
        ]
        s = self._settings
        try:
            self.statuses = list(send(s.http_host, s.dicom_port, s.dicom_ae, datasets))
        except ConnectionError as exc:
            log.warning("modality: %s", exc)
        stop.wait()


def _label(feed: HospitalFeed, p: SimPatient) -> PatientLabel:
    return PatientLabel(p.mrn, feed.authority_oid, p.family, p.given, p.birth_date, p.sex)


def tally(
    settings: Settings, interval_s: float = 3.0, echo: Callable[[str], None] = typer.echo
) -> ThreadService:
    """Every few seconds, one line with the resource counts the FHIR API reports."""
    base = f"http://{settings.http_host}:{settings.http_port}/fhir"
    token = mint_development_token(settings, "system/*.rs", subject="caregraph-demo-tally")

    def run(stop: threading.Event) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=5, headers=auth) as client:
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
    feed = HospitalFeed(patients=6, seed=1)
    out: list[Service] = [
        RegisteredMonitor(ctx, protocol, device_id, seed, adt_patient_id(feed, patient))
        for seed, ((protocol, device_id), patient) in enumerate(
            zip(SERIAL_DEVICES, feed.patients[: len(SERIAL_DEVICES)], strict=True), start=1
        )
    ]
    out.append(Hl7Source(ctx.settings, feed))
    out.append(ModalitySource(ctx.settings, feed))
    out.append(tally(ctx.settings))
    return out
