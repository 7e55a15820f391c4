"""The DICOM upper layer for the gateway: blocking, one thread per association.

Why not pynetdicom's ``AE`` server: its DUL and association reactors poll (each sleeps a
millisecond when idle, and every C-STORE crosses both), so a pynetdicom SCP that only
writes files reaches about a quarter to a third of dcmtk's ``storescp`` on loopback (see
``DESIGN.md`` and ``bench/dicom.py``), below the issue's target before any real work is
done. This module keeps pynetdicom for the association: A-ASSOCIATE PDUs
(``pynetdicom.pdu``) and presentation context negotiation (``pynetdicom.presentation``);
DIMSE commands and responses go through the pure codec of ``devices.dicom.dimse`` (checked
byte for byte against pynetdicom's). The transport loop is a blocking ``recv``: read a
PDU, act, answer. Nothing waits on a timer.

Scope, as the gateway needs it: association acceptance (the called AE title must be the
gateway's; the calling AE title and host must be admitted by the gateway's policy, which
also says which operations the caller may use; a limit on concurrent associations),
P-DATA reassembly, C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE (answered through the
``Services`` the gateway passes in; C-MOVE's sub-operations go out over an association of
their own to the destination's address, opened with pynetdicom as an SCU), release and
abort. Every PDU length is checked by
``PduGuard`` before its body is read. A C-CANCEL is honoured between C-FIND responses
(not during a C-GET, whose sub-operations are short); asynchronous operations are not
negotiated, so a peer has one request outstanding at a time.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import decode as decode_dataset
from pynetdicom.dsutils import encode as encode_dataset
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
)
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
    negotiate_as_acceptor,
)

from devices.dicom.access import ECHO, FIND, GET, MOVE, STORE
from devices.dicom.dimse import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    MESSAGE_ID,
    STATUS,
    Command,
    CommandError,
    decode_command,
    p_data_pdus,
    response,
    split_p_data,
    store_request,
)
from devices.dicom.pdu_guard import P_DATA_TF as P_DATA_TYPE
from devices.dicom.pdu_guard import PduGuard, PduRefused
from devices.dicom.status import status_for

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_VERSION = "CAREGRAPH_01"
VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
C_STORE_RQ, C_ECHO_RQ, C_FIND_RQ, C_GET_RQ = 0x0001, 0x0030, 0x0020, 0x0010
C_MOVE_RQ, C_CANCEL_RQ = 0x0021, 0x0FFF
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
MOVE_DESTINATION = 0x00000600
NO_DATA_SET = 0x0101
# A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent; source 1 service user; its reasons.
REJECTED_PERMANENT, SERVICE_USER = 0x01, 0x01
CALLING_AE_NOT_RECOGNIZED, CALLED_AE_NOT_RECOGNIZED = 0x03, 0x07
# Statuses (PS3.7 C.4, PS3.4 C.4.2.1.5): a refused operation, an unknown move destination,
# sub-operations that could not be performed.
NOT_AUTHORIZED, MOVE_DESTINATION_UNKNOWN, UNABLE_TO_PERFORM = 0x0124, 0xA801, 0xA702
# The DIMSE operation each request is; C-CANCEL and responses need no permission.
OPERATION_OF_COMMAND = {
    C_ECHO_RQ: ECHO,
    C_STORE_RQ: STORE,
    C_FIND_RQ: FIND,
    C_GET_RQ: GET,
    C_MOVE_RQ: MOVE,
}
_MODEL_OPERATION = {
    VERIFICATION: ECHO,
    PATIENT_ROOT_FIND: FIND,
    STUDY_ROOT_FIND: FIND,
    PATIENT_ROOT_GET: GET,
    STUDY_ROOT_GET: GET,
    PATIENT_ROOT_MOVE: MOVE,
    STUDY_ROOT_MOVE: MOVE,
}
_PDU_TYPES = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07})
#: PS3.8 9.1.5: how long an acceptor that sent A-ASSOCIATE-RJ waits for the requestor to
#: close the connection (the ARTIM timer) before closing it itself.
ARTIM_S = 2.0
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
# The acceptor picks, per context, the first of its syntaxes the peer proposed: explicit VR
# little endian first, as most modalities write and as a C-GET can most often send back.
_PREFERRED_SYNTAXES = [
    *UNCOMPRESSED,
    *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in UNCOMPRESSED),
]


class Closed(Exception):
    """The peer closed the connection, or it was aborted; the association is over."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of an association."""

    calling_ae: str
    called_ae: str
    host: str


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """A complete C-STORE request: the data set bytes as received, in ``transfer_syntax``."""

    peer: Peer
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data_set: bytes | bytearray


@dataclass(frozen=True, slots=True)
class Retrievable:
    """A stored instance a C-GET sends back: its identity and how to read its data set."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    read_data_set: Callable[[str], bytes]
    """The data set in the given transfer syntax; ``ValueError`` if it cannot be had in it."""
    file_path: Path | None = None
    """The stored Part 10 file, which a C-MOVE sends as it is."""


class Services(Protocol):
    """What the gateway answers; the upper layer only moves messages."""

    def operations(self, peer: Peer) -> frozenset[str] | None:
        """What this peer may do (``devices.dicom.access`` names); ``None``: it may not
        associate at all."""

    def destination(self, ae_title: str) -> tuple[str, int] | None:
        """(host, port) of a C-MOVE destination; ``None`` if it is not a known AE."""

    def store(self, request: StoreRequest) -> Dataset:
        """Handle a C-STORE; return the status data set (Status, maybe ErrorComment)."""

    def find(self, peer: Peer, identifier: Dataset) -> Iterator[tuple[int, Dataset | None]]:
        """Yield (status, identifier) C-FIND responses; the last one is final."""

    def retrieve(self, peer: Peer, identifier: Dataset) -> list[Retrievable]:
        """The instances a C-GET or C-MOVE asks for; raises (a status is derived) if it
        cannot."""


def supported_contexts() -> list[PresentationContext]:
    """Every storage SOP class with every transfer syntax (the gateway stores bytes as
    received and never decodes pixel data), verification, and the C-FIND and C-GET
    models of patient and study root."""
    out = []
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is None:
            continue
        storage = build_context(cx.abstract_syntax, _PREFERRED_SYNTAXES)
        # Either role: SCP for C-STORE, SCU when a C-GET peer asks for the role reversal.
        storage.scu_role, storage.scp_role = True, True
        out.append(storage)
    out += [build_context(uid) for uid in _MODEL_OPERATION]
    return out


def context_operations(abstract_syntax: str) -> frozenset[str]:
    """The operations for which a presentation context of ``abstract_syntax`` is needed:
    a storage SOP class serves C-STORE and, in the reverse role, C-GET's sub-operations."""
    model = _MODEL_OPERATION.get(abstract_syntax)
    return frozenset({model}) if model else frozenset({STORE, GET})


class Callable0(Protocol):
    """A callback without arguments."""

    def __call__(self) -> None: ...


class Listener:
    """Accepts connections on ``(host, port)`` and runs one association per thread."""

    def __init__(
        self,
        services: Services,
        *,
        ae_title: str,
        host: str,
        port: int,
        max_pdu: int,
        max_message_bytes: int,
        max_associations: int,
        timeout_s: float,
        on_refused_pdu: Callable0,
        require_called_ae: bool = True,
        on_rejected: Callable[[], None] | None = None,
    ) -> None:
        self.services = services
        self.ae_title = ae_title
        self.require_called_ae = require_called_ae
        self.on_rejected = on_rejected or (lambda: None)
        self.max_pdu = max_pdu
        self.max_message_bytes = max_message_bytes
        self.timeout_s = timeout_s
        self.on_refused_pdu = on_refused_pdu
        self.contexts = supported_contexts()
        self._slots = threading.BoundedSemaphore(max_associations)
        # Connections that have not (yet) asked for an association hold a thread too;
        # beyond this many open sockets a new one is closed at once.
        self.max_connections = 2 * max_associations
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=64)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name=f"dicom-ul:{self.port}")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close open connections, and wait (up to ``timeout_s``) for the
        association threads, so a C-STORE in progress finishes before its store closes."""
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in list(self._connections):
                _close(conn)
            workers = list(self._workers)
        self._thread.join(timeout=timeout_s)
        for worker in workers:
            worker.join(timeout=timeout_s)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.2)
                if not ready:
                    continue
                conn, address = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                if len(self._connections) >= self.max_connections:
                    log.warning("refusing a connection from %s: too many open", address[0])
                    _close(conn)
                    continue
                self._connections.add(conn)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.timeout_s)
            worker = threading.Thread(
                target=self._serve, args=(conn, str(address[0])), name="dicom-association"
            )
            worker.daemon = True
            with self._lock:
                self._workers.add(worker)
            worker.start()

    def _serve(self, conn: socket.socket, host: str) -> None:
        try:
            _Association(self, conn, host).run()
        except Closed:
            pass
        except Exception:  # one association's bug must not take the listener down
            log.exception("association from %s failed", host)
            _send_abort(conn)
        finally:
            with self._lock:
                self._connections.discard(conn)
                self._workers.discard(threading.current_thread())
            _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _send_abort(conn: socket.socket, source: int = 0x02, reason: int = 0x00) -> None:
    """A-ABORT from the service provider (PS3.8 9.3.8); best effort, the peer may be gone."""
    pdu = A_ABORT_RQ()
    pdu.source = source
    pdu.reason_diagnostic = reason
    with contextlib.suppress(OSError):
        conn.sendall(pdu.encode())


class _Association:
    def __init__(self, listener: Listener, conn: socket.socket, host: str) -> None:
        self.listener = listener
        self.conn = conn
        self.host = host
        self.guard = PduGuard(listener.max_pdu, listener.max_message_bytes)
        self.peer = Peer("", "", host)
        self.peer_max_pdu = 0
        self.contexts: dict[int, PresentationContext] = {}
        self.operations: frozenset[str] = frozenset()

    # -- PDU I/O ---------------------------------------------------------------------------

    def _recv_exactly(self, size: int) -> bytearray:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            try:
                n = self.conn.recv_into(view[got:], size - got)
            except (TimeoutError, OSError) as exc:
                raise Closed(f"receive failed: {exc}") from exc
            if n == 0:
                raise Closed("peer closed the connection")
            got += n
        return buf

    def read_pdu(self) -> tuple[int, bytes]:
        """The next PDU as (type, whole PDU bytes); aborts on an unknown type or a length
        the guard refuses, before reading the body."""
        header = bytes(self._recv_exactly(6))
        pdu_type = header[0]
        if pdu_type not in _PDU_TYPES:
            log.warning("not a DICOM PDU from %s (first bytes %r): abort", self.host, header)
            _send_abort(self.conn, 0x02, 0x01)  # unrecognized PDU
            raise Closed("unrecognised PDU")
        try:
            length = self.guard.body_limit(header)
        except PduRefused as exc:
            log.warning("aborting association from %s: %s", self.host, exc)
            self.listener.on_refused_pdu()
            _send_abort(self.conn, 0x02, 0x06)  # invalid PDU parameter value
            raise Closed(str(exc)) from exc
        body = self._recv_exactly(length)
        if pdu_type == P_DATA_TYPE:
            try:
                self.guard.on_p_data(bytes(body))
            except PduRefused as exc:
                log.warning("aborting association from %s: %s", self.host, exc)
                self.listener.on_refused_pdu()
                _send_abort(self.conn, 0x02, 0x06)
                raise Closed(str(exc)) from exc
        return pdu_type, header + body

    def send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except OSError as exc:
            raise Closed(f"send failed: {exc}") from exc

    # -- association -----------------------------------------------------------------------

    def run(self) -> None:
        pdu_type, data = self.read_pdu()
        if pdu_type != 0x01:
            _send_abort(self.conn, 0x02, 0x02)  # unexpected PDU
            raise Closed("expected A-ASSOCIATE-RQ")
        rq = A_ASSOCIATE_RQ()
        rq.decode(data)
        request = rq.to_primitive()
        if not self.listener._slots.acquire(blocking=False):
            self._reject(0x02, 0x03, 0x02)  # transient, provider (presentation), local limit
            return
        try:
            if not self._accept(request):
                return
            self._serve_messages()
        finally:
            self.listener._slots.release()

    def _reject(self, result: int, source: int, diagnostic: int) -> None:
        primitive = A_ASSOCIATE()
        primitive.result = result
        primitive.result_source = source
        primitive.diagnostic = diagnostic
        pdu = A_ASSOCIATE_RJ()
        pdu.from_primitive(primitive)
        self.send(pdu.encode())
        self._await_close()

    def _await_close(self) -> None:
        """Sta13 (PS3.8 9.2): after the RJ the requestor closes the connection; wait for
        that, at most ``ARTIM_S``. Closing first raced the requestor's read of the RJ: under
        load pynetdicom saw the connection end, not the rejection."""
        deadline = time.monotonic() + ARTIM_S
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.conn.settimeout(left)
                if not self.conn.recv(4096):
                    return
        except OSError:  # the timeout, or a reset: close now
            return

    def _accept(self, request: A_ASSOCIATE) -> bool:
        self.peer = Peer(
            request.calling_ae_title.strip(), request.called_ae_title.strip(), self.host
        )
        if self.listener.require_called_ae and self.peer.called_ae != self.listener.ae_title:
            log.warning(
                "rejecting association from %s at %s: called AE %r is not %r",
                self.peer.calling_ae,
                self.host,
                self.peer.called_ae,
                self.listener.ae_title,
            )
            self.listener.on_rejected()
            self._reject(REJECTED_PERMANENT, SERVICE_USER, CALLED_AE_NOT_RECOGNIZED)
            return False
        operations = self.listener.services.operations(self.peer)
        if operations is None:
            self._reject(REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNIZED)
            return False
        self.operations = operations
        roles: dict[str, tuple[bool | None, bool | None]] = {}
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid:
                roles[str(item.sop_class_uid)] = (item.scu_role, item.scp_role)
        results, reply_roles = negotiate_as_acceptor(
            request.presentation_context_definition_list,
            [
                cx
                for cx in self.listener.contexts
                if context_operations(str(cx.abstract_syntax)) & operations
            ],
            roles or None,  # type: ignore[arg-type]
        )
        known = {str(cx.abstract_syntax) for cx in self.listener.contexts}
        for cx in results:
            # Known but not permitted to this caller: a user rejection (result 1), so the
            # peer's log says it was refused rather than "abstract syntax not supported".
            if cx.result == 0x03 and str(cx.abstract_syntax) in known:
                cx.result = 0x01
        self.contexts = {
            int(cx.context_id): cx for cx in results if cx.result == 0 and cx.context_id
        }
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result = 0x00
        accept.result_source = 0x01
        accept.presentation_context_definition_results_list = results
        max_length = MaximumLengthNotification()
        max_length.maximum_length_received = self.listener.max_pdu
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = IMPLEMENTATION_VERSION
        accept.user_information = [max_length, implementation, version, *reply_roles]
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(accept)
        self.send(pdu.encode())
        return True

    def _serve_messages(self) -> None:
        while (message := self._next_message()) is not None:
            self._dispatch(*message)

    def _next_message(self) -> tuple[Command, int, bytearray | None] | None:
        """The next complete DIMSE message (command, context id, data set), or ``None``
        once the peer released the association (the A-RELEASE-RP is sent)."""
        command: Command | None = None
        command_bytes = bytearray()
        data_set = bytearray()
        context_id = 0
        while True:
            pdu_type, data = self.read_pdu()
            if pdu_type == 0x05:  # A-RELEASE-RQ
                self.send(A_RELEASE_RP().encode())
                return None
            if pdu_type == 0x07:  # A-ABORT
                raise Closed("peer aborted")
            if pdu_type != 0x04:
                _send_abort(self.conn, 0x02, 0x02)  # unexpected PDU
                raise Closed(f"unexpected PDU type 0x{pdu_type:02X}")
            try:
                for fragment in split_p_data(data[6:]):
                    if fragment.is_command:
                        if command is not None:
                            raise CommandError("a command arrived before the data set ended")
                        command_bytes += fragment.data
                        if not fragment.is_last:
                            continue
                        command = decode_command(bytes(command_bytes))
                        context_id = fragment.context_id
                        if not command.has_data_set:
                            return command, context_id, None
                    else:
                        if command is None or fragment.context_id != context_id:
                            raise CommandError("a data set arrived without its command")
                        # The buffer is handed over as is: no copy of a large data set.
                        data_set += fragment.data
                        if fragment.is_last:
                            return command, context_id, data_set
            except CommandError as exc:
                log.warning("broken DIMSE message from %s: %s; abort", self.host, exc)
                _send_abort(self.conn, 0x02, 0x06)
                raise Closed(str(exc)) from exc

    # -- DIMSE -----------------------------------------------------------------------------

    def _reply(self, context_id: int, command: bytes, data_set: bytes | None = None) -> None:
        self.send(p_data_pdus(context_id, command, data_set, self.peer_max_pdu))

    def _dispatch(
        self, command: Command, context_id: int, data_set: bytes | bytearray | None
    ) -> None:
        context = self.contexts.get(context_id)
        if context is None:
            raise CommandError(f"message on a presentation context not accepted: {context_id}")
        field = command.field
        needed = OPERATION_OF_COMMAND.get(field)
        if needed is not None and needed not in self.operations:
            # Possible only on a context accepted for another operation (a storage context
            # accepted for C-GET's sub-operations): refused, the association goes on.
            log.warning("refusing %s from %s: not permitted", needed, self.peer.calling_ae)
            sop_class = command.uid(AFFECTED_SOP_CLASS_UID)
            instance = command.uid(AFFECTED_SOP_INSTANCE_UID) if field == C_STORE_RQ else None
            refusal = response(
                field,
                command.us(MESSAGE_ID),
                sop_class,
                NOT_AUTHORIZED,
                sop_instance_uid=instance,
                error_comment=f"{needed} is not permitted to {self.peer.calling_ae}",
            )
            self._reply(context_id, refusal)
            return
        if field == C_ECHO_RQ:
            sop_class = command.uid(AFFECTED_SOP_CLASS_UID)
            self._reply(context_id, response(field, command.us(MESSAGE_ID), sop_class, 0x0000))
        elif field == C_STORE_RQ:
            self._store(command, context, data_set or b"")
        elif field == C_FIND_RQ:
            self._find(command, context, data_set or b"")
        elif field == C_GET_RQ:
            self._get(command, context, data_set or b"")
        elif field == C_MOVE_RQ:
            self._move(command, context, data_set or b"")
        elif field == C_CANCEL_RQ:
            pass  # nothing pending to cancel: a C-FIND answers before the next read
        else:
            raise CommandError(f"unsupported DIMSE command 0x{field:04X}")

    def _store(
        self, command: Command, context: PresentationContext, data_set: bytes | bytearray
    ) -> None:
        sop_class = command.uid(AFFECTED_SOP_CLASS_UID)
        sop_instance = command.uid(AFFECTED_SOP_INSTANCE_UID)
        request = StoreRequest(
            peer=self.peer,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax=str(context.transfer_syntax[0]),
            data_set=data_set,
        )
        status = self.listener.services.store(request)
        comment = str(status.ErrorComment) if "ErrorComment" in status else None
        reply = response(
            C_STORE_RQ,
            command.us(MESSAGE_ID),
            sop_class,
            int(status.Status),
            sop_instance_uid=sop_instance,
            error_comment=comment,
        )
        self._reply(int(context.context_id or 0), reply)

    def _find(
        self, command: Command, context: PresentationContext, data_set: bytes | bytearray
    ) -> None:
        transfer_syntax = context.transfer_syntax[0]
        implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
        context_id = int(context.context_id or 0)
        message_id = command.us(MESSAGE_ID)
        sop_class = command.uid(AFFECTED_SOP_CLASS_UID)
        identifier = decode_dataset(BytesIO(data_set), implicit, little)
        for status, result in self.listener.services.find(self.peer, identifier):
            encoded = encode_dataset(result, implicit, little) if result is not None else None
            reply = response(C_FIND_RQ, message_id, sop_class, status, has_data_set=bool(encoded))
            self._reply(context_id, reply, encoded or None)
            if status not in (0xFF00, 0xFF01):
                return
            if self._cancelled():
                self._reply(context_id, response(C_FIND_RQ, message_id, sop_class, 0xFE00))
                return
        self._reply(context_id, response(C_FIND_RQ, message_id, sop_class, 0x0000))

    def _get(
        self, command: Command, context: PresentationContext, data_set: bytes | bytearray
    ) -> None:
        """C-GET (PS3.4 C.4.3): C-STORE sub-operations on this association, a pending
        response after each, then the final one with the counts."""
        self._retrieve(command, context, data_set, None)

    def _move(
        self, command: Command, context: PresentationContext, data_set: bytes | bytearray
    ) -> None:
        """C-MOVE (PS3.4 C.4.2): C-STORE sub-operations over a new association to the move
        destination, which must be a known AE (0xA801 otherwise); responses as for C-GET."""
        self._retrieve(command, context, data_set, command.uid(MOVE_DESTINATION))

    def _retrieve(
        self,
        command: Command,
        context: PresentationContext,
        data_set: bytes | bytearray,
        destination: str | None,
    ) -> None:
        transfer_syntax = context.transfer_syntax[0]
        implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
        context_id = int(context.context_id or 0)
        message_id = command.us(MESSAGE_ID)
        sop_class = command.uid(AFFECTED_SOP_CLASS_UID)
        field = C_GET_RQ if destination is None else C_MOVE_RQ
        try:
            identifier = decode_dataset(BytesIO(data_set), implicit, little)
            wanted = self.listener.services.retrieve(self.peer, identifier)
        except Exception as exc:  # the edge: a request we cannot serve gets a status
            log.warning("C-GET/C-MOVE from %s refused: %s", self.peer.calling_ae, exc)
            self._reply(context_id, response(field, message_id, sop_class, status_for(exc)))
            return
        sender: _MoveSender | None = None
        if destination is not None:
            address = self.listener.services.destination(destination)
            if address is None:
                log.warning("C-MOVE from %s to unknown %r", self.peer.calling_ae, destination)
                reply = response(
                    field,
                    message_id,
                    sop_class,
                    MOVE_DESTINATION_UNKNOWN,
                    error_comment=f"move destination {destination} is not known",
                )
                self._reply(context_id, reply)
                return
            if wanted:
                sender = _MoveSender(
                    self.listener.ae_title, destination, address, wanted, self.listener.timeout_s
                )
                if not sender.open():
                    counts = (0, 0, len(wanted), 0)
                    reply = response(
                        field, message_id, sop_class, UNABLE_TO_PERFORM, sub_operations=counts
                    )
                    self._reply(context_id, reply)
                    return
        completed = failed = 0
        failed_uids: list[str] = []
        try:
            for n, item in enumerate(wanted):
                if sender is not None:
                    ok = sender.send(item, message_id + 1 + n, self.peer.calling_ae, message_id)
                else:
                    ok = self._store_sub_operation(item, message_id + 1 + n)
                completed += ok
                failed += not ok
                if not ok:
                    failed_uids.append(item.sop_instance_uid)
                counts = (len(wanted) - n - 1, completed, failed, 0)
                if n + 1 < len(wanted):
                    self._reply(
                        context_id,
                        response(field, message_id, sop_class, 0xFF00, sub_operations=counts),
                    )
        finally:
            if sender is not None:
                sender.close()
        final_counts = (0, completed, failed, 0)
        if not failed:
            self._reply(
                context_id,
                response(field, message_id, sop_class, 0x0000, sub_operations=final_counts),
            )
            return
        if not completed:  # Refused: out of resources, unable to perform sub-operations
            reply = response(
                field, message_id, sop_class, UNABLE_TO_PERFORM, sub_operations=final_counts
            )
            self._reply(context_id, reply)
            return
        # 0xB000: sub-operations complete, one or more failures; the identifier lists them.
        failures = Dataset()
        failures.FailedSOPInstanceUIDList = failed_uids
        encoded = encode_dataset(failures, implicit, little)
        reply = response(
            field,
            message_id,
            sop_class,
            0xB000,
            sub_operations=final_counts,
            has_data_set=True,
        )
        self._reply(context_id, reply, encoded)

    def _store_sub_operation(self, item: Retrievable, message_id: int) -> bool:
        """Send one instance as a C-STORE to the peer and wait for its response."""
        usable = [
            cx
            for cx in self.contexts.values()
            if cx.abstract_syntax == item.sop_class_uid and cx.as_scu
        ]
        # As stored if the peer accepted that syntax; else an uncompressed one, into which
        # an uncompressed file can be re-encoded (compressed files are never transcoded).
        exact = [cx for cx in usable if cx.transfer_syntax[0] == item.transfer_syntax]
        other = [
            cx
            for cx in usable
            if item.transfer_syntax in UNCOMPRESSED and cx.transfer_syntax[0] in UNCOMPRESSED
        ]
        candidates = exact or other
        if not candidates:
            log.warning(
                "C-GET: no context to send %s as %s", item.sop_class_uid, item.transfer_syntax
            )
            return False
        context = candidates[0]
        try:
            payload = item.read_data_set(str(context.transfer_syntax[0]))
        except (OSError, ValueError) as exc:
            log.warning("C-GET: cannot read %s: %s", item.sop_instance_uid, exc)
            return False
        context_id = int(context.context_id or 0)
        self._reply(
            context_id,
            store_request(message_id & 0xFFFF, item.sop_class_uid, item.sop_instance_uid),
            payload,
        )
        answer = self._next_message()
        if answer is None:
            raise Closed("peer released the association during a C-GET")
        reply, _, _ = answer
        if reply.field != 0x8001:
            raise Closed(f"expected a C-STORE-RSP, got command 0x{reply.field:04X}")
        return reply.us(STATUS) in (0x0000, 0xB000, 0xB006, 0xB007)

    def _cancelled(self) -> bool:
        """True if the peer sent a C-CANCEL while the responses were streaming out."""
        ready, _, _ = select.select([self.conn], [], [], 0)
        if not ready:
            return False
        pdu_type, data = self.read_pdu()
        if pdu_type != 0x04:
            raise Closed(f"PDU type 0x{pdu_type:02X} during C-FIND")
        for fragment in split_p_data(data[6:]):
            if fragment.is_command and fragment.is_last:
                return decode_command(fragment.data).field == C_CANCEL_RQ
        return False


class _MoveSender:
    """The SCU side of a C-MOVE: one association to the destination, a C-STORE per
    instance, each file sent as stored (pynetdicom reads it; nothing is transcoded)."""

    def __init__(
        self,
        ae_title: str,
        destination: str,
        address: tuple[str, int],
        wanted: list[Retrievable],
        timeout_s: float,
    ) -> None:
        self.destination = destination
        self.address = address
        self.ae = AE(ae_title=ae_title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout_s
        # One context per stored (SOP class, transfer syntax), as many as fit (128).
        pairs = sorted({(w.sop_class_uid, w.transfer_syntax) for w in wanted})
        for sop_class, syntax in pairs[:128]:
            self.ae.add_requested_context(sop_class, syntax)
        self.assoc: Any = None

    def open(self) -> bool:
        host, port = self.address
        # A destination that is down is found with a plain connect first: pynetdicom 3.0
        # leaves its socket unclosed when the connection is refused.
        try:
            socket.create_connection((host, port), timeout=self.ae.network_timeout).close()
        except OSError as exc:
            log.warning("C-MOVE: cannot reach %s at %s:%d: %s", self.destination, host, port, exc)
            return False
        try:
            assoc = self.ae.associate(host, port, ae_title=self.destination)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("C-MOVE: cannot reach %s at %s:%d: %s", self.destination, host, port, exc)
            return False
        if not assoc.is_established:
            log.warning("C-MOVE: %s at %s:%d refused the association", self.destination, host, port)
            return False
        self.assoc = assoc
        return True

    def send(self, item: Retrievable, message_id: int, originator: str, move_id: int) -> bool:
        """C-STORE one instance, naming the C-MOVE it serves (Move Originator AE/id)."""
        if item.file_path is None or self.assoc is None or not self.assoc.is_established:
            return False
        try:
            status = self.assoc.send_c_store(
                item.file_path,
                msg_id=message_id & 0xFFFF,
                originator_aet=originator,
                originator_id=move_id,
            )
        except (OSError, ValueError, RuntimeError, AttributeError) as exc:
            log.warning("C-MOVE: sending %s failed: %s", item.sop_instance_uid, exc)
            return False
        return "Status" in status and int(status.Status) in (0x0000, 0xB000, 0xB006, 0xB007)

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.assoc = None
