"""The DICOM gateway: an SCP for C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE.

A C-STORE is answered with success only after: the data set was checked whole (one walk
over its element framing, ``devices.dicom.framing``, which also picks out the UIDs and the
few values the gateway needs); then the file was stored content-addressed and made durable
(``devices.dicom.storage``: one append to the intake journal, ``devices.dicom.journal``)
and, at the same time (``parallel_publish``), its header was published to ``raw.dicom``
(durable when ``Bus.publish`` returns); then it was indexed for C-FIND. Doing the two
durable writes at once halves the wait: a crash between them can leave a ``raw.dicom``
record whose file was never made durable, for an instance whose sender got no success
and sends it again (``parallel_publish=False`` keeps the strict order: file, then bus).
A failure on the way is answered with the status of ``devices.dicom.status`` (0xA700 when
it cannot be stored or published, 0xC000 when it cannot be understood, 0xA900 when the
data set is not of the announced SOP class).

Threads: ``start`` runs an accept loop in one daemon thread and each association in a
thread of its own (``devices.dicom.ul``); the object store and index are shared by them.

Defences at the edge: an association must call the gateway's own AE title (else
A-ASSOCIATE-RJ, called AE title not recognised); calling AE titles (and their hosts) can be
allowlisted with the operations each may use (``devices.dicom.access``); every PDU's
announced length is checked before its body is read, and a data set cannot grow past
``max_message_bytes`` (``devices.dicom.pdu_guard``); silent peers time out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_file_meta_info
from pydicom.multival import MultiValue
from pynetdicom.dsutils import encode

from adapters.dicom import tags
from adapters.dicom.raw import CONTENT_TYPE, RawInstance
from adapters.dicom.values import uid
from bus.base import Bus
from bus.headers import make_headers
from bus.topics import RAW_DICOM
from caregraph.errors import ConfigError, MappingError
from devices.dicom.access import CallerPolicy, caller_policy
from devices.dicom.catalog import LEVELS as CATALOG_LEVELS
from devices.dicom.catalog import StudyCatalog, StudySearch
from devices.dicom.framing import scan
from devices.dicom.index import IndexedInstance, InstanceIndex
from devices.dicom.part10 import data_set_offset, file_header
from devices.dicom.status import (
    CANNOT_UNDERSTAND,
    PENDING,
    SUCCESS,
    SopClassMismatch,
    failure,
    status_for,
)
from devices.dicom.storage import ObjectStore, digest
from devices.dicom.ul import Listener, Peer, Retrievable, StoreRequest

log = logging.getLogger(__name__)

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


# The top-level elements the gateway reads itself (DICOM JSON keys, as in adapters.dicom.tags).
_NEEDED = (
    tags.SOP_CLASS_UID,
    tags.SOP_INSTANCE_UID,
    tags.STUDY_DATE,
    tags.STUDY_TIME,
    tags.ACCESSION_NUMBER,
    tags.MODALITY,
    tags.REFERRING_PHYSICIAN_NAME,
    tags.STUDY_DESCRIPTION,
    tags.SERIES_DESCRIPTION,
    tags.PATIENT_NAME,
    tags.PATIENT_ID,
    tags.ISSUER_OF_PATIENT_ID,
    tags.PATIENT_BIRTH_DATE,
    tags.PATIENT_SEX,
    tags.STUDY_INSTANCE_UID,
    tags.SERIES_INSTANCE_UID,
    tags.STUDY_ID,
    tags.SERIES_NUMBER,
    tags.INSTANCE_NUMBER,
)
_CHARSET = 0x00080005
_WANTED = frozenset({_CHARSET, *(int(t, 16) for t in _NEEDED)})
# Never left out of a raw.dicom header, however long it is: what the mapping reads.
_KEPT = frozenset(
    {_CHARSET} | {int(value, 16) for name, value in vars(tags).items() if name.isupper()}
)
# Elements whose text follows Specific Character Set; the others are ASCII by VR.
_DECODED = frozenset(
    int(t, 16)
    for t in (
        tags.PATIENT_NAME,
        tags.REFERRING_PHYSICIAN_NAME,
        tags.PATIENT_ID,
        tags.ISSUER_OF_PATIENT_ID,
        tags.STUDY_DESCRIPTION,
        tags.SERIES_DESCRIPTION,
        tags.ACCESSION_NUMBER,
        tags.STUDY_ID,
    )
)


class _Values:
    """The raw values found by the scan, as text the way DICOM writes it (multiple values
    joined by backslash, person names as ``Family^Given``, padding stripped)."""

    def __init__(self, raw: dict[int, bytes]) -> None:
        self.raw = raw
        charset = raw.get(_CHARSET, b"").decode("ascii", "replace").strip(" \0")
        self.encodings = convert_encodings(charset.split("\\") if charset else None)

    def text(self, tag: str) -> str:
        value = self.raw.get(int(tag, 16))
        if not value:
            return ""
        if int(tag, 16) in _DECODED:
            text = decode_bytes(value, self.encodings, {0x5C, 0x3D, 0x5E})
            if tag in (tags.PATIENT_NAME, tags.REFERRING_PHYSICIAN_NAME):
                text = text.split("=")[0]  # the alphabetic group, as C-FIND matches it
        else:
            text = value.decode("ascii", "replace")
        return "\\".join(part.strip(" \0") for part in text.split("\\"))


def _indexed(v: _Values, sha256: str, size: int, transfer_syntax: str) -> IndexedInstance:
    """The index row of an instance from the values its scan found (UIDs checked)."""
    return IndexedInstance(
        sop_instance_uid=uid(v.text(tags.SOP_INSTANCE_UID), "(0008,0018)"),
        sop_class_uid=uid(v.text(tags.SOP_CLASS_UID), "(0008,0016)"),
        instance_number=v.text(tags.INSTANCE_NUMBER),
        series_instance_uid=uid(v.text(tags.SERIES_INSTANCE_UID), "(0020,000E)"),
        series_number=v.text(tags.SERIES_NUMBER),
        modality=v.text(tags.MODALITY),
        series_description=v.text(tags.SERIES_DESCRIPTION),
        study_instance_uid=uid(v.text(tags.STUDY_INSTANCE_UID), "(0020,000D)"),
        study_date=v.text(tags.STUDY_DATE),
        study_time=v.text(tags.STUDY_TIME),
        accession_number=v.text(tags.ACCESSION_NUMBER),
        study_id=v.text(tags.STUDY_ID),
        study_description=v.text(tags.STUDY_DESCRIPTION),
        referring_physician_name=v.text(tags.REFERRING_PHYSICIAN_NAME),
        patient_id=v.text(tags.PATIENT_ID),
        issuer_of_patient_id=v.text(tags.ISSUER_OF_PATIENT_ID),
        patient_name=v.text(tags.PATIENT_NAME),
        patient_birth_date=v.text(tags.PATIENT_BIRTH_DATE),
        patient_sex=v.text(tags.PATIENT_SEX),
        sha256=sha256,
        size=size,
        transfer_syntax=transfer_syntax,
    )


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


class DicomGateway:
    """The DICOM SCP of caregraph. Nothing listens until ``start``.

    ``data_dir`` holds ``objects/`` (the files), ``tmp/`` and ``index.sqlite3``.
    ``allowed_callers`` is the caller policy, or anything ``caller_policy`` reads (the
    setting's JSON or compact text, AE -> rule, or the older AE -> hosts, which permits
    every operation); ``None`` accepts every caller for everything. C-MOVE destinations
    are the allowlisted AEs with a port. ``study_search`` (a FHIR search on ImagingStudy)
    answers C-FIND at STUDY and SERIES level from the ImagingStudy resources
    (``devices.dicom.catalog``) instead of this gateway's own index.
    ``require_called_ae=False`` accepts associations
    whatever AE title they call (for a peer that cannot be configured; off by default).
    ``max_pdu`` is the largest P-DATA PDU the gateway announces and accepts;
    ``max_message_bytes`` bounds one data set.
    ``fsync=False`` trades power-loss safety of the stored files for speed, as
    ``EmbeddedBus(fsync=False)`` does for the log. ``max_header_bytes`` bounds the header
    in a ``raw.dicom`` message (Kafka's default message limit is 1 MB); the largest
    top-level elements of a longer header are left out and listed in ``omitted``.

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
        allowed_callers: CallerPolicy | Mapping[str, object] | str | None = None,
        require_called_ae: bool = True,
        max_pdu: int = DEFAULT_MAX_PDU,
        max_message_bytes: int = 1 << 30,
        max_associations: int = 16,
        timeout_s: float = 30.0,
        topic: str = RAW_DICOM,
        fsync: bool = True,
        max_header_bytes: int = 512 * 1024,
        journal: bool = True,
        parallel_publish: bool = True,
        study_search: StudySearch | None = None,
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
        self.policy = caller_policy(allowed_callers)
        self.require_called_ae = require_called_ae
        self.max_pdu = max_pdu
        self.max_message_bytes = max_message_bytes
        self.max_associations = max_associations
        self.timeout_s = timeout_s
        self.topic = topic
        self.fsync = fsync
        self.journal = journal
        self.parallel_publish = parallel_publish
        self.catalog = StudyCatalog(study_search) if study_search is not None else None
        self._publisher: ThreadPoolExecutor | None = None
        self.max_header_bytes = max_header_bytes
        self.stats = GatewayStats()
        self._stats_lock = threading.Lock()
        self._listener: Listener | None = None
        self._store: ObjectStore | None = None
        self._index: InstanceIndex | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the OS's pick when constructed with 0), once started."""
        return self._listener.port if self._listener is not None else self._port

    def start(self) -> None:
        """Open the store and index and start listening; returns once the port is bound."""
        if self._listener is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = ObjectStore(self.data_dir, fsync=self.fsync, journal=self.journal)
        self._index = InstanceIndex(self.data_dir / "index.sqlite3")
        if self.parallel_publish:
            self._publisher = ThreadPoolExecutor(
                self.max_associations, thread_name_prefix="dicom-publish"
            )
        try:
            self._listener = Listener(
                self,
                ae_title=self.ae_title,
                host=self.host,
                port=self._port,
                max_pdu=self.max_pdu,
                max_message_bytes=self.max_message_bytes,
                max_associations=self.max_associations,
                timeout_s=self.timeout_s,
                on_refused_pdu=lambda: self._count("aborted_pdus"),
                require_called_ae=self.require_called_ae,
                on_rejected=lambda: self._count("rejected_associations"),
            )
        except OSError as exc:
            self._index.close()
            self._index = None
            self._store.close()
            self._store = None
            raise ConfigError(f"cannot listen on {self.host}:{self._port}: {exc}") from exc
        self._listener.start()
        log.info("DICOM gateway %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening, close open associations, close the index."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._store is not None:
            self._store.close()  # the journal's last checkpoint
            self._store = None
        if self._publisher is not None:
            self._publisher.shutdown(wait=True)
            self._publisher = None

    def reindex(self) -> int:
        """Rebuild the C-FIND index from the stored files; returns how many were indexed.

        The index is derived data, kept with ``synchronous=NORMAL``: after a power loss
        its last rows may be missing, and this restores them (run it before ``start``, or
        while no C-STORE arrives). Files that cannot be read are logged and skipped.
        """
        # Not started: a store of its own, which first restores what a crash left in the
        # journal (so those instances are indexed too).
        store = self._store or ObjectStore(self.data_dir, fsync=self.fsync, journal=self.journal)
        index = self._index or InstanceIndex(self.data_dir / "index.sqlite3")
        count = 0
        try:
            for path in sorted(self.data_dir.glob("objects/*/*")):
                try:
                    data = store.read(path.name)
                    offset = data_set_offset(data)
                    meta = read_file_meta_info(path)
                    syntax = str(meta.TransferSyntaxUID)
                    found = scan(data[offset:], syntax, wanted=_WANTED)
                    index.add(_indexed(_Values(found.values), path.name, len(data), syntax))
                    count += 1
                except (OSError, ValueError, MappingError) as exc:
                    log.warning("reindex: skipping %s: %s", path.name, exc)
        finally:
            if index is not self._index:
                index.close()
            if store is not self._store:
                store.close()
        return count

    def __enter__(self) -> DicomGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, field: str) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    # -- ul.Services -----------------------------------------------------------------------

    def operations(self, peer: Peer) -> frozenset[str] | None:
        """What a caller may do; callers outside the allowlist are rejected (calling AE
        title not recognised)."""
        allowed = self.policy.operations(peer.calling_ae, peer.host)
        if allowed is None:
            log.warning(
                "rejecting association from %s at %s: not allowed", peer.calling_ae, peer.host
            )
            self._count("rejected_associations")
        return allowed

    def destination(self, ae_title: str) -> tuple[str, int] | None:
        """A C-MOVE destination's address, from the allowlist (AEs with a port)."""
        return self.policy.destination(ae_title)

    def store(self, request: StoreRequest) -> Dataset:
        """Answer one C-STORE: success only once the instance is durable (module doc)."""
        try:
            existed = self._store_instance(request)
        except Exception as exc:  # the edge: every error becomes a status for the peer
            code = status_for(exc)
            log.warning("C-STORE from %s refused 0x%04X: %s", request.peer.calling_ae, code, exc)
            if code == CANNOT_UNDERSTAND and not isinstance(exc, MappingError):
                log.exception("unexpected error in C-STORE")
            self._count("failed")
            return failure(exc)
        self._count("duplicates" if existed else "stored")
        status = Dataset()
        status.Status = SUCCESS
        return status

    def _store_instance(self, request: StoreRequest) -> bool:
        """Check, store, publish, index one instance; True if the file was there already."""
        assert self._store is not None and self._index is not None
        if not request.data_set:
            raise MappingError("C-STORE request without a data set")
        # The command's UIDs go into the file meta: check them before anything else.
        uid(request.sop_class_uid, "Affected SOP Class UID")
        uid(request.sop_instance_uid, "Affected SOP Instance UID")
        # One walk checks the data set is whole and picks out the few values needed here;
        # nothing is parsed into a pydicom data set on the way to the answer.
        found = scan(
            request.data_set,
            request.transfer_syntax,
            wanted=_WANTED,
            max_inflated=self.max_message_bytes,
        )
        v = _Values(found.values)
        sop_class = uid(v.text(tags.SOP_CLASS_UID), "(0008,0016)")
        sop_instance = uid(v.text(tags.SOP_INSTANCE_UID), "(0008,0018)")
        if sop_class != request.sop_class_uid:
            raise SopClassMismatch(f"SOP Class {sop_class} is not {request.sop_class_uid}")
        if sop_instance != request.sop_instance_uid:
            raise MappingError(f"SOP Instance {sop_instance} is not the one announced")
        study = uid(v.text(tags.STUDY_INSTANCE_UID), "(0020,000D)")
        uid(v.text(tags.SERIES_INSTANCE_UID), "(0020,000E)")  # refused before any write

        # Everything that can fail on the data happened above, before the file is
        # written, so a refused instance leaves nothing behind.
        header = file_header(
            sop_class, sop_instance, request.transfer_syntax, request.peer.calling_ae
        )
        header_bytes, omitted = found.header(self.max_header_bytes, _KEPT)
        sha256, size = digest(header, request.data_set)
        message = RawInstance(
            sha256=sha256,
            size=size,
            transfer_syntax=request.transfer_syntax,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            calling_ae=request.peer.calling_ae,
            called_ae=self.ae_title,
            peer_host=request.peer.host,
            header_syntax=found.syntax,
            header=header_bytes,
            omitted=tuple(f"{tag:08X}" for tag in omitted),
        )
        patient_id = v.text(tags.PATIENT_ID)
        # The PatientID keys the partition (a patient's instances stay in order); without
        # one the study does, which keeps the study's instances together all the same.
        key = (patient_id or study).encode()
        headers = make_headers(f"dicom:{request.peer.calling_ae}", sha256, CONTENT_TYPE)
        if self._publisher is None:
            stored = self._store.put(header, request.data_set, known=(sha256, size))
            self.bus.publish(self.topic, message.encode(), key=key, headers=headers)
        else:
            # The two durable writes (object, bus) at once: the answer waits for both.
            published = self._publisher.submit(
                self.bus.publish, self.topic, message.encode(), key=key, headers=headers
            )
            try:
                stored = self._store.put(header, request.data_set, known=(sha256, size))
            finally:
                published.result()  # its error (the bus is down) wins: 0xA700 either way
        self._index.add(_indexed(v, sha256, size, request.transfer_syntax))
        return stored.existed

    def find(self, peer: Peer, identifier: Dataset) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND over the index: pending responses, or one failure status."""
        assert self._index is not None
        try:
            level, keys = _query_keys(identifier)
            if self.catalog is not None and level in CATALOG_LEVELS:
                matches = self.catalog.find(level, keys, returned=set(keys))
            else:
                matches = self._index.find(level, keys, returned=set(keys))
        except Exception as exc:  # the edge: an identifier we cannot answer gets a status
            log.warning("C-FIND from %s refused: %s", peer.calling_ae, exc)
            yield status_for(exc), None
            return
        for match in matches:
            self._count("found")
            yield PENDING, _response(level, keys, match)

    def retrieve(self, peer: Peer, identifier: Dataset) -> list[Retrievable]:
        """C-GET and C-MOVE: the stored instances under the matches of the identifier."""
        assert self._index is not None and self._store is not None
        store = self._store
        level, keys = _query_keys(identifier)
        rows = self._index.instances(level, keys)
        log.info("C-GET from %s: %d instances", peer.calling_ae, len(rows))

        def reader(row: IndexedInstance) -> Callable[[str], bytes]:
            def read(transfer_syntax: str) -> bytes:
                data = store.read(row.sha256)
                data_set = data[data_set_offset(data) :]
                if transfer_syntax == row.transfer_syntax:
                    return data_set
                return _reencode(data_set, row.transfer_syntax, transfer_syntax)

            return read

        return [
            Retrievable(
                row.sop_class_uid,
                row.sop_instance_uid,
                row.transfer_syntax,
                reader(row),
                store.path_for(row.sha256),
            )
            for row in rows
        ]


_UNCOMPRESSED = {
    "1.2.840.10008.1.2": (True, True),
    "1.2.840.10008.1.2.1": (False, True),
    "1.2.840.10008.1.2.2": (False, False),
}


def _reencode(data_set: bytes, source: str, target: str) -> bytes:
    """An uncompressed data set in another uncompressed transfer syntax (for a C-GET peer
    that did not accept the stored one); ``ValueError`` for anything else."""
    if source not in _UNCOMPRESSED or target not in _UNCOMPRESSED:
        raise ValueError(f"will not transcode {source} to {target}")
    ds = read_dataset(BytesIO(data_set), *_UNCOMPRESSED[source])
    encoded = encode(ds, *_UNCOMPRESSED[target])
    if encoded is None:
        raise ValueError(f"pydicom could not encode the data set as {target}")
    return encoded


def _query_keys(identifier: Dataset) -> tuple[str, dict[str, str]]:
    level = _text(identifier, "QueryRetrieveLevel")
    keys = {
        elem.keyword: _text(identifier, elem.keyword)
        for elem in identifier
        if elem.keyword and elem.VR != "SQ" and elem.keyword != "QueryRetrieveLevel"
    }
    return level, keys


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
        else:
            setattr(out, keyword, str(value))
    return out
