import io

import pycurl
import pytest
import trustme


def get(url, **options):
    """GET ``url``; return (CURLcode, body)."""
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
        return exc.args[0], b""
    finally:
        curl.close()
    return 0, body.getvalue()


# --8<-- [start:https]
def test_https_fake(curlfault):
    api = curlfault.https("secure.test")  # port 443, certificate signed by curlfault.ca
    api.get("/").respond(200, body="hello over TLS")

    # Routed handles trust curlfault.ca, and verify the peer as usual.
    assert get("https://secure.test/") == (0, b"hello over TLS")
    assert api.requests[0].scheme == "https"


# --8<-- [end:https]


# --8<-- [start:untrusted]
@pytest.mark.curlfault(trust=False)
def test_an_untrusted_certificate_fails_verification(curlfault):
    curlfault.https("secure.test").get("/").respond(200)

    code, _ = get("https://secure.test/")
    assert code == pycurl.E_PEER_FAILED_VERIFICATION  # 60


# --8<-- [end:untrusted]


# --8<-- [start:own-ca-file]
def test_a_client_that_reads_its_own_ca_file(curlfault, curlfault_ca, tmp_path):
    curlfault.https("secure.test").get("/").respond(200, body="trusted")
    ca_file = tmp_path / "ca.pem"
    curlfault_ca.cert_pem.write_to_path(str(ca_file))

    # The client sets CAINFO itself, so curlfault stops supplying its CA to this handle.
    assert get("https://secure.test/", CAINFO=str(ca_file)) == (0, b"trusted")


def test_a_client_that_trusts_another_ca(curlfault, tmp_path):
    curlfault.https("secure.test").get("/").respond(200)
    other_ca_file = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca_file))

    code, _ = get("https://secure.test/", CAINFO=str(other_ca_file))
    assert code == pycurl.E_PEER_FAILED_VERIFICATION


# --8<-- [end:own-ca-file]
