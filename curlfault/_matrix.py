"""The fault matrix: every fault in ``curlfault.faults`` against the installed pycurl/libcurl.

Each ``Case`` declares one fault the way a test would (a setup function on a fresh
``FakeNetwork``), the URL to fetch and the CURLcode the fault documents. ``run_matrix`` runs
every case over every transport with real pycurl transfers to pinned fake hosts (no real
host, no DNS), then checks that the network's descriptor ledger balances and that
``net.check()`` reports exactly the problem the case expects. ``curlfault matrix`` prints the
result (rendered by ``_matrix_render``); a new fault adds its rows to its protocol's module
(``_matrix_http1``, ``_matrix_tls``, ``_matrix_h2``, ``_matrix_ws``) and nothing else.

    >>> from curlfault._matrix import run_matrix
    >>> rows = run_matrix(["socketpair"])
    >>> all(row.ok for row in rows)
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pycurl

from . import faults
from ._errors import CurlFaultError, UnexpectedConnection, UsageError
from ._network import FakeNetwork
from ._transports import ENDPOINT_TRANSPORTS as TRANSPORTS

# The network imports its protocol modules on the first connection; import HTTP/1.1 (and
# h11) now so that the first row's time does not include it.
from .protocols import http1 as _http1  # noqa: F401

__all__ = [
    "CASES",
    "Case",
    "Row",
    "curlcode_name",
    "run_case",
    "run_matrix",
]

DEFAULT_TIMEOUT = 10.0  # seconds: pycurl TIMEOUT of every matrix transfer, so nothing hangs

HOST = "matrix.test"
URL = f"http://{HOST}/"
BODY = b"x" * 1000  # served with a Content-Length, so a cut inside it is detectable
MID_BODY = 500  # the status line and headers are ~40 bytes: byte 500 is inside the body
IN_HEADERS = 20  # "HTTP/1.1 200 OK\r\n" is 17 bytes: byte 20 is inside the header block

# libcurl's names for the codes curlfault documents; pycurl's E_* constants alias several
# codes (7 is also E_MULTI_ADDED_ALREADY), so they cannot name a code reliably.
_CURLCODE_NAMES = {
    0: "OK",
    1: "UNSUPPORTED_PROTOCOL",
    6: "COULDNT_RESOLVE_HOST",
    7: "COULDNT_CONNECT",
    8: "WEIRD_SERVER_REPLY",
    16: "HTTP2",
    18: "PARTIAL_FILE",
    23: "WRITE_ERROR",
    28: "OPERATION_TIMEDOUT",
    35: "SSL_CONNECT_ERROR",
    42: "ABORTED_BY_CALLBACK",
    52: "GOT_NOTHING",
    55: "SEND_ERROR",
    56: "RECV_ERROR",
    60: "PEER_FAILED_VERIFICATION",
    61: "BAD_CONTENT_ENCODING",
    81: "AGAIN",
    90: "SSL_PINNEDPUBKEYNOTMATCH",
    92: "HTTP2_STREAM",
    98: "SSL_CLIENTCERT",
    100: "TOO_LARGE",
}


def curlcode_name(code: int | None) -> str:
    """libcurl's name for ``code`` (``"COULDNT_CONNECT"`` for 7), or ``""`` if unknown."""
    if code is None:
        return ""
    return _CURLCODE_NAMES.get(code, "")


Setup = Callable[[FakeNetwork, str], object]
Transfer = Callable[[str, float, tuple[tuple[str, Any], ...]], tuple[int | None, str, float]]


@dataclass(frozen=True)
class Case:
    """One fault to prove: how to declare it, what to fetch, what libcurl must return.

    ``setup(net, transport)`` declares the fault on a fresh network; ``transport`` is the
    endpoint transport of this run ("socketpair" or "tcp"). ``problem`` is the error class
    ``net.check()`` must raise afterwards (None: it must raise nothing).
    """

    label: str
    setup: Setup
    url: str
    expected: int
    problem: type[CurlFaultError] | None = None
    note: str = ""
    # (pycurl option name, value) pairs set on the handle after the defaults, e.g.
    # ("TIMEOUT_MS", 300) for a fault that only a timeout ends.
    options: tuple[tuple[str, Any], ...] = ()
    # A transfer of its own, for protocols that one perform() does not cover (WebSocket
    # frames, several HTTP/2 streams): transfer(url, timeout, options) returns
    # (CURLcode or None, message, milliseconds) like the default ``_transfer``.
    transfer: Transfer | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise UsageError(f"Case label must be a non-empty str, got {self.label!r}")
        if not callable(self.setup):
            raise UsageError(f"Case setup must be callable(net, transport), got {self.setup!r}")
        if isinstance(self.expected, bool) or not isinstance(self.expected, int):
            raise UsageError(f"Case expected must be an int CURLcode, got {self.expected!r}")


@dataclass(frozen=True)
class Row:
    """The outcome of one case over one transport.

    ``observed`` is None when the transfer raised a curlfault error instead of a CURLcode
    (the error is in ``message``). ``served_over`` lists the transports the fake actually
    used (a reset fault always uses TCP; a refused connection uses none).
    """

    label: str
    transport: str
    expected: int
    observed: int | None
    message: str
    ms: float
    ledger_ok: bool
    expected_problem: str
    problems: tuple[str, ...]
    served_over: tuple[str, ...]
    note: str = ""

    @property
    def problems_ok(self) -> bool:
        expected = {self.expected_problem} if self.expected_problem else set()
        return set(self.problems) == expected

    @property
    def ok(self) -> bool:
        """The documented code was observed, the ledger balances, check() said what it should."""
        return self.observed == self.expected and self.ledger_ok and self.problems_ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.label,
            "transport": self.transport,
            "served_over": list(self.served_over),
            "expected": self.expected,
            "expected_name": curlcode_name(self.expected),
            "observed": self.observed,
            "observed_name": curlcode_name(self.observed),
            "message": self.message,
            "ms": round(self.ms, 3),
            "ledger": "ok" if self.ledger_ok else "LEAK",
            "expected_problem": self.expected_problem or None,
            "problems": list(self.problems),
            "result": "OK" if self.ok else "MISMATCH",
            "ok": self.ok,
            "note": self.note,
        }


# the cases ---------------------------------------------------------------------------------
def http_endpoint(
    fault: faults.StreamFault | None = None,
    *,
    connection_faults: Sequence[faults.ConnectionFault] = (),
    host: str = HOST,
    body: bytes = BODY,
    method: str = "GET",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Setup:
    """A setup that answers ``method /`` on ``host`` with ``body``, cut by ``fault`` if given."""

    def setup(net: FakeNetwork, transport: str) -> None:
        endpoint = net.http(host, transport=transport)
        if connection_faults:
            endpoint.connection_faults(*connection_faults)
        endpoint.route(method, "/").respond(status, body=body, headers=headers, fault=fault)

    return setup


def refused_host(host: str) -> Setup:
    """A setup that declares ``net.refuse(host)``; transport does not apply to refusals."""

    def setup(net: FakeNetwork, transport: str) -> None:
        net.refuse(host)

    return setup


CHUNKED = {"Transfer-Encoding": "chunked"}
SHORT = (("TIMEOUT_MS", 300),)  # faults that only the client's timeout ends
BIG_UPLOAD = b"u" * 3_000_000  # bigger than the socket buffers: the upload blocks
GARBAGE = faults.garbage(b"SPAM SPAM\r\n\r\n")


# Protocol rows live in modules of their own; they import Case and the helpers above.
from . import _matrix_h2, _matrix_http1, _matrix_tls, _matrix_ws  # noqa: E402

CASES: tuple[Case, ...] = (
    Case("no fault (control GET)", http_endpoint(), URL, 0),
    Case(
        f"{faults.refuse()!r} via connection_faults",
        http_endpoint(connection_faults=[faults.refuse()]),
        URL,
        faults.Refuse.curlcode,
    ),
    Case(
        "net.refuse(host)",
        refused_host("down.matrix.test"),
        "http://down.matrix.test/",
        faults.Refuse.curlcode,
    ),
    *_matrix_http1.CONNECTION_CASES,
    Case(
        "unknown host, strict",
        http_endpoint(),
        "http://other.matrix.test/",
        7,
        problem=UnexpectedConnection,
        note="refused at the sink address; never resolved",
    ),
    Case(f"{faults.close(0)!r} before any byte", http_endpoint(faults.close(0)), URL, 52),
    Case(
        f"{faults.close(IN_HEADERS)!r} inside headers",
        http_endpoint(faults.close(IN_HEADERS)),
        URL,
        0,
        note="libcurl quirk: EOF ends the headers, then the body is read to EOF",
    ),
    Case(
        f"{faults.close(MID_BODY)!r} mid-body",
        http_endpoint(faults.close(MID_BODY)),
        URL,
        faults.Close.curlcode,
    ),
    Case(
        f"{faults.reset(0)!r} before any byte",
        http_endpoint(faults.reset(0)),
        URL,
        faults.Reset.curlcode,
        note="RST needs TCP: served over a loopback TCP pair on every transport",
    ),
    Case(
        f"{faults.reset(MID_BODY)!r} mid-body",
        http_endpoint(faults.reset(MID_BODY)),
        URL,
        faults.Reset.curlcode,
        note="RST needs TCP: served over a loopback TCP pair on every transport",
    ),
    *_matrix_http1.STREAM_CASES,
    *_matrix_tls.CASES,
    *_matrix_h2.CASES,
    *_matrix_ws.CASES,
)


# running -----------------------------------------------------------------------------------
def _transfer(
    url: str, timeout: float, options: tuple[tuple[str, Any], ...] = ()
) -> tuple[int | None, str, float]:
    """(CURLcode or None, libcurl's message, milliseconds) of one transfer on a fresh handle."""
    curl = pycurl.Curl()  # looked up now: inside intercept() this is the routing subclass
    try:
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEFUNCTION, _discard)
        curl.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
        for name, value in options:
            curl.setopt(getattr(pycurl, name), value)
        start = time.perf_counter()
        code: int | None = 0
        message = ""
        try:
            curl.perform()
        except pycurl.error as exc:
            code, message = _code_and_message(exc)
        except CurlFaultError as exc:
            # The engine failed the transfer itself: report it in the row, do not crash.
            first_line = (str(exc).splitlines() or [""])[0]
            code, message = None, f"{type(exc).__name__}: {first_line}"
        ms = (time.perf_counter() - start) * 1000
    finally:
        curl.close()  # before the audit: a pooled connection is closed with its handle
    return code, message, ms


def _code_and_message(exc: pycurl.error) -> tuple[int | None, str]:
    """(CURLcode, libcurl's message) of a ``pycurl.error`` raised by ``perform()``."""
    args: tuple[object, ...] = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    # pycurl's own argument errors carry only a message: no CURLcode was observed.
    return None, str(args[0]) if args else ""


def _discard(data: bytes) -> None:
    return None


def _check_problems(net: FakeNetwork) -> tuple[str, ...]:
    """The class names of every problem ``net.check()`` raises, in order."""
    try:
        net.check()
    except CurlFaultError as exc:
        return tuple(type(p).__name__ for p in exc.problems)
    return ()


def run_case(case: Case, transport: str, *, timeout: float = DEFAULT_TIMEOUT) -> Row:
    """Run ``case`` over ``transport`` in a fresh, strict, intercepting ``FakeNetwork``."""
    net = FakeNetwork(label=f"curlfault matrix: {case.label} [{transport}]")
    try:
        case.setup(net, transport)
        with net.intercept():
            transfer = case.transfer or _transfer
            observed, message, ms = transfer(case.url, timeout, case.options)
        # Audit before check(): check() also audits and forgets what it reported.
        ledger_ok = net.ledger.audit().ok
        problems = _check_problems(net)
        served = tuple(sorted({c.transport for c in net.connections if c.transport}))
    finally:
        net.close()
    return Row(
        label=case.label,
        transport=transport,
        expected=case.expected,
        observed=observed,
        message=message,
        ms=ms,
        ledger_ok=ledger_ok,
        expected_problem=case.problem.__name__ if case.problem is not None else "",
        problems=problems,
        served_over=served,
        note=case.note,
    )


def run_matrix(
    transports: Iterable[str] = TRANSPORTS,
    cases: Sequence[Case] = CASES,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Row]:
    """Run every case over every transport; one ``Row`` each, cases in order, then transports.

    ``transports`` is any of "socketpair", "tcp" and "listener". ``cases`` defaults to every
    documented fault; pass your own ``Case`` list to prove a fault of your own.
    """
    chosen = list(transports)
    for transport in chosen:
        if transport not in TRANSPORTS:
            raise UsageError(
                f"transport {transport!r} is not known; use one of {', '.join(TRANSPORTS)}"
            )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return [run_case(case, t, timeout=timeout) for case in cases for t in chosen]
