"""``FakeNetwork``: endpoints by host and port, routing, records, and the final check.

Every fake host gets an alias address of its own in 127.77.0.0/16. Routed handles pin the
host to that alias with CONNECT_TO and RESOLVE, so libcurl never asks a resolver about it,
and the opensocket callback finds the endpoint by the alias it is asked to connect to. In
strict mode a last wildcard CONNECT_TO entry sends every other host to a sink address that
the opensocket callback refuses and reports.
"""

from __future__ import annotations

import gc
import ipaddress
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import _intercept
from ._errors import (
    CallbackError,
    CurlFaultError,
    LeakError,
    ServerError,
    UnexpectedConnection,
    UsageError,
)
from ._http import Request
from ._ledger import KEPT_FOREVER, Ledger, Site, SocketRecord
from ._listener import SYN_RETRIES, ConnectPoint
from ._loop import Loop
from ._transports import Channel, make_pair
from ._wiring import PASSTHROUGH, SINK_IP, Wiring
from .faults import (
    ConnectionFault,
    ConnectionRefused,
    ConnectTimeout,
    Refuse,
    SlowConnect,
)

if TYPE_CHECKING:
    import pycurl


from ._endpoints import (
    _ALIAS_BASE,
    _SELF_CONNECT,
    Connection,
    Endpoint,
    HttpEndpoint,
    RefusingEndpoint,
    _host,
    _port,
)

__all__ = ["Connection", "Endpoint", "FakeNetwork", "HttpEndpoint"]


class FakeNetwork:
    """A set of fake hosts that pycurl handles are routed to.

    ``strict=True`` (the default) refuses and reports every connection to a host no fake
    serves. Use it as a context manager; leaving the block closes the network and, when the
    block raised nothing, runs ``check()``.
    """

    def __init__(
        self,
        *,
        strict: bool = True,
        loop: Loop | None = None,
        ca: Any = None,
        label: str = "",
        trust: bool = True,
    ) -> None:
        self.strict = strict
        self.label = label
        self.trust = trust
        self._own_loop = loop is None
        self._loop = loop
        self._ca = ca
        self.ledger = Ledger()
        self.requests: list[Request] = []
        self.connections: list[Connection] = []
        self.endpoints: list[Endpoint] = []
        self._by_alias: dict[str, Endpoint] = {}
        self._by_point: dict[tuple[str, int], Endpoint] = {}  # reserved (address, port)
        self._retired: list[ConnectPoint] = []
        self._by_key: dict[tuple[str, int | None], Endpoint] = {}
        self._problems: list[CurlFaultError] = []
        self._reported = 0
        self._lock = threading.Lock()
        self._wirings: weakref.WeakSet[Wiring] = weakref.WeakSet()
        self._graveyard: list[object] = []  # handles to release outside any callback
        self._handles: list[weakref.ref[Any]] = []
        self.generation = 0
        self.closed = False
        self._pins: tuple[list[str], list[str]] | None = None
        self.has_tls = False

    # context manager -----------------------------------------------------------------
    def __enter__(self) -> FakeNetwork:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.check()
        finally:
            self.close()

    # declaring hosts -------------------------------------------------------------------
    def http(self, host: str, port: int = 80, *, transport: str = "socketpair") -> HttpEndpoint:
        """An HTTP/1.1 endpoint at ``host:port``."""
        ep = HttpEndpoint(self, _host(host), _port(port), self._alias(), transport)
        return self._add(ep)  # type: ignore[return-value]

    def https(self, host: str, port: int = 443, *, transport: str = "socketpair") -> HttpEndpoint:
        """An HTTPS (HTTP/1.1 over TLS) endpoint whose certificate ``net.ca`` signed."""
        from ._tls import TlsServerConfig

        host = _host(host)
        tls = TlsServerConfig.for_host(self.ca, host)
        self.has_tls = True
        ep = HttpEndpoint(self, host, _port(port), self._alias(), transport, tls=tls)
        return self._add(ep)  # type: ignore[return-value]

    def refuse(self, host: str, port: int | None = None) -> Endpoint:
        """Refuse every connection to ``host`` (on every port when ``port`` is None)."""
        ep = RefusingEndpoint(
            self, _host(host), None if port is None else _port(port), self._alias(), "socketpair"
        )
        return self._add(ep)

    def _alias(self) -> str:
        n = len(self.endpoints)
        if n >= 65000:
            raise UsageError("a FakeNetwork holds at most 65000 endpoints")
        return str(ipaddress.IPv4Address(_ALIAS_BASE + n))

    def _add(self, ep: Endpoint) -> Endpoint:
        if self.closed:
            raise UsageError("this FakeNetwork is closed; make a new one")
        key = (ep.host, ep.port)
        if key in self._by_key:
            raise UsageError(
                f"{ep.host}:{'*' if ep.port is None else ep.port} is already served by "
                f"{self._by_key[key]!r}; keep the endpoint the first call returned"
            )
        self._by_key[key] = ep
        self._by_alias[ep.alias] = ep
        self._by_alias[ep.alias6] = ep
        self.endpoints.append(ep)
        ep._reserve_points()  # a listener endpoint's port, before its first pins
        self._repin()
        return ep

    def _repin(self) -> None:
        """The pins changed: routed handles take the new ones before their next perform."""
        self._pins = None
        self.generation += 1
        for wiring in list(self._wirings):
            wiring.refresh_attached()

    def _retire(self, points: Iterable[ConnectPoint]) -> None:
        """Points an endpoint moved away from: kept (a connection may use one) until close."""
        for point in points:
            self._by_point.pop((point.address, point.port), None)
            self._retired.append(point)

    @property
    def ca(self) -> Any:
        """The trustme CA that signs this network's certificates (made on first use).

        ``FakeNetwork(ca=...)`` takes a CA, or a function that returns one when first needed.
        """
        if self._ca is None:
            import trustme

            self._ca = trustme.CA()
        elif callable(self._ca) and not hasattr(self._ca, "issue_cert"):
            self._ca = self._ca()
        return self._ca

    def pins(self) -> tuple[list[str], list[str]]:
        """(RESOLVE, CONNECT_TO) lists for routed handles."""
        if self._pins is None:
            resolve: list[str] = []
            connect_to: list[str] = []
            # Exact ports before wildcard ports, in declaration order.
            for ep in sorted(self.endpoints, key=lambda e: e.port is None):
                r, c = ep.pin_entries()
                resolve += r
                connect_to.append(c)
            self._pins = (resolve, connect_to)
        return self._pins

    # routing handles -------------------------------------------------------------------
    def attach(self, curl: pycurl.Curl, *, trust: bool | None = None) -> pycurl.Curl:
        """Route an existing handle through this network; returns it."""
        if self.closed:
            raise UsageError("this FakeNetwork is closed; make a new one")
        wiring = Wiring(
            self, _intercept.caller_site(), trust=self.trust if trust is None else trust
        )
        wiring.install(curl, attached=True)
        if isinstance(curl, _intercept.InterceptedCurl):
            # A handle another router (a tracker, another network) wired: its perform()
            # and setopt() overrides must now consult this wiring.
            _intercept.set_wiring(curl, wiring)
        return curl

    def _wire(self, curl: pycurl.Curl, site: Site) -> Wiring:
        wiring = Wiring(self, site, trust=self.trust)
        wiring.install(curl, attached=False)
        return wiring

    def _register(self, wiring: Wiring) -> None:
        self._wirings.add(wiring)

    @contextmanager
    def intercept(self) -> Iterator[FakeNetwork]:
        """Route every ``pycurl.Curl()`` made inside the block through this network."""
        token = _intercept.install(self)
        try:
            yield self
        finally:
            _intercept.uninstall(token)

    # the opensocket decision (called from the wiring) ----------------------------------
    @property
    def loop(self) -> Loop:
        if self._loop is None:
            self._loop = Loop(name="curlfault-loop")
        if not self._loop.running:
            self._loop.start()
        return self._loop

    def open_socket(self, family: int, ip: str, port: int, wiring: Wiring) -> int | None:
        """A descriptor for libcurl, or None to refuse. Runs in the thread calling perform."""
        if family == socket.AF_INET6:
            ip = str(ipaddress.IPv6Address(ip))  # the spelling our pins and points use
            peer = f"[{ip}]:{port}"
        else:
            peer = f"{ip}:{port}"
        ep = self._by_point.get((ip, port)) or self._by_alias.get(ip)
        with self._lock:
            conn = Connection(self, len(self.connections) + 1, ep, peer, wiring.url)
            self.connections.append(conn)
        if self.closed:
            conn.refused = True
            conn.event("refused: the network is closed")
            self._record(
                UnexpectedConnection(
                    "a handle routed through a closed FakeNetwork connected "
                    f"(url {wiring.url or '?'})"
                )
            )
            return None
        if ep is None and not self.strict and ip != SINK_IP:
            conn.transport = "passthrough"
            conn.event("not a fake host: passed through to the real network (strict=False)")
            return PASSTHROUGH
        if ep is None:
            conn.refused = True
            what, hint = _describe_url(wiring.url)
            if ip == SINK_IP:
                conn.event("refused: no fake serves this host (strict)")
                self._record(
                    UnexpectedConnection(
                        f"pycurl connected to {what}, which no fake serves; add {hint}, "
                        "or use strict=False (marker: curlfault(strict=False)) to let it "
                        "reach the real network"
                    )
                )
            else:
                conn.event(f"refused: {peer} is not a fake address")
                self._record(
                    UnexpectedConnection(
                        f"pycurl connected to {peer} ({what}), which no fake serves"
                    )
                )
            return None
        conn.family = "ipv6" if family == socket.AF_INET6 else "ipv4"
        fault = ep._take_connection_fault(conn.family)
        ep.connections.append(conn)
        conn.fault = fault
        if isinstance(fault, Refuse):
            conn.refused = True
            conn.event("refused by fault refuse()")
            return None
        if isinstance(fault, _SELF_CONNECT) or ep.transport == "listener":
            return self._own_connect(ep, conn, ip, port, fault, wiring)
        if fault is not None:  # pragma: no cover - every connection fault is handled above
            raise NotImplementedError(f"connection fault {fault!r} is not modelled yet")
        kind = "tcp" if ep._needs_tcp else ep.transport
        client, server = make_pair(kind)
        conn.transport = kind
        conn.connected_at = time.monotonic()
        try:
            inode = _inode(client)
            self.ledger.opened(
                SocketRecord(
                    inode=inode,
                    fd=client.fileno(),
                    family=conn.family,
                    peer=peer,
                    host=ep.host,
                    url=wiring.url,
                    kind=kind,
                    opened_in=self.label,
                    handle_site=wiring.site,
                    owner=conn,
                    keepalive=wiring.pool_keepalive(),
                )
            )
            channel = Channel(self.loop, server, conn)
            conn.channel = channel
            conn.event(f"connected ({kind})")
            ep._serve(channel, conn)
        except BaseException:
            client.close()
            server.close()
            raise
        return client.detach()

    def _own_connect(
        self,
        ep: Endpoint,
        conn: Connection,
        ip: str,
        port: int,
        fault: ConnectionFault | None,
        wiring: Wiring,
    ) -> int | None:
        """A fresh socket that libcurl connects itself, to the endpoint's reserved port.

        The port is programmed for this connection before libcurl's connect() reaches it:
        closed (``connection_refused``), a full accept queue (``connect_timeout``), full
        until later (``slow_connect``) or listening (the ``"listener"`` transport).
        """
        point = ep._points.get(conn.family)
        if point is None or (point.address, point.port) != (ip, port):
            conn.refused = True
            conn.event("refused: the handle's pins predate the endpoint's reserved port")
            what = f"{fault!r}" if fault is not None else "the listener transport"
            self._record(
                UsageError(
                    f"connection #{conn.id} to {ep.host} needs libcurl's own connect to the "
                    f"endpoint's reserved port for {what}, but its handle was pinned before "
                    f"that was declared and connected to {conn.peer}; declare connection "
                    "faults before the handle's URL is set or its perform() starts"
                )
            )
            return None
        sock = socket.socket(point.family, socket.SOCK_STREAM)
        try:
            if isinstance(fault, (ConnectTimeout, SlowConnect)):
                # The kernel gives up on a SYN after tcp_syn_retries (11 s by default, then
                # ETIMEDOUT, code 7): keep it trying until libcurl's own timeout decides.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, SYN_RETRIES)
            rec = self.ledger.opened(
                SocketRecord(
                    inode=_inode(sock),
                    fd=sock.fileno(),
                    family=conn.family,
                    peer=conn.peer,
                    host=ep.host,
                    url=wiring.url,
                    kind="listener",
                    opened_in=self.label,
                    handle_site=wiring.site,
                    owner=conn,
                    keepalive=wiring.pool_keepalive(),
                    connected=False,  # sockopt answers SOCKOPT_OK: libcurl connects it
                )
            )
            conn.transport = "listener"
            conn._point = point
            with self.loop.lock:
                if isinstance(fault, ConnectionRefused):
                    conn.refused = True  # by the kernel, to libcurl's own connect
                    point.refuse(conn)
                elif isinstance(fault, ConnectTimeout):
                    point.hold(conn)
                elif isinstance(fault, SlowConnect):
                    point.hold_then_serve(conn, rec, ep._serve, fault.seconds)
                else:
                    point.serve(conn, rec, ep._serve)
        except BaseException:
            sock.close()
            raise
        return sock.detach()

    # records and problems --------------------------------------------------------------
    def _record(self, problem: CurlFaultError) -> None:
        with self._lock:
            self._problems.append(problem)

    def socket_closed(self, rec: SocketRecord | None) -> None:
        """libcurl closed a descriptor we handed out: close the server end too."""
        if rec is not None and rec.keepalive is not None:
            # Never drop a handle inside a libcurl callback: check()/close() release it.
            self._graveyard.append(rec.keepalive)
            rec.keepalive = None
        conn = rec.owner if rec is not None else None
        if not isinstance(conn, Connection):
            return
        channel = conn.channel
        if channel is not None and not channel.closed:
            with channel.loop.lock:
                channel.client_closed()
        point = conn._point
        if point is not None and self._loop is not None:
            with self._loop.lock:
                point.forget(conn)  # a held or waiting connect is over
            if channel is None:
                conn.closed_at = time.monotonic()
                conn.event("client closed its end (closesocket) before it was accepted")

    def _release_handles(self) -> None:
        """Drop the handles kept for pooled connections that are now closed or gone."""
        dead, self._graveyard = self._graveyard, []
        del dead
        if self.ledger.unclosed():
            self.ledger.audit()  # marks what pycurl closed in C as closed_by_pycurl
        for rec in self.ledger.records:
            if rec.keepalive is not None and (rec.closes or rec.closed_by_pycurl):
                rec.keepalive = None

    def _callback_error(self, err: CallbackError) -> None:
        self._record(err)

    def _delivered(self, err: CurlFaultError) -> None:
        """``err`` was raised to the caller of perform(); check() need not raise it again."""
        with self._lock:
            if err in self._problems:
                self._problems.remove(err)

    @property
    def problems(self) -> list[CurlFaultError]:
        """Problems found so far that ``check()`` has not raised yet."""
        with self._lock:
            return list(self._problems)

    def trace(self) -> str:
        """Every connection with its timeline, for failure reports."""
        return "\n".join(c.describe() for c in self.connections) or "(no connections)"

    def _wait_idle(self, timeout: float) -> None:
        """Wait (bounded) until every fake server end has written what it has."""
        if self._loop is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [
                c
                for c in self.connections
                if c.channel is not None and not c.channel.closed and c.channel.pending
            ]
            if not busy:
                return
            time.sleep(0.001)

    def check(self) -> None:
        """Raise the first problem found (with all of them listed), or return if there are none.

        Problems: descriptors not closed exactly once (``LeakError``), requests that matched no
        route (``UnmatchedRequest``), malformed requests (``MalformedRequest``), connections
        to hosts no fake serves (``UnexpectedConnection``), errors in callbacks or in the fake
        servers (``CallbackError``, ``ServerError``). Each problem is raised once.
        """
        __tracebackhide__ = True
        self._release_handles()
        report = self.ledger.audit()
        if report.leaked:
            gc.collect()  # a handle in a reference cycle closes its sockets when collected
            report = self.ledger.audit()
        problems: list[CurlFaultError] = []
        for rec in report.leaked:
            if rec.reported:
                continue
            stack = rec.handle_site.format() if isinstance(rec.handle_site, Site) else ""
            problems.append(
                LeakError(
                    f"descriptor never closed: {rec.describe()}; close the pycurl handle "
                    "(curl.close()) or let it go out of scope before the test ends"
                    + (f"\nthe handle was made at:\n{stack}" if stack else "")
                )
            )
        for rec in report.double_closed:
            if rec.reported:
                continue
            problems.append(LeakError(f"descriptor closed {rec.closes} times: {rec.describe()}"))
        for text in report.unknown_closes:
            problems.append(LeakError(text))
        self.ledger.forget_unknown_closes()
        for rec in report.leaked + report.double_closed:
            rec.reported = True  # raise each problem once
        if self._loop is not None:
            # A shared loop serves one test at a time per process: its errors are ours.
            with self._loop.lock:
                loop_errors = list(self._loop.errors)
                self._loop.errors.clear()
            for exc in loop_errors:
                err = ServerError(f"the fake network's loop raised {exc!r}")
                err.__cause__ = exc
                problems.append(err)
        with self._lock:
            problems = self._problems + problems
            self._problems = []
        if not problems:
            return
        first = problems[0]
        if len(problems) > 1 or self.connections:
            lines = [f"{first}"]
            if len(problems) > 1:
                lines.append(f"... and {len(problems) - 1} more problem(s):")
                for i, p in enumerate(problems[1:], 2):
                    lines.append(f"  {i}. {type(p).__name__}: {p}")
            lines.append("connection trace:")
            lines.append(self.trace())
            combined = type(first)("\n".join(lines))
            combined.problems = problems
            combined.__cause__ = first.__cause__
            raise combined
        raise first

    # teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Close every server end; stop the loop if this network started it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        _intercept.uninstall_network(self)
        self._release_handles()
        # Connections still open in a multi/share pool keep their handle for good.
        KEPT_FOREVER.extend(r.keepalive for r in self.ledger.unclosed() if r.keepalive is not None)
        points = [p for ep in self.endpoints for p in ep._points.values()] + self._retired
        loop = self._loop
        if loop is None:
            for point in points:
                point.close()  # reserved, never used
            return
        with loop.lock:
            for point in points:
                point.close()
            for conn in self.connections:
                ch = conn.channel
                if ch is not None and not ch.closed:
                    ch.close()
        if self._own_loop:
            loop.stop()


def _describe_url(url: str) -> tuple[str, str]:
    """("host:port (url ...)", "`net.http('host')`") for an unexpected connection's report."""
    from urllib.parse import urlsplit

    if not url:
        return "an unknown host (the handle's URL was set outside curlfault)", "a fake for it"
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return f"the host of {url}", "a fake for it"
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = port or default
    kind = "https" if scheme == "https" else "http"
    extra = "" if port in (None, default) else f", {port}"
    return f"{host}:{port or '?'} (url {url})", f"`net.{kind}({host!r}{extra})`"


def _inode(sock: socket.socket) -> int:
    import os

    return os.fstat(sock.fileno()).st_ino


FakeNetwork.__module__ = "curlfault"
