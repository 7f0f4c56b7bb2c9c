"""TLS for fake endpoints: an ``ssl.SSLObject`` over memory BIOs, driven by the loop.

The layer sits between the channel (ciphertext) and a protocol (plaintext) and offers the
protocol the same write/finish/abort interface as the channel, so HTTP code does not know
whether it runs over TLS. Certificates come from the network's trustme CA.

A connection whose fault is a TLS fault (``curlfault._faults_tls``) gets a server context
of its own (another certificate, one TLS version), or is never handed to OpenSSL at all:
the layer reads the ClientHello records itself and then stops, resets or answers a fatal
alert record. SNI and the offered ALPN list are read from the ClientHello either way.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import ssl
import struct
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import MalformedRequest, UsageError
from ._faults_tls import (
    AlpnMismatch,
    CertFault,
    ExpiredCert,
    HandshakeClose,
    HandshakeReset,
    HostnameMismatch,
    NoCloseNotify,
    NotYetValidCert,
    TlsAlert,
    TlsFault,
    TlsVersion,
    UntrustedCa,
)

if TYPE_CHECKING:
    import pycurl

    from ._network import Connection
    from ._transports import Channel, StreamProtocol

__all__ = ["CLIENT_CERT_MODES", "ClientCert", "TlsLayer", "TlsServerConfig", "parse_client_hello"]

CLIENT_CERT_MODES = ("optional", "required")
_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ALLOWS_TLS13 = (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
WRONG_HOST = "wrong.curlfault.invalid"


def _pin(cert_pem: bytes) -> str:
    """libcurl's ``PINNEDPUBLICKEY`` form of a certificate's key: ``sha256//<base64>``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and key (PEM) that a network's CA issued, for mutual TLS.

    ``net.client_cert()`` makes one; ``setopt(curl)`` gives it to a pycurl handle with the
    ``SSLCERT_BLOB``/``SSLKEY_BLOB`` options (no file is written).
    """

    name: str
    cert_pem: bytes
    key_pem: bytes

    def setopt(self, curl: pycurl.Curl) -> None:
        """Make ``curl`` present this certificate when a server asks for one."""
        import pycurl

        curl.setopt(pycurl.SSLCERT_BLOB, self.cert_pem)
        curl.setopt(pycurl.SSLCERTTYPE, "PEM")
        curl.setopt(pycurl.SSLKEY_BLOB, self.key_pem)
        curl.setopt(pycurl.SSLKEYTYPE, "PEM")

    @classmethod
    def issue(cls, ca: Any, name: str) -> ClientCert:
        leaf = ca.issue_cert(name)
        return cls(name, leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())


@dataclass
class TlsServerConfig:
    """How an HTTPS endpoint serves TLS; server contexts for faulted connections are made
    (and kept) on first use."""

    context: ssl.SSLContext
    ca: Any = None
    host: str = ""
    alpn: tuple[str, ...] = ("http/1.1",)
    client_cert: str | None = None
    versions: tuple[str | None, str | None] = (None, None)
    pin: str = ""  # sha256//... of the key the endpoint's good certificate has
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_host(
        cls,
        ca: Any,
        host: str,
        alpn: tuple[str, ...] = ("http/1.1",),
        *,
        client_cert: str | None = None,
        versions: tuple[str | None, str | None] = (None, None),
    ) -> TlsServerConfig:
        if client_cert is not None and client_cert not in CLIENT_CERT_MODES:
            raise UsageError(
                f"client_cert={client_cert!r} is not known; use one of "
                f"{', '.join(map(repr, CLIENT_CERT_MODES))}, or None for no client certificate"
            )
        if not isinstance(versions, tuple) or len(versions) != 2:
            raise UsageError(
                f"tls_versions={versions!r}: give a (min, max) pair such as "
                "('TLSv1.2', None); None leaves that end unbounded"
            )
        if isinstance(alpn, str) or not all(isinstance(p, str) and p for p in alpn):
            raise UsageError(f"alpn={alpn!r}: give a tuple of protocol names such as ('http/1.1',)")
        for v in versions:
            if v is not None and v not in _VERSIONS:
                raise UsageError(
                    f"tls_versions: {v!r} is not a TLS version; use (min, max) from "
                    f"{', '.join(map(repr, _VERSIONS))}, or None for no bound"
                )
        low, high = versions
        if low is not None and high is not None and _VERSIONS[low] > _VERSIONS[high]:
            raise UsageError(
                f"tls_versions={versions!r}: the minimum {low!r} is above the maximum "
                f"{high!r}, so no version could be served; give (min, max) in that order, "
                f"such as {(high, low)!r}"
            )
        leaf = ca.issue_cert(host)
        config = cls(
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
            ca=ca,
            host=host,
            alpn=tuple(alpn),
            client_cert=client_cert,
            versions=versions,
            pin=_pin(leaf.cert_chain_pems[0].bytes()),
        )
        config._setup(config.context, leaf, versions)
        return config

    def _setup(
        self, ctx: ssl.SSLContext, leaf: Any, versions: tuple[str | None, str | None]
    ) -> None:
        leaf.configure_cert(ctx)
        low, high = versions
        with warnings.catch_warnings():
            # TLS 1.0 and 1.1 are deprecated: serving them on purpose is the fault.
            warnings.simplefilter("ignore", DeprecationWarning)
            if low is not None:
                ctx.minimum_version = _VERSIONS[low]
            if high is not None:
                ctx.maximum_version = _VERSIONS[high]
        if (low or high) in ("TLSv1", "TLSv1.1"):
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS < 1.2 only so
        if self.alpn:
            ctx.set_alpn_protocols(list(self.alpn))
        if self.client_cert is not None:
            ctx.verify_mode = (
                ssl.CERT_REQUIRED if self.client_cert == "required" else ssl.CERT_OPTIONAL
            )
            ctx.load_verify_locations(cadata=self.ca.cert_pem.bytes().decode("ascii"))

    def context_for(self, fault: TlsFault | None) -> ssl.SSLContext:
        """The server context a connection with ``fault`` is served with."""
        if not isinstance(fault, (CertFault, TlsVersion)) or self.ca is None:
            return self.context
        key = repr(fault)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                versions = self.versions
                if isinstance(fault, TlsVersion):
                    versions = (fault.version, fault.version)
                self._setup(ctx, self._leaf_for(fault), versions)
                self._contexts[key] = ctx
        return ctx

    def _leaf_for(self, fault: TlsFault) -> Any:
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        if isinstance(fault, UntrustedCa):
            import trustme

            return trustme.CA().issue_cert(self.host)
        if isinstance(fault, HostnameMismatch):
            return self.ca.issue_cert(WRONG_HOST)
        if isinstance(fault, ExpiredCert):
            return self.ca.issue_cert(self.host, not_before=now - 30 * day, not_after=now - day)
        if isinstance(fault, NotYetValidCert):
            return self.ca.issue_cert(self.host, not_before=now + day, not_after=now + 30 * day)
        # PinnedKeyMismatch (and any other fault): the same name and CA, a fresh key.
        return self.ca.issue_cert(self.host)


# The start of an HTTP/1 request line ("DELETE /x", a method and the target's first byte;
# the rest may come in a later read): a TLS record starts with a content type byte (20-24),
# never a character of a method.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]")


def parse_client_hello(data: bytes) -> dict[str, Any] | None:
    """SNI and ALPN offered by the ClientHello at the start of ``data``, once it is whole.

    Returns None while more records are needed; ``{"error": ...}`` for bytes that are not a
    ClientHello.
    """
    body = bytearray()
    pos = 0
    while True:
        if len(data) < pos + 5:
            return None
        kind, length = data[pos], struct.unpack("!H", data[pos + 3 : pos + 5])[0]
        if kind != 22:
            return {"error": f"record type {kind}, not a handshake"}
        if len(data) < pos + 5 + length:
            return None
        body += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(body) >= 4:
            if body[0] != 1:
                return {"error": f"handshake message {body[0]}, not a ClientHello"}
            if len(body) >= 4 + int.from_bytes(body[1:4], "big"):
                break
    return _hello_fields(bytes(body[4 : 4 + int.from_bytes(body[1:4], "big")]))


def _hello_fields(hello: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sni": None, "alpn_offered": [], "tls13_offered": False}
    try:
        p = 34  # legacy_version (2) + random (32)
        p += 1 + hello[p]  # session id
        p += 2 + struct.unpack("!H", hello[p : p + 2])[0]  # cipher suites
        p += 1 + hello[p]  # compression methods
        end = p + 2 + struct.unpack("!H", hello[p : p + 2])[0]
        p += 2
        while p + 4 <= end:
            ext, size = struct.unpack("!HH", hello[p : p + 4])
            value = hello[p + 4 : p + 4 + size]
            p += 4 + size
            if ext == 0 and len(value) > 5:  # server_name: list, type 0 (host_name), name
                n = struct.unpack("!H", value[3:5])[0]
                out["sni"] = value[5 : 5 + n].decode("ascii", "replace")
            elif ext == 16:  # application_layer_protocol_negotiation
                q = 2
                while q < len(value):
                    n = value[q]
                    out["alpn_offered"].append(value[q + 1 : q + 1 + n].decode("ascii", "replace"))
                    q += 1 + n
            elif ext == 43:  # supported_versions: a length byte, then two bytes each
                out["tls13_offered"] = b"\x03\x04" in {
                    value[q : q + 2] for q in range(1, 1 + value[0], 2)
                }
    except (IndexError, struct.error):
        out["error"] = "malformed ClientHello"
    return out


def _peer_name(peer: Any) -> str | None:
    """The first DNS name (else the common name) of a verified client certificate."""
    if not peer:
        return None
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def alert_record(code: int) -> bytes:
    """A plaintext fatal alert record (TLS 1.2 record version, as a TLS 1.3 server sends it
    before any key is agreed)."""
    return bytes([21, 3, 3, 0, 2, 2, code])


ClientCert.__module__ = "curlfault"


class TlsLayer:
    """Server-side TLS over one channel."""

    def __init__(self, channel: Channel, config: TlsServerConfig, conn: Connection) -> None:
        self.channel = channel
        self.conn = conn
        self.config = config
        fault = conn.fault if isinstance(conn.fault, TlsFault) else None
        self.fault = fault
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = config.context_for(fault).wrap_bio(self._in, self._out, server_side=True)
        # The ClientHello's bytes until it is whole. SNI and the offered ALPN list are read
        # from it, not from OpenSSL: the server side of an SSLObject has no server_hostname,
        # and a handshake that fails (or never starts, below) has them too.
        self._hello: bytearray | None = bytearray()
        # Handshake faults: the ClientHello never reaches OpenSSL; the fault answers it.
        self._raw = isinstance(fault, (HandshakeClose, HandshakeReset, TlsAlert, AlpnMismatch))
        self.protocol: StreamProtocol | None = None
        # Chooses the protocol once ALPN is known (HTTP/2 or HTTP/1.1 on one endpoint).
        self._choose: Callable[[str | None], StreamProtocol] | None = None
        self.handshaken = False
        self._closing = False
        # TLS 1.2 or older will be negotiated (known from the ClientHello and our context).
        self._tls12 = False
        self._plain = False  # the first bytes were an HTTP request line, not a TLS record
        self._watched = False  # the loop thread wakes on our client's bytes (data_received)

    def start(self, protocol: StreamProtocol) -> None:
        self.protocol = protocol
        self.channel.start(self)

    def start_negotiated(self, choose: Callable[[str | None], StreamProtocol]) -> None:
        """Like ``start``, but the protocol is ``choose(alpn)``, made after the handshake."""
        self._choose = choose
        self.channel.start(self)

    # from the channel (ciphertext) -------------------------------------------------------
    def client_closed(self) -> None:
        """The client closed the connection: the protocol inside hears it too."""
        closing = getattr(getattr(self, "protocol", None), "client_closed", None)
        if closing is not None:
            closing()

    def data_received(self, data: bytes) -> None:
        if self._hello is not None:
            hello = self._hello
            hello += data
            fields = parse_client_hello(bytes(hello))
            if fields is not None or len(hello) > 65536:  # whole, or not TLS at all
                self._hello = None
                fields = fields or {}
                # OpenSSL names a plain HTTP request only for GET, POST, HEAD and PUT.
                self._plain = "error" in fields and _REQUEST_LINE.match(hello) is not None
                offered = fields.get("alpn_offered")
                self.conn.tls.update(sni=fields.get("sni"), alpn_offered=offered)
                ctx = self.obj.context
                self._tls12 = (
                    not fields.get("tls13_offered")
                    or ctx.maximum_version not in _ALLOWS_TLS13
                    or bool(ctx.options & ssl.OP_NO_TLSv1_3)
                )
                if self._raw and isinstance(self.fault, AlpnMismatch) and not offered:
                    # A client that offers no ALPN cannot mismatch: the handshake goes on.
                    self.conn.event("alpn_mismatch(): the client offered no ALPN")
                    self._raw, data = False, bytes(hello)
                elif self._raw:
                    self._fail_handshake()
        if self._raw:
            return  # a handshake fault: nothing reaches OpenSSL
        self._in.write(data)
        if not self.handshaken:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                if self._tls12 and not self._watched and not self.obj.session_reused:
                    # TLS 1.2 and older: the client's last flight (key exchange, Finished)
                    # is followed by no debug event, since libcurl waits for our Finished.
                    # Its arrival wakes the loop thread instead (SCAN_SECONDS otherwise).
                    # A resumed session ends with the client's Finished and its request.
                    self._watched = True
                    self.channel.loop.watch(self.channel)
                return
            except ssl.SSLError as exc:
                self.conn.event(f"TLS handshake failed: {exc.reason or exc}")
                if exc.reason == "HTTP_REQUEST" or self._plain:
                    self._plain_http(str(exc.reason or exc).lower().replace("_", " "))
                self._flush()
                self._closing = True
                self.channel.finish()
                return
            self.handshaken = True
            if self._watched:
                self.channel.loop.watch(self.channel, False)
            self._record()
            self._flush()
            if self._choose is not None:
                self.protocol = self._choose(self.obj.selected_alpn_protocol())
        chunks = []
        while True:
            try:
                chunk = self.obj.read(262144)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.conn.event("client sent close_notify")
                break
            except ssl.SSLError as exc:
                self.conn.event(f"TLS error: {exc.reason or exc}")
                self.channel.finish()
                return
            if not chunk:
                break
            chunks.append(chunk)
        self._flush()
        if chunks and self.protocol is not None and not self._closing:
            self.protocol.data_received(b"".join(chunks))

    def _record(self) -> None:
        obj = self.obj
        self.conn.tls.update(
            version=obj.version(),
            cipher=(obj.cipher() or ("",))[0],
            alpn=obj.selected_alpn_protocol(),
            resumed=obj.session_reused,
            client_cert=_peer_name(obj.getpeercert()) if self.config.client_cert else None,
        )
        self.conn.event(f"TLS handshake done ({obj.version()})")

    def _plain_http(self, reason: str) -> None:
        """A plain HTTP request came where the ClientHello belongs: the client's mistake,
        not a handshake that the client rejected."""
        ep = self.conn.endpoint
        if ep is None:  # pragma: no cover - a TLS layer serves an endpoint
            return
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        url = f"https://{host}" + ("" if ep.port == 443 else f":{ep.port}")
        parts = urlsplit(self.conn.url)
        if parts.scheme in ("http", "ws"):
            netloc = parts.netloc
            if parts.port is None and ep.port not in (None, 443):
                # the URL relied on port 80, which the secure scheme does not default to
                netloc = f"{netloc}:{ep.port}"
            secure = urlunsplit((parts.scheme + "s", netloc, *parts[2:]))
            use = f"{secure} (not {self.conn.url})"
        else:
            use = f"{url}/..."
        ep.network._record(
            MalformedRequest(
                f"{url} received a plain HTTP request where the TLS handshake should "
                f"start (OpenSSL: {reason}) and closed the connection without an answer; "
                f"use {use}, or declare {ep.network.spelled}.http({ep.host!r}, {ep.port}) to "
                "serve plain "
                "HTTP there"
            )
        )

    def _fail_handshake(self) -> None:
        """A handshake fault, once the whole ClientHello is in: stop, reset, or alert."""
        self._closing = True
        fault = self.fault
        self.conn.event(f"read the ClientHello; fault {fault!r}")
        if isinstance(fault, HandshakeReset):
            self.channel.abort()
            return
        if isinstance(fault, (TlsAlert, AlpnMismatch)):
            self.conn.event(f"sent fatal alert {fault.code}")
            self.channel.write(alert_record(fault.code))
        self.channel.finish()

    def eof_received(self) -> None:
        if self.protocol is not None and self.handshaken:
            self.protocol.eof_received()

    # from the protocol (plaintext) -------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not data or self._closing:
            return
        self.obj.write(data)
        self._flush()

    def finish(self) -> None:
        if self._closing:
            return
        self._closing = True
        if isinstance(self.fault, NoCloseNotify):
            self.conn.event("FIN without close_notify")
        else:
            try:
                self.obj.unwrap()
            except ssl.SSLError:
                pass
        self._flush()
        self.channel.finish()

    def abort(self) -> None:
        self._closing = True
        self.channel.abort()

    @property
    def closed(self) -> bool:
        return self.channel.closed

    def stop_reading(self) -> None:
        self.channel.stop_reading()

    def when_flushed(self, callback: Callable[[], None]) -> None:
        self.channel.when_flushed(callback)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.channel.write(data)
