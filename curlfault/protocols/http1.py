"""HTTP/1.1 server side of one fake connection, on h11.

h11 does all parsing and framing: keep-alive, ``Connection: close``, chunked request bodies,
``Expect: 100-continue`` and HEAD. A request h11 rejects gets a 4xx with ``Connection:
close``, is recorded with its ``error`` and fails ``check()``. A stream fault on a response
serializes the whole response first, then cuts it at the exact byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

import h11

from .._connection import kept_text
from .._errors import CurlFaultError, MalformedRequest, UsageError
from .._http import Request, Response, mark_incomplete
from .._plan import Plan, build_ops, compose, flatten, rewrite
from ..faults import (
    EarlyResponse,
    NoContinue,
    PointFault,
    Reset,
    StopReading,
    StreamFault,
    UploadFault,
)
from ._http1_wire import error_response_bytes, keepalive_bytes, serialize

if TYPE_CHECKING:
    from .._network import Connection, HttpEndpoint
    from .._transports import StreamProtocol

__all__ = ["ByteTransport", "Http1Server"]

MAX_HEADER_BYTES = 64 * 1024
# What h11 parsed from a fresh connection state, by the exact bytes it was given: libcurl
# sends byte-identical requests for repeated transfers, and h11 parses the same bytes in
# the same state the same way, so a repeat is answered without parsing it again. Only
# whole keep-alive requests that arrived in one read are kept, and a bounded number.
# method, target, headers, HTTP version, body, and the request's event text (kept_text)
_Parsed = tuple[str, str, tuple[tuple[str, str], ...], str, bytes, str]
_PARSED: dict[bytes, _Parsed] = {}
_PARSED_MAX = 512
_PARSED_MAX_BYTES = 4096


class ByteTransport(Protocol):
    """What a protocol writes to: the channel itself, or a TLS layer over it."""

    @property
    def closed(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
    def when_flushed(self, callback: Callable[[], None]) -> None: ...


class Http1Server:
    __slots__ = (
        "_body",
        "_body_seen",
        "_candidate",
        "_dead",
        "_h11",
        "_plan",
        "_request",
        "_upgraded",
        "_upload",
        "conn",
        "endpoint",
        "transport",
    )

    def __init__(self, endpoint: HttpEndpoint, transport: ByteTransport, conn: Connection) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.conn = conn
        # h11's state for this connection, made when a request needs parsing: a request whose
        # bytes were parsed before, answered from cached bytes, never touches it, so an idle
        # keep-alive connection holds none. None also means h11 has seen nothing yet.
        self._h11: h11.Connection | None = None
        self._request: Request | None = None
        self._body: list[bytes] | tuple[()] = ()  # a list while a request body arrives
        self._dead = False
        self._plan: Plan | None = None  # a faulted response still being played
        self._upload: UploadFault | None = None
        self._body_seen = 0
        self._candidate: bytes | None = None  # the read that may hold one whole request
        self._upgraded: StreamProtocol | None = None  # a WebSocket session after a 101

    @property
    def parser(self) -> h11.Connection:
        """h11's state for this connection (a fresh one after a response from cached bytes)."""
        h = self._h11
        if h is None:
            h = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        return h

    def data_received(self, data: bytes) -> None:
        if self._upgraded is not None:
            self._upgraded.data_received(data)
            return
        if self._dead:
            return
        self._candidate = None
        if self._h11 is None and self._plan is None:  # a fresh state: maybe parsed before
            parsed = _PARSED.get(data)
            if parsed is not None and self._replay(data, parsed):
                return
            if len(data) <= _PARSED_MAX_BYTES:
                self._candidate = data
        self.parser.receive_data(data)
        if self._plan is None:  # pipelined requests wait for the faulted response
            self._process()

    def eof_received(self) -> None:
        if self._upgraded is not None:
            self._upgraded.eof_received()
            return
        if self._dead:
            return
        self._candidate = None
        self.parser.receive_data(b"")
        self._process()

    def _process(self) -> None:
        while not self._dead:
            h = self._h11
            if h is None:
                # The response went out from cached bytes and nothing of the next request is
                # buffered: the connection's next request may be answered from a parse too.
                return
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._start(event)
                if self._upload_fault_at_head():
                    return
                if isinstance(self._upload, NoContinue):
                    self._check_no_continue()
                if h.they_are_waiting_for_100_continue and not isinstance(self._upload, NoContinue):
                    cont = h11.InformationalResponse(
                        status_code=100, headers=[], reason=b"Continue"
                    )
                    self.transport.write(h.send(cont) or b"")
                    self.conn.event("sent 100 Continue")
            elif isinstance(event, h11.Data):
                if self._body:
                    self._body.append(bytes(event.data))
                else:
                    self._body = [bytes(event.data)]
                self._body_seen += len(event.data)
                if isinstance(self._upload, StopReading) and self._body_seen >= (
                    self._upload.after_bytes
                ):
                    self._stop_reading()
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._remember_parse(h)
                self._complete()
                if self._dead or self._plan is not None:
                    return
                self._next_cycle(h)
            elif isinstance(event, h11.ConnectionClosed):
                self._dead = True
                return

    def _remember_parse(self, h: h11.Connection) -> None:
        """Keep what h11 parsed from ``_candidate`` if it was exactly one keep-alive request."""
        data, request = self._candidate, self._request
        self._candidate = None
        if (
            data is None
            or request is None
            or self._upload is not None
            or h.their_state is not h11.DONE
            or h.trailing_data[0]
            or request.header("expect") is not None
            or len(_PARSED) >= _PARSED_MAX
        ):
            return
        body = b"".join(self._body)
        _PARSED[data] = (
            request.method,
            request.target,
            tuple(request.headers),
            request.http_version,
            body,
            kept_text(f"request {request.method} {request.target}"),
        )

    def _replay(self, data: bytes, parsed: _Parsed) -> bool:
        """Answer a request whose bytes h11 parsed before; False to parse it now instead."""
        method, target, headers, version, body, text = parsed
        ep = self.endpoint
        request = self._new_request(method, target, list(headers), version, body)
        if ep.websockets and ep.websocket_route(request) is not None:
            return False  # a WebSocket path: the handshake (or its 426) needs h11's parse
        if ep._upload_faults_declared and self._upload_fault_of(request) is not None:
            return False  # upload faults act while the request streams in
        self._request = request
        self.conn.note(text)
        response = ep.dispatch(request, self.conn)
        wire = b""
        if version == "1.1" and method not in ("HEAD", "CONNECT"):
            wire = keepalive_bytes(response)
        if wire:
            sent = response.wire.get("keepalive-get-event")
            if sent is None:
                sent = kept_text(f"response {response.status}, {len(wire)} bytes")
                response.wire["keepalive-get-event"] = sent
            self._emit(wire, response, False, sent)
            return True
        # The response needs h11 (HEAD, a closing response): let it parse the same bytes,
        # which gives the same request, so that it is in the state its send() expects.
        h = self.parser
        h.receive_data(data)
        first = h.next_event()
        last = h.next_event()
        while isinstance(last, h11.Data):  # a request with a body: it is in `data` whole
            last = h.next_event()
        if not isinstance(first, h11.Request) or not isinstance(
            last, h11.EndOfMessage
        ):  # pragma: no cover - h11 is deterministic
            raise RuntimeError(f"h11 parsed {data!r} differently the second time")
        self._send(request, response, close=_is_preface(request))
        if not self._dead and self._plan is None:
            self._next_cycle(h)
        return True

    def _next_cycle(self, h: h11.Connection) -> None:
        """After a response h11 sent: close as h11 says, or get ready for the next request."""
        if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
            self._dead = True
            self.transport.finish()
        elif h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()

    def _new_request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        version: str,
        body: bytes = b"",
    ) -> Request:
        ep = self.endpoint
        # Positional, in the order of Request's fields (a call with keywords is not
        # specialized by the interpreter): method, target, headers, body, http_version,
        # scheme, host, port, connection_id.
        return Request(
            method, target, headers, body, version, ep.scheme, ep.host, ep.port or 0, self.conn.id
        )

    def _start(self, event: h11.Request) -> None:
        self._request = self._new_request(
            event.method.decode("ascii", "replace"),
            event.target.decode("ascii", "replace"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            event.http_version.decode("ascii", "replace"),
        )
        self._body = ()
        self.conn.event(f"request {self._request.method} {self._request.target}")

    def _complete(self) -> None:
        request = self._request
        assert request is not None
        request.body = b"".join(self._body)
        self._body = ()
        ws_route = self.endpoint.websocket_route(request)
        asks_upgrade = "websocket" in (request.header("Upgrade") or "").lower()
        if ws_route is not None and not asks_upgrade and self.endpoint.match(request) is not None:
            ws_route = None  # no upgrade asked, and an HTTP route serves the path: that one
        if ws_route is not None:  # the handshake: wsproto serves the connection from now on
            from .websocket import upgrade

            self._dead = True
            self._upgraded = upgrade(self, request, ws_route)
            return
        if asks_upgrade:
            # Answered as a server without WebSocket support would (libcurl then refuses
            # the upgrade: 22). Faithful, so not a problem for check(); the trace says why.
            ep = self.endpoint
            self.conn.event(
                f"WebSocket upgrade asked for {request.path}, which no websocket() route of "
                f"{ep.url} serves: answered as plain HTTP (libcurl refuses the upgrade, "
                f"CURLcode 22); to accept it, declare .websocket({request.path!r}) on that "
                "endpoint"
            )
        response = self.endpoint.dispatch(request, self.conn)
        self._send(request, response, close=_is_preface(request))

    def _upload_fault_at_head(self) -> bool:
        """Look ahead at the step that will answer this request: an upload fault acts now."""
        request = self._request
        assert request is not None
        self._upload = self._upload_fault_of(request)
        self._body_seen = 0
        if isinstance(self._upload, EarlyResponse):
            self.conn.event("early response: answering before the request body")
            response = self.endpoint.dispatch(request, self.conn)
            self._send(request, response, close=True)
            return True
        if isinstance(self._upload, StopReading) and self._upload.after_bytes == 0:
            self._stop_reading()
            return True
        return False

    def _upload_fault_of(self, request: Request) -> UploadFault | None:
        """The upload fault of the step that will answer ``request`` (the last one given)."""
        if not self.endpoint._upload_faults_declared:
            return None
        route = self.endpoint.match(request)
        found = None
        for f in flatten(route.peek_fault() if route is not None else None):
            if isinstance(f, UploadFault):
                found = f
        return found

    def _check_no_continue(self) -> None:
        """no_continue() answers a request that never asked for 100 Continue: say so, as
        for a point fault whose point the response does not have. (The header, not h11's
        view: h11 ignores it on an HTTP/1.0 request, where libcurl still waits.)"""
        request = self._request
        assert request is not None
        expect = request.header("expect")
        if expect is not None and expect.strip().lower() == "100-continue":
            return
        self.conn.event("no_continue(): the request did not ask for 100 Continue")
        self.endpoint.network._record(
            UsageError(
                f"no_continue() on {request.method} {request.target} to {self.endpoint.url} "
                "had nothing to act on: the request had no 'Expect: 100-continue' (libcurl "
                "sends it only for bodies over 1 MiB or of unknown size); upload more, or have "
                "the client set HTTPHEADER=['Expect: 100-continue']"
            )
        )

    def client_closed(self) -> None:
        """The client closed the connection: a request whose body had not all arrived (an
        upload the client aborted) is recorded, with ``error`` saying so."""
        request = self._request
        h = self._h11
        if (
            self._dead
            or request is None
            or h is None
            or h.their_state is not h11.SEND_BODY
            or h.our_state is not h11.SEND_RESPONSE  # answered already (early_response())
            or self._plan is not None
        ):
            return
        self._dead = True
        request.connection_id = self.conn.id
        self.endpoint.keep_incomplete(
            request, b"".join(self._body), "the client closed the connection"
        )
        self.conn.event(f"request {request.method} {request.target} cut short by the client")

    def _stop_reading(self) -> None:
        request = self._request
        assert request is not None
        body = b"".join(self._body)
        mark_incomplete(request, body, "the server stopped reading", " (stop_reading())")
        self.conn.event(f"stopped reading the request after {len(body)} body bytes")
        self._dead = True
        self.endpoint.dispatch(request, self.conn)  # recorded; never answered
        stop = getattr(self.transport, "stop_reading", None)
        if stop is not None:
            stop()

    def _send(self, request: Request, response: Response, close: bool = False) -> None:
        h = self.parser
        data = None
        if (
            not close
            and h.their_state is h11.DONE
            and h.our_state is h11.SEND_RESPONSE
            and h.their_http_version == b"1.1"
            and request.method not in ("HEAD", "CONNECT")
        ):
            data = keepalive_bytes(response)
        if data:
            # What h11 would write here is what it wrote for the template request: the
            # framing depends only on the method, the HTTP version and keep-alive.
            # h11 did not see this response: the next request goes to a fresh connection
            # state with whatever the client already sent after this one.
            trailing, closed = h.trailing_data
            self._h11 = None
            if trailing:
                self.parser.receive_data(trailing)
            if closed:
                self.parser.receive_data(b"")
        else:
            data = serialize(h, response, close, request.method != "HEAD")
        self._emit(data, response, close)

    def _emit(self, data: bytes, response: Response, close: bool, text: str = "") -> None:
        """Write a serialized response, or play it with its faults (``text``: its event
        text, kept, if the caller has it)."""
        if text:
            self.conn.note(text)
        else:
            self.conn.event(f"response {response.status}, {len(data)} bytes")
        if response.fault is None:
            faults: list[StreamFault] = []
        else:
            faults = [f for f in flatten(response.fault) if not isinstance(f, UploadFault)]
        if not faults:
            self.transport.write(data)
            if close:
                self._dead = True
                self.transport.finish()
            return
        self._play(data, response.body, faults, close)

    def _check_head(self, request: Request, data: bytes, faults: list[StreamFault]) -> None:
        """A byte point past the end of a HEAD response: the fault was meant for a body.

        A GET route answers HEAD too, and a client that asks HEAD before its GET (to learn
        the size) takes the step the test meant for the GET, with its fault."""
        for f in faults:
            if isinstance(f, PointFault) and f.at is None and f.after_bytes > len(data):
                route = self.endpoint.match(request)
                why = (
                    "a GET route answers HEAD too, and this HEAD took the step meant for a "
                    f"GET; declare .head({request.path!r}).respond(...) on the endpoint for "
                    "the HEAD, or give the fault to a later step"
                    if route is not None and route.method == "GET"
                    else "a byte point must fall inside the response it cuts"
                )
                raise UsageError(
                    f"{f!r} fell to HEAD {request.target} to {self.endpoint.url}, whose "
                    f"response ({len(data)} bytes) has no body to cut: {why}"
                )

    def _play(self, data: bytes, body: bytes, faults: list[StreamFault], close: bool) -> None:
        self.conn.fault = compose(faults)
        request = self._request
        self.conn.fault_on = f"{request.method} {request.target}" if request is not None else ""
        for f in faults:
            if isinstance(f, Reset) and self.conn.transport not in ("tcp", "listener"):
                # Only TCP has RST. An endpoint that declares reset() up front serves over
                # TCP; one a handler returned later may meet a socketpair made earlier.
                self.endpoint.network._record(
                    UsageError(
                        f"{f!r} on connection #{self.conn.id} to {self.endpoint.url}, "
                        f"which is a {self.conn.transport}: there is no RST to send, so the "
                        "client saw an abrupt close instead; declare the endpoint with "
                        "transport='tcp' or the fault with respond(..., fault=reset(...))"
                    )
                )
        try:
            data, close_after = rewrite(data, body, faults)
            if request is not None and request.method == "HEAD":
                self._check_head(request, data, faults)
            ops = build_ops(data, faults, self.conn.event)
        except CurlFaultError as exc:
            self.endpoint.network._record(exc)
            self.conn.event(f"fault not applied: {exc}")
            self.transport.write(data)
            return
        self.conn.event(f"fault {' + '.join(repr(f) for f in faults)}")
        close = close or close_after

        def done() -> None:
            self._plan = None
            if close:
                self._dead = True
                self.transport.finish()
            else:
                self._after_response()

        plan = Plan(
            self.transport,
            self.endpoint.network.loop,
            ops,
            self.conn.event,
            done,
            self.conn.server_failed,
            self._stall_limit,
        )
        self._plan = plan
        plan.start()
        if plan.ended:
            self._dead = True

    def _stall_limit(self, text: str) -> None:
        """A stall() outlived its bound (``_plan.STALL_LIMIT_SECONDS``): the test's mistake."""
        self.endpoint.network._record(UsageError(f"connection #{self.conn.id}: {text}"))

    def _after_response(self) -> None:
        """A faulted response ended normally: go on with the connection as h11 says."""
        self._next_cycle(self.parser)
        if not self._dead:  # pipelined requests waited for this response
            self._process()

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        self._dead = True
        status = exc.error_status_hint or 400
        req = self._request or Request(method="?", target="?", headers=[])
        req.error = str(exc)
        req.connection_id = self.conn.id
        self.endpoint.keep(req)
        text = f"{self.endpoint.url} received a request it could not parse ({exc}); "
        if self._request is None and _tls_record(self.parser, exc):
            # A TLS record (handshake, TLS 1.x) where a request line should be: the client
            # speaks https:// to a plain-HTTP endpoint (libcurl then fails with 35).
            ep = self.endpoint
            port = "" if ep.port in (None, 443) else f", {ep.port}"
            use = _plain_url(self.conn.url, ep.port) or f"{ep.url}/..."
            text += (
                "it was a TLS handshake: the client used https:// for this plain-HTTP "
                f"endpoint; use {use}, or declare {ep.network.spelled}.https({ep.host!r}{port}) "
                "to serve "
                "https:// there instead; "
            )
        self.endpoint.network._record(MalformedRequest(text + f"it answered {status}"))
        self.conn.event(f"malformed request: {exc}; answering {status}")
        body = f"curlfault: malformed request: {exc}\n".encode()
        if self.parser.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                self.transport.write(error_response_bytes(self.parser, status, body))
            except h11.LocalProtocolError:
                pass
        self.transport.finish()


def _tls_record(h: h11.Connection, exc: h11.RemoteProtocolError) -> bool:
    """Whether the bytes h11 could not parse began with a TLS handshake record (``16 03``).

    h11 either keeps them unparsed, or has taken a "line" out of them (binary data holds a
    CR LF somewhere) and names it in its error as ``bytearray(b'\\x16\\x03...')``.
    """
    if h.trailing_data[0][:2] == b"\x16\x03":
        return True
    text = str(exc)  # repr() quotes with " when the bytes hold a '
    return "(b'\\x16\\x03" in text or '(b"\\x16\\x03' in text


def _plain_url(url: str, port: int | None) -> str:
    """``use http://... (not https://...)`` for an https:// ``url`` that reached a plain-HTTP
    endpoint on ``port``, keeping the port the URL went to ("" for another URL)."""
    if not url.startswith("https://"):
        return ""
    try:
        parts = urlsplit(url)
        given = parts.port
    except ValueError:
        return ""
    netloc = parts.netloc
    if given is None and port not in (None, 80):
        netloc += f":{port}"  # http:// without a port would go to 80
    return f"{urlunsplit(parts._replace(scheme='http', netloc=netloc))} (not {url})"


def _is_preface(request: Request) -> bool:
    """Whether ``request`` is the start of the HTTP/2 preface (``PRI * HTTP/2.0``, then
    ``SM``): what follows is HTTP/2 frames, so the connection closes after its answer."""
    return request.method == "PRI" and request.target == "*"
