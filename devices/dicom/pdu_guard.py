"""Bounds on what a peer may make the gateway allocate (pure; the upper layer in
``devices.dicom.ul`` consults it for every PDU it reads).

A PDU announces its length in 4 bytes, so a peer can announce 0xFFFFFFFF and stream; a
reader that trusts the field (pynetdicom's does) grows one buffer towards 4 GiB. The guard
refuses a PDU longer than the gateway allows before a byte of its body is read, and counts
the P-DATA bytes of one DIMSE message so a data set cannot grow beyond ``max_message``
either (a message's fragments are collected in memory).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from caregraph.errors import CaregraphError

P_DATA_TF = 0x04
# A-ASSOCIATE-RQ/AC and the like are not bound by the negotiated maximum; 1 MiB holds an
# association request with every storage SOP class and many transfer syntaxes.
MAX_CONTROL_PDU = 1 << 20
_PDV_HEADER = struct.Struct(">IBB")


class PduRefused(CaregraphError):
    """The peer sent a PDU or message larger than allowed; the association is aborted."""


@dataclass
class PduGuard:
    """Per-association limits: ``max_pdu`` for P-DATA-TF bodies (the maximum length the
    gateway announced), ``max_message`` for one DIMSE message's data set."""

    max_pdu: int
    max_message: int
    _message_bytes: int = 0

    def body_limit(self, header: bytes) -> int:
        """The PDU body length from a 6-byte PDU header; ``PduRefused`` if over the limit."""
        pdu_type, _, length = struct.unpack(">BBL", header)
        limit = self.max_pdu if pdu_type == P_DATA_TF else max(self.max_pdu, MAX_CONTROL_PDU)
        if length > limit:
            raise PduRefused(f"PDU type 0x{pdu_type:02X} announces {length} bytes, limit {limit}")
        return int(length)

    def on_p_data(self, body: bytes) -> None:
        """Account a P-DATA-TF body's data set fragments; ``PduRefused`` past the limit."""
        pos = 0
        while pos + 6 <= len(body):
            item_length, _context, control = _PDV_HEADER.unpack_from(body, pos)
            fragment = max(item_length - 2, 0)
            if not control & 0x01:  # data set, not command
                self._message_bytes += fragment
                if self._message_bytes > self.max_message:
                    raise PduRefused(f"data set exceeds {self.max_message} bytes")
                if control & 0x02:  # last fragment of this data set
                    self._message_bytes = 0
            pos += 4 + item_length
