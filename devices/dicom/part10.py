"""The DICOM file header (PS3.10 7.1): 128-byte preamble, ``DICM``, File Meta Information.

Written by hand rather than through pydicom's ``write_file_meta_info`` because it runs for
every received instance and pydicom's general writer costs about as much as storing the
file; ``tests/unit/dicom/test_part10.py`` checks the bytes against pydicom's.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

IMPLEMENTATION_CLASS_UID = str(PYNETDICOM_IMPLEMENTATION_UID)
IMPLEMENTATION_VERSION_NAME = str(PYNETDICOM_IMPLEMENTATION_VERSION)
_PREAMBLE = b"\0" * 128 + b"DICM"


def _short(elem: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def file_header(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str
) -> bytes:
    """Preamble, prefix and File Meta Information for one instance (all values ASCII:
    UIDs were validated, AE titles are ASCII by definition)."""
    body = b"".join(
        (
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\0\1",
            _short(0x0002, b"UI", _uid(sop_class_uid)),
            _short(0x0003, b"UI", _uid(sop_instance_uid)),
            _short(0x0010, b"UI", _uid(transfer_syntax)),
            _short(0x0012, b"UI", _uid(IMPLEMENTATION_CLASS_UID)),
            _short(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
            _short(0x0016, b"AE", _text(source_ae)) if source_ae else b"",
        )
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREAMBLE + group_length + body


def data_set_offset(data: bytes) -> int:
    """Where the data set starts in a stored file: after the preamble, ``DICM`` and the
    File Meta Information group, whose length its first element gives (PS3.10 7.1).

    Raises ``ValueError`` for bytes that do not start like a file this gateway wrote.
    """
    if len(data) < 144 or data[128:132] != b"DICM" or data[132:138] != b"\2\0\0\0UL":
        raise ValueError("not a DICOM file with a File Meta Information group length")
    (group_length,) = struct.unpack_from("<I", data, 140)
    return 144 + int(group_length)
