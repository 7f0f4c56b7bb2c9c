"""Connection faults: what happens when libcurl asks for a socket, before any byte. Part
of the public ``curlfault.faults`` namespace (re-exported there). Give them to
``endpoint.connection_faults(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .faults import ConnectionFault, _seconds

__all__: list[str] = [
    "ConnectTimeout",
    "ConnectionRefused",
    "Refuse",
    "SlowConnect",
    "connect_timeout",
    "connection_refused",
    "refuse",
    "slow_connect",
]


@dataclass(frozen=True, repr=False)
class Refuse(ConnectionFault):
    """The opensocket callback returns ``SOCKET_BAD``: no descriptor is made at all.

    libcurl tries the next resolved address (there is one per fake host), then fails
    with 7 (``COULDNT_CONNECT``).
    """

    curlcode: ClassVar[int] = 7
    name: ClassVar[str] = "refuse"


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
        from ._listener import release_delay, syn_schedule

        release_delay(self.seconds, syn_schedule())  # beyond the kernel's SYN retries: raises


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
