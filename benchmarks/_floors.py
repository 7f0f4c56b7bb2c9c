"""Floors: what libcurl itself costs when the server does (almost) no work.

Each floor hands libcurl one end of an AF_UNIX socketpair from its opensocket callback
(``SOCKOPT_ALREADY_CONNECTED``; closesocket closes it) and serves the other end as cheaply as
the row allows:

* fresh GET: the complete response is written into the pair before libcurl sees it;
* keep-alive GET: the response is written from ``PREREQFUNCTION``, right before libcurl sends
  the request on the reused connection (a response written earlier would be unread input on
  an idle connection, which libcurl drops);
* 1 MiB: a socketpair holds ~200 KiB, so something must keep writing. The issue's floor is a
  writer thread (one long-lived thread, handed each server end through a queue); an extra,
  stricter floor tops the pair up from libcurl's own write callback, with no thread at all;
* HTTPS: a TLS server on the pair, made by ``ssl`` with a trustme certificate. The issue's
  floor is one long-lived thread doing a blocking ``wrap_socket`` handshake per connection; an
  extra, stricter floor drives an ``ssl.SSLObject`` over memory BIOs from libcurl's debug
  callback (the same place curlfault pumps from), with no thread.
"""

from __future__ import annotations

import io
import os
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import pycurl
from _common import (
    BIG_BODY,
    BIG_RESPONSE,
    BODY,
    REAL_CURL,
    RESPONSE,
    TIMEOUT,
    basic_options,
    drain,
    expect,
    join_or_fail,
)
from _timing import Case

URL = "http://127.0.0.1:9/"  # an IP literal: no resolver; opensocket never connects it
TLS_HOST = "bench.test"
TLS_URL = f"https://{TLS_HOST}/"
TLS_PIN = [f"{TLS_HOST}:443:127.0.0.1"]  # pinned: no resolver; opensocket never connects it


def _already_connected(fd: int, purpose: int) -> int:
    return pycurl.SOCKOPT_ALREADY_CONNECTED


def _close(fd: int) -> int:
    os.close(fd)
    return 0


class _PairCase(Case):
    group = "floor"

    def __init__(self) -> None:
        self.servers: list[socket.socket] = []
        self.opened = 0

    def _wire(self, curl: Any) -> None:
        curl.setopt(pycurl.OPENSOCKETFUNCTION, self._open)
        curl.setopt(pycurl.SOCKOPTFUNCTION, _already_connected)
        curl.setopt(pycurl.CLOSESOCKETFUNCTION, _close)

    def _pair(self) -> tuple[socket.socket, socket.socket]:
        client, server = socket.socketpair()
        self.servers.append(server)
        self.opened += 1
        return client, server

    def _open(self, purpose: int, address: Any) -> int:
        raise NotImplementedError

    def _close_servers(self) -> None:
        for s in self.servers:
            s.close()
        self.servers.clear()

    def teardown(self) -> None:
        self._close_servers()

    def _get(
        self, url: str, body: bytes, configure: Callable[[Any, io.BytesIO], None] | None = None
    ) -> None:
        """One GET on a fresh handle wired to ``_open``; ``configure(curl, buf)`` adds options."""
        c = REAL_CURL()
        buf = io.BytesIO()
        basic_options(c, url, buf)
        if configure is not None:
            configure(c, buf)
        self._wire(c)
        c.perform()
        c.close()
        self._close_servers()
        expect(buf, body, self.key)


class FloorFresh(_PairCase):
    key = "floor.get.fresh"
    label = "floor: GET, fresh handle (response pre-written)"
    batch = 200

    def _open(self, purpose: int, address: Any) -> int:
        client, server = self._pair()
        server.send(RESPONSE)
        return client.detach()

    def op(self) -> None:
        self._get(URL, BODY)


class _EmptyPairCase(_PairCase):
    """Opensocket hands out a pair with nothing written: the response comes later."""

    def _open(self, purpose: int, address: Any) -> int:
        client, _ = self._pair()
        return client.detach()


class _ReusedCase(_EmptyPairCase):
    """One handle per batch, each timed GET on its warm keep-alive connection to ``url``."""

    url = URL

    def begin(self) -> None:
        self.opened = 0
        self.curl = c = REAL_CURL()
        self.buf = io.BytesIO()
        basic_options(c, self.url, self.buf)
        self._wire(c)
        c.perform()  # the connection, untimed

    def op(self) -> None:
        buf = io.BytesIO()
        self.curl.setopt(pycurl.WRITEDATA, buf)
        self.curl.perform()
        self.buf = buf

    def end(self) -> None:
        expect(self.buf, BODY, self.key)
        self.curl.close()
        self._close_servers()
        if self.opened != 1:
            raise RuntimeError(f"{self.key}: libcurl opened {self.opened} connections, not 1")


class FloorKeepAlive(_ReusedCase):
    key = "floor.get.keepalive"
    label = "floor: GET, reused handle (written from PREREQFUNCTION)"
    batch = 300

    def _wire(self, curl: Any) -> None:
        super()._wire(curl)
        curl.setopt(pycurl.PREREQFUNCTION, self._prereq)

    def _prereq(self, *args: Any) -> int:
        server = self.servers[-1]
        drain(server)  # the previous request
        server.send(RESPONSE)
        return pycurl.PREREQFUNC_OK


# The least a fake that reads the request before answering must pay (context rows, no
# target): the response cannot be written before libcurl has sent the request, so it is
# written from the debug callback's HEADER_OUT event (libcurl's earliest in-thread moment
# after the request went out), which needs VERBOSE on; and the fake host is pinned with
# RESOLVE/CONNECT_TO as curlfault pins it. No parse, no routing, no record, no ledger: the
# request's bytes are read and dropped and a canned response written.
READING_URL = "http://api.test/"
_HEADER_OUT = pycurl.INFOTYPE_HEADER_OUT
_READING_PINS = (["api.test:80:127.77.0.1"], ["api.test:80:127.77.0.1:80", "::127.77.255.254:9"])


class _ReadingCase(_EmptyPairCase):
    def _wire(self, curl: Any) -> None:
        super()._wire(curl)
        curl.setopt(pycurl.RESOLVE, _READING_PINS[0])
        curl.setopt(pycurl.CONNECT_TO, _READING_PINS[1])
        curl.setopt(pycurl.VERBOSE, 1)
        curl.setopt(pycurl.DEBUGFUNCTION, self._debug)

    def _debug(self, kind: int, data: bytes) -> None:
        if kind == _HEADER_OUT:
            server = self.servers[-1]
            server.recv(65536, socket.MSG_DONTWAIT)  # the whole GET: one read
            server.send(RESPONSE)


class FloorFreshReading(_ReadingCase):
    key = "floor.get.fresh.reading"
    label = "floor: GET, fresh handle, answered after the request (debug callback, pins)"
    group = "floor"
    batch = 200

    def op(self) -> None:
        self._get(READING_URL, BODY)


class FloorKeepAliveReading(_ReadingCase, _ReusedCase):
    key = "floor.get.keepalive.reading"
    label = "floor: GET, reused handle, answered after the request (debug callback, pins)"
    group = "floor"
    batch = 300
    url = READING_URL


class _Writer:
    """One long-lived thread that writes a response into each server end it is handed."""

    def __init__(self, name: str, serve: Any) -> None:
        self.q: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self.serve = serve
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            sock = self.q.get()  # None stops the thread; stop() always sends it
            if sock is None:
                return
            try:
                sock.settimeout(TIMEOUT)
                self.serve(sock)
            except BaseException as exc:
                self.errors.append(exc)
            finally:
                sock.close()

    def stop(self) -> None:
        self.q.put(None)
        join_or_fail(self.thread)
        if self.errors:
            raise RuntimeError(f"{self.thread.name} failed: {self.errors[0]!r}")


class FloorBigThread(_PairCase):
    key = "floor.big.thread"
    label = "floor: 1 MiB, fresh handle (writer thread)"
    batch = 20

    def setup(self) -> None:
        self.writer = _Writer("floor-writer", lambda s: s.sendall(BIG_RESPONSE))

    def _open(self, purpose: int, address: Any) -> int:
        client, server = socket.socketpair()
        self.writer.q.put(server)  # the writer thread owns and closes it
        return client.detach()

    def op(self) -> None:
        self._get(URL, BIG_BODY)

    def teardown(self) -> None:
        self.writer.stop()


class FloorBigInline(_PairCase):
    key = "floor.big.inline"
    label = "floor: 1 MiB, fresh handle (no thread: topped up from the write callback)"
    batch = 20

    def _open(self, purpose: int, address: Any) -> int:
        client, server = self._pair()
        server.setblocking(False)
        self.left = memoryview(BIG_RESPONSE)
        self._top_up()
        return client.detach()

    def _top_up(self) -> None:
        left = self.left
        if left:
            try:
                self.left = left[self.servers[-1].send(left) :]
            except BlockingIOError:
                pass

    def _write(self, data: bytes) -> None:
        self.buf.write(data)
        if self.left:
            self._top_up()

    def op(self) -> None:
        self._get(URL, BIG_BODY, self._configure)

    def _configure(self, curl: Any, buf: io.BytesIO) -> None:
        self.buf = buf
        curl.setopt(pycurl.WRITEFUNCTION, self._write)


def tls_server_context(ca: Any, host: str) -> ssl.SSLContext:
    """The server context curlfault makes for an HTTPS endpoint, for ``host``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_client_options(curl: Any, ca: Any, port: int = 443) -> None:
    curl.setopt(pycurl.RESOLVE, [f"{TLS_HOST}:{port}:127.0.0.1"])
    curl.setopt(pycurl.CAINFO_BLOB, ca.cert_pem.bytes())


def _serve_tls(ctx: ssl.SSLContext, sock: socket.socket) -> None:
    with ctx.wrap_socket(sock, server_side=True) as tls:  # the handshake, blocking
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                return
            data += chunk
        tls.sendall(RESPONSE)


class FloorTlsThread(_PairCase):
    key = "floor.https.thread"
    label = "floor: HTTPS GET, fresh handle (TLS server thread on a socketpair)"
    batch = 12

    def __init__(self, ca: Any) -> None:
        super().__init__()
        self.ca = ca

    def setup(self) -> None:
        ctx = tls_server_context(self.ca, TLS_HOST)
        self.writer = _Writer("floor-tls", lambda s: _serve_tls(ctx, s))

    def _open(self, purpose: int, address: Any) -> int:
        client, server = socket.socketpair()
        self.writer.q.put(server)
        return client.detach()

    def op(self) -> None:
        self._get(TLS_URL, BODY, lambda c, buf: tls_client_options(c, self.ca))

    def teardown(self) -> None:
        self.writer.stop()


def _ignore_debug(kind: int, data: bytes) -> None:
    return None


class FloorTlsThreadVerbose(FloorTlsThread):
    """The thread floor with ``VERBOSE`` and a no-op Python ``DEBUGFUNCTION``: what the debug
    callback alone costs an HTTPS transfer (74 calls per TLS GET), before any serving."""

    key = "floor.https.thread.verbose"
    label = "floor: HTTPS GET, fresh handle (TLS server thread; VERBOSE, no-op debug callback)"

    def op(self) -> None:
        def configure(c: Any, buf: io.BytesIO) -> None:
            tls_client_options(c, self.ca)
            c.setopt(pycurl.VERBOSE, 1)
            c.setopt(pycurl.DEBUGFUNCTION, _ignore_debug)

        self._get(TLS_URL, BODY, configure)


TLS12 = pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2


class FloorTls12Thread(FloorTlsThread):
    """The same floor with the client capped at TLS 1.2 (a full TLS 1.2 handshake)."""

    key = "floor.https12.thread"
    label = "floor: HTTPS GET, TLS 1.2, fresh handle (TLS server thread on a socketpair)"

    def op(self) -> None:
        def configure(c: Any, buf: io.BytesIO) -> None:
            tls_client_options(c, self.ca)
            c.setopt(pycurl.SSLVERSION, TLS12)

        self._get(TLS_URL, BODY, configure)


class FloorTlsInline(_PairCase):
    key = "floor.https.inline"
    label = "floor: HTTPS GET, fresh handle (SSLObject pumped from the debug callback)"
    batch = 12

    def __init__(self, ca: Any) -> None:
        super().__init__()
        self.ca = ca

    def setup(self) -> None:
        self.ctx = tls_server_context(self.ca, TLS_HOST)

    def _open(self, purpose: int, address: Any) -> int:
        client, server = self._pair()
        server.setblocking(False)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = self.ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.shaken = False
        self.request = b""
        return client.detach()

    def _pump(self, kind: int, data: bytes) -> None:
        if not self.servers:
            return
        server = self.servers[-1]
        try:
            chunk = server.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        self.incoming.write(chunk)
        tls = self.tls
        if not self.shaken:
            try:
                tls.do_handshake()
                self.shaken = True
            except ssl.SSLWantReadError:
                pass
        if self.shaken:
            try:
                while True:
                    self.request += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            if b"\r\n\r\n" in self.request:
                self.request = b""
                tls.write(RESPONSE)
        out = self.outgoing.read()
        if out:
            server.send(out)

    def op(self) -> None:
        self._get(TLS_URL, BODY, self._configure)

    def _configure(self, curl: Any, buf: io.BytesIO) -> None:
        tls_client_options(curl, self.ca)
        curl.setopt(pycurl.VERBOSE, 1)
        curl.setopt(pycurl.DEBUGFUNCTION, self._pump)
