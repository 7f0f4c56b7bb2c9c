"""WebSocket faults: part of the public ``curlfault.faults`` namespace (re-exported there).

They act inside a WebSocket route's script (``endpoint.websocket(path)``): ``ws_fragment``,
``ws_oversized`` and ``ws_cut`` shape one message (``route.send(data, fault=...)``); ``ws_close``,
``ws_drop`` and ``ws_no_pong`` act when the script reaches them (``route.fault(...)``). The
CURLcodes are what pycurl's ``ws_recv`` raises (libcurl 8.23, ``CONNECT_ONLY=2``);
``curlfault matrix`` proves each one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from ._errors import UsageError
from .faults import Fault

__all__: list[str] = [
    "WebSocketFault",
    "WsClose",
    "WsCut",
    "WsDrop",
    "WsFragment",
    "WsNoPong",
    "WsOversized",
    "ws_close",
    "ws_cut",
    "ws_drop",
    "ws_fragment",
    "ws_no_pong",
    "ws_oversized",
]

# RFC 6455 5.2: the 64-bit payload length must have its most significant bit clear.
MAX_FRAME_LENGTH = 2**63 - 1


@dataclass(frozen=True, repr=False)
class WebSocketFault(Fault):
    """Base class of the faults a WebSocket route's script applies."""


@dataclass(frozen=True, repr=False)
class WsClose(WebSocketFault):
    """A close frame with ``code`` and ``reason``, then FIN without waiting for the client.

    ``ws_recv`` returns the close frame (``flags & WS_CLOSE``, payload = the 2-byte code then
    the reason); the next ``ws_recv`` raises 52 ``GOT_NOTHING`` (the connection is gone). A
    WRITEFUNCTION transfer gets the close frame and ``perform()`` returns 0.
    """

    curlcode: ClassVar[int] = 52
    name: ClassVar[str] = "ws_close"
    code: int = 1000
    reason: str = ""

    def __post_init__(self) -> None:
        from ._websocket import close_code  # _websocket imports this module

        close_code(self.code, self.reason)


@dataclass(frozen=True, repr=False)
class WsDrop(WebSocketFault):
    """FIN with no close frame: the connection just ends (1006 in WebSocket terms).

    ``ws_recv`` raises 52 ``GOT_NOTHING``. A WRITEFUNCTION transfer ends with 0: libcurl
    treats the end of the connection as the end of the transfer. With ``reset=True`` the
    connection ends with an RST instead (the endpoint serves over TCP): 56 ``RECV_ERROR``.
    """

    curlcode: ClassVar[int] = 52
    name: ClassVar[str] = "ws_drop"
    reset: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.reset, bool):
            raise UsageError(f"ws_drop(reset=...) takes a bool, got {self.reset!r}")


@dataclass(frozen=True, repr=False)
class WsFragment(WebSocketFault):
    """Send the message in frames of ``size`` (characters of text, bytes of binary): the
    first frame has the message's opcode, the rest are continuation frames, only the last has
    FIN. Not an error: ``ws_recv`` returns each frame with ``WS_CONT`` set on all but the
    last (0)."""

    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "ws_fragment"
    size: int = 1

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UsageError(f"ws_fragment(size) takes a positive int, got {size!r}")


@dataclass(frozen=True, repr=False)
class WsOversized(WebSocketFault):
    """A frame whose header declares ``length`` payload bytes (default 2**63, past the
    63-bit limit of RFC 6455), followed by the message, then FIN.

    ``ws_recv`` (or ``perform()`` with a WRITEFUNCTION) raises 56 ``RECV_ERROR``: libcurl
    refuses the header ("frame length longer than 63 bits not supported").
    """

    curlcode: ClassVar[int] = 56
    name: ClassVar[str] = "ws_oversized"
    length: int = 2**63

    def __post_init__(self) -> None:
        length = self.length
        if (
            isinstance(length, bool)
            or not isinstance(length, int)
            or not (MAX_FRAME_LENGTH < length < 2**64)
        ):
            raise UsageError(
                f"ws_oversized(length) must be from 2**63 to 2**64 - 1 (a length no valid "
                f"frame can declare), got {length!r}; to send a big valid message use "
                "send(b'x' * n)"
            )


@dataclass(frozen=True, repr=False)
class WsCut(WebSocketFault):
    """The message's frame cut after ``after_bytes`` bytes (its header counted), then FIN; or
    an RST with ``reset=True`` (the endpoint then serves over TCP): a server that dies in the
    middle of a message.

    ``ws_recv`` returns the payload bytes that arrived (``bytesleft`` > 0: the frame is not
    whole; nothing for a cut inside the frame's head), then raises 52 ``GOT_NOTHING``. A
    WRITEFUNCTION transfer gets those bytes and ``perform()`` raises 56 ``RECV_ERROR`` (52
    when the cut comes before the frame's first byte). With ``reset=True``: 56 both ways, and
    the RST goes at once, as when a server crashes: bytes still queued behind the socket
    buffers are lost, so keep such a cut within a few hundred KB for an exact count.
    ``send()`` refuses an ``after_bytes`` at or past the frame's end (nothing would be cut).
    """

    curlcode: ClassVar[int] = 52
    name: ClassVar[str] = "ws_cut"
    after_bytes: int = 0
    reset: bool = False

    def __post_init__(self) -> None:
        n = self.after_bytes
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UsageError(f"ws_cut(after_bytes) takes an int >= 0, got {n!r}")
        if not isinstance(self.reset, bool):
            raise UsageError(f"ws_cut(reset=...) takes a bool, got {self.reset!r}")


@dataclass(frozen=True, repr=False)
class WsNoPong(WebSocketFault):
    """From this point the server never answers a ping. ``ws_recv`` waiting for the pong
    keeps raising ``BlockingIOError`` (libcurl's ``CURLE_AGAIN``, "no data yet"). ``curlcode``
    81 means "no pong before the client's own deadline": libcurl never fails a transfer
    with it by itself; the client decides how long to wait."""

    curlcode: ClassVar[int] = 81
    name: ClassVar[str] = "ws_no_pong"


def ws_cut(after_bytes: int, *, reset: bool = False) -> WsCut:
    """The message's frame cut after ``after_bytes`` bytes, then FIN (RST with ``reset``)."""
    return WsCut(after_bytes=after_bytes, reset=reset)


def ws_close(code: int = 1000, reason: str = "") -> WsClose:
    """A close frame with ``code`` (and ``reason``), then FIN at once (52 on the next read)."""
    return WsClose(code=code, reason=reason)


def ws_drop(*, reset: bool = False) -> WsDrop:
    """End the connection without a close frame: FIN (52 ``GOT_NOTHING`` from ``ws_recv``),
    or with ``reset=True`` an RST (56 ``RECV_ERROR``; the endpoint then serves over TCP)."""
    return WsDrop(reset=reset)


def ws_fragment(size: int) -> WsFragment:
    """Send the message in frames of ``size`` characters or bytes (0: frames, not an error)."""
    return WsFragment(size=size)


def ws_oversized(length: int = 2**63) -> WsOversized:
    """A frame header declaring ``length`` payload bytes, past RFC 6455's limit (56)."""
    return WsOversized(length=length)


def ws_no_pong() -> WsNoPong:
    """Stop answering pings (the client's wait for a pong ends only by its own timeout)."""
    return WsNoPong()


def oversized_frame(fault: WsOversized, payload: bytes, text: bool) -> bytes:
    """The bytes of the frame ``fault`` sends: a FIN text/binary head declaring
    ``fault.length`` (64-bit length form), then ``payload``. No valid frame has this head,
    so no WebSocket library can write it; it is built here."""
    opcode = 0x1 if text else 0x2
    return struct.pack("!BBQ", 0x80 | opcode, 127, fault.length) + payload
