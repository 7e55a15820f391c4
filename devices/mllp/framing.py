"""MLLP framing, pure: ``0x0B`` + message + ``0x1C 0x0D``. No sockets here.

``MllpDecoder`` is incremental: feed it whatever ``recv`` returned (a byte, half a frame,
three frames) and it yields complete frames and framing errors in order. Memory is
bounded: a frame larger than ``max_frame`` is not buffered; only its head is kept (so the
answer can still name its MSH-10), and the rest is skipped up to its end block.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
_START = b"\x0b"
_END = b"\x1c"
HEAD_BYTES = 64 * 1024
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
_WHITESPACE = b"\r\n\t "


def encode_frame(payload: bytes) -> bytes:
    """Frame one message; raises ValueError if it holds a framing byte (0x0B or 0x1C)."""
    if _START in payload or _END in payload:
        raise ValueError("an MLLP payload cannot contain 0x0B or 0x1C")
    return _START + payload + b"\x1c\x0d"


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete message between a start block and an end block."""

    payload: bytes


class FramingProblem(Enum):
    JUNK = "bytes outside a frame"
    RESTARTED = "a new frame started before this one ended"
    BAD_END = "end block 0x1C not followed by 0x0D"
    OVERSIZE = "frame larger than the limit"
    TRUNCATED = "connection closed inside a frame"


@dataclass(frozen=True, slots=True)
class FramingError:
    """Bytes that do not form a frame. ``head`` is the start of what was received (for an
    answer naming MSH-10 when there is one); ``size`` how many bytes the problem spans."""

    problem: FramingProblem
    head: bytes
    size: int

    @property
    def reason(self) -> str:
        return f"{self.problem.value} ({self.size} bytes)"


Event = Frame | FramingError


class MllpDecoder:
    """Incremental MLLP decoder (see the module docstring). Not thread-safe: one per
    connection."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self.max_frame = max_frame
        self._inside = False
        self._buf = bytearray()
        self._size = 0
        self._oversize = False
        self._pending_end = False
        self._in_junk = False

    @property
    def buffered(self) -> int:
        """Bytes held right now (bounded by ``max_frame`` + one read)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data``; return the frames and errors it completed, in order."""
        out: list[Event] = []
        i, n = 0, len(data)
        while i < n:
            if not self._inside:
                j = data.find(_START, i)
                stop = j if j >= 0 else n
                if not self._in_junk and data[i:stop].strip(_WHITESPACE):
                    self._in_junk = True
                    out.append(
                        FramingError(FramingProblem.JUNK, data[i:stop][:HEAD_BYTES], stop - i)
                    )
                if j < 0:
                    return out
                self._begin()
                i = j + 1
                continue
            if self._pending_end:
                self._pending_end = False
                if data[i] == CARRIAGE_RETURN:
                    out.append(self._finish())
                    i += 1
                else:
                    out.append(self._fail(FramingProblem.BAD_END))
                continue
            k_end = data.find(_END, i)
            k_start = data.find(_START, i)
            if k_end < 0 and k_start < 0:
                self._append(data[i:])
                return out
            if k_start >= 0 and (k_end < 0 or k_start < k_end):
                self._append(data[i:k_start])
                out.append(self._fail(FramingProblem.RESTARTED))
                i = k_start  # the outside state picks up the new start block
                continue
            self._append(data[i:k_end])
            if k_end + 1 >= n:
                self._pending_end = True
                return out
            if data[k_end + 1] == CARRIAGE_RETURN:
                out.append(self._finish())
                i = k_end + 2
            else:
                out.append(self._fail(FramingProblem.BAD_END))
                i = k_end + 1
        return out

    def close(self) -> list[Event]:
        """End of stream: a frame still open is reported as truncated."""
        if self._inside and (self._size or self._pending_end):
            return [self._fail(FramingProblem.TRUNCATED)]
        self._inside = False
        return []

    def _begin(self) -> None:
        self._inside = True
        self._in_junk = False
        self._buf = bytearray()
        self._size = 0
        self._oversize = False
        self._pending_end = False

    def _append(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._oversize:
            return
        if self._size > self.max_frame:
            self._oversize = True
            room = max(0, HEAD_BYTES - len(self._buf))
            self._buf += chunk[:room]
            del self._buf[HEAD_BYTES:]
            return
        self._buf += chunk

    def _finish(self) -> Event:
        event: Event
        if self._oversize:
            event = FramingError(FramingProblem.OVERSIZE, bytes(self._buf), self._size)
        else:
            event = Frame(bytes(self._buf))
        self._reset()
        return event

    def _fail(self, problem: FramingProblem) -> FramingError:
        event = FramingError(problem, bytes(self._buf[:HEAD_BYTES]), self._size)
        self._reset()
        # what follows a broken end, up to the next start block, belongs to this error
        self._in_junk = problem is FramingProblem.BAD_END
        return event

    def _reset(self) -> None:
        self._inside = False
        self._buf = bytearray()
        self._size = 0
        self._oversize = False
        self._pending_end = False
