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
from ._wiring import BIND_OPTIONS, OWNED_OPTIONS, TRUST_OPTIONS

__all__ = [
    "PASSIVE_ROUTERS",
    "PASSIVE_WIRINGS",
    "WATCHED_OPTIONS",
    "HandleWiring",
    "InterceptedCurl",
    "Router",
    "TrackedCurl",
    "caller_site",
    "install",
    "own_site",
    "real_curl",
    "router_in_use",
    "set_wiring",
    "uninstall",
    "uninstall_network",
]


class HandleWiring(Protocol):
    """What an intercepted handle asks of its wiring (``Wiring``, the tracker's wiring)."""

    url: str
    user_trust: bool
    redirect: str | None  # the URL a response's Location sent the transfer to
    follows: int  # FOLLOWLOCATION is on (non-zero)
    binds: dict[int, str] | None  # LOCALPORT / INTERFACE the handle set (update_binds)

    @property
    def owned(self) -> frozenset[int]:
        """Options the wiring keeps for itself; the user's value goes to ``user_setopt``.

        A subset of ``WATCHED_OPTIONS``."""

    def user_setopt(self, curl: Any, option: int, value: Any) -> None: ...
    def user_bind(self, option: int, value: Any) -> None: ...
    def refresh(self, curl: Any) -> None: ...
    def raise_pending(self) -> None: ...
    def after_reset(self, curl: Any) -> None: ...
    def duplicate(self, dup: Any, site: Site) -> HandleWiring: ...


class Router(Protocol):
    """What ``install()`` stacks: a ``FakeNetwork`` or a ``Tracker``."""

    @property
    def closed(self) -> bool: ...
    def _wire(self, curl: Any, site: Site) -> HandleWiring: ...
    def _stray_connection(self, text: str, site: Site) -> None: ...


_T = TypeVar("_T")
_REAL_CURL: type[pycurl.Curl] = pycurl.Curl
_lock = threading.Lock()
_stack: list[tuple[int, Router]] = []
_next_token = 0
_HERE = os.path.dirname(os.path.abspath(__file__))
_SETOPT = _REAL_CURL.setopt
_UNSETOPT = _REAL_CURL.unsetopt
_RESOLVE = pycurl.RESOLVE
_getframe = sys._getframe
_NEW = _REAL_CURL.__new__
_PERFORM = _REAL_CURL.perform
_PERFORM_RB = _REAL_CURL.perform_rb
_PERFORM_RS = _REAL_CURL.perform_rs
# Every option some wiring owns or watches: any other option goes straight to pycurl without
# looking at the handle's wiring. A router's ``owned`` options must all be in here.
WATCHED_OPTIONS = OWNED_OPTIONS | TRUST_OPTIONS | BIND_OPTIONS | {pycurl.URL, pycurl.FOLLOWLOCATION}
_URL = pycurl.URL
_FOLLOW = pycurl.FOLLOWLOCATION
# Wiring classes whose refresh() and raise_pending() do nothing (the tracker's): perform() on
# their handles goes straight to pycurl.
PASSIVE_WIRINGS: set[type] = set()
# Routers (the tracker) whose handles only ever get such a wiring: while one is the innermost,
# pycurl.Curl is TrackedCurl.
PASSIVE_ROUTERS: set[type] = set()


def real_curl() -> type[pycurl.Curl]:
    """pycurl's own Curl class, whatever is installed in ``pycurl.Curl`` now."""
    return _REAL_CURL


def caller_site(skip: int = 2, depth: int = 6) -> Site:
    """The first ``depth`` frames outside curlfault, innermost first (a frame walk, cheap).

    Only each frame's code object and instruction offset are read here; ``Site.frames``
    turns them into file names and line numbers when a report needs them. This runs for
    every handle made under a network or a tracker, so the usual depth (6) is walked
    without a loop, and the frames read make the key of a cache of sites: handles are made
    at a few places, again and again, and share one ``Site`` per stack (a site per handle
    would add a few hundred bytes to each). The key holds each code object's identity, not
    the code object: equal code in two files compares equal.
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
    library = _LIBRARY_FILES.get(code.co_filename)
    if library is None:
        library = _is_library_file(code.co_filename)
    if library:
        depth += _library_frames(frame)
    if depth != 6:
        return _walked_site(frame, depth)
    # A stack that ends first (a thread's) goes on with _END, whose code is None.
    f1 = frame.f_back or _END
    f2 = f1.f_back or _END
    f3 = f2.f_back or _END
    f4 = f3.f_back or _END
    f5 = f4.f_back or _END
    c1, c2, c3, c4, c5 = f1.f_code, f2.f_code, f3.f_code, f4.f_code, f5.f_code
    l0, l1, l2, l3, l4, l5 = (
        frame.f_lasti,
        f1.f_lasti,
        f2.f_lasti,
        f3.f_lasti,
        f4.f_lasti,
        f5.f_lasti,
    )
    key = (id(code), l0, id(c1), l1, id(c2), l2, id(c3), l3, id(c4), l4, id(c5), l5)
    site = _SITES.get(key)
    if site is None:
        raw: tuple[Any, ...] = (code, l0, c1, l1, c2, l2, c3, l3, c4, l4, c5, l5)
        site = _cached(key, raw)  # a stack that ended early ends in (None, -1) pairs
    return site


def own_site(skip: int = 2) -> Site:
    """``caller_site()`` (depth 6) without the cache: a site of its own for one handle.

    For the tracker's handles (``TrackedCurl``), made by the thousand in a tracked suite:
    building the cache key (six ``id()`` calls, a 12-tuple hashed and compared) costs more
    than the frame reads themselves, about 4,000 of the 36,000 instructions tracking adds
    to a fresh handle's transfer. The price is a tuple per handle (about 150 bytes) instead
    of one per stack; fake networks' handles, whose memory per idle connection is a target,
    keep the cache. caller_site's walk is written out again here on purpose: a shared
    helper, or caller_site(cached=False), measured 2,000 more instructions per handle.
    """
    frame: Any = _getframe(skip)
    code = frame.f_code
    while code.co_filename.startswith(_HERE):
        frame = frame.f_back
        if frame is None:
            return _site_of(())
        code = frame.f_code
    library = _LIBRARY_FILES.get(code.co_filename)
    if library is None:
        library = _is_library_file(code.co_filename)
    if library:
        return _walked_site(frame, 6 + _library_frames(frame))
    f1 = frame.f_back or _END
    f2 = f1.f_back or _END
    f3 = f2.f_back or _END
    f4 = f3.f_back or _END
    f5 = f4.f_back or _END
    raw: tuple[Any, ...] = (
        code,
        frame.f_lasti,
        f1.f_code,
        f1.f_lasti,
        f2.f_code,
        f2.f_lasti,
        f3.f_code,
        f3.f_lasti,
        f4.f_code,
        f4.f_lasti,
        f5.f_code,
        f5.f_lasti,
    )
    return _site_of(raw)  # a stack that ended early ends in (None, -1) pairs: Site skips them


class _END:
    """Past the outermost frame: what ``caller_site`` reads there instead of a frame."""

    f_code = None
    f_lasti = -1
    f_back: Any = None


_END.f_back = _END


def _library_prefixes() -> tuple[str, ...]:
    """Where installed packages and the standard library live on this machine."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - an embedded interpreter's stripped site module
        pass
    return tuple(sorted(os.path.join(os.path.abspath(p), "") for p in paths if p))


_LIBRARY_PREFIXES = _library_prefixes()
_LIBRARY_PARTS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
# co_filename -> whether it is a library's (see caller_site): one lookup per handle made.
_LIBRARY_FILES: dict[str, bool] = {}
_LIBRARY_FILES_MAX = 4096
# How many library frames caller_site walks past at most, looking for the code that called
# the library: a deeper stack keeps this many library frames and the next six.
LIBRARY_FRAMES_MAX = 24


def _is_library_file(filename: str) -> bool:
    """Whether ``filename`` is an installed package's or the standard library's (cached)."""
    library = (
        filename.startswith(_LIBRARY_PREFIXES)
        or any(part in filename for part in _LIBRARY_PARTS)
        or filename.startswith("<frozen ")
    )
    if len(_LIBRARY_FILES) >= _LIBRARY_FILES_MAX:
        _LIBRARY_FILES.clear()  # bounded, like the site cache
    _LIBRARY_FILES[filename] = library
    return library


def _library_frames(frame: Any) -> int:
    """How many frames from ``frame`` outward are a library's (at most LIBRARY_FRAMES_MAX).

    A handle made inside a library (tornado's client makes its handles five frames deep)
    would otherwise be recorded with the library's frames only, and a leak report would not
    name the test code that made the client. The library's frames stay in the site: a scope
    pattern such as ``*/tornado/curl_httpclient.py::_curl_create`` still matches.
    """
    n = 0
    while frame is not None and n < LIBRARY_FRAMES_MAX:
        filename = frame.f_code.co_filename
        library = _LIBRARY_FILES.get(filename)
        if library is None:
            library = _is_library_file(filename)
        if not library:
            break
        n += 1
        frame = frame.f_back
    return n


def _walked_site(frame: Any, depth: int) -> Site:
    """``caller_site`` for a depth other than 6: a loop, the same cache."""
    raw: list[Any] = []
    ids: list[int] = []
    while frame is not None and depth > 0:
        code, lasti = frame.f_code, frame.f_lasti
        raw += (code, lasti)
        ids += (id(code), lasti)
        frame = frame.f_back
        depth -= 1
    key = tuple(ids)
    return _SITES.get(key) or _cached(key, tuple(raw))


def _cached(key: tuple[int, ...], raw: tuple[Any, ...]) -> Site:
    if len(_SITES) >= _SITES_MAX:
        # Bounded memory: start over (one step, safe against other threads). A helper that
        # makes handles for test after test sees a new stack in each.
        _SITES.clear()
    # A site keeps its code objects, so the identities in its key are not reused while
    # the key is in the cache. Threads may race here: a site is then made twice, and each
    # is right for the stack it is returned for.
    site = _SITES[key] = _site_of(raw)
    return site


_site_of = Site.capture
# (id(code), f_lasti, ...) of a stack, innermost first -> its site.
_SITES: dict[tuple[int, ...], Site] = {}
_SITES_MAX = 2048


class InterceptedCurl(_REAL_CURL):  # type: ignore[misc, valid-type]
    """A ``pycurl.Curl`` that routes itself through the network active when it was made."""

    _cf_network: ClassVar[Router | None] = None
    # A slot, read without pycurl's attribute lookup (which fails over from the type to a
    # dict of its own, raising AttributeError inside). pycurl's setattr ignores slots:
    # write it with ``set_wiring()``. A duphandle() copy has it unset until duphandle()
    # below sets it.
    __slots__ = ("_cf_wiring",)

    # Wired in __new__, not __init__: a subclass whose __init__ skips super().__init__()
    # is still routed (pycurl's own handle exists once its __new__ returns).
    def __new__(cls, *args: Any, **kwargs: Any) -> InterceptedCurl:
        if (args or kwargs) and cls.__init__ is object.__init__:
            # What pycurl.Curl(1) raises; a subclass's own __init__ takes its arguments.
            raise TypeError(f"{cls.__name__}() takes no arguments")
        self: InterceptedCurl = _NEW(cls)
        net = InterceptedCurl._cf_network
        # set_wiring also turns a TrackedCurl that a network wires into an InterceptedCurl:
        # one made from a TrackedCurl reference taken before the network intercepted (`from
        # pycurl import Curl` under --curlfault-leaks, or another thread's lookup).
        set_wiring(self, None if net is None or net.closed else net._wire(self, caller_site()))
        return self

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
                    w.redirect = None  # a transfer driven by a CurlMulti starts here
                    w.refresh(self)
            elif option == _FOLLOW:
                w.follows = 1 if value else 0  # kept by a tracker's wiring too, for attach()
                w.redirect = None
            elif option in BIND_OPTIONS:
                w.user_bind(option, value)  # a tracker's wiring keeps them for attach()
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
        if w is not None and option in BIND_OPTIONS:
            w.user_bind(option, None)

    def reset(self) -> None:
        # libcurl keeps a RESOLVE list pending until the next transfer starts, and its reset
        # leaves that pointer while pycurl 7.49's reset() frees the list: the next perform()
        # would read freed memory (a segfault, with or without curlfault). Unset first, and
        # libcurl forgets it. (A plain handle's reset() runs in C: see attach().)
        _UNSETOPT(self, _RESOLVE)
        super().reset()
        w = self._cf()
        if w is not None:
            w.after_reset(self)

    def duphandle(self) -> InterceptedCurl:
        dup: InterceptedCurl = super().duphandle()
        w = self._cf()
        set_wiring(dup, w.duplicate(dup, caller_site()) if w is not None else None)
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
        w.redirect = None  # a new transfer
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
        if w.follows:
            w.redirect = None  # a new transfer (only a following handle ever has one)
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


_TRANSFERS = (
    "perform",
    "perform_rb",
    "perform_rs",
    "ws_send",
    "ws_close",
    "ws_recv",
    "ws_recv_into",
)


class _TrackedMeta(type):
    """``pycurl.Curl`` is ``TrackedCurl`` while a tracker is innermost: every routed handle
    still passes ``isinstance(h, pycurl.Curl)``, as it does while it is ``InterceptedCurl``."""

    def __instancecheck__(cls, obj: object) -> bool:
        if cls is TrackedCurl:
            return isinstance(obj, InterceptedCurl)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls is TrackedCurl:
            return issubclass(sub, InterceptedCurl)
        return type.__subclasscheck__(cls, sub)


class TrackedCurl(InterceptedCurl, metaclass=_TrackedMeta):
    """``pycurl.Curl`` while a tracker is the innermost router (see ``PASSIVE_ROUTERS``).

    The handle's wiring stays passive for its life, so its transfers are pycurl's own
    methods, without a Python frame in front: the cost of ``--curlfault-leaks`` is paid per
    connection, not per transfer. A handle that a network wires (``attach()``, or made from
    a ``TrackedCurl`` reference under ``intercept()``) becomes an ``InterceptedCurl``.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> InterceptedCurl:
        # InterceptedCurl.__new__ for the usual case, a tracker innermost, in one frame:
        # this runs for every handle a tracked suite makes.
        net = InterceptedCurl._cf_network
        if net is None or type(net) not in PASSIVE_ROUTERS or net.closed or args or kwargs:
            # A network intercepts now (a TrackedCurl reference taken earlier), or nothing
            # does, or arguments to refuse: the general path.
            return InterceptedCurl.__new__(cls, *args, **kwargs)
        self: InterceptedCurl = _NEW(cls)
        _set_wiring(self, net._wire(self, own_site()))  # a passive wiring: the class stays
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A user's subclass of pycurl.Curl made under the tracker may be routed by a network
        # later, keeping its own methods: it gets InterceptedCurl's transfer methods back.
        super().__init_subclass__(**kwargs)
        for name in _TRANSFERS:
            if name not in cls.__dict__:
                setattr(cls, name, InterceptedCurl.__dict__[name])


for _name in _TRANSFERS:
    setattr(TrackedCurl, _name, getattr(_REAL_CURL, _name))


# pycurl's own __setattr__ refuses __class__; the descriptor's setter does not.
_set_class = object.__dict__["__class__"].__set__


def set_wiring(curl: InterceptedCurl, wiring: HandleWiring | None) -> None:
    """Make ``wiring`` the one ``curl``'s overrides consult (``attach()`` re-wiring it)."""
    if type(curl) is TrackedCurl and wiring is not None and type(wiring) not in PASSIVE_WIRINGS:
        _set_class(curl, InterceptedCurl)  # its transfers must now go through the wiring
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


def router_in_use(other_than: object = None) -> Router | None:
    """The innermost installed router that is open (and not ``other_than``), if any."""
    for _token, router in reversed(tuple(_stack)):  # one step: other threads edit it
        if router is not other_than and not router.closed:
            return router
    return None


def uninstall_network(network: Router) -> None:
    # No lock to find it absent (the usual case: it left already). tuple() copies the stack
    # in one step; a loop over the list itself could skip an entry that another thread's
    # uninstall() moves down meanwhile.
    for _token, routed in tuple(_stack):
        if routed is network:
            break
    else:
        return
    with _lock:
        _stack[:] = [(t, n) for t, n in _stack if n is not network]
        _apply()


def _apply() -> None:
    if _stack:
        top = _stack[-1][1]
        InterceptedCurl._cf_network = top
        passive = type(top) in PASSIVE_ROUTERS
        pycurl.Curl = TrackedCurl if passive else InterceptedCurl  # type: ignore[misc]
    else:
        InterceptedCurl._cf_network = None
        pycurl.Curl = _REAL_CURL  # type: ignore[misc]
