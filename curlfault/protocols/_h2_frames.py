"""The frames of an HTTP/2 connection, read from its bytes: the log tests assert on.

``FrameLog`` splits one direction's bytes into ``Frame`` records (a header each, and the
error code and last stream of RST_STREAM and GOAWAY); ``error_name`` spells an error code as
RFC 9113 does. The server side lives in ``http2``, which re-exports ``PREFACE``, ``Frame``
and ``FrameLog``.
"""

from __future__ import annotations

from typing import NamedTuple

from .._faults_h2 import ERROR_CODES

__all__ = ["ERROR_NAMES", "FRAME_TYPES", "PREFACE", "Frame", "FrameLog", "error_name"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_TYPES = {
    0: "DATA",
    1: "HEADERS",
    2: "PRIORITY",
    3: "RST_STREAM",
    4: "SETTINGS",
    5: "PUSH_PROMISE",
    6: "PING",
    7: "GOAWAY",
    8: "WINDOW_UPDATE",
    9: "CONTINUATION",
}
ERROR_NAMES = {v: k for k, v in ERROR_CODES.items()}


def error_name(code: int | None) -> str:
    """An HTTP/2 error code as the RFC names it (``CANCEL``), or in hex if it has no name."""
    if code is None:
        return "no error code"
    return ERROR_NAMES.get(int(code)) or f"0x{int(code):x}, not an HTTP/2 error code"


class Frame(NamedTuple):
    """One frame on an HTTP/2 connection, as the fake saw its bytes.

    ``direction`` is ``"recv"`` (from libcurl) or ``"sent"`` (by the fake); ``type`` is the
    frame type name (``"HEADERS"``; ``"0xNN"`` for an unknown type); ``error_code`` is set for
    RST_STREAM and GOAWAY, ``last_stream_id`` for GOAWAY.
    """

    direction: str
    type: str
    stream_id: int
    flags: int
    length: int
    error_code: int | None = None
    last_stream_id: int | None = None

    @property
    def ack(self) -> bool:
        """The ACK flag of a SETTINGS or PING frame."""
        return self.type in ("SETTINGS", "PING") and bool(self.flags & 1)

    def __repr__(self) -> str:
        extra = ""
        if self.error_code is not None:
            extra = f" {ERROR_NAMES.get(self.error_code, self.error_code)}"
        if self.last_stream_id is not None:
            extra += f" last={self.last_stream_id}"
        return (
            f"<{self.direction} {self.type}{' ACK' if self.ack else ''} #{self.stream_id}{extra}>"
        )


class FrameLog:
    """Splits one direction's bytes into frame records (headers only; payloads skipped)."""

    def __init__(self, direction: str, out: list[Frame], *, preface: bool = False) -> None:
        self.direction = direction
        self.out = out
        self._buf = bytearray()
        self._skip = len(PREFACE) if preface else 0

    def feed(self, data: bytes) -> None:
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        buf = self._buf
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            kind = buf[3]
            need = 9 + length
            if kind not in (3, 7):  # only RST_STREAM and GOAWAY payloads are read
                need = 9
            if len(buf) < need:
                return
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            error = last = None
            if kind == 3 and length >= 4:
                error = int.from_bytes(buf[9:13], "big")
            elif kind == 7 and length >= 8:
                last = int.from_bytes(buf[9:13], "big") & 0x7FFFFFFF
                error = int.from_bytes(buf[13:17], "big")
            name = FRAME_TYPES.get(kind, f"0x{kind:02x}")
            self.out.append(Frame(self.direction, name, stream, buf[4], length, error, last))
            # The payload may not have arrived yet: skip it as it comes.
            consumed = min(len(buf), 9 + length)
            self._skip = 9 + length - consumed
            del buf[:consumed]
            if self._skip:
                return
