"""The ``raw.dicom`` message: one stored instance, as the gateway received it.

The gateway writes it once the file is durable; the normalizer reads it. Value: compact
JSON with the content address of the stored file (``sha256``, ``size``), how it was
received (transfer syntax, calling and called AE titles, peer host) and the header: the
received data set's bytes up to the pixel data (base64; inflated if it came deflated),
in ``header_syntax``. Key: the PatientID, so all of a patient's instances keep their
order. Headers: ``bus.headers.make_headers`` with the file hash as message id (a re-sent
identical file is the same message).

Why the header travels as DICOM bytes and not as DICOM JSON: turning it into JSON costs
about a millisecond per instance, and the gateway has to answer the modality only once
the message is durable; the normalizer, which batches and is off that path, does it
(``header_of``). The bytes are also what was received, exactly, which is what a raw topic
is for.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from adapters.dicom.dataset import header_json
from caregraph.errors import MappingError

CONTENT_TYPE = "application/vnd.caregraph.dicom-instance;version=1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_SYNTAXES = {
    IMPLICIT_VR_LITTLE_ENDIAN: (True, True),
    EXPLICIT_VR_LITTLE_ENDIAN: (False, True),
    EXPLICIT_VR_BIG_ENDIAN: (False, False),
}
_FIELDS = (
    "sha256",
    "size",
    "transfer_syntax",
    "sop_class_uid",
    "sop_instance_uid",
    "calling_ae",
    "called_ae",
    "peer_host",
    "header_syntax",
    "omitted",
)


@dataclass(frozen=True, slots=True)
class RawInstance:
    """One received instance; ``header`` is its data set up to the pixel data, encoded in
    ``header_syntax`` (implicit or explicit VR little endian, or explicit big endian)."""

    sha256: str
    size: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    calling_ae: str
    called_ae: str
    peer_host: str
    header_syntax: str
    header: bytes
    omitted: tuple[str, ...] = ()
    """Tags (``GGGGEEEE``) of large top-level elements left out of ``header`` to bound the
    message; they are in the stored file."""

    def encode(self) -> bytes:
        """Compact UTF-8 JSON, the header in base64."""
        body: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        body["omitted"] = list(self.omitted)
        body["header"] = base64.b64encode(self.header).decode("ascii")
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, value: bytes) -> RawInstance:
        """Parse a message value; ``MappingError`` when it is not one of these."""
        try:
            body = json.loads(value)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
            raise MappingError(f"raw.dicom value is not JSON: {str(exc)[:200]}") from exc
        if not isinstance(body, dict):
            raise MappingError("raw.dicom value is not a JSON object")
        try:
            header = base64.b64decode(body.pop("header"), validate=True)
            omitted = tuple(body.pop("omitted", ()))
            out = cls(header=header, omitted=omitted, **body)
        except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
            raise MappingError(f"raw.dicom value has the wrong fields: {exc}") from exc
        if out.header_syntax not in _SYNTAXES or not isinstance(out.sha256, str):
            raise MappingError(f"raw.dicom header syntax {out.header_syntax!r} is not known")
        return out


def header_dataset(raw: RawInstance) -> Dataset:
    """The header as a pydicom data set (elements are converted lazily, on access)."""
    implicit, little = _SYNTAXES[raw.header_syntax]
    try:
        return read_dataset(BytesIO(raw.header), implicit, little)
    except Exception as exc:  # pydicom's parse errors have no common base
        raise MappingError(f"raw.dicom header is not a readable data set: {exc}") from exc


def header_of(raw: RawInstance) -> dict[str, Any]:
    """The header as DICOM JSON (PS3.18 F.2), large binaries referenced by content hash."""
    return header_json(header_dataset(raw), raw.sha256)
