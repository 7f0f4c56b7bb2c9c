"""Stream faults on real pycurl: CURLcodes, bytes, timing bounds and a balanced ledger,
over both transports and over whole versus byte-by-byte delivery."""

from __future__ import annotations

import time
from typing import Any

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import FakeNetwork, Response, UsageError, faults
from curlfault._plan import Layout

BODY = bytes(range(256)) * 20  # 5120 bytes
CHUNKED = {"Transfer-Encoding": "chunked"}


def serve(curlfault, fault, transport="socketpair", headers=None, method="GET", status=200):
    api = curlfault.http("api.test", transport=transport)
    api.route(method, "/").respond(status, body=BODY, headers=headers, fault=fault)
    return api


CASES = [
    (faults.close(at="status_line"), None, 52),
    (faults.close(at="headers"), None, 0),
    (faults.close(at="body_start"), None, 18),
    (faults.close(at="body"), None, 18),
    (faults.close(at="chunk_size"), CHUNKED, 18),
    (faults.close(at="last_chunk"), CHUNKED, 18),
    (faults.reset(at="body"), None, 56),
    (faults.garbage(b"NOT HTTP\r\n\r\n"), None, 1),
    (faults.bad_content_length(), None, 8),
    (faults.conflicting_content_length(), None, 8),
    (faults.body_length(10), None, 18),
    (faults.body_length(-10), None, 0),
    (faults.bad_chunk_size(), None, 56),
    (faults.oversized_header(), None, 100),
]


@pytest.mark.parametrize("delivery", ["whole", "bytewise"])
@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
@pytest.mark.parametrize(("fault", "headers", "code"), CASES, ids=[repr(c[0]) for c in CASES])
def test_fault_codes(curlfault, fault, headers, code, transport, delivery) -> None:
    if delivery == "bytewise":
        fault = fault + faults.slicer(1)  # the same bytes, one send() each
    serve(curlfault, fault, transport, headers)
    r = transfer("http://api.test/")
    assert r.code == code
    assert curlfault.ledger.audit().ok


@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_bytewise_delivery_of_a_healthy_response_is_identical(curlfault, transport) -> None:
    serve(curlfault, faults.slicer(1), transport, CHUNKED)
    r = transfer("http://api.test/")
    assert (r.code, r.body) == (0, BODY)


def test_cut_in_body_delivers_exactly_the_bytes_before_the_cut(curlfault) -> None:
    serve(curlfault, faults.close(after_bytes=1000))
    r = transfer("http://api.test/")
    head = r.headers.replace(b"\r\n\r\n", b"")  # header callback saw the head
    assert r.code == 18
    assert len(r.body) == 1000 - (len(head) + 4)
    assert BODY.startswith(r.body)


def test_layout_points_of_a_chunked_response() -> None:
    data = b"HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    layout = Layout(data)
    assert layout.chunked
    assert data[: layout.resolve(faults.close(at="body_start"))].endswith(b"\r\n\r\n")
    assert data[layout.resolve(faults.close(at="last_chunk")) :] == b"0\r\n\r\n"
    at = layout.resolve(faults.close(at="chunk_size"))
    assert data[at - 1 : at + 2] == b"5\r\n"[:1] + b"\r\n"
    assert 0 < layout.resolve(faults.close(at="status_line")) < data.index(b"\r\n")


def test_chunk_point_on_a_content_length_response_is_a_usage_error(curlfault) -> None:
    serve(curlfault, faults.close(at="chunk_size"))
    r = transfer("http://api.test/")
    assert (r.code, r.body) == (0, BODY)  # sent whole
    with pytest.raises(UsageError, match="needs a chunked response") as info:
        curlfault.check()
    first_line = str(info.value).splitlines()[0]
    assert first_line.endswith("add headers={'Transfer-Encoding': 'chunked'}")  # no stray brace


def test_stall_ends_at_the_clients_timeout(curlfault) -> None:
    serve(curlfault, faults.stall(at="body"))
    start = time.monotonic()
    r = transfer("http://api.test/", TIMEOUT_MS=300)
    assert r.code == 28
    assert 0.25 < time.monotonic() - start < 5
    assert 0 < len(r.body) < len(BODY)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stall_that_no_client_timeout_ends_is_closed_and_reported(
    curlfault, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    # A handle without TIMEOUT would wait on stall() forever: curlfault never lets a test
    # hang, so it closes the connection after a bound (60 s; lowered here) and says why.
    from curlfault import _plan

    monkeypatch.setattr(_plan, "STALL_LIMIT_SECONDS", 0.3)
    api = getattr(curlfault, scheme)("api.test")
    api.get("/").respond(200, body=BODY, fault=faults.stall(at="body"))
    start = time.monotonic()
    r = transfer(f"{scheme}://api.test/", TIMEOUT=0)  # no timeout at all
    assert 0.25 < time.monotonic() - start < 10
    assert r.code == pycurl.E_PARTIAL_FILE  # the fake's close, not a client timeout (28)
    assert 0 < len(r.body) < len(BODY)
    with pytest.raises(UsageError, match=r"stall\(\) held the connection for 0.3 s") as info:
        curlfault.check()
    assert "give the handle a TIMEOUT" in str(info.value)
    assert "closed by curlfault" in curlfault.trace()


def test_a_stall_ended_by_the_clients_timeout_is_not_reported(
    curlfault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curlfault import _plan

    monkeypatch.setattr(_plan, "STALL_LIMIT_SECONDS", 0.4)
    serve(curlfault, faults.stall(at="body"))
    assert transfer("http://api.test/", TIMEOUT_MS=100).code == 28
    time.sleep(0.6)  # past the bound: the closed connection is left alone
    curlfault.check()


def test_delay_within_and_past_the_timeout(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/short").respond(body=b"late", fault=faults.delay(0.1))
    api.get("/long").respond(body=b"never", fault=faults.delay(2.0))
    start = time.monotonic()
    assert transfer("http://api.test/short").body == b"late"
    assert time.monotonic() - start >= 0.1
    assert transfer("http://api.test/long", TIMEOUT_MS=300).code == 28


def test_delay_at_a_point_splits_the_response(curlfault) -> None:
    serve(curlfault, faults.delay(2.0, at="body"))
    r = transfer("http://api.test/", TIMEOUT_MS=300)
    assert r.code == 28
    assert r.body == BODY[: len(r.body)]
    assert 0 < len(r.body) < len(BODY)


def test_drip_under_low_speed_limit(curlfault) -> None:
    serve(curlfault, faults.drip(500, chunk=50))
    r = transfer("http://api.test/", LOW_SPEED_LIMIT=100_000, LOW_SPEED_TIME=1)
    assert r.code == 28


def test_drip_fast_enough_completes(curlfault) -> None:
    serve(curlfault, faults.drip(1_000_000, chunk=512))
    assert transfer("http://api.test/").body == BODY


def test_latency_jitter_seed_is_recorded_and_repeatable(curlfault) -> None:
    api = serve(curlfault, faults.latency(0.001, jitter=0.002) + faults.slicer(1000))
    assert transfer("http://api.test/").body == BODY
    (seed_event,) = [t for _, t in api.connections[0].events if t.startswith("latency jitter")]
    seed = int(seed_event.rsplit("=", 1)[1])
    from curlfault._plan import build_ops

    ops_a = build_ops(b"x" * 3000, [faults.latency(0.001, 0.002, seed), faults.slicer(1000)], print)
    ops_b = build_ops(b"x" * 3000, [faults.latency(0.001, 0.002, seed), faults.slicer(1000)], print)
    assert ops_a == ops_b
    assert [k for k, _ in ops_a] == ["sleep", "write"] * 3


def test_slow_close_does_not_reuse_the_connection(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond(body=b"bye", fault=faults.slow_close(0.05))
    c = pycurl.Curl()
    try:
        assert transfer("http://api.test/", curl=c).body == b"bye"
        time.sleep(0.3)  # the fake sends its FIN 50 ms after the response
        assert transfer("http://api.test/", curl=c).body == b"bye"
    finally:
        c.close()
    assert len(api.connections) == 2
    assert any("FIN" in t for _, t in api.connections[0].events)


def test_wrong_encoding_with_and_without_decoding(curlfault) -> None:
    serve(curlfault, faults.wrong_encoding("gzip"))
    assert transfer("http://api.test/", ACCEPT_ENCODING="").code == 61
    r = transfer("http://api.test/")
    assert (r.code, r.body) == (0, BODY)
    assert b"content-encoding: gzip" in r.headers.lower()


def test_composed_delay_then_reset(curlfault) -> None:
    serve(curlfault, faults.delay(0.05) + faults.reset(after_bytes=200))
    start = time.monotonic()
    assert transfer("http://api.test/").code == 56
    assert time.monotonic() - start >= 0.05


@pytest.mark.parametrize(
    "compose",
    [
        lambda: faults.close(at="status_line") + faults.reset(at="body"),
        lambda: faults.close(after_bytes=5) + faults.reset(after_bytes=10),
        lambda: faults.delay(0.1) + faults.stall() + faults.garbage(b"x"),
    ],
)
def test_two_ending_faults_in_one_response_are_refused_where_written(compose: Any) -> None:
    # The first to act would end the response, so the other could never act: a spec that
    # cannot do what it says fails at declaration, as two ending HTTP/2 faults do.
    with pytest.raises(UsageError, match="compose at most one of close, reset, stall and garbage"):
        compose()


def test_bad_fault_arguments_name_the_fix() -> None:
    with FakeNetwork() as net:
        api = net.http("api.test")
        with pytest.raises(UsageError, match=r"separate arguments: connection_faults\(\*faults\)"):
            api.connection_faults([faults.refuse(), None])  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"compose stream faults with \+"):
            api.get("/").respond(200, fault=[faults.close(), faults.delay(1)])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="longer than the kernel's SYN retransmissions reach"):
        faults.slow_connect(10**7)  # refused when made, not when given to an endpoint


def test_fault_then_recovery_on_one_keep_alive_handle(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond(body=BODY, fault=faults.slicer(700)).respond(body=b"ok")
    c = pycurl.Curl()
    try:
        assert transfer("http://api.test/", curl=c).body == BODY
        assert transfer("http://api.test/", curl=c).body == b"ok"
    finally:
        c.close()
    assert len(api.connections) == 1  # a paced response keeps the connection


def test_handler_returned_fault_applies(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").handle(lambda req: Response.make(200, body=BODY, fault=faults.close(at="body")))
    assert transfer("http://api.test/").code == 18


# the upload side ---------------------------------------------------------------------


def test_stop_reading_blocks_a_large_upload(curlfault) -> None:
    api = serve(curlfault, faults.stop_reading(after_bytes=1000), method="POST")
    r = transfer("http://api.test/", POSTFIELDS=b"u" * 3_000_000, TIMEOUT_MS=400)
    assert r.code == 28
    (req,) = api.requests
    assert 1000 <= len(req.body) < 3_000_000
    assert req.error == (
        f"incomplete: the server stopped reading after {len(req.body)} body bytes of 3000000 "
        "(stop_reading())"
    )
    assert any("stopped reading" in t for _, t in api.connections[0].events)


@pytest.mark.parametrize("scheme", ["http", "https", "h2", "h2c-endpoint"])
def test_an_upload_the_client_aborts_is_recorded_as_incomplete(curlfault, scheme: str) -> None:
    # READFUNCTION aborts after 500 of 3000 bytes (42): the request reached the fake, so it
    # is in requests (no route answered it), its error says how far it got, and check()
    # has nothing to report (a client may abort an upload). Over HTTP/2 libcurl resets the
    # stream.
    if scheme == "h2":
        api = curlfault.https("api.test", http2=True)
    elif scheme == "h2c-endpoint":
        # An HTTP/1.1 client of a plain endpoint that also speaks h2c: the endpoint tells the
        # two apart by the first bytes, and still hears of the close.
        api = curlfault.http("api.test", http2=True)
        scheme = "http"
    else:
        api = (curlfault.https if scheme == "https" else curlfault.http)("api.test")
    route = api.post("/u").respond(201)
    sent = []

    def read(size: int) -> bytes | int:
        if len(sent) == 5:
            return pycurl.READFUNC_ABORT
        sent.append(100)
        return b"a" * 100

    r = transfer(
        f"{'https' if scheme == 'h2' else scheme}://api.test/u",
        UPLOAD=1,
        CUSTOMREQUEST="POST",
        INFILESIZE=3000,
        READFUNCTION=read,
    )
    assert r.code == pycurl.E_ABORTED_BY_CALLBACK
    (req,) = api.requests
    assert (req.method, req.body, req.matched) == ("POST", b"a" * 500, False)
    how = "reset the stream" if scheme == "h2" else "closed the connection"
    assert req.error == f"incomplete: the client {how} after 500 body bytes of 3000"
    assert req.http_version == ("2" if scheme == "h2" else "1.1")
    assert route.calls == 0
    curlfault.check()


def test_an_early_answered_upload_the_client_then_closes_is_recorded_once(curlfault) -> None:
    # early_response() answers (and records) the request at its head; the client then
    # gives up on the slow answer: the request is not recorded again as incomplete.
    api = serve(curlfault, faults.early_response() + faults.delay(2), method="POST")
    r = transfer("http://api.test/", POSTFIELDS=b"u" * 3_000_000, TIMEOUT_MS=500)
    assert r.code == pycurl.E_OPERATION_TIMEDOUT
    assert len(api.requests) == 1
    assert len(curlfault.requests) == 1
    assert api.requests[0].error is None


def test_no_continue_makes_libcurl_wait_then_send(curlfault) -> None:
    api = serve(curlfault, faults.no_continue(), method="POST")
    start = time.monotonic()
    r = transfer(
        "http://api.test/",
        POSTFIELDS=b"y" * 100,
        HTTPHEADER=["Expect: 100-continue"],
        EXPECT_100_TIMEOUT_MS=200,
    )
    assert (r.code, r.status) == (0, 200)
    assert time.monotonic() - start >= 0.2
    assert api.requests[0].body == b"y" * 100
    assert not any("100 Continue" in t for _, t in api.connections[0].events)


def test_no_continue_on_a_request_that_does_not_ask_is_reported(curlfault) -> None:
    # libcurl 8.23 sends Expect: 100-continue only for bodies over 1 MiB: a small upload
    # never waits, and the fault had nothing to act on (not silently "applied").
    api = serve(curlfault, faults.no_continue(), method="POST")
    r = transfer("http://api.test/", POSTFIELDS=b"y" * 100)
    assert (r.code, r.status) == (0, 200)
    assert api.requests[0].header("expect") is None
    with pytest.raises(UsageError, match=r"no_continue\(\) on POST / to http://api.test had"):
        curlfault.check()


def test_no_continue_on_an_http10_request_that_asks_is_not_reported(curlfault) -> None:
    # h11 ignores Expect on HTTP/1.0; libcurl still waits for the 100 it asked for.
    serve(curlfault, faults.no_continue(), method="POST")
    r = transfer(
        "http://api.test/",
        POSTFIELDS=b"y" * 100,
        HTTPHEADER=["Expect: 100-continue"],
        HTTP_VERSION=pycurl.CURL_HTTP_VERSION_1_0,
        EXPECT_100_TIMEOUT_MS=100,
    )
    assert (r.code, r.status) == (0, 200)
    assert curlfault.problems == []


@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_early_413_during_upload(curlfault, transport) -> None:
    api = serve(curlfault, faults.early_response(), method="POST", status=413, transport=transport)
    r = transfer("http://api.test/", POSTFIELDS=b"u" * 3_000_000)
    assert (r.code, r.status) == (0, 413)
    assert len(api.requests) == 1
    assert api.requests[0].body == b""  # answered before the body


# validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: faults.close(at="nowhere"), "not a byte point"),
        (lambda: faults.close(5, at="body"), "not both"),
        (lambda: faults.delay(-1), "seconds"),
        (lambda: faults.delay("1"), "number of seconds"),
        (lambda: faults.delay(float("inf")), r"finite.*faults\.stall\(\)"),
        (lambda: faults.slow_close(float("inf")), "finite"),
        (lambda: faults.drip(float("inf")), "finite"),
        (lambda: faults.drip(0), "> 0"),
        (lambda: faults.drip(10, chunk=0), ">= 1"),
        (lambda: faults.drip(10, chunk=-1), ">= 1, got -1"),
        (lambda: faults.slicer(0), ">= 1"),
        (lambda: faults.slicer(-1), ">= 1, got -1"),
        (lambda: faults.oversized_header(-1), ">= 1, got -1"),
        (lambda: faults.latency(0.1, seed="x"), "seed"),
        (lambda: faults.garbage(b""), "non-empty bytes"),
        (lambda: faults.body_length(0), "non-zero"),
        (lambda: faults.oversized_header(0), ">= 1"),
        (lambda: faults.bad_content_length(5), r"must be a str, such as 'abc', got 5 \(int\)"),
        (lambda: faults.bad_content_length("10"), r"valid Content-Length.*faults\.body_length"),
        (lambda: faults.bad_content_length("\u20ac"), "latin-1"),
        (lambda: faults.bad_chunk_size("zz"), r"non-empty bytes, such as b'zz', got 'zz' \(str\)"),
        (lambda: faults.bad_chunk_size(b""), "non-empty bytes"),
        (lambda: faults.bad_chunk_size(b"10"), r"hex chunk size.*such as b'zz'"),
        # libcurl reads 1 and ignores the rest: only the body's length would decide.
        (lambda: faults.bad_chunk_size(b"1g"), r"hex chunk size"),
        (lambda: faults.wrong_encoding(5), r"must be a str, such as 'gzip', got 5 \(int\)"),
        (lambda: faults.wrong_encoding("identity"), "names no content coding"),
        (lambda: faults.drip(10) + faults.slicer(5), "one pacing fault"),
        (lambda: faults.Compose(faults=()), "at least one stream fault"),
        (lambda: faults.latency(0.1) + faults.latency(0.2), "one latency"),
        (lambda: faults.delay(float("nan")), r"number of seconds, got nan \(not a number\)"),
        # a connection fault or a WebSocket fault in a sum: a bare TypeError before
        (
            lambda: faults.refuse() + faults.close(),
            r"only stream faults compose.*refuse\(\) is a connection fault.*connection_faults",
        ),
        (lambda: faults.close() + faults.refuse(), r"refuse\(\) is a connection fault"),
        (lambda: faults.ws_drop() + faults.close(), r"ws_drop\(reset=False\) is not a stream"),
        (lambda: faults.close() + faults.ws_drop(), r"ws_drop\(reset=False\) is not a stream"),
        # two HTTP/2 faults that each end the answer: only the first acted, silently
        (
            lambda: faults.goaway(last_stream_id=1) + faults.rst_stream(),
            r"goaway\(.*\) \+ rst_stream\(.*\): compose at most one of rst_stream",
        ),
        (lambda: faults.bad_frame() + faults.flow_stall(), "at most one of rst_stream"),
        (lambda: faults.refused_stream() + faults.goaway(), "at most one of rst_stream"),
    ],
)
def test_bad_fault_specs_fail_at_declaration(make, message) -> None:
    with pytest.raises(UsageError, match=message):
        make()


def _unchecked(cls, **values):
    """A ``cls`` fault with ``values``, made without the checks its __post_init__ runs."""
    fault = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(fault, name, value)
    return fault


# (fault class, field, value, client options): BODY is 5120 (hex 1400) bytes.
SPEC_VALUES = [
    (faults.BadContentLength, "value", "5120", {}),
    (faults.BadContentLength, "value", " 5120 , 5120", {}),
    (faults.BadContentLength, "value", "10", {}),
    (faults.BadContentLength, "value", "5120,10", {}),
    (faults.BadContentLength, "value", "+5120", {}),
    (faults.BadContentLength, "value", "-1", {}),
    (faults.BadContentLength, "value", "", {}),
    (faults.BadChunkSize, "size_line", b"1400", {}),
    (faults.BadChunkSize, "size_line", b"1400;ext=1", {}),
    (faults.BadChunkSize, "size_line", b"1400 x", {}),
    (faults.BadChunkSize, "size_line", b"1400g", {}),  # libcurl ignores what follows
    (faults.BadChunkSize, "size_line", b"f" * 17, {}),
    (faults.BadChunkSize, "size_line", b"-1", {}),
    (faults.WrongEncoding, "encoding", "identity", {"ACCEPT_ENCODING": ""}),
    (faults.WrongEncoding, "encoding", "none", {"ACCEPT_ENCODING": ""}),
    (faults.WrongEncoding, "encoding", "", {"ACCEPT_ENCODING": ""}),
    (faults.WrongEncoding, "encoding", "identity, gzip", {"ACCEPT_ENCODING": ""}),
    (faults.WrongEncoding, "encoding", "br", {"ACCEPT_ENCODING": ""}),
]


@pytest.mark.parametrize(
    ("cls", "field", "value", "opts"),
    SPEC_VALUES,
    ids=[f"{c.name}({v!r})" for c, _, v, _ in SPEC_VALUES],
)
def test_protocol_fault_refuses_exactly_the_values_that_break_nothing(
    curlfault, cls, field, value, opts
) -> None:
    """A value is refused at declaration if and only if, sent anyway, libcurl does not
    return the fault's documented CURLcode (it frames the body by it, or decodes nothing)."""
    try:
        fault, refused = cls(**{field: value}), False
    except UsageError:
        fault, refused = _unchecked(cls, **{field: value}), True
    serve(curlfault, fault)
    code = transfer("http://api.test/", TIMEOUT=2, **opts).code
    assert refused == (code != cls.curlcode), (code, refused)


def test_composition_is_flat_and_reprs_read_like_calls() -> None:
    f = faults.delay(0.5) + (faults.slicer(10) + faults.reset(after_bytes=100))
    assert isinstance(f, faults.Compose)
    assert len(f.faults) == 3
    assert repr(f) == (
        "delay(seconds=0.5, after_bytes=0) + slicer(after_bytes=0, size=10, delay=0.0)"
        " + reset(after_bytes=100)"
    )


def test_unmodelled_connection_fault_is_refused_at_declaration(curlfault) -> None:
    api = curlfault.http("api.test")
    unmodelled = [
        f
        for f in (faults.connection_refused(), faults.connect_timeout(), faults.slow_connect(1))
        if not f.modelled
    ]
    for f in unmodelled:
        with pytest.raises(NotImplementedError, match="not modelled yet"):
            api.connection_faults(f)


@pytest.mark.parametrize("fault", [faults.close(), faults.reset()], ids=["close", "reset"])
def test_a_cut_before_any_response_byte_on_a_reused_connection_is_retried(
    curlfault, fault: faults.StreamFault
) -> None:
    # As docs/faults.md says: the CURLcode table is for a fresh connection. On a reused
    # keep-alive connection libcurl takes a close before any response byte for a stale
    # connection and sends the request again on a new one, a POST included: 0, and the
    # fake records the POST twice (the bug a client that must not repeat a payment has).
    api = curlfault.http("api.test", transport="tcp")
    api.get("/warm").respond(200)
    api.post("/pay").respond(200, fault=fault).respond(201)
    c = pycurl.Curl()
    try:
        assert transfer("http://api.test/warm", curl=c).code == 0
        r = transfer("http://api.test/pay", curl=c, POSTFIELDS="amount=10")
        assert (r.code, r.status) == (0, 201)
    finally:
        c.close()
    assert [q.body for q in api.post("/pay").requests] == [b"amount=10", b"amount=10"]
    assert [q.connection_id for q in api.requests] == [1, 1, 2]
    # on a fresh connection the same fault is the table's code, and nothing is repeated
    api.post("/fresh").respond(200, fault=fault)
    r = transfer("http://api.test/fresh", POSTFIELDS="amount=10")
    assert r.code == (pycurl.E_GOT_NOTHING if fault == faults.close() else pycurl.E_RECV_ERROR)
    assert len(api.post("/fresh").requests) == 1


def test_a_fault_on_a_kept_alive_connection_names_its_request_in_the_trace(curlfault) -> None:
    # Two requests on one connection, the second one cut in its body (past the headers, or
    # libcurl retries on a new connection): the trace header says which request.
    api = curlfault.http("api.test")
    api.get("/a").respond(200, body=b"fine")
    api.get("/b").respond(200, body=b"x" * 100, fault=faults.close(after_bytes=60))
    c = pycurl.Curl()
    try:
        assert transfer("http://api.test/a", curl=c).code == 0
        assert transfer("http://api.test/b", curl=c).code == 18
    finally:
        c.close()
    (conn,) = api.connections
    assert conn.url == "http://api.test/a"
    assert conn.fault_on == "GET /b"
    assert " url=http://api.test/a fault=close(" in conn.describe().splitlines()[0]
    assert conn.describe().splitlines()[0].endswith(" on GET /b")


def test_a_composed_fault_is_named_whole_in_the_trace(curlfault) -> None:
    api = curlfault.http("api.test")
    fault = faults.delay(0.01) + faults.close(after_bytes=60)
    api.get("/").respond(200, body=b"x" * 100, fault=fault)
    assert transfer("http://api.test/").code == 18
    (conn,) = api.connections
    assert conn.fault == fault  # was None: the header named no fault at all
    assert conn.describe().splitlines()[0].endswith(f" fault={fault!r} on GET /")


def test_a_body_fault_taken_by_a_head_request_is_reported_not_lost() -> None:
    """A client that asks HEAD before GET takes the GET route's first step with the HEAD;
    a byte point past the end of that headers-only response was meant for a body, so the
    fault is not played and check() names the HEAD and the fix. With head() declared, the
    GET gets its fault (18) and nothing is reported."""
    big = b"x" * 5000
    for declare_head in (False, True):
        with FakeNetwork() as net:
            api = net.http("api.test")
            if declare_head:
                api.head("/f").respond(200, headers={"Content-Length": "5000"})
            api.get("/f").respond(200, body=big, fault=faults.close(after_bytes=3000))
            api.get("/f").respond(200, body=big)
            with net.intercept():
                head = transfer("http://api.test/f", NOBODY=1)
                get = transfer("http://api.test/f")
            if declare_head:
                assert (head.code, get.code) == (0, pycurl.E_PARTIAL_FILE)
                continue
            assert (head.code, head.status) == (0, 200)
            assert (get.code, get.body) == (0, big)  # the second step: healthy
            with pytest.raises(UsageError, match=r"close\(after_bytes=3000\) fell to HEAD /f"):
                net.check()


def test_a_body_fault_on_a_head_route_is_reported_without_the_get_advice() -> None:
    with FakeNetwork() as net:
        api = net.http("api.test")
        api.head("/f").respond(200, fault=faults.close(after_bytes=3000))
        with net.intercept():
            assert transfer("http://api.test/f", NOBODY=1).code == 0
        with pytest.raises(UsageError) as info:
            net.check()
    text = str(info.value).splitlines()[0]
    assert "fell to HEAD /f" in text
    assert text.endswith("a byte point must fall inside the response it cuts")
