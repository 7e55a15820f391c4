"""Registrations -> the gateway's connections: defaults merged, bad ones reported, not run."""

from __future__ import annotations

from adapters.registry.device import LineSpec, Registration, SerialConnection
from caregraph.device_registry import Problem, connection_of, served_connections
from devices.serial.datex import DatexDriver
from devices.serial.port import LineSettings


def _reg(device_id: str, protocol: str, port: str, **kw: object) -> Registration:
    line = kw.pop("line", LineSpec())
    options = kw.pop("options", ())
    return Registration(
        device_id,
        connection=SerialConnection(protocol, port, line, options),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_line_overrides_merge_with_the_protocol_default() -> None:
    assert connection_of(_reg("a", "datex", "/dev/x")).line is None
    c = connection_of(_reg("a", "datex", "/dev/x", line=LineSpec(baudrate=9600)))
    # Datex AS3 is 19200 8E1 with RTS/CTS: only the baud rate changes.
    assert DatexDriver.line == LineSettings(19200, 8, "E", 1, True)
    assert c.line == LineSettings(9600, 8, "E", 1, True)
    same = connection_of(_reg("a", "datex", "/dev/x", line=LineSpec(baudrate=19200, parity="E")))
    assert same.line is None


def test_the_patient_id_system_reaches_the_gateway_and_is_no_reason_to_reconnect() -> None:
    plain = connection_of(_reg("lab-1", "astm", "/dev/x"))
    mrn = SerialConnection("astm", "/dev/x", patient_id_system="urn:oid:1.2.3")
    with_system = connection_of(Registration("lab-1", connection=mrn))
    assert plain.patient_id_system is None
    assert with_system.patient_id_system == "urn:oid:1.2.3"
    # the gateway keeps the running driver (and its line) when only the system changes
    assert plain.key() == with_system.key()


def test_only_active_valid_unique_registrations_are_served() -> None:
    regs = [
        _reg("ok-1", "intellivue", "/dev/p1", options=(("poll_interval_s", 0.5),)),
        _reg("retired", "datex", "/dev/p2", status="inactive"),
        Registration("no-connection"),
        _reg("bad-protocol", "telepathy", "/dev/p3"),
        _reg("bad-option", "datex", "/dev/p4", options=(("warp_factor", 9.0),)),
        _reg("same-port", "astm", "/dev/p1"),
        _reg("ok-2", "medibus", "/dev/p5"),
        _reg("ok-2", "medibus", "/dev/p6", resource_id="posted-copy"),
    ]
    conns, problems = served_connections(regs)
    assert [(c.device_id, c.port, dict(c.options)) for c in conns] == [
        ("ok-1", "/dev/p1", {"poll_interval_s": 0.5}),
        ("ok-2", "/dev/p5", {}),
    ]
    reasons = {p.device_id: p.reason for p in problems}
    assert set(reasons) == {"bad-protocol", "bad-option", "same-port", "ok-2"}
    assert "telepathy" in reasons["bad-protocol"]
    assert "warp_factor" in reasons["bad-option"]
    assert "ok-1" in reasons["same-port"]
    assert Problem("ok-2", "Device/posted-copy", "another Device has the same device id") in (
        problems
    )
