"""The ``pycurl.Curl`` subclass that routes itself, and swapping it in and out.

Traps this module exists for (pycurl 7.49, see PYCURL_NOTES.md):

* ``reset()`` clears every callback in C; a pooled connection made by the handle then calls a
  closesocket callback that is gone (segfault). The subclass re-installs its callbacks in the
  same call, before control returns to the caller.
* ``setopt(CLOSESOCKETFUNCTION, None)`` / ``unsetopt(...)`` likewise: the subclass keeps the
  C-level callback and records the user's wish instead.
* ``duphandle()`` makes a subclass instance without running ``__init__`` and copies the
  original's callbacks: the copy gets wiring of its own.
* A subclass ``__del__`` that skips ``super().__del__()`` bypasses the dealloc-time close:
  this class defines none, so pycurl's own runs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import pycurl

from ._errors import UsageError
from ._ledger import Site
from ._wiring import OWNED_OPTIONS, TRUST_OPTIONS

__all__ = [
    "PASSIVE_WIRINGS",
    "WATCHED_OPTIONS",
    "HandleWiring",
    "InterceptedCurl",
    "Router",
    "caller_site",
    "install",
    "real_curl",
    "set_wiring",
    "uninstall",
    "uninstall_network",
]


class HandleWiring(Protocol):
    """What an intercepted handle asks of its wiring (``Wiring``, the tracker's wiring)."""

    url: str
    user_trust: bool

    @property
    def owned(self) -> frozenset[int]:
        """Options the wiring keeps for itself; the user's value goes to ``user_setopt``.

        A subset of ``WATCHED_OPTIONS``."""

    def user_setopt(self, curl: Any, option: int, value: Any) -> None: ...
    def refresh(self, curl: Any) -> None: ...
    def raise_pending(self) -> None: ...
    def after_reset(self, curl: Any) -> None: ...
    def duplicate(self, dup: Any, site: Site) -> HandleWiring: ...


class Router(Protocol):
    """What ``install()`` stacks: a ``FakeNetwork`` or a ``Tracker``."""

    @property
    def closed(self) -> bool: ...
    def _wire(self, curl: Any, site: Site) -> HandleWiring: ...


_T = TypeVar("_T")
_REAL_CURL: type[pycurl.Curl] = pycurl.Curl
_lock = threading.Lock()
_stack: list[tuple[int, Router]] = []
_next_token = 0
_HERE = os.path.dirname(os.path.abspath(__file__))
_SETOPT = _REAL_CURL.setopt
_getframe = sys._getframe
_PERFORM = _REAL_CURL.perform
_PERFORM_RB = _REAL_CURL.perform_rb
_PERFORM_RS = _REAL_CURL.perform_rs
# Every option some wiring owns or watches: any other option goes straight to pycurl without
# looking at the handle's wiring. A router's ``owned`` options must all be in here.
WATCHED_OPTIONS = OWNED_OPTIONS | TRUST_OPTIONS | {pycurl.URL}
_URL = pycurl.URL
# Wiring classes whose refresh() and raise_pending() do nothing (the tracker's): perform() on
# their handles goes straight to pycurl.
PASSIVE_WIRINGS: set[type] = set()


def real_curl() -> type[pycurl.Curl]:
    """pycurl's own Curl class, whatever is installed in ``pycurl.Curl`` now."""
    return _REAL_CURL


def caller_site(skip: int = 2, depth: int = 6) -> Site:
    """The first ``depth`` frames outside curlfault, innermost first (a frame walk, cheap).

    Only each frame's code object and instruction offset are read here; ``Site.frames``
    turns them into file names and line numbers when a report needs them. This runs for
    every handle made under a network or a tracker, between two transfers, when the
    processor's caches hold libcurl's work rather than this code: so it reads nothing else
    (each frame attribute read costs about as much as the rest of the loop).

    Handles are made at a few places, again and again, so one ``Site`` per stack is shared
    (a site per handle would add a few hundred bytes to each). A known stack is recognised
    by comparing its frames with a cached site's as they are walked, which costs no more
    than collecting them; a key built from the frames cost more than the walk.
    """
    if depth <= 0:
        return _site_of(())
    frame: Any = _getframe(skip)
    code = frame.f_code
    while code.co_filename.startswith(_HERE):
        frame = frame.f_back
        if frame is None:
            return _site_of(())
        code = frame.f_code
    lasti = frame.f_lasti
    # The innermost place by identity: equal code in two files compares equal. A cached
    # site keeps its code objects, so their ids are not reused while it is cached.
    place = (id(code), lasti)
    known = _SITES.get(place)
    if known is not None:
        for at, site in enumerate(known):
            seen = site._raw
            n = len(seen)
            if n > 2 * depth:
                continue  # deeper than this walk goes: not this stack (a shortcut)
            f = frame
            i = 2
            while i < n:
                f = f.f_back
                if f is None or f.f_code is not seen[i] or f.f_lasti != seen[i + 1]:
                    break
                i += 2
            else:  # every frame of the site matched: the same stack if it is as deep
                if n == 2 * depth or f.f_back is None:
                    if at:  # most recent first: a place's current caller is found at once
                        known.insert(0, known.pop(at))
                    return site
    raw: list[Any] = [code, lasti]
    left = depth - 1
    while left > 0:
        frame = frame.f_back
        if frame is None:
            break
        raw += (frame.f_code, frame.f_lasti)
        left -= 1
    site = _site_of(tuple(raw))
    if known is None:
        if len(_SITES) < _PLACES_MAX:
            _SITES[place] = [site]
    else:
        # The newest first, the least recently used out: a helper that makes handles for
        # test after test sees a new stack in each (the test's own frame is one of them).
        known.insert(0, site)
        if len(known) > _STACKS_PER_PLACE:
            known.pop()
    return site


_site_of = Site.capture
# place -> the sites of the stacks seen through it, most recently used first. Bounded: a
# place keeps its 8 latest stacks (a miss compares each, so few); past 4096 places a handle
# gets a site of its own. Threads may race on a list: a site is then lost or kept twice,
# never given to the wrong stack (each is checked against the stack it is returned for).
_SITES: dict[tuple[int, int], list[Site]] = {}
_PLACES_MAX = 4096
_STACKS_PER_PLACE = 8


class InterceptedCurl(_REAL_CURL):  # type: ignore[misc, valid-type]
    """A ``pycurl.Curl`` that routes itself through the network active when it was made."""

    _cf_network: ClassVar[Router | None] = None
    # A slot, read without pycurl's attribute lookup (which fails over from the type to a
    # dict of its own, raising AttributeError inside). pycurl's setattr ignores slots:
    # write it with ``set_wiring()``. A duphandle() copy has it unset until duphandle()
    # below sets it.
    __slots__ = ("_cf_wiring",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            _REAL_CURL.__init__(self, *args, **kwargs)  # the TypeError pycurl.Curl(1) raises
        net = InterceptedCurl._cf_network
        _set_wiring(self, None if net is None or net.closed else net._wire(self, caller_site()))

    def _cf(self) -> HandleWiring | None:
        try:
            w: HandleWiring | None = self._cf_wiring
        except AttributeError:
            return None
        return w

    def setopt(self, option: int, value: Any) -> None:
        if option not in WATCHED_OPTIONS:
            _SETOPT(self, option, value)  # most options: nothing for the wiring to see
            return
        try:
            w: HandleWiring | None = self._cf_wiring
        except AttributeError:
            w = None
        if w is not None and option in w.owned:
            w.user_setopt(self, option, value)
            return
        _SETOPT(self, option, value)
        if w is not None:
            if option == _URL:
                if type(value) is not str:
                    value = value.decode() if isinstance(value, bytes) else str(value)
                w.url = value
                if type(w) not in PASSIVE_WIRINGS:
                    w.refresh(self)
            elif option in TRUST_OPTIONS and not w.user_trust:
                # The client configures its own trust: drop the network's CA blob, which
                # libcurl would otherwise trust in addition to the client's CA file.
                w.user_trust = True
                if option != pycurl.CAINFO_BLOB:
                    super().unsetopt(pycurl.CAINFO_BLOB)

    def unsetopt(self, option: int) -> None:
        w = self._cf()
        if w is not None and option in w.owned:
            w.user_setopt(self, option, None)
            return
        super().unsetopt(option)

    def reset(self) -> None:
        super().reset()
        w = self._cf()
        if w is not None:
            w.after_reset(self)

    def duphandle(self) -> InterceptedCurl:
        dup: InterceptedCurl = super().duphandle()
        w = self._cf()
        _set_wiring(dup, w.duplicate(dup, caller_site()) if w is not None else None)
        return dup

    def _routed(self, run: Callable[[Any], _T]) -> _T:
        """Re-pin before a transfer; raise what a callback recorded once it returns."""
        __tracebackhide__ = True  # pytest shows the caller's frame, not ours
        try:
            w = self._cf_wiring
        except AttributeError:
            w = None
        if w is None or type(w) in PASSIVE_WIRINGS:
            return run(self)
        w.refresh(self)
        try:
            return run(self)
        finally:
            w.raise_pending()

    def perform(self) -> None:
        __tracebackhide__ = True
        # The passive case (a tracker's handle, or none) inline: one Python frame, not two,
        # on every transfer a tracked suite makes.
        try:
            w = self._cf_wiring
        except AttributeError:
            w = None
        if w is None or type(w) in PASSIVE_WIRINGS:
            _PERFORM(self)
            return
        # _routed() inline (this is every transfer's path): re-pin if endpoints were added,
        # raise what a callback recorded.
        if w.generation != w.network.generation:
            w.refresh(self)
        try:
            _PERFORM(self)
        finally:
            if w.pending or w.interrupt is not None:
                w.raise_pending()

    def perform_rb(self) -> bytes:
        __tracebackhide__ = True
        data: bytes = self._routed(_PERFORM_RB)
        return data

    def perform_rs(self) -> str:
        __tracebackhide__ = True
        text: str = self._routed(_PERFORM_RS)
        return text

    # WebSocket calls on a CONNECT_ONLY=2 handle make no debug event, which is where the
    # fake servers are pumped during perform(): pump around each call instead, so a reply
    # is written before ws_recv looks for it (a zero-timeout poll; nothing waits). A
    # callback error is not raised here (these calls also run inside a WRITEFUNCTION
    # during perform()); perform() or check() raises it.
    def _pumped(self, run: Callable[[], _T]) -> _T:
        __tracebackhide__ = True
        pump = getattr(self._cf(), "pump", None)
        if pump is None:
            return run()
        pump()
        try:
            return run()
        finally:
            pump()

    def ws_send(self, *args: Any, **kwargs: Any) -> int:
        __tracebackhide__ = True
        sent: int = self._pumped(lambda: super(InterceptedCurl, self).ws_send(*args, **kwargs))
        return sent

    def ws_close(self, *args: Any, **kwargs: Any) -> int:
        __tracebackhide__ = True
        sent: int = self._pumped(lambda: super(InterceptedCurl, self).ws_close(*args, **kwargs))
        return sent

    def ws_recv(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._pumped(lambda: super(InterceptedCurl, self).ws_recv(*args, **kwargs))

    def ws_recv_into(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._pumped(lambda: super(InterceptedCurl, self).ws_recv_into(*args, **kwargs))


InterceptedCurl.__module__ = "curlfault"
_set_wiring = InterceptedCurl.__dict__["_cf_wiring"].__set__


def set_wiring(curl: InterceptedCurl, wiring: HandleWiring | None) -> None:
    """Make ``wiring`` the one ``curl``'s overrides consult (``attach()`` re-wiring it)."""
    _set_wiring(curl, wiring)


def install(network: Router) -> int:
    """Make ``pycurl.Curl()`` route through ``network`` until ``uninstall(token)``."""
    global _next_token
    if network.closed:
        raise UsageError("cannot intercept with a closed FakeNetwork")
    with _lock:
        _next_token += 1
        token = _next_token
        _stack.append((token, network))
        _apply()
    return token


def uninstall(token: int) -> None:
    with _lock:
        _stack[:] = [(t, n) for t, n in _stack if t != token]
        _apply()


def uninstall_network(network: Router) -> None:
    with _lock:
        _stack[:] = [(t, n) for t, n in _stack if n is not network]
        _apply()


def _apply() -> None:
    if _stack:
        InterceptedCurl._cf_network = _stack[-1][1]
        pycurl.Curl = InterceptedCurl  # type: ignore[misc]
    else:
        InterceptedCurl._cf_network = None
        pycurl.Curl = _REAL_CURL  # type: ignore[misc]
