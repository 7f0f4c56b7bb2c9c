"""WebSocket routes: the script a fake WebSocket server plays, and what the client sent.

``endpoint.websocket("/chat")`` returns a ``WebSocketRoute``. Its steps run in order on every
connection, from the first step: ``send`` writes a message at once; ``receive``, ``echo`` and
``handle`` wait for client messages; ``close`` starts the closing handshake; ``fault`` applies
a connection-level WebSocket fault. After the last step the server stays open, records what
the client sends, answers pings and answers a close frame with a close frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ._errors import UsageError
from ._faults_ws import WebSocketFault, WsClose, WsCut, WsDrop, WsFragment, WsOversized
from .faults import Fault, Reset, _misuse_hint

if TYPE_CHECKING:
    from ._endpoints import HttpEndpoint
    from ._http import Request

__all__ = ["MessageHandler", "WebSocketFrame", "WebSocketRoute"]

MessageHandler = Callable[[str | bytes], "str | bytes | list[str | bytes] | None"]
_FRAME_FAULTS = (WsFragment, WsOversized, WsCut)  # shape one message: send(..., fault=...)
# Faults after which the server end is closed: the script ends there.
_ENDING = (WsClose, WsDrop, WsOversized, WsCut)


class WebSocketFrame(NamedTuple):
    """One frame the client sent: ``opcode`` is "text", "binary", "continuation", "ping",
    "pong" or "close"; ``fin`` is its FIN bit; ``payload`` is unmasked (a close frame's is
    the 2-byte code then the reason)."""

    opcode: str
    payload: bytes
    fin: bool


@dataclass
class _Step:
    kind: str  # send, ping, receive, echo, handle, close, fault
    data: str | bytes | None = None
    count: int | None = None
    func: MessageHandler | None = None
    code: int = 1000
    reason: str = ""
    fault: WebSocketFault | None = None


def _count(count: object, what: str) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"{what}(count=...) must be a positive int or None, got {count!r}")
    return count


def close_code(code: object, reason: object) -> tuple[int, str]:
    """Validate a close code a server may send (RFC 6455 7.4) and its reason."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise UsageError(f"close code must be an int, got {code!r}")
    if not (code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise UsageError(
            f"close code {code} cannot be sent on the wire; use 1000-1003, 1007-1014 "
            "or 3000-4999 (1005 and 1006 only describe a close without a code)"
        )
    if not isinstance(reason, str):
        raise UsageError(f"close reason must be a str, got {reason!r}")
    if len(reason.encode()) > 123:
        raise UsageError("close reason must be at most 123 bytes of UTF-8 (a control frame)")
    return code, reason


@dataclass
class WebSocketRoute:
    """A WebSocket path on an HTTP endpoint (``ws://`` or, on ``net.https``, ``wss://``).

    Script steps return the route, to chain::

        chat = api.websocket("/chat")
        chat.send("welcome").echo(count=2).close(1000, "bye")

    ``received`` holds the client's complete messages (``str`` for text, ``bytes`` for
    binary), ``frames`` every frame with its opcode and FIN bit, ``close_codes`` the codes
    of the client's close frames, ``requests`` the handshake requests.
    """

    endpoint: HttpEndpoint
    path: str
    steps: list[_Step] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    frames: list[WebSocketFrame] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    sessions: int = 0

    def _add(self, step: _Step) -> WebSocketRoute:
        self.endpoint._check_open()
        last = self.steps[-1] if self.steps else None
        if last is not None and last.kind in ("echo", "handle") and last.count is None:
            raise UsageError(
                f"{last.kind}() without a count answers every message until the "
                "client closes, so no step can follow it; give it count=N"
            )
        if last is not None and isinstance(last.fault, _ENDING):
            raise UsageError(
                f"{last.fault!r} ends the connection, so no step can follow it (it would "
                "never run); put it last, or script another connection's steps on another "
                "route"
            )
        self.steps.append(step)
        return self

    def send(self, data: str | bytes, *, fault: WebSocketFault | None = None) -> WebSocketRoute:
        """Send one message: ``str`` as a text message, ``bytes`` as a binary one.

        ``fault`` shapes this message: ``faults.ws_fragment(size)``,
        ``faults.ws_oversized()`` or ``faults.ws_cut(after_bytes)``.
        """
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, (str, bytes)):
            raise UsageError(f"send() takes str (text) or bytes (binary), got {data!r}")
        if fault is not None and not isinstance(fault, _FRAME_FAULTS):
            hint = _misuse_hint(fault)
            if hint:
                raise UsageError(f"send(..., fault={fault!r}) is not a fault{hint}")
            raise UsageError(
                f"send(..., fault={fault!r}): only ws_fragment(), ws_oversized() and "
                "ws_cut() shape a message; give connection faults as a step: .fault(...)"
            )
        if isinstance(fault, WsCut):
            raw = data.encode() if isinstance(data, str) else data
            # An unmasked server frame: a 2-byte head, 2 more for 126 to 65535 bytes, 8 more
            # beyond (no extension is ever negotiated).
            size = len(raw) + (2 if len(raw) < 126 else 4 if len(raw) < 65536 else 10)
            if fault.after_bytes >= size:
                raise UsageError(
                    f"send(..., fault={fault!r}): the message's frame is {size} bytes, so "
                    f"nothing would be cut; give after_bytes below {size}"
                )
            if fault.reset:
                self.endpoint._note_fault(Reset())  # an RST needs a TCP pair
        return self._add(_Step("send", data=data, fault=fault))

    def ping(self, payload: bytes = b"") -> WebSocketRoute:
        """Send a ping; the client's pong is recorded in ``frames`` (libcurl answers pings
        by itself unless ``WS_OPTIONS`` has ``WS_NOAUTOPONG``)."""
        if isinstance(payload, (bytearray, memoryview)):
            payload = bytes(payload)
        if not isinstance(payload, bytes) or len(payload) > 125:
            raise UsageError(f"ping() takes at most 125 bytes (a control frame), got {payload!r}")
        return self._add(_Step("ping", data=payload))

    def receive(self, count: int = 1) -> WebSocketRoute:
        """Wait until the client has sent ``count`` more messages (recorded, not answered)."""
        return self._add(_Step("receive", count=_count(count, "receive")))

    def echo(self, count: int | None = None) -> WebSocketRoute:
        """Send back each of the client's next ``count`` messages (None: every one)."""
        return self._add(_Step("echo", count=_count(count, "echo")))

    def handle(self, func: MessageHandler, count: int | None = None) -> WebSocketRoute:
        """Answer each of the next ``count`` client messages (None: every one) with
        ``func(message)``, which returns a message, a list of messages or None."""
        if not callable(func):
            raise UsageError(f"handle() takes a callable, got {func!r}")
        return self._add(_Step("handle", count=_count(count, "handle"), func=func))

    def close(self, code: int = 1000, reason: str = "") -> WebSocketRoute:
        """Send a close frame; the connection ends when the client answers with its own."""
        code, reason = close_code(code, reason)
        return self._add(_Step("close", code=code, reason=reason))

    def fault(self, fault: WebSocketFault) -> WebSocketRoute:
        """Apply a connection fault at this point of the script: ``faults.ws_close(...)``,
        ``faults.ws_drop()`` or ``faults.ws_no_pong()``."""
        if not isinstance(fault, WebSocketFault) or isinstance(fault, _FRAME_FAULTS):
            hint = (
                "; ws_fragment(), ws_oversized() and ws_cut() shape a message: send(..., fault=...)"
                if isinstance(fault, _FRAME_FAULTS)
                else _misuse_hint(fault)
            )
            raise UsageError(f"{fault!r} is not a WebSocket connection fault{hint}")
        if isinstance(fault, Fault) and not fault.modelled:  # pragma: no cover - all are
            raise NotImplementedError(f"{fault!r} is not modelled yet")
        if isinstance(fault, WsDrop) and fault.reset:
            self.endpoint._note_fault(Reset())  # an RST needs a TCP pair
        return self._add(_Step("fault", fault=fault))

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __repr__(self) -> str:
        return f"<WebSocketRoute {self.path} steps={len(self.steps)} sessions={self.sessions}>"


WebSocketRoute.__module__ = "curlfault"
