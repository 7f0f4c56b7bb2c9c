"""HTTP/2 rows of the fault matrix (appended to ``curlfault._matrix.CASES``).

Each row serves ``matrix.test`` with ``http2=True`` and makes the client speak HTTP/2: over
TLS with ALPN (``https://``) or with prior knowledge (h2c, ``http://``). The multiplexing
row runs several transfers at once through a ``CurlMulti`` and proves they shared one
connection from what the fake answered each of them.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import pycurl

from . import faults
from ._http import Request, Response
from ._matrix import BODY, HOST, SHORT, Case, Setup
from ._network import FakeNetwork

__all__ = ["CASES"]

H2_URL = f"https://{HOST}/"
H2C_URL = f"http://{HOST}/"
H2_TLS = (("HTTP_VERSION", pycurl.CURL_HTTP_VERSION_2TLS),)
H2C = (("HTTP_VERSION", pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE),)
UPLOAD = b"u" * 200_000  # beyond the initial 65,535-byte window
STREAMS = 4


def h2_endpoint(*steps: faults.StreamFault | None, tls: bool = True, method: str = "GET") -> Setup:
    """A setup whose route answers with one step per fault (None: healthy); the last repeats."""

    def setup(net: FakeNetwork, transport: str) -> None:
        make = net.https if tls else net.http
        route = make(HOST, transport=transport, http2=True).route(method, "/")
        for fault in steps or (None,):
            route.respond(200, body=BODY, fault=fault)

    return setup


def _tagged(net: FakeNetwork, transport: str) -> None:
    def tag(request: Request) -> Response:
        return Response.make(200, body=f"{request.connection_id}:{request.stream_id}")

    net.http(HOST, transport=transport, http2=True).get("/").handle(tag)


def _multiplexed(
    url: str, timeout: float, options: tuple[tuple[str, Any], ...] = ()
) -> tuple[int | None, str, float]:
    """``STREAMS`` transfers at once in one multiplexing CurlMulti (PIPEWAIT).

    0 when every one succeeded on one connection with distinct streams; otherwise the first
    failing CURLcode, or None with what went wrong.
    """
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    handles: list[Any] = []
    bodies: list[list[bytes]] = []
    start = time.perf_counter()
    try:
        for _ in range(STREAMS):
            curl = pycurl.Curl()  # inside intercept(): the routing subclass
            chunks: list[bytes] = []
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
            curl.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
            curl.setopt(pycurl.PIPEWAIT, 1)
            # Closed through the closesocket callback when the last stream ends, not by
            # pycurl in C when the multi closes.
            curl.setopt(pycurl.FORBID_REUSE, 1)
            for name, value in options:
                curl.setopt(getattr(pycurl, name), value)
            multi.add_handle(curl)
            handles.append(curl)
            bodies.append(chunks)
        codes: dict[int, tuple[int, str]] = {}
        deadline = time.monotonic() + timeout
        while len(codes) < len(handles) and time.monotonic() < deadline:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, ok, failed = multi.info_read()
            codes.update({id(c): (0, "") for c in ok})
            codes.update({id(c): (code, msg) for c, code, msg in failed})
            multi.select(0.01)
        ms = (time.perf_counter() - start) * 1000
    finally:
        for curl in handles:
            multi.remove_handle(curl)
        with warnings.catch_warnings():
            # A connection still pooled is closed by pycurl in C; the ledger sees that.
            warnings.filterwarnings("ignore", "closesocket_callback failed", RuntimeWarning)
            multi.close()
        for curl in handles:
            curl.close()
    for curl in handles:
        code, message = codes.get(id(curl), (-1, "no result before the deadline"))
        if code:
            return (code if code > 0 else None), message, ms
    tags = [b"".join(chunks).decode("ascii", "replace").split(":") for chunks in bodies]
    connections = {t[0] for t in tags}
    streams = {t[-1] for t in tags}
    if len(connections) != 1 or len(streams) != STREAMS:
        return None, f"{STREAMS} transfers used connections {connections}, streams {streams}", ms
    return 0, "", ms


CASES: tuple[Case, ...] = (
    Case("HTTP/2 GET over TLS (ALPN h2)", h2_endpoint(), H2_URL, 0, options=H2_TLS),
    Case("HTTP/2 GET, h2c with prior knowledge", h2_endpoint(tls=False), H2C_URL, 0, options=H2C),
    Case(
        f"HTTP/2: {STREAMS} streams on one connection (CurlMulti, PIPEWAIT)",
        _tagged,
        H2C_URL,
        0,
        options=H2C,
        transfer=_multiplexed,
    ),
    Case(
        f"{faults.rst_stream()!r}",
        h2_endpoint(faults.rst_stream()),
        H2_URL,
        faults.RstStream.curlcode,
        options=H2_TLS,
    ),
    Case(
        f"{faults.rst_stream('NO_ERROR')!r}",
        h2_endpoint(faults.rst_stream("NO_ERROR")),
        H2_URL,
        92,
        options=H2_TLS,
        note="even NO_ERROR: the stream ended before its response",
    ),
    Case(
        f"{faults.rst_stream(after_bytes=500)!r}",
        h2_endpoint(faults.rst_stream(after_bytes=500), tls=False),
        H2C_URL,
        92,
        options=H2C,
    ),
    Case(
        f"{faults.refused_stream()!r} on every connection",
        h2_endpoint(faults.refused_stream()),
        H2_URL,
        faults.RefusedStream.curlcode,
        options=H2_TLS,
        note="libcurl retries on 5 new connections, then gives up",
    ),
    Case(
        f"{faults.refused_stream()!r} on the first connection",
        h2_endpoint(faults.refused_stream(), None),
        H2_URL,
        0,
        options=H2_TLS,
        note="the retry on a new connection gets the next step",
    ),
    Case(
        f"{faults.goaway()!r} on every connection",
        h2_endpoint(faults.goaway()),
        H2_URL,
        faults.GoAway.curlcode,
        options=H2_TLS,
        note="libcurl retries on 5 new connections, then gives up",
    ),
    Case(
        f"{faults.goaway()!r} on the first connection",
        h2_endpoint(faults.goaway(), None, tls=False),
        H2C_URL,
        0,
        options=H2C,
        note="the retry on a new connection gets the next step",
    ),
    Case(
        f"{faults.goaway(1)!r}",
        h2_endpoint(faults.goaway(1)),
        H2_URL,
        0,
        options=H2_TLS,
        note="stream 1 is covered: answered, then GOAWAY (graceful shutdown)",
    ),
    Case(
        f"{faults.goaway(error_code='PROTOCOL_ERROR')!r}",
        h2_endpoint(faults.goaway(error_code="PROTOCOL_ERROR")),
        H2_URL,
        92,
        options=H2_TLS,
        note="an error GOAWAY is not retried: libcurl resets the stream",
    ),
    Case(
        f"{faults.bad_frame()!r}",
        h2_endpoint(faults.bad_frame()),
        H2_URL,
        faults.BadFrame.curlcode,
        options=H2_TLS,
        note="a SETTINGS frame of 5 bytes: nghttp2 FRAME_SIZE_ERROR",
    ),
    Case(
        f"{faults.flow_stall()!r} on a 200 kB POST",
        h2_endpoint(faults.flow_stall(), tls=False, method="POST"),
        H2C_URL,
        faults.FlowStall.curlcode,
        options=(*H2C, *SHORT, ("POSTFIELDS", UPLOAD)),
        note="no WINDOW_UPDATE: the upload stops after 65,535 bytes",
    ),
    Case(
        f"{faults.delay(0.05)!r} on an HTTP/2 stream, under TIMEOUT",
        h2_endpoint(faults.delay(0.05)),
        H2_URL,
        0,
        options=H2_TLS,
        note="the stream's answer comes late; the connection's other streams do not wait",
    ),
    Case(
        f"{faults.delay(1.0)!r} on an HTTP/2 stream, past TIMEOUT",
        h2_endpoint(faults.delay(1.0), tls=False),
        H2C_URL,
        faults.Delay.curlcode,
        options=(*H2C, *SHORT),
    ),
    Case(
        f"{faults.stall()!r} on an HTTP/2 stream",
        h2_endpoint(faults.stall()),
        H2_URL,
        faults.Stall.curlcode,
        options=(*H2_TLS, *SHORT),
        note="never answered: the client's TIMEOUT ends it",
    ),
    Case(
        f"{faults.stall(after_bytes=500)!r} on an HTTP/2 stream",
        h2_endpoint(faults.stall(after_bytes=500), tls=False),
        H2C_URL,
        faults.Stall.curlcode,
        options=(*H2C, *SHORT),
        note="500 body bytes, then nothing: the client's TIMEOUT ends it",
    ),
    Case(
        f"{faults.delay(0.05, after_bytes=500)!r} on an HTTP/2 stream",
        h2_endpoint(faults.delay(0.05, after_bytes=500)),
        H2_URL,
        0,
        options=H2_TLS,
    ),
    Case(
        f"{faults.drip(1000, chunk=10)!r} on an HTTP/2 stream, past TIMEOUT",
        h2_endpoint(faults.drip(1000, chunk=10), tls=False),
        H2C_URL,
        28,
        options=(*H2C, *SHORT),
        note="DATA frames of 10 bytes, 10 ms apart",
    ),
    Case(
        f"{faults.slicer(100, 0.002)!r} on an HTTP/2 stream",
        h2_endpoint(faults.slicer(100, 0.002)),
        H2_URL,
        0,
        options=H2_TLS,
    ),
    Case(
        f"{faults.latency(0.01, jitter=0.01, seed=7)!r} on an HTTP/2 stream",
        h2_endpoint(faults.latency(0.01, jitter=0.01, seed=7), tls=False),
        H2C_URL,
        0,
        options=H2C,
    ),
    Case(
        f"{faults.settings(max_concurrent_streams=1, initial_window_size=0)!r}",
        h2_endpoint(faults.settings(max_concurrent_streams=1, initial_window_size=0)),
        H2_URL,
        faults.Settings.curlcode,
        options=H2_TLS,
        note="libcurl acknowledges the change",
    ),
)
