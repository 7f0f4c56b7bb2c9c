"""FakeNetwork routing, connection faults, HTTPS, non-strict mode and tornado."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import (
    CurlFaultError,
    FakeNetwork,
    LeakError,
    Tracker,
    UnexpectedConnection,
    UsageError,
    faults,
)


@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_connection_faults_nth_connection(curlfault, transport: str) -> None:
    api = curlfault.http("api.test", transport=transport)
    api.get("/").respond(body="up")
    api.connection_faults(faults.refuse(), None, faults.refuse())
    codes = [transfer("http://api.test/").code for _ in range(5)]
    assert codes == [7, 0, 7, 0, 0]
    assert [c.refused for c in api.connections] == [True, False, True, False, False]
    # Refused attempts never made a descriptor; the healthy ones closed exactly once.
    assert [r.closes for r in curlfault.ledger.records] == [1, 1, 1]
    assert {r.kind for r in curlfault.ledger.records} == {transport}


def test_connection_faults_count_from_declaration(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond()
    assert transfer("http://api.test/").code == 0
    api.connection_faults(faults.refuse())
    assert transfer("http://api.test/").code == 7
    assert transfer("http://api.test/").code == 0


def test_connection_faults_reject_stream_faults(curlfault) -> None:
    api = curlfault.http("api.test")
    with pytest.raises(UsageError, match=r"not a connection fault.*respond"):
        api.connection_faults(faults.close(5))
    with pytest.raises(UsageError, match="stream fault"):
        api.get("/").respond(fault=faults.refuse())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "advice"),
    [
        (faults.reset, "; call it: faults.reset(...)"),
        (faults.Reset, "; call it: faults.reset(...)"),
        ("close", "; pass faults.close(...), not the string"),
    ],
)
def test_a_stream_fault_not_called_says_call_it(curlfault, value: object, advice: str) -> None:
    api = curlfault.http("api.test")
    with pytest.raises(UsageError, match="is not a stream fault") as info:
        api.get("/").respond(fault=value)  # type: ignore[arg-type]
    assert str(info.value).endswith(advice)
    assert "connection_faults" not in str(info.value)  # the old advice misled here
    with pytest.raises(UsageError, match="cannot be composed") as info:
        faults.Compose(faults=(faults.delay(1), value))  # type: ignore[arg-type]
    assert str(info.value).endswith(advice)


@pytest.mark.parametrize(
    ("value", "advice"),
    [
        (faults.refuse, "; call it: faults.refuse()"),
        (faults.ConnectTimeout, "; call it: faults.connect_timeout()"),
        ("refuse", "; pass faults.refuse(), not the string"),
        (faults.tls_alert, "; call it: faults.tls_alert(...)"),
    ],
)
def test_a_connection_fault_not_called_says_call_it(curlfault, value: object, advice: str) -> None:
    api = curlfault.http("api.test")
    with pytest.raises(UsageError, match="is not a connection fault") as info:
        api.connection_faults(value)  # type: ignore[arg-type]
    assert str(info.value).endswith(advice)
    chat = api.websocket("/chat")
    with pytest.raises(UsageError, match="is not a WebSocket connection fault; call it"):
        chat.fault(faults.ws_drop)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"pass faults.ws_fragment.*, not the string"):
        chat.send("x", fault="ws_fragment")  # type: ignore[arg-type]


def test_other_non_faults_get_no_call_it_advice(curlfault) -> None:
    api = curlfault.http("api.test")
    for value in (3, "Reset", "nope", len):
        with pytest.raises(UsageError, match="is not a connection fault") as info:
            api.connection_faults(value)  # type: ignore[arg-type]
        assert "call it" not in str(info.value)
        assert "string" not in str(info.value)
    with pytest.raises(UsageError, match="connection faults such as refuse"):
        api.get("/").respond(fault=faults.refuse())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_fault_arguments_fail_at_declaration(bad: object) -> None:
    with pytest.raises(UsageError, match="after_bytes"):
        faults.close(after_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="after_bytes"):
        faults.reset(after_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_close_and_reset_codes(curlfault, transport: str) -> None:
    api = curlfault.http("api.test", transport=transport)
    body = b"x" * 5000
    api.get("/nothing").respond(body=body, fault=faults.close(after_bytes=0))
    api.get("/partial").respond(body=body, fault=faults.close(after_bytes=1000))
    api.get("/reset").respond(body=body, fault=faults.reset(after_bytes=1000))
    assert transfer("http://api.test/nothing").code == 52
    assert transfer("http://api.test/partial").code == 18
    assert transfer("http://api.test/reset").code == 56
    assert curlfault.ledger.audit().ok


def test_reset_forces_tcp_even_on_socketpair_endpoint(curlfault) -> None:
    api = curlfault.http("api.test")  # socketpair by default
    api.get("/r").respond(body=b"y" * 100, fault=faults.reset(after_bytes=10))
    assert transfer("http://api.test/r").code == 56
    assert api.connections[-1].transport == "tcp"


def test_https_is_trusted_by_default(curlfault) -> None:
    secure = curlfault.https("secure.test")
    secure.get("/").respond(body="tls ok")
    r = transfer("https://secure.test/")
    assert (r.code, r.body) == (0, b"tls ok")
    conn = secure.connections[0]
    assert conn.tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert conn.tls["alpn"] == "http/1.1"
    assert secure.requests[0].scheme == "https"


def test_https_keep_alive_and_post(curlfault) -> None:
    secure = curlfault.https("secure.test", 8443)
    secure.post("/p").handle(lambda req: len(req.body) and 201)
    c = pycurl.Curl()
    try:
        for _ in range(3):
            r = transfer("https://secure.test:8443/p", curl=c, POSTFIELDS="x" * 70000)
            assert (r.code, r.status) == (0, 201)
    finally:
        c.close()
    assert len(secure.connections) == 1


def test_https_untrusted_when_trust_is_off() -> None:
    net = FakeNetwork(trust=False)
    try:
        with net.intercept():
            net.https("secure.test").get("/").respond(body="x")
            assert transfer("https://secure.test/").code == 60
        net.check()
    finally:
        net.close()


def test_user_trust_settings_win(curlfault, tmp_path) -> None:
    curlfault.https("secure.test").get("/").respond(body="mine")
    # The client under test trusts its own CA file: curlfault does not override it.
    ca_file = tmp_path / "ca.pem"
    curlfault.ca.cert_pem.write_to_path(str(ca_file))
    assert transfer("https://secure.test/", CAINFO=str(ca_file)).body == b"mine"
    other = tmp_path / "other.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(other))
    assert transfer("https://secure.test/", CAINFO=str(other)).code == 60


def test_ip_literal_hosts_are_faked(curlfault) -> None:
    curlfault.http("10.1.2.3", 8080).get("/").respond(body="not really 10.1.2.3")
    curlfault.http("::1", 9000).get("/").respond(body="v6 literal")
    assert transfer("http://10.1.2.3:8080/").body == b"not really 10.1.2.3"
    assert transfer("http://[::1]:9000/").body == b"v6 literal"


def test_host_names_are_case_insensitive(curlfault) -> None:
    curlfault.http("API.Test").get("/").respond(body="ci")
    assert transfer("http://api.TEST/").body == b"ci"


class _OneShotServer:
    """A real loopback server answering one HTTP request (for strict=False tests)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nreal")

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


def test_non_strict_lets_unknown_hosts_through_and_tracks_them() -> None:
    server = _OneShotServer()
    net = FakeNetwork(strict=False)
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(body="fake")
            assert transfer("http://api.test/").body == b"fake"
            assert transfer(f"http://127.0.0.1:{server.port}/").body == b"real"
        kinds = [r.kind for r in net.ledger.records]
        assert kinds == ["socketpair", "passthrough"]
        assert net.ledger.audit().ok
        net.check()
    finally:
        net.close()
        server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_non_strict_still_reaches_a_real_local_server_beside_a_fake(host: str) -> None:
    """No resolver is asked for an IP literal or localhost: their other ports stay real."""
    server = _OneShotServer()
    net = FakeNetwork(strict=False)
    try:
        with net.intercept():
            net.http(host, 9).get("/").respond(body="fake")
            assert transfer(f"http://{host}:9/").body == b"fake"
            assert transfer(f"http://127.0.0.1:{server.port}/").body == b"real"
        net.check()
    finally:
        net.close()
        server.close()


def test_an_ipv4_mapped_ipv6_host_is_pinned_as_libcurl_spells_it(curlfault) -> None:
    curlfault.http("::ffff:127.0.0.1").get("/").respond(body="mapped")
    curlfault.http("[2001:DB8:0:0::1]").get("/").respond(body="compressed")
    assert transfer("http://[::ffff:127.0.0.1]/").body == b"mapped"
    assert transfer("http://[2001:db8::1]/").body == b"compressed"


def test_non_strict_never_resolves_a_fake_host_on_another_port() -> None:
    """A fake or refused host's undeclared ports are refused (7), not resolved (6)."""
    from curlfault import UnexpectedConnection

    net = FakeNetwork(strict=False)
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(body="fake")
            net.refuse("down.test", 443)
            assert transfer("http://api.test/").body == b"fake"
            codes = [
                transfer(url).code
                for url in ("http://api.test:8080/", "https://api.test/", "http://down.test/")
            ]
        # 6 would mean libcurl asked the resolver, and then the real network, for a fake host.
        assert codes == [7, 7, 7]
        assert [c.peer for c in net.connections[1:]] == ["127.77.255.254:9"] * 3
        with pytest.raises(UnexpectedConnection, match=r"api\.test:8080.*a fake host on a port"):
            net.check()
    finally:
        net.close()


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lax"])
def test_a_host_spelled_with_its_trailing_dot_is_the_same_host(strict: bool) -> None:
    """ "api.test." is the DNS name "api.test": served by its endpoint, never resolved.

    libcurl matches pins as the URL spells the name: before, a lax network sent the dotted
    spelling of a fake host to the system resolver (a DNS query for it left the process),
    and a strict one refused it with advice to declare it a second time."""
    from curlfault import UnexpectedConnection

    net = FakeNetwork(strict=strict)
    try:
        with net.intercept():
            api = net.http("api.test")
            api.get("/").respond(body="fake")
            net.http("dotted.test.").get("/").respond(body="dotted")
            net.http("both.test").get("/").respond(body="plain")
            net.http("both.test.").get("/").respond(body="with dot")  # its own endpoint
            assert transfer("http://api.test./").body == b"fake"
            assert transfer("http://API.Test./").body == b"fake"
            assert transfer("http://dotted.test/").body == b"dotted"
            assert transfer("http://both.test/").body == b"plain"
            assert transfer("http://both.test./").body == b"with dot"
            assert [r.header("host") for r in api.requests] == ["api.test.", "API.Test."]
            # its other ports: refused and reported, not resolved (6)
            assert transfer("http://api.test.:8080/").code == pycurl.E_COULDNT_CONNECT
        with pytest.raises(
            UnexpectedConnection, match=r"api\.test\.:8080.*`net\.http\('api\.test', 8080\)`"
        ):
            net.check()
    finally:
        net.close()


def test_a_tls_host_spelled_with_its_trailing_dot_is_verified(curlfault) -> None:
    curlfault.https("secure.test").get("/").respond(body="tls")
    r = transfer("https://secure.test./", CAINFO_BLOB=curlfault.ca.cert_pem.bytes())
    assert (r.code, r.body) == (0, b"tls")


def test_a_handle_moves_to_a_new_network_once_the_old_one_closed() -> None:
    """A module-level handle attached test after test: the old network's kept connection
    is closed by the new network's callback, and counted by the ledger that opened it."""
    first = FakeNetwork()
    first.http("api.test").get("/").respond(body="one")
    with first.intercept():
        c = pycurl.Curl()
    assert transfer("http://api.test/", curl=c).body == b"one"
    first.close()  # the connection stays in the handle's pool
    second = FakeNetwork()
    try:
        second.http("api.test").get("/").respond(body="two")
        second.attach(c)
        assert transfer("http://api.test/", curl=c).body == b"two"
        c.close()
        assert [r.closes for r in first.ledger.records] == [1]
        assert [r.closes for r in second.ledger.records] == [1]
        second.check()  # before: "closesocket(N) for a descriptor curlfault never handed out"
    finally:
        second.close()


def test_a_leak_of_an_attached_handle_names_where_it_was_attached() -> None:
    # A handle that kept its connection (made under an earlier network's intercept()) and
    # was attached here: its leak names the attach() call, as "attached at", not "made at".
    first = FakeNetwork()
    first.http("api.test").get("/").respond(body="one")
    with first.intercept():
        c = pycurl.Curl()
    first.close()
    second = FakeNetwork()
    try:
        second.http("api.test").get("/").respond(body="two")
        second.attach(c)  # the line the report names
        line = sys._getframe().f_lineno - 1
        assert transfer("http://api.test/", curl=c).body == b"two"
        with pytest.raises(LeakError) as info:
            second.check()
        text = str(info.value)
        assert f"handle attached at {__file__}:{line} in test_a_leak_of_an_attached" in text
        assert "the handle was attached at:" in text
        assert "made at" not in text
    finally:
        c.close()
        second.close()


@pytest.mark.parametrize("pooled", [True, False], ids=["multi kept", "handle kept"])
def test_a_leak_held_by_a_multi_says_to_close_the_multi(pooled: bool) -> None:
    # The handle was removed and closed, the multi kept its connection: advice that only
    # said to close the handle pointed at an object already closed.
    net = FakeNetwork()
    net.http("api.test").get("/").respond(body="x")
    multi = pycurl.CurlMulti()
    with net.intercept():
        c = pycurl.Curl()
    c.setopt(pycurl.URL, "http://api.test/")
    c.setopt(pycurl.WRITEFUNCTION, lambda chunk: None)
    try:
        if pooled:
            multi.add_handle(c)
            deadline = 100
            while multi.perform()[1] and deadline:
                multi.select(0.1)
                deadline -= 1
            multi.remove_handle(c)
            c.close()
        else:
            c.perform()
        with pytest.raises(LeakError) as info:
            net.check()
        said = "close the multi or share too (multi.close(), share.close())" in str(info.value)
        assert said is pooled
    finally:
        c.close()
        with warnings.catch_warnings():  # pycurl's pooled-close warning (PYCURL_NOTES.md)
            warnings.simplefilter("ignore", RuntimeWarning)
            multi.close()
        net.close()


def test_a_plain_handle_attached_keeps_no_connection() -> None:
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(body="x")
        c = net.attach(pycurl.Curl())
        for _ in range(2):
            assert transfer("http://api.test/", curl=c).body == b"x"
        assert [r.closes for r in net.ledger.records] == [1, 1]  # closed after each transfer
        net.check()
        c.close()


def test_a_followed_redirect_is_recorded_under_the_url_it_follows() -> None:
    with FakeNetwork() as net:
        api, cdn = net.http("api.test"), net.http("cdn.test")
        api.get("/file").respond(302, headers={"Location": "http://cdn.test/blob?v=1"})
        cdn.get("/blob").respond(body="blob")
        with net.intercept():
            c = pycurl.Curl()
        r = transfer("http://api.test/file", curl=c, FOLLOWLOCATION=1)
        c.close()
        assert (r.code, r.body) == (0, b"blob")
        assert [c.url for c in net.connections] == [
            "http://api.test/file",
            "http://cdn.test/blob?v=1",
        ]
        assert [rec.url for rec in net.ledger.records] == [c.url for c in net.connections]
        net.check()


@pytest.mark.parametrize(
    ("location", "named", "hint", "lax_helps"),
    [
        (
            "http://elsewhere.test/x",
            "elsewhere.test:80 (url http://elsewhere.test/x)",
            "'elsewhere.test'",
            True,
        ),
        # relative to the request's URL: the same host, on a port no fake serves. A fake
        # host never reaches the real network, so strict=False is no way out (it was
        # suggested before).
        (
            "//api.test:8080/y",
            "api.test:8080 (url http://api.test:8080/y)",
            "'api.test', 8080",
            False,
        ),
    ],
)
def test_a_refused_redirect_names_where_it_was_sent(
    location: str, named: str, hint: str, lax_helps: bool
) -> None:
    # Before: the report named the first URL's host, and suggested faking api.test,
    # which was faked already.
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(301, headers={"Location": location})
        with net.intercept():
            c = pycurl.Curl()
        r = transfer("http://api.test/", curl=c, FOLLOWLOCATION=1)
        assert r.code == pycurl.E_COULDNT_CONNECT
        # the next transfer starts from its own URL again
        assert transfer("http://nothing.test/", curl=c).code == pycurl.E_COULDNT_CONNECT
        c.close()
        with pytest.raises(UnexpectedConnection) as info:
            net.check()
        assert f"pycurl connected to {named}" in str(info.value)
        assert f"net.http({hint})" in str(info.value)
        first = str(info.value).split("\n")[0]
        assert ("use strict=False" in first) is lax_helps
        assert ("a fake host never reaches the real network, even with strict=False" in first) is (
            not lax_helps
        )
        assert [conn.url for conn in net.connections] == [
            "http://api.test/",
            named.split("(url ")[1].rstrip(")"),
            "http://nothing.test/",
        ]
    finally:
        net.close()


def _drive(multi: pycurl.CurlMulti) -> None:
    for _ in range(400):
        _, active = multi.perform()
        if not active:
            return
        multi.select(0.05)
    raise AssertionError("the CurlMulti did not finish")


def test_a_redirect_is_noted_for_the_handle_that_read_it(recwarn: pytest.WarningsRecorder) -> None:
    # Handles in one CurlMulti share its pool: B's request runs on the connection A opened.
    # The Location belongs to B (who read it), not to the connection's maker, and A's next
    # transfer, re-added with its URL set again, starts from its own URL.
    with FakeNetwork() as net:
        api, cdn = net.http("api.test"), net.http("cdn.test")
        api.get("/a").respond(body="a", headers={"Connection": "close"})
        api.get("/r").respond(302, headers={"Location": "http://cdn.test/x"})
        cdn.get("/x").respond(body="x", headers={"Connection": "close"})
        with net.intercept():
            a, b = pycurl.Curl(), pycurl.Curl()
        multi = pycurl.CurlMulti()
        for h in (a, b):
            h.setopt(pycurl.WRITEFUNCTION, lambda data: None)
            h.setopt(pycurl.TIMEOUT, 10)
            h.setopt(pycurl.FOLLOWLOCATION, 1)
        b.setopt(pycurl.URL, "http://api.test/r")
        multi.add_handle(b)
        _drive(multi)  # conn 1 (api.test, kept), conn 2 (cdn.test)
        multi.remove_handle(b)
        a.setopt(pycurl.URL, "http://api.test/a")
        multi.add_handle(a)
        _drive(multi)  # on conn 1, which then closes
        multi.remove_handle(a)
        a.setopt(pycurl.URL, "http://api.test/a")
        multi.add_handle(a)
        _drive(multi)  # conn 3
        multi.remove_handle(a)
        b.setopt(pycurl.URL, "http://api.test/a")  # b's next transfer: not its old redirect
        multi.add_handle(b)
        _drive(multi)  # conn 4
        multi.remove_handle(b)
        multi.close()
        a.close()
        b.close()
        assert [(c.host, c.url) for c in net.connections] == [
            ("api.test", "http://api.test/r"),
            ("cdn.test", "http://cdn.test/x"),
            ("api.test", "http://api.test/a"),
            ("api.test", "http://api.test/a"),
        ]


def test_a_handle_a_curlmulti_runs_again_starts_from_its_url(
    recwarn: pytest.WarningsRecorder,
) -> None:
    # Removed and added again without setting its URL: the transfer starts from the URL,
    # not from where the last one was redirected. Before, the connection was recorded (and
    # under a strict network refused and reported) under the old redirect's target.
    with FakeNetwork() as net:
        api, cdn = net.http("api.test"), net.http("cdn.test")
        api.get("/r").respond(302, headers={"Location": "http://cdn.test/x", "Connection": "close"})
        cdn.get("/x").respond(body="x", headers={"Connection": "close"})
        with net.intercept():
            h = pycurl.Curl()
        h.setopt(pycurl.WRITEFUNCTION, lambda data: None)
        h.setopt(pycurl.TIMEOUT, 10)
        h.setopt(pycurl.FOLLOWLOCATION, 1)
        h.setopt(pycurl.URL, "http://api.test/r")
        multi = pycurl.CurlMulti()
        for _ in range(2):
            multi.add_handle(h)
            _drive(multi)
            multi.remove_handle(h)
        multi.close()
        h.close()
        assert [(c.host, c.url) for c in net.connections] == [
            ("api.test", "http://api.test/r"),
            ("cdn.test", "http://cdn.test/x"),
        ] * 2
        assert [r.path for r in api.requests + cdn.requests] == ["/r", "/r", "/x", "/x"]


def test_a_redirect_is_resolved_against_the_url_libcurl_requested() -> None:
    # The client maps a public name onto the fake itself (CONNECT_TO): a relative Location
    # is relative to that name, as libcurl resolves it.
    with FakeNetwork() as net:
        api = net.http("api.test")
        api.get("/start").respond(302, headers={"Location": "/next", "Connection": "close"})
        api.get("/next").respond(body="next")
        with net.intercept():
            c = pycurl.Curl()
        r = transfer(
            "http://www.example.com/start",
            curl=c,
            FOLLOWLOCATION=1,
            CONNECT_TO=["www.example.com:80:api.test:80"],
        )
        assert r.body == b"next"
        assert c.getinfo(pycurl.EFFECTIVE_URL) == "http://www.example.com/next"
        c.close()
        assert [conn.url for conn in net.connections] == [
            "http://www.example.com/start",
            "http://www.example.com/next",
        ]


@pytest.mark.parametrize("size", [100, 1_100_000])
def test_a_redirect_read_over_http2_after_an_upload_is_noted(size: int) -> None:
    # An HTTP/2 upload leaves the handle armed (a TLS record announced): the 302's lines
    # arrive on the debug events that pump, and the Location is still read there.
    with FakeNetwork() as net:
        api, cdn = net.https("api.test", http2=True), net.http("cdn.test")
        api.post("/r").respond(302, headers={"Location": "http://cdn.test/x"})
        cdn.get("/x").respond(body="x")
        with net.intercept():
            c = pycurl.Curl()
        r = transfer(
            "https://api.test/r",
            curl=c,
            FOLLOWLOCATION=1,
            POSTFIELDS="a" * size,
            HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS,
        )
        c.close()
        assert (r.code, r.body) == (0, b"x")
        assert [conn.url for conn in net.connections] == ["https://api.test/r", "http://cdn.test/x"]


def test_a_redirect_from_a_url_without_a_scheme_is_noted() -> None:
    with FakeNetwork() as net:
        net.http("api.test").get("/r").respond(302, headers={"Location": "//cdn.test/x"})
        net.http("cdn.test").get("/x").respond(body="x")
        with net.intercept():
            c = pycurl.Curl()
        assert transfer("api.test/r", curl=c, FOLLOWLOCATION=1).body == b"x"
        c.close()
        assert [conn.url for conn in net.connections] == ["api.test/r", "http://cdn.test/x"]


def test_only_a_redirect_libcurl_read_and_follows_names_a_connection() -> None:
    with FakeNetwork() as net:
        api = net.http("api.test")
        # a 201's Location is not followed
        api.post("/items").respond(201, headers={"Location": "http://other.test/items/7"})
        # a cut response is retried on a new connection, under the same URL
        api.get("/r").respond(
            302, headers={"Location": "http://cdn.test/x"}, fault=faults.close(after_bytes=0)
        ).respond(body="two", headers={"Connection": "close"})
        # a Location that is no URL: libcurl fails (3) before it connects anywhere
        api.get("/bad").respond(302, headers={"Location": "http://[zz]/x", "Connection": "close"})
        with net.intercept():
            c = pycurl.Curl()
        c.setopt(pycurl.FOLLOWLOCATION, 1)
        assert transfer("http://api.test/items", curl=c, POSTFIELDS="x").status == 201
        assert transfer("http://api.test/r", curl=c, HTTPGET=1).body == b"two"
        assert transfer("http://api.test/bad", curl=c).code == pycurl.E_URL_MALFORMAT
        # perform() again, without setting the URL: it starts from the URL, not the redirect
        api.get("/again").respond(301, headers={"Location": "/x", "Connection": "close"})
        api.get("/x").respond(body="x", headers={"Connection": "close"})
        assert transfer("http://api.test/again", curl=c).body == b"x"
        c.setopt(pycurl.WRITEFUNCTION, lambda data: None)
        c.perform()
        c.perform_rb()
        c.close()
        urls = [conn.url for conn in net.connections]
        assert urls[0] == "http://api.test/items"
        assert urls[1:3] == ["http://api.test/r", "http://api.test/bad"]
        assert "http://other.test/items/7" not in urls
        assert "http://cdn.test/x" not in urls
        assert urls[-6:] == ["http://api.test/again", "http://api.test/x"] * 3


def test_a_tracked_handle_attached_again_after_reset_keeps_no_connection() -> None:
    # A tracked handle is an InterceptedCurl: its reset() clears FORBID_REUSE in C, and the
    # network's wiring sets it again, as attach() did for a handle made outside it.
    with Tracker(leaks=True):
        client = pycurl.Curl()
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(body="x")
        net.attach(client)
        client.reset()
        net.attach(client)
        assert transfer("http://api.test/", curl=client).body == b"x"
        client.reset()
        assert transfer("http://api.test/", curl=client).body == b"x"
        assert [r.closes for r in net.ledger.records] == [1, 1]
        net.check()
    finally:
        client.close()
        net.close()


def test_a_handle_of_a_closed_network_is_reported_by_the_router_in_use() -> None:
    # A handle made under an earlier network (an earlier test's) is refused once that
    # network closed; nobody checks a closed network, so the one in use now reports it.
    first = FakeNetwork(label="test_a")
    first.http("api.test").get("/").respond(body="a")
    with first.intercept():
        c = pycurl.Curl()
    assert transfer("http://api.test/", curl=c, FORBID_REUSE=1).body == b"a"
    first.close()
    second = FakeNetwork(label="test_b")
    try:
        second.http("api.test").get("/").respond(body="b")
        with second.intercept():
            assert transfer("http://api.test/", curl=c).code == pycurl.E_COULDNT_CONNECT
        with pytest.raises(UnexpectedConnection, match=r"has closed \(test_a\) connected"):
            second.check()
        with Tracker(leaks=True) as tracker:
            tracker.label = "test_c"
            assert transfer("http://api.test/", curl=c).code == pycurl.E_COULDNT_CONNECT
            (event,) = tracker.take_events("test_c")
        assert "FakeNetwork that has closed (test_a)" in event.text
        assert "attach() it to the network in use now" in event.text
    finally:
        c.close()
        second.close()


def test_attach_refuses_what_is_not_a_handle() -> None:
    with FakeNetwork() as net:
        for thing in (object(), pycurl.CurlMulti()):
            with pytest.raises(UsageError, match=r"attach\(\) routes a pycurl\.Curl handle"):
                net.attach(thing)  # type: ignore[arg-type]
            if isinstance(thing, pycurl.CurlMulti):
                thing.close()


def test_attach_refuses_a_handle_with_a_connection_kept_by_another_open_network() -> None:
    first, second = FakeNetwork(label="first"), FakeNetwork()
    try:
        first.http("api.test").get("/").respond(body="one")
        first.http("other.test").get("/").respond(body="1", headers={"Connection": "close"})
        second.http("api.test").get("/").respond(body="two")
        with first.intercept():
            kept, unused, done = pycurl.Curl(), pycurl.Curl(), pycurl.Curl()
        assert transfer("http://other.test/", curl=kept).body == b"1"
        assert transfer("http://api.test/", curl=kept).body == b"one"
        assert transfer("http://other.test/", curl=kept).body == b"1"
        # Its kept connection would answer the second network's requests.
        with pytest.raises(UsageError, match=r"keeps a connection to another open FakeNetwork"):
            second.attach(kept)
        assert transfer("http://api.test/", curl=kept).body == b"one"
        # A handle the first network wired but never used moves freely (a handle made in a
        # test that uses the curlfault fixture, attached to a network of the test's own), and
        # so does one whose connections are all closed.
        assert transfer("http://api.test/", curl=second.attach(unused)).body == b"two"
        assert transfer("http://other.test/", curl=done).body == b"1"
        assert transfer("http://api.test/", curl=second.attach(done)).body == b"two"
        for c in (kept, unused, done):
            c.close()
        first.check()
        second.check()
    finally:
        first.close()
        second.close()


def test_a_moved_handle_attached_twice_keeps_its_old_connection_accounted() -> None:
    first = FakeNetwork()
    first.http("api.test").get("/").respond(body="one")
    with first.intercept():
        c = pycurl.Curl()
    assert transfer("http://api.test/", curl=c).body == b"one"
    first.close()
    second = FakeNetwork()
    try:
        second.http("api.test").get("/").respond(body="two")
        second.attach(c)
        second.attach(c)  # again, on the same network
        assert transfer("http://api.test/", curl=c).body == b"two"
        c.close()
        assert [r.closes for r in first.ledger.records] == [1]
        second.check()
    finally:
        second.close()


def test_a_unix_socket_path_is_refused_when_strict_and_named(tmp_path) -> None:
    from curlfault import UnexpectedConnection

    path = str(tmp_path / "u.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        strict = FakeNetwork()
        with strict.intercept():
            assert transfer("http://localhost/", UNIX_SOCKET_PATH=path).code == 7
        assert strict.connections[0].peer == f"unix:{path}"
        with pytest.raises(UnexpectedConnection, match=r"the Unix socket .*u\.sock .*strict=False"):
            strict.check()
        strict.close()
        lax = FakeNetwork(strict=False)
        with lax.intercept():
            assert transfer("http://localhost/", UNIX_SOCKET_PATH=path).body == b"hi"
        assert [(r.peer, r.kind, r.closes) for r in lax.ledger.records] == [
            (f"unix:{path}", "passthrough", 1)
        ]
        lax.close()
    finally:
        thread.join(10)
        server.close()


def test_an_unclosed_network_warns_when_collected() -> None:
    import gc

    net = FakeNetwork(label="forgotten")
    net.http("api.test")
    del net  # its endpoints refer back to it: collected by the next line
    with pytest.warns(ResourceWarning, match=r"unclosed FakeNetwork forgotten: .*close\(\)"):
        gc.collect()
    closed = FakeNetwork()
    closed.close()
    del closed
    gc.collect()  # no warning: filterwarnings = error would fail this test


def test_closed_network_refuses_and_reports() -> None:
    from curlfault import UnexpectedConnection

    net = FakeNetwork()
    c = net.attach(pycurl.Curl())
    net.http("api.test").get("/").respond()
    net.close()
    assert transfer("http://api.test/", curl=c).code == 7
    c.close()
    with pytest.raises(UnexpectedConnection, match="FakeNetwork that has closed"):
        net.check()
    with pytest.raises(UsageError, match="closed"):
        net.http("more.test")


def test_context_manager_checks_on_clean_exit() -> None:
    from curlfault import UnmatchedRequest

    with pytest.raises(UnmatchedRequest), FakeNetwork() as net, net.intercept():  # noqa: PT012
        net.http("api.test")
        transfer("http://api.test/nothing-here")
    assert net.closed


def test_recording_a_problem_never_waits_on_the_networks_lock() -> None:
    """A close callback run by a garbage collection can record a problem while its thread
    holds the network's lock (a Connection being made): recording must not wait for it."""
    from curlfault import ServerError

    net = FakeNetwork()
    try:
        with net._lock:
            recorder = threading.Thread(target=net._record, args=(ServerError("late"),))
            recorder.start()
            recorder.join(5)
            assert not recorder.is_alive()
        with pytest.raises(ServerError, match="late"):
            net.check()
    finally:
        net.close()


def test_problems_recorded_while_check_runs_are_raised_once() -> None:
    from curlfault import ServerError

    net = FakeNetwork()
    try:
        per_thread = 300

        def record(t: int) -> None:
            for i in range(per_thread):
                net._record(ServerError(f"{t}-{i}"))

        threads = [threading.Thread(target=record, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        seen: list[str] = []
        while any(t.is_alive() for t in threads) or net.problems:
            try:
                net.check()
            except ServerError as exc:
                seen += [str(p) for p in getattr(exc, "problems", [exc])]
        for t in threads:
            t.join(10)
        assert sorted(seen) == sorted(f"{t}-{i}" for t in range(4) for i in range(per_thread))
    finally:
        net.close()


def test_check_lists_every_problem_with_trace() -> None:
    from curlfault import UnexpectedConnection

    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test")
            transfer("http://api.test/a")
            transfer("http://other.test/b")
        with pytest.raises(CurlFaultError) as info:
            net.check()
        err = info.value
        assert len(err.problems) == 2
        assert isinstance(err.problems[1], UnexpectedConnection)
        assert "connection trace:" in str(err)
        assert "other.test/b" in str(err)
    finally:
        net.close()


def test_own_loop_thread_is_stopped_on_close() -> None:
    before = {t.ident for t in threading.enumerate()}
    with FakeNetwork() as net, net.intercept():
        net.http("api.test").get("/").respond()
        transfer("http://api.test/")
        assert {t.name for t in threading.enumerate()} >= {"curlfault-loop"}
    assert {t.ident for t in threading.enumerate()} == before


class _Recorder:
    """A loop handler that records the threads it was served in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.threads: list[str] = []
        self.got = threading.Event()

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_readable(self) -> None:
        self.sock.recv(4096)
        self.threads.append(threading.current_thread().name)
        self.got.set()

    def on_writable(self) -> None:
        pass

    def on_error(self, exc: BaseException) -> None:
        raise exc


def test_a_watched_handler_wakes_the_loop_thread_and_remove_unwatches_it() -> None:
    from curlfault import Loop

    loop = Loop(name="watch-test")
    loop.SCAN_SECONDS = 60.0  # only a wake-up can serve within the test's bounds
    client, server = socket.socketpair()
    other_client, other_server = socket.socketpair()
    handler = _Recorder(server)
    try:
        loop.start()
        loop.add(handler)
        loop.watch(handler)
        loop.watch(handler)  # idempotent
        assert loop._watched == {server.fileno()}
        client.send(b"one")
        assert handler.got.wait(10)
        assert handler.threads == ["watch-test"]
        handler.got.clear()
        client.send(b"two")  # edge-triggered, but every arrival is a new edge
        assert handler.got.wait(10)
        loop.watch(handler, False)
        assert not loop._watched
        loop.watch(handler)
        loop.remove(handler)
        assert not loop._watched
        loop.watch(handler)  # no longer the loop's: ignored
        assert not loop._watched
        # A server end closed without remove() while watched; its number comes back for a
        # new one (dup2 closes the old socket): the new one can be watched, and wakes.
        loop.add(handler)
        loop.watch(handler)
        assert loop._watched == {server.fileno()}
        os.dup2(other_server.fileno(), server.fileno())
        fresh = _Recorder(server)  # the same number, now other_server's socket
        loop.add(fresh)
        assert not loop._watched
        loop.watch(fresh)
        assert loop._watched == {server.fileno()}
        other_client.send(b"three")
        assert fresh.got.wait(10)
        assert fresh.threads == ["watch-test"]
    finally:
        loop.stop()
        for s in (client, server, other_client, other_server):
            s.close()


def test_one_pump_serves_more_ready_ends_than_one_epoll_batch() -> None:
    from curlfault import Loop
    from curlfault._loop import _BATCH

    loop = Loop(name="batch-test")
    pairs = [socket.socketpair() for _ in range(3 * _BATCH + 5)]
    handlers = [_Recorder(server) for _, server in pairs]
    try:
        loop.start()
        for h in handlers:
            loop.add(h)
        with loop.lock:  # the loop thread waits: this thread's pump serves them all
            for client, _ in pairs:
                client.send(b"x")
            assert loop.pump() == len(pairs)
        assert all(h.threads == ["MainThread"] for h in handlers)
    finally:
        loop.stop()
        for client, server in pairs:
            client.close()
            server.close()


class _Reader(_Recorder):
    """A handler whose read says whether there was input, as a server end's does."""

    def on_readable(self) -> bool:  # type: ignore[override]
        try:
            self.sock.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        self.threads.append(threading.current_thread().name)
        return True


class _CountingEpoll:
    """An epoll object that counts the polls made from the main thread."""

    def __init__(self, ep: object) -> None:
        self.ep = ep
        self.polls = 0

    def poll(self, *args: object) -> object:
        if threading.current_thread() is threading.main_thread():
            self.polls += 1
        return self.ep.poll(*args)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.ep, name)


def test_pump_own_serves_the_only_end_directly_and_asks_epoll_otherwise() -> None:
    from curlfault import Loop

    loop = Loop(name="own-test")
    loop.SCAN_SECONDS = 60.0
    client, server = socket.socketpair()
    other_client, other_server = socket.socketpair()
    own, other = _Reader(server), _Reader(other_server)
    try:
        loop.start()
        loop.add(own)
        counting = _CountingEpoll(loop._ready)
        loop._ready = counting  # type: ignore[assignment]
        with loop.lock:  # the loop thread waits: only this thread serves
            assert loop.pump_own(own) == 0  # no input: no work, and epoll not asked
            client.send(b"request")
            assert loop.pump_own(own) == 1
            assert (counting.polls, own.threads) == (0, ["MainThread"])
            assert counting.polls == 0
            loop._busy.add(server.fileno())  # being served further up this thread's stack:
            client.send(b"more")  # an ordinary pump, which skips it too (nothing is read)
            loop.pump_own(own)
            assert (counting.polls, own.threads) == (1, ["MainThread"])
            loop._busy.discard(server.fileno())
            assert loop.pump_own(own) == 1
            assert (counting.polls, len(own.threads)) == (1, 2)
            loop.writers.add(server.fileno())  # it waits to write: epoll knows for what
            client.send(b"x")
            assert loop.pump_own(own) == 1
            assert counting.polls == 2
            loop.writers.discard(server.fileno())
            loop.add(other)  # two ends: the other's input is served in the same pump
            client.send(b"y")
            other_client.send(b"z")
            assert loop.pump_own(own) == 2
            assert counting.polls == 3
            assert other.threads == ["MainThread"]
            loop.remove(own)
            loop.remove(other)
            loop.add(other)
            other_client.send(b"w")  # not registered any more: an ordinary pump
            assert loop.pump_own(own) == 1
            assert counting.polls == 4
    finally:
        loop.stop()
        for s in (client, server, other_client, other_server):
            s.close()


def test_a_keepalive_request_is_served_without_asking_epoll() -> None:
    # The handle's own server end is the one with input after libcurl wrote a request.
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(200, body=b"hello")
        with net.intercept():
            c = pycurl.Curl()
            try:
                assert transfer("http://api.test/", curl=c).body == b"hello"
                counting = _CountingEpoll(net.loop._ready)
                net.loop._ready = counting  # type: ignore[assignment]
                for _ in range(3):
                    assert transfer("http://api.test/", curl=c).body == b"hello"
                assert len(net.connections) == 1
                assert counting.polls == 0
            finally:
                c.close()
        assert [r.path for r in net.requests] == ["/"] * 4


def test_threads_starting_one_loop_at_once_share_one_epoll_set(monkeypatch) -> None:
    # Two starts would each make an epoll set: the ends registered in the first would never
    # be pumped (a transfer then waited for libcurl's timeout). Making the epoll slow opens
    # the window every time.
    import select
    import time

    from curlfault import Loop, _loop

    real_epoll = select.epoll

    def slow_epoll() -> select.epoll:
        time.sleep(0.01)
        return real_epoll()

    monkeypatch.setattr(_loop.select, "epoll", slow_epoll)
    loop = Loop(name="start-race")
    barrier = threading.Barrier(6)
    seen: list[object] = []

    def start() -> None:
        barrier.wait(10)
        loop.start()
        seen.append(loop._ready)

    threads = [threading.Thread(target=start) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(seen) == 6
        assert all(ready is seen[0] for ready in seen)
        assert [t.name for t in threading.enumerate()].count("start-race") == 1
    finally:
        loop.stop()


def test_threads_connecting_first_at_once_share_the_networks_loop(monkeypatch) -> None:
    import time

    from curlfault import _network

    made: list[object] = []

    class SlowLoop(_network.Loop):
        def __init__(self, *args: object, **kwargs: object) -> None:
            time.sleep(0.01)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(_network, "Loop", SlowLoop)
    barrier = threading.Barrier(4)
    results: list[tuple[int, bytes]] = []
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(200, body=b"hello")

        def fetch() -> None:
            barrier.wait(10)
            with net.intercept():
                r = transfer("http://api.test/", TIMEOUT=10)
            results.append((r.code, r.body))

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == [(0, b"hello")] * 4
        assert len(made) == 1
        assert net.loop is made[0]  # its thread is stopped at close (the leak check sees it)


def test_serving_a_request_allocates_only_what_it_keeps() -> None:
    # epoll.poll() left at its default allocates room for 1023 events on every call, and
    # sock.recv(262144) a 256 KiB block per read (an mmap, shrunk to what arrived): a
    # request's bytes then hold a page each. A pump and a read allocate what they serve.
    import tracemalloc

    from curlfault import FakeNetwork

    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(200, body=b"hello")
        with net.intercept():
            first = transfer("http://api.test/")  # warm: the read buffer, caches
            tracemalloc.start()
            try:
                transient = []
                for _ in range(5):
                    kept, _ = tracemalloc.get_traced_memory()
                    tracemalloc.reset_peak()
                    assert transfer("http://api.test/").body == b"hello"
                    transient.append(tracemalloc.get_traced_memory()[1] - kept)
            finally:
                tracemalloc.stop()
        assert first.body == b"hello"
    # About 6 KiB here (a handle, its wiring, the records a network keeps); the 1023-event
    # poll alone was 12 KiB, the 256 KiB read 270 KiB.
    assert max(transient) < 10 * 1024, transient


def _resident_kib_of_range(address: int, length: int) -> int:
    """KiB of ``[address, address + length)`` that are resident, by mincore(2). Exact for
    the range: the kernel may merge an anonymous mapping with a neighbour (another arena,
    another buffer), so the Rss of the mapping that holds it can count more than it."""
    import ctypes

    page = os.sysconf("SC_PAGE_SIZE")
    pages = (length + page - 1) // page
    vec = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    if libc.mincore(address, length, vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(v & 1 for v in vec) * page // 1024


def test_a_thread_read_buffer_is_resident_only_where_it_was_written() -> None:
    # Each thread that reads server ends has a 256 KiB receive buffer. Zero-filled (a
    # bytearray), all of it would be resident from the start, a fixed cost that also
    # blurred the per-connection memory benchmark (one thread or two that read); mapped
    # pages are only resident once a read writes them.
    import ctypes

    from curlfault._transports import _READ_SIZE, _ReadBuffer

    found: list[int] = []

    def read_once() -> None:
        buffer = _ReadBuffer()
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"GET / HTTP/1.1\r\n\r\n")
            n = b.recv_into(buffer.view)
            assert bytes(buffer.view[:n]) == b"GET / HTTP/1.1\r\n\r\n"
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer.view))
        found.append(_resident_kib_of_range(address, _READ_SIZE))

    thread = threading.Thread(target=read_once)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    (resident,) = found
    assert resident <= 16, f"{resident} KiB of a {_READ_SIZE // 1024} KiB buffer resident"


def test_a_forked_child_writes_its_own_copy_of_the_read_buffer() -> None:
    # A shared mapping would let a child's reads overwrite the parent's bytes between its
    # recv_into() and the copy out of the buffer.
    from curlfault._transports import _buffer

    view = _buffer.view
    view[:6] = b"parent"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: never back into pytest
        try:
            view[:6] = b"child!"
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bytes(view[:6]) == b"parent"


def test_tornado_curl_async_http_client(curlfault) -> None:
    # tornado builds handles with pycurl.Curl(), drives a CurlMulti and reset()s each one.
    tornado = pytest.importorskip("tornado")
    del tornado
    from tornado.curl_httpclient import CurlAsyncHTTPClient
    from tornado.ioloop import IOLoop

    api = curlfault.http("api.test")
    api.get("/items").respond(200, json=[1, 2])
    api.post("/items").respond(503).respond(201)

    async def main() -> list[int]:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            codes = []
            r = await client.fetch("http://api.test/items", request_timeout=10)
            codes.append(r.code)
            for _ in range(2):
                r = await client.fetch(
                    "http://api.test/items",
                    method="POST",
                    body="x",
                    raise_error=False,
                    request_timeout=10,
                )
                codes.append(r.code)
            return codes
        finally:
            client.close()

    loop = IOLoop(make_current=False)
    try:
        assert loop.run_sync(main, timeout=30) == [200, 503, 201]
    finally:
        loop.close(all_fds=True)
    assert [r.method for r in api.requests] == ["GET", "POST", "POST"]


def test_tornado_client_over_https_trusts_the_fakes(curlfault) -> None:
    # tornado sets SSL_VERIFYPEER=1 and SSL_VERIFYHOST=2 on every request (validate_cert):
    # verification stays on, against the session CA (before: 599, CURLcode 60, every time).
    from tornado.curl_httpclient import CurlAsyncHTTPClient, CurlError
    from tornado.ioloop import IOLoop

    curlfault.https("secure.test").get("/").respond(200, body="ok")
    bad = curlfault.https("bad.test")
    bad.get("/").respond(200, body="never")
    bad.connection_faults(faults.untrusted_ca())

    async def main() -> tuple[int, bytes, str]:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            r = await client.fetch("https://secure.test/", request_timeout=10)
            try:
                await client.fetch("https://bad.test/", request_timeout=10)
            except CurlError as exc:  # tornado raises 599 whatever raise_error says
                refused = str(exc)
            else:
                refused = "accepted"
            return r.code, r.body, refused
        finally:
            client.close()

    loop = IOLoop(make_current=False)
    try:
        code, body, refused = loop.run_sync(main, timeout=30)
    finally:
        loop.close(all_fds=True)
    assert (code, body) == (200, b"ok")
    assert refused.startswith("HTTP 599: SSL certificate")  # verification is on


def test_reset_from_handler_on_socketpair_is_reported_not_faked(curlfault) -> None:
    from curlfault import Response, UsageError

    api = curlfault.http("api.test")
    api.get("/r").handle(
        lambda req: Response.make(200, body=b"z" * 100, fault=faults.reset(after_bytes=10))
    )
    code = transfer("http://api.test/r").code
    assert code != 0
    with pytest.raises(UsageError, match=r"no RST to send.*transport='tcp'"):
        curlfault.check()
    assert transfer("http://api.test/r").code == 56  # later connections are TCP


def test_route_with_query_wins_over_bare_path(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/items").respond(body="all")
    api.get("/items?page=2").respond(body="page two")
    api.route("*", "/items").respond(body="any method")
    assert transfer("http://api.test/items?page=2").body == b"page two"
    assert transfer("http://api.test/items?page=3").body == b"all"
    assert transfer("http://api.test/items", CUSTOMREQUEST="PUT").body == b"any method"


def test_routes_added_between_requests_take_part_in_matching(curlfault) -> None:
    """match() remembers its answer per (method, target) only while no route is added."""
    from curlfault import UnmatchedRequest

    api = curlfault.http("api.test")
    assert transfer("http://api.test/items?page=2").status == 404  # no route yet
    api.get("/items").respond(body="all")
    assert transfer("http://api.test/items?page=2").body == b"all"
    api.get("/items?page=2").respond(body="page two")
    assert transfer("http://api.test/items?page=2").body == b"page two"
    assert transfer("http://api.test/items?page=2", NOBODY=1).status == 200  # HEAD: GET's
    api.routes.pop()  # the list is the user's: the same length again, another last route
    api.get("/items?page=2").respond(body="declared again")
    assert transfer("http://api.test/items?page=2").body == b"declared again"
    with pytest.raises(UnmatchedRequest):
        curlfault.check()


def test_first_https_connection_is_served_inline_not_by_the_loop(curlfault) -> None:
    # The handshake is pumped from libcurl's debug callback: no wait for the loop thread.
    import time

    curlfault.https("secure.test").get("/").respond(body="fast")
    start = time.monotonic()
    r = transfer("https://secure.test/")
    assert r.body == b"fast"
    assert time.monotonic() - start < 0.9  # the idle loop thread would take ~1 s


@pytest.mark.parametrize("transport", ["socketpair", "tcp", "tls"])
@pytest.mark.parametrize("buffer_size", [None, 1024, 512 * 1024])
def test_a_big_body_is_refilled_from_libcurls_reads_without_the_loop_thread(
    transport: str, buffer_size: int | None, curlfault_ca
) -> None:
    """A response bigger than the socket is topped up from the debug events of libcurl's
    reads, pumped only once most of the last fill is read: never so late that the socket
    runs dry and waits for the loop thread (whose scan is made too slow to finish here)."""
    from curlfault import Loop

    body = bytes(range(256)) * 12_288  # 3 MiB
    loop = Loop(name="refill-test")
    loop.SCAN_SECONDS = 60.0
    with loop, FakeNetwork(loop=loop, ca=curlfault_ca) as net:
        if transport == "tls":  # libcurl reports decrypted bytes: fewer than it read
            net.https("big.test").get("/").respond(body=body)
        else:
            net.http("big.test", transport=transport).get("/").respond(body=body)
        opts = {} if buffer_size is None else {"BUFFERSIZE": buffer_size}
        scheme = "https" if transport == "tls" else "http"
        with net.intercept():
            for _ in range(2):
                result = transfer(f"{scheme}://big.test/", TIMEOUT=10, **opts)
                assert result.code == 0
                assert result.body == body


def test_big_bodies_in_one_multi_refill_without_the_loop_thread() -> None:
    """Several writers wait at once, and one transfer (TCP, a fill of megabytes) is aborted
    by its client midway: no other handle's socket waits for the loop thread."""
    import io

    from curlfault import Loop

    big = bytes(range(256)) * 8192  # 2 MiB
    loop = Loop(name="refill-multi")
    loop.SCAN_SECONDS = 60.0
    with loop, FakeNetwork(loop=loop) as net:
        net.http("tcp.test", transport="tcp").get("/").respond(body=big * 4)
        net.http("pair.test").get("/").respond(body=big)
        with net.intercept():
            multi = pycurl.CurlMulti()
            handles, bodies = [], []
            got = [0]

            def stop_early(data: bytes) -> int | None:
                got[0] += len(data)
                return 0 if got[0] > 3 * 1024 * 1024 else None  # 0: abort (CURLcode 23)

            for url in ("http://tcp.test/", "http://pair.test/", "http://pair.test/"):
                c = pycurl.Curl()
                buf = io.BytesIO()
                c.setopt(pycurl.URL, url)
                c.setopt(pycurl.TIMEOUT, 10)
                # Nothing left in the multi's pool for pycurl to close in C at multi.close().
                c.setopt(pycurl.FORBID_REUSE, 1)
                if url.startswith("http://tcp"):
                    c.setopt(pycurl.WRITEFUNCTION, stop_early)
                else:
                    c.setopt(pycurl.WRITEDATA, buf)
                multi.add_handle(c)
                handles.append(c)
                bodies.append(buf)
            codes: dict[int, int] = {}
            try:
                for _ in range(20_000):
                    multi.perform()
                    _, ok, failed = multi.info_read()
                    codes.update({id(c): 0 for c in ok})
                    codes.update({id(c): code for c, code, _ in failed})
                    if len(codes) == len(handles):
                        break
                    multi.select(0.05)
            finally:
                for c in handles:
                    multi.remove_handle(c)
                    c.close()
                multi.close()
    assert [codes.get(id(c)) for c in handles] == [23, 0, 0]
    assert bodies[1].getvalue() == big
    assert bodies[2].getvalue() == big


def test_big_bodies_in_two_threads_refill_without_the_loop_thread() -> None:
    """Two threads download at once: one writer's refills, done by the other thread or
    ending while this one reads, must not let this one's socket run dry unnoticed."""
    import io

    from curlfault import Loop

    sizes = [300_000 + 85_000 * k for k in range(20)]  # 0.3 to 1.9 MB, one per trial
    loop = Loop(name="refill-threads")
    loop.SCAN_SECONDS = 60.0
    results: list[tuple[str, int, int]] = []

    def get(path: str) -> None:
        c = pycurl.Curl()
        buf = io.BytesIO()
        c.setopt(pycurl.URL, "http://two.test" + path)
        c.setopt(pycurl.WRITEDATA, buf)
        c.setopt(pycurl.TIMEOUT, 5)
        c.setopt(pycurl.FORBID_REUSE, 1)
        code = 0
        try:
            c.perform()
        except pycurl.error as exc:
            code = exc.args[0]
        finally:
            c.close()
        results.append((path, code, len(buf.getvalue())))

    with loop, FakeNetwork(loop=loop) as net:
        ep = net.http("two.test")
        ep.get("/big").respond(body=b"y" * (4 << 20))
        for k, size in enumerate(sizes):
            ep.get(f"/{k}").respond(body=b"x" * size)
        with net.intercept():
            for k in range(len(sizes)):
                threads = [threading.Thread(target=get, args=(p,)) for p in ("/big", f"/{k}")]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                assert not any(t.is_alive() for t in threads)
    expected = {"/big": 4 << 20, **{f"/{k}": size for k, size in enumerate(sizes)}}
    assert [r for r in results if r[1:] != (0, expected[r[0]])] == []
    assert len(results) == 2 * len(sizes)


def test_loop_running_follows_its_thread(monkeypatch) -> None:
    """``running`` is a flag, not Thread.is_alive(): it must still turn False when the
    thread ends by stop(), by an error, or in a forked child (no thread there)."""
    from curlfault import Loop

    loop = Loop(name="running-test")
    assert not loop.running
    loop.start()
    try:
        assert loop.running
        pid = os.fork()  # a forked child has no loop thread: running must say so there
        if pid == 0:  # pragma: no cover - the child: never back into pytest
            os._exit(3 if loop.running else 0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert loop.running  # still, in the parent
    finally:
        loop.stop()
    assert not loop.running

    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    dying = Loop(name="dying-loop")

    def boom() -> None:
        raise RuntimeError("the loop thread failed")

    monkeypatch.setattr(dying, "_serve_forever", boom)
    dying.start()
    thread = dying._thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
    assert not dying.running
    dying.stop()


def test_a_loop_stopped_in_its_own_thread_can_start_again_elsewhere() -> None:
    """stop() called by the loop thread (a handler closing a network that owns its loop),
    then start() from the test's thread: the old thread ends without touching the new one."""
    from curlfault import Loop

    loop = Loop(name="restart-test")
    loop.start()
    old = loop._thread
    assert old is not None
    stopped, restarted = threading.Event(), threading.Event()

    def stop_here() -> None:
        loop.stop()
        stopped.set()
        restarted.wait(10)  # the old thread goes on only once the new one runs

    loop.call_soon(stop_here)
    assert stopped.wait(10)
    loop.start()
    restarted.set()
    old.join(10)
    try:
        assert not old.is_alive()
        assert loop.running
        assert loop._thread is not old
        assert loop._thread is not None
        assert loop._thread.is_alive()
    finally:
        loop.stop()
    assert not loop.running


@pytest.mark.parametrize("sent", [b"", b"late bytes"])
def test_closesocket_reads_what_the_client_sent_before_it_closed(sent: bytes) -> None:
    """libcurl's closesocket: the server end reads what is still unread (found without a
    failing read when there is nothing), then closes; server pairs start non-blocking."""
    from curlfault import Loop
    from curlfault._network import Connection
    from curlfault._transports import Channel, make_pair

    got: list[bytes] = []

    class _Sink:
        def data_received(self, data: bytes) -> None:
            got.append(data)

        def eof_received(self) -> None:
            got.append(b"<eof>")

    client, server = make_pair("socketpair")
    assert server.gettimeout() == 0.0
    assert not os.get_blocking(client.fileno())
    loop = Loop(name="drain-test")
    loop.SCAN_SECONDS = 60.0  # the bytes wait for closesocket, not the loop thread's scan
    with loop:
        net = FakeNetwork(loop=loop)
        try:
            conn = Connection(net, 1, None, "test", "")
            channel = Channel(loop, server, conn)
            channel.start(_Sink())  # type: ignore[arg-type]
            if sent:
                client.send(sent)
            with loop.lock:
                channel.client_closed()
            assert channel.closed
            assert b"".join(got) == sent
            assert channel.bytes_in == len(sent)
            assert conn.events[-2][1] == "client closed its end (closesocket)"
        finally:
            client.close()
            net.close()


def test_threads_mixing_protocols_and_handles_are_all_served_inline() -> None:
    # Four threads, each with a kept handle and fresh ones, over HTTP/1.1, HTTPS and HTTP/2
    # at once. The loop's safety-net scan is an hour: every request must be served by the
    # pumps of the threads' own transfers (a direct read of a handle's own server end, or a
    # full pump when ends are shared), never by waiting for the scan.
    from curlfault import Loop

    loop = Loop(name="mixed-threads")
    loop.SCAN_SECONDS = 3600.0
    targets = [
        ("http://api.test/", b"plain", {}),
        ("https://sec.test/", b"secure", {}),
        ("https://h2.test/", b"two", {"HTTP_VERSION": pycurl.CURL_HTTP_VERSION_2_0}),
    ]
    got: list[tuple[str, bool, int, bytes]] = []

    def client(n: int) -> None:
        kept = pycurl.Curl()
        try:
            for j in range(9):
                url, _, opts = targets[(n + j) % 3]
                fresh = j % 2 == 0
                r = transfer(url, curl=None if fresh else kept, TIMEOUT=3, **opts)
                got.append((url, fresh, r.code, r.body))
        finally:
            kept.close()

    with loop, FakeNetwork(loop=loop) as net:
        net.http("api.test").get("/").respond(200, body=b"plain")
        net.https("sec.test").get("/").respond(200, body=b"secure")
        net.https("h2.test", http2=True).get("/").respond(200, body=b"two")
        with net.intercept():
            threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert not any(t.is_alive() for t in threads)
        want = {url: body for url, body, _ in targets}
        assert len(got) == 36
        wrong = [(url, code, body) for url, _, code, body in got if (code, body) != (0, want[url])]
        assert wrong == []
        assert {fresh for _, fresh, _, _ in got} == {True, False}
        net.check()


def test_a_problem_repeated_is_counted_not_listed_again() -> None:
    # A client retrying a refused host: before, check() listed the same paragraph per try.
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(200)
        with net.intercept():
            for _ in range(3):
                assert transfer("http://down.test/").code == pycurl.E_COULDNT_CONNECT
            assert transfer("http://api.test/nope").code == 0
            assert transfer("http://other.test/").code == pycurl.E_COULDNT_CONNECT
        with pytest.raises(UnexpectedConnection) as info:
            net.check()
        text = str(info.value)
        assert text.count("pycurl connected to down.test:80") == 1
        assert "\n(the same problem 3 times)\n" in text
        assert "... and 2 more problem(s):\n" in text
        assert "  2. UnmatchedRequest: GET /nope" in text
        assert "  3. UnexpectedConnection: pycurl connected to other.test:80" in text
        assert len(info.value.problems) == 5  # every one is still there for code to read
    finally:
        net.close()


def test_declarations_on_an_endpoint_of_a_closed_network_are_refused() -> None:
    # Before, routes, steps and faults added after close() were accepted and never served.
    net = FakeNetwork()
    api = net.http("api.test")
    route = api.get("/x")
    ws = api.websocket("/ws")
    net.close()
    for declare in (
        lambda: api.get("/"),
        lambda: api.route("*", "/"),
        lambda: route.respond(200),
        lambda: route.handle(lambda request: 200),
        lambda: api.connection_faults(None),
        lambda: api.websocket("/other"),
        lambda: ws.echo(),
    ):
        with pytest.raises(UsageError, match="belongs to a FakeNetwork that is closed"):
            declare()
    assert route.steps == []
    assert ws.steps == []


def test_check_after_close_still_raises_what_was_recorded() -> None:
    from curlfault import UnmatchedRequest

    net = FakeNetwork()
    net.http("api.test").get("/").respond(200)
    with net.intercept():
        assert transfer("http://api.test/nope").status == 404
    net.close()
    with pytest.raises(UnmatchedRequest, match="GET /nope"):
        net.check()
    net.check()  # each problem is raised once


def test_a_leak_found_without_pytest_gives_no_fixture_advice() -> None:
    """Outside pytest (unittest, a script) the LeakError says to close the handle and does
    not talk about fixtures; under pytest it explains a fixture's lifetime too."""
    code = textwrap.dedent(
        """
        import sys, pycurl
        from curlfault import FakeNetwork, LeakError
        net = FakeNetwork(label="InventoryTest.test_items")
        net.http("api.test").get("/").respond(200)
        with net.intercept():
            c = pycurl.Curl()
            c.setopt(pycurl.URL, "http://api.test/"); c.setopt(pycurl.WRITEFUNCTION, len)
            c.perform()
        try:
            net.check()
        except LeakError as e:
            print(str(e).splitlines()[0])
        c.close(); net.close()
        print("_pytest" in sys.modules)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 0, proc.stderr
    first, pytest_loaded = proc.stdout.splitlines()
    assert pytest_loaded == "False"
    assert "opened in InventoryTest.test_items" in first, first
    assert first.endswith(
        "close the pycurl handle (curl.close()), or drop every reference to it, before the check"
    ), first


def test_unrouted_classes_are_module_level_classes_of_the_users_own_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the CurlFaultWarning names: a pycurl.Curl subclass its module still holds, made
    before interception, outside installed packages (a library's own subclass, or a test's
    local class, is not the test's to fix)."""
    import types

    from curlfault._intercept import real_curl, unrouted_classes

    modules = {
        "cf_user_client": "/home/dev/project/cf_user_client.py",
        "cf_lib_client": "/opt/venv/lib/python3.11/site-packages/cf_lib_client.py",
    }
    made = {}
    for name, filename in modules.items():
        module = types.ModuleType(name)
        module.__file__ = filename
        exec("import pycurl\nclass Client(pycurl.Curl):\n    pass\n", module.__dict__)
        monkeypatch.setitem(sys.modules, name, module)
        made[name] = module.Client

    def local() -> type:
        class Local(pycurl.Curl):  # type: ignore[misc, valid-type]
            pass

        return Local

    found = unrouted_classes()
    assert made["cf_user_client"] in found
    assert made["cf_lib_client"] not in found
    assert local() not in unrouted_classes()
    # Asked while a network intercepts (a nested intercept(), whose start looks again):
    # pycurl.Curl's isinstance answers for every handle then, this question must not.
    from curlfault import CurlFaultWarning

    with FakeNetwork() as net:
        intercepting = net.intercept()
        with pytest.warns(CurlFaultWarning, match="cf_user_client.Client"):
            intercepting.__enter__()
        try:
            assert pycurl.Curl is not real_curl()
            assert issubclass(made["cf_user_client"], pycurl.Curl)
            assert made["cf_user_client"] in unrouted_classes()
        finally:
            intercepting.__exit__(None, None, None)


def test_the_trace_of_a_network_that_saw_no_connection_says_why_that_happens() -> None:
    # A failing test whose client bypassed the network (a handle made by a wider fixture,
    # reset() after attach()) gets a hint in its report instead of a bare "(no connections)".
    with FakeNetwork() as net:
        net.http("api.test")
        trace = net.trace()
    assert trace.startswith("(no connections: no handle routed through this network connected.")
    assert "attach()" in trace
    assert "reset()" in trace


def test_hints_call_the_network_by_the_name_it_is_spelled() -> None:
    """Hints write the declaration to add: ``net.http(...)`` by default, the fixture's own
    name under pytest (``curlfault.http(...)``, see the plugin's tests), or the caller's."""
    with FakeNetwork() as net, net.intercept():
        assert net.spelled == "net"
        net.spelled = "fakes"
        assert transfer("http://other.test:8080/x").code == 7
        with pytest.raises(UsageError, match=r"as in fakes\.https\('api\.test', 8443\)"):
            net.https("api.test:8443")
        with pytest.raises(UnexpectedConnection, match=r"add `fakes\.http\('other\.test', 8080\)`"):
            net.check()


def test_the_fixture_names_itself_in_hints(curlfault) -> None:
    assert curlfault.spelled == "curlfault"
    assert transfer("http://other.test/").code == 7
    with pytest.raises(UnexpectedConnection, match=r"add `curlfault\.http\('other\.test'\)`"):
        curlfault.check()
    curlfault.problems.clear()


def test_unused_lists_faults_and_steps_nothing_used() -> None:
    from curlfault import Response, UnusedDeclaration

    def hello(request):
        return Response.make(200)

    with FakeNetwork() as net, net.intercept():
        api = net.http("api.test")
        api.get("/a").respond(503).respond(201, fault=faults.close(after_bytes=0)).respond(200)
        api.get("/b").handle(hello)
        api.get("/c").respond(200)  # one step: reached once is used, it repeats
        api.connection_faults(None, faults.refuse(), None, None)  # trailing Nones: not listed
        assert transfer("http://api.test/a").code == 0  # connection 1, healthy
        assert transfer("http://api.test/c").code == 7  # connection 2, refused
        assert transfer("http://api.test/c").code == 0
        assert transfer("http://api.test/c").code == 0
        assert net.unused() == [
            "api.test:80 GET /a: steps never reached: #2 respond(201, "
            "fault=close(after_bytes=0)), #3 respond(200) (the route answered 1 request)",
            "api.test:80 GET /b: never requested (declared: handle("
            "test_unused_lists_faults_and_steps_nothing_used.<locals>.hello))",
        ]
        net.check()  # not a problem unless asked
        with pytest.raises(UnusedDeclaration) as info:
            net.check(all_used=True)
        assert [type(p) for p in info.value.problems] == [UnusedDeclaration] * 2
        net.check(all_used=True)  # each line is raised once
        # clear() starts the route over: its new step is unused until a request comes.
        api.get("/c").clear().respond(204)
        assert net.unused()[-1] == (
            "api.test:80 GET /c: not requested since clear() (declared: respond(204))"
        )
        assert transfer("http://api.test/c").status == 204
        assert len(net.unused()) == 2
        # A step added after requests came is not reached until a request takes it.
        api.get("/c").respond(503)
        assert net.unused()[-1] == (
            "api.test:80 GET /c: step never reached: #2 respond(503) (the route answered 1 request)"
        )
        assert transfer("http://api.test/c").status == 503
        assert len(net.unused()) == 2
        # Each declaration is raised once, even when the line naming it changes since.
        api.get("/d").respond(200).respond(201).respond(202)
        assert transfer("http://api.test/d").status == 200
        with pytest.raises(UnusedDeclaration, match=r"#2 respond.*#3 respond"):
            net.check(all_used=True)
        assert transfer("http://api.test/d").status == 201
        assert net.unused()[-1].startswith("api.test:80 GET /d: step never reached: #3")
        net.check(all_used=True)  # #3 was raised already
        api.get("/d").respond(203)
        with pytest.raises(UnusedDeclaration, match=r"#3 respond.*#4 respond"):
            net.check(all_used=True)  # #4 is new: the line is raised, with #3 in it


def test_unused_connection_faults_per_family() -> None:
    with FakeNetwork() as net, net.intercept():
        api = net.http("api.test")
        api.get("/").respond(200)
        api.connection_faults(faults.refuse(), faults.refuse(), family="ipv6")
        api.connection_faults(faults.refuse(), family="ipv4")
        # happy eyeballs: ::1 first (refused), then 127.x (refused), then no address left
        assert transfer("http://api.test/").code == 7
        assert net.unused() == [
            "api.test:80: connection fault never taken: #2 refuse() (the client made "
            "1 connection over ipv6 since they were declared)",
            "api.test:80 GET /: never requested (declared: respond(200))",
        ]


def test_unused_names_websocket_routes_never_connected_and_bracketed_ipv6_hosts() -> None:
    with FakeNetwork() as net:
        api = net.http("api.test")
        api.websocket("/ws").send("hi")
        net.http("::1", 8080).get("/").respond(200)
        assert net.unused() == [
            "api.test:80 WebSocket /ws: never connected",
            "[::1]:8080 GET /: never requested (declared: respond(200))",
        ]


def test_trial_reports_name_the_host_and_the_nearest_route() -> None:
    """From a user trial: an unexpected connection's trace line names its host (from the
    URL), and an unmatched request's hint reads as code and names the closest route path."""
    with FakeNetwork() as net, net.intercept():
        api = net.http("api.test")
        api.get("/items").respond(200)
        assert transfer("http://api-v2.test/x").code == 7
        assert transfer("http://api.test/itemz").status == 404
        assert net.trace().startswith("#1 api-v2.test via 127.77.255.254:9 [none]")
        with pytest.raises(UnexpectedConnection) as info:  # the first of the two problems
            net.check()
    text = str(info.value)
    assert (
        "add `.get('/itemz').respond(...)` to the api.test endpoint; the closest route path "
        "is '/items'"
    ) in text


def test_a_sites_headline_names_the_users_own_frame_past_a_library() -> None:
    """A handle that tornado makes for the user's client is reported at the client's line
    (the whole stack follows in the report)."""
    from curlfault._ledger import Site

    lib = "/opt/venv/lib/python3.11/site-packages/tornado/curl_httpclient.py"
    site = Site(((lib, 438, "_curl_create"), ("/srv/app/client.py", 122, "fetch")))
    assert str(site) == "/srv/app/client.py:122 in fetch"
    assert str(Site(((lib, 438, "_curl_create"),))) == f"{lib}:438 in _curl_create"
    assert str(Site()) == "?"


@pytest.mark.parametrize(
    ("url", "where", "hint"),
    [
        ("ws://chat.test/room", "chat.test:80", "`net.http('chat.test')`"),
        ("wss://chat.test/room", "chat.test:443", "`net.https('chat.test')`"),
        ("wss://chat.test:8443/room", "chat.test:8443", "`net.https('chat.test', 8443)`"),
        ("https://chat.test/", "chat.test:443", "`net.https('chat.test')`"),
    ],
)
def test_an_unexpected_websocket_url_names_its_port_and_scheme(
    url: str, where: str, hint: str
) -> None:
    from curlfault._connect import _describe_url

    what, suggested = _describe_url(url)
    assert what == f"{where} (url {url})"
    assert suggested == hint
