"""Suite-wide tracking of real pycurl connections: descriptors per label, and strict refusal.

A ``Tracker`` sits in the same interception stack as ``FakeNetwork`` (under it: a network
installed later routes the handles made while it is installed). Its handles get as little
as possible (see ``_track_wiring``): with ``leaks=True`` one SOCKOPTFUNCTION that records
each socket libcurl made, by descriptor number, with its inode; with ``strict=True`` also an
OPENSOCKETFUNCTION that refuses what is not allowed, and a CONNECT_TO list.

Identity: descriptor numbers are reused as soon as they are closed, so every record keeps
the socket's inode, read once with ``fstat`` when libcurl hands the descriptor over. A record
is still open exactly while its descriptor number still holds that inode, which
``open_records`` checks with one ``fstat`` per record of the label being audited (no
``/proc`` scan). A new socket under a recorded number replaces the record: the kernel only
reuses a number once it is closed. A socket closed without any callback (libcurl closing it
itself, pycurl closing a CurlMulti/CurlShare pool in C) is therefore never mistaken for a
leak, and a descriptor number reused by somebody else is never mistaken for ours.

A use-after-free this module guards against (pycurl 7.49), only for handles that set a
CLOSESOCKETFUNCTION of their own (curlfault then puts its close callback in front of it): a
connection pooled in a multi or share calls the closesocket callback of the easy handle that
made it, with that handle as its context; if the handle was freed in between, closing the
multi/share segfaults. The handle of a connection made while it was in a multi or had a share
is therefore kept until the connection is closed, and dropped at the next audit (never inside
a libcurl call). A handle without a close callback cannot crash this way, and none is kept.
"""

from __future__ import annotations

import gc
import itertools
import threading
import traceback
from collections.abc import Iterable
from typing import Any

import pycurl

from . import _intercept
from ._errors import CallbackError, CurlFaultError, LeakError, UnexpectedConnection, UsageError
from ._ledger import Site, SocketRecord, socket_inode
from ._track_report import (
    CALLBACK_ERROR,
    DOUBLE_CLOSE,
    UNEXPECTED,
    UNKNOWN_CLOSE,
    TrackEvent,
    TrackReport,
    describe_fd,
    describe_record,
    is_ip,
    parse_host,
    url_host,
)
from ._track_strict import StrictRouting
from ._track_wiring import TrackWiring

__all__ = [
    "CALLBACK_ERROR",
    "DOUBLE_CLOSE",
    "UNEXPECTED",
    "UNKNOWN_CLOSE",
    "TrackEvent",
    "TrackReport",
    "Tracker",
    "describe_record",
    "parse_host",
]

_SETOPT = pycurl.Curl.setopt
_new_wiring = object.__new__
_OPEN = pycurl.OPENSOCKETFUNCTION
_SOCKOPT = pycurl.SOCKOPTFUNCTION
_CLOSE = pycurl.CLOSESOCKETFUNCTION
_CONNECT_TO = pycurl.CONNECT_TO

# Handles whose connections were still open when their tracker closed: freeing them could
# still crash a multi/share closed later, so they live as long as the process.
_KEPT_FOREVER: list[object] = []

# One recorded socket: (inode, seq, label, url, site), under its descriptor number.
_Entry = tuple[int, int, str, str, Site]


class Tracker(StrictRouting):
    """Track every pycurl handle made while installed: real connections, no fakes.

    With ``leaks=True`` every descriptor handed to libcurl is recorded under the current
    ``label`` (set it to the name of the running test) and ``audit(label)`` says which are
    still open. With ``strict=True`` every connection to a host not in ``allow_hosts`` is
    refused (CURLcode 7, without a resolver query) and recorded as an event.

        tracker = Tracker(strict=True, allow_hosts=["localhost"])
        with tracker:
            tracker.label = "test_download"
            run_code_under_test()
            tracker.check("test_download")   # raises LeakError / UnexpectedConnection
    """

    def __init__(
        self,
        *,
        leaks: bool = True,
        strict: bool = False,
        allow_hosts: Iterable[str] = (),
        label: str = "",
    ) -> None:
        if isinstance(allow_hosts, str):
            raise UsageError(
                f"allow_hosts must be a list of host names, got the str {allow_hosts!r}"
            )
        self.leaks = bool(leaks)
        self.strict = bool(strict)
        self.allow_hosts = tuple(dict.fromkeys(parse_host(h) for h in allow_hosts))
        self.label = label
        self.closed = False  # read for every handle made: a plain attribute
        self._token: int | None = None
        # OPEN too with leaks: a handle with its own close callback gets curlfault's
        # opensocket in front of its own (see TrackWiring._close_through_us). What a handle
        # made while ``relaxed`` owns: leak tracking alone (or nothing).
        self._relaxed_owned = frozenset({_SOCKOPT, _CLOSE, _OPEN} if self.leaks else ())
        self._owned = self._relaxed_owned | ({_OPEN, _CONNECT_TO} if self.strict else set())
        assert self._owned <= _intercept.WATCHED_OPTIONS
        self._leaks_only = self._owned if self.leaks and not self.strict else None
        # While True, handles made are not refused (strict is off for their whole life) but
        # are still tracked for leaks: the pytest plugin sets it for the run of a test marked
        # @pytest.mark.curlfault(strict=False). Read for every handle made when strict.
        self.relaxed = False
        # Re-entrant: a garbage collection that an allocation in here sets off can free a
        # handle, whose close callbacks come back here in the same thread.
        self._lock = threading.RLock()
        # Written by the sockopt callback without the lock (one dict store); see open_records.
        self._open: dict[int, _Entry] = {}
        self._seq = itertools.count(1)
        self._records: dict[int, SocketRecord] = {}  # by inode: entries made into records
        self._kept: dict[int, object] = {}  # by inode: handles kept for a pooled connection
        self._events: list[TrackEvent] = []
        self._graveyard: list[object] = []
        self._unrecorded: set[int] = set()  # fds handed out that an internal error kept out
        # Sockets libcurl made through curlfault's opensocket (handles with their own close
        # callback) and never passed to sockopt, by number: inode. An FTP active-mode
        # listener is one: libcurl's to close, never a record.
        self._made: dict[int, int] = {}
        self._pin_list: list[str] | None = None
        self._allowed_ips: set[str] = set()
        self._names = tuple(h for h in self.allow_hosts if not is_ip(h))

    # installing ------------------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return self._token is not None

    def install(self) -> Tracker:
        """Make ``pycurl.Curl()`` a tracked handle until ``uninstall()``; returns self."""
        if self.closed:
            raise UsageError("this Tracker is closed; make a new one")
        if self._token is None:
            self._token = _intercept.install(self)
        return self

    def uninstall(self) -> None:
        """Stop tracking new handles. Handles made meanwhile keep reporting to this tracker."""
        if self._token is not None:
            _intercept.uninstall(self._token)
            self._token = None

    def close(self) -> None:
        """Uninstall for good. Idempotent."""
        self.uninstall()
        self.closed = True
        self._bury()
        with self._lock:
            # Handles kept for connections still pooled live for the rest of the process
            # (see the module docstring).
            _KEPT_FOREVER.extend(self._kept.values())
            self._kept.clear()

    def __enter__(self) -> Tracker:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wire(self, curl: Any, site: Site) -> TrackWiring:
        # TrackWiring(self, site) without the Python frame of its __init__ (this runs for
        # every handle made under the tracker).
        wiring = _new_wiring(TrackWiring)
        wiring.tracker, wiring.site, wiring.owned = self, site, self._owned
        if self._owned is self._leaks_only:
            _SETOPT(curl, _SOCKOPT, wiring._sockopt)  # what install() does, for the usual case
        else:
            if self.relaxed:
                wiring.owned = self._relaxed_owned  # not strict, for the handle's whole life
            wiring.install(curl)
        return wiring

    def _stray_connection(self, text: str, site: Site) -> None:
        """A handle of a closed FakeNetwork connected while this tracker is in use."""
        self._event(UNEXPECTED, text, site)

    # the ledger ------------------------------------------------------------------------
    def _record(self, fd: int, entry: _Entry) -> SocketRecord:
        """The record of an entry whose socket is open now (made once, then kept)."""
        inode, seq, label, url, site = entry
        rec = self._records.get(inode)
        if rec is None:
            family, kind, peer = describe_fd(fd)
            rec = SocketRecord(
                inode=inode,
                fd=fd,
                family=family,
                peer=peer,
                host="",
                url=url,
                kind=kind,
                opened_in=label,
                handle_site=site,
                seq=seq,
                connected=False,
            )
            rec = self._records.setdefault(inode, rec)
        return rec

    def _forget(self, fd: int, entry: _Entry) -> None:
        """Drop ``entry`` (closed); a newer entry under the same number is kept."""
        inode = entry[0]
        with self._lock:  # the sockopt callback stores without it: one atomic dict store
            current = self._open.pop(fd, None)
            if current is not None and current is not entry:
                self._open.setdefault(fd, current)  # newer than ours: put it back
            rec = self._records.pop(inode, None)
            kept = self._kept.pop(inode, None)
            if kept is not None:
                # Not dropped here: this may be the handle's last reference, and freeing a
                # handle inside its own callback is unsafe. The next audit drops it.
                self._graveyard.append(kept)
        if rec is not None:
            rec.closed_by_pycurl = rec.closes == 0

    def _sweep(self) -> None:
        """Drop what belongs to entries a new socket replaced (closed without a callback)."""
        current = {entry[0] for entry in list(self._open.values())}
        with self._lock:
            # Snapshots in one step each, and pops that tolerate a missing key: a close
            # callback can run in the middle of this (a collection frees a handle) and edit
            # both dicts.
            for inode in [i for i in list(self._kept) if i not in current]:
                kept = self._kept.pop(inode, None)
                if kept is not None:
                    self._graveyard.append(kept)
            for inode in [i for i in list(self._records) if i not in current]:
                self._records.pop(inode, None)

    def _guard(self, wiring: TrackWiring, inode: int) -> None:
        curl = wiring.pooled_handle()
        if curl is not None:
            with self._lock:
                self._kept[inode] = curl  # pooled outside the handle: it must outlive it

    def _closing(
        self, wiring: TrackWiring, fd: int
    ) -> tuple[SocketRecord | None, int | None, bool]:
        """What libcurl's closesocket(fd) closes: (its record, its inode, whether it is
        libcurl's own socket without a record, to be closed all the same)."""
        inode = socket_inode(fd)
        with self._lock:
            entry = self._open.get(fd)
        if entry is not None and entry[0] == inode:
            rec = self._record(fd, entry)
            with self._lock:
                rec.closes += 1
            if rec.closes > 1:
                host = url_host(rec.url) or rec.peer
                self._event(
                    DOUBLE_CLOSE,
                    f"closesocket({fd}) called {rec.closes} times for one socket: fd {fd} "
                    f"(inode {rec.inode}) {rec.kind} to {host}, url {rec.url or 'unknown'}, "
                    f"opened in {rec.opened_in or 'no test'}",
                    wiring.site,
                )
            return rec, inode, False
        if fd in self._unrecorded:
            return None, inode, True  # the internal error was reported when it happened
        made = self._made.pop(fd, None)
        if made is not None and made == inode:
            return None, inode, True  # libcurl's own socket that sockopt never saw
        what = (
            "not open (closed twice?)"
            if inode is None
            else f"a socket (inode {inode}) that was never handed to libcurl; it was left open"
        )
        self._event(
            UNKNOWN_CLOSE,
            f"closesocket({fd}) (url {wiring.url or 'unknown'}): fd {fd} is {what}",
            wiring.site,
        )
        return None, inode, False

    def _closed_socket(self, fd: int, rec: SocketRecord, *, still_open: bool) -> None:
        if still_open:
            note = "the handle's CLOSESOCKETFUNCTION returned without closing it"
            if note not in rec.notes:
                rec.notes = [*rec.notes, note]
            return
        entry = self._open.get(fd)
        if entry is not None and entry[0] == rec.inode:
            self._forget(fd, entry)
        rec.closed_by_pycurl = False

    def _event(self, kind: str, text: str, site: Site | None = None) -> None:
        with self._lock:
            self._events.append(TrackEvent(kind, self.label, text, site))

    def _internal_error(self, where: str, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._event(CALLBACK_ERROR, f"curlfault's {where} raised {type(exc).__name__}: {exc}\n{tb}")

    def _bury(self) -> None:
        with self._lock:
            dead, self._graveyard = self._graveyard, []
        del dead  # may free handles: their own closes re-enter the callbacks, unlocked

    # auditing --------------------------------------------------------------------------
    def open_records(self, label: str | None = None) -> list[SocketRecord]:
        """Descriptors handed to libcurl (under ``label``, or any) that are still open.

        A record is open while its descriptor number still holds its inode; the others
        (closed by libcurl, by pycurl at multi/share teardown, or by anyone) are dropped.
        """
        self._bury()
        entries = [(fd, e) for fd, e in list(self._open.items()) if label is None or e[2] == label]
        live: list[SocketRecord] = []
        for fd, entry in entries:
            if socket_inode(fd) == entry[0]:
                live.append(self._record(fd, entry))
            else:
                self._forget(fd, entry)
        if self._kept or self._records:
            self._sweep()
        self._bury()
        return sorted(live, key=lambda r: r.seq)

    def still_open(self, records: Iterable[SocketRecord]) -> list[SocketRecord]:
        """Those of ``records`` that are still open (after a garbage collection if any is)."""
        wanted = list(records)
        if not wanted:
            return []
        live = {r.inode for r in self.open_records()}
        if any(r.inode in live for r in wanted):
            gc.collect()
            live = {r.inode for r in self.open_records()}
        return [r for r in wanted if r.inode in live]

    def take_events(self, label: str | None = None, kinds: Iterable[str] = ()) -> list[TrackEvent]:
        """Remove and return the events recorded under ``label`` (or all), of ``kinds`` (or all)."""
        if not self._events:
            return []  # the usual case, without the lock
        wanted = frozenset(kinds)
        with self._lock:
            taken = [
                e
                for e in self._events
                if (label is None or e.label == label) and (not wanted or e.kind in wanted)
            ]
            if taken:
                self._events = [e for e in self._events if e not in taken]
        return taken

    def audit(self, label: str | None = None) -> TrackReport:
        """Open descriptors and events of ``label`` (or of every label); events are consumed.

        A handle in a reference cycle closes its connections only when collected, so a
        garbage collection runs before anything is called leaked.
        """
        if not (self._open or self._graveyard or self._kept or self._records):
            # Nothing recorded is open or pending (most tests): nothing to look at.
            return TrackReport(label, [], self.take_events(label))
        leaked = self.open_records(label)
        if leaked:
            gc.collect()
            leaked = self.open_records(label)
        return TrackReport(label, leaked, self.take_events(label))

    def check(self, label: str | None = None) -> None:
        """Raise ``LeakError`` or ``UnexpectedConnection`` for what ``audit(label)`` found.

        The first problem's type is raised; its message lists every problem, and its
        ``problems`` attribute holds them all. Each leaked descriptor is reported once.
        """
        __tracebackhide__ = True
        report = self.audit(label)
        problems: list[CurlFaultError] = []
        for event in report.events:
            cls = _ERROR_OF.get(event.kind, LeakError)
            problems.append(cls(event.describe()))
        for rec in report.leaked:
            if not rec.reported:
                rec.reported = True
                problems.append(LeakError(f"descriptor never closed: {describe_record(rec)}"))
        if not problems:
            return
        first = problems[0]
        if len(problems) == 1:
            raise first
        lines = [str(first), f"... and {len(problems) - 1} more problem(s):"]
        lines += [f"  {i}. {type(p).__name__}: {p}" for i, p in enumerate(problems[1:], 2)]
        combined = type(first)("\n".join(lines))
        combined.problems = problems
        raise combined


_ERROR_OF: dict[str, type[CurlFaultError]] = {
    UNEXPECTED: UnexpectedConnection,
    CALLBACK_ERROR: CallbackError,
}

Tracker.__module__ = "curlfault"

_intercept.PASSIVE_ROUTERS.add(Tracker)
