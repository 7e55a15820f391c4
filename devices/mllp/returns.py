"""The return channel: enhanced-mode application ACKs delivered to their senders.

Why a separate connection to a configured return address, not the connection the message
came on: in enhanced mode the application ACK is a message of its own (HL7 v2 chapter 2,
enhanced acknowledgement), sent once the message was processed, which here is after the
normalizer made its FHIR resources durable, by then the sender's connection has moved on
to its next message and waits for that one's accept ACK. An unsolicited frame on it would
be read as the answer to the wrong message by ordinary MLLP senders, which use one
connection strictly as request -> reply. Interface engines therefore take application
ACKs on an inbound port of their own, and that is how each sender's return address is
configured here (``parse_routes``).

Flow: ``ack.hl7v2`` (written by ``adapters.hl7v2.normalizer``) -> ``ReturnChannel`` ->
MLLP to the route of the ACK's MSH-5/MSH-6 (the original sending application/facility) ->
the partner's accept ACK. CA (or AA from a partner in original mode) = delivered,
remembered by ACK control id (so a redelivery or a replay of ``raw.hl7v2`` sends it once);
anything else, or no answer, raises ``ReturnFailed`` and the consume loop retries, then
dead-letters it with its bytes. An ACK for a sender without a route is dead-lettered at once.

Errors::

    caregraph.errors.CaregraphError
    └── ReturnFailed            the partner refused the ACK, or could not be reached
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from adapters.hl7v2.er7 import parse_msh, split_segments
from adapters.hl7v2.errors import Hl7ParseError
from adapters.hl7v2.header import peek_header
from bus.base import Bus, Message, Record
from bus.deadletter import deadletter_record
from caregraph.errors import CaregraphError, ConfigError
from devices.mllp.client import MllpClient
from devices.mllp.dedup import AckCache

log = logging.getLogger(__name__)

DELIVERED = frozenset({"CA", "AA"})


class ReturnFailed(CaregraphError):
    """An application ACK could not be delivered (refused, no answer, unreachable)."""


@dataclass(frozen=True, slots=True)
class ReturnRoute:
    """Where a sender takes its application ACKs: MSH-4 namespace (and MSH-3, if given)."""

    facility: str
    application: str | None
    host: str
    port: int


_ROUTE = re.compile(
    r"\s*(?P<facility>[^=^\s]+)(?:\^(?P<application>[^=\s]+))?\s*=\s*"
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]+)):(?P<port>\d+)\s*\Z"
)


def parse_routes(text: str | None) -> tuple[ReturnRoute, ...]:
    """``FACILITY[^APPLICATION]=host:port``, comma-separated (``[::1]:2576`` for IPv6);
    e.g. ``LAB=10.0.0.5:2576,HIS^ADT=10.0.0.6:2577``. ``ConfigError`` for anything else."""
    routes = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = _ROUTE.match(part)
        if m is None or not 1 <= int(m["port"]) <= 65535:
            raise ConfigError(
                f"HL7 ACK route {part.strip()!r} is not FACILITY[^APPLICATION]=host:port"
            )
        routes.append(
            ReturnRoute(m["facility"], m["application"], m["ipv6"] or m["host"], int(m["port"]))
        )
    return tuple(routes)


class ReturnRoutes:
    """Lookup: the route for (MSH-3, MSH-4) of the original message, the most specific
    first (facility and application, then facility alone)."""

    def __init__(self, routes: Iterable[ReturnRoute]) -> None:
        self._by_key: dict[tuple[str, str | None], ReturnRoute] = {}
        for route in routes:
            self._by_key[(route.facility, route.application)] = route

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def find(self, application: str, facility: str) -> ReturnRoute | None:
        namespace = facility.split("^", 1)[0].strip()
        app = application.split("^", 1)[0].strip()
        return self._by_key.get((namespace, app)) or self._by_key.get((namespace, None))


Connect = Callable[[ReturnRoute], MllpClient]


def _msa_code(reply: bytes) -> str:
    """MSA-1 of the partner's answer ('' when it has none)."""
    text = reply.decode("latin-1")
    lines = split_segments(text)
    if not lines or not lines[0].startswith("MSH"):
        return ""
    try:
        d, _ = parse_msh(lines[0])
    except Hl7ParseError:
        return ""
    for line in lines[1:]:
        if line.startswith("MSA" + d.field):
            return line.split(d.field)[1].split(d.component)[0].strip().upper()
    return ""


class ReturnChannel:
    """``run_consumer`` handler for ``ack.hl7v2`` (see the module docstring).

    ``delivered`` remembers delivered ACK control ids (give it a ``path`` to survive a
    restart); ``tls`` is a client context for partners that take MLLP over TLS.
    """

    def __init__(
        self,
        bus: Bus,
        routes: Iterable[ReturnRoute] | ReturnRoutes,
        *,
        group: str = "mllp-returns",
        delivered: AckCache | None = None,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        connect: Connect | None = None,
    ) -> None:
        self.bus = bus
        self.routes = routes if isinstance(routes, ReturnRoutes) else ReturnRoutes(routes)
        self.group = group
        self.delivered = delivered if delivered is not None else AckCache()
        self.tls = tls
        self.timeout_s = timeout_s
        self._connect = connect or self._open
        self.sent = 0
        self.unroutable = 0

    def _open(self, route: ReturnRoute) -> MllpClient:
        return MllpClient(route.host, route.port, tls=self.tls, timeout_s=self.timeout_s)

    def __call__(self, messages: list[Message]) -> None:
        clients: dict[ReturnRoute, MllpClient] = {}
        dead: list[Record] = []
        try:
            for message in messages:
                record = self._deliver(message, clients)
                if record is not None:
                    dead.append(record)
        finally:
            for client in clients.values():
                client.close()
        if dead:
            self.bus.publish_many(dead)

    def _deliver(self, message: Message, clients: dict[ReturnRoute, MllpClient]) -> Record | None:
        header = peek_header(message.value)
        if header is None or not header.control_id:
            return deadletter_record(message, self.group, "not an HL7 ACK", attempts=1)
        # The ACK's receiving application/facility (MSH-5/6) is the original sender.
        key = f"{header.receiving_application}\x1f{header.receiving_facility}\x1f"
        key += header.control_id
        if self.delivered.get(key) is not None:
            return None  # delivered before (a redelivery, or a replay of raw.hl7v2)
        route = self.routes.find(header.receiving_application, header.receiving_facility)
        if route is None:
            self.unroutable += 1
            text = (
                f"no return address for {header.receiving_application!r} at"
                f" {header.receiving_facility!r} (CAREGRAPH_HL7_ACK_ROUTES)"
            )
            log.warning("application ACK %s: %s", header.control_id, text)
            return deadletter_record(message, self.group, text, attempts=1)
        try:
            client = clients.get(route)
            if client is None:
                client = clients[route] = self._connect(route)
            reply = client.send(message.value)
        except (OSError, ValueError, ConnectionError) as exc:
            bad = clients.pop(route, None)
            if bad is not None:
                with contextlib.suppress(OSError):
                    bad.close()
            raise ReturnFailed(
                f"application ACK {header.control_id} to {route.host}:{route.port}: {exc}"
            ) from exc
        code = _msa_code(reply)
        if code not in DELIVERED:
            raise ReturnFailed(
                f"{route.host}:{route.port} answered {code or 'no MSA'} to application ACK"
                f" {header.control_id}"
            )
        self.delivered.put_many([(key, reply)])
        self.sent += 1
        return None


__all__ = [
    "ReturnChannel",
    "ReturnFailed",
    "ReturnRoute",
    "ReturnRoutes",
    "parse_routes",
]
