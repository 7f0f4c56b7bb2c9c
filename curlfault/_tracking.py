"""Suite-wide tracking of real pycurl connections: descriptors per label, and strict refusal.

A ``Tracker`` sits in the same interception stack as ``FakeNetwork`` (under it: a network
installed later routes the handles made while it is installed). It wires every handle with
two callbacks and nothing else, so a tracked transfer costs two Python calls per connection:

* opensocket: refuse the address (strict mode) or make the socket libcurl would have made
  (or call the handle's own OPENSOCKETFUNCTION), record its inode under the current label;
  libcurl connects it itself, so there is no SOCKOPTFUNCTION and no VERBOSE/DEBUGFUNCTION.
* closesocket: count the close, close the descriptor (or call the handle's own callback).

Leak checks read ``/proc/self/fd`` by inode, and only when a record of the label is still
open: pycurl closes connections pooled in a CurlMulti/CurlShare itself when that handle is
closed, without the callback, and such a socket is gone, not leaked.

A use-after-free this module guards against (pycurl 7.49): a connection pooled in a multi or
share calls the closesocket callback of the easy handle that made it, with that handle as
its context; if the handle was freed in between, closing the multi/share segfaults. Without
a closesocket callback libcurl never touches the Python object, so tracking would turn
correct code into a crash. A record of a connection made while its handle was in a multi or
had a share therefore holds the handle until the connection is closed, and the reference is
dropped at the next audit (never inside a libcurl call).
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
import threading
import traceback
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pycurl

from . import _intercept
from ._errors import CallbackError, CurlFaultError, LeakError, UnexpectedConnection, UsageError
from ._ledger import Site, SocketRecord, open_socket_inodes, socket_inode
from ._wiring import SINK_IP

__all__ = ["TrackEvent", "TrackReport", "Tracker", "describe_record", "parse_host"]

_SETOPT = pycurl.Curl.setopt
_OPEN = pycurl.OPENSOCKETFUNCTION
_CLOSE = pycurl.CLOSESOCKETFUNCTION
_CONNECT_TO = pycurl.CONNECT_TO
_SOCKET_BAD = pycurl.SOCKET_BAD
_SOCKTYPE_MASK = ~(getattr(socket, "SOCK_CLOEXEC", 0) | getattr(socket, "SOCK_NONBLOCK", 0))
_AF_UNIX = getattr(socket, "AF_UNIX", -1)
# Unlisted hosts go here without a resolver query; the port is kept, so the refusal can
# name it. The opensocket callback refuses this address.
_SINK_PIN = f"::{SINK_IP}:"

# Handles whose connections were still open when their tracker closed: freeing them could
# still crash a multi/share closed later, so they live as long as the process.
_KEPT_FOREVER: list[object] = []

UNEXPECTED = "unexpected-connection"
DOUBLE_CLOSE = "double-close"
UNKNOWN_CLOSE = "unknown-close"
CALLBACK_ERROR = "callback-error"


@dataclass
class TrackEvent:
    """Something a tracked handle did that is a problem by itself (not a leak)."""

    kind: str  # UNEXPECTED, DOUBLE_CLOSE, UNKNOWN_CLOSE or CALLBACK_ERROR
    label: str  # the label current when it happened
    text: str
    site: Site | None = None  # where the handle involved was made

    def describe(self, root: str | None = None, hide: Iterable[str] = ()) -> str:
        """The text, then the stack where the handle was made (see ``describe_record``)."""
        if self.site is None:
            return self.text
        return f"{self.text}\n  the handle was made at:\n{_format_site(self.site, root, hide)}"


@dataclass
class TrackReport:
    """What ``Tracker.audit()`` found for one label (or for every label)."""

    label: str | None
    leaked: list[SocketRecord] = field(default_factory=list)
    events: list[TrackEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.leaked or self.events)


def parse_host(value: str) -> str:
    """One allow-list entry, validated: a host name or an IP literal, lower-cased.

    Raises ``UsageError`` for anything else (a URL, a port, a path, an empty string).
    """
    if not isinstance(value, str):
        raise UsageError(f"an allowed host must be a str, got {value!r}")
    host = value.strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        pass
    if (
        not host
        or len(host) > 253
        or any(c in host for c in "/:@[]?# \t\r\n,")
        or host.startswith(".")
        or ".." in host
    ):
        raise UsageError(
            f"{value!r} is not a host name or an IP address; give names like "
            "'localhost' or 'db.internal' and addresses like '127.0.0.1' or '::1' "
            "(no scheme, port or path)"
        )
    return host.lower().rstrip(".")


def describe_record(rec: SocketRecord, root: str | None = None, hide: Iterable[str] = ()) -> str:
    """A leaked descriptor in a few lines: what, where to, which URL, and the handle's stack.

    Paths under ``root`` are shown relative to it; frames whose path contains one of
    ``hide`` (a test runner's own frames) are left out.
    """
    host = rec.host or _url_host(rec.url)
    where = f"{host} ({rec.peer})" if host and host not in rec.peer else rec.peer
    lines = [
        f"fd {rec.fd} (inode {rec.inode}) {rec.kind} to {where}"
        + (f", url {rec.url}" if rec.url else ", url unknown")
        + f", opened in {rec.opened_in or 'no test (outside the test run)'}"
    ]
    lines.extend(f"  note: {note}" for note in rec.notes)
    lines.append("  the handle was made at:")
    lines.append(_format_site(rec.handle_site, root, hide))
    return "\n".join(lines)


def _format_site(site: Site | str, root: str | None, hide: Iterable[str] = ()) -> str:
    if not isinstance(site, Site):
        return f"    {site}"
    hidden = tuple(hide)
    frames = [f for f in site.frames if not any(h in f[0] for h in hidden)] or list(site.frames)
    if not frames:
        return "    ?"
    return "\n".join(
        f"    {_relative(filename, root)}:{lineno} in {function}"
        for filename, lineno, function in frames
    )


def _relative(path: str, root: str | None) -> str:
    if root and path.startswith(root.rstrip(os.sep) + os.sep):
        return path[len(root.rstrip(os.sep)) + 1 :]
    return path


def _url_host(url: str) -> str:
    if not url:
        return ""
    try:
        return urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    except ValueError:
        return ""


class _TrackWiring:
    """The two callbacks of one tracked handle, and the user's own values for them."""

    __slots__ = (
        "__weakref__",
        "_curl",
        "owned",
        "site",
        "tracker",
        "url",
        "user_close",
        "user_connect_to",
        "user_open",
        "user_trust",
    )

    def __init__(self, tracker: Tracker, site: Site, curl: Any) -> None:
        self.tracker = tracker
        self.site = site
        self.owned = tracker._owned
        self.url = ""
        self.user_trust = True  # never touch trust options: this is the real network
        self.user_open: Any = None
        self.user_close: Any = None
        self.user_connect_to: list[str] = []
        self._curl = weakref.ref(curl)

    # what InterceptedCurl asks of its wiring -------------------------------------------
    def install(self, curl: Any) -> None:
        tracker = self.tracker
        _SETOPT(curl, _OPEN, self._opensocket)
        if tracker.leaks:
            _SETOPT(curl, _CLOSE, self._closesocket)
        if tracker.strict:
            _SETOPT(curl, _CONNECT_TO, self.user_connect_to + tracker._pins())

    def user_setopt(self, curl: Any, option: int, value: Any) -> None:
        if option == _OPEN:
            self.user_open = value
        elif option == _CLOSE:
            # Never passed down: unsetting CLOSESOCKETFUNCTION while a connection is pooled
            # segfaults pycurl 7.49 on the next close.
            self.user_close = value
        elif option == _CONNECT_TO:
            # The user's entries first: the sink entry matches every host.
            self.user_connect_to = list(value or [])
            _SETOPT(curl, _CONNECT_TO, self.user_connect_to + self.tracker._pins())

    def refresh(self, curl: Any) -> None:
        pass  # nothing changes per transfer: the allow-list is fixed

    def raise_pending(self) -> None:
        pass  # the user's exceptions take pycurl's own path; ours are events

    def after_reset(self, curl: Any) -> None:
        self.user_open = self.user_close = None
        self.user_connect_to, self.url = [], ""
        self.install(curl)

    def duplicate(self, dup: Any, site: Site) -> _TrackWiring:
        new = _TrackWiring(self.tracker, site, dup)
        new.url, new.user_open, new.user_close = self.url, self.user_open, self.user_close
        new.user_connect_to = list(self.user_connect_to)
        new.install(dup)
        return new

    # the callbacks ---------------------------------------------------------------------
    def _opensocket(self, purpose: int, address: Any) -> int:
        tracker = self.tracker
        if tracker.strict:
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
                fd = socket.socket(family, socktype & _SOCKTYPE_MASK, protocol).detach()
            except OSError:
                return _SOCKET_BAD  # what libcurl does when socket() fails: next address, or 7
        if fd >= 0 and tracker.leaks:
            try:
                tracker._opened(self, fd, address)
            except Exception as exc:
                tracker._internal_error("opensocket callback", exc)
                tracker._unrecorded.add(fd)  # still ours to close when libcurl asks
        return fd

    def _closesocket(self, fd: int) -> int:
        tracker = self.tracker
        try:
            rec, inode = tracker._closing(self, fd)
        except Exception as exc:
            tracker._internal_error("closesocket callback", exc)
            rec, inode = None, None
        user = self.user_close
        if user is not None:
            try:
                result = user(fd)  # libcurl's contract: the callback closes the descriptor
            finally:
                if rec is not None:
                    tracker._closed_socket(rec, still_open=socket_inode(fd) == inode)
            return result if isinstance(result, int) else 0
        if rec is not None or fd in tracker._unrecorded:
            tracker._unrecorded.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass
            if rec is not None:
                tracker._closed_socket(rec, still_open=False)
        # An unknown descriptor is left alone: closing a number libcurl no longer owns
        # could close somebody else's socket. The event says so.
        return 0


class Tracker:
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
        self._closed = False
        self._token: int | None = None
        self._owned = frozenset(
            {_OPEN}
            | ({_CLOSE} if self.leaks else set())
            | ({_CONNECT_TO} if self.strict else set())
        )
        self._lock = threading.Lock()
        self._open: dict[int, SocketRecord] = {}
        self._seq = 0
        self._events: list[TrackEvent] = []
        self._graveyard: list[object] = []
        self._unrecorded: set[int] = set()  # fds handed out that an internal error kept out
        self._pin_list: list[str] | None = None
        self._allowed_ips: set[str] = set()
        self._names = tuple(h for h in self.allow_hosts if not _is_ip(h))

    # installing ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def installed(self) -> bool:
        return self._token is not None

    def install(self) -> Tracker:
        """Make ``pycurl.Curl()`` a tracked handle until ``uninstall()``; returns self."""
        if self._closed:
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
        self._closed = True
        self._bury()
        with self._lock:
            # Still-open connections made inside a multi or share keep their handle alive
            # for the rest of the process (see the module docstring).
            _KEPT_FOREVER.extend(r.owner for r in self._open.values() if r.owner is not None)

    def __enter__(self) -> Tracker:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wire(self, curl: Any, site: Site) -> _TrackWiring:
        wiring = _TrackWiring(self, site, curl)
        wiring.install(curl)
        return wiring

    # strict mode -----------------------------------------------------------------------
    def _pins(self) -> list[str]:
        """CONNECT_TO: every allowed name (and its addresses) to itself, the rest to the sink."""
        pins = self._pin_list
        if pins is None:
            hosts = list(self.allow_hosts)
            for name in self._names:
                hosts.extend(self._resolve(name))
            self._allowed_ips.update(h for h in hosts if _is_ip(h))
            entries = []
            for host in dict.fromkeys(hosts):
                h = f"[{host}]" if ":" in host else host
                entries.append(f"{h}::{h}:")
            pins = self._pin_list = [*entries, _SINK_PIN]
        return pins

    @staticmethod
    def _resolve(name: str) -> list[str]:
        if name == "localhost" or name.endswith(".localhost"):
            # libcurl answers these itself with both loopback addresses (RFC 6761),
            # whatever /etc/hosts says.
            return ["127.0.0.1", "::1"]
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return []  # libcurl will fail to resolve it too (CURLcode 6)
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]).compressed for info in infos]

    def _allowed(self, wiring: _TrackWiring, address: Any) -> bool:
        family, _socktype, _protocol, addr = address
        if family == _AF_UNIX:
            return True  # CURLOPT_UNIX_SOCKET_PATH: local, not the network
        ip, port = addr[0], addr[1]
        if ip != SINK_IP:
            if ip in self._allowed_ips:
                return True
            # An allowed name may resolve to a new address since we last looked.
            for name in self._names:
                fresh = self._resolve(name)
                self._allowed_ips.update(fresh)
                if ip in fresh:
                    return True
        self._refused(wiring, ip, port)
        return False

    def _refused(self, wiring: _TrackWiring, ip: str, port: int) -> None:
        url = wiring.url
        host = _url_host(url)
        if ip == SINK_IP:
            target = f"{host or '?'}:{port}"
            why = "which is not an allowed host"
            fix = f"--curlfault-allow-hosts={host}" if host else "--curlfault-allow-hosts"
        else:
            target = f"{ip}:{port}" + (f" for host {host}" if host else "")
            why = (
                "an address that no allowed host resolves to (reached through a proxy, "
                "CURLOPT_CONNECT_TO or CURLOPT_RESOLVE)"
            )
            fix = f"--curlfault-allow-hosts={ip}"
        self._event(
            UNEXPECTED,
            f"pycurl connected to {target} (url {url or 'unknown'}), {why}; the connection "
            f"was refused (CURLcode 7). Serve it with the curlfault fixture or allow it with "
            f"{fix} (ini: curlfault_allow_hosts)",
            wiring.site,
        )

    # the ledger ------------------------------------------------------------------------
    def _opened(self, wiring: _TrackWiring, fd: int, address: Any) -> None:
        family, socktype, _protocol, addr = address
        keep = None
        curl = wiring._curl()
        if curl is not None and (curl.multi() is not None or curl.share() is not None):
            keep = curl  # pooled outside the handle: it must outlive the connection
        if family == _AF_UNIX:
            kind, peer = "unix", str(addr)
        else:
            kind = "udp" if socktype & _SOCKTYPE_MASK == socket.SOCK_DGRAM else "tcp"
            peer = f"[{addr[0]}]:{addr[1]}" if family == socket.AF_INET6 else f"{addr[0]}:{addr[1]}"
        rec = SocketRecord(
            inode=os.fstat(fd).st_ino,
            fd=fd,
            family=str(family),
            peer=peer,
            host="",
            url=wiring.url,
            kind=kind,
            opened_in=self.label,
            handle_site=wiring.site,
            owner=keep,
            connected=False,
        )
        with self._lock:
            self._seq += 1
            rec.seq = self._seq
            self._open[rec.inode] = rec

    def _closing(self, wiring: _TrackWiring, fd: int) -> tuple[SocketRecord | None, int | None]:
        inode = socket_inode(fd)
        with self._lock:
            rec = self._open.get(inode) if inode is not None else None
            if rec is not None:
                rec.closes += 1
        if rec is not None:
            if rec.closes > 1:
                host = _url_host(rec.url) or rec.peer
                self._event(
                    DOUBLE_CLOSE,
                    f"closesocket({fd}) called {rec.closes} times for one socket: fd {fd} "
                    f"(inode {rec.inode}) {rec.kind} to {host}, url {rec.url or 'unknown'}, "
                    f"opened in {rec.opened_in or 'no test'}",
                    wiring.site,
                )
            return rec, inode
        if fd in self._unrecorded:
            return None, inode  # the internal error was reported when it happened
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
        return None, inode

    def _closed_socket(self, rec: SocketRecord, *, still_open: bool) -> None:
        if still_open:
            note = "the handle's CLOSESOCKETFUNCTION returned without closing it"
            if note not in rec.notes:
                rec.notes.append(note)
            return
        with self._lock:
            if self._open.get(rec.inode) is rec:
                del self._open[rec.inode]
            if rec.owner is not None:
                # Not dropped here: this may be the handle's last reference, and freeing a
                # handle inside its own callback is unsafe. The next audit drops it.
                self._graveyard.append(rec.owner)
                rec.owner = None

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

        Records whose socket is gone from ``/proc/self/fd`` (pycurl closed them in C at
        multi/share teardown) are dropped.
        """
        self._bury()
        with self._lock:
            candidates = [r for r in self._open.values() if label is None or r.opened_in == label]
        if not candidates:
            return []
        live = open_socket_inodes()
        gone = [r for r in candidates if r.inode not in live]
        if gone:
            with self._lock:
                for r in gone:
                    r.closed_by_pycurl = True
                    if self._open.get(r.inode) is r:
                        del self._open[r.inode]
                    if r.owner is not None:
                        self._graveyard.append(r.owner)
                        r.owner = None
            self._bury()
        return sorted((r for r in candidates if r.inode in live), key=lambda r: r.seq)

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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


Tracker.__module__ = "curlfault"
