"""WebSocket server side of one fake connection, on wsproto, after h11's upgrade.

h11 parses the HTTP/1.1 handshake request (``Http1Server``); this module checks it, answers
``101 Switching Protocols`` through h11 and hands the bytes h11 did not consume
(``trailing_data``) to a ``wsproto`` server connection, which frames everything from then
on. A request to a WebSocket path that is not a valid handshake gets a 426 or 400 with
``Connection: close`` and fails ``check()``.

Each connection plays its route's script from the first step (``WebSocketRoute``). Every
frame the client sends is recorded with its opcode and FIN bit (``route.frames``), every
complete message too (``route.received``). Pings are answered unless ``ws_no_pong()`` is
in effect; a client close frame is answered with a close frame, then FIN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from .._errors import MalformedRequest, UsageError
from .._faults_ws import (
    WebSocketFault,
    WsClose,
    WsCut,
    WsDrop,
    WsFragment,
    WsNoPong,
    WsOversized,
    oversized_frame,
)
from .._websocket import WebSocketFrame, WebSocketRoute, _Step
from ._http1_wire import error_response_bytes

if TYPE_CHECKING:
    from .._http import Request
    from .http1 import Http1Server

__all__ = ["WebSocketSession", "upgrade"]


def _header_tokens(request: Request, name: str) -> set[str]:
    value = request.header(name) or ""
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def _handshake_problem(server: Http1Server, request: Request) -> tuple[int, str] | None:
    """(status, reason) when ``request`` is no valid WebSocket handshake (RFC 6455 4.2.1)."""
    if request.method != "GET":
        return 405, f"a WebSocket handshake is a GET, not {request.method}"
    if "websocket" not in _header_tokens(request, "Upgrade"):
        return 426, "no 'Upgrade: websocket' header: this path only speaks WebSocket"
    if "upgrade" not in _header_tokens(request, "Connection"):
        return 400, "no 'Connection: Upgrade' header"
    # h11 leaves its state names out of __all__; this one is public API all the same.
    if server.parser.their_state is not h11.MIGHT_SWITCH_PROTOCOL:  # type: ignore[attr-defined]
        return 400, "the request cannot switch protocols (it has a body?)"
    if (request.header("Sec-WebSocket-Version") or "").strip() != "13":
        return 426, "Sec-WebSocket-Version must be 13"
    if not (request.header("Sec-WebSocket-Key") or "").strip():
        return 400, "no Sec-WebSocket-Key header"
    return None


def upgrade(
    server: Http1Server, request: Request, route: WebSocketRoute
) -> WebSocketSession | None:
    """Answer the handshake of ``request``: a session to feed bytes to, or None if refused."""
    endpoint = server.endpoint
    conn = server.conn
    request.matched = True
    endpoint.keep(request)
    route.requests.append(request)
    h = server.parser
    problem = _handshake_problem(server, request)
    if problem is not None:
        status, reason = problem
        request.error = reason
        endpoint.network._record(
            MalformedRequest(
                f"{request.method} {request.target} to {endpoint.url} is a WebSocket path, "
                f"but {reason}; it answered {status}. Send the handshake with "
                "CONNECT_ONLY=2 (or a WRITEFUNCTION) on a ws:// or wss:// URL"
            )
        )
        conn.event(f"bad WebSocket handshake: {reason}; answering {status}")
        body = f"curlfault: {reason}\n".encode()
        upgrade = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
        server.transport.write(
            error_response_bytes(h, status, body, upgrade if status == 426 else ())
        )
        server.transport.finish()
        return None
    key = (request.header("Sec-WebSocket-Key") or "").strip().encode("latin-1")
    data = (
        h.send(
            h11.InformationalResponse(
                status_code=101,
                headers=[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", generate_accept_token(key).decode("ascii")),
                ],
                reason=b"Switching Protocols",
            )
        )
        or b""
    )
    server.transport.write(data)
    conn.event(f"WebSocket handshake for {request.target}: 101 Switching Protocols")
    trailing, _closed = h.trailing_data
    session = WebSocketSession(server, route)
    session.start(bytes(trailing))
    return session


class WebSocketSession:
    """One WebSocket connection: the route's script, then recording, pongs and the close."""

    def __init__(self, server: Http1Server, route: WebSocketRoute) -> None:
        self.transport = server.transport
        self.conn = server.conn
        self.network = server.endpoint.network
        self.route = route
        self.ws = WsConnection(ConnectionType.SERVER)
        self.steps = list(route.steps)
        self.index = 0
        self.waiting = 0  # client messages the current step still waits for
        self.no_pong = False
        self.dead = False
        self._frame = bytearray()  # payload of the client frame being received
        self._message: list[bytes] = []  # frames of the client message being received
        self._message_text = False
        route.sessions += 1

    # input -----------------------------------------------------------------------------
    def start(self, trailing: bytes) -> None:
        self._run()
        if trailing:
            self.data_received(trailing)

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        self.ws.receive_data(data)
        self._events()

    def eof_received(self) -> None:
        if self.dead:
            return
        self.conn.event("client closed the connection without a close frame")
        self.dead = True
        try:
            self.ws.receive_data(None)
        except RemoteProtocolError:
            pass

    def _events(self) -> None:
        for event in self.ws.events():
            if self.dead:
                return
            if isinstance(event, (TextMessage, BytesMessage)):
                self._on_message(event)
            elif isinstance(event, Ping):
                self._record(WebSocketFrame("ping", bytes(event.payload), True))
                if self.no_pong:
                    self.conn.event("ping not answered (ws_no_pong)")
                else:
                    self._send(event.response())
            elif isinstance(event, Pong):
                self._record(WebSocketFrame("pong", bytes(event.payload), True))
            elif isinstance(event, CloseConnection) and self.ws.state is ConnectionState.OPEN:
                # wsproto reports a frame it rejects as a close event in the OPEN state.
                self._protocol_error(int(event.code), event.reason or "")
                return
            elif isinstance(event, CloseConnection):
                self._record(WebSocketFrame("close", _close_payload(event), True))
                self.route.close_codes.append(int(event.code))
                self.conn.event(f"client sent close {event.code} {event.reason!r}")
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send(event.response())
                self._finish()
                return

    def _on_message(self, event: TextMessage | BytesMessage) -> None:
        text = isinstance(event, TextMessage)
        payload = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
        self._frame += payload
        if not event.frame_finished:
            return
        opcode = ("text" if text else "binary") if not self._message else "continuation"
        self._record(WebSocketFrame(opcode, bytes(self._frame), event.message_finished))
        self._message.append(bytes(self._frame))
        self._message_text = self._message_text or (text and len(self._message) == 1)
        self._frame.clear()
        if not event.message_finished:
            return
        whole = b"".join(self._message)
        message: str | bytes = whole.decode() if self._message_text else whole
        self._message, self._message_text = [], False
        self.route.received.append(message)
        self.conn.event(f"client message, {len(whole)} bytes")
        self._on_client_message(message)

    def _record(self, frame: WebSocketFrame) -> None:
        self.route.frames.append(frame)

    # the script ------------------------------------------------------------------------
    def _on_client_message(self, message: str | bytes) -> None:
        step = self.steps[self.index] if self.index < len(self.steps) else None
        if step is None or self.waiting == 0:
            return  # after the script: recorded only
        if step.kind in ("echo", "handle"):
            replies = self._replies(step, message)
            for reply in replies:
                self._send_message(reply, None)
        if step.count is not None:
            self.waiting -= 1
            if self.waiting == 0:
                self.index += 1
                self._run()

    def _replies(self, step: _Step, message: str | bytes) -> list[str | bytes]:
        if step.kind == "echo":
            return [message]
        assert step.func is not None
        try:
            result = step.func(message)
        except Exception as exc:
            self.conn.server_failed(exc)
            self._close(1011, "handler raised")
            return []
        if result is None:
            return []
        if isinstance(result, (str, bytes)):
            return [result]
        if isinstance(result, list) and all(isinstance(r, (str, bytes)) for r in result):
            return list(result)
        self.conn.server_failed(
            TypeError(f"a WebSocket handler returned {result!r}; return str, bytes, a list or None")
        )
        self._close(1011, "handler returned a bad value")  # as for a handler that raised
        return []

    def _run(self) -> None:
        """Play steps until one waits for the client, or the script ends."""
        while not self.dead and self.index < len(self.steps):
            step = self.steps[self.index]
            kind = step.kind
            if kind in ("receive", "echo", "handle"):
                self.waiting = step.count if step.count is not None else -1
                return
            self.index += 1
            if kind == "send":
                assert step.data is not None
                self._send_message(step.data, step.fault)
            elif kind == "ping":
                assert isinstance(step.data, bytes)
                self.conn.event(f"server sent ping {step.data!r}")
                self._send(Ping(payload=step.data))
            elif kind == "close":
                self._close(step.code, step.reason)
            elif kind == "fault":
                self._fault(step)

    def _fault(self, step: _Step) -> None:
        fault = step.fault
        self.conn.fault = fault
        self.conn.event(f"fault {fault!r}")
        if isinstance(fault, WsNoPong):
            self.no_pong = True
        elif isinstance(fault, WsClose):
            self._send(CloseConnection(code=fault.code, reason=fault.reason or None))
            self._finish()
        elif isinstance(fault, WsDrop) and fault.reset:
            self._reset(fault)
        elif isinstance(fault, WsDrop):
            self._finish()

    # output ----------------------------------------------------------------------------
    def _send(self, event: Event) -> None:
        try:
            data = self.ws.send(event)
        except LocalProtocolError as exc:
            self.conn.event(f"not sent ({exc}): {event!r}")
            return
        self.transport.write(data)

    def _send_message(self, data: str | bytes, fault: WebSocketFault | None) -> None:
        if self.ws.state is not ConnectionState.OPEN:
            self.conn.event("message not sent: the connection is closing")
            return
        if isinstance(fault, WsOversized):
            self.conn.fault = fault
            self.conn.event(f"fault {fault!r}")
            raw = data.encode() if isinstance(data, str) else data
            self.transport.write(oversized_frame(fault, raw, isinstance(data, str)))
            self._finish()
            return
        if isinstance(fault, WsCut):
            self._cut(data, fault)
            return
        size = fault.size if isinstance(fault, WsFragment) else 0
        if size and len(data) > size:
            self.conn.fault = fault
            pieces = [data[i : i + size] for i in range(0, len(data), size)]
            self.conn.event(f"message of {len(data)} in {len(pieces)} frames")
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                if isinstance(piece, str):
                    self._send(TextMessage(data=piece, message_finished=last))
                else:
                    self._send(BytesMessage(data=piece, message_finished=last))
            return
        self._send(TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data))

    def _cut(self, data: str | bytes, fault: WsCut) -> None:
        """The message's frame up to ``fault.after_bytes``, then FIN (or RST)."""
        self.conn.fault = fault
        message = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        frame = self.ws.send(message)
        n = fault.after_bytes  # below len(frame): send() checked it
        self.conn.event(f"fault {fault!r}: {min(n, len(frame))} of the frame's {len(frame)} bytes")
        self.transport.write(frame[:n])
        if fault.reset:
            self._reset(fault)
        else:
            self._finish()

    def _reset(self, fault: WsDrop | WsCut) -> None:
        """End the connection with an RST (on a TCP pair; a socketpair can only close)."""
        if self.conn.transport not in ("tcp", "listener"):
            # Declaring the fault makes new connections TCP; this one was made before.
            self.network._record(
                UsageError(
                    f"{fault!r} on connection #{self.conn.id} to {self.route.endpoint.url}"
                    f"{self.route.path}, which is a {self.conn.transport}: there is no RST "
                    "to send, so the client saw an abrupt close instead; declare the "
                    "fault before the connection is made, or the endpoint with "
                    "transport='tcp'"
                )
            )
        self.dead = True
        # At once, as a server that crashes does: what the socket buffers hold reaches the
        # client, what is still queued behind them is lost (SO_LINGER 0 on a TCP pair).
        self.transport.abort()

    def _close(self, code: int, reason: str) -> None:
        if self.ws.state is not ConnectionState.OPEN:
            return
        self.conn.event(f"server sent close {code} {reason!r}")
        self._send(CloseConnection(code=code, reason=reason or None))
        # The client answers with a close frame (then _events finishes); until then the
        # connection stays open, and the client's own close of the socket ends it.

    def _finish(self) -> None:
        self.dead = True
        self.transport.finish()

    def _protocol_error(self, code: int, reason: str) -> None:
        """The client sent a frame wsproto rejects: close with ``code``, fail ``check()``."""
        endpoint = self.route.endpoint
        self.network._record(
            MalformedRequest(
                f"connection #{self.conn.id} to {endpoint.url}{self.route.path} sent a "
                f"WebSocket frame that breaks RFC 6455 ({reason}); the server closed with {code}"
            )
        )
        self.conn.event(f"bad frame from the client: {reason}; close {code}")
        self._send(CloseConnection(code=code, reason=reason[:100] or None))
        self._finish()


def _close_payload(event: CloseConnection) -> bytes:
    if event.code in (1005, 1006):  # no status in the frame
        return b""
    return event.code.to_bytes(2, "big") + (event.reason or "").encode()
