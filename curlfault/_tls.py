"""TLS for fake endpoints: an ``ssl.SSLObject`` over memory BIOs, driven by the loop.

The layer sits between the channel (ciphertext) and a protocol (plaintext) and offers the
protocol the same write/finish/abort interface as the channel, so HTTP code does not know
whether it runs over TLS. Certificates come from the network's trustme CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._network import Connection
    from ._transports import Channel, StreamProtocol

__all__ = ["TlsLayer", "TlsServerConfig"]


@dataclass
class TlsServerConfig:
    context: ssl.SSLContext

    @classmethod
    def for_host(cls, ca: Any, host: str, alpn: tuple[str, ...] = ("http/1.1",)) -> TlsServerConfig:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(host).configure_cert(ctx)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return cls(ctx)


class TlsLayer:
    """Server-side TLS over one channel."""

    def __init__(self, channel: Channel, config: TlsServerConfig, conn: Connection) -> None:
        self.channel = channel
        self.conn = conn
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = config.context.wrap_bio(self._in, self._out, server_side=True)
        self.protocol: StreamProtocol | None = None
        # Chooses the protocol once ALPN is known (HTTP/2 or HTTP/1.1 on one endpoint).
        self._choose: Callable[[str | None], StreamProtocol] | None = None
        self.handshaken = False
        self._closing = False
        self._eager = False
        channel.on_close = self._handshake_over

    def start(self, protocol: StreamProtocol) -> None:
        self.protocol = protocol
        self.channel.loop.eager += 1
        self._eager = True
        self.channel.start(self)

    def start_negotiated(self, choose: Callable[[str | None], StreamProtocol]) -> None:
        """Like ``start``, but the protocol is ``choose(alpn)``, made after the handshake."""
        self._choose = choose
        self.channel.loop.eager += 1
        self._eager = True
        self.channel.start(self)

    def _handshake_over(self) -> None:
        if self._eager:
            self._eager = False
            self.channel.loop.eager -= 1

    # from the channel (ciphertext) -------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        if not self.handshaken:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except ssl.SSLError as exc:
                self.conn.event(f"TLS handshake failed: {exc.reason or exc}")
                self._handshake_over()
                self._flush()
                self._closing = True
                self.channel.finish()
                return
            self.handshaken = True
            self._handshake_over()
            self.conn.tls.update(
                sni=getattr(self.obj, "server_hostname", None),
                version=self.obj.version(),
                cipher=(self.obj.cipher() or ("",))[0],
                alpn=self.obj.selected_alpn_protocol(),
            )
            self.conn.event(f"TLS handshake done ({self.obj.version()})")
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
