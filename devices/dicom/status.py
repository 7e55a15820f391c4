"""Errors inside the gateway -> the DIMSE status the peer gets (PS3.4 B.2.3, C.4.1.1.4).

One table, consulted by the one place that answers a C-STORE or C-FIND; the rest of the
gateway raises typed exceptions and never picks a status itself.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from caregraph.errors import BusError, CaregraphError, MappingError

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700  # "Refused: Out of Resources" (can be retried later)
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000  # C-STORE "Error: Cannot understand"; C-FIND "Unable to process"


class SopClassMismatch(MappingError):
    """The data set's SOP Class UID is not the one the request announced."""


class GatewayError(CaregraphError):
    """An error in the DICOM gateway that is not about the data: the instance could not
    be made durable or published, so the sender should try again later."""


# Most specific first: the first class an exception is an instance of wins.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (SopClassMismatch, DATASET_DOES_NOT_MATCH_SOP_CLASS),
    (MappingError, CANNOT_UNDERSTAND),
    (BusError, OUT_OF_RESOURCES),
    (GatewayError, OUT_OF_RESOURCES),
    (OSError, OUT_OF_RESOURCES),
    (MemoryError, OUT_OF_RESOURCES),
)


def status_for(exc: BaseException) -> int:
    """The status code for an error; anything unexpected is 'cannot understand'."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return CANNOT_UNDERSTAND


def failure(exc: BaseException) -> Dataset:
    """A status data set with the code and a one-line Error Comment (at most 64 chars)."""
    status = Dataset()
    status.Status = status_for(exc)
    where = getattr(exc, "location", None)
    text = f"{exc} {where}" if where else str(exc)
    status.ErrorComment = " ".join(text.split())[:64] or type(exc).__name__
    return status
