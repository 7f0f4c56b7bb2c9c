"""The callbacks of one tracked handle (see ``Tracker``): what runs on a transfer.

With ``leaks=True`` a handle gets one callback, SOCKOPTFUNCTION: libcurl makes each socket
itself, in C, and hands its descriptor to the callback, which records ``(inode, seq, label,
url, site)`` under the descriptor number. That is one Python call, one ``fstat`` and a tuple
per connection; nothing per transfer on a reused connection.

No CLOSESOCKETFUNCTION is installed unless the handle sets one of its own: libcurl then closes
its sockets itself and never closes one twice, and a closed descriptor is found at audit
time (see ``Tracker.open_records``). Once a handle sets its own, curlfault's close callback
sits in front of it for the rest of the handle's life, counts closes (double and unknown
closes are events), and keeps the handle alive while one of its connections may sit in a
CurlMulti/CurlShare pool (the use-after-free described in ``_tracking``). Its opensocket
sits in front too, noting each socket made: libcurl closes one that sockopt never sees (an
FTP active-mode listener), which is then known as libcurl's, not a stranger's.

With ``strict=True`` the handle also gets OPENSOCKETFUNCTION (refuse, or make the socket
libcurl would have made) and a CONNECT_TO list, unless it is made while the tracker is
``relaxed`` (a test marked ``curlfault(strict=False)``): its ``owned`` options then leave
CONNECT_TO out, which is what "strict" means for one handle.
"""

from __future__ import annotations

import os
import socket
import weakref
from typing import TYPE_CHECKING, Any

import pycurl

from . import _intercept
from ._ledger import Site, socket_inode
from ._wiring import pooled, set_list, update_binds

if TYPE_CHECKING:
    from ._tracking import Tracker

__all__ = ["TrackWiring"]

_SETOPT = pycurl.Curl.setopt
_OPEN = pycurl.OPENSOCKETFUNCTION
_SOCKOPT = pycurl.SOCKOPTFUNCTION
_CLOSE = pycurl.CLOSESOCKETFUNCTION
_CONNECT_TO = pycurl.CONNECT_TO
_SOCKET_BAD = pycurl.SOCKET_BAD
SOCKTYPE_MASK = ~(getattr(socket, "SOCK_CLOEXEC", 0) | getattr(socket, "SOCK_NONBLOCK", 0))
_fstat = os.fstat  # a module global, so a test can make recording fail


class TrackWiring:
    """The callbacks of one tracked handle, and the user's own values for them.

    Made for every handle: only ``tracker``, ``site`` and ``owned`` are set per instance,
    the rest are class defaults until a handle sets something of its own.
    """

    url = ""
    redirect: str | None = None  # not followed: a tracked handle has no debug callback
    follows = 0  # FOLLOWLOCATION, kept for a network that attach()es the handle later
    binds: dict[int, str] | None = None  # LOCALPORT / INTERFACE, likewise
    share_guard = False  # SHARE, likewise (a network guards it: see _share)
    user_trust = True  # never touch trust options: this is the real network
    user_open: Any = None
    user_sockopt: Any = None
    user_close: Any = None
    user_connect_to: tuple[str, ...] = ()
    # The handle (weakly), once curlfault's CLOSESOCKETFUNCTION is on it: from then on it
    # stays on, through reset() and into duphandle() copies.
    closing: weakref.ref[Any] | None = None

    def __init__(self, tracker: Tracker, site: Site) -> None:
        self.tracker = tracker
        self.site = site
        self.owned = tracker._owned

    # what InterceptedCurl asks of its wiring -------------------------------------------
    @property
    def strict(self) -> bool:
        """Whether this handle's connections are refused unless allowed: the tracker's
        strict mode, unless the handle was made while the tracker was ``relaxed``."""
        return _CONNECT_TO in self.owned

    def install(self, curl: Any) -> None:
        tracker = self.tracker
        if tracker.leaks:
            _SETOPT(curl, _SOCKOPT, self._sockopt)
        if self.strict:
            _SETOPT(curl, _OPEN, self._opensocket)
            set_list(curl, _CONNECT_TO, [*self.user_connect_to, *tracker._pins()])
        if self.closing is not None:
            self._close_through_us(curl)

    def _close_through_us(self, curl: Any) -> None:
        """From now on every close of this handle goes through curlfault, and so does
        every socket it makes: a socket libcurl closes that sockopt never saw (an FTP
        active-mode listener) is then known as libcurl's, not taken for a stranger's."""
        self.closing = weakref.ref(curl)
        _SETOPT(curl, _OPEN, self._opensocket)  # chains the handle's own, if any
        _SETOPT(curl, _CLOSE, self._closesocket)

    def user_setopt(self, curl: Any, option: int, value: Any) -> None:
        if option == _SOCKOPT:
            self.user_sockopt = value
        elif option == _CLOSE:
            # Never passed down: unsetting CLOSESOCKETFUNCTION while a connection is pooled
            # segfaults pycurl 7.49 on the next close. Ours goes on with the first one set.
            self.user_close = value
            if value is not None and self.closing is None:
                self._close_through_us(curl)
        elif option == _OPEN:
            self.user_open = value
            if not self.strict and self.closing is None:
                _SETOPT(curl, _OPEN, value)  # nothing of curlfault's in front of it yet
        elif option == _CONNECT_TO:
            # The user's entries first: the sink entry matches every host.
            self.user_connect_to = tuple(value or ())
            set_list(curl, _CONNECT_TO, [*self.user_connect_to, *self.tracker._pins()])

    def user_bind(self, option: int, value: Any) -> None:
        # Real connections: libcurl binds them itself. Kept for a network that attach()es
        # the handle later.
        self.binds = update_binds(self.binds, option, value)

    # Neither is called (the class is in PASSIVE_WIRINGS: perform() and setopt(URL) skip
    # them); they are here for the HandleWiring protocol.
    def refresh(self, curl: Any) -> None:
        pass  # nothing changes per transfer: the allow-list is fixed

    def raise_pending(self) -> None:
        pass  # the user's exceptions take pycurl's own path; ours are events

    def after_reset(self, curl: Any) -> None:
        self.user_open = self.user_sockopt = self.user_close = None
        self.follows, self.binds = 0, None
        self.user_connect_to, self.url = (), ""
        self.install(curl)

    def duplicate(self, dup: Any, site: Site) -> TrackWiring:
        new = TrackWiring(self.tracker, site)
        new.owned = self.owned  # a copy of a relaxed handle is relaxed too
        new.url, new.user_open, new.user_close = self.url, self.user_open, self.user_close
        new.follows, new.binds = self.follows, self.binds
        new.user_sockopt, new.user_connect_to = self.user_sockopt, self.user_connect_to
        if self.closing is not None:
            new.closing = weakref.ref(dup)  # the copy has our close callback too
        new.install(dup)
        return new

    def pooled_handle(self) -> Any:
        """The handle, if curlfault's close callback is on it and it is in a multi or share."""
        return pooled(self.closing)

    # the callbacks ---------------------------------------------------------------------
    def _sockopt(self, fd: int, purpose: int) -> int:
        tracker = self.tracker
        try:
            if self.closing is not None:
                tracker._made.pop(fd, None)  # a record from here on
            entry = (_fstat(fd).st_ino, next(tracker._seq), tracker.label, self.url, self.site)
            tracker._open[fd] = entry  # a stale entry under this number was closed: replaced
            if self.closing is not None:
                tracker._guard(self, entry[0])
        except Exception as exc:
            tracker._internal_error("sockopt callback", exc)
            if self.closing is not None:
                tracker._unrecorded.add(fd)  # still ours to close when libcurl asks
        user = self.user_sockopt
        if user is not None:
            # Exceptions take pycurl's own path, as untracked.
            result: int = user(fd, purpose)
            return result
        return 0

    def _opensocket(self, purpose: int, address: Any) -> int:
        tracker = self.tracker
        if self.strict:
            try:
                allowed = tracker._allowed(self, address)
            except Exception as exc:
                tracker._internal_error("opensocket callback", exc)
                allowed = False
            if not allowed:
                return _SOCKET_BAD
        user = self.user_open
        if user is not None:
            # Exceptions take pycurl's own path (printed, then CURLcode 7), as untracked.
            result = user(purpose, address)
            fd = os.dup(result.fileno()) if hasattr(result, "fileno") else int(result)
        else:
            family, socktype, protocol, _addr = address
            try:
                fd = socket.socket(family, socktype & SOCKTYPE_MASK, protocol).detach()
            except OSError:
                return _SOCKET_BAD  # what libcurl does when socket() fails: next address, or 7
        if self.closing is not None and fd >= 0:
            try:
                tracker._made[fd] = _fstat(fd).st_ino
            except Exception as exc:
                tracker._internal_error("opensocket callback", exc)
                tracker._unrecorded.add(fd)  # still ours to close when libcurl asks
        return fd

    def _closesocket(self, fd: int) -> int:
        tracker = self.tracker
        try:
            rec, inode, unrecorded = tracker._closing(self, fd)
        except Exception as exc:
            tracker._internal_error("closesocket callback", exc)
            rec, inode, unrecorded = None, None, False
        user = self.user_close
        if user is not None:
            try:
                result = user(fd)  # libcurl's contract: the callback closes the descriptor
            finally:
                if rec is not None:
                    tracker._closed_socket(fd, rec, still_open=socket_inode(fd) == inode)
            return result if isinstance(result, int) else 0
        if rec is not None or unrecorded:
            tracker._unrecorded.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass
            if rec is not None:
                tracker._closed_socket(fd, rec, still_open=False)
        # An unknown descriptor is left alone: closing a number libcurl no longer owns
        # could close somebody else's socket. The event says so.
        return 0


_intercept.PASSIVE_WIRINGS.add(TrackWiring)
