"""CAREGRAPH_HL7_ALLOWED_FACILITIES: only listed sending facilities get their messages in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus import RAW_HL7V2
from bus.memory import MemoryBus
from devices.feeds.hl7 import HospitalFeed
from devices.mllp.client import MllpClient
from devices.mllp.listener import MllpListener
from security.allowlists import facility_allowlist

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _msa_and_err(ack: bytes) -> tuple[list[str], str]:
    segments = ack.decode().split("\r")
    msa = next(s for s in segments if s.startswith("MSA")).split("|")
    err = next((s for s in segments if s.startswith("ERR")), "")
    return msa, err


def test_listed_facility_is_accepted_and_others_refused() -> None:
    allow = facility_allowlist(("GENHOSP",))
    assert allow is not None
    bus = MemoryBus()
    admitted = HospitalFeed(1, facility="GENHOSP")
    stranger = HospitalFeed(1, facility="ELSEWHERE")
    with MllpListener("127.0.0.1", 0, bus, allow_facility=allow.allows) as listener:
        client = MllpClient(*listener.address)
        try:
            ok, _ = _msa_and_err(client.send(admitted.admission(admitted.patients[0], WHEN)))
            refused, err = _msa_and_err(client.send(stranger.admission(stranger.patients[0], WHEN)))
            # the connection stays usable after a refusal
            again, _ = _msa_and_err(client.send(admitted.vitals(admitted.patients[0], WHEN)))
        finally:
            client.close()
    # the feed asks for enhanced-mode accept acknowledgements (MSH-15 AL): CA / CR
    assert ok[1] == "CA"
    assert refused[1] == "CR"
    assert "ELSEWHERE" in err
    assert again[1] == "CA"
    published = bus.snapshot(RAW_HL7V2)
    assert len(published) == 2
    assert all(b"|GENHOSP|" in m.value.split(b"\r")[0] for m in published)
