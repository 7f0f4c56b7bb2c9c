"""Lower bounds: the least any fake that keeps the design's promises pays on a fresh GET.

The floor does no server work at all, so no fake reaches it. These rows build the smallest
fake that still does what DESIGN.md and the brief require of every connection, with none of
curlfault's other work, and time it next to the floor and curlfault in the same rounds:

* ``bound.get.fresh``: ``pycurl.Curl()`` routes itself (a subclass that wires its handle in
  ``__new__`` and overrides ``setopt`` to keep the routing options its own); the three socket
  callbacks (a socketpair from opensocket, ``SOCKOPT_ALREADY_CONNECTED``, closesocket closes
  the descriptor); a ledger entry per descriptor, keyed by inode and counted at its close;
  the fake name pinned with ``RESOLVE``/``CONNECT_TO`` and ``NOPROXY``; exceptions caught in
  every callback and raised after ``perform()``; the request read from the debug callback's
  ``HEADER_OUT`` event and a canned response written. Nothing parsed, routed or recorded.
* ``bound.get.fresh.h11``: the same, with the request parsed by a new ``h11`` server
  connection per connection (the brief's rule: never hand-parse HTTP).

curlfault itself parses with h11 but replays the events of a request it has seen before, so
it pays the parser once per kind of request, not per connection: the second row is an upper
bound on a naive fake, not a floor.
"""

from __future__ import annotations

import io
import os
import socket
from typing import Any

import h11
import pycurl
from _common import BODY, REAL_CURL, RESPONSE, basic_options, expect
from _timing import Case

URL = "http://api.test/"
_PINS = (["api.test:80:127.77.0.1"], ["api.test:80:127.77.0.1:80", "::127.77.255.254:9"])
_OWNED = frozenset(
    {
        pycurl.OPENSOCKETFUNCTION,
        pycurl.SOCKOPTFUNCTION,
        pycurl.CLOSESOCKETFUNCTION,
        pycurl.DEBUGFUNCTION,
        pycurl.VERBOSE,
        pycurl.NOPROXY,
        pycurl.RESOLVE,
        pycurl.CONNECT_TO,
    }
)
_WATCHED = _OWNED | {pycurl.URL}
_HEADER_OUT = pycurl.INFOTYPE_HEADER_OUT
_SETOPT = REAL_CURL.setopt
_PERFORM = REAL_CURL.perform


class _Wiring:
    """One handle's callbacks; ``ledger`` maps inode -> [fd, url, closes]."""

    __slots__ = ("conn", "ledger", "parse", "pending", "server", "url")

    def __init__(self, ledger: dict[int, list[Any]], parse: bool) -> None:
        self.ledger = ledger
        self.parse = parse
        self.server: socket.socket | None = None
        self.conn: h11.Connection | None = None
        self.url = ""
        self.pending: BaseException | None = None

    def opensocket(self, purpose: int, address: Any) -> int:
        try:
            client, server = socket.socketpair()
            fd = client.detach()
            self.ledger[os.fstat(fd).st_ino] = [fd, self.url, 0]
            self.server = server
            if self.parse:
                self.conn = h11.Connection(h11.SERVER)
            return fd
        except BaseException as exc:
            self.pending = exc
            return pycurl.SOCKET_BAD

    def sockopt(self, fd: int, purpose: int) -> int:
        return pycurl.SOCKOPT_ALREADY_CONNECTED

    def debug(self, kind: int, data: bytes) -> None:
        try:
            if kind == _HEADER_OUT and self.server is not None:
                request = self.server.recv(65536, socket.MSG_DONTWAIT)
                conn = self.conn
                if conn is not None:
                    conn.receive_data(request)
                    event = conn.next_event()
                    while type(event) is not h11.EndOfMessage:
                        if event is h11.NEED_DATA:
                            raise RuntimeError("the request came in more than one read")
                        event = conn.next_event()
                self.server.send(RESPONSE)
        except BaseException as exc:
            self.pending = exc

    def closesocket(self, fd: int) -> int:
        try:
            entry = self.ledger.get(os.fstat(fd).st_ino)
            if entry is not None:
                entry[2] += 1
            if self.server is not None:
                self.server.close()
                self.server = None
        except BaseException as exc:
            self.pending = exc
        os.close(fd)
        return 0


def _routed_class(ledger: dict[int, list[Any]], parse: bool) -> type:
    # Made in a function, not at module level: curlfault warns about module-level pycurl.Curl
    # subclasses defined before it intercepts (the curlfault rows run in the same process).
    class Routed(REAL_CURL):  # type: ignore[misc, valid-type]
        __slots__ = ("_w",)

        def __new__(cls) -> Any:
            self = REAL_CURL.__new__(cls)
            w = _Wiring(ledger, parse)
            _set_w(self, w)
            _SETOPT(self, pycurl.OPENSOCKETFUNCTION, w.opensocket)
            _SETOPT(self, pycurl.SOCKOPTFUNCTION, w.sockopt)
            _SETOPT(self, pycurl.CLOSESOCKETFUNCTION, w.closesocket)
            _SETOPT(self, pycurl.NOPROXY, "*")
            _SETOPT(self, pycurl.VERBOSE, 1)
            _SETOPT(self, pycurl.DEBUGFUNCTION, w.debug)
            _SETOPT(self, pycurl.RESOLVE, _PINS[0])
            _SETOPT(self, pycurl.CONNECT_TO, _PINS[1])
            return self

        def setopt(self, option: int, value: Any) -> None:
            if option not in _WATCHED:
                _SETOPT(self, option, value)
                return
            if option in _OWNED:
                return  # a real fake would chain the user's value
            _SETOPT(self, option, value)
            self._w.url = value

        def perform(self) -> None:
            w = self._w
            _PERFORM(self)
            if w.pending is not None:
                exc, w.pending = w.pending, None
                raise exc

    _set_w = Routed.__dict__["_w"].__set__
    return Routed


class _BoundFresh(Case):
    group = "floor"
    batch = 200
    parse = False

    def setup(self) -> None:
        self.ledger: dict[int, list[Any]] = {}
        self.cls = _routed_class(self.ledger, self.parse)

    def begin(self) -> None:
        self.ledger.clear()

    def op(self) -> None:
        c = self.cls()
        buf = io.BytesIO()
        basic_options(c, URL, buf)
        c.perform()
        c.close()
        expect(buf, BODY, self.key)

    def end(self) -> None:
        bad = [e for e in self.ledger.values() if e[2] != 1]
        if bad:
            raise RuntimeError(f"{self.key}: descriptors not closed exactly once: {bad[:3]}")


class BoundFresh(_BoundFresh):
    key = "bound.get.fresh"
    label = (
        "bound: GET, fresh handle, the least a fake meeting the design pays (routing "
        "subclass, 3 socket callbacks, ledger, pins, answered after the request; no parse)"
    )


class BoundFreshH11(_BoundFresh):
    key = "bound.get.fresh.h11"
    label = "bound: the same, parsing each request with a new h11 connection"
    parse = True
