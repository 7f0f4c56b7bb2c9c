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

import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeGuard, TypeVar

import pycurl

from . import _share, _sites
from ._errors import CurlFaultWarning, UsageError
from ._ledger import Site
from ._sites import caller_site, own_site
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
    share_guard: bool  # the handle's SHARE is an InterceptedShare (see _share)

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
_SETOPT = _REAL_CURL.setopt
_UNSETOPT = _REAL_CURL.unsetopt
_RESOLVE = pycurl.RESOLVE
_NEW = _REAL_CURL.__new__
_PERFORM = _REAL_CURL.perform
_PERFORM_RB = _REAL_CURL.perform_rb
_PERFORM_RS = _REAL_CURL.perform_rs
# Every option some wiring owns or watches: any other option goes straight to pycurl without
# looking at the handle's wiring. A router's ``owned`` options must all be in here.
WATCHED_OPTIONS = (
    OWNED_OPTIONS | TRUST_OPTIONS | BIND_OPTIONS | {pycurl.URL, pycurl.FOLLOWLOCATION, pycurl.SHARE}
)
_URL = pycurl.URL
_FOLLOW = pycurl.FOLLOWLOCATION
_SHARE = pycurl.SHARE
# Wiring classes whose refresh() and raise_pending() do nothing (the tracker's): perform() on
# their handles goes straight to pycurl.
PASSIVE_WIRINGS: set[type] = set()
# Routers (the tracker) whose handles only ever get such a wiring: while one is the innermost,
# pycurl.Curl is TrackedCurl.
PASSIVE_ROUTERS: set[type] = set()


def real_curl() -> type[pycurl.Curl]:
    """pycurl's own Curl class, whatever is installed in ``pycurl.Curl`` now."""
    return _REAL_CURL


class InterceptedCurl(_REAL_CURL, metaclass=_share.StandIn):  # type: ignore[misc, valid-type]
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
            elif option == _SHARE:
                # No reference kept (a share must be free to go): perform() asks the
                # handle for it. See _share: one thread at a time in a connection cache.
                w.share_guard = _share.guarded(value)
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
        if w is not None:
            if option in BIND_OPTIONS:
                w.user_bind(option, None)
            elif option == _SHARE:
                w.share_guard = False

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
        share = _share.enter_for(self, w.url) if w.share_guard else None
        try:
            return run(self)
        finally:
            if share is not None:
                _share.leave(share)
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
        # A handle in a CurlShare: two threads must not use one connection cache at once.
        share = _share.enter_for(self, w.url) if w.share_guard else None
        try:
            _PERFORM(self)
        finally:
            if share is not None:
                _share.leave(share)
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


class TrackedCurl(InterceptedCurl, metaclass=_share.StandIn):
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
# While either class is pycurl.Curl, isinstance(h, pycurl.Curl) holds for every pycurl handle,
# as it does for pycurl's own class: routed, tracked, and plain ones made before the swap
# (or attached since). curlfault's own checks ask is_routed_class() instead.
InterceptedCurl._cf_stands_for = _REAL_CURL
InterceptedCurl._cf_installed_as = "Curl"
TrackedCurl._cf_stands_for = _REAL_CURL


def is_routed_class(cls: type) -> bool:
    """Whether handles of ``cls`` are ``InterceptedCurl``'s (routable by a wiring): asked
    precisely, whatever ``isinstance`` against the installed class answers."""
    return type.__subclasscheck__(InterceptedCurl, cls)


def is_routed(curl: object) -> TypeGuard[InterceptedCurl]:
    """``is_routed_class(type(curl))``, for a handle."""
    return type.__subclasscheck__(InterceptedCurl, type(curl))


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
    if type(network) not in PASSIVE_ROUTERS:
        _warn_unrouted_classes()
    with _lock:
        _next_token += 1
        token = _next_token
        _stack.append((token, network))
        _apply()
    return token


def unrouted_classes() -> list[type]:
    """Module-level subclasses of pycurl's own ``Curl`` that were defined while nothing
    intercepted: ``pycurl.Curl()`` is swapped, but a class statement took the real class
    as its base, so handles made from them are never routed."""
    found: list[type] = []
    todo = list(_REAL_CURL.__subclasses__())
    while todo:
        cls = todo.pop()
        if is_routed_class(cls):
            continue
        todo += cls.__subclasses__()
        # Only a class its module still names: one made inside a function (a test's own)
        # may be gone already, kept only by a reference cycle until the next collection.
        module = sys.modules.get(cls.__module__)
        if module is None or vars(module).get(cls.__qualname__) is not cls:
            continue  # vars(): no module __getattr__ runs here
        filename = getattr(module, "__file__", None) or ""
        if not _sites.is_library_file(filename):  # an installed package's: not the test's
            found.append(cls)
    return found


def _warn_unrouted_classes() -> None:
    # Every time a network starts intercepting, not once per process: under
    # filterwarnings=error each test that intercepts fails alike, whatever the order, and
    # Python's own filters show it once per place otherwise.
    for cls in unrouted_classes():
        warnings.warn(
            f"{cls.__module__}.{cls.__qualname__} subclasses pycurl.Curl and was defined "
            "before curlfault intercepted, so its handles are not routed: they reach the "
            "real network (a fake host's name goes to the system resolver, CURLcode 6) and "
            "no check sees them. Route each handle with attach() once it is made (then "
            "filter this warning: ignore::curlfault.CurlFaultWarning); under pytest, "
            "--curlfault-strict or --curlfault-leaks swap pycurl.Curl before test modules "
            "are imported, and a class defined then is routed",
            CurlFaultWarning,
            stacklevel=4,  # the code that entered intercept()
        )


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
        # A network's shares know whether they hold connections (see _share).
        pycurl.CurlShare = _share.REAL_SHARE if passive else _share.InterceptedShare  # type: ignore[misc]
    else:
        InterceptedCurl._cf_network = None
        pycurl.Curl = _REAL_CURL  # type: ignore[misc]
        pycurl.CurlShare = _share.REAL_SHARE  # type: ignore[misc]
