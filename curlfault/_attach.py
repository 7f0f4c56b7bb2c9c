"""``FakeNetwork.attach()``: route a handle made earlier through a network.

A handle may have been made outside every network (a plain ``pycurl.Curl``, or one the
tracker of ``--curlfault-leaks`` wired), or under another network, open or closed. Its new
wiring keeps what the handle's libcurl options still say (URL, redirects, bind options, its
own trust settings), and the wirings of networks whose connection the handle may still keep
in its pool, so that each such close is counted by the ledger that opened it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pycurl

from . import _intercept
from ._errors import UsageError
from ._ledger import AttachSite
from ._wiring import Wiring

if TYPE_CHECKING:
    from ._network import FakeNetwork

__all__ = ["attach_handle"]


def attach_handle(net: FakeNetwork, curl: pycurl.Curl, trust: bool) -> pycurl.Curl:
    """What ``net.attach(curl, trust=...)`` does; returns ``curl``."""
    if net.closed:
        raise UsageError("this FakeNetwork is closed; make a new one")
    if not isinstance(curl, _intercept.real_curl()):
        raise UsageError(
            f"attach() routes a pycurl.Curl handle, got {type(curl).__name__}; a "
            "CurlMulti or CurlShare is routed through the handles added to it"
        )
    wiring = Wiring(
        net,
        AttachSite.of(_intercept.caller_site()),
        trust=trust,
    )
    previous = curl._cf() if _intercept.is_routed(curl) else None
    # Only a network's wiring knows whether the client set its own trust options (a
    # tracker's says True for all: it never touches them).
    own = previous if isinstance(previous, Wiring) else None
    if own is not None:
        if own.network is not net and not own.network.closed and own.may_keep_connections():
            # Its kept connection would answer this network's requests: libcurl reuses
            # it (the pins name the same alias addresses).
            raise UsageError(
                f"this handle keeps a connection to another open FakeNetwork "
                f"({own.network.label or 'unlabelled'}), which would answer this one's "
                "requests; close that network first, or make a new handle (under this "
                "network's intercept())"
            )
        # The wirings of networks whose connection the handle may still keep, newest
        # first: each such close is counted by the ledger that opened it.
        if own.network is net:
            wiring.kept = own.kept  # its connections stay this network's
        wiring.previous = kept = _may_close_later(own if own.network is not net else own.previous)
        while kept is not None:  # the chain stays as short as the pools it covers
            kept.previous = _may_close_later(kept.previous)
            kept = kept.previous
    if own is not None:
        wiring.user_trust = own.user_trust  # the client's own CA settings stay
    if previous is not None:  # options libcurl keeps that the last wiring saw set
        wiring.url, wiring.follows = previous.url, 1 if previous.follows else 0
        wiring.binds = None if previous.binds is None else dict(previous.binds)
        wiring.share_guard = previous.share_guard
    wiring.plain = not _intercept.is_routed(curl)
    wiring.install(curl)
    # Made outside every network, and attached since: its reset() must keep this too.
    wiring.outsider = own is None or own.outsider
    if wiring.outsider:
        # A handle made outside every network (a plain one, or one --curlfault-leaks
        # tracks) keeps no connection to a fake: it outlives the network, and a kept
        # connection would be its leak at the check. A plain handle's reset() also runs
        # in C, where nothing can put curlfault's close callback back, and pycurl 7.49
        # crashes when a connection that callback was on is closed after a reset
        # (PYCURL_NOTES.md). The same in tracked and untracked runs.
        curl.setopt(pycurl.FORBID_REUSE, 1)
    if own is not None and own.trust and not own.user_trust and not wiring.trust:
        curl.unsetopt(pycurl.CAINFO_BLOB)  # the CA blob the handle's wiring gave it
    if _intercept.is_routed(curl):
        # A handle another router (a tracker, another network) wired: its perform()
        # and setopt() overrides must now consult this wiring.
        _intercept.set_wiring(curl, wiring)
    return curl


def _may_close_later(wiring: Wiring | None) -> Wiring | None:
    """``wiring`` or the first one it replaced whose network has a descriptor not closed."""
    while wiring is not None and not wiring.network.ledger.has_unclosed:
        wiring = wiring.previous
    return wiring
