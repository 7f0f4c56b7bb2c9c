"""``pycurl.CurlShare`` while a network intercepts: a share that remembers whether it holds
libcurl's connection cache, and the guard that keeps two threads from using that cache at
once.

libcurl does not support sharing connections between concurrent threads (its documentation
of ``CURL_LOCK_DATA_CONNECT`` says so). Without callbacks such a client often gets away with
it; with the Python callbacks a fake network installs (debug, opensocket, closesocket) the
interpreter crashes within a few transfers (a segfault in libcurl's connection pool, or a
"thread state" fatal error). So a routed handle whose share holds connections may only
perform while no other thread performs a handle of the same share; a second thread's
``perform()`` raises ``ClientError`` instead, before libcurl runs. Sharing DNS, cookies or
TLS sessions across threads is supported by libcurl and left alone.

A share made before the network intercepted (a plain ``pycurl.CurlShare``) is not known to
hold connections, so it is not guarded; nor are transfers a ``CurlMulti`` drives (only
``perform()`` is watched).
"""

from __future__ import annotations

import threading
from typing import Any

import pycurl

from ._errors import ClientError

__all__ = [
    "REAL_SHARE",
    "InterceptedShare",
    "StandIn",
    "enter",
    "enter_for",
    "guarded",
    "leave",
    "shared_connections",
]

REAL_SHARE: type[pycurl.CurlShare] = pycurl.CurlShare
_SHARE_SETOPT = REAL_SHARE.setopt
_CONNECT = pycurl.LOCK_DATA_CONNECT
_SH_SHARE = pycurl.SH_SHARE
_SH_UNSHARE = pycurl.SH_UNSHARE
_lock = threading.Lock()


class StandIn(type):
    """The metaclass of a class that stands in for another as a ``pycurl`` attribute
    (``pycurl.Curl``, ``pycurl.CurlShare``): ``isinstance``/``issubclass`` against it answer
    for the class named in its own ``_cf_stands_for``, so an object made before the swap
    still passes. Subclasses (a user's) answer for themselves.

    A class that also names ``_cf_installed_as`` (the ``pycurl`` attribute) answers for that
    class only while it is installed there, and for itself otherwise: ``InterceptedCurl``,
    a public class that curlfault's own checks ask precisely (see ``is_routed_class``).
    """

    def _standing_for(cls) -> type | None:
        """The class ``cls`` answers for now, or None when it answers for itself."""
        target: type | None = cls.__dict__.get("_cf_stands_for")
        name = cls.__dict__.get("_cf_installed_as")
        if target is None or name is None or getattr(pycurl, name, None) is cls:
            return target
        return None

    def __instancecheck__(cls, obj: object) -> bool:
        target = cls._standing_for()
        if target is not None:
            return isinstance(obj, target)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        target = cls._standing_for()
        if target is not None:
            return issubclass(sub, target)
        return type.__subclasscheck__(cls, sub)


class InterceptedShare(REAL_SHARE, metaclass=StandIn):  # type: ignore[misc, valid-type]
    """A ``pycurl.CurlShare`` that knows whether it shares the connection cache."""

    # Slots, read with getattr() and written through their descriptors: pycurl's own
    # attribute lookup would find a class default before an instance's value.
    # _cf_connections: SH_SHARE LOCK_DATA_CONNECT set (and not unset since);
    # _cf_busy: thread ident -> transfers running in it.
    __slots__ = ("_cf_busy", "_cf_connections")

    def setopt(self, option: int, value: Any) -> None:
        _SHARE_SETOPT(self, option, value)
        if value == _CONNECT and option in (_SH_SHARE, _SH_UNSHARE):
            _set_connections(self, option == _SH_SHARE)


InterceptedShare._cf_stands_for = REAL_SHARE
_set_connections = InterceptedShare.__dict__["_cf_connections"].__set__
_set_busy = InterceptedShare.__dict__["_cf_busy"].__set__


def guarded(share: Any) -> bool:
    """Whether ``share`` (a value given to SHARE) is one this module can ask about."""
    return InterceptedShare in type(share).__mro__


def shared_connections(share: Any) -> bool:
    """Whether ``share`` (a handle's SHARE) holds the connection cache, as far as known."""
    return share is not None and getattr(share, "_cf_connections", False) is True


def enter_for(curl: Any, url: str) -> Any:
    """The connection-sharing share of ``curl``, entered for this thread (see ``enter``), or
    None if its share holds no connections. Pair with ``leave(share)``."""
    share = curl.share()
    if not shared_connections(share):
        return None
    enter(share, url)
    return share


def enter(share: Any, url: str) -> None:
    """A transfer of a handle in ``share`` starts in this thread; raise if another thread
    has one running (see the module's docstring)."""
    me = threading.get_ident()
    with _lock:
        busy = getattr(share, "_cf_busy", None)
        if busy is None:
            busy = {}
            _set_busy(share, busy)
        elif any(t != me for t in busy):
            raise ClientError(
                f"two threads performed pycurl handles that share one connection cache at "
                f"once (a CurlShare with SH_SHARE LOCK_DATA_CONNECT; this transfer: "
                f"{url or 'no URL set'}): libcurl does not support sharing connections "
                "between concurrent threads, and with a fake network's callbacks it crashes "
                "the interpreter; give each thread its own CurlShare (DNS, cookies and TLS "
                "sessions may still be shared across threads), or drive the transfers from "
                "one thread with a CurlMulti"
            )
        busy[me] = busy.get(me, 0) + 1


def leave(share: Any) -> None:
    """The transfer ``enter()`` admitted has ended."""
    me = threading.get_ident()
    with _lock:
        busy = getattr(share, "_cf_busy", None)
        if busy is not None:
            n = busy.get(me, 0) - 1
            if n > 0:
                busy[me] = n
            else:
                busy.pop(me, None)
