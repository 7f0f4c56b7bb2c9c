import io
import time

import pycurl

from curlfault import faults


def get(url, **options):
    """GET ``url`` on a fresh handle; return (CURLcode, body)."""
    curl = pycurl.Curl()
    body = io.BytesIO()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.TIMEOUT, 10)
    for option, value in options.items():
        curl.setopt(getattr(pycurl, option), value)
    try:
        curl.perform()
    except pycurl.error as exc:
        return exc.args[0], body.getvalue()
    finally:
        curl.close()
    return 0, body.getvalue()


# --8<-- [start:h2]
def test_http2_over_tls(curlfault):
    api = curlfault.https("api.test", http2=True)  # ALPN offers h2 and http/1.1
    api.get("/items").respond(200, json=[1, 2])

    code, body = get("https://api.test/items", HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS)
    assert (code, body) == (0, b"[1, 2]")
    request = api.requests[0]
    assert (request.http_version, request.stream_id) == ("2", 1)
    assert api.connections[0].tls["alpn"] == "h2"

    # The same routes answer a client that negotiates HTTP/1.1.
    code, _ = get("https://api.test/items", HTTP_VERSION=pycurl.CURL_HTTP_VERSION_1_1)
    assert code == 0
    assert api.requests[1].http_version == "1.1"


# --8<-- [end:h2]


# --8<-- [start:h2c]
def test_h2c_with_prior_knowledge(curlfault):
    api = curlfault.http("api.test", http2=True)
    api.post("/echo").handle(lambda request: 200)

    code, _ = get(
        "http://api.test/echo",
        POSTFIELDS="hi",
        HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE,
    )
    assert code == 0
    assert api.requests[0].body == b"hi"
    assert api.requests[0].http_version == "2"


# --8<-- [end:h2c]


# --8<-- [start:rst]
def test_rst_stream_mid_body(curlfault):
    api = curlfault.https("api.test", http2=True)
    api.get("/big").respond(200, body=b"x" * 5000, fault=faults.rst_stream(after_bytes=1000))

    code, body = get("https://api.test/big", HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS)
    assert code == 92  # CURLE_HTTP2_STREAM
    assert body == b"x" * 1000
    rst = [f for f in api.connections[0].frames if f.type == "RST_STREAM"]
    assert [(f.direction, f.stream_id, f.error_code) for f in rst] == [("sent", 1, 2)]


# --8<-- [end:rst]


# --8<-- [start:slow-stream]
def test_a_slow_stream_meets_the_clients_timeout(curlfault):
    api = curlfault.http("api.test", http2=True)
    api.get("/report").respond(200, body=b"late", fault=faults.delay(30))

    code, body = get(
        "http://api.test/report",
        HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE,
        TIMEOUT_MS=500,
    )
    assert (code, body) == (28, b"")  # CURLE_OPERATION_TIMEDOUT
    assert api.requests[0].stream_id == 1  # the request arrived; its answer never did


def test_a_trickling_stream_meets_the_clients_low_speed_limit(curlfault):
    api = curlfault.http("api.test", http2=True)
    body = b"x" * 1000
    api.get("/export").respond(200, body=body, fault=faults.drip(50))  # 50 bytes a second

    code, got = get(
        "http://api.test/export",
        HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE,
        LOW_SPEED_LIMIT=100,  # bytes per second, over
        LOW_SPEED_TIME=1,  # seconds
    )
    assert code == 28  # CURLE_OPERATION_TIMEDOUT
    assert 0 < len(got) < len(body)  # what trickled in before libcurl gave up


# --8<-- [end:slow-stream]


# --8<-- [start:retries]
def test_refused_stream_is_retried_on_a_new_connection(curlfault):
    api = curlfault.https("api.test", http2=True)
    # The first step refuses the stream; libcurl's retry gets the second.
    api.get("/").respond(200, fault=faults.refused_stream()).respond(200, body="second try")

    code, body = get("https://api.test/", HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS)
    assert (code, body) == (0, b"second try")
    assert len(api.connections) == 2


def test_goaway_on_every_connection_gives_up(curlfault):
    api = curlfault.https("api.test", http2=True)
    api.get("/").respond(200, fault=faults.goaway(last_stream_id=0))  # repeats for every retry

    code, _ = get("https://api.test/", HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS)
    assert code == pycurl.E_RECV_ERROR  # 56
    assert len(api.connections) == 6  # the first and 5 retries


# --8<-- [end:retries]


# --8<-- [start:multiplex]
def test_many_transfers_share_one_connection(curlfault):
    api = curlfault.https("api.test", http2=True)
    for i in range(3):
        api.get(f"/{i}").respond(200, body=f"stream {i}")

    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    handles = []
    for i in range(3):
        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, f"https://api.test/{i}")
        curl.setopt(pycurl.WRITEFUNCTION, lambda data: None)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        curl.setopt(pycurl.PIPEWAIT, 1)  # wait for the first connection and share it
        curl.setopt(pycurl.TIMEOUT, 10)
        multi.add_handle(curl)
        handles.append(curl)
    deadline = time.monotonic() + 10
    while multi.perform()[1] and time.monotonic() < deadline:
        multi.select(0.05)
    for curl in handles:
        assert curl.getinfo(pycurl.RESPONSE_CODE) == 200
        multi.remove_handle(curl)
    multi.close()  # closes the pooled connection
    for curl in handles:
        curl.close()

    assert len(curlfault.ledger.records) == 1  # one opensocket
    assert sorted(r.stream_id for r in api.requests) == [1, 3, 5]


# --8<-- [end:multiplex]
