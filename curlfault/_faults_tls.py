"""TLS faults: part of the public ``curlfault.faults`` namespace (re-exported there).

Every TLS fault is a connection fault of an HTTPS endpoint: give it to
``endpoint.connection_faults(...)`` and the n-th connection meets it, so "the first
connection meets an expired certificate, the retry succeeds" is one line. Declaring one on
a plain ``net.http`` endpoint is a ``UsageError``. Each docstring names the CURLcode
measured with pycurl 7.49 / libcurl 8.23 / OpenSSL 3.6 (``curlfault matrix`` proves it).

Three families:

- certificate faults: the server presents another certificate (``untrusted_ca``,
  ``hostname_mismatch``, ``expired_cert``, ``not_yet_valid_cert``, ``pinned_key_mismatch``);
- handshake faults: the server reads the ClientHello, then stops (``handshake_close``,
  ``handshake_reset``), answers a fatal alert (``tls_alert``, ``alpn_mismatch``), or only
  speaks a TLS version the client refuses (``tls_version``);
- ``no_close_notify``: the server ends the connection with a bare FIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._errors import UsageError
from .faults import ConnectionFault

if TYPE_CHECKING:
    from ._endpoints import Endpoint

__all__: list[str] = [
    "ALERTS",
    "TLS_VERSIONS",
    "AlpnMismatch",
    "CertFault",
    "ExpiredCert",
    "HandshakeClose",
    "HandshakeReset",
    "HostnameMismatch",
    "NoCloseNotify",
    "NotYetValidCert",
    "PinnedKeyMismatch",
    "TlsAlert",
    "TlsFault",
    "TlsVersion",
    "UntrustedCa",
    "alpn_mismatch",
    "expired_cert",
    "handshake_close",
    "handshake_reset",
    "hostname_mismatch",
    "no_close_notify",
    "not_yet_valid_cert",
    "pinned_key_mismatch",
    "tls_alert",
    "tls_version",
    "untrusted_ca",
]

# The fatal alerts ``tls_alert`` can send (RFC 8446 section 6 names and codes).
ALERTS = {
    "unexpected_message": 10,
    "bad_record_mac": 20,
    "handshake_failure": 40,
    "bad_certificate": 42,
    "unsupported_certificate": 43,
    "certificate_revoked": 44,
    "certificate_expired": 45,
    "certificate_unknown": 46,
    "illegal_parameter": 47,
    "unknown_ca": 48,
    "access_denied": 49,
    "decode_error": 50,
    "decrypt_error": 51,
    "protocol_version": 70,
    "insufficient_security": 71,
    "internal_error": 80,
    "inappropriate_fallback": 86,
    "missing_extension": 109,
    "unsupported_extension": 110,
    "unrecognized_name": 112,
    "certificate_required": 116,
    "no_application_protocol": 120,
}
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


@dataclass(frozen=True, repr=False)
class TlsFault(ConnectionFault):
    """A connection fault of the TLS layer; only an HTTPS endpoint takes one."""

    # True when the fault needs a real TCP pair (an RST), whatever the transport.
    needs_tcp: ClassVar[bool] = False

    def check_endpoint(self, endpoint: Endpoint) -> None:
        """Raise ``UsageError`` unless ``endpoint`` serves TLS (called at declaration)."""
        tls = getattr(endpoint, "tls", None)
        if tls is None and endpoint.refuses:
            raise UsageError(
                f"{self!r} is a TLS fault, but {endpoint!r} refuses every connection, so no "
                f"TLS handshake ever starts; declare the host with "
                f"{endpoint.network.spelled}.https({endpoint.host!r}) instead of "
                f"{endpoint.network.spelled}.refuse() to give it TLS faults"
            )
        if tls is None:
            raise UsageError(
                f"{self!r} is a TLS fault, but {endpoint!r} serves plain HTTP; declare the "
                f"host with {endpoint.network.spelled}.https({endpoint.host!r}) to give it TLS "
                "faults"
            )
        tls.context_for(self)  # made now, in the declaring thread, not inside perform()


@dataclass(frozen=True, repr=False)
class CertFault(TlsFault):
    """The server presents another certificate than the endpoint's good one."""


@dataclass(frozen=True, repr=False)
class UntrustedCa(CertFault):
    """A certificate for the right host, signed by a CA the client does not trust.

    libcurl rejects the chain: 60 (``PEER_FAILED_VERIFICATION``).
    """

    curlcode: ClassVar[int] = 60
    name: ClassVar[str] = "untrusted_ca"


@dataclass(frozen=True, repr=False)
class HostnameMismatch(CertFault):
    """A certificate from the trusted CA, issued for another name (``wrong.curlfault.invalid``).

    60 (``PEER_FAILED_VERIFICATION``); 0 with ``SSL_VERIFYHOST=0``.
    """

    curlcode: ClassVar[int] = 60
    name: ClassVar[str] = "hostname_mismatch"


@dataclass(frozen=True, repr=False)
class ExpiredCert(CertFault):
    """A certificate from the trusted CA for the right host, expired yesterday: 60."""

    curlcode: ClassVar[int] = 60
    name: ClassVar[str] = "expired_cert"


@dataclass(frozen=True, repr=False)
class NotYetValidCert(CertFault):
    """A certificate from the trusted CA for the right host, valid from tomorrow: 60."""

    curlcode: ClassVar[int] = 60
    name: ClassVar[str] = "not_yet_valid_cert"


@dataclass(frozen=True, repr=False)
class PinnedKeyMismatch(CertFault):
    """A valid certificate for the right host from the trusted CA, with another key.

    A client that pins the endpoint's key (``PINNEDPUBLICKEY=endpoint.pin``) fails with 90
    (``SSL_PINNEDPUBKEYNOTMATCH``); a client that pins nothing succeeds (0).
    """

    curlcode: ClassVar[int] = 90
    name: ClassVar[str] = "pinned_key_mismatch"


@dataclass(frozen=True, repr=False)
class TlsVersion(TlsFault):
    """The server speaks only ``version`` ("TLSv1", "TLSv1.1", "TLSv1.2" or "TLSv1.3").

    A client that refuses that version fails the handshake with 35 (``SSL_CONNECT_ERROR``):
    libcurl 8.23 refuses TLS 1.0 and 1.1 by default, so the default ``"TLSv1.1"`` fails any
    default client; ``"TLSv1.2"`` fails a client that sets ``SSLVERSION`` to TLS 1.3.
    """

    version: str = "TLSv1.1"
    curlcode: ClassVar[int] = 35
    name: ClassVar[str] = "tls_version"

    def __post_init__(self) -> None:
        if self.version not in TLS_VERSIONS:
            raise UsageError(
                f"tls_version({self.version!r}): not a TLS version; use one of "
                f"{', '.join(map(repr, TLS_VERSIONS))}"
            )


@dataclass(frozen=True, repr=False)
class HandshakeClose(TlsFault):
    """The server reads the whole ClientHello, then sends FIN without a byte: 35."""

    curlcode: ClassVar[int] = 35
    name: ClassVar[str] = "handshake_close"


@dataclass(frozen=True, repr=False)
class HandshakeReset(TlsFault):
    """The server reads the whole ClientHello, then sends RST: 35.

    An RST needs TCP: an endpoint with this fault serves every connection over a loopback
    TCP pair, whatever transport it was given.
    """

    curlcode: ClassVar[int] = 35
    name: ClassVar[str] = "handshake_reset"
    needs_tcp: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class TlsAlert(TlsFault):
    """The server reads the ClientHello and answers a fatal alert ``description``: 35.

    The alert is a well-formed plaintext TLS alert record (level fatal), written by
    curlfault on the connection where the ServerHello would be, as a server that rejects
    the ClientHello does. ``description`` is a name from ``faults.ALERTS`` or its code.
    libcurl 8.23 maps two alerts to codes of their own: ``certificate_required`` (116) to
    98 (``SSL_CLIENTCERT``) and ``certificate_expired`` (45) to 60
    (``PEER_FAILED_VERIFICATION``); ``curlcode`` is the 35 of every other alert.
    """

    description: str | int = "handshake_failure"
    curlcode: ClassVar[int] = 35
    name: ClassVar[str] = "tls_alert"

    def __post_init__(self) -> None:
        d = self.description
        if isinstance(d, bool) or not (
            (isinstance(d, str) and d in ALERTS) or (isinstance(d, int) and 0 <= d <= 255)
        ):
            raise UsageError(
                f"tls_alert({d!r}): use an alert name from faults.ALERTS "
                f"(e.g. 'handshake_failure') or a code from 0 to 255"
            )

    @property
    def code(self) -> int:
        """The alert's description code."""
        d = self.description
        return ALERTS[d] if isinstance(d, str) else d


@dataclass(frozen=True, repr=False)
class AlpnMismatch(TlsFault):
    """The server speaks none of the protocols the client offers by ALPN.

    As RFC 7301 requires, it answers the ClientHello with the fatal alert
    ``no_application_protocol`` (120): 35. A client that offers no ALPN at all
    (``SSL_ENABLE_ALPN=0``) cannot mismatch: its handshake goes on and succeeds (0). A server
    that instead *selects* a protocol the client did not offer cannot be produced with
    Python's ``ssl``, and is not modelled.
    """

    curlcode: ClassVar[int] = 35
    name: ClassVar[str] = "alpn_mismatch"
    code: ClassVar[int] = ALERTS["no_application_protocol"]


@dataclass(frozen=True, repr=False)
class NoCloseNotify(TlsFault):
    """When the server ends this connection, it sends FIN without a TLS ``close_notify``.

    A complete response (``Connection: close`` with a Content-Length) still succeeds: 0.
    A response cut by ``close(...)`` mid-body gives 56 (``RECV_ERROR``, OpenSSL's
    "unexpected eof") instead of the 18 a clean TLS close gives.
    """

    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "no_close_notify"


def untrusted_ca() -> UntrustedCa:
    """A certificate signed by a CA the client does not trust (CURLcode 60)."""
    return UntrustedCa()


def hostname_mismatch() -> HostnameMismatch:
    """A certificate for another host name (CURLcode 60)."""
    return HostnameMismatch()


def expired_cert() -> ExpiredCert:
    """An expired certificate (CURLcode 60)."""
    return ExpiredCert()


def not_yet_valid_cert() -> NotYetValidCert:
    """A certificate that is not valid yet (CURLcode 60)."""
    return NotYetValidCert()


def pinned_key_mismatch() -> PinnedKeyMismatch:
    """A valid certificate with another key (90 with PINNEDPUBLICKEY=endpoint.pin)."""
    return PinnedKeyMismatch()


def tls_version(version: str = "TLSv1.1") -> TlsVersion:
    """The server speaks only ``version`` (35 when the client refuses it)."""
    return TlsVersion(version=version)


def handshake_close() -> HandshakeClose:
    """FIN right after the ClientHello (CURLcode 35)."""
    return HandshakeClose()


def handshake_reset() -> HandshakeReset:
    """RST right after the ClientHello, over TCP (CURLcode 35)."""
    return HandshakeReset()


def tls_alert(description: str | int = "handshake_failure") -> TlsAlert:
    """A fatal TLS alert in answer to the ClientHello (CURLcode 35)."""
    return TlsAlert(description=description)


def alpn_mismatch() -> AlpnMismatch:
    """The server speaks no protocol the client offers: alert 120 (CURLcode 35)."""
    return AlpnMismatch()


def no_close_notify() -> NoCloseNotify:
    """The server closes with a bare FIN, no close_notify (0 whole, 56 cut mid-body)."""
    return NoCloseNotify()
