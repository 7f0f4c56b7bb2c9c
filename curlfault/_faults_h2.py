"""HTTP/2 faults: part of the public ``curlfault.faults`` namespace (re-exported there).

They are stream faults: give them as ``respond(..., fault=...)``. Each acts when the fake
HTTP/2 server answers that request's stream, so a route's steps decide which connection meets
them: a fault on the first step only is met once and libcurl's retry on a new connection gets
the next step; a fault on the last step repeats for every retry. They apply to HTTP/2 streams
only: declaring one on an endpoint without ``http2=True`` raises ``UsageError``, and an
HTTP/1.1 client of an ``http2=True`` endpoint gets the response without it and ``check()``
reports a ``UsageError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._errors import UsageError
from .faults import StreamFault

__all__: list[str] = [
    "BadFrame",
    "FlowStall",
    "GoAway",
    "H2Fault",
    "RefusedStream",
    "RstStream",
    "Settings",
    "bad_frame",
    "flow_stall",
    "goaway",
    "refused_stream",
    "rst_stream",
    "settings",
]

# RFC 9113 section 7 error codes, by name.
ERROR_CODES = {
    "NO_ERROR": 0,
    "PROTOCOL_ERROR": 1,
    "INTERNAL_ERROR": 2,
    "FLOW_CONTROL_ERROR": 3,
    "SETTINGS_TIMEOUT": 4,
    "STREAM_CLOSED": 5,
    "FRAME_SIZE_ERROR": 6,
    "REFUSED_STREAM": 7,
    "CANCEL": 8,
    "COMPRESSION_ERROR": 9,
    "CONNECT_ERROR": 10,
    "ENHANCE_YOUR_CALM": 11,
    "INADEQUATE_SECURITY": 12,
    "HTTP_1_1_REQUIRED": 13,
}
# RFC 9113 section 6.5.2 settings (and RFC 8441's ENABLE_CONNECT_PROTOCOL), by keyword.
SETTING_CODES = {
    "header_table_size": 1,
    "enable_push": 2,
    "max_concurrent_streams": 3,
    "initial_window_size": 4,
    "max_frame_size": 5,
    "max_header_list_size": 6,
    "enable_connect_protocol": 8,
}
# A SETTINGS frame on stream 0 whose 5-byte payload is not a multiple of 6 (FRAME_SIZE_ERROR).
DEFAULT_BAD_FRAME = b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5


def _error_code(value: object) -> int:
    if isinstance(value, str):
        code = ERROR_CODES.get(value.upper())
        if code is None:
            raise UsageError(
                f"error_code={value!r} is not an HTTP/2 error name; use one of "
                f"{', '.join(ERROR_CODES)} or an int"
            )
        return code
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise UsageError(
            f"error_code must be an HTTP/2 error name or an int 0..2**32-1, got {value!r}"
        )
    return value


@dataclass(frozen=True, repr=False)
class H2Fault(StreamFault):
    """Base of the faults that only an HTTP/2 stream can meet."""


@dataclass(frozen=True, repr=False)
class RstStream(H2Fault):
    """RST_STREAM on the request's stream: before the response headers (``after_bytes=None``)
    or after the headers and ``after_bytes`` body bytes in DATA frames.

    libcurl 8.23 returns 92 (``HTTP2_STREAM``) for every error code except REFUSED_STREAM
    (see ``refused_stream()``); the connection stays usable for other streams.
    """

    curlcode: ClassVar[int] = 92
    name: ClassVar[str] = "rst_stream"
    ends_h2_stream: ClassVar[bool] = True
    error_code: int = 2
    after_bytes: int | None = None

    @property
    def no_h2_response(self) -> bool:
        return self.after_bytes is None

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_code", _error_code(self.error_code))
        n = self.after_bytes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise UsageError(
                f"after_bytes must be None (before the headers) or an int >= 0, got {n!r}"
            )


@dataclass(frozen=True, repr=False)
class RefusedStream(H2Fault):
    """RST_STREAM(REFUSED_STREAM) before the response headers: the server did no work.

    libcurl retries the request on a new connection; when every connection refuses it, it
    gives up with 56 (``RECV_ERROR``) after 5 retries (6 connections).
    """

    curlcode: ClassVar[int] = 56
    name: ClassVar[str] = "refused_stream"
    ends_h2_stream: ClassVar[bool] = True
    no_h2_response: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class GoAway(H2Fault):
    """GOAWAY(``last_stream_id``, ``error_code``) when the request arrives, then FIN.

    A request whose stream id is above ``last_stream_id`` was not processed: with
    ``last_stream_id=0`` libcurl retries it on a new connection and, when every connection
    answers GOAWAY, gives up with 56 (``RECV_ERROR``). A stream at or below
    ``last_stream_id`` gets its full response before the GOAWAY (a graceful shutdown).
    """

    curlcode: ClassVar[int] = 56
    name: ClassVar[str] = "goaway"
    ends_h2_stream: ClassVar[bool] = True
    last_stream_id: int = 0
    error_code: int = 0

    def __post_init__(self) -> None:
        n = self.last_stream_id
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**31:
            raise UsageError(f"last_stream_id must be an int 0..2**31-1, got {n!r}")
        object.__setattr__(self, "error_code", _error_code(self.error_code))


@dataclass(frozen=True, repr=False)
class BadFrame(H2Fault):
    """``frame`` written raw on the connection instead of the response (no HPACK, no checks).

    The default is a SETTINGS frame whose 5-byte payload is not a multiple of 6: nghttp2
    answers GOAWAY(FRAME_SIZE_ERROR) and libcurl returns 16 (``HTTP2``).
    """

    curlcode: ClassVar[int] = 16
    name: ClassVar[str] = "bad_frame"
    ends_h2_stream: ClassVar[bool] = True
    no_h2_response: ClassVar[bool] = True
    frame: bytes = DEFAULT_BAD_FRAME

    def __post_init__(self) -> None:
        if not isinstance(self.frame, bytes) or not self.frame:
            raise UsageError(f"frame must be non-empty bytes, got {self.frame!r}")

    def __repr__(self) -> str:
        return "bad_frame()" if self.frame == DEFAULT_BAD_FRAME else f"bad_frame({self.frame!r})"


@dataclass(frozen=True, repr=False)
class FlowStall(H2Fault):
    """The fake never opens its receive window for this stream's request body.

    It sends no WINDOW_UPDATE for the body, so an upload larger than the initial window
    (65,535 bytes) stops when the window is used up and the request never completes:
    28 (``OPERATION_TIMEDOUT``) under the client's TIMEOUT. The request is recorded with the
    body bytes that did arrive; it is never answered.
    """

    curlcode: ClassVar[int] = 28
    name: ClassVar[str] = "flow_stall"
    ends_h2_stream: ClassVar[bool] = True
    no_h2_response: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class Settings(H2Fault):
    """A SETTINGS frame with ``values`` sent mid-connection, before the response headers.

    A valid change: libcurl acknowledges it (a SETTINGS frame with the ACK flag in
    ``connection.frames``) and the transfer succeeds with 0.
    """

    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "settings"
    values: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.values:
            raise UsageError("settings() needs at least one setting, e.g. max_concurrent_streams=1")
        for key, value in self.values:
            if key not in SETTING_CODES:
                raise UsageError(
                    f"settings({key}=...) is not an HTTP/2 setting; use one of "
                    f"{', '.join(SETTING_CODES)}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                raise UsageError(f"settings({key}={value!r}) must be an int 0..2**32-1")
        # h2 refuses values RFC 9113 forbids before they are sent: say so at declaration.
        limits = {
            "enable_push": (0, 1),
            "enable_connect_protocol": (0, 1),
            "initial_window_size": (0, 2**31 - 1),
            "max_frame_size": (2**14, 2**24 - 1),
        }
        for key, value in self.values:
            low, high = limits.get(key, (0, 2**32 - 1))
            if not low <= value <= high:
                raise UsageError(f"settings({key}={value}) must be from {low} to {high}")

    def __repr__(self) -> str:
        return f"settings({', '.join(f'{k}={v}' for k, v in self.values)})"


def rst_stream(
    error_code: int | str = "INTERNAL_ERROR", *, after_bytes: int | None = None
) -> RstStream:
    """RST_STREAM(``error_code``) before the headers, or after ``after_bytes`` body bytes (92)."""
    return RstStream(error_code=error_code, after_bytes=after_bytes)  # type: ignore[arg-type]


def refused_stream() -> RefusedStream:
    """RST_STREAM(REFUSED_STREAM) before the headers: libcurl retries (56 if every one does)."""
    return RefusedStream()


def goaway(last_stream_id: int = 0, *, error_code: int | str = "NO_ERROR") -> GoAway:
    """GOAWAY then FIN when the request arrives (56 after libcurl's retries, last=0)."""
    return GoAway(last_stream_id=last_stream_id, error_code=error_code)  # type: ignore[arg-type]


def bad_frame(frame: bytes = DEFAULT_BAD_FRAME) -> BadFrame:
    """A malformed frame written raw instead of the response (16 ``HTTP2``)."""
    return BadFrame(frame=frame)


def flow_stall() -> FlowStall:
    """Never open the receive window for the request body (28 on a large upload)."""
    return FlowStall()


def settings(**values: int) -> Settings:
    """SETTINGS(``values``) mid-connection before the response, e.g. ``initial_window_size=0``."""
    return Settings(values=tuple(values.items()))
