"""The names a test declares: hosts, ports and route paths, checked where they are written,
and the loopback alias addresses each network numbers its endpoints with.

A host must be something libcurl's RESOLVE/CONNECT_TO pins can carry and a URL can name; a
path must be something a request target can be, or no request could ever match it. Each
check raises ``UsageError`` naming the problem and the spelling to use instead.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote

from ._errors import UsageError
from ._track_report import ip_literal

__all__ = [
    "SYNTHETIC_SUFFIX",
    "alias6_of",
    "alias_address",
    "check_host",
    "check_path",
    "check_port",
]

# The domain of the names a dual-stack fake's CONNECT_TO entry names and its RESOLVE entry
# maps to two addresses (``.invalid`` never resolves, should a name ever reach a resolver).
SYNTHETIC_SUFFIX = ".curlfault.invalid"

_ALIAS_BASE = int(ipaddress.IPv4Address("127.77.0.1"))
_ALIAS6_BASE = int(ipaddress.IPv6Address("fdcf::"))  # unique local: never routed anywhere


# Every network numbers its endpoints from the same base, so the spellings repeat from test
# to test: made once (ipaddress is slow next to the rest of declaring an endpoint).
@functools.lru_cache(maxsize=4096)
def alias_address(n: int) -> str:
    """The IPv4 loopback alias of a network's endpoint number ``n`` (from 0)."""
    return str(ipaddress.IPv4Address(_ALIAS_BASE + n))


@functools.lru_cache(maxsize=4096)
def alias6_of(alias: str) -> str:
    n = int(ipaddress.IPv4Address(alias)) - _ALIAS_BASE + 1
    return str(ipaddress.IPv6Address(_ALIAS6_BASE + n))


_NOT_IN_HOST = re.compile(r"[/\s]")
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%~"  # what quote() leaves as it is in a suggested path
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def check_path(path: object, star: bool = True) -> None:
    """A route's path: what a request target can be (no space or control character)."""
    if not isinstance(path, str) or not path.startswith(("/", "*") if star else "/"):
        raise UsageError(f"path must start with '/', got {path!r}")
    bad = _NOT_IN_TARGET.search(path)
    if bad is not None:
        raise UsageError(
            f"path {path!r} has {bad.group()!r}, which no request target carries, so no "
            "request could match; percent-encode it (a space is %20)"
        )
    if not path.isascii():
        # libcurl sends a URL's other characters percent-encoded (UTF-8): match that.
        raise UsageError(
            f"path {path!r} is not ASCII, and a request target always is, so no request "
            f"could match; declare it percent-encoded, as clients send it: "
            f"{quote(path, safe=_TARGET_SAFE)!r}"
        )


def check_host(host: object, spelled: str = "net", method: str = "http") -> str:
    """A declared host, checked: what libcurl's pins can carry and a URL can name. A hint
    writes the declaration as ``{spelled}.{method}(...)``."""
    if not isinstance(host, str) or not host or _NOT_IN_HOST.search(host):
        raise UsageError(f"host must be a host name or IP literal like 'api.test', got {host!r}")
    name = host.strip("[]").lower()
    if ":" in name:
        # Spelled as libcurl writes a URL's IPv6 host, or the pins would never match.
        ip = ip_literal(name)
        if ip is not None:
            return ip
        bare, _, port = host.rpartition(":")
        if port.isdigit() and bare:
            raise UsageError(
                f"host {host!r} includes a port; pass it apart, as in "
                f"{spelled}.{method}({bare.strip('[]')!r}, {port})"
            )
        raise UsageError(f"host must be a host name or IP literal like 'api.test', got {host!r}")
    if not name.isascii():
        try:
            hint = f"; use its ASCII form {name.encode('idna').decode()!r}"
        except UnicodeError:
            hint = ""
        raise UsageError(f"host {host!r} is not ASCII, which libcurl's pins cannot carry{hint}")
    if not _HOST_NAME.fullmatch(name):
        raise UsageError(
            f"host must be a host name (letters, digits, '-', '_' and dots) or an IP literal "
            f"like 'api.test', got {host!r}"
        )
    return name


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"port must be an int from 1 to 65535, got {port!r}")
    return port
