"""The DICOM gateway: a pynetdicom SCP for C-ECHO, C-STORE and C-FIND.

A C-STORE is answered with success only after, in this order: the data set was checked
complete and readable, the file was stored content-addressed and fsynced
(``devices.dicom.storage``), its header was published to ``raw.dicom`` (durable when
``Bus.publish`` returns) and indexed for C-FIND. A failure on the way is answered with the
status of ``devices.dicom.status`` (0xA700 when it cannot be stored or published, 0xC000
when it cannot be understood, 0xA900 when the data set is not of the announced SOP class).

Threads: ``start`` runs pynetdicom's server in one daemon thread; each association gets
pynetdicom's two threads (association and DUL). Handlers run in the association thread;
the object store and index are safe to share between them.

Defences at the edge: calling AE titles (and their hosts) can be allowlisted; every PDU's
announced length is checked before its body is read, and a data set cannot grow past
``max_message_bytes`` (``devices.dicom.pdu_guard``); idle and silent peers time out.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import EventHandlerType
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from adapters.dicom.dataset import header_json
from adapters.dicom.raw import CONTENT_TYPE, RawInstance
from adapters.dicom.values import uid
from bus.base import Bus
from bus.headers import make_headers
from bus.topics import RAW_DICOM
from caregraph.errors import ConfigError, MappingError
from devices.dicom.framing import check_complete
from devices.dicom.index import COUNTS, IndexedInstance, InstanceIndex
from devices.dicom.pdu_guard import P_DATA_TF, PduGuard, PduRefused
from devices.dicom.status import (
    CANCEL,
    PENDING,
    SopClassMismatch,
    failure,
    status_for,
)
from devices.dicom.storage import ObjectStore

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
DEFAULT_MAX_PDU = 131072  # dcmtk's largest receive size; fewer PDUs per image than 16 KiB


@dataclass
class GatewayStats:
    """Counters for metrics and tests; updated from the association threads."""

    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    found: int = 0
    rejected_associations: int = 0
    aborted_pdus: int = 0


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _abort_and_close(sock: socket.socket | None) -> None:
    """Send an A-ABORT (service provider, invalid PDU parameter) and close the socket."""
    if sock is None:
        return
    abort = A_ABORT_RQ()
    abort.source = 0x02
    abort.reason_diagnostic = 0x06
    try:
        sock.sendall(abort.encode())
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer may already be gone; closing is all that is left to do


def _guard_socket(assoc: Any, guard: PduGuard, on_refused: Callable[[], None]) -> None:
    """Wrap the association socket's ``recv`` with the PDU guard.

    pynetdicom's DUL reads a PDU as ``recv(6)`` (type, reserved, length) and then
    ``recv(length)``; the wrapper checks the length after the first call and the P-DATA
    fragments after the second. A refused PDU aborts the association, and ``recv``
    returns nothing, which the DUL treats as the connection closing (nothing allocated).
    """
    wrapped = assoc.dul.socket
    original = wrapped.recv
    state: dict[str, int | None] = {"body_of": None}

    def recv(nr_bytes: int) -> bytearray:
        body_of = state["body_of"]
        if body_of is None and nr_bytes == 6:
            header = cast(bytearray, original(6))
            if len(header) == 6:
                try:
                    guard.body_limit(bytes(header))
                except PduRefused as exc:
                    log.warning("aborting association from %s: %s", wrapped_address(), exc)
                    on_refused()
                    _abort_and_close(wrapped.socket)
                    return bytearray()
                state["body_of"] = header[0]
            return header
        data = cast(bytearray, original(nr_bytes))
        state["body_of"] = None
        if body_of == P_DATA_TF:
            try:
                guard.on_p_data(bytes(data))
            except PduRefused as exc:
                log.warning("aborting association from %s: %s", wrapped_address(), exc)
                on_refused()
                _abort_and_close(wrapped.socket)
                return bytearray()
        return data

    def wrapped_address() -> str:
        return str(assoc.requestor.address)

    wrapped.recv = recv


class DicomGateway:
    """The DICOM SCP of caregraph. Nothing listens until ``start``.

    ``data_dir`` holds ``objects/`` (the files), ``tmp/`` and ``index.sqlite3``.
    ``allowed_callers`` maps a calling AE title to the hosts it may connect from (an empty
    set: any host); ``None`` accepts every caller. ``max_pdu`` is the largest P-DATA PDU
    the gateway announces and accepts; ``max_message_bytes`` bounds one data set.

    Raises ``ConfigError`` from ``start`` when the port cannot be bound.
    """

    def __init__(
        self,
        data_dir: Path,
        bus: Bus,
        *,
        ae_title: str,
        host: str,
        port: int,
        allowed_callers: Mapping[str, set[str]] | None = None,
        max_pdu: int = DEFAULT_MAX_PDU,
        max_message_bytes: int = 1 << 30,
        max_associations: int = 16,
        timeout_s: float = 30.0,
        topic: str = RAW_DICOM,
    ) -> None:
        if not 1 <= len(ae_title.strip()) <= 16:
            raise ConfigError(f"AE title must be 1 to 16 characters, not {ae_title!r}")
        if not 4096 <= max_pdu <= 1 << 24:
            raise ConfigError(f"max_pdu must be between 4096 and 16 MiB, not {max_pdu}")
        self.data_dir = data_dir
        self.bus = bus
        self.ae_title = ae_title.strip()
        self.host = host
        self._port = port
        self.allowed_callers = (
            {k.strip(): set(v) for k, v in allowed_callers.items()}
            if allowed_callers is not None
            else None
        )
        self.max_pdu = max_pdu
        self.max_message_bytes = max_message_bytes
        self.max_associations = max_associations
        self.timeout_s = timeout_s
        self.topic = topic
        self.stats = GatewayStats()
        self._stats_lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._store: ObjectStore | None = None
        self._index: InstanceIndex | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the OS's pick when constructed with 0), once started."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Open the store and index and start listening; returns once the port is bound."""
        if self._server is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = ObjectStore(self.data_dir)
        self._index = InstanceIndex(self.data_dir / "index.sqlite3")
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = self.max_pdu
        ae.maximum_associations = self.max_associations
        ae.network_timeout = self.timeout_s
        ae.acse_timeout = self.timeout_s
        ae.dimse_timeout = self.timeout_s
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                # Every transfer syntax pynetdicom knows, compressed ones included: the
                # gateway stores the bytes as received and never decodes pixel data.
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        for sop_class in (VERIFICATION, PATIENT_ROOT_FIND, STUDY_ROOT_FIND):
            ae.add_supported_context(sop_class)
        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_C_FIND, self._on_c_find),
        ]
        try:
            server = ae.make_server(
                (self.host, self._port),
                evt_handlers=handlers,
                server_class=ThreadedAssociationServer,
                request_handler=self._request_handler_class(),
            )
        except OSError as exc:
            self._index.close()
            raise ConfigError(f"cannot listen on {self.host}:{self._port}: {exc}") from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"dicom-gateway:{self.port}", daemon=True
        )
        self._thread.start()
        log.info("DICOM gateway %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening, end open associations, close the index."""
        server, self._server = self._server, None
        if server is not None:
            # pynetdicom's own ``shutdown`` also unregisters the server from the AE's list
            # of servers it started, where ``make_server`` never put it; stop the loop with
            # socketserver's and close the socket ourselves.
            socketserver.BaseServer.shutdown(server)
            server.server_close()
            for assoc in server.active_associations:
                assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._index is not None:
            self._index.close()
            self._index = None

    def __enter__(self) -> DicomGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, field: str) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    def _request_handler_class(self) -> type[RequestHandler]:
        gateway = self

        class GuardedRequestHandler(RequestHandler):
            """pynetdicom's handler plus TCP_NODELAY and the PDU guard on each socket."""

            def _create_association(self) -> Any:
                assoc = super()._create_association()
                sock = self.request
                if isinstance(sock, socket.socket):
                    # Nagle's algorithm would hold back each small response PDU for the
                    # peer's delayed ACK, capping loopback throughput at tens of files/s.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                guard = PduGuard(gateway.max_pdu, gateway.max_message_bytes)
                _guard_socket(assoc, guard, lambda: gateway._count("aborted_pdus"))
                return assoc

        return GuardedRequestHandler

    # -- association -----------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        """Reject callers outside the allowlist (calling AE title not recognised)."""
        if self.allowed_callers is None:
            return
        primitive = cast(A_ASSOCIATE, event.assoc.requestor.primitive)
        calling = str(primitive.calling_ae_title).strip()
        host = str(event.assoc.requestor.address)
        hosts = self.allowed_callers.get(calling)
        if hosts is None or (hosts and host not in hosts):
            log.warning("rejecting association from %s at %s: not allowed", calling, host)
            self._count("rejected_associations")
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)

    # -- C-STORE ---------------------------------------------------------------------------

    def _on_c_store(self, event: evt.Event) -> int | Dataset:
        try:
            existed = self._store_instance(event)
        except Exception as exc:  # the edge: every error becomes a status for the peer
            code = status_for(exc)
            log.warning(
                "C-STORE from %s refused 0x%04X: %s", event.assoc.requestor.ae_title, code, exc
            )
            if code == 0xC000 and not isinstance(exc, MappingError):
                log.exception("unexpected error in C-STORE")
            self._count("failed")
            return failure(exc)
        self._count("duplicates" if existed else "stored")
        return 0x0000

    def _store_instance(self, event: evt.Event) -> bool:
        """Check, store, publish, index one instance; True if the file was there already."""
        assert self._store is not None and self._index is not None
        request = cast(C_STORE, event.request)
        transfer_syntax = str(event.context.transfer_syntax)
        raw = request.DataSet.getvalue() if request.DataSet is not None else b""
        if not raw:
            raise MappingError("C-STORE request without a data set")
        check_complete(raw, transfer_syntax, max_inflated=self.max_message_bytes)
        data = event.encoded_dataset(include_meta=True)
        try:
            ds = dcmread(BytesIO(data), stop_before_pixels=True)
        except Exception as exc:  # pydicom's many parse errors: all mean "cannot understand"
            raise MappingError(f"unreadable data set: {exc}") from exc

        sop_class = uid(_text(ds, "SOPClassUID"), "(0008,0016)")
        sop_instance = uid(_text(ds, "SOPInstanceUID"), "(0008,0018)")
        if sop_class != str(request.AffectedSOPClassUID):
            raise SopClassMismatch(f"SOP Class {sop_class} is not {request.AffectedSOPClassUID}")
        if sop_instance != str(request.AffectedSOPInstanceUID):
            raise MappingError(f"SOP Instance {sop_instance} is not the one announced")
        study = uid(_text(ds, "StudyInstanceUID"), "(0020,000D)")
        series = uid(_text(ds, "SeriesInstanceUID"), "(0020,000E)")

        # Everything that can fail on the data happens before the file is written, so a
        # refused instance leaves nothing behind.
        sha256 = hashlib.sha256(data).hexdigest()
        header = header_json(ds, sha256)
        stored = self._store.put(data, sha256=sha256)
        calling = str(event.assoc.requestor.ae_title).strip()
        message = RawInstance(
            sha256=stored.sha256,
            size=stored.size,
            transfer_syntax=transfer_syntax,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            calling_ae=calling,
            called_ae=self.ae_title,
            peer_host=str(event.assoc.requestor.address),
            header=header,
        )
        patient_id = _text(ds, "PatientID")
        # The PatientID keys the partition (a patient's instances stay in order); without
        # one the study does, which keeps the study's instances together all the same.
        key = (patient_id or study).encode()
        headers = make_headers(f"dicom:{calling}", stored.sha256, CONTENT_TYPE)
        self.bus.publish(self.topic, message.encode(), key=key, headers=headers)
        self._index.add(
            IndexedInstance(
                sop_instance_uid=sop_instance,
                sop_class_uid=sop_class,
                instance_number=_text(ds, "InstanceNumber"),
                series_instance_uid=series,
                series_number=_text(ds, "SeriesNumber"),
                modality=_text(ds, "Modality"),
                series_description=_text(ds, "SeriesDescription"),
                study_instance_uid=study,
                study_date=_text(ds, "StudyDate"),
                study_time=_text(ds, "StudyTime"),
                accession_number=_text(ds, "AccessionNumber"),
                study_id=_text(ds, "StudyID"),
                study_description=_text(ds, "StudyDescription"),
                referring_physician_name=_text(ds, "ReferringPhysicianName"),
                patient_id=patient_id,
                issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
                patient_name=_text(ds, "PatientName"),
                patient_birth_date=_text(ds, "PatientBirthDate"),
                patient_sex=_text(ds, "PatientSex"),
                sha256=stored.sha256,
                size=stored.size,
                transfer_syntax=transfer_syntax,
            )
        )
        return stored.existed

    # -- C-FIND ----------------------------------------------------------------------------

    def _on_c_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        assert self._index is not None
        try:
            identifier = event.identifier
            level = _text(identifier, "QueryRetrieveLevel")
            keys = {
                elem.keyword: _text(identifier, elem.keyword)
                for elem in identifier
                if elem.keyword and elem.VR != "SQ" and elem.keyword != "QueryRetrieveLevel"
            }
            matches = self._index.find(level, keys, returned=set(keys))
        except Exception as exc:  # the edge: an identifier we cannot answer gets a status
            log.warning("C-FIND refused: %s", exc)
            yield status_for(exc), None
            return
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, _response(level, keys, match)
            self._count("found")


def _response(level: str, keys: Mapping[str, str], match: Mapping[str, str | int]) -> Dataset:
    """The identifier of one match: every requested key, with its value when known."""
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    out.QueryRetrieveLevel = level
    for keyword in keys:
        value = match.get(keyword)
        if value is None or value == "":
            setattr(out, keyword, None)
        elif keyword == "ModalitiesInStudy":
            out.ModalitiesInStudy = sorted(str(value).split(","))
        elif keyword in COUNTS:
            setattr(out, keyword, str(value))
        else:
            setattr(out, keyword, str(value))
    return out
