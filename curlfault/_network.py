"""``FakeNetwork``: endpoints by host and port, routing, records, and the final check.

Every fake host gets an alias address of its own in 127.77.0.0/16. Routed handles pin the
host to that alias with CONNECT_TO and RESOLVE, so libcurl never asks a resolver about it,
and the opensocket callback finds the endpoint by the alias it is asked to connect to. In
strict mode a last wildcard CONNECT_TO entry sends every other host to a sink address that
the opensocket callback refuses and reports. The opensocket decision itself is in
``_connect.py``.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Iterable
from contextlib import ContextDecorator
from typing import TYPE_CHECKING, Any

import pycurl

from . import _connect, _intercept
from ._errors import (
    CallbackError,
    CurlFaultError,
    ServerError,
    UnexpectedConnection,
    UnusedDeclaration,
    UsageError,
)
from ._http import Request
from ._ledger import KEPT_FOREVER, Ledger, LedgerReport, Site, SocketRecord
from ._listener import ConnectPoint
from ._loop import Loop
from ._problems import combined, ledger_problems
from ._track_report import is_ip, is_localhost, other_spelling
from ._unused import unused_declarations
from ._wiring import SINK_IP, Wiring

if TYPE_CHECKING:
    from ._tls import ClientCert


from ._attach import attach_handle
from ._endpoints import (
    Connection,
    Endpoint,
    HttpEndpoint,
    RefusingEndpoint,
)
from ._names import alias_address, check_host, check_port

__all__ = ["Connection", "Endpoint", "FakeNetwork", "HttpEndpoint"]


class FakeNetwork:
    """A set of fake hosts that pycurl handles are routed to.

    ``strict=True`` (the default) refuses and reports every connection to a host no fake
    serves. Use it as a context manager; leaving the block closes the network and, when the
    block raised nothing, runs ``check()``.
    """

    # What the hints in curlfault's errors call this network ("declare it with
    # net.https('api.test')"); the pytest fixture sets "curlfault", its own name.
    spelled = "net"

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
        self._ca_pem_bytes: bytes | None = None
        # The declarations check(all_used=True) has raised (see _unused): each raised once.
        self._unused_raised: set[tuple[Any, ...]] | None = None
        self.ledger = Ledger()
        self.requests: list[Request] = []
        self.connections: list[Connection] = []
        self.endpoints: list[Endpoint] = []
        self._by_alias: dict[str, Endpoint] = {}
        self._by_point: dict[tuple[str, int], Endpoint] = {}  # reserved (address, port)
        self._retired: list[ConnectPoint] = []
        self._by_key: dict[tuple[str, int | None], Endpoint] = {}
        # Problems not raised yet. A deque, so no lock is needed to add one: a problem can
        # be recorded from a close callback that a garbage collection runs while this
        # thread holds the network's lock.
        self._problems: deque[CurlFaultError] = deque()
        self._lock = threading.Lock()
        # The wirings of routed handles, weakly (a list of references, pruned as it grows:
        # a WeakSet costs a Python call to add each and another when each one dies).
        self._wirings: list[weakref.ref[Any]] = []
        self._prune_at = 64
        self._pruning = threading.Lock()
        self._graveyard: list[object] = []  # handles to release outside any callback
        self.generation = 0
        self.closed = False
        self._pins: tuple[list[str], list[str]] | None = None
        self.has_tls = False
        # Leak reports print the handle's stack relative to this directory (the pytest
        # plugin sets the rootdir); absolute paths otherwise.
        self._stack_root: str | None = None

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
    def http(
        self, host: str, port: int = 80, *, transport: str = "socketpair", http2: bool = False
    ) -> HttpEndpoint:
        """An HTTP/1.1 endpoint at ``host:port``.

        ``http2=True`` also serves HTTP/2 with prior knowledge (h2c) to a client that opens
        with the HTTP/2 preface (``HTTP_VERSION = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE``).
        """
        ep = HttpEndpoint(
            self,
            check_host(host, self.spelled, "http"),
            check_port(port),
            self._alias(),
            transport,
            http2=_flag(http2),
        )
        return self._add(ep)  # type: ignore[return-value]

    def https(
        self,
        host: str,
        port: int = 443,
        *,
        transport: str = "socketpair",
        http2: bool = False,
        client_cert: str | None = None,
        tls_versions: tuple[str | None, str | None] = (None, None),
        alpn: tuple[str, ...] | None = None,
    ) -> HttpEndpoint:
        """An HTTPS endpoint (HTTP/1.1, or HTTP/2 too) whose certificate ``net.ca`` signed.

        ``http2=True`` offers ALPN ``h2`` and ``http/1.1`` and serves whichever the client
        negotiates, from the same routes. ``client_cert="required"`` (or ``"optional"``)
        asks every client for a certificate that ``net.ca`` issued (see ``client_cert()``);
        ``tls_versions=(min, max)`` bounds the TLS versions served ("TLSv1.2", ...; None for
        no bound); ``alpn`` overrides the protocols offered by ALPN, in order of preference
        (empty: no ALPN).
        """
        from ._tls import TlsServerConfig

        host = check_host(host, self.spelled, "https")
        if alpn is None:
            alpn = ("h2", "http/1.1") if _flag(http2) else ("http/1.1",)
        elif not isinstance(alpn, (tuple, list)) or not all(isinstance(p, str) for p in alpn):
            raise UsageError(
                f"alpn={alpn!r} is not a tuple of protocol names; give one like "
                "('http/1.1',), or () for no ALPN"
            )
        elif "h2" in alpn and not _flag(http2):
            # The client would speak HTTP/2 to a server that serves HTTP/1.1 only (16).
            raise UsageError(
                f"alpn={tuple(alpn)!r} offers 'h2' on an endpoint that serves HTTP/1.1 only; "
                f"add http2=True ({self.spelled}.https({host!r}, http2=True, alpn=...)) to serve "
                "HTTP/2, "
                "or leave 'h2' out"
            )
        tls = TlsServerConfig.for_host(
            self.ca, host, tuple(alpn), client_cert=client_cert, versions=tls_versions
        )
        self.has_tls = True
        ep = HttpEndpoint(
            self, host, check_port(port), self._alias(), transport, tls=tls, http2=http2
        )
        return self._add(ep)  # type: ignore[return-value]

    def client_cert(self, name: str = "client.curlfault.test") -> ClientCert:
        """A client certificate for ``name`` issued by ``net.ca``, for mutual TLS."""
        from ._tls import ClientCert

        if not isinstance(name, str) or not name:
            raise UsageError(f"client_cert(name=...) must be a non-empty str, got {name!r}")
        return ClientCert.issue(self.ca, name)

    def refuse(self, host: str, port: int | None = None) -> Endpoint:
        """Refuse every connection to ``host`` (on every port when ``port`` is None).

        Without a port, an endpoint declared for one port of the same host still serves
        that port: the exact port wins, whatever the order of declaration.
        """
        ep = RefusingEndpoint(
            self,
            check_host(host, self.spelled, "refuse"),
            None if port is None else check_port(port),
            self._alias(),
            "socketpair",
        )
        return self._add(ep)

    def _alias(self) -> str:
        n = len(self.endpoints)
        if n >= 65000:
            raise UsageError("a FakeNetwork holds at most 65000 endpoints")
        return alias_address(n)

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
        for ref in list(self._wirings):
            found = ref()
            # A routed handle's current wiring: attach() to another network replaces it.
            wiring = found if isinstance(found, Wiring) else getattr(found, "_cf_wiring", None)
            if isinstance(wiring, Wiring) and wiring.network is self:
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

    def _ca_pem(self) -> bytes:
        """The CA certificate in PEM, as every routed handle's CAINFO_BLOB: made once (a
        trustme CA serializes its certificate again each time it is asked)."""
        pem = self._ca_pem_bytes
        if pem is None:
            pem = self._ca_pem_bytes = self.ca.cert_pem.bytes()
        return pem

    def pins(self) -> tuple[list[str], list[str]]:
        """(RESOLVE, CONNECT_TO) lists for routed handles."""
        if self._pins is None:
            resolve: list[str] = []
            connect_to: list[str] = []
            # Exact ports before wildcard ports, in declaration order.
            declared = {ep.host for ep in self.endpoints}
            # "api.test." is the DNS name "api.test": a URL may spell a host either way, and
            # libcurl matches its pins as spelled. The other spelling gets a CONNECT_TO entry
            # (its target needs no RESOLVE entry of its own), after every declared spelling's.
            spelled: list[str] = []
            for ep in sorted(self.endpoints, key=lambda e: e.port is None):
                r, c = ep.pin_entries()
                resolve += r
                connect_to.append(c)
                other = None if is_localhost(ep.host.rstrip(".")) else other_spelling(ep.host)
                if other is not None and other not in declared:
                    spelled.append(other + c[len(ep.host) :])
            connect_to += spelled
            if not self.strict:
                # A fake name's other ports go to the sink too (refused and reported), never
                # to the resolver and the real network: the strict sink entry would cover
                # them, and a lax network has none. After every host's own entries. Not IP
                # literals and localhost: no resolver is asked for them, and a lax network
                # lets a test reach a real local server on another port.
                hosts = dict.fromkeys(ep.host for ep in self.endpoints)  # declaration order
                names = [h for h in hosts if not (is_ip(h) or is_localhost(h.rstrip(".")))]
                names += [o for h in names if (o := other_spelling(h)) and o not in declared]
                connect_to += [f"{h}::{SINK_IP}:9" for h in names]
            self._pins = (resolve, connect_to)
        return self._pins

    # routing handles -------------------------------------------------------------------
    def attach(self, curl: pycurl.Curl, *, trust: bool | None = None) -> pycurl.Curl:
        """Route an existing handle through this network; returns it."""
        return attach_handle(self, curl, self.trust if trust is None else trust)

    def _wire(self, curl: pycurl.Curl, site: Site) -> Wiring:
        wiring = Wiring(self, site, self.trust)
        wiring.install(curl)
        return wiring

    def _serves_host(self, host: str) -> bool:
        """Whether an endpoint serves ``host`` (as ``check_host()`` spells it), on any port."""
        other = other_spelling(host)
        return any(ep.host == host or ep.host == other for ep in self.endpoints)

    def _stray_connection(self, text: str, site: Site) -> None:
        """A handle of another, closed network connected while this one intercepts."""
        self._record(UnexpectedConnection(text))

    def _register(self, ref: weakref.ref[Any]) -> None:
        """Keep ``ref`` (to a routed handle, or to a plain handle's wiring) for ``_repin``."""
        wirings = self._wirings
        wirings.append(ref)  # one step under the GIL: no lock to wait on
        # Pruned by one thread at a time, the first n entries replaced in one step: appends
        # made meanwhile land past n, so none is lost. Never waits: a handle made in a
        # finalizer that runs while this thread prunes just leaves the pruning for later.
        if len(wirings) > self._prune_at and self._pruning.acquire(blocking=False):
            try:
                n = len(wirings)
                wirings[:n] = [r for r in wirings[:n] if r() is not None]
                self._prune_at = max(64, 2 * len(wirings))
            finally:
                self._pruning.release()

    def intercept(self) -> Intercepting:
        """Route every ``pycurl.Curl()`` made inside the block through this network.

        A context manager (``with net.intercept(): ...``), also usable as a decorator.
        """
        return Intercepting(self)

    # the opensocket decision (called from the wiring) ----------------------------------
    @property
    def loop(self) -> Loop:
        loop = self._loop
        if loop is None:
            with self._lock:  # threads connecting at once must share one loop
                if self._loop is None:
                    self._loop = Loop(name="curlfault-loop")
                loop = self._loop
        if not loop.running:
            loop.start()  # one start wins (Loop.start locks)
        return loop

    def open_socket(self, family: int, ip: str, port: int, wiring: Wiring) -> int | None:
        """A descriptor for libcurl, or None to refuse. Runs in the thread calling perform."""
        return _connect.open_socket(self, family, ip, port, wiring)

    # records and problems --------------------------------------------------------------
    def _record(self, problem: CurlFaultError) -> None:
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
        if self._graveyard:
            dead, self._graveyard = self._graveyard, []
            del dead
        ledger = self.ledger
        if not ledger.holds_handles:
            return
        if ledger.has_unclosed:
            self._audit()  # marks what pycurl closed in C as closed_by_pycurl
        for rec in ledger.records:
            if rec.keepalive is not None and (rec.closes or rec.closed_by_pycurl):
                rec.keepalive = None

    def _audit(self) -> LedgerReport:
        """``ledger.audit()``, and a trace line for each descriptor it finds that pycurl
        closed in C (a CurlMulti or CurlShare closed with the connection in its cache)."""
        report = self.ledger.audit()
        for rec in report.closed_by_pycurl:
            conn = rec.owner
            if isinstance(conn, Connection):
                conn.event(
                    "found closed: pycurl closed it in C without the close callback (its "
                    "CurlMulti or CurlShare was closed with the connection cached); not a leak"
                )
        return report

    def _callback_error(self, err: CallbackError) -> None:
        self._record(err)

    def _delivered(self, err: CurlFaultError) -> None:
        """``err`` was raised to the caller of perform(); check() need not raise it again."""
        try:
            self._problems.remove(err)
        except ValueError:
            pass  # taken by check() meanwhile, or never recorded

    @property
    def problems(self) -> list[CurlFaultError]:
        """Problems found so far that ``check()`` has not raised yet."""
        return list(self._problems)

    def trace(self) -> str:
        """Every connection with its timeline, for failure reports."""
        return "\n".join(c.describe() for c in self.connections) or _NO_CONNECTIONS

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

    def unused(self) -> list[str]:
        """What was declared and never used, one line each: connection faults that no
        connection took, route steps that no request reached (a route's last step repeats,
        so it counts as used once reached), routes never requested, WebSocket routes never
        connected."""
        return [text for _, text in unused_declarations(self.endpoints)]

    def check(self, *, leaks: bool = True, all_used: bool = False) -> None:
        """Raise the first problem found (with all of them listed), or return if there are none.

        Problems: descriptors not closed exactly once (``LeakError``), requests that matched no
        route (``UnmatchedRequest``), malformed requests (``MalformedRequest``), connections
        to hosts no fake serves (``UnexpectedConnection``), errors in callbacks or in the fake
        servers (``CallbackError``, ``ServerError``). Each problem is raised once.
        ``leaks=False`` leaves out descriptors still open (a handle kept on purpose); double
        and unknown closes are still problems. ``all_used=True`` adds an
        ``UnusedDeclaration`` for each line of ``unused()`` not raised before.
        """
        __tracebackhide__ = True
        self._release_handles()
        report = self._audit()
        if report.leaked and leaks:
            gc.collect()  # a handle in a reference cycle closes its sockets when collected
            report = self._audit()
        if not leaks:
            report.leaked = []
        problems: list[CurlFaultError] = []
        if not report.ok:
            problems += ledger_problems(report, self._stack_root)
            self.ledger.forget_unknown_closes()
        loop = self._loop
        if loop is not None and loop.errors:
            # A shared loop serves one test at a time per process: its errors are ours.
            with loop.lock:
                loop_errors = list(loop.errors)
                loop.errors.clear()
            for exc in loop_errors:
                err = ServerError(f"the fake network's loop raised {exc!r}")
                err.__cause__ = exc
                problems.append(err)
        if all_used:
            raised = self._unused_raised
            if raised is None:
                raised = self._unused_raised = set()
            for items, text in unused_declarations(self.endpoints):
                if not items <= raised:  # a declaration not raised before
                    raised |= items
                    problems.append(UnusedDeclaration(text))
        taken: list[CurlFaultError] = []
        queue = self._problems
        while queue:  # each popleft() is one step: a problem added meanwhile is taken or kept
            taken.append(queue.popleft())
        problems = taken + problems
        if not problems:
            return
        raise combined(problems, self.trace, with_trace=bool(self.connections))

    # teardown --------------------------------------------------------------------------
    def __del__(self) -> None:
        # Like an unclosed file: its own loop thread and descriptors would stay for good.
        if not getattr(self, "closed", True):
            warnings.warn(
                f"unclosed {type(self).__name__} {self.label or hex(id(self))}: its loop "
                "thread and descriptors stay until the process ends; call close(), or use "
                "`with FakeNetwork() as net:`",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    def close(self) -> None:
        """Close every server end; stop the loop if this network started it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        _intercept.uninstall_network(self)
        self._release_handles()
        # Connections still open in a multi/share pool keep their handle for good.
        if self.ledger.holds_handles:
            KEPT_FOREVER.extend(
                r.keepalive for r in self.ledger.unclosed() if r.keepalive is not None
            )
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


class Intercepting(ContextDecorator):
    """What ``FakeNetwork.intercept()`` returns: routes ``pycurl.Curl()`` while entered."""

    def __init__(self, network: FakeNetwork) -> None:
        self._network = network
        self._tokens: list[int] = []

    def __enter__(self) -> FakeNetwork:
        self._tokens.append(_intercept.install(self._network))
        return self._network

    def __exit__(self, *exc: object) -> None:
        _intercept.uninstall(self._tokens.pop())

    def _recreate_cm(self) -> Intercepting:
        # As a decorator, one per call: calls overlapping in threads each undo their own.
        return Intercepting(self._network)


# The trace of a network that saw no connection: the usual reasons a transfer bypassed it.
_NO_CONNECTIONS = (
    "(no connections: no handle routed through this network connected. A handle made before "
    "it intercepted (by a module- or session-scoped fixture, at import time, or from a "
    "pycurl.Curl class taken earlier) is not routed unless attach()ed, and reset() on a "
    "plain attached handle undoes attach(); such a handle's fake host name goes to the "
    "system resolver (CURLcode 6))"
)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"http2 must be True or False, got {value!r}")
    return value


FakeNetwork.__module__ = "curlfault"
Intercepting.__module__ = "curlfault"
