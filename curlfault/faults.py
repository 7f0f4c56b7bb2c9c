"""The fault vocabulary: small frozen values, validated when they are made.

Connection faults decide what happens when libcurl asks for a socket; give them to
``endpoint.connection_faults(...)``. Stream faults cut or shape the bytes of one response;
give them as ``respond(..., fault=...)``. Each docstring names the CURLcode libcurl 8.x
returns, and ``curlfault matrix`` proves it against the installed pycurl.

    >>> from curlfault import faults
    >>> faults.refuse()
    refuse()
    >>> faults.close(after_bytes=10)
    close(after_bytes=10)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from ._errors import UsageError

__all__ = [
    "Close",
    "ConnectTimeout",
    "ConnectionFault",
    "ConnectionRefused",
    "Fault",
    "Refuse",
    "Reset",
    "SlowConnect",
    "StreamFault",
    "close",
    "connect_timeout",
    "connection_refused",
    "refuse",
    "reset",
    "slow_connect",
]


@dataclass(frozen=True)
class Fault:
    """Base class. ``curlcode`` is what libcurl returns when the fault is met."""

    curlcode: ClassVar[int]
    name: ClassVar[str]

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({args})"


@dataclass(frozen=True, repr=False)
class ConnectionFault(Fault):
    """A fault applied when libcurl asks for a socket."""


@dataclass(frozen=True, repr=False)
class StreamFault(Fault):
    """A fault applied to the bytes of one response."""


@dataclass(frozen=True, repr=False)
class Refuse(ConnectionFault):
    """The opensocket callback returns ``SOCKET_BAD``: no descriptor is made at all.

    libcurl tries the next resolved address (there is one per fake host), then fails
    with 7 (``COULDNT_CONNECT``).
    """

    curlcode: ClassVar[int] = 7
    name: ClassVar[str] = "refuse"


def _seconds(value: object, what: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise UsageError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


@dataclass(frozen=True, repr=False)
class ConnectionRefused(ConnectionFault):
    """libcurl connects by itself to a loopback port that is bound but not listening.

    The kernel answers the SYN with RST: libcurl sees ``ECONNREFUSED`` and returns 7
    (``COULDNT_CONNECT``), exactly as for a server that is down. Unlike ``refuse()``, a
    descriptor exists and goes through the ledger.
    """

    curlcode: ClassVar[int] = 7
    name: ClassVar[str] = "connection_refused"


@dataclass(frozen=True, repr=False)
class ConnectTimeout(ConnectionFault):
    """libcurl connects by itself to a loopback listener whose accept queue is full.

    The kernel drops the SYN, so the connect never completes: libcurl returns 28
    (``OPERATION_TIMEDOUT``) when ``CONNECTTIMEOUT`` (or ``TIMEOUT``) runs out.
    """

    curlcode: ClassVar[int] = 28
    name: ClassVar[str] = "connect_timeout"


@dataclass(frozen=True, repr=False)
class SlowConnect(ConnectionFault):
    """The connect completes late: no sooner than ``seconds`` after it started.

    The listener's accept queue is full until ``seconds`` have passed; the connect then
    completes on the kernel's next SYN retransmission (Linux: 1 s, 3 s, 7 s, ... after the
    first SYN), so the real delay is rounded up to that schedule; the connection trace
    records it. Then the connection is served normally (0), or times out (28) if
    ``CONNECTTIMEOUT`` is shorter.
    """

    seconds: float = 1.0
    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "slow_connect"

    def __post_init__(self) -> None:
        _seconds(self.seconds, "slow_connect(seconds=...)")


def _byte_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be an int number of bytes, got {value!r}")
    if value < 0:
        raise UsageError(f"{what} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, repr=False)
class Close(StreamFault):
    """Send ``after_bytes`` bytes of the response, then FIN (half-close, drain, close).

    The CURLcode depends on where the cut falls, so ``curlcode`` (18) names the mid-body case:
    ``after_bytes=0`` (nothing sent) gives 52 (``GOT_NOTHING``); a cut inside the body of a
    response with a Content-Length gives 18 (``PARTIAL_FILE``); a cut after the status line,
    inside the headers, is a success (0) in libcurl, which ends the headers at EOF. Cuts
    inside the status line itself, or in the blank line that ends the head, are where libcurl
    varies: ``curlfault matrix`` lists the points it proves.
    """

    after_bytes: int = 0
    curlcode: ClassVar[int] = 18
    name: ClassVar[str] = "close"

    def __post_init__(self) -> None:
        _byte_count(self.after_bytes, "close(after_bytes=...)")


@dataclass(frozen=True, repr=False)
class Reset(StreamFault):
    """Send ``after_bytes`` bytes of the response, then RST (``SO_LINGER(1, 0)``).

    An RST needs TCP: an endpoint that has a reset fault serves every connection over a
    loopback TCP pair, whatever transport it was given. libcurl returns 56 (``RECV_ERROR``).
    """

    after_bytes: int = 0
    curlcode: ClassVar[int] = 56
    name: ClassVar[str] = "reset"

    def __post_init__(self) -> None:
        _byte_count(self.after_bytes, "reset(after_bytes=...)")


def refuse() -> Refuse:
    """Refuse the connection before a descriptor exists (CURLcode 7)."""
    return Refuse()


def connection_refused() -> ConnectionRefused:
    """libcurl's own connect hits a closed loopback port (CURLcode 7)."""
    return ConnectionRefused()


def connect_timeout() -> ConnectTimeout:
    """libcurl's own connect never completes (CURLcode 28 at CONNECTTIMEOUT)."""
    return ConnectTimeout()


def slow_connect(seconds: float) -> SlowConnect:
    """libcurl's own connect completes no sooner than ``seconds`` later."""
    return SlowConnect(seconds=seconds)


def close(after_bytes: int = 0) -> Close:
    """FIN after ``after_bytes`` bytes of the response (52 at 0, 18 inside the body)."""
    return Close(after_bytes=after_bytes)


def reset(after_bytes: int = 0) -> Reset:
    """RST after ``after_bytes`` bytes of the response (CURLcode 56)."""
    return Reset(after_bytes=after_bytes)
