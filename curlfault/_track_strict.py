"""The strict half of a ``Tracker`` (``--curlfault-strict``): which connections are allowed.

Every connection to a host that is not on the allow-list is refused without a resolver
query: the tracked handle's CONNECT_TO (``_pins``) maps each allowed name (and the addresses
it resolves to) to itself and every other host to a sink address, and its opensocket refuses
the sink (``_allowed``), recording an event that names the host, the URL and the fix
(``_refused``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from . import _intercept
from ._track_report import (
    UNEXPECTED,
    ip_literal,
    is_ip,
    is_localhost,
    other_spelling,
    url_host,
)
from ._wiring import SINK_IP

if TYPE_CHECKING:
    from ._ledger import Site
    from ._track_wiring import TrackWiring

__all__ = ["StrictRouting"]

_AF_UNIX = getattr(socket, "AF_UNIX", -1)
# Unlisted hosts go here without a resolver query; the port is kept, so the refusal can
# name it. The opensocket callback refuses this address.
_SINK_PIN = f"::{SINK_IP}:"


class StrictRouting:
    """The allow-list of a ``Tracker``: its CONNECT_TO pins and the opensocket's verdict."""

    # Set by Tracker.__init__.
    allow_hosts: tuple[str, ...]
    _names: tuple[str, ...]
    _pin_list: list[str] | None
    _allowed_ips: set[str]

    def _event(self, kind: str, text: str, site: Site | None = None) -> None:
        raise NotImplementedError  # Tracker's

    def _pins(self) -> list[str]:
        """CONNECT_TO: every allowed name (and its addresses) to itself, the rest to the sink."""
        pins = self._pin_list
        if pins is None:
            hosts = list(self.allow_hosts)
            for name in self._names:
                hosts.extend(self._resolve(name))
            self._allowed_ips.update(h for h in hosts if is_ip(h))
            # A name's other spelling ("api.example.com." is "api.example.com" to DNS) is
            # allowed too: a URL may use either, and libcurl matches its pins as spelled.
            names = set(self._names)
            hosts += [o for n in self._names if (o := other_spelling(n)) and o not in names]
            entries = []
            for host in dict.fromkeys(hosts):
                h = f"[{host}]" if ":" in host else host
                entries.append(f"{h}::{h}:")
            pins = self._pin_list = [*entries, _SINK_PIN]
        return pins

    @staticmethod
    def _resolve(name: str) -> list[str]:
        if is_localhost(name):
            return ["127.0.0.1", "::1"]
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return []  # libcurl will fail to resolve it too (CURLcode 6)
        found = (ip_literal(str(info[4][0]).split("%")[0]) for info in infos)
        return [ip for ip in found if ip is not None]

    def _is_allowed_name(self, host: str) -> bool:
        """Whether the URL host ``host`` is allowed: on the list in either spelling, or an
        address an allowed name resolves to (``localhost`` allows ``127.0.0.1``)."""
        allowed = self.allow_hosts
        ip = ip_literal(host)
        if ip is not None:
            return ip in allowed or ip in self._allowed_ips
        return host in allowed or other_spelling(host) in allowed

    def _allowed(self, wiring: TrackWiring, address: Any) -> bool:
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

    def _refused(self, wiring: TrackWiring, ip: str, port: int) -> None:
        url = wiring.url
        host = url_host(url)
        if ip == SINK_IP and host and self._served_in_use(host):
            # A handle made before the network in use intercepted (a fixture of wider
            # scope, import time, another thread): that network serves the host, so the
            # allow-list advice would send a made-up name to the real resolver.
            self._event(
                UNEXPECTED,
                f"pycurl connected to {host}:{port} (url {url}) with a handle that the "
                "FakeNetwork in use did not route, though it serves that host: the handle "
                "was made before the network intercepted (by an autouse fixture, a fixture "
                "of a wider scope, at import time, or in another thread); the connection was "
                "refused (CURLcode 7). Make the handle inside the test (or in a "
                "function-scoped fixture that is not autouse), or route it with "
                "curlfault.attach(handle), which a reset() of a plain pycurl handle undoes "
                "(tornado's client resets its handles after every request)",
                wiring.site,
            )
            return
        if ip == SINK_IP and host and self._is_allowed_name(host):
            # The URL's host is allowed, so this connection is for another one: a redirect's
            # target (a tracked handle does not see the Location) or the client's own
            # CONNECT_TO. Its name is not known here; libcurl's error text has it.
            target = f"port {port} of a host that is not allowed"
            why = (
                f"not the URL's host {host}, which is allowed: a redirect's target or a "
                "CONNECT_TO mapping, which libcurl's error message names"
            )
            fix = "--curlfault-allow-hosts=<that host>"
        elif ip == SINK_IP:
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

    def _served_in_use(self, host: str) -> bool:
        """Whether the network intercepting above this tracker serves ``host``."""
        serves = getattr(_intercept.router_in_use(other_than=self), "_serves_host", None)
        return serves is not None and bool(serves(ip_literal(host) or host))
