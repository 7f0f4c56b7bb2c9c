"""WebSocket rows of the fault matrix (appended to ``curlfault._matrix.CASES``).

A WebSocket fault is met by ``ws_recv``, not by ``perform()``: each row's transfer connects
with ``CONNECT_ONLY=2`` (``perform()`` does the handshake), sends one message or ping, and
calls ``ws_recv`` until it raises a ``pycurl.error`` (that CURLcode), until the frames the
row expects have arrived (0), or until the row's own deadline (``WAIT``) passes with
``ws_recv`` still raising ``BlockingIOError``: the row reports that as 81 ``CURLE_AGAIN``
(libcurl's "no data yet"), a code libcurl does not end a transfer with by itself. The
"client pings, no fault" control row shows that the pong does arrive in time.
"""

from __future__ import annotations

import time
from typing import Any

import pycurl

from . import faults
from ._errors import CurlFaultError
from ._matrix import HOST, Case, Setup, Transfer
from ._network import FakeNetwork
from ._websocket import WebSocketRoute

# Serving starts with the first connection; import wsproto now so that the first row's
# time does not include it.
from .protocols import websocket as _websocket  # noqa: F401

__all__ = ["CASES", "ws_transfer"]

PATH = "/ws"
WS_URL = f"ws://{HOST}{PATH}"
WSS_URL = f"wss://{HOST}{PATH}"
WAIT = 0.3  # seconds ws_recv may keep saying "no data yet" before the row reports 81
AGAIN = 81  # CURLE_AGAIN, which pycurl raises as BlockingIOError


def ws_endpoint(script: Any, *, tls: bool = False) -> Setup:
    """A setup whose WebSocket route at ``PATH`` is scripted by ``script(route)``."""

    def setup(net: FakeNetwork, transport: str) -> None:
        endpoint = (net.https if tls else net.http)(HOST, transport=transport)
        script(endpoint.websocket(PATH))

    return setup


def ws_transfer(
    send: str | bytes | None = None, *, ping: bool = False, want: int | None = None
) -> Transfer:
    """A matrix transfer: handshake, send ``send`` (and a ping), read frames.

    It returns 0 once ``want`` frames have arrived, the CURLcode of the ``ws_recv`` that
    failed, or 81 when ``ws_recv`` still has nothing after ``WAIT`` seconds.
    """

    def transfer(
        url: str, timeout: float, options: tuple[tuple[str, Any], ...]
    ) -> tuple[int | None, str, float]:
        curl = pycurl.Curl()
        start = time.perf_counter()
        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.CONNECT_ONLY, 2)
            curl.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
            for name, value in options:
                curl.setopt(getattr(pycurl, name), value)
            frames = 0
            try:
                curl.perform()
                if send is not None:
                    curl.ws_send(send)
                if ping:
                    curl.ws_send(b"are you there", pycurl.WS_PING)
                deadline = time.monotonic() + min(WAIT, timeout)
                while want is None or frames < want:
                    try:
                        _data, meta = curl.ws_recv(65536)
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            ms = (time.perf_counter() - start) * 1000
                            return AGAIN, f"{frames} frame(s), then no data for {WAIT}s", ms
                        time.sleep(0.001)
                        continue
                    if meta.bytesleft == 0:
                        frames += 1
                        deadline = time.monotonic() + min(WAIT, timeout)
                code: int | None = 0
                message = f"{frames} frame(s)"
            except pycurl.error as exc:
                code, message = _code_and_message(exc.args)
            except CurlFaultError as exc:
                first_line = (str(exc).splitlines() or [""])[0]
                code, message = None, f"{type(exc).__name__}: {first_line}"
            return code, message, (time.perf_counter() - start) * 1000
        finally:
            curl.close()

    return transfer


def _code_and_message(args: tuple[object, ...]) -> tuple[int | None, str]:
    if len(args) == 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return None, str(args[0]) if args else ""  # pycurl's own argument errors


def _case(
    label: str,
    script: Any,
    expected: int,
    transfer: Transfer,
    *,
    tls: bool = False,
    note: str = "",
) -> Case:
    return Case(
        label,
        ws_endpoint(script, tls=tls),
        WSS_URL if tls else WS_URL,
        expected,
        note=note,
        transfer=transfer,
    )


def _echo(route: WebSocketRoute) -> None:
    route.echo()


FRAGMENT = faults.ws_fragment(4)
CASES: tuple[Case, ...] = (
    _case("websocket echo (control)", _echo, 0, ws_transfer("hello", want=1)),
    _case("websocket echo over wss (control)", _echo, 0, ws_transfer("hello", want=1), tls=True),
    _case(
        f"{faults.ws_close(1011, 'oops')!r}",
        lambda r: r.send("hi").fault(faults.ws_close(1011, "oops")),
        faults.WsClose.curlcode,
        ws_transfer(),
        note="ws_recv returns the close frame (WS_CLOSE), then raises 52",
    ),
    _case(
        f"{faults.ws_drop()!r}",
        lambda r: r.send("hi").fault(faults.ws_drop()),
        faults.WsDrop.curlcode,
        ws_transfer(),
        note="no close frame; a WRITEFUNCTION transfer ends with 0 instead",
    ),
    _case(
        f"{faults.ws_drop(reset=True)!r}",
        lambda r: r.send("hi").fault(faults.ws_drop(reset=True)),
        56,
        ws_transfer(),
        note="RST needs TCP: served over a loopback TCP pair on every transport",
    ),
    _case(
        f"{faults.ws_drop()!r} over wss",
        lambda r: r.send("hi").fault(faults.ws_drop()),
        faults.WsDrop.curlcode,
        ws_transfer(),
        tls=True,
    ),
    _case(
        f"{FRAGMENT!r} on 11 characters",
        lambda r: r.send("hello world", fault=FRAGMENT),
        faults.WsFragment.curlcode,
        ws_transfer(want=3),
        note="three frames; ws_recv flags have WS_CONT on all but the last",
    ),
    _case(
        "ws_oversized() declaring 2**63 bytes",
        lambda r: r.send("hi", fault=faults.ws_oversized()),
        faults.WsOversized.curlcode,
        ws_transfer(),
        note="libcurl refuses a 64-bit length with the top bit set",
    ),
    _case(
        f"{faults.ws_cut(50)!r} on 100 characters",
        lambda r: r.send("x" * 100, fault=faults.ws_cut(50)),
        faults.WsCut.curlcode,
        ws_transfer(),
        note="ws_recv returns the 48 payload bytes that came (bytesleft 52), then raises 52",
    ),
    _case(
        f"{faults.ws_cut(50, reset=True)!r} on 100 characters",
        lambda r: r.send("x" * 100, fault=faults.ws_cut(50, reset=True)),
        56,
        ws_transfer(),
        note="RST needs TCP: served over a loopback TCP pair on every transport",
    ),
    _case(
        f"{faults.ws_cut(50)!r} on 100 characters over wss",
        lambda r: r.send("x" * 100, fault=faults.ws_cut(50)),
        faults.WsCut.curlcode,
        ws_transfer(),
        tls=True,
    ),
    _case(
        "client pings, no fault (control)",
        lambda r: None,
        0,
        ws_transfer(ping=True, want=1),
        note="the pong arrives",
    ),
    _case(
        f"{faults.ws_no_pong()!r}, client pings",
        lambda r: r.fault(faults.ws_no_pong()),
        faults.WsNoPong.curlcode,
        ws_transfer(ping=True, want=1),
        note=f"no pong before the client's own {WAIT}s deadline (ws_recv: BlockingIOError)",
    ),
)
