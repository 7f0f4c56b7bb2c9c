"""How one fake connection is made, and the server end that the loop serves.

``make_pair`` gives a connected (client, server) pair: an AF_UNIX socketpair (the default, no
port at all) or a loopback TCP pair (needed for a real RST). The third transport,
``"listener"``, is no pair: libcurl connects by itself to a loopback listener that the loop
accepts from (``_listener.py``). ``Channel`` is the server end, whichever way it was made: a
non-blocking socket with an output buffer, a half-close (``shutdown(SHUT_WR)``, drain with a
deadline, close) so that a FIN reaches libcurl as one deterministic event on every transport,
and an abortive close (``SO_LINGER(1, 0)``) that sends RST on TCP.
"""

from __future__ import annotations

import _socket
import fcntl
import mmap
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ._loop import READ, WRITE, Loop, Timer

if TYPE_CHECKING:
    from ._network import Connection

__all__ = ["ENDPOINT_TRANSPORTS", "TRANSPORTS", "Channel", "StreamProtocol", "make_pair"]

# The pair transports: what ``make_pair`` makes, and what ``curlfault matrix`` runs over.
TRANSPORTS = ("socketpair", "tcp")
# Every transport an endpoint can be given.
ENDPOINT_TRANSPORTS = (*TRANSPORTS, "listener")

_LINGER_RST = struct.pack("ii", 1, 0)
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def _unread(fd: int) -> int:
    """Bytes waiting to be read on socket ``fd`` (1 if the kernel cannot say)."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    except OSError:
        return 1


def make_pair(kind: str) -> tuple[_socket.socket, _socket.socket]:
    """A connected (client, server) socket pair of the given transport kind.

    A socketpair comes as the C socket objects, without the ``socket.socket`` wrappers
    (which cost more than the system call): the client end is detached at once and the
    server end only needs the methods the C type has.
    """
    if kind == "socketpair":
        # Non-blocking from the start: the server end must be, and libcurl makes its end
        # so anyway (it skips the change when the flag is set). Two fcntl calls fewer.
        return _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | _NONBLOCK)
    if kind == "tcp":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                client.connect(listener.getsockname())
                server, _ = listener.accept()
            except BaseException:
                client.close()
                raise
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, server
    raise ValueError(f"unknown transport {kind!r}; use one of {', '.join(TRANSPORTS)}")


class StreamProtocol(Protocol):
    """What a protocol module offers the channel that carries it."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...


_READ_SIZE = 262144
_DRAIN_READS = 16  # reads of up to _READ_SIZE each when libcurl closes its end


class _ReadBuffer(threading.local):
    """One receive buffer per thread that reads server ends (the loop thread, the client's).

    ``sock.recv(n)`` allocates ``n`` bytes and shrinks them to what arrived: for 256 KiB
    that is an mmap, an mremap and, when the bytes die, a munmap, three system calls per
    read; and a request's bytes that stay referenced keep a whole page each. ``recv_into``
    a buffer that lives as long as its thread costs one system call and a copy of what
    arrived. Per thread, because ``recv_into`` releases the GIL while it writes.

    An anonymous mapping, not a ``bytearray``: the kernel gives its pages on first write,
    so a thread that only ever reads small requests holds one page, not 256 KiB that a
    ``bytearray`` would zero-fill (and make resident) at once.
    """

    def __init__(self) -> None:
        # Private: a forked child gets its own copy on write, not the parent's pages.
        self.view = memoryview(
            mmap.mmap(-1, _READ_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        )


_buffer = _ReadBuffer()


class Channel:
    """The server end of one fake connection, served by the loop thread."""

    DRAIN_SECONDS = 5.0
    __slots__ = (
        "_after_flush",
        "_drain_timer",
        "_out",
        "_writing",
        "bytes_in",
        "bytes_out",
        "closed",
        "conn",
        "fd",
        "loop",
        "protocol",
        "read_eof",
        "sock",
        "write_closed",
    )

    def __init__(self, loop: Loop, sock: _socket.socket, conn: Connection) -> None:
        if sock.gettimeout() != 0.0:  # a pair made with SOCK_NONBLOCK is already
            sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.conn = conn
        self.protocol: StreamProtocol | None = None
        # What waits for room in the socket: the unsent rest of one bytes object (a view,
        # no copy), or a bytearray once a second write queues behind it.
        self._out: bytes | bytearray | memoryview = b""
        self._after_flush: Callable[[], None] | None = None
        self._writing = False
        self.read_eof = False
        self.write_closed = False
        self.closed = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._drain_timer: Timer | None = None

    def fileno(self) -> int:
        return self.fd

    def start(self, protocol: StreamProtocol) -> None:
        self.protocol = protocol
        self.loop.add(self, READ)

    # reading ---------------------------------------------------------------------------
    def on_readable(self) -> bool:
        """Read what the client sent; True if there was anything (bytes or its EOF)."""
        if self.closed or self.read_eof:
            return False
        view = _buffer.view
        try:
            n = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # ECONNRESET from the client: treat as EOF
            n = 0
        if not n:
            self.read_eof = True
            self.conn.event("client closed its end")
            if self.protocol is not None and not self.write_closed:
                self.protocol.eof_received()
            if self.write_closed or not self._out:
                self.close()
            else:
                self._update_interest()
                self.when_flushed(self.close)
            return True
        self.bytes_in += n
        if self.write_closed or self.protocol is None:
            return True  # draining after our FIN: discard
        self.protocol.data_received(view[:n].tobytes())
        return True

    # writing ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed or self.write_closed or not data:
            return
        if self._out:
            if type(self._out) is not bytearray:
                self._out = bytearray(self._out)
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:  # the client went away
            self.conn.event(f"write failed: {exc.strerror or exc}")
            self.close()
            return
        self.bytes_out += sent
        if sent < len(data):
            # A 1 MiB body leaves most of itself here: a view of immutable bytes is not
            # copied (a bytearray the caller may reuse is).
            rest = memoryview(data)[sent:]
            self._out = rest if type(data) is bytes else bytearray(rest)
            self._filled(sent)  # the socket is full: what one fill holds
            self._want_write(True)

    def on_writable(self) -> None:
        if self.closed:
            return
        if self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.conn.event(f"write failed: {exc.strerror or exc}")
                self.close()
                return
            self.bytes_out += sent
            self._filled(sent)
            out = self._out
            if type(out) is bytearray:
                del out[:sent]
            else:
                self._out = out[sent:]
        if not self._out:
            self._out = b""  # an empty view would still hold the whole response
            self._want_write(False)
            after, self._after_flush = self._after_flush, None
            if after is not None:
                after()

    def _filled(self, sent: int) -> None:
        loop = self.loop
        loop.refills += 1  # runs under the loop's lock, as every handler does
        loop.fills[self.fd] = (sent, loop.refills)

    def _want_write(self, on: bool) -> None:
        if on != self._writing:
            self._writing = on
            self._update_interest()

    def _update_interest(self) -> None:
        if not self.closed:
            events = (0 if self.read_eof else READ) | (WRITE if self._writing else 0)
            self.loop.modify(self, events)

    def when_flushed(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once every byte written so far has left the buffer."""
        if not self._out:
            callback()
        else:
            self._after_flush = callback

    @property
    def pending(self) -> int:
        return len(self._out)

    # closing ---------------------------------------------------------------------------
    def finish(self) -> None:
        """FIN after the buffered bytes: shutdown(SHUT_WR), drain the client, close."""
        self.when_flushed(self._half_close)

    def _half_close(self) -> None:
        if self.closed or self.write_closed:
            return
        self.write_closed = True
        self.loop.watch(self, False)  # nothing more to serve promptly (a failed handshake)
        self.conn.event("server sent FIN")
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        if self.read_eof:
            self.close()
        else:
            self._drain_timer = self.loop.call_later(self.DRAIN_SECONDS, self._drain_expired)

    def _drain_expired(self) -> None:
        if not self.closed:
            self.conn.event(f"client did not close within {self.DRAIN_SECONDS}s of FIN")
            self.close()

    def abort(self) -> None:
        """Close at once; on TCP with SO_LINGER(1, 0), which sends RST."""
        if self.closed:
            return
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:
                pass
            self.conn.event("server sent RST")
        else:
            self.conn.event("server closed abruptly")
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._out = b""  # a view of a response not sent in full would keep all of it
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self.loop.remove(self)
        self.sock.close()
        self.conn.closed_at = time.monotonic()
        self.conn.event("server end closed")

    def stop_reading(self) -> None:
        """Never read from the client again (the stop_reading() fault)."""
        self.read_eof = True  # no READ interest from now on
        self.loop.watch(self, False)
        self._update_interest()

    def client_closed(self) -> None:
        """libcurl closed its end (closesocket callback): the server end goes too.

        First the server reads what the client sent before it closed (a real server would
        have received it: an HTTP/2 SETTINGS ACK, say), since no debug event may have
        pumped it. Bounded: the client's end is still open, so the reads stop at EAGAIN.
        """
        if self.closed:
            return
        try:
            # Most often the client sent nothing more: ask the kernel instead of a read
            # that fails with EAGAIN (which Python turns into an exception to catch).
            unread = _unread(self.fd) if not self.read_eof else 0
            for _ in range(_DRAIN_READS if unread else 0):
                before = self.bytes_in
                self.on_readable()
                if self.closed or self.read_eof or self.bytes_in == before:
                    break
        except BaseException as exc:
            self.on_error(exc)
            return
        if not self.closed:
            self.conn.event("client closed its end (closesocket)")
            closing = getattr(self.protocol, "client_closed", None)
            if closing is not None:
                try:
                    closing()  # a request cut short is recorded
                except BaseException as exc:
                    self.on_error(exc)
                    return
            self.close()

    def on_error(self, exc: BaseException) -> None:
        self.conn.server_failed(exc)
        self.close()
