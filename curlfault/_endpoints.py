"""Fake endpoints: what answers one host (and port). Each connection's record is a
``Connection`` (``_connection.py``).

An endpoint owns its alias address, its connection-fault sequences (per address family when
asked), the reserved loopback port libcurl connects to by itself for connect faults and the
``listener`` transport, and, for HTTP, its routes and request records. ``FakeNetwork``
decides per connection; the endpoint says what the n-th connection meets.
"""

from __future__ import annotations

import difflib
import errno
from typing import TYPE_CHECKING

from ._connection import Connection
from ._errors import (
    UnmatchedRequest,
    UsageError,
)
from ._http import TOKEN, Request, Response, Route, mark_incomplete
from ._listener import ConnectPoint, release_delay, reserve_port, syn_schedule
from ._names import SYNTHETIC_SUFFIX, alias6_of, check_path
from ._plan import flatten
from ._tls import TlsLayer
from ._transports import ENDPOINT_TRANSPORTS, Channel
from ._websocket import WebSocketRoute
from .faults import (
    Compose,
    ConnectionFault,
    ConnectionRefused,
    ConnectTimeout,
    Fault,
    H2Fault,
    Refuse,
    Reset,
    SlowConnect,
    StreamFault,
    TlsFault,
    UploadFault,
    _misuse_hint,
)
from .protocols.http1 import Http1Server

if TYPE_CHECKING:
    from ._network import FakeNetwork
    from ._tls import TlsServerConfig

__all__ = ["SYNTHETIC_SUFFIX", "Connection", "Endpoint", "HttpEndpoint", "RefusingEndpoint"]

FAMILIES = ("ipv6", "ipv4")  # happy eyeballs order: libcurl tries the first one first
# Faults met by libcurl's own connect() to a reserved loopback port.
_SELF_CONNECT = (ConnectionRefused, ConnectTimeout, SlowConnect)


class _Sequence:
    """One list of connection faults and how many connections have taken from it."""

    __slots__ = ("faults", "taken")

    def __init__(self, faults: tuple[ConnectionFault | None, ...]) -> None:
        self.faults = faults
        self.taken = 0

    def take(self) -> ConnectionFault | None:
        i, self.taken = self.taken, self.taken + 1
        return self.faults[i] if i < len(self.faults) else None


_MATCHED_MAX = 512  # remembered match() answers per endpoint (targets with queries vary)


class Endpoint:
    """A host (and port) that the fake network answers for."""

    scheme = "tcp"
    refuses = False  # net.refuse(): no connection is ever served

    def __init__(
        self, network: FakeNetwork, host: str, port: int | None, alias: str, transport: str
    ) -> None:
        self.network = network
        self.host = host
        self.port = port
        self.alias = alias
        if transport not in ENDPOINT_TRANSPORTS:
            raise UsageError(
                f"transport={transport!r} is not known; "
                f"use one of {', '.join(map(repr, ENDPOINT_TRANSPORTS))}"
            )
        self.transport = transport
        self.connections: list[Connection] = []
        # Fault sequences: None for every connection, "ipv4"/"ipv6" for one family only.
        self._faults: dict[str | None, _Sequence] = {None: _Sequence(())}
        self.dual_stack = False
        self._points: dict[str, ConnectPoint] = {}  # family -> the port libcurl connects to
        self._needs_tcp = False
        # Whether any canned response declared an upload fault: until one does, a request
        # needs no look-ahead at the step that will answer it (the keep-alive hot path).
        self._upload_faults_declared = False

    def _check_open(self) -> None:
        """Declarations on an endpoint of a closed network would never serve: say so."""
        if self.network.closed:
            raise UsageError(
                f"{self!r} belongs to a FakeNetwork that is closed, so nothing declared on it "
                "now would ever serve; make a new network and declare the endpoint there"
            )

    def connection_faults(
        self, *faults: ConnectionFault | None, family: str | None = None
    ) -> Endpoint:
        """The n-th connection from now gets the n-th fault (None: healthy).

        Connections after the last fault are healthy. With ``family="ipv6"`` or ``"ipv4"``
        the faults apply to that address family's connections only, and the host resolves
        to an IPv6 and an IPv4 address from then on, as a dual-stack server does, so
        libcurl's happy eyeballs meets them. Calling it again replaces that family's list.
        Returns the endpoint, to chain.
        """
        self._check_open()
        if family is not None and family not in FAMILIES:
            raise UsageError(
                f"family={family!r} is not known; use one of "
                f"{', '.join(map(repr, FAMILIES))}, or None for every connection"
            )
        for f in faults:
            if isinstance(f, Fault) and not f.modelled:
                raise NotImplementedError(
                    f"{f!r} is not modelled yet: curlfault cannot produce it faithfully"
                )
            if f is not None and not isinstance(f, ConnectionFault):
                if isinstance(f, StreamFault):
                    hint = " (a stream fault goes to respond(..., fault=...))"
                elif isinstance(f, (list, tuple)):
                    hint = "; pass the faults as separate arguments: connection_faults(*faults)"
                else:
                    hint = _misuse_hint(f)
                raise UsageError(f"{f!r} is not a connection fault{hint}")
            if isinstance(f, SlowConnect):
                release_delay(f.seconds, syn_schedule())  # beyond the kernel's retries: raises
            if isinstance(f, TlsFault):
                f.check_endpoint(self)  # a plain HTTP endpoint: UsageError
        if any(isinstance(f, TlsFault) and f.needs_tcp for f in faults):
            self._needs_tcp = self._needs_tcp or self.transport == "socketpair"
        before = self.pin_entries()
        previous = (self._faults.get(family), self.dual_stack)
        self._faults[family] = _Sequence(faults)
        self.dual_stack = self.dual_stack or family is not None
        try:
            self._reserve_points()
        except BaseException:
            sequence, self.dual_stack = previous
            if sequence is None:
                del self._faults[family]
            else:
                self._faults[family] = sequence
            raise
        if self.pin_entries() != before:
            self.network._repin()
        return self

    def _take_connection_fault(self, family: str) -> ConnectionFault | None:
        """The fault of the connection being made now, in ``family`` ("ipv4" or "ipv6")."""
        return self._faults.get(family, self._faults[None]).take()

    def _reserve_points(self) -> None:
        """Reserve the port libcurl connects to itself, in every family that needs it.

        A family needs it when its connections are served by a listener, or one of its
        faults is met by libcurl's own connect. Both families use one port number, since
        CONNECT_TO names one target port; a point, once made, stays until the network closes.
        """
        wanted = [
            family
            for family in FAMILIES
            if (family == "ipv4" or self.dual_stack)
            and family not in self._points
            and (
                self.transport == "listener"
                or any(
                    isinstance(f, _SELF_CONNECT)
                    for f in self._faults.get(family, self._faults[None]).faults
                )
            )
        ]
        if not wanted:
            return
        net = self.network
        if net.closed:
            raise UsageError("this FakeNetwork is closed; make a new one")
        address = {"ipv4": self.alias, "ipv6": "::1"}
        port = next(iter(self._points.values())).port if self._points else None
        try:
            try:
                socks = reserve_port([address[f] for f in wanted], port)
            except OSError as exc:
                if port is None or exc.errno != errno.EADDRINUSE:
                    raise
                # Taken on the new address: every family moves to a fresh port together.
                moved = [*self._points, *wanted]
                socks = reserve_port([address[f] for f in moved])
                net._retire(self._points.values())
                self._points, wanted = {}, moved
        except OSError as exc:
            where = ", ".join(address[f] for f in wanted)
            raise UsageError(
                f"{self!r} needs a loopback port that libcurl connects to itself on {where}, "
                f"and none could be reserved: {exc}"
                + (" (IPv6 faults need the IPv6 loopback, ::1)" if "ipv6" in wanted else "")
            ) from exc
        for family, sock in zip(wanted, socks, strict=True):
            self._points[family] = ConnectPoint(sock, lambda: net.loop, net._record)
        net._by_point.update({(p.address, p.port): self for p in self._points.values()})

    def _note_fault(self, fault: StreamFault | None) -> None:
        if fault is None:
            return  # most steps: nothing to note
        faults = fault.faults if isinstance(fault, Compose) else (fault,)
        h2_only = [f for f in faults if isinstance(f, H2Fault)]
        if h2_only and not getattr(self, "http2", False):
            raise UsageError(
                f"{h2_only[0]!r} is an HTTP/2 fault, and {self!r} serves HTTP/1.1 only; "
                f"declare it with http2=True ({self.network.spelled}.https(host, http2=True), "
                f"or {self.network.spelled}.http(host, http2=True) for h2c)"
            )
        if any(isinstance(f, UploadFault) for f in flatten(fault)):
            self._upload_faults_declared = True
        if any(isinstance(f, Reset) for f in faults) and self.transport == "socketpair":
            self._needs_tcp = True  # RST needs TCP whatever the configured transport

    def _serve(self, channel: Channel, conn: Connection) -> None:
        raise NotImplementedError  # pragma: no cover - every concrete endpoint serves

    @property
    def requests(self) -> list[Request]:
        return []

    @property
    def alias6(self) -> str:
        """The IPv6 address of a dual-stack endpoint that libcurl never connects to itself.

        A unique local address (``fdcf::N``): libcurl only hands it to the opensocket
        callback. When libcurl must connect over IPv6 itself, the address is ``::1``.
        """
        return alias6_of(self.alias)

    def pin_entries(self) -> tuple[list[str], str]:
        """(RESOLVE entries, CONNECT_TO entry) that route this host to its addresses.

        One address: CONNECT_TO names the alias. Dual-stack: CONNECT_TO names a synthetic
        host (``cf-N.curlfault.invalid``) that RESOLVE maps to an IPv6 and an IPv4 address,
        IPv6 first, so no resolver is ever asked. With a reserved port, CONNECT_TO sends
        libcurl to it instead of the declared port.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is None:
            return [], f"{host}::{self.alias}:"
        resolve = [f"{host}:{self.port}:{self.alias}"]
        target = next(iter(self._points.values())).port if self._points else self.port
        if not self.dual_stack:
            return resolve, f"{host}:{self.port}:{self.alias}:{target}"
        name = f"cf-{self.alias6.rsplit(':', 1)[1]}{SYNTHETIC_SUFFIX}"
        v6 = "::1" if "ipv6" in self._points else self.alias6
        resolve.append(f"{name}:{target}:[{v6}],{self.alias}")
        return resolve, f"{host}:{self.port}:{name}:{target}"

    def __repr__(self) -> str:
        port = "*" if self.port is None else self.port
        return f"<{type(self).__name__} {self.host}:{port}>"


class RefusingEndpoint(Endpoint):
    """``net.refuse(host)``: every connection is refused (CURLcode 7)."""

    refuses = True

    def connection_faults(
        self, *faults: ConnectionFault | None, family: str | None = None
    ) -> Endpoint:
        for f in faults:
            if isinstance(f, TlsFault):
                f.check_endpoint(self)  # the TLS fault's own message
        raise UsageError(
            f"{self!r} refuses every connection, so connection faults would never apply; "
            f"declare the host with {self.network.spelled}.http({self.host!r}) and give it "
            "connection_faults()"
        )

    def _take_connection_fault(self, family: str) -> ConnectionFault | None:
        return Refuse()


class HttpEndpoint(Endpoint):
    """An HTTP/1.1 server (``net.http``) or HTTPS server (``net.https``)."""

    def __init__(
        self,
        network: FakeNetwork,
        host: str,
        port: int,
        alias: str,
        transport: str,
        tls: TlsServerConfig | None = None,
        http2: bool = False,
    ) -> None:
        super().__init__(network, host, port, alias, transport)
        self.scheme = "https" if tls is not None else "http"
        self.tls = tls
        self.http2 = http2  # also serve HTTP/2: by ALPN over TLS, by its preface (h2c)
        self.routes: list[Route] = []
        # match()'s answers by (method, target), for the route list they were found in.
        self._matched: tuple[int, Route | None, dict[tuple[str, str], Route | None]] = (
            0,
            None,
            {},
        )
        self._requests: list[Request] = []
        self.websockets: list[WebSocketRoute] = []

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def pin(self) -> str | None:
        """The ``PINNEDPUBLICKEY`` value (``sha256//...``) of the key this HTTPS endpoint
        serves; None for plain HTTP."""
        return self.tls.pin if self.tls is not None else None

    @property
    def requests(self) -> list[Request]:
        """Every request this endpoint received, in order (matched or not)."""
        return self._requests

    def keep(self, request: Request) -> None:
        """Record ``request`` here and on the network without dispatching it (refused,
        unparsable or cut short). ``dispatch()`` records inline: it is every request's path."""
        self._requests.append(request)
        self.network.requests.append(request)

    def keep_incomplete(self, request: Request, body: bytes, who: str) -> None:
        """Record ``request``, whose body stopped after ``body`` (see ``mark_incomplete``)."""
        mark_incomplete(request, body, who)
        self.keep(request)

    def route(self, method: str, path: str) -> Route:
        """The route for ``method`` (or ``"*"``) and ``path``; made on first use."""
        self._check_open()
        if not isinstance(method, str) or not method:
            raise UsageError(f"method must be a non-empty str, got {method!r}")
        if method != "*" and not TOKEN.fullmatch(method):
            raise UsageError(
                f"method {method!r} is not a token (RFC 9110 9.1), so no request can carry "
                "it; use a name such as 'GET' or 'PURGE', or '*' for every method"
            )
        check_path(path)
        method = method.upper()
        for r in self.routes:
            if r.method == method and r.path == path:
                return r
        r = Route(self, method, path)
        self.routes.append(r)
        return r

    def get(self, path: str) -> Route:
        return self.route("GET", path)

    def post(self, path: str) -> Route:
        return self.route("POST", path)

    def put(self, path: str) -> Route:
        return self.route("PUT", path)

    def patch(self, path: str) -> Route:
        return self.route("PATCH", path)

    def delete(self, path: str) -> Route:
        return self.route("DELETE", path)

    def head(self, path: str) -> Route:
        return self.route("HEAD", path)

    def options(self, path: str) -> Route:
        return self.route("OPTIONS", path)

    def websocket(self, path: str) -> WebSocketRoute:
        """The WebSocket route at ``path`` (``ws://``, or ``wss://`` on ``net.https``);
        made on first use. Script it with ``send``, ``echo``, ``close``, ``fault``..."""
        self._check_open()
        check_path(path, star=False)
        for r in self.websockets:
            if r.path == path:
                return r
        # Import wsproto now, in the test's thread, not in the first handshake (~40 ms).
        from .protocols import websocket as _websocket  # noqa: F401

        r = WebSocketRoute(self, path)
        self.websockets.append(r)
        return r

    def websocket_route(self, request: Request) -> WebSocketRoute | None:
        """The WebSocket route whose path ``request`` targets, if any."""
        for r in self.websockets:
            if r.path == request.path:
                return r
        return None

    def _serve(self, channel: Channel, conn: Connection) -> None:
        if self.http2:
            self._serve_h2(channel, conn)
        elif self.tls is not None:
            layer = TlsLayer(channel, self.tls, conn)
            layer.start(Http1Server(self, layer, conn))
        else:
            channel.start(Http1Server(self, channel, conn))

    def _serve_h2(self, channel: Channel, conn: Connection) -> None:
        from .protocols.http2 import Http2Server, Sniffer

        if self.tls is not None:
            layer = TlsLayer(channel, self.tls, conn)
            layer.start_negotiated(
                lambda alpn: (
                    Http2Server(self, layer, conn)
                    if alpn == "h2"
                    else Http1Server(self, layer, conn)
                )
            )
        else:
            channel.start(
                Sniffer(
                    lambda: Http2Server(self, channel, conn),
                    lambda: Http1Server(self, channel, conn),
                )
            )

    def match(self, request: Request) -> Route | None:
        """The route that answers ``request``: the most specific one.

        A path with its query beats the bare path, an exact method beats ``"*"`` (a GET
        route also answers HEAD); ties go to the route declared first.
        """
        # Answers are kept for the route list they were found in: the same length and the
        # same last route. Routes are added by route(); the list is the user's to read (an
        # entry replaced in place, not at the end, is not noticed).
        routes = self.routes
        n = len(routes)
        last = routes[n - 1] if n else None
        seen, seen_last, matched = self._matched
        if seen != n or seen_last is not last:
            matched = {}
            self._matched = (n, last, matched)
        key = (request.method, request.target)
        found = matched.get(key, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        best: Route | None = None
        best_rank = -1
        for r in routes[:n]:
            if r.matches(request):
                rank = 2 * ("?" in r.path) + (r.method == request.method)
                if rank > best_rank:
                    best, best_rank = r, rank
        if len(matched) < _MATCHED_MAX:
            matched[key] = best
        return best

    def dispatch(self, request: Request, conn: Connection) -> Response:
        """Record ``request`` and take the next step of its route (loop or pump thread)."""
        self._requests.append(request)
        self.network.requests.append(request)
        best = self.match(request)
        if best is None:
            known = ", ".join(
                [f"{r.method} {r.path}" for r in self.routes]
                + [f"WebSocket {w.path}" for w in self.websockets]
            )
            known = known or "none"
            if request.method == "PRI" and request.target == "*":
                default = 443 if self.scheme == "https" else 80
                port = "" if self.port == default else f", {self.port}"
                text = (
                    f"PRI * to {self.url} is the HTTP/2 connection preface: the client speaks "
                    "HTTP/2 with prior knowledge (CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE), and "
                    "this endpoint serves HTTP/1.1 only; declare it with "
                    f"{self.network.spelled}.{self.scheme}({self.host!r}{port}, http2=True), "
                    "or make the client "
                    "use HTTP/1.1"
                )
            else:
                text = (
                    f"{request.method} {request.target} to {self.url} matched no route "
                    f"(known routes: {known}); add {self._hint(request)}"
                )
            self.network._record(UnmatchedRequest(text))
            body = (
                f"curlfault: no route for {request.method} {request.path}\nknown routes: {known}\n"
            )
            return Response.make(404, body=body, headers={"Content-Type": "text/plain"})
        request.matched = True
        response = best.next_response(request, conn)
        if response.fault is not None and request.http_version != "2":
            from .protocols.http2 import strip_h2_faults

            response, dropped = strip_h2_faults(response)
            if dropped:
                self.network._record(
                    UsageError(
                        f"{' + '.join(map(repr, dropped))} on {request.method} {request.target} "
                        f"to {self.url}, which the client asked over HTTP/{request.http_version}: "
                        "HTTP/2 faults apply to HTTP/2 streams only, so it was answered "
                        "without them; make the client use HTTP/2 (HTTP_VERSION)"
                    )
                )
        return response

    def _hint(self, request: Request) -> str:
        if (request.header("upgrade") or "").lower() == "websocket":
            # A WebSocket handshake: the route it wants is a WebSocket route.
            closest = _closest(request.path, {w.path for w in self.websockets}, "WebSocket path")
            return f"`.websocket({request.path!r})` to the {self.host} endpoint{closest}"
        m = request.method.lower()
        call = (
            f"{m}({request.path!r})"
            if m in ("get", "post", "put", "patch", "delete", "head", "options")
            else f"route({request.method!r}, {request.path!r})"
        )
        paths = {r.path for r in self.routes if r.method in (request.method, "*")}
        closest = _closest(request.path, paths, "route path")
        return f"`.{call}.respond(...)` to the {self.host} endpoint{closest}"


def _closest(path: str, paths: set[str], what: str) -> str:
    """ "; the closest {what} is '...'" for a declared path near ``path``, else "": a typo on
    either side (the client's path or the test's route) is the usual cause of a miss."""
    near = difflib.get_close_matches(path, sorted(paths), n=1, cutoff=0.75)
    return f"; the closest {what} is {near[0]!r}" if near else ""


_UNSEEN = object()  # match(): not in the answers kept (None is a kept answer: no route)
Endpoint.__module__ = "curlfault"
HttpEndpoint.__module__ = "curlfault"
