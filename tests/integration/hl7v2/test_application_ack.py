"""Enhanced acknowledgement mode end to end over real sockets: the sender gets CA on its
connection, then the application ACK arrives on its own inbound port (the return
address) once the normalizer made the resources durable, and is commit-accepted."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.hl7v2.normalizer import ACK_HL7V2, Hl7v2Normalizer
from bus.memory import MemoryBus
from bus.topics import DEADLETTER, RAW_HL7V2
from bus.worker import RetryPolicy, run_consumer
from caregraph.security_wiring import mllp_return_tls
from caregraph.settings import Settings
from devices.mllp.client import MllpClient
from devices.mllp.framing import Frame, MllpDecoder, encode_frame
from devices.mllp.listener import MllpListener
from devices.mllp.returns import ReturnChannel, ReturnRoute
from security.tls import server_context
from tests.support.certs import self_signed
from tests.unit.hl7v2 import corpus

pytestmark = pytest.mark.integration


@dataclass
class ReturnPort:
    """The sender's inbound MLLP port: records each application ACK, answers CA (or,
    while ``refuse`` > 0, CE, as a busy interface engine might)."""

    server: socket.socket
    received: list[bytes] = field(default_factory=list)
    refuse: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    tls: ssl.SSLContext | None = None

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def serve(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        decoder = MllpDecoder()
        if self.tls is not None:
            conn.settimeout(10)
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        with conn:
            while data := conn.recv(65536):
                for event in decoder.feed(data):
                    assert isinstance(event, Frame)
                    ack = event.payload.decode()
                    control_id = ack.split("\r")[0].split("|")[9]
                    code = "CE" if self.refuse > 0 else "CA"
                    if self.refuse > 0:
                        self.refuse -= 1
                    else:
                        self.received.append(event.payload)
                    reply = f"MSH|^~\\&|LIS|LAB|CAREGRAPH||20240305||ACK|R{control_id}|P|2.5.1\r"
                    reply += f"MSA|{code}|{control_id}\r"
                    conn.sendall(encode_frame(reply.encode()))


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[ReturnPort]:
    server = socket.create_server(("127.0.0.1", 0))
    port = ReturnPort(server, tls=tls)
    thread = threading.Thread(target=port.serve, daemon=True)
    thread.start()
    yield port
    port.stop.set()
    thread.join(timeout=5)
    server.close()


@pytest.fixture
def return_port() -> Iterator[ReturnPort]:
    with serving() as port:
        yield port


@dataclass
class Caregraph:
    bus: MemoryBus
    listener: MllpListener
    channel: ReturnChannel


@pytest.fixture
def caregraph(return_port: ReturnPort) -> Iterator[Caregraph]:
    with running(return_port) as composed:
        yield composed


@contextmanager
def running(return_port: ReturnPort, tls: ssl.SSLContext | None = None) -> Iterator[Caregraph]:
    bus = MemoryBus()
    # map_content=False: content errors reach the normalizer, whose AE this test wants
    listener = MllpListener("127.0.0.1", 0, bus, map_content=False)
    channel = ReturnChannel(bus, [ReturnRoute("LAB", None, "127.0.0.1", return_port.port)], tls=tls)
    stop = threading.Event()
    fast = RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.1)
    workers = [
        threading.Thread(
            target=run_consumer,
            args=(
                bus,
                "normalizer-hl7v2",
                [RAW_HL7V2],
                Hl7v2Normalizer(bus, application_acks=True),
            ),
            kwargs={"stop": stop, "poll_timeout_s": 0.05},
        ),
        threading.Thread(
            target=run_consumer,
            args=(bus, "mllp-returns", [ACK_HL7V2], channel),
            kwargs={"stop": stop, "poll_timeout_s": 0.05, "retry": fast},
        ),
    ]
    with listener:
        for w in workers:
            w.start()
        try:
            yield Caregraph(bus, listener, channel)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=10)
    bus.close()


def lab(control_id: str, msh16: str, *, facility: str = "LAB", value: str = "105") -> bytes:
    raw = corpus.ORU_LAB.replace(
        b"|LAB0001|P|2.5.1", f"|{control_id}|P|2.5.1|||AL|{msh16}".encode()
    )
    raw = raw.replace(b"|LIS|LAB|", f"|LIS|{facility}|".encode(), 1)
    return raw.replace(b"||105|mg/dL", f"||{value}|mg/dL".encode())


def fields(payload: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in payload.decode().split("\r") if line}


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_accept_ack_on_the_connection_then_application_ack_to_the_return_address(
    caregraph: Caregraph, return_port: ReturnPort
) -> None:
    host, port = caregraph.listener.address
    with MllpClient(host, port) as client:
        accept = fields(client.send(lab("E0001", "AL")))
        bad = fields(client.send(lab("E0002", "AL", value="1O5")))
        quiet = fields(client.send(lab("E0003", "ER")))  # ER and it maps: no app ACK
    assert accept["MSA"][1:3] == ["CA", "E0001"]  # durable on the bus, nothing more
    assert bad["MSA"][1:3] == ["CA", "E0002"]  # accepted: content is checked later
    assert quiet["MSA"][1:3] == ["CA", "E0003"]
    wait_for(lambda: len(return_port.received) == 2)
    by_id = {fields(p)["MSA"][2]: fields(p) for p in return_port.received}
    assert by_id["E0001"]["MSA"][1] == "AA"
    assert by_id["E0002"]["MSA"][1] == "AE"
    assert by_id["E0002"]["ERR"][2].startswith("OBX^1^5")
    assert by_id["E0001"]["MSH"][8] == "ACK^R01^ACK"
    assert (by_id["E0001"]["MSH"][4], by_id["E0001"]["MSH"][5]) == ("LIS", "LAB")
    # the AA went out only after the resources it confirms were on the bus
    assert caregraph.bus.snapshot("fhir.Observation")
    time.sleep(0.3)
    assert len(return_port.received) == 2  # nothing for E0003


def test_a_refused_application_ack_is_retried_and_a_repeat_is_sent_once(
    caregraph: Caregraph, return_port: ReturnPort
) -> None:
    return_port.refuse = 1
    host, port = caregraph.listener.address
    raw = lab("E0010", "AL")
    with MllpClient(host, port) as client:
        assert fields(client.send(raw))["MSA"][1] == "CA"
    wait_for(lambda: len(return_port.received) == 1)
    assert return_port.refuse == 0  # the first delivery got CE and was retried
    # the raw message normalized again (a replay): the same ACK is not delivered twice
    (original,) = caregraph.bus.snapshot(RAW_HL7V2)
    Hl7v2Normalizer(caregraph.bus, application_acks=True)([original])
    wait_for(lambda: len(caregraph.bus.snapshot(ACK_HL7V2)) == 2)
    time.sleep(0.5)
    assert len(return_port.received) == 1
    assert caregraph.channel.sent == 1


def test_an_application_ack_without_a_return_address_is_dead_lettered(
    caregraph: Caregraph, return_port: ReturnPort
) -> None:
    host, port = caregraph.listener.address
    with MllpClient(host, port) as client:
        assert fields(client.send(lab("E0020", "AL", facility="NOWHERE")))["MSA"][1] == "CA"
    wait_for(lambda: bool(caregraph.bus.snapshot(DEADLETTER)))
    (dead,) = caregraph.bus.snapshot(DEADLETTER)
    assert b"no return address" in dead.value
    assert caregraph.channel.unroutable == 1
    assert return_port.received == []


def test_application_acks_go_over_tls_when_a_ca_is_set(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(data_dir=tmp_path, hl7_ack_tls_ca_file=cert)
    tls = mllp_return_tls(settings)
    assert tls is not None and mllp_return_tls(Settings(data_dir=tmp_path)) is None
    with serving(server_context(cert, key)) as port, running(port, tls) as composed:
        host, mllp_port = composed.listener.address
        with MllpClient(host, mllp_port) as client:
            assert fields(client.send(lab("T0001", "AL")))["MSA"][1] == "CA"
        wait_for(lambda: len(port.received) == 1)
        assert fields(port.received[0])["MSA"][1:3] == ["AA", "T0001"]


def test_a_return_address_whose_certificate_the_ca_did_not_sign_gets_nothing(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    tls = mllp_return_tls(Settings(data_dir=tmp_path, hl7_ack_tls_ca_file=other))
    with serving(server_context(cert, key)) as port, running(port, tls) as composed:
        host, mllp_port = composed.listener.address
        with MllpClient(host, mllp_port) as client:
            assert fields(client.send(lab("T0002", "AL")))["MSA"][1] == "CA"
        wait_for(lambda: bool(composed.bus.snapshot(DEADLETTER)), timeout_s=20)
        assert port.received == []
        (dead,) = composed.bus.snapshot(DEADLETTER)
        assert b"CERTIFICATE_VERIFY_FAILED" in dead.value
