"""The MLLP listener over real sockets: ACK codes, durability before AA, repeats, and the
bad-input list of issue 4 (each answered, the listener still up, nothing half-written)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from adapters.hl7v2.er7 import tokenize
from adapters.hl7v2.header import peek_header
from adapters.hl7v2.normalize import patient_key
from bus.base import Bus, Consumer, Record
from bus.embedded import EmbeddedBus
from bus.headers import MESSAGE_ID, RECEIVED_AT, SOURCE
from bus.memory import MemoryBus
from bus.topics import RAW_HL7V2
from caregraph.errors import BusUnavailable
from devices.mllp.client import MllpClient
from devices.mllp.dedup import AckCache
from devices.mllp.framing import encode_frame
from devices.mllp.listener import MllpListener
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration


def fields(ack: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


def msa(ack: bytes) -> list[str]:
    return fields(ack)["MSA"]


def err_code(ack: bytes) -> str:
    """The table 0357 code of the ERR segment, in the v2.5 (ERR-3) or older (ERR-1) form."""
    err = fields(ack)["ERR"]
    if len(err) > 3:
        return err[3].split("^")[0]
    return err[1].split("^")[3].split("&")[0]


def client_for(listener: MllpListener, **kwargs: object) -> MllpClient:
    host, port = listener.address
    return MllpClient(host, port, timeout_s=20, **kwargs)  # type: ignore[arg-type]


def send_once(listener: MllpListener, message: bytes) -> bytes:
    with client_for(listener) as c:
        return c.send(message)


def still_up(listener: MllpListener, control_id: str = "ALIVE") -> None:
    with client_for(listener) as c:
        assert msa(c.send(corpus.adt("A08", control_id)))[1:3] == ["AA", control_id]


def test_aa_after_publish_with_key_and_headers(
    listener: MllpListener, memory_bus: MemoryBus
) -> None:
    with client_for(listener) as c:
        ack = c.send(corpus.ORU_PCD)
    assert msa(ack)[1:3] == ["CA", "PCD0001"]  # MSH-15 AL: enhanced mode, accept ACK
    (record,) = memory_bus.snapshot(RAW_HL7V2)
    assert record.value == corpus.ORU_PCD
    assert record.key == patient_key(tokenize(corpus.ORU_PCD.decode())).encode()  # type: ignore[union-attr]
    assert record.headers[MESSAGE_ID] == "PCD0001"
    assert record.headers[SOURCE].startswith("mllp:127.0.0.1:")
    assert record.headers[RECEIVED_AT]


def test_original_mode_many_messages_pipelined_on_one_connection(
    listener: MllpListener, memory_bus: MemoryBus
) -> None:
    messages = [corpus.adt("A08", f"PIPE{i}") for i in range(50)]
    with client_for(listener) as c:
        c.send_raw(b"".join(encode_frame(m) for m in messages))
        acks = [c.receive() for _ in messages]
    assert [msa(a)[1:3] for a in acks] == [["AA", f"PIPE{i}"] for i in range(50)]
    assert len(memory_bus.snapshot(RAW_HL7V2)) == 50


def test_partial_reads_byte_by_byte(listener: MllpListener) -> None:
    with client_for(listener) as c:
        for byte in encode_frame(corpus.ADT_A01):
            c.send_raw(bytes([byte]))
        assert msa(c.receive())[1:3] == ["AA", "ADT0001"]


def test_repeat_gets_the_same_ack_and_is_not_republished(
    listener: MllpListener, memory_bus: MemoryBus
) -> None:
    with client_for(listener) as c:
        first = c.send(corpus.ORU_LAB)
    with client_for(listener) as c:
        again = c.send(corpus.ORU_LAB)
    assert first == again
    assert len(memory_bus.snapshot(RAW_HL7V2)) == 1
    assert listener.stats.duplicates == 1


def test_ae_names_segment_and_field_and_publishes_nothing(
    listener: MllpListener, memory_bus: MemoryBus
) -> None:
    with client_for(listener) as c:
        ack = c.send(corpus.ORU_LAB.replace(b"|105|", b"|abc|"))
    assert msa(ack)[1] == "AE"
    assert fields(ack)["ERR"][2:4] == ["OBX^1^5^1", "102^Data type error^HL70357"]
    assert memory_bus.snapshot(RAW_HL7V2) == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (corpus.adt("A01", "V22", version="2.2"), "203"),
        (corpus.ADT_A01.replace(b"ADT^A01^ADT_A01", b"SIU^S12"), "200"),
        (corpus.ADT_A01.replace(b"ADT^A01^ADT_A01", b"ADT^A99"), "201"),
    ],
)
def test_ar_for_unsupported_messages(
    listener: MllpListener, memory_bus: MemoryBus, raw: bytes, code: str
) -> None:
    with client_for(listener) as c:
        ack = c.send(raw)
    assert msa(ack)[1] == "AR"
    assert err_code(ack) == code
    assert memory_bus.snapshot(RAW_HL7V2) == []


BAD_INPUTS = {
    "broken framing: restart": b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A08|BR1|P|2.5\rPID|||1",
    "broken framing: bad end": b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A08|BE1|P|2.5\x1cX",
    "truncated HL7": encode_frame(corpus.ADT_A01[:60]),
    "binary garbage, framed": encode_frame(
        bytes(range(1, 11)) + bytes(range(14, 28)) + b"\xff" * 50
    ),
    "binary garbage, unframed": b"\x00\x01\x02\xff\xfe garbage \x00",
    "HTTP request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong encoding characters": encode_frame(corpus.ADT_A01.replace(b"^~\\&", b"^^^^", 1)),
    "the input that hung a parser": encode_frame(b"MSH|^|||||||^A|||2.2\r^AA"),
    "10 MB message": encode_frame(corpus.ADT_A01 + b"NTE|1||" + b"x" * 10_000_000 + b"\r"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_answered_and_the_listener_stays_up(
    listener: MllpListener, memory_bus: MemoryBus, name: str
) -> None:
    with client_for(listener) as c:
        # A broken frame can only be recognised when the next bytes arrive, so a good
        # frame follows at once; answers come back in order: the refusal(s), then AA.
        c.send_raw(BAD_INPUTS[name] + encode_frame(corpus.adt("A08", "AFTER")))
        answers = [c.receive()]
        while msa(answers[-1])[1:3] != ["AA", "AFTER"]:
            answers.append(c.receive())
        refusals = [msa(a)[1] for a in answers[:-1]]
        assert refusals and set(refusals) <= {"AE", "AR"}, answers
        assert len(refusals) == 1  # one answer per bad input, not per byte
        # the same connection still works
        assert msa(c.send(corpus.adt("A08", "AGAIN")))[1:3] == ["AA", "AGAIN"]
    still_up(listener)
    published = memory_bus.snapshot(RAW_HL7V2)
    # nothing half-written: only the good messages reached the bus
    assert sorted(m.headers[MESSAGE_ID] for m in published) == ["AFTER", "AGAIN", "ALIVE"]


def test_ten_mb_answer_names_the_message(listener: MllpListener) -> None:
    with client_for(listener) as c:
        c.send_raw(BAD_INPUTS["10 MB message"])
        ack = c.receive()
    assert msa(ack)[1:3] == ["AR", "ADT0001"]


def test_connection_dropped_mid_frame_does_not_hurt(listener: MllpListener) -> None:
    host, port = listener.address
    with socket.create_connection((host, port)) as raw:
        raw.sendall(b"\x0b" + corpus.ADT_A01[:100])
    still_up(listener)


def test_enhanced_mode_ne_sends_no_ack(listener: MllpListener, memory_bus: MemoryBus) -> None:
    silent = corpus.msg(
        corpus.msh("ADT^A08^ADT_A01", "QUIET", extra="|||NE|NE"), "EVN|A08", corpus.PID, "PV1|1|O"
    )
    with client_for(listener) as c:
        c.send_raw(encode_frame(silent))
        ack = c.send(corpus.adt("A08", "LOUD"))
    assert msa(ack)[1:3] == ["AA", "LOUD"]
    assert len(memory_bus.snapshot(RAW_HL7V2)) == 2


def test_concurrent_senders(listener: MllpListener, memory_bus: MemoryBus) -> None:
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with client_for(listener) as c:
                for i in range(20):
                    assert msa(c.send(corpus.pcd01(f"C{n}-{i}", 10)))[1] == "CA"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(memory_bus.snapshot(RAW_HL7V2)) == 160


class FlakyBus(Bus):
    """The in-process bus, unreachable while ``down`` is set."""

    def __init__(self) -> None:
        self.inner = MemoryBus()
        self.down = True

    def publish_many(self, records: Sequence[Record]) -> None:
        if self.down:
            raise BusUnavailable("broker unreachable (test)")
        self.inner.publish_many(records)

    def subscribe(self, group: str, topics: object) -> Consumer:
        return self.inner.subscribe(group, topics)  # type: ignore[arg-type]

    def ensure_topics(self, topics: object) -> None:
        self.inner.ensure_topics(topics)  # type: ignore[arg-type]

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def test_bus_down_answers_ar_and_the_retry_is_accepted() -> None:
    bus = FlakyBus()
    with MllpListener("127.0.0.1", 0, bus) as server, client_for(server) as c:
        ack = c.send(corpus.ADT_A01)
        assert msa(ack)[1] == "AR"
        assert err_code(ack) == "207"
        bus.down = False
        assert msa(c.send(corpus.ADT_A01))[1] == "AA"  # not remembered as done before
    assert len(bus.inner.snapshot(RAW_HL7V2)) == 1


def test_tls(memory_bus: MemoryBus, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    with MllpListener("127.0.0.1", 0, memory_bus, tls=server_ctx) as server:
        with client_for(server, tls=client_ctx) as c:
            assert msa(c.send(corpus.ADT_A01))[1] == "AA"
        host, port = server.address
        with socket.create_connection((host, port)) as plain:  # no TLS: refused, not fatal
            plain.sendall(encode_frame(corpus.ADT_A01))
            plain.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert plain.recv(100) == b""
        with client_for(server, tls=client_ctx) as c:
            assert msa(c.send(corpus.adt("A08", "TLS2")))[1] == "AA"
    assert len(memory_bus.snapshot(RAW_HL7V2)) == 2


def test_durable_on_the_embedded_bus_and_dedup_survives_restart(tmp_path: Path) -> None:
    cache_path = tmp_path / "acks.sqlite3"
    bus = EmbeddedBus(tmp_path / "bus")
    try:
        with MllpListener("127.0.0.1", 0, bus, ack_cache=AckCache(path=cache_path)) as server:
            first = send_once(server, corpus.ORU_LAB)
        # a new listener process would open the same files
        with MllpListener("127.0.0.1", 0, bus, ack_cache=AckCache(path=cache_path)) as server:
            again = send_once(server, corpus.ORU_LAB)
        assert again == first
        with bus.subscribe("check", [RAW_HL7V2]) as consumer:
            got = []
            for _ in range(20):
                got += consumer.poll(timeout_s=0.5)
                if got:
                    break
        assert [m.value for m in got] == [corpus.ORU_LAB]
    finally:
        bus.close()


class _HeldFile(AckCache):
    """An ACK cache whose file writes wait until released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self.release = threading.Event()

    def persist_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        self.release.wait(10)
        super().persist_many(items)


def test_the_ack_does_not_wait_for_the_ack_file_and_a_repeat_is_known_meanwhile(
    tmp_path: Path, memory_bus: MemoryBus
) -> None:
    cache = _HeldFile(tmp_path / "acks.sqlite3")
    try:
        with MllpListener("127.0.0.1", 0, memory_bus, ack_cache=cache) as server:
            with client_for(server) as c:
                started = time.monotonic()
                first = c.send(corpus.ORU_LAB)
                assert time.monotonic() - started < 5  # not the 10 s the file write waits
                assert msa(first)[1] == "AA"
                assert c.send(corpus.ORU_LAB) == first  # known in memory, not published again
            cache.release.set()
        assert len(memory_bus.snapshot(RAW_HL7V2)) == 1
    finally:
        cache.release.set()
        cache.close()
    reopened = AckCache(path=tmp_path / "acks.sqlite3")  # the file got it once released
    header = peek_header(corpus.ORU_LAB)
    assert header is not None and reopened.get(header.dedup_key) == first
    reopened.close()


def test_structure_only_intake_leaves_content_errors_to_the_normalizer(
    memory_bus: MemoryBus,
) -> None:
    from adapters.hl7v2.normalizer import Hl7v2Normalizer
    from bus.topics import DEADLETTER

    bad = corpus.ORU_LAB.replace(b"|105|", b"|abc|")
    with MllpListener("127.0.0.1", 0, memory_bus, map_content=False) as server:
        assert msa(send_once(server, bad))[1] == "AA"
        assert msa(send_once(server, corpus.adt("A01", "V22", version="2.2")))[1] == "AR"
    (raw,) = memory_bus.snapshot(RAW_HL7V2)
    Hl7v2Normalizer(memory_bus)([raw])
    (dead,) = memory_bus.snapshot(DEADLETTER)
    assert b"OBX[1]-5" in dead.value


def test_latin1_sender_gets_its_own_bytes_back(listener: MllpListener) -> None:
    raw = (
        "MSH|^~\\&|APP|Klinikum Süd|CG|H|20240101||ADT^A28^ADT_A05|Ü7|P|2.5||||||8859/1\r"
        "EVN|A28\rPID|||4711^^^KS^MR||Müller^Jörg\rPV1|1|N\r"
    ).encode("latin-1")
    ack = send_once(listener, raw)
    assert "MSA|AA|Ü7".encode("latin-1") in ack
    assert "|Klinikum Süd|".encode("latin-1") in ack


def test_a_mapping_bug_is_answered_and_the_connection_survives(
    memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import devices.mllp.listener as listener_module

    def broken(raw: bytes, **kwargs: object) -> object:
        if b"BOOM" in raw:
            raise KeyError("a bug")
        return real(raw, **kwargs)

    real = listener_module.judge
    monkeypatch.setattr(listener_module, "judge", broken)
    with MllpListener("127.0.0.1", 0, memory_bus) as server, client_for(server) as c:
        ack = c.send(corpus.adt("A08", "BOOM1"))
        assert msa(ack)[1:3] == ["AE", "BOOM1"]
        assert err_code(ack) == "207"
        assert msa(c.send(corpus.adt("A08", "FINE1")))[1:3] == ["AA", "FINE1"]


def test_connection_limit_and_idle_timeout(memory_bus: MemoryBus) -> None:
    with MllpListener("127.0.0.1", 0, memory_bus, max_connections=1, idle_timeout_s=1.0) as server:
        host, port = server.address
        with client_for(server) as first:
            assert msa(first.send(corpus.adt("A08", "ONE")))[1] == "AA"
            with socket.create_connection((host, port), timeout=5) as second:
                second.settimeout(5)
                assert second.recv(10) == b""  # refused: closed at once
            assert msa(first.send(corpus.adt("A08", "TWO")))[1] == "AA"
            time.sleep(1.5)  # idle longer than the timeout: the server closes it
            with pytest.raises((ConnectionError, OSError)):
                first.send(corpus.adt("A08", "THREE"))
        still_up(server)
