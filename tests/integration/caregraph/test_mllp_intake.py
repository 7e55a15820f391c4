"""``CAREGRAPH_HL7_INTAKE``: what the mllp role checks before its AA."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bus.topics import RAW_HL7V2
from caregraph.roles import build_services
from caregraph.settings import Settings
from caregraph.wiring import open_context
from devices.mllp.client import MllpClient
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration

# OBX-5 of an NM result that is not a number: parses, but cannot be mapped.
UNMAPPABLE = corpus.ORU_LAB.replace(b"|105|", b"|abc|")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _acknowledgement(tmp_path: Path, intake: str) -> tuple[str, int]:
    """(MSA-1 of the ACK, messages on raw.hl7v2) for the unmappable message."""
    port = _free_port()
    ctx = open_context(Settings(data_dir=tmp_path, mllp_port=port, hl7_intake=intake))
    try:
        (service,) = build_services(ctx, ["mllp"])
        service.start()
        try:
            with MllpClient("127.0.0.1", port) as client:
                ack = client.send(UNMAPPABLE)
        finally:
            service.stop()
        msa = next(seg for seg in ack.split(b"\r") if seg.startswith(b"MSA"))
        with ctx.bus.subscribe("intake-test", [RAW_HL7V2]) as consumer:
            raw = consumer.poll(1.0, 10)
        return msa.split(b"|")[1].decode(), len(raw)
    finally:
        ctx.close()


def test_full_intake_answers_unmappable_content_with_ae(tmp_path: Path) -> None:
    assert _acknowledgement(tmp_path, "full") == ("AE", 0)


def test_structure_intake_accepts_it_and_leaves_it_to_the_normalizer(tmp_path: Path) -> None:
    assert _acknowledgement(tmp_path, "structure") == ("AA", 1)
