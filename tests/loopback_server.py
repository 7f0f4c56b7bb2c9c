"""A real HTTP/1.1 server on 127.0.0.1 for tests that need the real network: keep-alive, one
thread (a selector loop), every socket closed and the thread joined by ``close()``.

Tests of ``--curlfault-leaks`` and ``--curlfault-strict`` need connections that libcurl makes
itself and pools; the fakes would not do. pytester tests write this file into the inner
test directory (``pytester.makepyfile(loopback=SOURCE)``), so it imports nothing of ours.
"""

from __future__ import annotations

import selectors
import socket
import threading


class LoopbackServer:
    """``with LoopbackServer() as srv: get(srv.url)``; answers every request with ``body``."""

    def __init__(self, body: bytes = b"hello", host: str = "127.0.0.1") -> None:
        self.body = body
        self.accepted = 0  # connections accepted so far
        self.requests = 0
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        netloc = f"[{host}]" if ":" in host else host
        self.url = f"http://{netloc}:{self.port}/"
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-server", daemon=True)
        self.error: BaseException | None = None
        self._thread.start()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._thread.is_alive():  # pragma: no cover - a hung server fails loudly
            raise RuntimeError("the loopback server did not stop within 10 s")
        if self.error is not None:
            raise RuntimeError(f"the loopback server failed: {self.error!r}") from self.error

    def _serve(self) -> None:
        sel = self._selector
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    if key.data is None:
                        try:
                            conn, _ = self._listener.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(False)
                        self.accepted += 1
                        sel.register(conn, selectors.EVENT_READ, b"")
                        continue
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported by close()
            self.error = exc
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def _read(self, conn: socket.socket, buffered: bytes) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(conn)
            conn.close()
            return
        buffered += data
        close = False
        while b"\r\n\r\n" in buffered:
            head, buffered = buffered.split(b"\r\n\r\n", 1)
            self.requests += 1
            close = close or b"connection: close" in head.lower()
            reply = (
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n"
                % (len(self.body), b"Connection: close\r\n" if close else b"")
            ) + self.body
            conn.setblocking(True)
            conn.settimeout(10)
            try:
                conn.sendall(reply)
            finally:
                conn.setblocking(False)
        if close:
            self._selector.unregister(conn)
            conn.close()
            return
        self._selector.modify(conn, selectors.EVENT_READ, buffered)
