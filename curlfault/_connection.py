"""The record of one connection libcurl made to a fake network: who, when, how, and its
timeline of events (a network keeps every one for the test to inspect).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._errors import ServerError

if TYPE_CHECKING:
    from ._endpoints import Endpoint
    from ._listener import ConnectPoint
    from ._network import FakeNetwork
    from ._transports import Channel
    from .faults import Fault
    from .protocols.http2 import Frame

__all__ = ["Connection"]


# The texts of connection events, kept once each: most are the same from one connection to
# the next ("request GET /items"), and a network keeps every connection's timeline.
_TEXTS: dict[str, str] = {}
_TEXTS_MAX = 4096
_TEXT_MAX_LEN = 80


def kept_text(text: str) -> str:
    """The one kept copy of an event's ``text`` (``text`` itself once the cache is full)."""
    kept = _TEXTS.get(text)
    if kept is None:
        kept = text
        if len(_TEXTS) < _TEXTS_MAX and len(text) <= _TEXT_MAX_LEN:
            _TEXTS[text] = text
    return kept


class Connection:
    """One connection attempt libcurl made, as the fake network saw it."""

    # A network keeps every connection it saw: slots, a flat timeline and containers made
    # on first use keep an idle one small.
    __slots__ = (
        "_frames",
        "_log",
        "_point",
        "_tls",
        "channel",
        "closed_at",
        "connected_at",
        "endpoint",
        "family",
        "fault",
        "fault_on",
        "host",
        "id",
        "network",
        "opened_at",
        "peer",
        "refused",
        "transport",
        "url",
    )

    def __init__(
        self, network: FakeNetwork, seq: int, endpoint: Endpoint | None, peer: str, url: str
    ) -> None:
        self.network = network
        self.id = seq
        self.endpoint = endpoint
        self.host = endpoint.host if endpoint is not None else ""
        self.peer = peer
        self.url = url
        self.transport = ""
        self.family = ""  # "ipv4" or "ipv6": the family of the address libcurl asked for
        self.fault: Fault | None = None
        # The request a stream fault acted on ("GET /b", "GET /b (stream 3)"): a connection
        # that served several requests shows which one in its trace header.
        self.fault_on = ""
        self.refused = False
        self.opened_at = time.monotonic()
        # When the fake's end was connected: at once for a pair, when the listener
        # accepted for libcurl's own connect (so a slow_connect's real delay shows here).
        self.connected_at: float | None = None
        self.closed_at: float | None = None
        self._point: ConnectPoint | None = None  # the port libcurl connected to itself
        self._log: list[float | str] = []  # time, text, time, text, ...
        self.channel: Channel | None = None
        self._tls: dict[str, Any] | None = None
        self._frames: list[Frame] | None = None

    @property
    def events(self) -> list[tuple[float, str]]:
        """The connection's timeline: ``(time.monotonic(), text)`` pairs, oldest first."""
        log = self._log
        return list(zip(log[0::2], log[1::2], strict=True))  # type: ignore[arg-type]

    @property
    def tls(self) -> dict[str, Any]:
        """What the TLS handshake saw (TLS endpoints only; empty otherwise)."""
        if self._tls is None:
            self._tls = {}
        return self._tls

    @property
    def frames(self) -> list[Frame]:
        """HTTP/2 frames both ways, in order (HTTP/2 only; empty otherwise)."""
        if self._frames is None:
            self._frames = []
        return self._frames

    def event(self, text: str, at: float | None = None) -> None:
        """Add ``text`` to the timeline, at ``at`` (a ``time.monotonic()`` value) or now."""
        self._log += (time.monotonic() if at is None else at, _TEXTS.get(text) or kept_text(text))

    def note(self, text: str) -> None:
        """``event(text)`` now, for a ``text`` the caller got from ``kept_text()`` (a cached
        request's or response's event: every keep-alive request makes two)."""
        self._log += (time.monotonic(), text)

    def server_failed(self, exc: BaseException) -> None:
        err = ServerError(f"connection #{self.id} to {self.host or self.peer}: {exc!r}")
        err.__cause__ = exc
        self.event(f"server error: {exc!r}")
        self.network._record(err)

    def describe(self) -> str:
        from ._track_report import url_host  # a report's path only

        start = self.opened_at
        # A connection no fake served has no endpoint: its URL names the host it was for.
        host = self.host or url_host(self.url) or "?"
        lines = [
            f"#{self.id} {host} via {self.peer} [{self.transport or 'none'}]"
            + (f" url={self.url}" if self.url else "")
            + (f" fault={self.fault!r}" if self.fault is not None else "")
            + (f" on {self.fault_on}" if self.fault is not None and self.fault_on else "")
        ]
        for t, text in self.events:
            lines.append(f"    +{(t - start) * 1000:8.3f} ms  {text}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Connection #{self.id} {self.host or self.peer} {self.transport}>"
