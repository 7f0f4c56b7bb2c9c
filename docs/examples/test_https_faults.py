import io

import pycurl
import pytest

from curlfault import faults


# --8<-- [start:helper]
def get(url, curl=None, **options):
    """GET ``url`` (on ``curl`` if given); return (CURLcode, body)."""
    handle = curl or pycurl.Curl()
    body = io.BytesIO()
    handle.setopt(pycurl.URL, url)
    handle.setopt(pycurl.WRITEDATA, body)
    handle.setopt(pycurl.TIMEOUT, 10)
    for option, value in options.items():
        handle.setopt(getattr(pycurl, option), value)
    try:
        handle.perform()
    except pycurl.error as exc:
        return exc.args[0], b""
    finally:
        if curl is None:
            handle.close()
    return 0, body.getvalue()


# --8<-- [end:helper]


# --8<-- [start:records]
def test_what_each_connection_records(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200, body="hi")

    assert get("https://secure.test/", SSLVERSION=pycurl.SSLVERSION_MAX_TLSv1_2) == (0, b"hi")
    tls = api.connections[0].tls
    assert tls["sni"] == "secure.test"  # read from the ClientHello
    assert tls["alpn_offered"] == ["h2", "http/1.1"]  # what libcurl offered
    assert tls["alpn"] == "http/1.1"  # what was negotiated
    assert tls["version"] == "TLSv1.2"
    assert tls["cipher"].startswith("ECDHE-")


# --8<-- [end:records]


# --8<-- [start:retry]
def test_the_first_connection_meets_an_expired_certificate(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200, body="fresh")
    api.connection_faults(faults.expired_cert(), None)  # the 1st connection, then healthy

    assert get("https://secure.test/") == (pycurl.E_PEER_FAILED_VERIFICATION, b"")  # 60
    assert get("https://secure.test/") == (0, b"fresh")


# --8<-- [end:retry]


# --8<-- [start:certificates]
@pytest.mark.parametrize(
    "fault",
    [
        faults.untrusted_ca(),  # signed by a CA the client does not trust
        faults.hostname_mismatch(),  # issued for wrong.curlfault.invalid
        faults.expired_cert(),  # expired yesterday
        faults.not_yet_valid_cert(),  # valid from tomorrow
    ],
)
def test_certificate_faults(curlfault, fault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200)
    api.connection_faults(fault)

    assert get("https://secure.test/")[0] == 60  # PEER_FAILED_VERIFICATION
    assert api.requests == []  # the request was never sent


# --8<-- [end:certificates]


# --8<-- [start:pinning]
def test_pinned_key_mismatch(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200, body="pinned")
    api.connection_faults(None, faults.pinned_key_mismatch(), faults.pinned_key_mismatch())

    # endpoint.pin is the sha256// pin of the key the endpoint serves.
    assert get("https://secure.test/", PINNEDPUBLICKEY=api.pin) == (0, b"pinned")
    # The next certificate is valid but carries another key.
    code, _ = get("https://secure.test/", PINNEDPUBLICKEY=api.pin)
    assert code == pycurl.E_SSL_PINNEDPUBKEYNOTMATCH  # 90
    # A client that pins nothing does not notice.
    assert get("https://secure.test/") == (0, b"pinned")


# --8<-- [end:pinning]


# --8<-- [start:version]
def test_a_server_that_only_speaks_an_old_tls_version(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200)
    api.connection_faults(faults.tls_version("TLSv1.1"), faults.tls_version("TLSv1.2"))

    # libcurl refuses TLS 1.0 and 1.1 unless told otherwise.
    assert get("https://secure.test/")[0] == pycurl.E_SSL_CONNECT_ERROR  # 35
    # TLS 1.2 is fine for a default client, not for one that demands TLS 1.3.
    code, _ = get("https://secure.test/", SSLVERSION=pycurl.SSLVERSION_TLSv1_3)
    assert code == 35


# --8<-- [end:version]


# --8<-- [start:handshake]
@pytest.mark.parametrize("fault", [faults.handshake_close(), faults.handshake_reset()])
def test_the_server_drops_the_handshake(curlfault, fault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200)
    api.connection_faults(fault)

    assert get("https://secure.test/")[0] == 35  # SSL_CONNECT_ERROR, FIN or RST alike
    assert api.connections[0].tls["sni"] == "secure.test"  # the ClientHello was read


# --8<-- [end:handshake]


# --8<-- [start:alert]
def test_a_fatal_alert(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200)
    api.connection_faults(faults.tls_alert("internal_error"), faults.alpn_mismatch())

    assert get("https://secure.test/")[0] == 35  # alert 80, internal_error
    assert get("https://secure.test/")[0] == 35  # alert 120, no_application_protocol


# --8<-- [end:alert]


# --8<-- [start:close-notify]
def test_a_close_without_close_notify(curlfault):
    api = curlfault.https("secure.test")
    api.get("/").respond(200, body=b"x" * 1000, fault=faults.close(after_bytes=500))
    api.connection_faults(None, faults.no_close_notify())

    assert get("https://secure.test/")[0] == 18  # close_notify, then FIN: PARTIAL_FILE
    assert get("https://secure.test/")[0] == 56  # a bare FIN: RECV_ERROR, "unexpected eof"


# --8<-- [end:close-notify]


# --8<-- [start:mtls]
def test_mutual_tls(curlfault):
    api = curlfault.https("secure.test", client_cert="required")
    api.get("/").respond(200, body="hello, robot")

    curl = pycurl.Curl()
    curlfault.client_cert("robot.test").setopt(curl)  # issued by curlfault.ca
    try:
        assert get("https://secure.test/", curl=curl) == (0, b"hello, robot")
    finally:
        curl.close()
    assert api.connections[0].tls["client_cert"] == "robot.test"

    # Without a certificate: TLS 1.3 clients learn it when they read the response (56),
    # TLS 1.2 clients inside the handshake (35).
    assert get("https://secure.test/")[0] == pycurl.E_RECV_ERROR
    code, _ = get("https://secure.test/", SSLVERSION=pycurl.SSLVERSION_MAX_TLSv1_2)
    assert code == pycurl.E_SSL_CONNECT_ERROR


# --8<-- [end:mtls]


# --8<-- [start:settings]
def test_endpoint_tls_settings(curlfault):
    api = curlfault.https("secure.test", tls_versions=("TLSv1.2", "TLSv1.2"), alpn=())
    api.get("/").respond(200)

    assert get("https://secure.test/")[0] == 0
    assert api.connections[0].tls["version"] == "TLSv1.2"
    assert api.connections[0].tls["alpn"] is None  # the server offers no ALPN


# --8<-- [end:settings]
