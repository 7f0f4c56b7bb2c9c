"""What a ``Tracker`` reports: events, audit reports, and leaked descriptors in words.

Also the allow-list entry parser, shared by ``Tracker(allow_hosts=...)`` and the pytest
options. Nothing here runs on a transfer: it is read when a problem is reported.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._errors import UsageError
from ._ledger import Site, SocketRecord, under_root

__all__ = [
    "CALLBACK_ERROR",
    "DOUBLE_CLOSE",
    "LIBRARY_FRAMES",
    "UNEXPECTED",
    "UNKNOWN_CLOSE",
    "TrackEvent",
    "TrackReport",
    "describe_fd",
    "describe_record",
    "ip_literal",
    "is_ip",
    "is_localhost",
    "other_spelling",
    "parse_host",
    "url_host",
]

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
        return f"{self.text}\n  the handle was made at:\n{format_site(self.site, root, hide)}"


@dataclass
class TrackReport:
    """What ``Tracker.audit()`` found for one label (or for every label)."""

    label: str | None
    leaked: list[SocketRecord] = field(default_factory=list)
    events: list[TrackEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.leaked or self.events)


def ip_literal(text: str) -> str | None:
    """``text`` as libcurl spells the IP address (``inet_ntop``), or None if it is not one.

    IPv6 keeps a zone id (``%eth0``). ``ipaddress`` would write ``::ffff:127.0.0.1`` as
    ``::ffff:7f00:1``, which no pin or opensocket address of libcurl's ever matches.
    """
    address, percent, zone = text.partition("%")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        if family == socket.AF_INET and percent:
            return None
        return socket.inet_ntop(family, packed) + percent + zone
    return None


# What a host name may hold (IDNA names in their ASCII form); '_' for the names tests use.
_HOST_CHARS = re.compile(r"[A-Za-z0-9_.-]+")


def parse_host(value: str) -> str:
    """One allow-list entry, validated: a host name or an IP literal, lower-cased.

    Raises ``UsageError`` for anything else (a URL, a port, a path, an empty string).
    """
    if not isinstance(value, str):
        raise UsageError(f"an allowed host must be a str, got {value!r}")
    host = value.strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    ip = ip_literal(bare)
    if ip is not None:
        return ip
    if any(c in host for c in "*?["):
        raise UsageError(
            f"{value!r} is a pattern, and allowed hosts are matched exactly; list each name "
            "or address ('localhost', '127.0.0.1', 'db.internal')"
        )
    if (
        not host
        or len(host) > 253
        or any(c in host for c in "/:@[]?# \t\r\n,")
        or host.startswith((".", "-"))
        or ".." in host
        or not _HOST_CHARS.fullmatch(host)
    ):
        raise UsageError(
            f"{value!r} is not a host name or an IP address; give names like "
            "'localhost' or 'db.internal' and addresses like '127.0.0.1' or '::1' "
            "(no scheme, port or path)"
        )
    return host.lower().rstrip(".")


def is_localhost(name: str) -> bool:
    """Whether libcurl answers ``name`` itself, with both loopback addresses (RFC 6761),
    whatever /etc/hosts says: no resolver is asked."""
    return name == "localhost" or name.endswith(".localhost")


def is_ip(host: str) -> bool:
    # Every network asks this of each declared host when it first pins a handle, so once
    # per test: a name that ends in a letter (``api.test``, ``localhost``) is answered
    # without ipaddress, whose two failed parses cost more than the rest of the pins.
    if ":" not in host and not host[-1:].isdigit():
        return False
    return _is_ip_literal(host)


@functools.lru_cache(maxsize=1024)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def other_spelling(host: str) -> str | None:
    """The same DNS name with its trailing dot dropped, or with one added ("api.test." is
    "api.test"); None for an IP literal. libcurl matches RESOLVE and CONNECT_TO entries as
    the URL spells the name, so a pin must carry both spellings."""
    if is_ip(host):
        return None
    return host[:-1] if host.endswith(".") else host + "."


def describe_record(rec: SocketRecord, root: str | None = None, hide: Iterable[str] = ()) -> str:
    """A leaked descriptor in a few lines: what, where to, which URL, and the handle's stack.

    Paths under ``root`` are shown relative to it; frames whose path contains one of
    ``hide`` (a test runner's own frames) are left out.
    """
    host = rec.host or url_host(rec.url)
    where = f"{host} ({rec.peer})" if host and host not in rec.peer else rec.peer
    lines = [
        f"fd {rec.fd} (inode {rec.inode}) {rec.kind} to {where}"
        + (f", url {rec.url}" if rec.url else ", url unknown")
        + f", opened in {rec.opened_in or 'no test (outside the test run)'}"
    ]
    lines.extend(f"  note: {note}" for note in rec.notes)
    lines.append("  the handle was made at:")
    lines.append(format_site(rec.handle_site, root, hide))
    return "\n".join(lines)


def describe_fd(fd: int) -> tuple[str, str, str]:
    """``(family, kind, peer)`` of the open socket ``fd``, read from the socket itself.

    Called for a descriptor that is still open (a leak being reported), never on a transfer.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return "?", "tcp", "unknown peer"
    try:
        family, socktype = sock.family, sock.type
        try:
            addr = sock.getpeername()
        except OSError:
            addr = None
    finally:
        sock.detach()  # the descriptor stays libcurl's
    if family == getattr(socket, "AF_UNIX", -1):
        return str(int(family)), "unix", str(addr or "unknown path")
    kind = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
    if not addr:
        return str(int(family)), kind, "not connected"
    ip, port = addr[0], addr[1]
    peer = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
    return str(int(family)), kind, peer


# Frames of the test runner between a test and the code that made a handle: left out of a
# printed stack unless nothing else is left.
LIBRARY_FRAMES = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}")


def format_site(site: Site | str, root: str | None, hide: Iterable[str] = ()) -> str:
    if not isinstance(site, Site):
        return f"    {site}"
    hidden = tuple(hide)
    frames = [f for f in site.frames if not any(h in f[0] for h in hidden)] or list(site.frames)
    if not frames:
        return "    ?"
    return "\n".join(
        f"    {under_root(filename, root)}:{lineno} in {function}"
        for filename, lineno, function in frames
    )


def url_host(url: str) -> str:
    if not url:
        return ""
    try:
        return urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    except ValueError:
        return ""
