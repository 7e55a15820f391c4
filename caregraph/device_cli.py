"""``caregraph device ...``: the registry as biomedical engineers use it from a terminal.

``add``, ``edit``, ``list``, ``show``, ``retire``, ``attach`` (a patient, for a period),
``detach`` (end the open attachment) and ``place`` (in a bed, from a time). Every command
writes FHIR resources through the store (``caregraph.device_admin`` holds the rules),
exactly what a FHIR client could PUT (``adapters.registry`` says how), so a running
``--role serial`` picks the change up within its refresh interval, without a restart.

Times are ISO 8601; one without a zone is the machine's local time; ``now`` is accepted.
Failures end as one line on stderr and exit status 2, like the rest of the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.registry.associations import (
    AssociationIndex,
    attachment_from_statement,
)
from adapters.registry.device import (
    LineSpec,
    Registration,
    SerialConnection,
)
from adapters.registry.timing import instant
from caregraph.cli_common import DatabaseUrl, DataDir, clean_errors, settings_from
from caregraph.errors import ConfigError

if TYPE_CHECKING:
    from caregraph.device_admin import DeviceAdmin

app = typer.Typer(
    help="Register, edit, list, attach, place and retire bedside devices (FHIR Device).",
    no_args_is_help=True,
)

DeviceId = Annotated[str, typer.Argument(help="The device id the driver reports readings as.")]
When = Annotated[
    str, typer.Option(help="ISO 8601 time (no zone = local time) or 'now'.", show_default=True)
]


class CliError(ConfigError):
    """What the person at the terminal asked cannot be done; the message says why."""


@contextmanager
def _admin(data_dir: Path | None, database_url: str | None) -> Iterator[DeviceAdmin]:
    """The store the settings name, closed afterwards; errors as one line, exit 2."""
    # Imported here: the store and the FHIR models would slow every ``caregraph`` command.
    from caregraph.device_admin import DeviceAdmin
    from caregraph.wiring import open_database
    from fhir_store.store import FhirStore

    with clean_errors():
        db = open_database(settings_from(data_dir=data_dir, database_url=database_url))
        try:
            yield DeviceAdmin(FhirStore(db))
        finally:
            db.close()


def parse_when(text: str) -> datetime:
    """``now``, or ISO 8601; a time without a zone is this machine's local time.

    Raises:
        CliError: not a time.
    """
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25T08:00)") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def _options(pairs: list[str] | None) -> tuple[tuple[str, int | float], ...]:
    out: dict[str, int | float] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            number = float(value)
            out[name.strip()] = int(number) if number.is_integer() else number
        except ValueError:
            raise CliError(
                f"--option {pair!r}: use name=number, e.g. poll_interval_s=0.5"
            ) from None
    return tuple(sorted(out.items()))


ProtocolOpt = Annotated[
    str | None, typer.Option(help="astm, intellivue, datex or medibus (the serial protocol).")
]
PortOpt = Annotated[str | None, typer.Option(help="Serial port path, e.g. /dev/ttyUSB0.")]
Baud = Annotated[int | None, typer.Option(help="Override the protocol's baud rate.")]
Bytesize = Annotated[int | None, typer.Option(help="Override data bits (5-8).")]
Parity = Annotated[str | None, typer.Option(help="Override parity: N, E, O, M or S.")]
Stopbits = Annotated[float | None, typer.Option(help="Override stop bits: 1, 1.5 or 2.")]
Rtscts = Annotated[bool | None, typer.Option("--rtscts/--no-rtscts", help="RTS/CTS handshake.")]
Option = Annotated[
    list[str] | None, typer.Option("--option", help="Driver setting name=number (repeatable).")
]
Name = Annotated[str | None, typer.Option(help="A friendly name, e.g. 'ICU 4 monitor'.")]
Manufacturer = Annotated[str | None, typer.Option()]
Model = Annotated[str | None, typer.Option(help="Model number.")]
SerialNumber = Annotated[str | None, typer.Option(help="The manufacturer's serial number.")]
Udi = Annotated[str | None, typer.Option(help="UDI as printed (human-readable form).")]
TypeText = Annotated[str | None, typer.Option("--type", help="Kind of device, as text.")]
Location = Annotated[str | None, typer.Option(help="Bed to place it in now (see `place`).")]
PatientIdSystem = Annotated[
    str | None,
    typer.Option(
        help="Identifier system of the patient ids the device reports (an analyzer's ASTM"
        " P record), e.g. urn:oid:1.2.3: only Patient identifiers of this system match."
        " Without it, any system matches ('' in edit: any system again)."
    ),
]


@app.command()
def add(
    device_id: DeviceId,
    protocol: ProtocolOpt = None,
    port: PortOpt = None,
    baudrate: Baud = None,
    bytesize: Bytesize = None,
    parity: Parity = None,
    stopbits: Stopbits = None,
    rtscts: Rtscts = None,
    option: Option = None,
    name: Name = None,
    manufacturer: Manufacturer = None,
    model: Model = None,
    serial_number: SerialNumber = None,
    udi: Udi = None,
    type_text: TypeText = None,
    location: Location = None,
    patient_id_system: PatientIdSystem = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a device (with its serial connection, if --protocol and --port are given)."""
    with _admin(data_dir, database_url) as admin:
        if (protocol is None) != (port is None):
            raise CliError("a serial connection needs both --protocol and --port")
        if patient_id_system and protocol is None:
            raise CliError(
                "--patient-id-system is part of the serial connection: give --protocol and"
                " --port too"
            )
        connection = None
        if protocol is not None and port is not None:
            line = LineSpec(baudrate, bytesize, parity, stopbits, rtscts)
            connection = SerialConnection(
                protocol, port, line, _options(option), patient_id_system or None
            )
        reg = Registration(
            device_id,
            "active",
            name,
            manufacturer,
            model,
            serial_number,
            udi,
            type_text,
            connection,
        )
        device = admin.add(reg, location)
        typer.echo(f"registered {device_id} as Device/{device['id']}")


@app.command()
def edit(
    device_id: DeviceId,
    protocol: ProtocolOpt = None,
    port: PortOpt = None,
    baudrate: Baud = None,
    bytesize: Bytesize = None,
    parity: Parity = None,
    stopbits: Stopbits = None,
    rtscts: Rtscts = None,
    option: Option = None,
    name: Name = None,
    manufacturer: Manufacturer = None,
    model: Model = None,
    serial_number: SerialNumber = None,
    udi: Udi = None,
    type_text: TypeText = None,
    no_connection: Annotated[
        bool, typer.Option("--no-connection", help="Remove the serial connection.")
    ] = False,
    status: Annotated[
        str | None, typer.Option(help="active (in service) or inactive (retired).")
    ] = None,
    patient_id_system: PatientIdSystem = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change what is given; everything else (and anything a FHIR client added) stays."""
    with _admin(data_dir, database_url) as admin:
        reg, base = admin.get(device_id)
        connection = reg.connection
        line_given = any(v is not None for v in (baudrate, bytesize, parity, stopbits, rtscts))
        if no_connection:
            connection = None
        elif protocol or port or line_given or option or patient_id_system is not None:
            old = connection or SerialConnection("", "")
            new_protocol, new_port = protocol or old.protocol, port or old.port
            if not new_protocol or not new_port:
                raise CliError("a serial connection needs both --protocol and --port")
            ol = old.line
            line = LineSpec(
                baudrate if baudrate is not None else ol.baudrate,
                bytesize if bytesize is not None else ol.bytesize,
                parity if parity is not None else ol.parity,
                stopbits if stopbits is not None else ol.stopbits,
                rtscts if rtscts is not None else ol.rtscts,
            )
            options = dict(old.options) | dict(_options(option))
            system = old.patient_id_system if patient_id_system is None else patient_id_system
            connection = SerialConnection(
                new_protocol, new_port, line, tuple(sorted(options.items())), system or None
            )
        reg = replace(
            reg,
            connection=connection,
            name=reg.name if name is None else name,
            manufacturer=reg.manufacturer if manufacturer is None else manufacturer,
            model=reg.model if model is None else model,
            serial_number=reg.serial_number if serial_number is None else serial_number,
            udi=reg.udi if udi is None else udi,
            type_text=reg.type_text if type_text is None else type_text,
            status=reg.status if status is None else status,
        )
        admin.save(reg, base)
        typer.echo(f"updated {device_id}")


def _summary(reg: Registration, now: datetime, patient: str | None) -> dict[str, Any]:
    c = reg.connection
    here = reg.placement_at(now)
    return {
        "device_id": reg.device_id,
        "id": reg.resource_id,
        "status": reg.status,
        "name": reg.name,
        "protocol": c.protocol if c else None,
        "port": c.port if c else None,
        "patient_id_system": c.patient_id_system if c else None,
        "location": (here.display or here.location) if here else None,
        "patient": patient,
    }


@app.command("list")
def list_devices(
    all_: Annotated[bool, typer.Option("--all", help="Include retired devices.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Registered devices: id, status, protocol, port, bed and patient now."""
    with _admin(data_dir, database_url) as admin:
        from caregraph.device_registry import RegistryReader

        reader = RegistryReader(admin.store)
        regs, problems = reader.registrations()
        index = AssociationIndex(reader.attachments(regs))
        now = datetime.now(UTC)
        rows = []
        for reg in sorted(regs, key=lambda r: r.device_id):
            if reg.status != "active" and not all_:
                continue
            subject = index.subject_at(reg.device_id, now)
            rows.append(_summary(reg, now, subject.get("reference") if subject else None))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        cols = ("device_id", "status", "protocol", "port", "location", "patient")
        table = [cols, *[tuple(str(r[c] or "-") for c in cols) for r in rows]]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        for row in table:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        for p in problems:
            typer.echo(f"unreadable: {p.resource} ({p.device_id}): {p.reason}", err=True)


@app.command()
def show(
    device_id: DeviceId,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The Device resource, its attachments and placements, as JSON."""
    with _admin(data_dir, database_url) as admin:
        reg, device = admin.get(device_id)
        attachments = []
        for s in admin.statements(reg):
            a = attachment_from_statement(s, {reg.reference: reg.device_id})
            if a is not None:
                attachments.append(
                    {
                        "statement": f"DeviceUseStatement/{a.statement_id}",
                        "patient": a.subject.get("reference"),
                        "from": instant(a.start),
                        "to": instant(a.end) if a.end else None,
                    }
                )
        out = {
            "device": device,
            "attachments": sorted(attachments, key=lambda a: str(a["from"])),
            "placements": [
                {
                    "location": p.location,
                    "name": p.display,
                    "from": instant(p.start),
                    "to": instant(p.end) if p.end else None,
                }
                for p in reg.placements
            ],
        }
        typer.echo(json.dumps(out, indent=2))


@app.command()
def retire(
    device_id: DeviceId,
    at: When = "now",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Take a device out of service: status inactive, its open bed placement and patient
    attachment end; the serial gateway stops reading it. History is kept."""
    with _admin(data_dir, database_url) as admin:
        when = parse_when(at)
        admin.retire(device_id, when)
        typer.echo(f"retired {device_id} at {instant(when)}")


@app.command()
def attach(
    device_id: DeviceId,
    patient: Annotated[
        str, typer.Option(help="Patient/<id>, or an identifier (system|value or value).")
    ],
    from_: Annotated[str, typer.Option("--from", help="Start (ISO 8601 or 'now').")] = "now",
    to: Annotated[str | None, typer.Option(help="End (ISO 8601); none = until changed.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Attach the device to a patient for a period (a DeviceUseStatement). Without --to, an
    earlier open attachment ends where this one starts; with --to, this one takes
    precedence during its period only."""
    with _admin(data_dir, database_url) as admin:
        start = parse_when(from_)
        end = parse_when(to) if to else None
        subject = admin.patient(patient)
        new = admin.attach(device_id, subject, start, end)
        until = f" to {instant(end)}" if end else ""
        typer.echo(
            f"attached {device_id} to {subject['reference']} from {instant(start)}{until}"
            f" (DeviceUseStatement/{new['id']})"
        )


@app.command()
def detach(
    device_id: DeviceId,
    at: When = "now",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """End the device's open patient attachment (the monitor was taken off the patient)."""
    with _admin(data_dir, database_url) as admin:
        when = parse_when(at)
        for s in admin.detach(device_id, when):
            typer.echo(
                f"detached {device_id} from {s['subject'].get('reference')} at {instant(when)}"
            )


@app.command()
def place(
    device_id: DeviceId,
    location: Annotated[str, typer.Option(help="The bed, e.g. 'ICU-4 bed 2'.")],
    from_: Annotated[str, typer.Option("--from", help="Start (ISO 8601 or 'now').")] = "now",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Place the device in a bed from a time; the previous placement ends then."""
    with _admin(data_dir, database_url) as admin:
        start = parse_when(from_)
        admin.place(device_id, location, start)
        typer.echo(f"placed {device_id} at {location} from {instant(start)}")


__all__ = ["app"]
