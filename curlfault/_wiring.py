"""Installs curlfault's callbacks and pins on one pycurl handle.

The three socket callbacks never let an exception escape into pycurl: an exception left
pending in pycurl makes it skip every other callback of that libcurl call (closesocket
included) and, in a multi, fail unrelated transfers. Each exception is recorded, the callback
returns a safe value, and the intercepting subclass re-raises it after ``perform()``;
``FakeNetwork.check()`` raises whatever was not delivered that way.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
import weakref
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin

import pycurl

from ._errors import CallbackError
from ._ledger import Site, SocketRecord
from ._names import SYNTHETIC_SUFFIX

if TYPE_CHECKING:
    from ._loop import Loop
    from ._network import FakeNetwork
    from ._transports import Channel

__all__ = [
    "BIND_OPTIONS",
    "DEVICE",
    "OWNED_OPTIONS",
    "PASSTHROUGH",
    "SINK_IP",
    "Wiring",
    "set_list",
    "update_binds",
]

PASSTHROUGH = -2  # open_socket's answer for a real host when the network is not strict
SINK_IP = "127.77.255.254"  # unknown hosts in strict mode; refused, never connected
_SINK_ENTRY = f"::{SINK_IP}:9"
_AF_UNIX = getattr(socket, "AF_UNIX", -1)
_SOCKTYPE_MASK = ~(getattr(socket, "SOCK_CLOEXEC", 0) | getattr(socket, "SOCK_NONBLOCK", 0))

# pycurl's own setopt, bound before anything can replace pycurl.Curl with a subclass.
_SETOPT = pycurl.Curl.setopt
_UNSETOPT = pycurl.Curl.unsetopt
OPEN = pycurl.OPENSOCKETFUNCTION
SOCKOPT = pycurl.SOCKOPTFUNCTION
CLOSE = pycurl.CLOSESOCKETFUNCTION
# Options the wiring owns on a routed handle; a user's value is kept and merged or chained.
DEBUG = pycurl.DEBUGFUNCTION
VERBOSE = pycurl.VERBOSE
OWNED_OPTIONS = frozenset(
    {OPEN, SOCKOPT, CLOSE, DEBUG, VERBOSE, pycurl.CONNECT_TO, pycurl.RESOLVE, pycurl.NOPROXY}
)
# Debug events after which the fake servers are pumped. libcurl emits these right after it
# wrote request bytes: a server end has input to answer.
_AFTER_WRITE = frozenset({pycurl.INFOTYPE_HEADER_OUT, pycurl.INFOTYPE_DATA_OUT})
# Not this one: OpenSSL announces a TLS record (its message callback) before it writes it,
# so a pump here finds nothing. It arms the handle instead: its next debug event of any kind
# pumps, and so does every one after it until a pump finds something to serve (in a TLS
# handshake the record is flushed before libcurl's next line of text). A second
# announcement while armed pumps first: the previous record has been written by then.
_SSL_OUT = pycurl.INFOTYPE_SSL_DATA_OUT
_HEADER_IN = pycurl.INFOTYPE_HEADER_IN
# And these right after it read response bytes: that made room for a server end whose
# response did not fit in the socket buffer (only those are pumped: ``Loop.writers``).
_AFTER_READ = frozenset(
    {pycurl.INFOTYPE_HEADER_IN, pycurl.INFOTYPE_DATA_IN, pycurl.INFOTYPE_SSL_DATA_IN}
)
# The events that pump whether or not the handle is armed: written bytes, announced records.
_PUMP_AFTER = _AFTER_WRITE | {_SSL_OUT}
_PREFIX = {
    pycurl.INFOTYPE_TEXT: b"* ",
    pycurl.INFOTYPE_HEADER_IN: b"< ",
    pycurl.INFOTYPE_HEADER_OUT: b"> ",
}
# Options that make libcurl bind() the socket it is given, which a socketpair or a connected
# TCP pair refuses (45): watched, so a fake connection can say why (see binds).
BIND_OPTIONS = frozenset({pycurl.LOCALPORT, pycurl.INTERFACE})
# Where the handle says its CA certificates are: once it names them, curlfault stops adding
# its own. Turning verification on or off (SSL_VERIFYPEER / SSL_VERIFYHOST) does not name a
# CA: tornado sets both to their defaults on every request, and must still trust the fakes.
TRUST_OPTIONS = frozenset({pycurl.CAINFO, pycurl.CAPATH, pycurl.CAINFO_BLOB})


# In Wiring.binds: the handle's INTERFACE names a network device, which libcurl binds with
# SO_BINDTODEVICE, and then binds nothing else (not even LOCALPORT).
DEVICE = -1


def update_binds(binds: dict[int, str] | None, option: int, value: Any) -> dict[int, str] | None:
    """``binds`` after ``setopt(option, value)`` of LOCALPORT or INTERFACE: the options that
    make libcurl bind() the socket it is given, by option, as words for a report."""
    new = dict(binds or {})
    new.pop(option, None)
    if option == pycurl.LOCALPORT:
        if value:
            new[option] = f"LOCALPORT {value}"
        return new or None
    new.pop(DEVICE, None)
    if isinstance(value, (str, bytes)) and value:
        name = value.decode("latin-1") if isinstance(value, bytes) else value
        if name.startswith("if!") or (not name.startswith(("host!", "ifhost!")) and _device(name)):
            # Bound with SO_BINDTODEVICE, which works or not with the process's privileges
            # and the kernel: not predicted. libcurl then binds no address or port.
            new[DEVICE] = name
        else:
            new[option] = f"INTERFACE {name!r}"  # an address or a host name: bind()
    return new or None


def _device(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class Wiring:
    """The callbacks of one routed handle and what it remembers about that handle."""

    owned: ClassVar[frozenset[int]] = OWNED_OPTIONS

    __slots__ = (
        "__weakref__",
        "_handle",
        "armed",
        "binds",
        "channel",
        "follows",
        "generation",
        "interrupt",
        "just_opened",
        "kept",
        "network",
        "outsider",
        "pending",
        "plain",
        "previous",
        "read_since_refill",
        "redirect",
        "seen_fill",
        "share_guard",
        "site",
        "trust",
        "url",
        "user_close",
        "user_connect_to",
        "user_debug",
        "user_open",
        "user_resolve",
        "user_sockopt",
        "user_trust",
        "user_verbose",
    )

    def __init__(self, network: FakeNetwork, site: Site, trust: bool) -> None:
        self.network = network
        self.site = site
        self.url = ""
        self.trust = trust
        self.user_trust = False
        self.generation = -1
        self.pending: list[CallbackError] | tuple[()] = ()  # a list from the first error
        self.user_open: Any = None
        self.user_sockopt: Any = None
        self.user_close: Any = None
        self.user_connect_to: list[str] | tuple[()] = ()
        self.user_resolve: list[str] | tuple[()] = ()
        self.user_verbose = False
        self.user_debug: Any = None
        self.interrupt: BaseException | None = None
        # The record of the descriptor the last opensocket call returned as it is (not a
        # dup): libcurl calls sockopt on that very number next, so no fstat is needed.
        self.just_opened: SocketRecord | None = None
        # The server end of the last pair this handle was given: after libcurl wrote a
        # request on its own connection, that end is the one with input (Loop.pump_own).
        self.channel: Channel | None = None
        self._handle: weakref.ref[Any] | None = None
        # A TLS record this handle announced is not written yet (see _debug).
        self.armed = False
        # The wiring of a closed network this one replaced on the same handle (attach()):
        # a connection that network opened may still sit in the handle's pool, and its
        # close belongs to that network's ledger.
        self.previous: Wiring | None = None
        # The inode (or, from the second, the set of inodes) of the descriptors this wiring
        # handed out and has not seen closed: attach() asks whether the handle may keep one
        # for reuse. An int for the usual one connection: an idle connection stays small.
        self.kept: int | set[int] | None = None
        self.read_since_refill = 0  # response bytes read since the waiting writer's fill
        self.seen_fill: tuple[int, int] | None = None  # that writer and fill, last read
        # FOLLOWLOCATION: 0 off; 1 on; 2 on, and the response libcurl is reading redirects
        # (a 3xx status line). Set by InterceptedCurl.setopt: a plain handle's is unknown.
        self.follows = 0
        # attach() set FORBID_REUSE on the handle (made outside every network): a reset()
        # clears it in C, and after_reset() sets it again.
        self.outsider = False
        # The handle is a plain pycurl.Curl (attach()): no reset() override re-pins it. See
        # refresh() for what that changes.
        self.plain = False
        # The URL libcurl follows in this transfer: the last redirect's Location as libcurl
        # read it (debug callback), resolved against the URL before it. A connection made
        # for it is recorded under it. Cleared when a transfer starts or the URL is set.
        self.redirect: str | None = None
        # The bind options the handle set that a fake pair cannot honour, by option: what
        # to name when its connection is made (see user_bind).
        self.binds: dict[int, str] | None = None
        # The handle was given an InterceptedShare (see _share); a duphandle() copy was not.
        self.share_guard = False

    # installing ------------------------------------------------------------------------
    def install(self, curl: Any) -> None:
        setopt = _SETOPT
        # The wiring itself is the three socket callbacks (see __call__): a bound method each
        # would add 64 bytes to every handle, and a network may keep thousands idle.
        setopt(curl, OPEN, self)
        setopt(curl, SOCKOPT, self)
        setopt(curl, CLOSE, self)
        setopt(curl, pycurl.NOPROXY, "*")
        setopt(curl, VERBOSE, 1)
        setopt(curl, DEBUG, self._debug)  # a bound method: the quicker call, 8-11 a transfer
        self.generation = -1
        self.refresh(curl)
        # The network re-pins every live handle when an endpoint is added (a plain attached
        # handle has no perform() override to do it), and finds the handle to keep alive
        # while its connection is pooled in a multi or share.
        first = self._handle is None
        ref = self._handle = weakref.ref(curl)
        if first:  # once per wiring: reset() installs again
            # A routed handle is found again through its own reference (one weakref fewer
            # per handle); a plain one has no slot naming its wiring.
            self.network._register(weakref.ref(self) if self.plain else ref)

    def pool_keepalive(self) -> Any:
        """This wiring's handle if it belongs to a CurlMulti or CurlShare, else None."""
        return pooled(self._handle)

    def after_reset(self, curl: Any) -> None:
        """``curl.reset()`` cleared every option in C: forget the user's, wire it again."""
        self.user_open = self.user_sockopt = self.user_close = self.user_debug = None
        self.user_verbose = False
        self.user_connect_to, self.user_resolve, self.url, self.user_trust = (), (), "", False
        self.redirect = self.binds = None
        self.follows = 0
        self.install(curl)
        if self.outsider:
            _SETOPT(curl, pycurl.FORBID_REUSE, 1)

    def duplicate(self, dup: Any, site: Site) -> Wiring:
        """Wiring for ``dup``, a ``duphandle()`` copy of this wiring's handle."""
        new = Wiring(self.network, site, self.trust)
        new.url, new.user_trust = self.url, self.user_trust
        new.user_verbose, new.user_debug = self.user_verbose, self.user_debug
        new.binds = None if self.binds is None else dict(self.binds)
        new.follows = 1 if self.follows else 0
        new.outsider = self.outsider  # the copy has FORBID_REUSE too
        new.user_open, new.user_sockopt, new.user_close = (
            self.user_open,
            self.user_sockopt,
            self.user_close,
        )
        new.user_connect_to, new.user_resolve = list(self.user_connect_to), list(self.user_resolve)
        new.install(dup)
        return new

    def refresh(self, curl: Any) -> None:
        """Re-apply the pins if endpoints were added since the last time."""
        net = self.network
        if self.generation == net.generation:
            return
        resolve, connect_to = net.pins()
        connect_to = [*connect_to, *self.user_connect_to]
        if net.strict:
            connect_to = [*connect_to, _SINK_ENTRY]
        set_list(curl, pycurl.CONNECT_TO, connect_to)
        if self.plain:
            # libcurl keeps a RESOLVE list pending until the next transfer starts, and a
            # reset() in C does not clear it while pycurl 7.49 frees the list: a plain
            # handle reset before its next perform() crashes (use-after-free). Only a
            # dual-stack fake's synthetic name needs RESOLVE (CONNECT_TO names the
            # single-stack aliases by address), so a plain handle gets those entries alone,
            # and none (the option unset, clearing any pending list) without such a fake.
            resolve = [e for e in resolve if e.split(":", 1)[0].endswith(SYNTHETIC_SUFFIX)]
        set_list(curl, pycurl.RESOLVE, [*resolve, *self.user_resolve])
        if self.trust and not self.user_trust and net.has_tls:
            _SETOPT(curl, pycurl.CAINFO_BLOB, net._ca_pem())
        self.generation = net.generation

    def refresh_attached(self) -> None:
        ref = self._handle
        curl = ref() if ref is not None else None
        if curl is not None:
            try:
                self.refresh(curl)
            except pycurl.error:  # closed, or in the middle of perform()
                pass

    def user_setopt(self, curl: Any, option: int, value: Any) -> None:
        """A routed handle's own value for an option the wiring owns."""
        if option == OPEN:
            self.user_open = value
        elif option == SOCKOPT:
            self.user_sockopt = value
        elif option == CLOSE:
            # Never pass None down to pycurl: unsetting CLOSESOCKETFUNCTION while a connection
            # is pooled segfaults pycurl 7.49 on the next close.
            self.user_close = value
        elif option == pycurl.CONNECT_TO:
            self.user_connect_to = list(value or [])
            self.generation = -1
            self.refresh(curl)
        elif option == pycurl.RESOLVE:
            self.user_resolve = list(value or [])
            self.generation = -1
            self.refresh(curl)
        elif option == VERBOSE:
            self.user_verbose = bool(value)
        elif option == DEBUG:
            self.user_debug = value
        # NOPROXY: routed handles never use a proxy; the user's value is ignored.

    def user_bind(self, option: int, value: Any) -> None:
        """The handle set LOCALPORT or INTERFACE (already passed to libcurl as it is)."""
        self.binds = update_binds(self.binds, option, value)

    def pump(self) -> None:
        """Serve every ready fake connection now, in the calling thread (WebSocket calls)."""
        loop = self.network._loop
        if loop is not None:
            loop.pump()

    # errors ----------------------------------------------------------------------------
    def _fail(self, where: str, exc: BaseException) -> None:
        if not isinstance(exc, Exception):
            # KeyboardInterrupt, SystemExit: never left pending in pycurl (that would skip
            # closesocket), but raised as themselves once perform() returns.
            self.interrupt = exc
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        err = CallbackError(f"{where} raised {type(exc).__name__}: {exc}\n{tb}")
        err.__cause__ = exc
        if self.pending:
            self.pending.append(err)
        else:
            self.pending = [err]
        self.network._callback_error(err)

    def raise_pending(self) -> None:
        """Raise the first exception recorded by a callback since the last call."""
        if self.interrupt is not None:
            exc, self.interrupt = self.interrupt, None
            raise exc
        if self.pending:
            errors, self.pending = self.pending, ()
            for err in errors:
                self.network._delivered(err)
            raise errors[0]

    # the callbacks ---------------------------------------------------------------------
    def _opensocket(self, purpose: int, address: Any) -> int:
        self.just_opened = None
        try:
            family, _socktype, _protocol, addr = address
            if family == _AF_UNIX:  # CURLOPT_UNIX_SOCKET_PATH: addr is the path
                addr = (f"unix:{os.fsdecode(addr)}", 0)
            fd = self.network.open_socket(family, addr[0], addr[1], self)
            if fd is None:
                return pycurl.SOCKET_BAD
            if fd == PASSTHROUGH:
                return self._passthrough(purpose, address)
            return fd
        except BaseException as exc:
            self._fail("opensocket callback", exc)
            return pycurl.SOCKET_BAD

    def _passthrough(self, purpose: int, address: Any) -> int:
        """Not strict and not a fake: make the socket the user's callback (or libcurl) would."""
        family, socktype, protocol, addr = address
        if self.user_open is not None:
            result = self.user_open(purpose, address)
            if hasattr(result, "fileno"):
                result = os.dup(result.fileno())
            fd = int(result)
        else:
            fd = socket.socket(family, socktype & _SOCKTYPE_MASK, protocol).detach()
        if fd >= 0:
            self.network.ledger.opened(
                SocketRecord(
                    inode=os.fstat(fd).st_ino,
                    fd=fd,
                    family=str(family),
                    peer=f"unix:{os.fsdecode(addr)}"
                    if family == _AF_UNIX
                    else f"{addr[0]}:{addr[1]}",
                    host="",
                    url=self.redirect or self.url,
                    kind="passthrough",
                    connected=False,
                    keepalive=self.pool_keepalive(),
                    opened_in=self.network.label,
                    handle_site=self.site,
                )
            )
        return fd

    def _sockopt(self, fd: int, purpose: int) -> int:
        try:
            rec = self.just_opened
            self.just_opened = None
            ledger = self.network.ledger
            rec = ledger.bind_opened(rec) if rec is not None and rec.fd == fd else ledger.bind(fd)
            if rec is not None and rec.connected:
                return pycurl.SOCKOPT_ALREADY_CONNECTED
            if self.user_sockopt is not None:
                return int(self.user_sockopt(fd, purpose))
            return pycurl.SOCKOPT_OK
        except BaseException as exc:
            self._fail("sockopt callback", exc)
            return 1  # libcurl aborts the attempt (42, or the next address)

    def __call__(self, fd_or_purpose: int, second: Any = None) -> int:
        """The three socket callbacks pycurl makes on this handle, once per connection each,
        told apart by their arguments: CLOSESOCKETFUNCTION ``(fd)``, SOCKOPTFUNCTION ``(fd,
        purpose)``, OPENSOCKETFUNCTION ``(purpose, address)``."""
        if second is None:
            return self._closesocket(fd_or_purpose)
        if type(second) is int:
            return self._sockopt(fd_or_purpose, second)
        return self._opensocket(fd_or_purpose, second)

    def _debug(self, kind: int, data: bytes) -> None:
        # Every transfer makes 8 to 11 of these calls, most of them for libcurl's text lines,
        # which need nothing: those return after three membership tests.
        try:
            if self.armed or kind in _PUMP_AFTER:
                loop = self.network._loop
                if loop is not None:
                    # After libcurl wrote, the handle's own server end has the input, if any
                    # end has (pump_own asks epoll only when other ends are registered).
                    if kind == _SSL_OUT:
                        if self.armed:
                            # The record announced before this one is written by now (an
                            # HTTP/2 upload ends in a burst of records with no other event).
                            loop.pump_own(self.channel)
                        self.armed = True
                    elif loop.pump_own(self.channel):
                        self.armed = False
                if kind == _HEADER_IN and self.follows:  # read while armed (TLS, HTTP/2)
                    self._followed(data)
            elif kind in _AFTER_READ:
                if self.follows and kind == _HEADER_IN:
                    self._followed(data)
                loop = self.network._loop
                if loop is not None and (loop.writers or loop.followers):
                    self._after_read(loop, len(data))
            if self.user_verbose:
                if self.user_debug is not None:
                    self.user_debug(kind, data)
                elif kind in _PREFIX:
                    # What libcurl prints to stderr when VERBOSE has no DEBUGFUNCTION.
                    sys.stderr.write((_PREFIX[kind] + data).decode("latin-1"))
        except BaseException as exc:
            self._fail("debug callback", exc)

    def _followed(self, line: bytes) -> None:
        """A response header line libcurl read, on a handle that follows redirects."""
        if line[:5] == b"HTTP/":  # a status line: "HTTP/1.1 302 Found", "HTTP/2 301"
            parts = line.split(None, 2)
            kind = parts[1][:1] if len(parts) > 1 else b""
            self.follows = 2 if kind == b"3" else 1
            if kind in (b"2", b"4", b"5"):
                # The transfer's final response: the connections it opened are recorded
                # already, and the handle's next transfer starts from its URL, even when a
                # CurlMulti runs it again without a setopt(URL) or a perform() to say so.
                self.redirect = None
            return
        name, colon, value = line.partition(b":")
        target = value.strip()
        if self.follows == 2 and colon and target and name.strip().lower() == b"location":
            base = self.redirect or self.url
            if base and "://" not in base:
                base = "http://" + base  # libcurl's default scheme for a URL without one
            try:
                url = urljoin(base, target.decode("latin-1"))
            except ValueError:
                return  # a Location libcurl cannot follow either (52, 3, ...)
            if "://" in url:
                self.redirect = url

    def _after_read(self, loop: Loop, n: int) -> None:
        """libcurl read ``n`` response bytes while a server end waits for room to write.

        A socket reports room only once most of it is read, so with one writer waiting the
        reads pump once this handle has read 3/4 of that writer's last fill, then every
        read (a 1 MiB body: ~15 pumps, not ~60 mostly empty ones); with several, every
        read pumps. The count restarts only when this handle sees the same writer refilled
        (by anyone) since its previous read: so it never counts less than was read from the
        writer's socket since its last fill, and the read that empties the socket pumps.
        """
        fills = list(loop.fills.items())  # one step: other threads edit it (under the lock)
        if len(fills) == 1:
            fd, (fill, seq) = fills[0]
            seen = self.seen_fill
            if seen is not None and seen[0] == fd and seen[1] != seq:
                self.read_since_refill = 0
            self.seen_fill = (fd, seq)
        else:
            fill = 0
            self.seen_fill = None
        self.read_since_refill += n
        if loop.followers or len(fills) != 1 or self.read_since_refill >= fill * 3 // 4:
            loop.pump()

    def _closesocket(self, fd: int) -> int:
        self.just_opened = None  # closed before its sockopt: its number may come back
        inode = None
        try:
            try:
                inode = os.fstat(fd).st_ino
            except OSError:
                inode = None
            net = self.network
            if inode is not None:
                kept = self.kept
                if kept is not None:
                    if type(kept) is int:
                        if kept == inode:
                            self.kept = None
                    else:
                        kept.discard(inode)  # type: ignore[union-attr]
                if self.previous is not None:
                    net = self._owner_of(inode)
            rec = net.ledger.closing(fd, inode)
            net.socket_closed(rec)
            if self.user_close is not None:
                # The user's callback owns the close, as libcurl's contract says.
                self.user_close(fd)
                return 0
        except BaseException as exc:
            self._fail("closesocket callback", exc)
        try:
            os.close(fd)
        except OSError:
            pass
        return 0

    def note_opened(self, inode: int) -> None:
        kept = self.kept
        if kept is None:
            self.kept = inode
        elif isinstance(kept, int):
            self.kept = {kept, inode}
        else:
            kept.add(inode)

    def may_keep_connections(self) -> bool:
        """Whether a descriptor this wiring handed out may still sit in its handle's pool."""
        kept = self.kept
        if kept is None:
            return False
        return self.network.ledger.any_unclosed((kept,) if isinstance(kept, int) else kept)

    def _owner_of(self, inode: int) -> FakeNetwork:
        """The network that opened ``inode``: this one, or one this wiring replaced."""
        wiring: Wiring | None = self
        while wiring is not None:
            if wiring.network.ledger.knows(inode):
                return wiring.network
            wiring = wiring.previous
        return self.network  # nobody's: this network reports the unknown close


def set_list(curl: Any, option: int, values: list[str]) -> None:
    """Give ``curl`` the list option ``values``; an empty list unsets the option.

    pycurl 7.49 ignores ``setopt(option, [])``, so the previous list stays. After
    ``reset()`` that is a use-after-free: reset frees pycurl's copy of the list while
    libcurl still points at it until the option is set again (a segfault, or a garbled
    RESOLVE entry, on the next ``perform()``).
    """
    if values:
        _SETOPT(curl, option, values)
    else:
        _UNSETOPT(curl, option)


def pooled(ref: weakref.ref[Any] | None) -> Any:
    """The handle behind ``ref`` if it is alive and in a CurlMulti or CurlShare, else None.

    Such a handle must outlive its pooled connection (freeing it first is a use-after-free
    in pycurl when the multi or share closes), so the caller keeps it.
    """
    curl = ref() if ref is not None else None
    if curl is not None and (curl.multi() is not None or curl.share() is not None):
        return curl
    return None
