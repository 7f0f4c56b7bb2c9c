"""Connection faults met by libcurl's own connect, the listener transport, and happy eyeballs.

Every test drives real pycurl. ``connection_refused``, ``connect_timeout`` and
``slow_connect`` hand libcurl an unconnected socket that it connects itself to the endpoint's
reserved loopback port; the ``"listener"`` transport serves healthy connections the same way.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import FakeNetwork, UsageError, faults
from curlfault._listener import release_delay, syn_schedule

TRANSPORTS = ["socketpair", "tcp", "listener"]
URL = "http://api.test/"
SHORT_CONNECT = {"CONNECTTIMEOUT_MS": 300}


def _api(net: FakeNetwork, transport: str = "socketpair", body: str = "up") -> Any:
    api = net.http("api.test", transport=transport)
    api.get("/").respond(body=body)
    return api


def _reserved_port(api: Any) -> int:
    _, connect_to = api.pin_entries()
    return int(connect_to.rsplit(":", 1)[1])


def _timed(url: str, **opts: Any) -> tuple[int, float, bytes]:
    start = time.monotonic()
    r = transfer(url, **opts)
    return r.code, time.monotonic() - start, r.body


def _assert_balanced(net: FakeNetwork) -> None:
    __tracebackhide__ = True
    assert net.ledger.audit().ok
    assert [r.closes for r in net.ledger.records] == [1] * len(net.ledger.records)


# connection_refused ------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_is_met_by_libcurls_own_connect(curlfault, transport: str) -> None:
    api = _api(curlfault, transport)
    api.connection_faults(faults.connection_refused(), None)
    c = pycurl.Curl()
    try:
        assert transfer(URL, curl=c).code == pycurl.E_COULDNT_CONNECT  # 7
        r = transfer(URL, curl=c)
        assert (r.code, r.body) == (0, b"up")
        # The handle is pinned to the reserved port, not to port 80.
        assert c.getinfo(pycurl.PRIMARY_PORT) == _reserved_port(api) != 80
    finally:
        c.close()
    refused, healthy = api.connections
    assert refused.peer == f"{api.alias}:{_reserved_port(api)}"
    assert refused.refused
    assert refused.transport == "listener"
    assert refused.channel is None  # nothing was ever accepted
    assert refused.fault == faults.connection_refused()
    assert not healthy.refused
    assert healthy.transport == transport
    # A descriptor existed for the refused attempt (unlike refuse()), and libcurl closed it.
    records = curlfault.ledger.records
    assert [r.connected for r in records] == [False, transport != "listener"]
    _assert_balanced(curlfault)


def test_connection_refused_every_time_and_refuse_agree(curlfault) -> None:
    api = _api(curlfault)
    api.connection_faults(faults.connection_refused(), faults.refuse(), faults.connection_refused())
    assert [transfer(URL).code for _ in range(4)] == [7, 7, 7, 0]
    assert [c.refused for c in api.connections] == [True, True, True, False]
    assert len(curlfault.ledger.records) == 3  # refuse() made no descriptor
    _assert_balanced(curlfault)


# connect_timeout ---------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_timeout_ends_at_connecttimeout(curlfault, transport: str) -> None:
    api = _api(curlfault, transport)
    api.connection_faults(faults.connect_timeout())
    code, elapsed, _ = _timed(URL, **SHORT_CONNECT)
    assert code == pycurl.E_OPERATION_TIMEDOUT  # 28
    assert 0.29 <= elapsed < 1.5
    conn = api.connections[0]
    assert conn.connected_at is None
    assert conn.closed_at is not None
    # The next connection is healthy, whatever the port went through.
    assert transfer(URL).body == b"up"
    _assert_balanced(curlfault)


def test_connect_timeout_without_connecttimeout_ends_at_timeout(curlfault) -> None:
    _api(curlfault).connection_faults(faults.connect_timeout())
    code, elapsed, _ = _timed(URL, TIMEOUT_MS=300)
    assert code == 28
    assert elapsed < 1.5


def test_connect_timeout_outlasts_the_kernels_syn_retries(curlfault) -> None:
    # The kernel would give up after tcp_syn_retries; the fault's socket retries until
    # libcurl's own timeout, so the code is 28, never ETIMEDOUT's 7.
    api = _api(curlfault)
    api.connection_faults(faults.connect_timeout())
    seen: list[int] = []

    def sockopt(fd: int, purpose: int) -> int:
        with socket.socket(fileno=fd) as sock:
            try:
                seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT))
            finally:
                sock.detach()
        return pycurl.SOCKOPT_OK

    assert transfer(URL, SOCKOPTFUNCTION=sockopt, **SHORT_CONNECT).code == 28
    assert seen == [127]


# slow_connect ------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_connect_completes_on_the_next_syn_retransmission(curlfault, transport: str) -> None:
    api = _api(curlfault, transport)
    api.connection_faults(faults.slow_connect(0.2))
    code, elapsed, body = _timed(URL)
    assert (code, body) == (0, b"up")
    conn = api.connections[0]
    assert conn.connected_at is not None
    delay = conn.connected_at - conn.opened_at
    first_retransmission = syn_schedule()[0]  # 1 s on Linux
    assert first_retransmission <= delay < first_retransmission + 0.5
    assert delay <= elapsed
    assert any("accepted: libcurl's connect completed after" in e for _, e in conn.events)
    _assert_balanced(curlfault)


def test_slow_connect_past_connecttimeout_is_28_then_the_port_serves(curlfault) -> None:
    api = _api(curlfault, "listener")
    api.connection_faults(faults.slow_connect(2.0), None)
    code, elapsed, _ = _timed(URL, **SHORT_CONNECT)
    assert code == 28
    assert elapsed < 1.0
    assert api.connections[0].connected_at is None
    # The hold ended with the connection that needed it: the listener serves at once.
    code, elapsed, body = _timed(URL)
    assert (code, body) == (0, b"up")
    assert elapsed < 0.5
    _assert_balanced(curlfault)


@pytest.mark.parametrize(
    ("seconds", "lift", "due"),
    [
        (0.2, 0.2, 1.0),
        (1.0, 0.75, 1.0),  # due exactly at a retransmission: lift early, not in a race
        (1.01, 1.2, 2.0),  # just after one: skip it, wait for the next
        (1.5, 1.5, 2.0),
    ],
)
def test_release_delay_never_races_a_retransmission(
    seconds: float, lift: float, due: float
) -> None:
    schedule = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]  # Linux 6.5+ defaults
    assert release_delay(seconds, schedule) == pytest.approx((lift, due))
    assert release_delay(2.5, [1.0, 3.0, 7.0]) == pytest.approx((2.5, 3.0))  # older kernels


def test_syn_schedule_starts_at_one_second() -> None:
    schedule = syn_schedule()
    assert schedule[0] == 1.0
    assert schedule == sorted(schedule)


# the listener transport --------------------------------------------------------------------
@pytest.mark.parametrize("how", ["refuse late", "connection_refused late", "up front"])
def test_a_kept_alive_connection_and_a_connect_fault_declared_later(curlfault, how) -> None:
    # As faults.md says: refuse() changes no pins, so the idle connection is reused and the
    # fault waits for a new one; connection_refused() declared later re-pins the handle,
    # libcurl does not reuse a connection whose CONNECT_TO target changed, and the next
    # request meets the fault; declared up front after a healthy first connection, the
    # kept connection is reused and the next new one is refused.
    api = _api(curlfault)
    if how == "up front":
        api.connection_faults(None, faults.connection_refused())
    c = pycurl.Curl()
    try:
        assert transfer(URL, curl=c).code == 0
        if how == "refuse late":
            api.connection_faults(faults.refuse())
        elif how == "connection_refused late":
            api.connection_faults(faults.connection_refused())
        second = transfer(URL, curl=c).code
        fresh = transfer(URL, curl=c, FRESH_CONNECT=1).code
    finally:
        c.close()
    expected = {
        "refuse late": (0, 7),
        "connection_refused late": (7, 0),
        "up front": (0, 7),
    }[how]
    assert (second, fresh) == expected
    opened = len(api.connections)
    assert opened == (2 if how != "connection_refused late" else 3)


def test_listener_serves_keep_alive_connections(curlfault) -> None:
    api = _api(curlfault, "listener")
    c = pycurl.Curl()
    try:
        bodies = [transfer(URL, curl=c).body for _ in range(3)]
        assert c.getinfo(pycurl.PRIMARY_IP) == api.alias
        assert c.getinfo(pycurl.PRIMARY_PORT) == _reserved_port(api)
        assert c.getinfo(pycurl.LOCAL_PORT) != 0  # a real TCP socket, not a socketpair
    finally:
        c.close()
    assert bodies == [b"up"] * 3
    (conn,) = api.connections  # one connection, reused
    assert conn.transport == "listener"
    (record,) = curlfault.ledger.records
    assert (record.kind, record.connected, record.closes) == ("listener", False, 1)


def test_listener_serves_https(curlfault) -> None:
    secure = curlfault.https("secure.test", transport="listener")
    secure.get("/").respond(body="tls over a listener")
    r = transfer("https://secure.test/")
    assert (r.code, r.body) == (0, b"tls over a listener")
    assert secure.connections[0].tls["version"] in ("TLSv1.2", "TLSv1.3")


def test_listener_stream_faults_give_the_documented_codes(curlfault) -> None:
    api = curlfault.http("api.test", transport="listener")
    body = b"x" * 5000
    api.get("/nothing").respond(body=body, fault=faults.close(after_bytes=0))
    api.get("/partial").respond(body=body, fault=faults.close(after_bytes=1000))
    api.get("/reset").respond(body=body, fault=faults.reset(after_bytes=1000))
    api.get("/stall").respond(body=body, fault=faults.stall(at="body"))
    assert transfer("http://api.test/nothing").code == 52
    assert transfer("http://api.test/partial").code == 18
    assert transfer("http://api.test/reset").code == 56
    assert transfer("http://api.test/stall", TIMEOUT_MS=300).code == 28
    # An RST needs TCP, which a listener's connections are: no fallback to a TCP pair.
    assert {c.transport for c in api.connections} == {"listener"}


def test_listener_reset_from_a_handler_is_a_real_rst(curlfault) -> None:
    from curlfault import Response

    api = curlfault.http("api.test", transport="listener")
    api.get("/r").handle(
        lambda req: Response.make(200, body=b"z" * 100, fault=faults.reset(after_bytes=10))
    )
    assert transfer("http://api.test/r").code == 56


def test_listener_serves_concurrent_connections(curlfault) -> None:
    api = _api(curlfault, "listener")
    codes = _multi([URL] * 4)
    assert codes == [0, 0, 0, 0]
    assert len(api.connections) == 4
    assert len({c.id for c in api.connections}) == 4
    _assert_balanced(curlfault)


def test_listener_queues_a_burst_of_connects(curlfault) -> None:
    # 300 connects at once: with a backlog of 128 the kernel dropped SYNs past the queue,
    # and those connects waited a 1 s retransmit, past this 0.8 s connect timeout (28).
    api = _api(curlfault, "listener")
    codes = _multi([URL] * 300, CONNECTTIMEOUT_MS=800)
    assert codes == [0] * 300
    assert len(api.connections) == 300
    _assert_balanced(curlfault)


def _multi(urls: list[str], **opts: Any) -> list[int]:
    """Run ``urls`` at once in one CurlMulti; their CURLcodes, in order."""
    multi = pycurl.CurlMulti()
    handles = []
    try:
        for url in urls:
            c = pycurl.Curl()
            c.setopt(pycurl.URL, url)
            c.setopt(pycurl.WRITEDATA, io.BytesIO())
            c.setopt(pycurl.TIMEOUT, 10)
            # Closed at the end of each transfer, through closesocket: pycurl closes a
            # multi's pooled connections in C, which the ledger counts as gone, not closed.
            c.setopt(pycurl.FORBID_REUSE, 1)
            for name, value in opts.items():
                c.setopt(getattr(pycurl, name), value)
            multi.add_handle(c)
            handles.append(c)
        deadline = time.monotonic() + 20
        codes: dict[int, int] = {}
        while len(codes) < len(handles) and time.monotonic() < deadline:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _, ok, failed = multi.info_read()
            codes.update({id(c): 0 for c in ok})
            codes.update({id(c): code for c, code, _ in failed})
            multi.select(0.05)
        return [codes.get(id(c), -1) for c in handles]
    finally:
        for c in handles:
            multi.remove_handle(c)
            c.close()
        multi.close()


# happy eyeballs: faults per address family --------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "ipv6_fault",
    [faults.refuse(), faults.connection_refused(), faults.connect_timeout()],
    ids=repr,
)
def test_ipv6_fails_and_happy_eyeballs_falls_back_to_ipv4(
    curlfault, transport: str, ipv6_fault: faults.ConnectionFault
) -> None:
    api = _api(curlfault, transport)
    api.connection_faults(ipv6_fault, family="ipv6")
    c = pycurl.Curl()
    try:
        code, elapsed, body = _timed(URL, curl=c)
        assert (code, body) == (0, b"up")
        assert c.getinfo(pycurl.PRIMARY_IP) == api.alias  # served over IPv4
    finally:
        c.close()
    v6, v4 = api.connections
    assert (v6.family, v4.family) == ("ipv6", "ipv4")
    assert v6.fault == ipv6_fault
    assert v4.fault is None
    assert v4.connected_at is not None
    assert v6.connected_at is None
    if isinstance(ipv6_fault, faults.ConnectTimeout):
        # libcurl starts the IPv4 attempt ~200 ms after the pending IPv6 one, then closes
        # the loser through closesocket during perform.
        assert 0.15 < elapsed < 1.0
        assert v6.closed_at is not None
    # Every descriptor, the losing IPv6 attempt's included, was closed once.
    _assert_balanced(curlfault)
    assert len(curlfault.ledger.records) == (1 if isinstance(ipv6_fault, faults.Refuse) else 2)


def test_a_tls_fault_on_ipv6_gets_no_ipv4_fallback(curlfault) -> None:
    # As docs/faults.md says: happy eyeballs races connects; once IPv6's TCP connect has
    # succeeded, a failed handshake on it is the transfer's result (35), with no IPv4 try.
    api = curlfault.https("secure.test")
    api.get("/").respond(200)
    api.connection_faults(faults.handshake_reset(), family="ipv6")
    assert transfer("https://secure.test/").code == pycurl.E_SSL_CONNECT_ERROR
    assert [c.family for c in api.connections] == ["ipv6"]
    assert transfer("https://secure.test/").code == 0  # the next connection is healthy


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_healthy_ipv6_wins_and_ipv4_faults_wait(curlfault, transport: str) -> None:
    api = _api(curlfault, transport)
    api.connection_faults(faults.connection_refused(), family="ipv4")
    c = pycurl.Curl()
    try:
        assert transfer(URL, curl=c).body == b"up"
        # A dual-stack host: libcurl tried (and got) IPv6 first; a listener is on ::1.
        expected = "::1" if transport == "listener" else api.alias6
        assert c.getinfo(pycurl.PRIMARY_IP) == expected
        # Forced onto IPv4, the IPv4 fault applies.
        assert transfer(URL, curl=c, IPRESOLVE=pycurl.IPRESOLVE_V4).code == 7
    finally:
        c.close()
    assert [(conn.family, conn.refused) for conn in api.connections] == [
        ("ipv6", False),
        ("ipv4", True),
    ]


def test_family_sequences_count_their_own_connections(curlfault) -> None:
    api = _api(curlfault)
    api.connection_faults(faults.refuse(), faults.connection_refused(), family="ipv6")
    api.connection_faults(faults.refuse())  # every family without a list of its own: IPv4
    assert [transfer(URL).code for _ in range(3)] == [7, 0, 0]
    assert [(c.family, c.refused) for c in api.connections] == [
        ("ipv6", True),  # transfer 1: IPv6 refuse()
        ("ipv4", True),  # IPv4 takes the first fault of the list for every family
        ("ipv6", True),  # transfer 2: IPv6 connection_refused()
        ("ipv4", False),
        ("ipv6", False),  # transfer 3: both lists are used up
    ]
    _assert_balanced(curlfault)


def test_dual_stack_pins_never_ask_a_resolver(curlfault) -> None:
    api = _api(curlfault)
    api.connection_faults(faults.refuse(), family="ipv6")
    resolve, connect_to = curlfault.pins()
    name = f"cf-1.curlfault.invalid:80:[{api.alias6}],{api.alias}"
    assert name in resolve
    assert connect_to[0] == "api.test:80:cf-1.curlfault.invalid:80"
    # .invalid never resolves (RFC 6761): the transfer can only succeed through the RESOLVE
    # entry, from libcurl's own cache. (strace shows no resolver query at all.)
    assert transfer(URL).body == b"up"


# routing and sharing -----------------------------------------------------------------------
def test_handle_pinned_before_the_fault_is_repinned_even_in_a_multi(curlfault) -> None:
    api = _api(curlfault)
    c = pycurl.Curl()
    c.setopt(pycurl.URL, URL)  # pinned now, to port 80
    # Needs a reserved port: declaring it re-pins every live routed handle at once, so a
    # multi, which never calls the handle's perform(), still meets the fault.
    api.connection_faults(faults.connection_refused())
    multi = pycurl.CurlMulti()
    try:
        c.setopt(pycurl.WRITEDATA, io.BytesIO())
        multi.add_handle(c)
        deadline = time.monotonic() + 10
        failed: list[Any] = []
        while not failed and time.monotonic() < deadline:
            multi.perform()
            failed = multi.info_read()[2]
            multi.select(0.05)
        assert [code for _, code, _ in failed] == [7]
    finally:
        multi.remove_handle(c)
        c.close()
        multi.close()
    (conn,) = api.connections
    assert conn.transport == "listener"  # libcurl's own connect met the closed port
    assert conn.refused
    curlfault.check()


def test_attached_handle_is_repinned_when_faults_are_declared() -> None:
    net = FakeNetwork()
    try:
        api = _api(net)
        c = net.attach(pycurl.Curl())
        assert transfer(URL, curl=c).code == 0
        api.connection_faults(faults.connection_refused(), faults.connect_timeout())
        assert transfer(URL, curl=c).code == 7
        assert transfer(URL, curl=c, **SHORT_CONNECT).code == 28
        assert transfer(URL, curl=c).code == 0
        c.close()
        net.check()
    finally:
        net.close()


def test_concurrent_connections_sharing_a_held_port_are_reported(curlfault) -> None:
    api = _api(curlfault, "listener")
    api.connection_faults(faults.connect_timeout(), None)
    codes = _multi([URL, URL], **SHORT_CONNECT)
    assert codes[0] == 28
    with pytest.raises(UsageError, match="share its port"):
        curlfault.check()
    assert len(api.connections) == 2


@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_concurrent_connections_next_to_a_held_port_are_served_on_pair_transports(
    curlfault, transport: str
) -> None:
    # Only the faulted connection uses the reserved port (libcurl's own connect); the others
    # are handed a pair as usual, so nothing waits and nothing is reported (faults.md).
    api = _api(curlfault, transport)
    api.connection_faults(faults.connect_timeout(), None, None)
    codes = _multi([URL, URL, URL], **SHORT_CONNECT)
    assert sorted(codes) == [0, 0, 28]
    assert sorted(c.transport for c in api.connections) == sorted(
        ["listener", transport, transport]
    )
    curlfault.check()


def test_closing_the_network_ends_a_pending_slow_connect() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            _api(net, "listener").connection_faults(faults.slow_connect(5.0))
            assert transfer(URL, **SHORT_CONNECT).code == 28
    finally:
        net.close()  # the hold's timer, our filler and the port go; conftest checks the fds


def test_ipv6_port_taken_moves_every_family_to_a_fresh_port(curlfault) -> None:
    api = _api(curlfault)
    api.connection_faults(faults.connection_refused())  # an IPv4 port is reserved
    old = _reserved_port(api)
    with socket.socket(socket.AF_INET6) as squatter:
        squatter.bind(("::1", old))  # the same number on ::1 is taken
        api.connection_faults(faults.connection_refused(), family="ipv6")
    new = _reserved_port(api)
    assert new != old
    assert transfer(URL).code == 7  # refused on IPv6, then on IPv4, both at the new port
    assert [(c.family, c.peer, c.refused) for c in api.connections] == [
        ("ipv6", f"[::1]:{new}", True),
        ("ipv4", f"{api.alias}:{new}", True),
    ]
    assert transfer(URL).code == 0


def test_no_port_for_a_family_is_a_usage_error_and_changes_nothing(
    curlfault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import curlfault._endpoints as network

    def unavailable(addresses: Any, port: Any = None) -> Any:
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    api = _api(curlfault)
    pins = curlfault.pins()
    monkeypatch.setattr(network, "reserve_port", unavailable)
    with pytest.raises(UsageError, match=r"none could be reserved.*IPv6 loopback"):
        api.connection_faults(faults.connect_timeout(), family="ipv6")
    assert not api.dual_stack
    assert curlfault.pins() == pins
    assert transfer(URL).code == 0


def test_tornado_retries_through_connection_faults(curlfault) -> None:
    pytest.importorskip("tornado")
    from tornado.curl_httpclient import CurlAsyncHTTPClient
    from tornado.httpclient import HTTPClientError
    from tornado.ioloop import IOLoop

    api = _api(curlfault, "listener")
    api.connection_faults(faults.connection_refused(), faults.connect_timeout())

    async def main() -> list[int]:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            codes = []
            for _ in range(3):
                try:
                    r = await client.fetch(URL, connect_timeout=0.3, request_timeout=10)
                    codes.append(r.code)
                except HTTPClientError as exc:  # tornado raises a failed connect: 599
                    codes.append(exc.code)
            return codes
        finally:
            client.close()

    loop = IOLoop(make_current=False)
    try:
        # A refused connect and a connect timeout, then the third request is served.
        assert loop.run_sync(main, timeout=30) == [599, 599, 200]
    finally:
        loop.close(all_fds=True)
    assert [c.refused for c in api.connections] == [True, False, False]
    assert api.connections[1].connected_at is None


# validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["ipv5", "IPv6", "inet6", socket.AF_INET6, 6, ""])
def test_bad_family_is_a_usage_error(curlfault, family: Any) -> None:
    api = _api(curlfault)
    with pytest.raises(UsageError, match=r"family=.* is not known; use one of 'ipv6', 'ipv4'"):
        api.connection_faults(faults.refuse(), family=family)


@pytest.mark.parametrize("transport", ["udp", "Listener", "", None])
def test_bad_transport_is_a_usage_error(curlfault, transport: Any) -> None:
    with pytest.raises(UsageError, match=r"transport=.* is not known; .*'listener'"):
        curlfault.http("api.test", transport=transport)


@pytest.mark.parametrize(
    "wrong",
    [faults.close(0), faults.stall(), "refuse", faults.refuse],
    ids=["close", "stall", "a str", "the factory, not called"],
)
def test_wrong_kind_of_fault_is_a_usage_error(curlfault, wrong: Any) -> None:
    api = _api(curlfault)
    with pytest.raises(UsageError, match="is not a connection fault"):
        api.connection_faults(wrong, family="ipv6")
    with pytest.raises(UsageError, match="is not a connection fault"):
        api.connection_faults(None, wrong)


def test_connection_fault_given_as_stream_fault_is_a_usage_error(curlfault) -> None:
    api = _api(curlfault)
    with pytest.raises(UsageError, match="stream fault"):
        api.get("/x").respond(fault=faults.connect_timeout())  # type: ignore[arg-type]


def test_refusing_host_takes_no_connection_faults(curlfault) -> None:
    with pytest.raises(UsageError, match="refuses every connection"):
        curlfault.refuse("down.test").connection_faults(faults.connect_timeout())


def test_slow_connect_past_the_kernels_retransmissions_is_a_usage_error(curlfault) -> None:
    api = _api(curlfault)
    too_long = syn_schedule()[-1] + 1
    with pytest.raises(UsageError, match="longer than the kernel's SYN retransmissions"):
        api.connection_faults(faults.slow_connect(too_long))


def test_failed_declarations_change_nothing(curlfault) -> None:
    api = _api(curlfault)
    pins = curlfault.pins()
    with pytest.raises(UsageError):
        api.connection_faults(faults.connection_refused(), family="ipv7")
    assert curlfault.pins() == pins
    assert transfer(URL).code == 0
