"""HTTP vocabulary shared by the HTTP endpoints: requests, responses, routes.

Routes are matched by method and path. A route holds *steps* used in order; the last step
repeats. A step is a canned ``Response`` or a handler ``func(request) -> Response``.
"""

from __future__ import annotations

import json as _json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ._errors import ServerError, UsageError
from .faults import StreamFault, _misuse_hint

if TYPE_CHECKING:
    from ._network import Connection, Endpoint

__all__ = ["Handler", "HeadersLike", "Request", "Response", "Route"]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | None


class _NoJson:
    """The default of ``json=``: no JSON body (``None`` sends ``null``)."""

    def __repr__(self) -> str:
        return "NO_JSON"


NO_JSON: Any = _NoJson()


@dataclass(slots=True)  # a network keeps every request
class Request:
    """A request as the fake received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    http_version: str = "1.1"
    scheme: str = "http"
    host: str = ""
    port: int = 0
    connection_id: int = 0
    stream_id: int = 0  # the HTTP/2 stream id; 0 for HTTP/1.x
    error: str | None = None  # set when the request could not be parsed
    matched: bool = False

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def args(self) -> dict[str, list[str]]:
        """The query string parsed into lists of values."""
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` (case-insensitive); repeated headers joined by ', '."""
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else default

    def json(self) -> Any:
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} {len(self.body)} bytes>"


def _headers(headers: HeadersLike) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise UsageError(
                f"headers must be a mapping or (name, value) pairs, got item {item!r}"
            ) from None
        if not isinstance(name, str) or not isinstance(value, (str, int)):
            raise UsageError(
                f"header {name!r}: {value!r} has a {type(name).__name__} name and a "
                f"{type(value).__name__} value; pass a str name and a str (or int) value, "
                "such as {'X-Name': 'value'}"
            )
        out.append((name, str(value)))
    return tuple(out)


@dataclass(frozen=True)
class Response:
    """One canned response; ``handle()`` functions return one.

    Build it with ``Response.make(status, body=..., json=..., headers=...)``, which
    validates its arguments."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    fault: StreamFault | None = None
    # The status line's reason phrase over HTTP/1.1 (HTTP/2 has none): None is the standard
    # phrase for the status ("OK", "Not Found"; none for a code without one).
    reason: str | None = None
    # The bytes h11 serialized for this response to a keep-alive HTTP/1.1 GET, made on
    # first use: a route's canned step is sent many times and h11 would redo the same work.
    # Also the timeline text of sending them ("keepalive-get-event").
    wire: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def make(
        cls,
        status: int = 200,
        *,
        body: bytes | str = b"",
        json: Any = NO_JSON,
        headers: HeadersLike = None,
        fault: StreamFault | None = None,
        reason: str | None = None,
    ) -> Response:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise UsageError(f"status must be an int from 100 to 999, got {status!r}")
        if 100 <= status < 200:
            raise UsageError(
                f"status {status} is informational; curlfault sends 100 Continue itself"
            )
        hdrs = _headers(headers)
        if json is not NO_JSON:  # None is JSON too: null
            if body:
                raise UsageError("give body= or json=, not both")
            body = _json.dumps(json).encode()
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs = (("Content-Type", "application/json"), *hdrs)
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise UsageError(f"body must be bytes or str, got {type(body).__name__}")
        check_body_allowed(status, body)
        check_headers(body, hdrs)
        if fault is not None and not isinstance(fault, StreamFault):
            if isinstance(fault, (list, tuple)):
                hint = (
                    "; compose stream faults with +, as in "
                    "fault=faults.delay(0.5) + faults.close(after_bytes=100)"
                )
            else:
                hint = _misuse_hint(fault) or (
                    "; connection faults such as refuse() go to endpoint.connection_faults(...)"
                )
            raise UsageError(f"fault={fault!r} is not a stream fault{hint}")
        if reason is not None:
            check_reason(reason)
        return cls(status, bytes(body), hdrs, fault, reason)


# Statuses whose responses never carry a body (RFC 9110 6.4.1): h11 and h2 refuse to send one.
_NO_BODY = frozenset({204, 304})


def mark_incomplete(request: Request, body: bytes, who: str, note: str = "") -> None:
    """``request``'s body stopped after ``body``: keep it, and say so in ``error``
    (``who``: ``"the client closed the connection"``; ``note`` follows the byte count)."""
    request.body = body
    length = request.header("content-length")
    of = f" of {length}" if length is not None and length.isdigit() else ""
    request.error = f"incomplete: {who} after {len(body)} body bytes{of}{note}"


def check_body_allowed(status: int, body: bytes | bytearray | memoryview) -> None:
    """Raise ``UsageError`` if a ``status`` response may not carry ``body``."""
    if body and status in _NO_BODY:
        raise UsageError(
            f"a {status} response cannot carry a body (HTTP forbids it), got {len(body)} "
            f"bytes; drop body=, or add the bytes with faults.garbage(...) to send a "
            "server that breaks the rule"
        )


# RFC 9110 5.6.2: a token, what a field name (5.1) and a method (9.1) are.
TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# A field value as h11 sends it: no NUL, CR or LF, no whitespace at either end, and only
# spaces and tabs between the visible characters.
_FIELD_VALUE = re.compile(r"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?", re.ASCII)
# h11 sends a Content-Length of at most 20 digits.
_LENGTH = re.compile(r"[0-9]{1,20}")


def check_headers(body: bytes | bytearray | memoryview, headers: Iterable[object]) -> None:
    """Raise ``UsageError`` unless ``headers`` can be sent with ``body``: what h11 would
    refuse while serving, refused when the response is declared.

    An empty body may declare any Content-Length: a response to HEAD declares the length
    of the body it leaves out (and a 204 or 304 sends none whatever it declares).
    """
    lengths: list[str] = []
    chunked = False
    name: object
    value: object
    for item in headers:
        try:
            name, value = item  # type: ignore[misc]  # a Response built by hand: anything
        except (TypeError, ValueError):
            raise UsageError(f"header {item!r} is not a (name, value) pair") from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise UsageError(f"header {name!r}: {value!r} must be a str name and a str value")
        if not TOKEN.fullmatch(name):
            raise UsageError(
                f"header name {name!r} is not a token (RFC 9110 5.1), so it cannot be sent; "
                "use letters, digits and !#$%&'*+-.^_`|~ only, such as 'X-Name'"
            )
        if not value.isascii():
            bad = next(c for c in value if not c.isascii())
            raise UsageError(
                f"header {name}: {value!r} has {bad!r}, which is not ASCII, and header "
                "values are sent as ASCII; percent-encode it"
            )
        if not _FIELD_VALUE.fullmatch(value):
            stop = next((c for c in value if c in "\r\n\x00"), None)
            if stop is not None:
                raise UsageError(
                    f"header {name}: {value!r} has {stop!r}, which no header value can "
                    "carry; drop it, or send a broken header block on purpose with "
                    "faults.garbage(data, at='headers')"
                )
            raise UsageError(
                f"header {name}: {value!r} has whitespace at an end, or whitespace other "
                "than spaces and tabs inside, which a header value cannot carry; strip it"
            )
        lower = name.lower()
        if lower == "content-length":
            lengths.append(value)
        elif lower == "transfer-encoding":
            if chunked:
                raise UsageError("two Transfer-Encoding headers; give one: chunked")
            if value.lower() != "chunked":
                raise UsageError(
                    f"header Transfer-Encoding: {value!r}: curlfault frames the body itself "
                    "(by Content-Length, or chunked); drop the header, or give "
                    "Transfer-Encoding: chunked to send the body chunked (a compressed body "
                    "is Content-Encoding)"
                )
            chunked = True
    if lengths:
        check_content_length(body, lengths, chunked)


def check_content_length(
    body: bytes | bytearray | memoryview, values: list[str], chunked: bool
) -> None:
    """Raise ``UsageError`` unless the Content-Length ``values`` declare one length, and
    that of ``body`` when it is not empty and not sent chunked."""
    declared: set[str] = set()
    for value in values:
        # h11's reading: a comma-separated list of equal numbers is that number.
        for part in value.split(","):
            if not _LENGTH.fullmatch(part.strip()):
                raise UsageError(
                    f"header Content-Length: {value!r} is not a number of bytes (digits "
                    "only, at most 20); drop it, curlfault adds the right one, or send a "
                    "bad one on purpose with faults.bad_content_length(...)"
                )
            declared.add(part.strip())
    if len(declared) > 1:
        raise UsageError(
            f"Content-Length headers disagree ({', '.join(sorted(declared))}); give one, or "
            "send two that disagree on purpose with faults.conflicting_content_length()"
        )
    length = int(declared.pop())
    if body and not chunked and length != len(body):
        raise UsageError(
            f"header Content-Length: {length} disagrees with the body ({len(body)} bytes); "
            "drop the header, curlfault adds the right one, or use faults.body_length(...) "
            "/ faults.bad_content_length(...) to send a wrong length on purpose"
        )


def check_reason(reason: object) -> None:
    """Raise ``UsageError`` unless ``reason`` can be a status line's reason phrase."""
    if not isinstance(reason, str):
        raise UsageError(f"reason must be a str, got {type(reason).__name__}")
    # RFC 9112: tabs, spaces and visible characters (obs-text is latin-1's upper half).
    bad = [c for c in reason if not (c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff")]
    if bad:
        raise UsageError(
            f"reason {reason!r} has {bad[0]!r}, which a status line cannot carry; "
            "use tabs, spaces and visible latin-1 characters"
        )


def reason_phrase(status: int, reason: str | None = None) -> bytes:
    """The status line's reason phrase: ``reason`` if given, else the usual one for
    ``status`` (b"" for a code without one)."""
    if reason is not None:
        return reason.encode("latin-1")
    phrase = _PHRASES.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        _PHRASES[status] = phrase  # at most 900 codes
    return phrase


_PHRASES: dict[int, bytes] = {}


Handler = Callable[[Request], Response | int]


@dataclass
class _Step:
    response: Response | None = None
    handler: Handler | None = None


@dataclass
class Route:
    """Requests with this method and path. ``respond`` and ``handle`` add steps, in order."""

    endpoint: Endpoint
    method: str
    path: str
    steps: list[_Step] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # How many requests came before the last clear(): the next one takes the first step.
    _cleared_at: int = field(default=0, repr=False)
    # One past the highest step served since the last clear() (FakeNetwork.unused()): a step
    # added after requests came is not reached until a request takes it.
    _reached: int = field(default=0, repr=False)

    def respond(
        self,
        status: int = 200,
        *,
        body: bytes | str = b"",
        json: Any = NO_JSON,
        headers: HeadersLike = None,
        fault: StreamFault | None = None,
        reason: str | None = None,
    ) -> Route:
        """Add a step that answers with this response. Returns the route, to chain steps.

        ``reason`` replaces the status line's standard phrase over HTTP/1.1 (``""`` sends
        none: ``HTTP/1.1 200 ``).
        """
        self.endpoint._check_open()
        resp = Response.make(
            status, body=body, json=json, headers=headers, fault=fault, reason=reason
        )
        self.endpoint._note_fault(fault)
        self.steps.append(_Step(response=resp))
        return self

    def handle(self, func: Handler) -> Route:
        """Add a step answered by ``func(request)``, which returns a ``Response`` or a status."""
        self.endpoint._check_open()
        if not callable(func):
            raise UsageError(f"handle() takes a callable, got {func!r}")
        self.steps.append(_Step(handler=func))
        return self

    @property
    def calls(self) -> int:
        return len(self.requests)

    def matches(self, request: Request) -> bool:
        # A GET route also answers HEAD, as servers do.
        if self.method not in ("*", request.method) and not (
            self.method == "GET" and request.method == "HEAD"
        ):
            return False
        if "?" in self.path:
            return self.path == request.target
        return self.path == request.path

    def clear(self) -> Route:
        """Drop every step, so that the steps declared next start over with the next request
        (a test that replaces what a shared fixture declared). ``requests`` is kept. Returns
        the route: ``api.get("/f").clear().respond(503)``."""
        self.endpoint._check_open()
        with self._lock:
            # A new list, not the old one emptied: a transfer being served in another
            # thread reads the list it took, whole.
            self.steps = []
            self._cleared_at = len(self.requests)
            self._reached = 0
        return self

    def peek_fault(self) -> StreamFault | None:
        """The fault of the canned step the next request will get (None for a handler)."""
        with self._lock:
            steps = self.steps
            index = min(len(self.requests) - self._cleared_at, len(steps) - 1)
        if index < 0:
            return None
        step = steps[index]
        return step.response.fault if step.response is not None else None

    def next_response(self, request: Request, conn: Connection) -> Response:
        # The k-th request in ``requests`` gets step k (or the last). No lock: the append is
        # one step, and the request's place is read back from the list (another thread's
        # request may have landed after it meanwhile), so the step always matches the order
        # the list shows. A lock here cost 3,000 of a keep-alive GET's 107,000 instructions.
        requests = self.requests
        requests.append(request)
        k = len(requests) - 1
        while k > 0 and requests[k] is not request:
            k -= 1
        k -= self._cleared_at  # counted from the last clear()
        if k < 0:
            k = 0  # a request that arrived while another thread cleared the route
        steps = self.steps
        last = len(steps) - 1
        if last < 0:
            return Response()
        if k > last:
            k = last
        if k >= self._reached:
            self._reached = k + 1
        step = steps[k]
        if step.response is not None:
            return step.response
        assert step.handler is not None
        try:
            result = step.handler(request)
        except Exception as exc:
            err = ServerError(
                f"handler {getattr(step.handler, '__qualname__', step.handler)!r} for "
                f"{self.method} {self.path} raised {type(exc).__name__}: {exc}"
            )
            err.__cause__ = exc
            conn.network._record(err)
            return Response.make(500, body=f"curlfault: handler raised {type(exc).__name__}\n")
        if isinstance(result, Response):
            try:  # a Response built by hand skips make()'s checks
                if result.reason is not None:
                    check_reason(result.reason)
                check_body_allowed(result.status, result.body)
                if result.headers:
                    check_headers(result.body, result.headers)
            except UsageError as exc:
                conn.network._record(
                    ServerError(f"handler for {self.method} {self.path} returned {exc}")
                )
                return Response.make(500, body=b"curlfault: handler returned a bad response\n")
            self.endpoint._note_fault(result.fault)
            return result
        name = getattr(step.handler, "__qualname__", step.handler)
        if isinstance(result, int) and not isinstance(result, bool):
            try:
                return Response.make(result)
            except UsageError as exc:  # 99, 1000, a 1xx: no response to send
                conn.network._record(
                    ServerError(
                        f"handler {name!r} for {self.method} {self.path} returned {result!r}, "
                        f"which cannot be sent ({exc}); return a status from 200 to 999 or "
                        "a curlfault.Response"
                    )
                )
                return Response.make(500, body=b"curlfault: handler returned a bad status\n")
        err = ServerError(
            f"handler {name!r} for {self.method} {self.path} returned {result!r}; "
            "return a curlfault.Response or an int status"
        )
        conn.network._record(err)
        return Response.make(500, body=b"curlfault: handler returned a bad value\n")

    def __repr__(self) -> str:
        return f"<Route {self.method} {self.path} steps={len(self.steps)} calls={self.calls}>"
