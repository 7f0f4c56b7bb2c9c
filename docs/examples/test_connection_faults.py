import io
import time

import pycurl

from curlfault import faults


# --8<-- [start:helper]
def perform(url, **options):
    """Run one GET; return its CURLcode (0 when the transfer succeeded)."""
    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, io.BytesIO())
    curl.setopt(pycurl.TIMEOUT, 10)
    for name, value in options.items():
        curl.setopt(getattr(pycurl, name), value)
    try:
        curl.perform()
    except pycurl.error as exc:
        return exc.args[0]
    finally:
        curl.close()
    return 0


# --8<-- [end:helper]


# --8<-- [start:connection-refused]
def test_a_server_that_is_down_then_up(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    # libcurl's own connect() meets a closed port twice: ECONNREFUSED, as from a dead server.
    api.connection_faults(faults.connection_refused(), faults.connection_refused())

    codes = [perform("http://api.test/") for _ in range(3)]

    assert codes == [pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_CONNECT, 0]  # 7, 7, 0
    assert [c.refused for c in api.connections] == [True, True, False]


# --8<-- [end:connection-refused]


# --8<-- [start:connect-timeout]
def test_a_server_that_never_answers_the_syn(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    api.connection_faults(faults.connect_timeout())

    start = time.monotonic()
    code = perform("http://api.test/", CONNECTTIMEOUT_MS=300)

    assert code == pycurl.E_OPERATION_TIMEDOUT  # 28
    assert 0.3 <= time.monotonic() - start < 1.5
    assert perform("http://api.test/") == 0  # the next connection is healthy


# --8<-- [end:connect-timeout]


# --8<-- [start:slow-connect]
def test_a_connect_that_completes_late(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    api.connection_faults(faults.slow_connect(0.5))

    assert perform("http://api.test/") == 0
    conn = api.connections[0]
    # The connect completed on the kernel's first SYN retransmission after 0.5 s: ~1 s.
    assert 1.0 <= conn.connected_at - conn.opened_at < 1.5


# --8<-- [end:slow-connect]


# --8<-- [start:happy-eyeballs]
def test_ipv6_is_down_and_libcurl_falls_back_to_ipv4(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    # The host now resolves to an IPv6 and an IPv4 address; libcurl tries IPv6 first.
    api.connection_faults(faults.connect_timeout(), family="ipv6")

    assert perform("http://api.test/") == 0

    ipv6, ipv4 = api.connections
    assert (ipv6.family, ipv4.family) == ("ipv6", "ipv4")
    assert ipv6.connected_at is None  # the losing attempt, closed by libcurl
    assert ipv4.connected_at is not None


# --8<-- [end:happy-eyeballs]


# --8<-- [start:listener]
def test_libcurl_connects_to_a_real_listener(curlfault):
    api = curlfault.http("api.test", transport="listener")
    api.get("/").respond(200, body="ok")
    api.get("/cut").respond(200, body=b"x" * 1000, fault=faults.reset(after_bytes=100))

    assert perform("http://api.test/") == 0
    assert perform("http://api.test/cut") == pycurl.E_RECV_ERROR  # a listener's RST: 56
    assert {c.transport for c in api.connections} == {"listener"}


# --8<-- [end:listener]
