"""The descriptor ledger: every socket handed to libcurl, keyed by inode.

fd numbers are reused as soon as they are closed; a socket's inode is not, so the inode is the
key. A record is opened in the opensocket callback, bound to libcurl's fd in the sockopt
callback and closed in the closesocket callback. The ground truth for "still open" is
``/proc/self/fd``: pycurl closes pooled connections itself when a multi or share handle is
closed (bypassing the callback), and such a socket is gone, not leaked.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

__all__ = ["AttachSite", "Ledger", "LedgerReport", "Site", "SocketRecord", "open_socket_inodes"]


class Site:
    """Where a pycurl handle was made: a few frames, read cheaply (no source lines).

    ``Site.capture()`` keeps each frame's code object and instruction offset, which is all a
    frame walk needs to read; file names and line numbers are worked out when ``frames`` is
    first read (a leak report), not for every handle.
    """

    __slots__ = ("_frames", "_raw")
    verb = "made"  # "handle made at": what happened to the handle there

    def __init__(self, frames: tuple[tuple[str, int, str], ...] = ()) -> None:
        self._frames: tuple[tuple[str, int, str], ...] | None = frames
        self._raw: Sequence[Any] = ()

    @staticmethod
    def capture(raw: Sequence[Any]) -> Site:
        """A site from ``[code, f_lasti, code, f_lasti, ...]``, innermost first."""
        site = _new_site(Site)
        site._frames = None
        site._raw = raw
        return site

    @property
    def frames(self) -> tuple[tuple[str, int, str], ...]:
        """``(filename, lineno, function)`` per frame, innermost first."""
        frames = self._frames
        if frames is None:
            raw = self._raw
            frames = self._frames = tuple(
                (code.co_filename, _line_of(code, lasti), code.co_name)
                for code, lasti in zip(raw[::2], raw[1::2], strict=True)
                if code is not None  # past the outermost frame (see caller_site)
            )
            # _raw stays: a shared site's code objects must outlive its place in the cache.
        return frames

    def __str__(self) -> str:
        """The innermost frame of the user's own code (a handle tornado makes for the
        user's client names the client's line), else the innermost frame."""
        frames = self.frames
        if not frames:
            return "?"
        from ._sites import is_library_file  # _sites imports this module

        own = [f for f in frames if not is_library_file(f[0])]
        filename, lineno, name = own[0] if own else frames[0]
        return f"{filename}:{lineno} in {name}"

    def format(self) -> str:
        """The frames, innermost first, one per line."""
        return "\n".join(f"  {f}:{n} in {fn}" for f, n, fn in self.frames) or "  ?"


_new_site = object.__new__


class AttachSite(Site):
    """Where a handle made earlier was handed to ``FakeNetwork.attach()``: the handle's
    records name it, since that is where it met the network."""

    __slots__ = ()
    verb = "attached"

    @staticmethod
    def of(site: Site) -> AttachSite:
        attached = _new_site(AttachSite)
        attached._frames, attached._raw = site._frames, site._raw
        return attached


def _line_of(code: CodeType, lasti: int) -> int:
    """The line of the instruction at byte offset ``lasti`` (what ``frame.f_lineno`` says)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return code.co_firstlineno


@dataclass(slots=True)  # a ledger keeps one per descriptor, open or closed
class SocketRecord:
    """One descriptor handed to libcurl."""

    inode: int
    fd: int
    family: str
    peer: str  # the address libcurl asked for, "ip:port"
    host: str  # the host name the connection was for, when known
    url: str  # the URL set on the handle, when known
    kind: str  # "socketpair", "tcp", "passthrough", ...
    opened_in: str  # the test (or other label) active when it was opened
    handle_site: Site | str  # where the handle was made; str() gives "file:line in function"
    seq: int = 0
    bound: int = 0  # sockopt calls that named this socket
    closes: int = 0  # closesocket calls for this socket
    closed_by_pycurl: bool = False  # gone from /proc/self/fd without our callback
    notes: list[str] | tuple[()] = ()
    owner: object = field(default=None, repr=False)  # the Connection, for the network
    reported: bool = False  # a problem with this record was raised once already
    # The pycurl handle, held while this connection may sit in a CurlMulti or CurlShare
    # pool: pycurl calls the closesocket callback with the handle that made the connection,
    # so freeing that handle first is a use-after-free when the pool closes it.
    keepalive: object = field(default=None, repr=False)
    # Pre-connected (socketpair, TCP pair): sockopt answers ALREADY_CONNECTED. False for a
    # socket libcurl connects itself (passthrough, a listener, a closed port).
    connected: bool = True

    def describe(self, root: str | None = None) -> str:
        """One line; the handle's site relative to ``root`` when it is under it."""
        where = self.host or self.peer
        url = f" url={self.url}" if self.url else ""
        site = under_root(str(self.handle_site), root)
        return (
            f"#{self.seq} fd {self.fd} inode {self.inode} {self.kind} to {where} ({self.peer}){url}"
            f", opened in {self.opened_in or '?'}, handle "
            f"{getattr(self.handle_site, 'verb', 'made')} at {site}"
        )


def under_root(path: str, root: str | None) -> str:
    """``path`` relative to ``root`` when it lies under it (a report's file names).

    A path with ``..`` in it (a module imported through ``sys.path`` entry such as
    ``tests/../lib``) is normalised first, so it reads, and matches, as the file's path."""
    if ".." in path:
        path = os.path.normpath(path)
    if root and path.startswith(root.rstrip(os.sep) + os.sep):
        return path[len(root.rstrip(os.sep)) + 1 :]
    return path


def pair_record(
    inode: int,
    fd: int,
    family: str,
    peer: str,
    host: str,
    url: str,
    kind: str,
    opened_in: str,
    handle_site: Site | str,
    owner: object,
    keepalive: object,
) -> SocketRecord:
    """A new pre-connected ``SocketRecord`` (one per fake connection: a positional call,
    which the interpreter specializes, unlike one with a dozen keywords)."""
    return SocketRecord(
        inode, fd, family, peer, host, url, kind, opened_in, handle_site,
        0, 0, 0, False, (), owner, False, keepalive, True,
    )  # fmt: skip


@dataclass
class LedgerReport:
    """What ``Ledger.audit()`` found."""

    leaked: list[SocketRecord]
    double_closed: list[SocketRecord]
    unknown_closes: list[str]
    closed_by_pycurl: list[SocketRecord]

    @property
    def ok(self) -> bool:
        return not (self.leaked or self.double_closed or self.unknown_closes)


def open_socket_inodes() -> set[int]:
    """Inodes of the sockets this process holds open, read from ``/proc/self/fd``."""
    inodes: set[int] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - non-Linux
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed between listdir and readlink (the listdir fd itself)
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def socket_inode(fd: int) -> int | None:
    """The inode of the socket open at ``fd``, or None if ``fd`` is not an open socket."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return st.st_ino


# Handles whose pooled connections outlived their network or tracker: freeing them could
# crash a later CurlMulti/CurlShare close, so they live as long as the process.
KEPT_FOREVER: list[object] = []


class Ledger:
    """Thread-safe record of descriptors handed to libcurl and what became of them."""

    def __init__(self) -> None:
        # Re-entrant: a garbage collection that an allocation in here sets off can free a
        # handle, whose connections' close callbacks come back here in the same thread.
        self._lock = threading.RLock()
        self._by_inode: dict[int, SocketRecord] = {}
        self._order: list[SocketRecord] = []
        self._unknown_closes: list[str] = []
        # Records with no close and not closed by pycurl: a network's check() and close()
        # ask for them several times per test, and almost always there are none.
        self._open = 0
        self._doubled = False  # some record has more than one close
        self.holds_handles = False  # some record was opened with a ``keepalive`` handle

    def __len__(self) -> int:
        return len(self._order)

    @property
    def records(self) -> list[SocketRecord]:
        with self._lock:
            return list(self._order)

    def opened(self, record: SocketRecord) -> SocketRecord:
        with self._lock:
            record.seq = len(self._order) + 1
            self._by_inode[record.inode] = record
            self._order.append(record)
            if record.closes == 0 and not record.closed_by_pycurl:
                self._open += 1
            if record.keepalive is not None:
                self.holds_handles = True
        return record

    def bind_opened(self, record: SocketRecord) -> SocketRecord:
        """Bind a record whose descriptor number libcurl was handed as it is, in the
        opensocket call just before: it is the same socket, so no fstat is needed."""
        with self._lock:
            record.bound += 1
        return record

    def bind(self, fd: int) -> SocketRecord | None:
        """Bind libcurl's ``fd`` (sockopt callback) to its record; None if unknown."""
        inode = socket_inode(fd)
        if inode is None:
            return None
        with self._lock:
            rec = self._by_inode.get(inode)
            if rec is not None:
                rec.bound += 1
                rec.fd = fd
        return rec

    def lookup(self, fd: int) -> SocketRecord | None:
        inode = socket_inode(fd)
        if inode is None:
            return None
        return self._by_inode.get(inode)

    def any_unclosed(self, inodes: Iterable[int]) -> bool:
        """Whether a record of one of ``inodes`` has had no close (pycurl's own included)."""
        with self._lock:
            for inode in inodes:
                rec = self._by_inode.get(inode)
                if rec is not None and rec.closes == 0 and not rec.closed_by_pycurl:
                    return True
        return False

    def knows(self, inode: int) -> bool:
        """Whether a descriptor this ledger recorded had ``inode``."""
        return inode in self._by_inode

    def closing(self, fd: int, inode: int | None) -> SocketRecord | None:
        """Count a closesocket call for ``fd`` whose inode was read just before."""
        with self._lock:
            rec = self._by_inode.get(inode) if inode is not None else None
            if rec is None:
                self._unknown_closes.append(
                    f"closesocket({fd}) for a descriptor curlfault never handed out"
                    if inode is not None
                    else f"closesocket({fd}) for a descriptor that was not open"
                )
                return None
            rec.closes += 1
            if rec.closes == 1:
                if not rec.closed_by_pycurl:
                    self._open -= 1
            else:
                self._doubled = True
        return rec

    def unclosed(self) -> list[SocketRecord]:
        if not self._open:
            return []
        with self._lock:
            return [r for r in self._order if r.closes == 0 and not r.closed_by_pycurl]

    @property
    def has_unclosed(self) -> bool:
        """Whether some record has had no close (and pycurl did not close it in C)."""
        return self._open > 0

    def audit(self, open_inodes: Iterable[int] | None = None) -> LedgerReport:
        """Compare the records with ``/proc/self/fd`` (read only if something is unclosed)."""
        if not (self._open or self._doubled or self._unknown_closes):
            return LedgerReport([], [], [], [])  # every record closed exactly once
        pending = self.unclosed()
        leaked: list[SocketRecord] = []
        gone: list[SocketRecord] = []
        if pending:
            live = set(open_inodes) if open_inodes is not None else open_socket_inodes()
            with self._lock:
                for rec in pending:
                    if rec.inode in live:
                        leaked.append(rec)
                    elif rec.closes == 0 and not rec.closed_by_pycurl:
                        # pycurl closed it in C (multi/share teardown): not a leak.
                        rec.closed_by_pycurl = True
                        self._open -= 1
                        gone.append(rec)
        with self._lock:
            double = [r for r in self._order if r.closes > 1] if self._doubled else []
            unknown = list(self._unknown_closes)
        return LedgerReport(leaked, double, unknown, gone)

    def forget_unknown_closes(self) -> None:
        with self._lock:
            self._unknown_closes.clear()
