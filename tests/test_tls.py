"""TLS on real pycurl: trust, per-connection records, TLS faults (CURLcodes, sequences,
ledger) over every transport, endpoint TLS settings, mutual TLS and key pinning."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pycurl
import pytest
import trustme
from cfhelpers import transfer

from curlfault import FakeNetwork, Tracker, UsageError, faults
from curlfault._tls import ClientCert, TlsServerConfig, alert_record, parse_client_hello

TRANSPORTS = ["socketpair", "tcp", "listener"]
URL = "https://secure.test/"
BODY = b"x" * 1000


def serve(curlfault: FakeNetwork, transport: str = "socketpair", **kw: Any) -> Any:
    ep = curlfault.https("secure.test", transport=transport, **kw)
    ep.get("/").respond(200, body=BODY)
    return ep


# trust -------------------------------------------------------------------------------


@pytest.mark.curlfault(intercept=False)
def test_attach_trusts_the_network_ca_unless_told_not_to(curlfault) -> None:
    serve(curlfault)
    trusted = curlfault.attach(pycurl.Curl())
    untrusted = curlfault.attach(pycurl.Curl(), trust=False)
    try:
        assert transfer(URL, curl=trusted).code == 0
        assert transfer(URL, curl=untrusted).code == 60
    finally:
        trusted.close()
        untrusted.close()
    assert curlfault.ledger.audit().ok


def test_attach_trust_false_on_an_intercepted_handle(curlfault) -> None:
    serve(curlfault)
    curl = curlfault.attach(pycurl.Curl(), trust=False)  # wired by intercept(), then attached
    try:
        assert transfer(URL, curl=curl).code == 60
    finally:
        curl.close()


def test_attach_trust_true_overrides_an_untrusting_network() -> None:
    with FakeNetwork(trust=False) as net:
        net.https("secure.test").get("/").respond(body="ok")
        curl = net.attach(pycurl.Curl(), trust=True)
        try:
            r = transfer(URL, curl=curl)
        finally:
            curl.close()
        assert (r.code, r.body) == (0, b"ok")


def test_attach_trusts_the_network_ca_for_a_handle_a_tracker_made() -> None:
    # The tracker's wiring never touches trust options; that is no client trust setting.
    with FakeNetwork() as net:
        net.https("secure.test").get("/").respond(body="ok")
        with Tracker(leaks=False):
            curl = pycurl.Curl()
        net.attach(curl)
        try:
            r = transfer(URL, curl=curl)
        finally:
            curl.close()
        assert (r.code, r.body) == (0, b"ok")


def test_attach_trust_false_keeps_the_clients_own_ca_blob(curlfault) -> None:
    serve(curlfault)
    curl = pycurl.Curl()  # wired by intercept()
    try:
        curl.setopt(pycurl.CAINFO_BLOB, curlfault.ca.cert_pem.bytes())  # the client's own
        curlfault.attach(curl, trust=False)
        assert transfer(URL, curl=curl).code == 0
    finally:
        curl.close()


def test_a_client_that_disables_verification_is_not_given_the_ca(curlfault) -> None:
    serve(curlfault).connection_faults(faults.untrusted_ca())
    # SSL_VERIFYPEER=0 is the client's own trust choice: the untrusted chain passes.
    assert transfer(URL, SSL_VERIFYPEER=0).code == 0


# records -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_connection_records_sni_version_cipher_and_alpn(curlfault, transport) -> None:
    ep = serve(curlfault, transport)
    assert transfer(URL).code == 0
    assert transfer(URL, SSLVERSION=pycurl.SSLVERSION_MAX_TLSv1_2).code == 0
    first, second = (c.tls for c in ep.connections)
    assert first["sni"] == second["sni"] == "secure.test"
    assert first["alpn_offered"] == ["h2", "http/1.1"]
    assert first["alpn"] == second["alpn"] == "http/1.1"
    assert (first["version"], second["version"]) == ("TLSv1.3", "TLSv1.2")
    assert first["cipher"].startswith("TLS_")
    assert second["cipher"]
    assert not second["cipher"].startswith("TLS_")
    assert first["client_cert"] is None


def test_a_client_without_alpn_negotiates_none(curlfault) -> None:
    ep = serve(curlfault)
    assert transfer(URL, SSL_ENABLE_ALPN=0).code == 0
    assert ep.connections[0].tls["alpn_offered"] == []
    assert ep.connections[0].tls["alpn"] is None


def test_an_ip_literal_sends_no_sni(curlfault) -> None:
    ep = curlfault.https("10.9.8.7")
    ep.get("/").respond(body="ip")
    r = transfer("https://10.9.8.7/")
    assert (r.code, r.body) == (0, b"ip")
    assert ep.connections[0].tls["sni"] is None


def test_parse_client_hello_whole_split_and_not_tls() -> None:
    # A minimal ClientHello: version, random, empty session id, one suite, null compression,
    # then SNI "a.test" and ALPN ["h2"].
    sni = b"\x00\x00" + (11).to_bytes(2, "big") + b"\x00\x09\x00\x00\x06a.test"
    alpn = b"\x00\x10" + (5).to_bytes(2, "big") + b"\x00\x03\x02h2"
    exts = sni + alpn
    hello = b"\x03\x03" + b"r" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    hello += len(exts).to_bytes(2, "big") + exts
    msg = b"\x01" + len(hello).to_bytes(3, "big") + hello
    record = b"\x16\x03\x01" + len(msg).to_bytes(2, "big") + msg
    fields = {"sni": "a.test", "alpn_offered": ["h2"], "tls13_offered": False}
    assert parse_client_hello(record) == fields
    # Fed in pieces: nothing until it is whole.
    assert all(parse_client_hello(record[:n]) is None for n in range(len(record)))
    # Split across two handshake records.
    half = len(msg) // 2
    two = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part for part in (msg[:half], msg[half:])
    )
    assert parse_client_hello(two) == fields
    assert "error" in (parse_client_hello(b"GET / HTTP/1.1\r\n\r\n") or {})
    assert alert_record(40) == b"\x15\x03\x03\x00\x02\x02\x28"


# faults: codes over every transport ----------------------------------------------------

CODES = [
    (faults.untrusted_ca(), {}, 60),
    (faults.hostname_mismatch(), {}, 60),
    (faults.expired_cert(), {}, 60),
    (faults.not_yet_valid_cert(), {}, 60),
    (faults.tls_version(), {}, 35),
    (faults.tls_version("TLSv1"), {}, 35),
    (faults.tls_version("TLSv1.2"), {"SSLVERSION": pycurl.SSLVERSION_TLSv1_3}, 35),
    (faults.handshake_close(), {}, 35),
    (faults.handshake_reset(), {}, 35),
    (faults.tls_alert(), {}, 35),
    (faults.tls_alert("internal_error"), {}, 35),
    (faults.tls_alert(112), {}, 35),
    (faults.alpn_mismatch(), {}, 35),
    (faults.pinned_key_mismatch(), {"PINNEDPUBLICKEY": "pin"}, 90),
    (faults.pinned_key_mismatch(), {}, 0),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "options", "code"), CODES, ids=[f"{c[0]!r}{sorted(c[1])}" for c in CODES]
)
def test_tls_fault_codes(curlfault, fault, options, code, transport) -> None:
    ep = serve(curlfault, transport).connection_faults(fault)
    opts = {k: ep.pin if v == "pin" else v for k, v in options.items()}
    assert transfer(URL, **opts).code == code
    assert curlfault.ledger.audit().ok
    assert curlfault.problems == []  # the fault was declared: nobody is at fault
    conn = ep.connections[0]
    assert conn.fault == fault
    assert conn.tls["sni"] == "secure.test"  # read from the ClientHello, even on failure
    events = [text for _, text in conn.events]
    if isinstance(fault, faults.HandshakeReset):
        assert conn.transport in ("tcp", "listener")  # an RST needs TCP, on every transport
        assert "server sent RST" in events
        assert "server sent FIN" not in events
    elif isinstance(fault, faults.HandshakeClose):
        assert "server sent FIN" in events
        assert "server sent RST" not in events


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_many_handshakes_in_threads_with_faults_each_end_as_declared(curlfault, transport) -> None:
    # Handshakes are served from the debug callbacks of several threads at once (and by the
    # loop thread): every connection still gets its own fault or success.
    failing = [faults.handshake_close(), faults.tls_alert(), faults.expired_cert()]
    if transport != "socketpair":
        failing.append(faults.handshake_reset())
    script = [*failing, None, None]
    rounds, threads = 8, 4
    serve(curlfault, transport).connection_faults(*script * rounds * threads)
    codes: list[int] = []

    def run() -> None:
        for _ in range(len(script) * rounds):
            codes.append(transfer(URL, FORBID_REUSE=1).code)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: a lost update would show
    try:
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert len(codes) == len(script) * rounds * threads
    assert codes.count(0) == 2 * rounds * threads
    assert curlfault.ledger.audit().ok


def test_tls_records_are_served_at_the_debug_event_after_their_announcement(
    curlfault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL announces each record it sends (INFOTYPE_SSL_DATA_OUT) before writing it, so a
    # pump at that event finds nothing: the loop is armed instead, and the next events pump
    # until one finds the record. The handshake is then served in the thread calling
    # perform(), with a handful of pumps rather than one per debug event.
    from curlfault import _loop, _wiring

    current: list[int] = []
    events: list[int] = []
    pumps: list[tuple[int, int]] = []  # (debug event being handled, events served)
    debug, pump, pump_own = _wiring.Wiring._debug, _loop.Loop.pump, _loop.Loop.pump_own

    def spy_debug(self: Any, kind: int, data: bytes) -> None:
        events.append(kind)
        current.append(kind)
        try:
            debug(self, kind, data)
        finally:
            current.pop()

    def spy_pump(self: Any) -> int:
        served = pump(self)
        if current and current[-1] != -1:
            pumps.append((current[-1], served))
        return served

    def spy_pump_own(self: Any, handler: Any) -> int:
        if current:
            current.append(-1)  # a pump made by pump_own is not counted twice
        try:
            served = pump_own(self, handler)
        finally:
            if current:
                current.pop()
        if current:
            pumps.append((current[-1], served))
        return served

    monkeypatch.setattr(_wiring.Wiring, "_debug", spy_debug)
    monkeypatch.setattr(_loop.Loop, "pump", spy_pump)
    monkeypatch.setattr(_loop.Loop, "pump_own", spy_pump_own)
    serve(curlfault, "socketpair")
    result = transfer(URL)
    assert (result.code, result.body) == (0, BODY)
    assert pycurl.INFOTYPE_SSL_DATA_OUT in events
    first_served = next(kind for kind, served in pumps if served)
    assert first_served != pycurl.INFOTYPE_SSL_DATA_OUT  # the ClientHello: after its writing
    first_request_pump = next(
        i for i, (kind, _) in enumerate(pumps) if kind == pycurl.INFOTYPE_HEADER_OUT
    )
    # The ClientHello and the client's Finished, each answered inline.
    assert sum(1 for _, served in pumps[:first_request_pump] if served) >= 2
    assert len(pumps) * 4 < len(events)


def test_parse_client_hello_reads_whether_tls13_is_offered() -> None:
    def record(versions: bytes) -> bytes:
        ext = b"\x00\x2b" + (1 + len(versions)).to_bytes(2, "big") + bytes([len(versions)])
        ext += versions
        hello = b"\x03\x03" + b"r" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
        hello += len(ext).to_bytes(2, "big") + ext
        msg = b"\x01" + len(hello).to_bytes(3, "big") + hello
        return b"\x16\x03\x01" + len(msg).to_bytes(2, "big") + msg

    def offered(versions: bytes) -> Any:
        return (parse_client_hello(record(versions)) or {}).get("tls13_offered")

    assert offered(b"\x03\x04\x03\x03") is True
    assert offered(b"\x03\x03\x03\x04") is True
    assert offered(b"\x03\x03") is False
    assert offered(b"\x03\x03\x03\x02") is False


def spy_watches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every ``Loop.watch(handler, on)`` call's ``on``, from now to the end of the test."""
    from curlfault import Loop

    watches: list[bool] = []
    watch = Loop.watch

    def spy_watch(self: Loop, handler: Any, on: bool = True) -> None:
        watches.append(on)
        watch(self, handler, on)

    monkeypatch.setattr(Loop, "watch", spy_watch)
    return watches


TLS12 = {
    "client caps": ({}, {"SSLVERSION": pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2}),
    "server caps": ({"tls_versions": (None, "TLSv1.2")}, {}),
    "http2": (
        {"http2": True},
        {
            "SSLVERSION": pycurl.SSLVERSION_MAX_TLSv1_2,
            "HTTP_VERSION": pycurl.CURL_HTTP_VERSION_2TLS,
        },
    ),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(TLS12))
def test_tls12_final_flight_is_served_without_the_safety_net_scan(
    transport: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A TLS 1.2 client writes its last flight (key exchange, ChangeCipherSpec, Finished) and
    # then waits for the server's Finished, with no debug event in between: no pump in its
    # own thread would serve it. Its arrival wakes the loop thread instead. With the scan
    # made a minute long, the handshake only completes within TIMEOUT that way.
    from curlfault import Loop

    endpoint_kw, opts = TLS12[case]
    watches = spy_watches(monkeypatch)
    loop = Loop(name="tls12-no-scan")
    loop.SCAN_SECONDS = 60.0
    try:
        with FakeNetwork(loop=loop) as net:
            ep = serve(net, transport, **endpoint_kw)
            with net.intercept():
                results = [transfer(URL, TIMEOUT=10, **opts) for _ in range(2)]
            assert [(r.code, r.body) for r in results] == [(0, BODY), (0, BODY)]
            assert [c.tls["version"] for c in ep.connections] == ["TLSv1.2", "TLSv1.2"]
            assert watches.count(True) == 2  # on for each handshake
            assert not loop._watched  # and off once it is done
    finally:
        loop.stop()


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_handle_resumes_its_session_and_a_resumed_tls12_handshake_is_not_watched(
    curlfault, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resumed TLS 1.2 handshake ends with the client's Finished and its request, whose
    # debug event pumps both: no wake-up of the loop thread is needed.

    watches = spy_watches(monkeypatch)
    ep = serve(curlfault)
    cap = pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2
    opts = {"SSLVERSION": cap if version == "TLSv1.2" else pycurl.SSLVERSION_TLSv1_3}
    curl = pycurl.Curl()
    try:
        codes = [transfer(URL, curl=curl, FORBID_REUSE=1, **opts).code for _ in range(3)]
    finally:
        curl.close()
    assert codes == [0, 0, 0]
    assert [(c.tls["version"], c.tls["resumed"]) for c in ep.connections] == [
        (version, False),
        (version, True),
        (version, True),
    ]
    assert watches.count(True) == (1 if version == "TLSv1.2" else 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tls13_handshake_never_wakes_the_loop_thread(
    curlfault, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS 1.3: the client's Finished comes with the request, whose debug event pumps it in
    # the client's thread. A wake-up there would only add a thread switch to every request.

    watches = spy_watches(monkeypatch)
    ep = serve(curlfault, transport)
    assert transfer(URL).code == 0
    assert transfer(URL, HTTP_VERSION=pycurl.CURL_HTTP_VERSION_2TLS).code == 0
    assert [c.tls["version"] for c in ep.connections] == ["TLSv1.3", "TLSv1.3"]
    assert True not in watches


def test_untrusted_ca_verifies_with_its_own_ca_pem_only(curlfault) -> None:
    # Sanity: the certificate is good for the host; only the CA differs.
    ep = serve(curlfault).connection_faults(faults.untrusted_ca(), faults.untrusted_ca())
    assert transfer(URL).code == 60
    assert transfer(URL, SSL_VERIFYPEER=0).code == 0
    assert [c.tls["version"] for c in ep.connections] == ["TLSv1.3", "TLSv1.3"]


def test_hostname_mismatch_passes_without_host_verification(curlfault) -> None:
    serve(curlfault).connection_faults(faults.hostname_mismatch(), faults.hostname_mismatch())
    # SSL_VERIFYHOST=0 drops the name check only: the chain is verified against the CA
    # curlfault supplies, or the one the handle names.
    ca = curlfault.ca.cert_pem.bytes()
    assert transfer(URL, CAINFO_BLOB=ca).code == 60
    assert transfer(URL, SSL_VERIFYHOST=0).code == 0
    # not verifying the peer still checks the name (docs/https.md)
    other = curlfault.https("other.test")
    other.get("/").respond(body="x")
    other.connection_faults(faults.hostname_mismatch())
    assert transfer("https://other.test/", SSL_VERIFYPEER=0).code == 60


def test_verification_switched_on_explicitly_still_trusts_the_fakes(curlfault) -> None:
    # tornado sets SSL_VERIFYPEER=1 and SSL_VERIFYHOST=2 (the defaults) on every request:
    # that names no CA, so curlfault's stays (it was dropped, and every transfer got 60).
    serve(curlfault)
    assert transfer(URL, SSL_VERIFYPEER=1, SSL_VERIFYHOST=2).code == 0
    # an untrusted chain is still refused: verification is on
    curlfault.https("other.test").connection_faults(faults.untrusted_ca())
    assert transfer("https://other.test/", SSL_VERIFYPEER=1).code == 60


def test_alert_reaches_the_client_as_sent(curlfault) -> None:
    ep = serve(curlfault).connection_faults(faults.tls_alert("access_denied"))
    assert transfer(URL).code == 35
    assert any("sent fatal alert 49" in text for _, text in ep.connections[0].events)


def test_alpn_mismatch_without_an_alpn_offer_is_no_mismatch(curlfault) -> None:
    ep = serve(curlfault).connection_faults(faults.alpn_mismatch())
    assert transfer(URL, SSL_ENABLE_ALPN=0).code == 0
    assert ep.connections[0].tls["alpn"] is None


def test_the_first_connection_meets_the_fault_and_the_retry_succeeds(curlfault) -> None:
    ep = serve(curlfault).connection_faults(faults.expired_cert(), None, faults.handshake_close())
    codes = [transfer(URL).code for _ in range(4)]
    assert codes == [60, 0, 35, 0]
    assert [c.fault for c in ep.connections] == [
        faults.expired_cert(),
        None,
        faults.handshake_close(),
        None,
    ]
    assert len(ep.requests) == 2
    assert curlfault.ledger.audit().ok


def test_one_handle_retries_on_a_fresh_connection(curlfault) -> None:
    serve(curlfault).connection_faults(faults.tls_alert())
    curl = pycurl.Curl()
    try:
        assert transfer(URL, curl=curl).code == 35
        r = transfer(URL, curl=curl)
        assert (r.code, r.body) == (0, BODY)
    finally:
        curl.close()


def test_tls_faults_compose_with_stream_faults(curlfault) -> None:
    ep = curlfault.https("secure.test")
    ep.get("/").respond(200, body=BODY, fault=faults.reset(after_bytes=500))
    ep.connection_faults(faults.not_yet_valid_cert())
    assert transfer(URL).code == 60
    assert transfer(URL).code == 56  # the reset made the endpoint serve over TCP
    assert {c.transport for c in ep.connections} == {"tcp"}


def test_tls_faults_per_address_family(curlfault) -> None:
    ep = serve(curlfault).connection_faults(faults.tls_alert(), family="ipv6")
    assert transfer(URL).code == 35  # happy eyeballs: the IPv6 handshake fails with an alert
    assert ep.connections[0].family == "ipv6"


# no_close_notify -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("response", "clean", "bare"),
    [
        ({"headers": {"Connection": "close"}}, 0, 0),
        ({"fault": faults.close(at="body")}, 18, 56),
        ({"fault": faults.close(0)}, 52, 56),
    ],
    ids=["complete-then-close", "cut-mid-body", "cut-before-any-byte"],
)
def test_no_close_notify(curlfault, transport, response, clean, bare) -> None:
    ep = curlfault.https("secure.test", transport=transport)
    ep.get("/").respond(200, body=BODY, **response)
    ep.connection_faults(None, faults.no_close_notify())
    assert transfer(URL).code == clean  # close_notify, then FIN
    assert transfer(URL).code == bare  # FIN alone
    assert any("without close_notify" in t for _, t in ep.connections[1].events)
    assert curlfault.ledger.audit().ok


# endpoint settings ---------------------------------------------------------------------


def test_tls_versions_bound_the_versions_served(curlfault) -> None:
    ep = serve(curlfault, tls_versions=("TLSv1.2", "TLSv1.2"))
    assert transfer(URL).code == 0
    assert transfer(URL, SSLVERSION=pycurl.SSLVERSION_TLSv1_3).code == 35
    assert ep.connections[0].tls["version"] == "TLSv1.2"


def test_alpn_none_is_the_default(curlfault) -> None:
    ep = serve(curlfault, alpn=None)
    assert transfer(URL).code == 0
    assert ep.connections[0].tls["alpn"] == "http/1.1"


def test_alpn_offered_by_the_server(curlfault) -> None:
    ep = serve(curlfault, alpn=())
    assert transfer(URL).code == 0
    assert ep.connections[0].tls["alpn"] is None
    assert ep.connections[0].tls["alpn_offered"] == ["h2", "http/1.1"]


def test_for_host_keeps_its_signature(curlfault_ca) -> None:
    config = TlsServerConfig.for_host(curlfault_ca, "h2.test", alpn=("h2", "http/1.1"))
    assert config.alpn == ("h2", "http/1.1")
    assert config.pin.startswith("sha256//")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"client_cert": "yes"}, "client_cert='yes'"),
        ({"tls_versions": ("TLSv1.2",)}, "(min, max)"),
        ({"tls_versions": ("SSLv3", None)}, "'SSLv3'"),
        ({"tls_versions": ("TLSv1.3", "TLSv1.2")}, "minimum 'TLSv1.3' is above the maximum"),
        ({"tls_versions": ("TLSv1.3", "TLSv1.2")}, "('TLSv1.2', 'TLSv1.3')"),
        ({"alpn": 42}, "alpn=42"),
        ({"alpn": "h2"}, "alpn='h2'"),
        ({"alpn": ("h2", "")}, "alpn="),
        # HTTP/2 by ALPN to an HTTP/1.1-only endpoint: 16, and a misleading PRI * report
        ({"alpn": ("h2", "http/1.1")}, "offers 'h2' on an endpoint that serves HTTP/1.1 only"),
        ({"alpn": ["h2"]}, "add http2=True"),
    ],
)
def test_https_settings_are_validated(curlfault, kwargs, words) -> None:
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        curlfault.https("secure.test", **kwargs)


def test_fault_arguments_are_validated() -> None:
    with pytest.raises(UsageError, match="not a TLS version"):
        faults.tls_version("SSLv3")
    with pytest.raises(UsageError, match=r"faults\.ALERTS"):
        faults.tls_alert("nope")
    with pytest.raises(UsageError, match=r"faults\.ALERTS"):
        faults.tls_alert(300)
    with pytest.raises(UsageError, match=r"faults\.ALERTS"):
        faults.tls_alert(True)
    assert faults.tls_alert(112).code == faults.ALERTS["unrecognized_name"]
    assert repr(faults.tls_alert()) == "tls_alert(description='handshake_failure')"


@pytest.mark.parametrize("transport", TRANSPORTS)
# OpenSSL says "http request" for the first four; the others it reads as a record with a
# wrong version number, and curlfault knows them by their request line.
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_plain_http_to_an_https_endpoint_is_a_malformed_request(transport, method) -> None:
    from curlfault import MalformedRequest

    with FakeNetwork() as net, net.intercept():
        ep = net.https("secure.test", 8443, transport=transport)
        ep.route("*", "/x").respond(200, body=BODY)
        r = transfer("http://secure.test:8443/x", CUSTOMREQUEST=method)
        assert (r.code, r.status) == (52, None)
        assert ep.requests == []
        with pytest.raises(MalformedRequest) as info:
            net.check()
    first = str(info.value).splitlines()[0]
    assert first.startswith("https://secure.test:8443 received a plain HTTP request")
    reason = "http request" if method in ("GET", "POST", "HEAD", "PUT") else "wrong version number"
    assert f"(OpenSSL: {reason})" in first
    assert first.endswith(
        "use https://secure.test:8443/x (not http://secure.test:8443/x), or declare "
        "net.http('secure.test', 8443) to serve plain HTTP there"
    )


def test_plain_http_on_port_80_to_an_https_endpoint_suggests_a_url_that_keeps_the_port() -> None:
    # https://api.test/ would go to port 443, which nothing serves: the suggestion keeps :80.
    from curlfault import MalformedRequest

    with FakeNetwork() as net, net.intercept():
        net.https("api.test", 80).get("/x").respond(200, body=BODY)
        assert transfer("http://api.test/x?q=1").code == 52
        with pytest.raises(MalformedRequest) as info:
            net.check()
    assert "use https://api.test:80/x?q=1 (not http://api.test/x?q=1)" in str(info.value)


def test_plain_http_with_a_request_line_longer_than_one_read_is_named() -> None:
    # The first read holds only the start of the request line: the method and the
    # target's first bytes are enough to tell it from a TLS record.
    from curlfault import MalformedRequest

    with FakeNetwork() as net, net.intercept():
        net.https("secure.test", 8443).route("*", "/x").respond(200, body=BODY)
        r = transfer("http://secure.test:8443/x?" + "a" * 300_000, CUSTOMREQUEST="DELETE")
        assert r.code == 52
        with pytest.raises(MalformedRequest, match="received a plain HTTP request"):
            net.check()


def test_a_client_rejecting_the_handshake_is_not_a_problem(curlfault) -> None:
    """Only plain HTTP where a ClientHello belongs is the client's mistake: a client that
    does not trust the certificate, or offers no version the endpoint serves, fails on its
    own (the TLS faults' own rejections are checked in test_tls_fault_codes)."""
    serve(curlfault, tls_versions=("TLSv1.3", None))
    assert transfer(URL, CAINFO_BLOB=trustme.CA().cert_pem.bytes()).code == 60
    max12 = pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2
    assert transfer(URL, SSLVERSION=max12).code == 35
    assert curlfault.problems == []


def test_a_tls_fault_on_plain_http_is_a_usage_error(curlfault) -> None:
    plain = curlfault.http("plain.test")
    with pytest.raises(UsageError, match=r"curlfault\.https\('plain\.test'\)"):
        plain.connection_faults(faults.expired_cert())
    with pytest.raises(UsageError, match="is not a stream fault"):
        curlfault.https("secure.test").get("/").respond(fault=faults.handshake_close())


def test_a_tls_fault_on_a_refusing_endpoint_says_it_refuses(curlfault) -> None:
    ep = curlfault.refuse("secure.test")
    for declare in (
        lambda: ep.connection_faults(faults.expired_cert()),
        lambda: faults.expired_cert().check_endpoint(ep),
    ):
        with pytest.raises(UsageError, match="refuses every connection") as info:
            declare()
        assert "plain HTTP" not in str(info.value)
        assert "declare the host with curlfault.https('secure.test')" in str(info.value)
        assert "instead of curlfault.refuse()" in str(info.value)


def test_a_tls_fault_is_not_a_stream_fault(curlfault) -> None:
    with pytest.raises(UsageError):
        serve(curlfault).get("/x").respond(fault=faults.no_close_notify())


# mutual TLS ----------------------------------------------------------------------------
def with_cert(cert: Any, **opts: Any) -> Any:
    """One transfer to URL on a fresh handle that presents ``cert``."""
    curl = pycurl.Curl()
    try:
        cert.setopt(curl)
        return transfer(URL, curl=curl, **opts)
    finally:
        curl.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mutual_tls(curlfault, transport) -> None:
    ep = serve(curlfault, transport, client_cert="required")
    r = with_cert(curlfault.client_cert("robot.test"))
    assert (r.code, r.body) == (0, BODY)
    assert ep.connections[0].tls["client_cert"] == "robot.test"
    # No certificate: TLS 1.3 fails after the client's handshake (the server's alert
    # arrives when the response is read); TLS 1.2 fails inside the handshake.
    assert transfer(URL).code == 56
    assert transfer(URL, SSLVERSION=pycurl.SSLVERSION_MAX_TLSv1_2).code == 35
    assert curlfault.ledger.audit().ok


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mutual_tls_without_a_certificate_over_http2_is_55(curlfault, transport) -> None:
    # Over HTTP/2 libcurl is still writing its preface and SETTINGS when the TLS 1.3
    # certificate_required alert arrives: 55 (SEND_ERROR), where HTTP/1.1 reads it (56).
    serve(curlfault, transport, client_cert="required", http2=True)
    assert transfer(URL).code == pycurl.E_SEND_ERROR
    assert with_cert(curlfault.client_cert("robot.test")).code == 0


def test_a_client_certificate_from_another_ca_is_refused(curlfault) -> None:
    serve(curlfault, client_cert="required")
    leaf = trustme.CA().issue_cert("stranger.test")
    cert = ClientCert(
        "stranger.test", leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    )
    assert with_cert(cert).code == 56


def test_optional_client_certificate(curlfault) -> None:
    ep = serve(curlfault, client_cert="optional")
    assert transfer(URL).code == 0
    assert with_cert(curlfault.client_cert()).code == 0
    assert [c.tls["client_cert"] for c in ep.connections] == [None, "client.curlfault.test"]


def test_client_cert_name_is_validated(curlfault) -> None:
    with pytest.raises(UsageError, match="non-empty str"):
        curlfault.client_cert("")


# pinning -------------------------------------------------------------------------------


def test_pin_is_the_key_the_endpoint_serves(curlfault) -> None:
    ep = serve(curlfault)
    assert ep.pin.startswith("sha256//")
    assert len(ep.pin) == len("sha256//") + 44
    assert transfer(URL, PINNEDPUBLICKEY=ep.pin).code == 0
    other = curlfault.https("other.test")
    assert other.pin != ep.pin
    assert transfer(URL, PINNEDPUBLICKEY=other.pin).code == 90
    assert curlfault.http("plain.test").pin is None


def _debug_only_wiring(loop: object) -> Any:
    """A ``Wiring`` with just what its debug callback reads, on a stand-in loop."""
    from types import SimpleNamespace

    from curlfault._wiring import Wiring

    wiring = Wiring.__new__(Wiring)
    wiring.network = SimpleNamespace(_loop=loop)
    wiring.user_verbose = False
    wiring.armed = False
    wiring.read_since_refill = 0
    wiring.follows = 0
    wiring.seen_fill = None
    wiring.channel = None  # no own server end: every pump asks epoll
    return wiring


def test_debug_events_pump_by_the_armed_rule() -> None:
    # The rule itself, on a stand-in loop: an announced TLS record arms the handle; while
    # armed, every event pumps until a pump serves something; a second announcement pumps
    # first. Request and response events pump as they always did.

    class StandInLoop:
        writers: set[int] = set()
        followers: set[int] = set()
        fills: dict[int, tuple[int, int]] = {}

        def __init__(self) -> None:
            self.results: list[int] = []
            self.calls = 0

        def pump(self) -> int:
            self.calls += 1
            return self.results.pop(0) if self.results else 0

        def pump_own(self, handler: object) -> int:  # no own end here (channel None)
            assert handler is None
            return self.pump()

    loop = StandInLoop()
    wiring = _debug_only_wiring(loop)
    out, text = pycurl.INFOTYPE_SSL_DATA_OUT, pycurl.INFOTYPE_TEXT

    def calls_after(kind: int) -> int:
        before = loop.calls
        wiring._debug(kind, b"")
        return loop.calls - before

    assert calls_after(text) == 0  # nothing announced: text does not pump
    assert (calls_after(out), wiring.armed) == (0, True)  # announced, not written yet
    assert (calls_after(text), wiring.armed) == (1, True)  # pumped, found nothing: still armed
    assert (calls_after(out), wiring.armed) == (1, True)  # a second announcement pumps first
    loop.results = [1]
    assert (calls_after(text), wiring.armed) == (1, False)  # served: disarmed
    assert calls_after(text) == 0
    assert calls_after(pycurl.INFOTYPE_HEADER_OUT) == 1  # request bytes written
    assert calls_after(pycurl.INFOTYPE_SSL_DATA_IN) == 0  # no server end waits to write
    assert (calls_after(out), wiring.armed) == (0, True)
    assert (calls_after(pycurl.INFOTYPE_SSL_DATA_IN), wiring.armed) == (1, True)  # armed: pumps
    loop.results = [1]
    assert (calls_after(pycurl.INFOTYPE_HEADER_IN), wiring.armed) == (1, False)
    assert calls_after(pycurl.INFOTYPE_HEADER_IN) == 0
    loop.writers = {5}
    assert calls_after(pycurl.INFOTYPE_SSL_DATA_IN) == 1  # one does: reading made room


def test_a_waiting_writer_is_pumped_once_most_of_its_last_fill_is_read() -> None:
    # A full socket reports room only once most of it is read. Reads pump from 3/4 of the
    # bytes the waiting writer's last fill wrote, then every read until it is refilled;
    # the count restarts only when this handle sees that same writer refilled.

    class StandInLoop:
        writers = {5}
        followers: set[int] = set()

        def __init__(self) -> None:
            self.fills = {5: (100_000, 1)}
            self.served_at: set[int] = set()
            self.calls: list[int] = []

        def pump(self) -> int:
            self.calls.append(read)
            if read in self.served_at:  # the writer's refill
                self.fills = {5: (100_000, self.fills[5][1] + 1)}
                return 1
            return 0

    loop = StandInLoop()
    loop.served_at = {112_000}
    wiring = _debug_only_wiring(loop)
    read = 0

    def reads(count: int) -> list[int]:
        nonlocal read
        before = len(loop.calls)
        for _ in range(count):
            read += 16_000
            wiring._debug(pycurl.INFOTYPE_DATA_IN, b"x" * 16_000)
        return loop.calls[before:]

    # 80,000 >= 75,000: every read pumps until the refill at 112,000; 80,000 more after it.
    assert reads(16) == [80_000, 96_000, 112_000, 192_000, 208_000, 224_000, 240_000, 256_000]
    loop.fills = {5: (100_000, 7)}  # refilled by another thread, or the loop thread
    assert reads(4) == []  # the count restarted at the next read
    loop.fills = {5: (100_000, 7), 6: (50_000, 8)}  # two writers wait: every read pumps
    assert len(reads(2)) == 2
    # One writer again, not refilled since: the count goes on (it only restarts on a
    # refill this handle saw), so the read that empties the socket still pumps.
    loop.fills = {5: (100_000, 7)}
    assert len(reads(1)) == 1
    loop.followers = {7}  # an HTTP/2 server waiting on flow control: every read pumps
    loop.fills = {}
    assert len(reads(1)) == 1


@pytest.mark.parametrize(
    ("port", "url", "use"),
    [
        (80, "https://api.test:80/x?q=1", "http://api.test:80/x?q=1"),
        (8080, "https://api.test:8080/x?q=1", "http://api.test:8080/x?q=1"),
        (443, "https://api.test/x?q=1", "http://api.test:443/x?q=1"),  # not port 80
    ],
)
def test_https_to_a_plain_http_endpoint_names_the_tls_handshake(
    port: int, url: str, use: str
) -> None:
    # The reverse mistake of the tests above: libcurl's ClientHello reaches h11, which
    # cannot parse it (35 for the client); the report says what it was and what to use.
    from curlfault import MalformedRequest

    with FakeNetwork() as net, net.intercept():
        net.http("api.test", port).get("/x").respond(200, body=BODY)
        assert transfer(url).code == pycurl.E_SSL_CONNECT_ERROR
        with pytest.raises(MalformedRequest) as info:
            net.check()
    first = str(info.value).splitlines()[0]
    assert "it was a TLS handshake: the client used https:// for this plain-HTTP endpoint" in first
    declared = "" if port == 443 else f", {port}"
    assert f"use {use} (not {url}), or declare net.https('api.test'{declared})" in first


@pytest.mark.parametrize("blank_line_inside", [False, True, "with a quote"])
def test_a_client_hello_is_recognised_however_h11_fails_on_it(blank_line_inside: object) -> None:
    # A ClientHello's random bytes sometimes hold CR LF CR LF: h11 then takes them as a
    # request's lines and names the bytes in its error, instead of keeping them unparsed.
    # Both must be told apart from other garbage (this was a flaky test before).
    import h11

    from curlfault.protocols.http1 import _tls_record

    hello = b"\x16\x03\x01\x06\x00\x01\x00\x05\xfc\x03\x03" + b"r" * 100
    if blank_line_inside == "with a quote":
        hello += b"'"  # repr() then quotes the bytes with "
    data = hello + (b"\r\n\r\n" + b"x" * 50 if blank_line_inside else b"")
    for payload, expected in ((data, True), (b"\x00garbage \x01\r\n\r\n", False)):
        h = h11.Connection(h11.SERVER)
        h.receive_data(payload)
        with pytest.raises(h11.RemoteProtocolError) as info:
            h.next_event()
        assert _tls_record(h, info.value) is expected
