"""TLS rows of the fault matrix (appended to ``curlfault._matrix.CASES``).

Every row fetches ``https://tls.matrix.test/`` on a fresh handle that trusts the network's
CA (the routing gives it ``CAINFO_BLOB``). Rows that need a value only the network knows
(the endpoint's key pin, a client certificate its CA issued) pass it from their setup to
their transfer.
"""

from __future__ import annotations

from typing import Any

import pycurl

from . import faults
from ._matrix import BODY, MID_BODY, Case, Setup, Transfer
from ._network import FakeNetwork

__all__ = ["CASES", "https_endpoint"]

HOST = "tls.matrix.test"
URL = f"https://{HOST}/"
TLS13 = (("SSLVERSION", pycurl.SSLVERSION_TLSv1_3),)
TLS12 = (("SSLVERSION", pycurl.SSLVERSION_MAX_TLSv1_2),)
CLOSE = {"Connection": "close"}


def https_endpoint(
    *connection_faults: faults.ConnectionFault | None,
    fault: faults.StreamFault | None = None,
    headers: dict[str, str] | None = None,
    seen: dict[str, Any] | None = None,
    **https: Any,
) -> Setup:
    """A setup that answers ``GET /`` over TLS, its connections meeting ``connection_faults``.

    ``seen`` (if given) receives the endpoint's ``pin`` and a client certificate.
    """

    def setup(net: FakeNetwork, transport: str) -> None:
        endpoint = net.https(HOST, transport=transport, **https)
        if connection_faults:
            endpoint.connection_faults(*connection_faults)
        endpoint.get("/").respond(200, body=BODY, headers=headers, fault=fault)
        if seen is not None:
            seen["pin"] = endpoint.pin
            seen["cert"] = net.client_cert()

    return setup


def _with(seen: dict[str, Any], what: str) -> Transfer:
    """A transfer that adds the pin or the client certificate ``seen`` holds."""

    def transfer(
        url: str, timeout: float, options: tuple[tuple[str, Any], ...]
    ) -> tuple[int | None, str, float]:
        from ._matrix import _transfer

        if what == "pin":
            extra: tuple[tuple[str, Any], ...] = (("PINNEDPUBLICKEY", seen["pin"]),)
        else:
            cert = seen["cert"]
            extra = (
                ("SSLCERT_BLOB", cert.cert_pem),
                ("SSLCERTTYPE", "PEM"),
                ("SSLKEY_BLOB", cert.key_pem),
                ("SSLKEYTYPE", "PEM"),
            )
        return _transfer(url, timeout, (*options, *extra))

    return transfer


def _passing(
    label: str,
    what: str,
    expected: int,
    *connection_faults: faults.ConnectionFault | None,
    **https: Any,
) -> Case:
    """A case whose transfer adds what its own setup saw (``what``: "pin" or "cert")."""
    seen: dict[str, Any] = {}  # this case's alone, from its setup to its transfer
    return Case(
        label,
        https_endpoint(*connection_faults, seen=seen, **https),
        URL,
        expected,
        transfer=_with(seen, what),
    )


AFTER_HELLO = "the server reads the whole ClientHello first"

CASES: tuple[Case, ...] = (
    Case("https: no fault (control GET)", https_endpoint(), URL, 0),
    *(
        Case(f"{f!r}", https_endpoint(f), URL, f.curlcode)
        for f in (
            faults.untrusted_ca(),
            faults.hostname_mismatch(),
            faults.expired_cert(),
            faults.not_yet_valid_cert(),
        )
    ),
    _passing(
        f"{faults.pinned_key_mismatch()!r} with PINNEDPUBLICKEY=endpoint.pin",
        "pin",
        90,
        faults.pinned_key_mismatch(),
    ),
    Case(
        f"{faults.pinned_key_mismatch()!r} without pinning",
        https_endpoint(faults.pinned_key_mismatch()),
        URL,
        0,
        note="the certificate is valid: only a client that pins the key notices",
    ),
    Case(
        f"{faults.tls_version()!r}",
        https_endpoint(faults.tls_version()),
        URL,
        35,
        note="libcurl refuses TLS < 1.2 by default; its OpenSSL sends protocol_version",
    ),
    Case(
        f"{faults.tls_version('TLSv1.2')!r} to a TLS 1.3-only client",
        https_endpoint(faults.tls_version("TLSv1.2")),
        URL,
        35,
        options=TLS13,
    ),
    Case(
        f"{faults.handshake_close()!r}",
        https_endpoint(faults.handshake_close()),
        URL,
        35,
        note=AFTER_HELLO,
    ),
    Case(
        f"{faults.handshake_reset()!r}",
        https_endpoint(faults.handshake_reset()),
        URL,
        35,
        note=f"{AFTER_HELLO}; RST needs TCP: served over a loopback TCP pair on every transport",
    ),
    Case(
        f"{faults.tls_alert()!r}",
        https_endpoint(faults.tls_alert()),
        URL,
        35,
        note="a plaintext fatal alert record in place of the ServerHello",
    ),
    Case(
        f"{faults.tls_alert('certificate_required')!r}",
        https_endpoint(faults.tls_alert("certificate_required")),
        URL,
        98,
        note="libcurl names this alert: SSL_CLIENTCERT, not 35",
    ),
    Case(
        f"{faults.tls_alert('certificate_expired')!r}",
        https_endpoint(faults.tls_alert("certificate_expired")),
        URL,
        60,
        note="libcurl names this alert: PEER_FAILED_VERIFICATION, not 35",
    ),
    Case(
        f"{faults.alpn_mismatch()!r}",
        https_endpoint(faults.alpn_mismatch()),
        URL,
        35,
        note="fatal alert no_application_protocol (120), as RFC 7301 says",
    ),
    Case(
        f"{faults.no_close_notify()!r}, complete response then close",
        https_endpoint(faults.no_close_notify(), headers=CLOSE),
        URL,
        0,
        note="the Content-Length is met before the bare FIN",
    ),
    Case(
        f"{faults.no_close_notify()!r} + {faults.close(MID_BODY)!r}",
        https_endpoint(faults.no_close_notify(), fault=faults.close(MID_BODY)),
        URL,
        56,
        note="OpenSSL: unexpected eof; with close_notify the same cut gives 18",
    ),
    Case(
        f"https: {faults.close(MID_BODY)!r} (close_notify, then FIN)",
        https_endpoint(fault=faults.close(MID_BODY)),
        URL,
        18,
    ),
    Case(
        'client_cert="required", no client certificate, TLS 1.3',
        https_endpoint(client_cert="required"),
        URL,
        56,
        note="TLS 1.3: the server's certificate_required alert arrives after the handshake",
    ),
    Case(
        'client_cert="required", no client certificate, TLS 1.3, HTTP/2',
        https_endpoint(client_cert="required", http2=True),
        URL,
        55,
        note="over HTTP/2 the alert meets libcurl's preface and SETTINGS being written",
    ),
    Case(
        'client_cert="required", no client certificate, TLS 1.2',
        https_endpoint(client_cert="required"),
        URL,
        35,
        options=TLS12,
    ),
    _passing('client_cert="required" with net.client_cert()', "cert", 0, client_cert="required"),
)
