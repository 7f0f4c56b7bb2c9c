"""HTTP/2 on real pycurl: h2 over TLS (ALPN) and h2c with prior knowledge, many streams on one
connection, and every HTTP/2 fault's CURLcode, frames and ledger, over both pair transports."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pycurl
import pytest
from cfhelpers import Result, transfer

from curlfault import FakeNetwork, Response, ServerError, UnmatchedRequest, UsageError, faults
from curlfault.protocols.http2 import PREFACE, Frame, FrameLog

BODY = bytes(range(256)) * 20  # 5120 bytes
H2 = {
    "https": pycurl.CURL_HTTP_VERSION_2TLS,
    "http": pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE,
}
SCHEMES = ["https", "http"]  # h2 by ALPN, h2c with prior knowledge
TRANSPORTS = ["socketpair", "tcp"]


def endpoint(net: FakeNetwork, scheme: str, transport: str = "socketpair") -> Any:
    make = net.https if scheme == "https" else net.http
    return make("api.test", transport=transport, http2=True)


def get(scheme: str, path: str = "/", version: int | None = None, **opts: Any) -> Result:
    opts.setdefault("TIMEOUT_MS", 10_000)
    return transfer(
        f"{scheme}://api.test{path}",
        HTTP_VERSION=H2[scheme] if version is None else version,
        **opts,
    )


def frames(net: FakeNetwork, direction: str, kind: str) -> list[Frame]:
    return [
        f for c in net.connections for f in c.frames if (f.direction, f.type) == (direction, kind)
    ]


def balanced(net: FakeNetwork) -> None:
    report = net.ledger.audit()
    assert report.ok, report
    assert all(r.closes == 1 for r in net.ledger.records)


# serving --------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_get_over_http2(curlfault: FakeNetwork, scheme: str, transport: str) -> None:
    api = endpoint(curlfault, scheme, transport)
    api.get("/items").respond(200, body=BODY, headers={"X-Kind": "h2", "Connection": "close"})
    r = get(scheme, "/items")
    assert (r.code, r.status, r.body) == (0, 200, BODY)
    assert r.headers.startswith(b"HTTP/2 200")
    assert b"x-kind: h2" in r.headers  # Connection is hop-by-hop: not sent over HTTP/2
    assert b"connection:" not in r.headers.lower()
    (req,) = api.requests
    assert (req.http_version, req.stream_id, req.method, req.path) == ("2", 1, "GET", "/items")
    (conn,) = api.connections
    assert [f.type for f in conn.frames if f.direction == "recv"][:1] == ["SETTINGS"]
    assert ("sent", "HEADERS", 1) in [(f.direction, f.type, f.stream_id) for f in conn.frames]
    if scheme == "https":
        assert conn.tls["alpn"] == "h2"
    balanced(curlfault)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_header_list_past_64_kib_never_leaves_the_client(
    curlfault: FakeNetwork, scheme: str
) -> None:
    # The endpoint advertises h2's SETTINGS_MAX_HEADER_LIST_SIZE (65536): libcurl's
    # nghttp2 refuses to send a larger header block (55 SEND_ERROR) and sends nothing for
    # the stream, so there is no request to record and nothing for check() to report, as
    # with a real server that advertises the same limit.
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=BODY)
    assert get(scheme, HTTPHEADER=["X-Big: " + "a" * 60_000]).code == 0
    assert get(scheme, HTTPHEADER=["X-Big: " + "a" * 70_000]).code == pycurl.E_SEND_ERROR
    assert len(api.requests) == 1
    assert curlfault.problems == []
    assert len(frames(curlfault, "recv", "HEADERS")) == 1  # the first request's only


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reason_is_not_sent_over_http2(curlfault: FakeNetwork, scheme: str) -> None:
    """HTTP/2 has no reason phrase: a route's reason is for HTTP/1.1 clients only."""
    endpoint(curlfault, scheme).get("/").respond(404, body=BODY, reason="Gone fishing")
    r = get(scheme, "/")
    assert (r.code, r.status, r.body) == (0, 404, BODY)
    assert r.headers.startswith(b"HTTP/2 404 \r\n")
    assert b"fishing" not in r.headers
    balanced(curlfault)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_post_body_and_handler_over_http2(curlfault: FakeNetwork, scheme: str) -> None:
    api = endpoint(curlfault, scheme)
    api.post("/echo").handle(lambda req: Response.make(201, body=req.body[::-1]))
    upload = b"abc" * 50_000  # beyond the initial 65,535-byte window: WINDOW_UPDATEs flow
    r = get(scheme, "/echo", POSTFIELDS=upload)
    assert (r.code, r.status, r.body) == (0, 201, upload[::-1])
    assert api.requests[0].body == upload
    assert frames(curlfault, "sent", "WINDOW_UPDATE")
    balanced(curlfault)


@pytest.mark.parametrize("size", [150_000, 1_000_000])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_upload_tail_is_served_without_the_safety_net_scan(
    scheme: str, transport: str, size: int
) -> None:
    # libcurl announces DATA_OUT when it hands data to nghttp2, which writes the frames
    # later: an upload's last frames arrive with no debug event after them. While a request
    # body is incomplete the loop thread watches the connection, so their arrival wakes it.
    # With the scan made a minute long, the POST only completes within TIMEOUT that way.
    from curlfault import Loop

    loop = Loop(name="h2-upload-no-scan")
    loop.SCAN_SECONDS = 60.0
    upload = bytes(range(256)) * (size // 256)
    try:
        with FakeNetwork(loop=loop) as net:
            api = endpoint(net, scheme, transport)
            api.post("/up").handle(lambda req: Response.make(201, body=str(len(req.body))))
            with net.intercept():
                results = [get(scheme, "/up", POSTFIELDS=upload) for _ in range(2)]
            assert [(r.code, r.status, r.body) for r in results] == [
                (0, 201, str(len(upload)).encode())
            ] * 2
            assert [r.body == upload for r in api.requests] == [True, True]
            assert {r.http_version for r in api.requests} == {"2"}
            assert not loop._watched  # watched only while a body was arriving
    finally:
        loop.stop()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_http1_client_of_an_http2_endpoint_is_served_http1(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=b"one")
    r = get(scheme, version=pycurl.CURL_HTTP_VERSION_1_1)
    assert (r.code, r.body) == (0, b"one")
    assert r.headers.startswith(b"HTTP/1.1 200")
    assert api.requests[0].http_version == "1.1"
    assert api.requests[0].stream_id == 0
    assert api.connections[0].frames == []


def test_h2c_upgrade_request_is_served_http1(curlfault: FakeNetwork) -> None:
    # HTTP_VERSION 2.0 on http:// asks "Upgrade: h2c"; the fake, like many servers, ignores it.
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"plain")
    r = get("http", version=pycurl.CURL_HTTP_VERSION_2_0)
    assert (r.code, r.body) == (0, b"plain")
    assert api.requests[0].header("upgrade") == "h2c"
    assert api.requests[0].http_version == "1.1"


def test_http2_endpoint_reuses_one_connection_for_sequential_requests(
    curlfault: FakeNetwork,
) -> None:
    api = endpoint(curlfault, "https")
    api.get("/").respond(200, body=b"again")
    c = pycurl.Curl()
    try:
        for _ in range(3):
            assert get("https", curl=c).body == b"again"
    finally:
        c.close()
    assert [r.stream_id for r in api.requests] == [1, 3, 5]
    assert len(api.connections) == 1
    balanced(curlfault)


# multiplexing ---------------------------------------------------------------------------
def run_multi(urls: list[str], version: int) -> tuple[list[int], list[bytes]]:
    """Run ``urls`` at once in one CurlMulti that multiplexes (PIPEWAIT); codes and bodies."""
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    handles, bodies = [], []
    try:
        for url in urls:
            c = pycurl.Curl()
            body = io.BytesIO()
            c.setopt(pycurl.URL, url)
            c.setopt(pycurl.WRITEDATA, body)
            c.setopt(pycurl.HTTP_VERSION, version)
            c.setopt(pycurl.PIPEWAIT, 1)  # wait for the first connection, then share it
            c.setopt(pycurl.TIMEOUT, 10)
            multi.add_handle(c)
            handles.append(c)
            bodies.append(body)
        deadline = time.monotonic() + 20
        codes: dict[int, int] = {}
        while len(codes) < len(handles) and time.monotonic() < deadline:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, ok, failed = multi.info_read()
            codes.update({id(c): 0 for c in ok})
            codes.update({id(c): code for c, code, _ in failed})
            multi.select(0.05)
        return [codes.get(id(c), -1) for c in handles], [b.getvalue() for b in bodies]
    finally:
        for c in handles:
            multi.remove_handle(c)
        # The shared connection is pooled in the multi: pycurl closes it in C here (the
        # fixture ignores its RuntimeWarning; the ledger sees the descriptor gone).
        multi.close()
        for c in handles:
            c.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_many_streams_share_one_connection(
    curlfault: FakeNetwork, scheme: str, transport: str
) -> None:
    api = endpoint(curlfault, scheme, transport)
    n = 6
    for i in range(n):
        api.get(f"/{i}").respond(200, body=b"%d" % i * 30_000)
    codes, bodies = run_multi([f"{scheme}://api.test/{i}" for i in range(n)], H2[scheme])
    assert codes == [0] * n
    assert bodies == [b"%d" % i * 30_000 for i in range(n)]
    assert len(curlfault.ledger.records) == 1  # exactly one opensocket
    assert len(api.connections) == 1
    ids = [r.stream_id for r in api.requests]
    assert len(set(ids)) == n
    assert all(i % 2 == 1 for i in ids)
    assert {r.connection_id for r in api.requests} == {api.connections[0].id}
    assert curlfault.ledger.audit().ok


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rst_stream_fails_one_stream_and_spares_the_others(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/ok").respond(200, body=b"fine")
    api.get("/bad").respond(200, body=BODY, fault=faults.rst_stream(after_bytes=100))
    urls = [f"{scheme}://api.test/{p}" for p in ("ok", "bad", "ok", "ok")]
    codes, bodies = run_multi(urls, H2[scheme])
    assert codes == [0, 92, 0, 0]
    assert bodies[1] == BODY[:100]
    assert len(api.connections) == 1
    (rst,) = frames(curlfault, "sent", "RST_STREAM")
    assert rst.error_code == 2
    assert rst.stream_id == next(r.stream_id for r in api.requests if r.path == "/bad")
    assert curlfault.ledger.audit().ok
    # the trace header names the stream the fault acted on, not only the connection's URL
    conn = api.connections[0]
    assert conn.fault_on == f"GET /bad (stream {rst.stream_id})"
    header = conn.describe().splitlines()[0]
    assert header.endswith(f"fault={conn.fault!r} on GET /bad (stream {rst.stream_id})")


# faults -----------------------------------------------------------------------------------
FAULT_CODES = [
    (faults.rst_stream(), 92, "RST_STREAM"),
    (faults.rst_stream("NO_ERROR"), 92, "RST_STREAM"),
    (faults.rst_stream("CANCEL", after_bytes=0), 92, "RST_STREAM"),
    (faults.rst_stream(error_code=11, after_bytes=1000), 92, "RST_STREAM"),
    (faults.goaway(0, error_code="PROTOCOL_ERROR"), 92, "GOAWAY"),
    (faults.goaway(1), 0, "GOAWAY"),
    (faults.bad_frame(), 16, "SETTINGS"),
    (faults.bad_frame(b"\x00" * 9), 16, "DATA"),  # DATA on stream 0: PROTOCOL_ERROR
    (faults.settings(max_concurrent_streams=1, initial_window_size=0), 0, "SETTINGS"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("fault", "code", "frame"), FAULT_CODES, ids=[repr(c[0]) for c in FAULT_CODES]
)
def test_fault_codes(
    curlfault: FakeNetwork, scheme: str, transport: str, fault: Any, code: int, frame: str
) -> None:
    api = endpoint(curlfault, scheme, transport)
    api.get("/").respond(200, body=BODY, fault=fault)
    r = get(scheme)
    assert r.code == code
    assert len(api.connections) == 1  # none of these is retried
    assert frames(curlfault, "sent", frame)
    balanced(curlfault)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_frame_then_a_bare_close_over_tls_is_55(curlfault: FakeNetwork, transport: str) -> None:
    # As docs/http2.md says: bad_frame() sends close_notify before its FIN over TLS (16); a
    # server that just drops the connection after the frame (no_close_notify) gives 55, as
    # a real server measured the same way did.
    api = endpoint(curlfault, "https", transport)
    api.connection_faults(faults.no_close_notify())
    api.get("/").respond(200, body=BODY, fault=faults.bad_frame())
    assert get("https").code == pycurl.E_SEND_ERROR
    assert frames(curlfault, "sent", "SETTINGS")
    balanced(curlfault)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rst_stream_after_bytes_delivers_exactly_those_bytes(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=BODY, fault=faults.rst_stream(after_bytes=1000))
    r = get(scheme)
    assert (r.code, r.status, r.body) == (92, 200, BODY[:1000])
    sent = [f.type for f in api.connections[0].frames if f.direction == "sent"]
    assert sent[-1] == "RST_STREAM"
    assert "HEADERS" in sent


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rst_stream_before_headers_gives_no_status(curlfault: FakeNetwork, scheme: str) -> None:
    endpoint(curlfault, scheme).get("/").respond(200, body=BODY, fault=faults.rst_stream())
    r = get(scheme)
    assert (r.code, r.status, r.body) == (92, None, b"")


def test_settings_change_is_acknowledged(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "https")
    api.get("/").respond(200, body=b"ok", fault=faults.settings(max_concurrent_streams=1))
    assert get("https").code == 0
    acks = [f for f in frames(curlfault, "recv", "SETTINGS") if f.ack]
    assert len(acks) == 2  # the initial SETTINGS and the change
    balanced(curlfault)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fault", [faults.refused_stream(), faults.goaway()], ids=repr)
def test_retried_on_new_connections_until_libcurl_gives_up(
    curlfault: FakeNetwork, scheme: str, transport: str, fault: Any
) -> None:
    api = endpoint(curlfault, scheme, transport)
    api.get("/").respond(200, body=BODY, fault=fault)  # the last step repeats: every retry
    r = get(scheme)
    assert r.code == 56
    assert len(api.connections) == 6  # the first and 5 retries, each a fresh connection
    assert len(curlfault.ledger.records) == 6
    assert len(api.requests) == 6
    balanced(curlfault)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fault", [faults.refused_stream(), faults.goaway()], ids=repr)
def test_fault_on_the_first_connection_only_succeeds_on_the_retry(
    curlfault: FakeNetwork, scheme: str, transport: str, fault: Any
) -> None:
    api = endpoint(curlfault, scheme, transport)
    api.get("/").respond(200, body=BODY, fault=fault).respond(200, body=BODY)
    r = get(scheme)
    assert (r.code, r.body) == (0, BODY)
    assert len(api.connections) == 2
    assert [req.connection_id for req in api.requests] == [c.id for c in api.connections]
    balanced(curlfault)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flow_stall_never_opens_the_window(curlfault: FakeNetwork, scheme: str) -> None:
    api = endpoint(curlfault, scheme)
    api.post("/").respond(200, fault=faults.flow_stall())
    r = get(scheme, POSTFIELDS=b"u" * 200_000, TIMEOUT_MS=1000)
    assert r.code == 28
    (req,) = api.requests
    assert len(req.body) == 65_535  # the initial window, then nothing
    assert not [f for f in frames(curlfault, "sent", "WINDOW_UPDATE") if f.stream_id == 1]
    balanced(curlfault)


@pytest.mark.parametrize(
    ("method", "fault", "options", "match"),
    [
        (
            "POST",
            faults.flow_stall(),
            {"POSTFIELDS": b"u" * 200_000},
            r"flow_stall\(\) held the upload",
        ),
        ("GET", faults.stall(), {}, r"stall\(\) held stream 1"),
        ("GET", faults.stall(after_bytes=5), {}, r"stall\(\) held stream 1"),
    ],
    ids=["flow_stall", "stream stall", "stall inside the body"],
)
def test_a_stall_that_no_client_timeout_ends_is_closed_and_reported(
    curlfault: FakeNetwork,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    fault: Any,
    options: dict[str, Any],
    match: str,
) -> None:
    # Bounded like HTTP/1.1's stall(): a handle without TIMEOUT would wait on it forever.
    from curlfault import _plan

    monkeypatch.setattr(_plan, "STALL_LIMIT_SECONDS", 0.3)
    api = endpoint(curlfault, "http")
    api.route(method, "/").respond(200, fault=fault)
    start = time.monotonic()
    r = get("http", TIMEOUT=0, **options)
    assert 0.25 < time.monotonic() - start < 10
    assert r.code not in (0, 28)
    with pytest.raises(UsageError, match=match + " for 0.3 s"):
        curlfault.check()


def test_flow_stall_request_is_recorded_and_never_answered(curlfault: FakeNetwork) -> None:
    # A body within the initial window arrives whole; the request is still never answered.
    api = endpoint(curlfault, "http")
    api.post("/").respond(200, fault=faults.flow_stall())
    r = get("http", POSTFIELDS=b"u" * 100, TIMEOUT_MS=1000)
    assert r.code == 28
    assert api.requests[0].body == b"u" * 100


# time faults on one stream ------------------------------------------------------------------
def run_multi_in_order(
    urls: list[str], version: int, timeouts_ms: list[int]
) -> tuple[list[int], list[int]]:
    """Like run_multi, each handle with its own TIMEOUT_MS; codes, and the order (indexes of
    ``urls``) in which the transfers finished."""
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    handles: list[Any] = []
    done: list[int] = []
    codes: dict[int, int] = {}
    try:
        for url, timeout_ms in zip(urls, timeouts_ms, strict=True):
            c = pycurl.Curl()
            c.setopt(pycurl.URL, url)
            c.setopt(pycurl.WRITEDATA, io.BytesIO())
            c.setopt(pycurl.HTTP_VERSION, version)
            c.setopt(pycurl.PIPEWAIT, 1)
            c.setopt(pycurl.TIMEOUT_MS, timeout_ms)
            # The connection closes through the closesocket callback once its last transfer
            # ends (the fake then reads what the client sent last), not in C at multi.close().
            c.setopt(pycurl.FORBID_REUSE, 1)
            multi.add_handle(c)
            handles.append(c)
        index = {id(c): i for i, c in enumerate(handles)}
        deadline = time.monotonic() + 20
        while len(codes) < len(handles) and time.monotonic() < deadline:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, ok, failed = multi.info_read()
            for c, code in [(c, 0) for c in ok] + [(c, code) for c, code, _ in failed]:
                codes[id(c)] = code
                done.append(index[id(c)])
            multi.select(0.05)
        return [codes.get(id(c), -1) for c in handles], done
    finally:
        for c in handles:
            multi.remove_handle(c)
        multi.close()
        for c in handles:
            c.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delayed_stream_is_answered_after_the_other_streams_of_its_connection(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/slow").respond(200, body=b"slow", fault=faults.delay(0.8))
    api.get("/fast").respond(200, body=b"fast")
    urls = [f"{scheme}://api.test/{p}" for p in ("slow", "fast", "fast")]
    codes, order = run_multi_in_order(urls, H2[scheme], [10_000] * 3)
    assert codes == [0, 0, 0]
    assert order[-1] == 0  # requested first, answered last: the others did not wait for it
    assert len(api.connections) == 1
    assert {r.stream_id for r in api.requests} == {1, 3, 5}
    trace = curlfault.trace()
    assert "delay(seconds=0.8, after_bytes=0) on stream 1: answered in 0.8 s" in trace
    curlfault.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_stream_delayed_past_its_timeout_gets_28_and_the_others_are_answered(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/slow").respond(200, body=b"slow", fault=faults.delay(30))
    api.get("/fast").respond(200, body=b"fast")
    urls = [f"{scheme}://api.test/{p}" for p in ("slow", "fast")]
    codes, _ = run_multi_in_order(urls, H2[scheme], [400, 10_000])
    assert codes == [28, 0]
    assert [r.target for r in api.requests] == ["/slow", "/fast"]
    curlfault.check()  # the client's timeout ended the wait: nothing to report


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_stalled_stream_gets_28_at_the_clients_timeout(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=b"never", fault=faults.stall())
    r = get(scheme, TIMEOUT_MS=400)
    assert (r.code, r.body) == (28, b"")
    (req,) = api.requests  # recorded when it arrived
    assert req.stream_id == 1
    assert "fault stall() on stream 1: never answered" in curlfault.trace()
    curlfault.check()
    balanced(curlfault)


def test_a_delay_then_an_http2_fault_acts_after_the_delay(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"x", fault=faults.delay(0.3) + faults.rst_stream())
    start = time.monotonic()
    r = get("http")
    assert r.code == 92
    assert time.monotonic() - start >= 0.3  # the RST_STREAM waited for the delay
    assert frames(curlfault, "sent", "RST_STREAM")
    assert api.connections[0].fault == faults.delay(0.3) + faults.rst_stream()
    curlfault.check()


def test_a_held_stream_the_client_resets_is_let_go_at_once(curlfault: FakeNetwork) -> None:
    # The stream's timer is cancelled by the client's RST_STREAM (its TIMEOUT), not left
    # for the connection's close or its 30 s.
    api = endpoint(curlfault, "http")
    api.get("/slow").respond(200, fault=faults.delay(30))
    api.get("/fast").respond(200, body=b"fast")
    urls = ["http://api.test/slow", "http://api.test/fast"]
    codes, _ = run_multi_in_order(urls, H2["http"], [400, 10_000])
    assert codes == [28, 0]
    trace = curlfault.trace()
    assert "client reset stream 1" in trace
    assert "stream 1 was still held" not in trace
    curlfault.check()


def test_a_cancelled_timer_lets_go_of_its_callback() -> None:
    from curlfault._loop import Loop

    loop = Loop()
    try:
        big = bytearray(10)
        timer = loop.call_later(60, lambda: big.append(1))
        timer.cancel()
        assert timer.cancelled
        timer.callback()  # a no-op now: it holds nothing of the old callback
        assert big == bytearray(10)
    finally:
        loop.stop()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_graceful_goaway_still_answers_a_held_stream_it_covers(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/slow").respond(200, body=b"slow", fault=faults.delay(0.5))
    api.get("/bye").respond(200, body=b"bye", fault=faults.goaway(last_stream_id=2**31 - 1))
    urls = [f"{scheme}://api.test/{p}" for p in ("slow", "bye")]
    codes, order = run_multi_in_order(urls, H2[scheme], [10_000, 10_000])
    assert codes == [0, 0]  # the GOAWAY promised stream 1: it is answered, late
    assert order == [1, 0]
    trace = curlfault.trace()
    assert "GOAWAY(last_stream_id=2147483647) waits for held stream(s) 1" in trace
    goaway_sent = trace.index("GOAWAY(last_stream_id=2147483647), then FIN")
    assert trace.index("response 200 on stream 1") < goaway_sent
    curlfault.check()


def test_a_server_error_in_a_delayed_answer_fails_the_connection(curlfault: FakeNetwork) -> None:
    # h2 refuses to send a connection-specific header: the same error as without the delay,
    # not a stream left open until the client's timeout.
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, headers={"TE": "gzip"}, fault=faults.delay(0.1))
    start = time.monotonic()
    r = get("http", TIMEOUT=10)
    assert r.code not in (0, 28)
    assert time.monotonic() - start < 5
    assert "server error" in curlfault.trace()
    with pytest.raises(ServerError, match="connection #1"):
        curlfault.check()


def test_a_fault_composed_with_a_stream_stall_is_reported(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, fault=faults.stall() + faults.rst_stream())
    assert get("http", TIMEOUT_MS=300).code == 28
    with pytest.raises(UsageError, match=r"rst_stream\(.*\) composed with stall\(\)"):
        curlfault.check()


def sent_data(net: FakeNetwork, sid: int = 1, conn: Any = None) -> list[int]:
    """The lengths of the DATA frames the fake sent on stream ``sid`` (of ``conn`` only, if
    given: each fresh handle's connection has a stream 1)."""
    found = frames(net, "sent", "DATA") if conn is None else conn.frames
    return [f.length for f in found if (f.type, f.direction, f.stream_id) == ("DATA", "sent", sid)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_dripped_stream_is_sent_in_data_frames_of_its_chunk(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    drip = faults.drip(1_000_000, chunk=512)
    api.get("/").respond(200, body=BODY, fault=drip)
    r = get(scheme)
    assert (r.code, r.body) == (0, BODY)
    assert sent_data(curlfault) == [512] * 10
    assert api.connections[0].fault == drip
    assert f"fault {drip!r} on stream 1" in curlfault.trace()
    curlfault.check()
    balanced(curlfault)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_stream_dripped_under_the_clients_low_speed_limit_gets_28(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=BODY, fault=faults.drip(20))  # 20 bytes/s, one at a time
    r = get(scheme, LOW_SPEED_LIMIT=100, LOW_SPEED_TIME=1)
    assert r.code == 28
    assert 0 < len(r.body) < len(BODY)
    assert BODY.startswith(r.body)
    curlfault.check()


def test_a_dripped_stream_does_not_hold_up_the_other_streams(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/slow").respond(200, body=b"s" * 100, fault=faults.drip(200, chunk=10))  # 0.45 s
    api.get("/fast").respond(200, body=b"fast")
    codes, order = run_multi_in_order(
        ["http://api.test/slow", "http://api.test/fast"], H2["http"], [10_000, 10_000]
    )
    assert codes == [0, 0]
    assert order == [1, 0]  # requested first, finished last
    assert len(api.connections) == 1
    assert sent_data(curlfault, 1) == [10] * 10
    curlfault.check()


def test_slicer_after_bytes_counts_body_bytes_on_a_stream(curlfault: FakeNetwork) -> None:
    # As rst_stream(after_bytes=N) does: HTTP/2 has no status line or header bytes to count.
    api = endpoint(curlfault, "https")
    api.get("/").respond(200, body=BODY[:1000], fault=faults.slicer(100, 0.001, after_bytes=500))
    r = get("https")
    assert (r.code, r.body) == (0, BODY[:1000])
    assert sent_data(curlfault) == [500] + [100] * 5
    curlfault.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_latency_waits_before_a_streams_response(curlfault: FakeNetwork, scheme: str) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/late").respond(200, body=b"late", fault=faults.latency(0.3))
    api.get("/empty").respond(204, fault=faults.latency(0.3))
    api.get("/never").respond(200, body=b"never", fault=faults.latency(30))
    for path, expected in (("/late", b"late"), ("/empty", b"")):
        start = time.monotonic()
        r = get(scheme, path)
        assert time.monotonic() - start >= 0.3
        assert (r.code, r.body) == (0, expected)
    r = get(scheme, "/never", TIMEOUT_MS=300)
    assert r.code == 28
    curlfault.check()


def test_a_drip_then_rst_stream_cuts_the_paced_body(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.drip(50_000, chunk=100) + faults.rst_stream(after_bytes=300)
    api.get("/").respond(200, body=BODY, fault=fault)
    r = get("http")
    assert (r.code, r.body) == (92, BODY[:300])
    assert sent_data(curlfault) == [100, 100, 100]
    assert frames(curlfault, "sent", "RST_STREAM")
    curlfault.check()


def test_a_paced_stream_the_client_resets_is_let_go_at_once(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/slow").respond(200, body=BODY, fault=faults.drip(10))  # 100 s
    api.get("/fast").respond(200, body=b"fast")
    codes, _ = run_multi_in_order(
        ["http://api.test/slow", "http://api.test/fast"], H2["http"], [400, 10_000]
    )
    assert codes == [28, 0]
    trace = curlfault.trace()
    assert "client reset stream 1" in trace
    assert "stream 1 was still held" not in trace  # its next piece's timer is cancelled
    assert 0 < len(sent_data(curlfault, 1)) < len(BODY)
    curlfault.check()


def test_a_graceful_goaway_waits_for_a_paced_stream_it_covers(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "https")
    api.get("/slow").respond(200, body=b"s" * 50, fault=faults.slicer(10, 0.05))
    api.get("/bye").respond(200, body=b"bye", fault=faults.goaway(last_stream_id=2**31 - 1))
    codes, order = run_multi_in_order(
        ["https://api.test/slow", "https://api.test/bye"], H2["https"], [10_000, 10_000]
    )
    assert codes == [0, 0]
    assert order == [1, 0]
    assert sent_data(curlfault, 1) == [10] * 5  # the whole body before the GOAWAY
    curlfault.check()


@pytest.mark.parametrize(
    "silent",
    [faults.rst_stream(), faults.refused_stream(), faults.bad_frame(), faults.flow_stall()],
    ids=repr,
)
@pytest.mark.parametrize("pacing", [faults.drip(10), faults.latency(0.5)], ids=repr)
def test_pacing_with_a_fault_that_sends_no_response_is_refused_at_declaration(
    pacing: Any, silent: Any
) -> None:
    with pytest.raises(UsageError, match=r"sends no response on the stream.*delay\(seconds\)"):
        pacing + silent
    with pytest.raises(UsageError, match="nothing to pace"):
        silent + pacing
    assert (pacing + faults.rst_stream(after_bytes=3)).faults[-1].after_bytes == 3  # a body


def test_pacing_on_a_stream_a_goaway_leaves_unprocessed_is_reported(
    curlfault: FakeNetwork,
) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"x", fault=faults.latency(0.2) + faults.goaway()).respond(
        200, body=b"retried"
    )
    r = get("http")
    assert (r.code, r.body) == (0, b"retried")  # libcurl retried on a new connection
    with pytest.raises(UsageError, match="stream 1 gets no response"):
        curlfault.check()


def test_a_graceful_goaway_finishes_a_paced_stream_it_started_above_last_stream_id(
    curlfault: FakeNetwork,
) -> None:
    # A stream whose response has begun was processed, whatever last_stream_id says: it is
    # finished before the GOAWAY (cut short, libcurl would not retry it: 56).
    api = endpoint(curlfault, "https")
    api.get("/slow").respond(200, body=b"s" * 50, fault=faults.drip(200, chunk=10))
    api.get("/bye").respond(200, fault=faults.goaway(last_stream_id=0)).respond(200, body=b"ok")
    codes, _ = run_multi_in_order(
        ["https://api.test/slow", "https://api.test/bye"], H2["https"], [10_000, 10_000]
    )
    assert codes == [0, 0]  # /bye unprocessed on the first connection, retried on a second
    assert sent_data(curlfault, 1, api.connections[0]) == [10] * 5
    assert "GOAWAY(last_stream_id=0) waits for held stream(s) 1" in curlfault.trace()
    curlfault.check()


def test_an_error_goaway_on_a_paced_response_comes_after_the_whole_body(
    curlfault: FakeNetwork,
) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.drip(1000, chunk=10) + faults.goaway(1, error_code="PROTOCOL_ERROR")
    api.get("/").respond(200, body=b"b" * 50, fault=fault)
    r = get("http")
    assert (r.code, r.body) == (0, b"b" * 50)  # as without the drip: the body, then GOAWAY
    assert sent_data(curlfault) == [10] * 5
    (goaway,) = frames(curlfault, "sent", "GOAWAY")
    assert goaway.error_code == 1
    curlfault.check()


def test_a_paced_streams_response_is_traced_when_its_headers_go(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"late", fault=faults.latency(0.3))
    assert get("http").code == 0
    conn = api.connections[0]
    (sent,) = [t for t, text in conn.events if text.startswith("response 200 on stream 1")]
    (asked,) = [t for t, text in conn.events if text.startswith("request GET / on stream 1")]
    assert sent - asked >= 0.3
    curlfault.check()


@pytest.mark.parametrize("at", ["status_line", "headers", "chunk_size", "last_chunk"])
def test_a_delay_at_a_point_of_an_http1_head_does_not_apply_to_a_stream(
    curlfault: FakeNetwork, at: str
) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"ok", fault=faults.delay(5, at=at))
    r = get("http")
    assert (r.code, r.body) == (0, b"ok")  # answered at once, without it
    with pytest.raises(UsageError, match=r"not at a point of an HTTP/1.1 head"):
        curlfault.check()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("stall", "got"),
    [
        (faults.stall(after_bytes=300), 300),
        (faults.stall(at="body_start"), 0),
        (faults.stall(at="body"), len(BODY) // 2),
        (faults.stall(after_bytes=len(BODY)), len(BODY)),  # every byte, no END_STREAM
    ],
    ids=repr,
)
def test_a_stall_inside_a_streams_body_gets_28_with_the_bytes_before_it(
    curlfault: FakeNetwork, scheme: str, stall: Any, got: int
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=BODY, fault=stall)
    r = get(scheme, TIMEOUT_MS=400)
    assert (r.code, r.status, r.body) == (28, 200, BODY[:got])
    assert sum(sent_data(curlfault)) == got
    assert "fault stall() on stream 1: the rest never sent" in curlfault.trace()
    curlfault.check()  # the client's timeout ended it


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delay_inside_a_streams_body_holds_the_rest(curlfault: FakeNetwork, scheme: str) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=BODY, fault=faults.delay(0.3, after_bytes=300))
    api.get("/end").respond(200, body=BODY, fault=faults.delay(0.3, after_bytes=len(BODY)))
    for path, frames_sent in (("/", [300, len(BODY) - 300]), ("/end", [len(BODY), 0])):
        start = time.monotonic()
        r = get(scheme, path)
        assert time.monotonic() - start >= 0.3
        assert (r.code, r.body) == (0, BODY)
        # At the body's end: every byte, then END_STREAM alone (an empty DATA frame) late.
        assert sent_data(curlfault, 1, api.connections[-1]) == frames_sent
    curlfault.check()


def test_a_stall_inside_a_body_holds_only_its_stream(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/slow").respond(200, body=BODY, fault=faults.stall(after_bytes=10))
    api.get("/fast").respond(200, body=b"fast")
    codes, _ = run_multi_in_order(
        ["http://api.test/slow", "http://api.test/fast"], H2["http"], [400, 10_000]
    )
    assert codes == [28, 0]
    trace = curlfault.trace()
    assert "client reset stream 1" in trace
    assert "stream 1 was still held" not in trace  # the stall's bound timer is cancelled
    curlfault.check()


@pytest.mark.parametrize(
    ("stall_at", "code", "got", "never"),
    [(200, 28, 200, "rst_stream"), (600, 92, 500, "stall")],
)
def test_a_stall_and_an_rst_stream_in_one_body_the_first_acts(
    curlfault: FakeNetwork, stall_at: int, code: int, got: int, never: str
) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.stall(after_bytes=stall_at) + faults.rst_stream(after_bytes=500)
    api.get("/").respond(200, body=BODY, fault=fault)
    r = get("http", TIMEOUT_MS=400)
    assert (r.code, r.body) == (code, BODY[:got])
    with pytest.raises(UsageError, match=rf"{never}\(.* never acted: the first fault to act"):
        curlfault.check()


@pytest.mark.parametrize(
    ("fault", "code", "got", "never"),
    [
        # Points are worked out on the whole body, then the cut: past it, they never act.
        (faults.delay(5, after_bytes=800) + faults.rst_stream(after_bytes=500), 92, 500, "delay"),
        (faults.delay(5, at="body") + faults.rst_stream(after_bytes=1000), 92, 1000, "delay"),
        # A tie at the body's end (both points past it): the RST wins, as at any tie.
        (faults.stall(after_bytes=6000) + faults.rst_stream(after_bytes=7000), 92, 5120, "stall"),
        (faults.stall(after_bytes=500) + faults.rst_stream(after_bytes=500), 92, 500, "stall"),
    ],
    ids=["delay past the cut", "at=body past the cut", "tie at the end", "tie"],
)
def test_a_point_past_an_rst_stream_never_acts_and_is_reported(
    curlfault: FakeNetwork, fault: Any, code: int, got: int, never: str
) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=BODY, fault=fault)
    start = time.monotonic()
    r = get("http", TIMEOUT_MS=3000)
    assert time.monotonic() - start < 2.5  # the delay did not hold the RST up
    assert (r.code, r.body) == (code, BODY[:got])
    with pytest.raises(UsageError, match=rf"{never}\(.* never acted"):
        curlfault.check()


def test_a_body_point_met_by_a_head_is_reported(curlfault: FakeNetwork) -> None:
    # As over HTTP/1.1: a GET route answers HEAD too, and the HEAD takes the step's fault.
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=BODY, fault=faults.stall(after_bytes=100))
    r = get("http", NOBODY=1)
    assert (r.code, r.status) == (0, 200)
    with pytest.raises(UsageError, match=r"HEAD took the step meant for a GET.*\.head\('/'\)"):
        curlfault.check()


def test_a_delay_at_or_after_a_stall_is_reported(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.stall(after_bytes=100) + faults.delay(5, after_bytes=200)
    api.get("/").respond(200, body=BODY, fault=fault)
    r = get("http", TIMEOUT_MS=400)
    assert (r.code, r.body) == (28, BODY[:100])
    with pytest.raises(UsageError, match=r"delay\(seconds=5.* never acted: the first fault"):
        curlfault.check()


def test_a_delay_at_a_point_of_an_empty_body_is_reported(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(204, fault=faults.delay(5, at="body"))
    assert get("http").code == 0
    with pytest.raises(UsageError, match="no body to put a point in"):
        curlfault.check()


def test_a_stall_inside_the_body_with_a_goaway_is_reported(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.stall(after_bytes=100) + faults.goaway(last_stream_id=1)
    api.get("/").respond(200, body=BODY, fault=fault)
    assert get("http", TIMEOUT_MS=400).code == 28
    with pytest.raises(UsageError, match="never finished, so the GOAWAY"):
        curlfault.check()


def test_body_points_compose_with_pacing_and_with_each_other(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    two = faults.delay(0.2, after_bytes=100) + faults.delay(0.2, after_bytes=100)
    api.get("/two").respond(200, body=BODY[:300], fault=two)
    sliced = faults.slicer(100) + faults.delay(0.3, after_bytes=150)
    api.get("/sliced").respond(200, body=BODY[:300], fault=sliced)
    # latency() waits before the HEADERS, and before each write a point splits off (0.6 s).
    late = faults.latency(0.2) + faults.delay(0.2, after_bytes=100)
    api.get("/late").respond(200, body=BODY[:300], fault=late)
    cases = (
        ("/two", 0.4, [100, 200]),
        ("/sliced", 0.3, [100, 50, 100, 50]),  # the slices start again at the point
        ("/late", 0.6, [100, 200]),
    )
    for path, wait, lengths in cases:
        start = time.monotonic()
        r = get("http", path)
        assert time.monotonic() - start >= wait  # two delays at one point add up
        assert (r.code, r.body) == (0, BODY[:300])
        assert sent_data(curlfault, 1, api.connections[-1]) == lengths
    curlfault.check()


def test_latency_keeps_a_stream_unbegun_for_a_goaway(curlfault: FakeNetwork) -> None:
    # A stream whose HEADERS still wait on latency() has not begun: a GOAWAY below it
    # leaves it unprocessed (the client retries it) instead of waiting for it.
    api = endpoint(curlfault, "http")
    api.get("/slow").respond(200, body=b"slow", fault=faults.latency(0.5))
    api.get("/bye").respond(200, fault=faults.goaway(last_stream_id=0)).respond(200, body=b"ok")
    codes, _ = run_multi_in_order(
        ["http://api.test/slow", "http://api.test/bye"], H2["http"], [10_000, 10_000]
    )
    assert codes == [0, 0]  # both retried on new connections
    first = api.connections[0]
    assert not [f for f in first.frames if f.direction == "sent" and f.stream_id == 1]
    trace = curlfault.trace()
    assert "waits for held stream" not in trace
    assert "GOAWAY(last_stream_id=0), then FIN" in trace
    curlfault.check()


def test_a_body_point_with_a_fault_that_sends_no_response_is_reported(
    curlfault: FakeNetwork,
) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(
        200, body=b"x", fault=faults.delay(0.1, after_bytes=5) + faults.rst_stream()
    )
    assert get("http").code == 92
    with pytest.raises(UsageError, match="gets no response, so there is nothing for them to act"):
        curlfault.check()


# misuse -------------------------------------------------------------------------------------
def test_http2_fault_on_an_http1_endpoint_is_a_usage_error(curlfault: FakeNetwork) -> None:
    api = curlfault.https("api.test")
    with pytest.raises(UsageError, match=r"HTTP/2 fault.*http2=True"):
        api.get("/").respond(200, fault=faults.rst_stream())
    with pytest.raises(UsageError, match="HTTP/2 fault"):
        api.get("/").respond(200, fault=faults.delay(0) + faults.goaway())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_http2_fault_met_by_an_http1_client_is_reported(
    curlfault: FakeNetwork, scheme: str
) -> None:
    api = endpoint(curlfault, scheme)
    api.get("/").respond(200, body=b"ok", fault=faults.rst_stream())
    r = get(scheme, version=pycurl.CURL_HTTP_VERSION_1_1)
    assert (r.code, r.body) == (0, b"ok")
    with pytest.raises(UsageError, match="HTTP/2 faults apply to HTTP/2 streams only"):
        curlfault.check()


def test_http1_fault_on_an_http2_stream_is_reported(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    api.get("/").respond(200, body=b"ok", fault=faults.close(after_bytes=5))
    r = get("http")
    assert (r.code, r.body) == (0, b"ok")
    with pytest.raises(UsageError, match="do not apply to an HTTP/2 stream"):
        curlfault.check()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: faults.rst_stream("NOPE"), "not an HTTP/2 error name"),
        (lambda: faults.rst_stream(-1), "error_code"),
        (lambda: faults.rst_stream(after_bytes=-1), "after_bytes"),
        (lambda: faults.rst_stream(after_bytes=True), "after_bytes"),
        (lambda: faults.goaway(-1), "last_stream_id"),
        (lambda: faults.goaway(error_code=2**32), "error_code"),
        (lambda: faults.bad_frame(b""), "frame"),
        (lambda: faults.settings(), "at least one"),
        (lambda: faults.settings(window=1), "not an HTTP/2 setting"),
        (lambda: faults.settings(max_frame_size=10), "from 16384"),
        (lambda: faults.settings(enable_push=2), "from 0 to 1"),
    ],
)
def test_bad_fault_arguments(make: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        make()


def test_http2_flag_must_be_a_bool() -> None:
    with FakeNetwork() as net, pytest.raises(UsageError, match="http2 must be True or False"):
        net.https("api.test", http2="yes")  # type: ignore[arg-type]


def test_fault_reprs() -> None:
    assert (
        repr(faults.rst_stream("CANCEL", after_bytes=3))
        == "rst_stream(error_code=8, after_bytes=3)"
    )
    assert repr(faults.goaway()) == "goaway(last_stream_id=0, error_code=0)"
    assert repr(faults.settings(initial_window_size=0)) == "settings(initial_window_size=0)"
    assert repr(faults.bad_frame()) == "bad_frame()"
    assert faults.refused_stream().curlcode == 56


# the frame log --------------------------------------------------------------------------
def test_frame_log_whole_and_byte_by_byte() -> None:
    wire = (
        PREFACE
        + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # SETTINGS
        + b"\x00\x00\x03\x00\x01\x00\x00\x00\x01abc"  # DATA END_STREAM on 1
        + b"\x00\x00\x04\x03\x00\x00\x00\x00\x03\x00\x00\x00\x08"  # RST_STREAM CANCEL on 3
        + b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00"  # GOAWAY
        + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # SETTINGS ACK
    )
    whole: list[Frame] = []
    FrameLog("recv", whole, preface=True).feed(wire)
    bytewise: list[Frame] = []
    log = FrameLog("recv", bytewise, preface=True)
    for i in range(len(wire)):
        log.feed(wire[i : i + 1])
    assert whole == bytewise
    assert [(f.type, f.stream_id, f.error_code, f.last_stream_id) for f in whole] == [
        ("SETTINGS", 0, None, None),
        ("DATA", 1, None, None),
        ("RST_STREAM", 3, 8, None),
        ("GOAWAY", 0, 0, 5),
        ("SETTINGS", 0, None, None),
    ]
    assert [f.ack for f in whole] == [False, False, False, False, True]


def test_unmatched_request_over_http2_is_a_404_and_reported(curlfault: FakeNetwork) -> None:
    endpoint(curlfault, "http").get("/known").respond(200)
    r = get("http", "/unknown")
    assert (r.code, r.status) == (0, 404)
    assert curlfault.requests[0].stream_id == 1
    with pytest.raises(UnmatchedRequest, match="GET /unknown"):
        curlfault.check()


@pytest.mark.parametrize(("scheme", "port"), [("http", 80), ("https", 8443)])
def test_prior_knowledge_to_an_http1_endpoint_says_it_needs_http2(scheme: str, port: int) -> None:
    """The preface reaches h11 as a request ``PRI * HTTP/2.0``: the problem names HTTP/2
    and http2=True (not a PRI route), and the connection closes after the answer, so the
    preface's ``SM`` line is not a second, malformed request."""
    with FakeNetwork() as net, net.intercept():
        make = net.https if scheme == "https" else net.http
        api = make("api.test", port)
        api.get("/").respond(200)
        url = f"{scheme}://api.test{'' if port == 80 else f':{port}'}/"
        r = transfer(url, HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
        assert r.code == 16  # libcurl reads an HTTP/1.1 answer as a bad HTTP/2 frame
        assert [(q.method, q.target, q.error) for q in api.requests] == [("PRI", "*", None)]
        with pytest.raises(UnmatchedRequest) as info:
            net.check()
    assert len(info.value.problems) == 1  # no MalformedRequest for the preface's SM line
    text = str(info.value).splitlines()[0]
    assert "HTTP/2 with prior knowledge" in text
    args = f"'api.test'{'' if port == 80 else f', {port}'}"
    assert f"declare it with net.{scheme}({args}, http2=True)" in text
    assert "route(" not in text


def test_head_over_http2_has_the_length_and_no_body(curlfault: FakeNetwork) -> None:
    endpoint(curlfault, "https").get("/").respond(200, body=BODY)
    r = get("https", NOBODY=1)
    assert (r.code, r.status, r.body) == (0, 200, b"")
    assert f"content-length: {len(BODY)}".encode() in r.headers
    assert curlfault.requests[0].method == "HEAD"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_http2_over_the_listener_transport(curlfault: FakeNetwork, scheme: str) -> None:
    api = endpoint(curlfault, scheme, "listener")
    api.get("/").respond(200, body=BODY, fault=faults.rst_stream(after_bytes=10))
    r = get(scheme)
    assert (r.code, r.body) == (92, BODY[:10])
    assert api.connections[0].transport == "listener"
    balanced(curlfault)


def test_composed_http2_faults(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "http")
    fault = faults.settings(max_concurrent_streams=5) + faults.rst_stream("CANCEL")
    api.get("/").respond(200, body=BODY, fault=fault)
    assert get("http").code == 92
    sent = [f.type for f in api.connections[0].frames if f.direction == "sent"]
    assert sent[-2:] == ["SETTINGS", "RST_STREAM"]


def test_handler_can_return_an_http2_fault(curlfault: FakeNetwork) -> None:
    api = endpoint(curlfault, "https")
    api.get("/").handle(lambda req: Response.make(200, fault=faults.refused_stream())).respond(200)
    r = get("https")
    assert r.code == 0
    assert len(api.connections) == 2


def test_a_stream_the_client_resets_is_traced_with_the_error_codes_name(
    curlfault: FakeNetwork,
) -> None:
    # A write callback that aborts: libcurl resets the stream (libcurl 8.23 sends nghttp2's
    # own failure code, -902 as a 32-bit number, which no RFC names) and sends GOAWAY
    # (NO_ERROR) when the handle closes. Events name the codes, not h2's enum repr.
    api = endpoint(curlfault, "https")
    api.get("/big").respond(200, body=b"x" * 200_000)
    c = pycurl.Curl()
    c.setopt(pycurl.URL, "https://api.test/big")
    c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
    c.setopt(pycurl.WRITEFUNCTION, lambda chunk: 0)
    with pytest.raises(pycurl.error) as info:
        c.perform()
    c.close()
    assert info.value.args[0] == pycurl.E_WRITE_ERROR
    texts = [t for _, t in api.connections[0].events]
    (reset,) = [t for t in texts if t.startswith("client reset stream 1 ")]
    assert re.fullmatch(
        r"client reset stream 1 \((CANCEL|0x[0-9a-f]+, not an HTTP/2 error code)\)", reset
    )
    assert "client sent GOAWAY (NO_ERROR)" in texts
    assert not any("ErrorCodes" in t for t in texts)
