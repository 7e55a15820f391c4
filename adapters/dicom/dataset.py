"""A received pydicom data set -> the DICOM JSON header that travels on ``raw.dicom``.

Pure (pydicom's JSON encoder, no I/O). Pixel data never travels: the gateway reads the
header with ``stop_before_pixels``, and any other large binary element is replaced by a
``BulkDataURI`` naming the stored file by its content hash, so the message stays small and
the bytes stay retrievable.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from caregraph.errors import MappingError

# Binary values up to this many base64 characters travel inline (PS3.18 F.2.7 allows
# either form); larger ones are referenced.
INLINE_BINARY_LIMIT = 1024
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)


def bulk_data_uri(sha256: str) -> str:
    """Where the binary values of a stored instance can be read: its content address."""
    return f"urn:caregraph:dicom:sha256:{sha256}"


def header_json(ds: Dataset, sha256: str) -> dict[str, Any]:
    """The data set as DICOM JSON without pixel data; large binaries become BulkDataURIs.

    Raises ``MappingError`` when pydicom cannot encode an element (a value that does not
    fit its VR); the caller treats that as data it cannot understand.
    """
    uri = bulk_data_uri(sha256)

    def handler(_: DataElement) -> str:
        return uri

    for tag in _PIXEL_TAGS:
        if tag in ds:
            del ds[tag]
    try:
        return ds.to_json_dict(
            bulk_data_threshold=INLINE_BINARY_LIMIT, bulk_data_element_handler=handler
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MappingError(f"cannot encode the header as DICOM JSON: {exc}") from exc
