"""The opensocket decision of a ``FakeNetwork``: which endpoint an address is, what its next
connection fault does, and the descriptor libcurl gets (one end of a socketpair or loopback
TCP pair that a fake serves, or a fresh socket that libcurl connects itself to the
endpoint's reserved port), recorded in the ledger.
"""

from __future__ import annotations

import _socket
import ipaddress
import os
import socket
import time
from typing import TYPE_CHECKING

from . import _intercept
from ._endpoints import _SELF_CONNECT, Connection, Endpoint
from ._errors import UnexpectedConnection, UsageError
from ._ledger import SocketRecord, pair_record
from ._listener import SYN_RETRIES
from ._track_report import is_ip, is_localhost, url_host
from ._transports import Channel, make_pair
from ._wiring import DEVICE, PASSTHROUGH, SINK_IP, Wiring
from .faults import (
    ConnectionFault,
    ConnectionRefused,
    ConnectTimeout,
    Refuse,
    SlowConnect,
    TlsFault,  # served by the endpoint's TLS layer
)

if TYPE_CHECKING:
    from ._network import FakeNetwork

__all__ = ["open_socket"]

# "ip:port" by (ip, port): a network keeps every connection, and most go to a few addresses.
_PEERS: dict[tuple[str, int], str] = {}
_AF_UNIX = getattr(socket, "AF_UNIX", -1)
_PEERS_MAX = 4096


def open_socket(net: FakeNetwork, family: int, ip: str, port: int, wiring: Wiring) -> int | None:
    """A descriptor for libcurl, or None to refuse. Runs in the thread calling perform."""
    if family == socket.AF_INET6:
        ip = str(ipaddress.IPv6Address(ip))  # the spelling our pins and points use
    point = (ip, port)
    peer = _PEERS.get(point)
    if peer is None:
        peer = (
            f"[{ip}]:{port}"
            if family == socket.AF_INET6
            else ip
            if family == _AF_UNIX  # "unix:PATH" (see Wiring._opensocket)
            else f"{ip}:{port}"
        )
        if len(_PEERS) < _PEERS_MAX:
            _PEERS[point] = peer
    ep = net._by_point.get(point) or net._by_alias.get(ip)
    url = wiring.redirect or wiring.url  # a redirect's connection: the URL it follows
    with net._lock:
        conn = Connection(net, len(net.connections) + 1, ep, peer, url)
        net.connections.append(conn)
    if net.closed:
        conn.refused = True
        conn.event("refused: the network is closed")
        text = (
            f"a handle routed through a FakeNetwork that has closed "
            f"({net.label or 'unlabelled'}) connected (url {url or '?'}) and was refused "
            "(CURLcode 7): a handle stays routed to the network it was made under or attached "
            "to; make the handle where it is used, or attach() it to the network in use now"
        )
        net._record(UnexpectedConnection(text))
        # Nobody checks a closed network: tell the router in use now (the running test's
        # network or --curlfault-leaks's tracker), which reports it in that test.
        router = _intercept.router_in_use(other_than=net)
        if router is not None:
            router._stray_connection(text, wiring.site)
        return None
    if ep is None and not net.strict and ip != SINK_IP:
        conn.transport = "passthrough"
        conn.event("not a fake host: passed through to the real network (strict=False)")
        return PASSTHROUGH
    if ep is None:
        conn.refused = True
        what, hint = _describe_url(url, net.spelled)
        if ip == SINK_IP and (not net.strict or _is_fake_host(net, url)):
            # A fake host on another port: it never reaches the real network, so strict=False
            # would not help (lax networks send a fake host's other ports to the sink too).
            conn.event("refused: a fake host, on a port no fake serves")
            net._record(
                UnexpectedConnection(
                    f"pycurl connected to {what}, a fake host on a port no fake serves "
                    f"(a fake host never reaches the real network, even with "
                    f"strict=False); add {hint}"
                )
            )
        elif ip == SINK_IP:
            conn.event("refused: no fake serves this host (strict)")
            net._record(
                UnexpectedConnection(
                    f"pycurl connected to {what}, which no fake serves; add {hint}, "
                    "or use strict=False (marker: curlfault(strict=False)) to let it "
                    "reach the real network"
                )
            )
        elif family == _AF_UNIX:
            conn.event("refused: a Unix socket (strict)")
            net._record(
                UnexpectedConnection(
                    f"pycurl connected to the Unix socket {peer[5:]} (CURLOPT_UNIX_SOCKET_PATH,"
                    f" {what}), which no fake serves; fakes serve host names only: drop the "
                    "option, or use strict=False (marker: curlfault(strict=False)) to let it "
                    "reach the socket"
                )
            )
        else:
            conn.event(f"refused: {peer} is not a fake address")
            net._record(
                UnexpectedConnection(f"pycurl connected to {peer} ({what}), which no fake serves")
            )
        return None
    conn.family = "ipv6" if family == socket.AF_INET6 else "ipv4"
    fault = ep._take_connection_fault(conn.family)
    ep.connections.append(conn)
    conn.fault = fault
    if isinstance(fault, Refuse):
        conn.refused = True
        conn.event("refused by fault refuse()")
        return None
    if isinstance(fault, _SELF_CONNECT) or ep.transport == "listener":
        return _own_connect(net, ep, conn, ip, port, fault, wiring)
    if fault is not None and not isinstance(fault, TlsFault):  # pragma: no cover
        raise NotImplementedError(f"connection fault {fault!r} is not modelled yet")
    kind = "tcp" if ep._needs_tcp else ep.transport
    binds = wiring.binds
    if binds is not None and DEVICE not in binds:
        _unbindable(net, ep, conn, kind, binds)
    client, server = make_pair(kind)
    conn.transport = kind
    conn.connected_at = connected = time.monotonic()
    try:
        inode = _inode(client)
        rec = net.ledger.opened(
            pair_record(
                inode,
                client.fileno(),
                conn.family,
                peer,
                ep.host,
                url,
                kind,
                net.label,
                wiring.site,
                conn,
                wiring.pool_keepalive(),
            )
        )
        channel = Channel(net.loop, server, conn)
        conn.channel = channel
        conn.event(f"connected ({kind})", connected)
        ep._serve(channel, conn)
    except BaseException:
        client.close()
        server.close()
        raise
    wiring.just_opened = rec
    wiring.channel = channel
    if wiring.kept is None:  # note_opened(inode), its usual case inline
        wiring.kept = inode
    else:
        wiring.note_opened(inode)
    return client.detach()


def _own_connect(
    net: FakeNetwork,
    ep: Endpoint,
    conn: Connection,
    ip: str,
    port: int,
    fault: ConnectionFault | None,
    wiring: Wiring,
) -> int | None:
    """A fresh socket that libcurl connects itself, to the endpoint's reserved port.

    The port is programmed for this connection before libcurl's connect() reaches it:
    closed (``connection_refused``), a full accept queue (``connect_timeout``), full
    until later (``slow_connect``) or listening (the ``"listener"`` transport).
    """
    point = ep._points.get(conn.family)
    if point is None or (point.address, point.port) != (ip, port):
        conn.refused = True
        conn.event("refused: the handle's pins predate the endpoint's reserved port")
        what = f"{fault!r}" if fault is not None else "the listener transport"
        net._record(
            UsageError(
                f"connection #{conn.id} to {ep.host} needs libcurl's own connect to the "
                f"endpoint's reserved port for {what}, but its handle was pinned before "
                f"that was declared and connected to {conn.peer}; declare connection "
                "faults before the handle's URL is set or its perform() starts"
            )
        )
        return None
    sock = socket.socket(point.family, socket.SOCK_STREAM)
    try:
        if isinstance(fault, (ConnectTimeout, SlowConnect)):
            # The kernel gives up on a SYN after tcp_syn_retries (11 s by default, then
            # ETIMEDOUT, code 7): keep it trying until libcurl's own timeout decides.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, SYN_RETRIES)
        rec = net.ledger.opened(
            SocketRecord(
                inode=_inode(sock),
                fd=sock.fileno(),
                family=conn.family,
                peer=conn.peer,
                host=ep.host,
                url=conn.url,
                kind="listener",
                opened_in=net.label,
                handle_site=wiring.site,
                owner=conn,
                keepalive=wiring.pool_keepalive(),
                connected=False,  # sockopt answers SOCKOPT_OK: libcurl connects it
            )
        )
        conn.transport = "listener"
        conn._point = point
        with net.loop.lock:
            if isinstance(fault, ConnectionRefused):
                conn.refused = True  # by the kernel, to libcurl's own connect
                point.refuse(conn)
            elif isinstance(fault, ConnectTimeout):
                point.hold(conn)
            elif isinstance(fault, SlowConnect):
                point.hold_then_serve(conn, rec, ep._serve, fault.seconds)
            else:
                point.serve(conn, rec, ep._serve)
    except BaseException:
        sock.close()
        raise
    wiring.note_opened(rec.inode)
    return sock.detach()


def _unbindable(
    net: FakeNetwork, ep: Endpoint, conn: Connection, kind: str, binds: dict[int, str]
) -> None:
    """The handle asks libcurl to bind its socket, which a pair refuses: say so (libcurl
    fails the transfer with 45 by itself, right after this connection is handed over)."""
    what = " and ".join(binds.values())
    conn.event(f"{what}: libcurl's bind() of a {kind} end fails")
    port = "" if ep.port == (443 if ep.scheme == "https" else 80) else f", {ep.port}"
    net._record(
        UsageError(
            f"connection #{conn.id} to {ep.host}: the handle sets {what}, so libcurl binds "
            f"the socket it is given, and the {kind} end curlfault hands over cannot be bound "
            "(CURLcode 45 INTERFACE_FAILED, or 7 for an address of the other family); declare "
            f"the endpoint with transport='listener' ({net.spelled}.{ep.scheme}({ep.host!r}{port}, "
            "transport='listener'): libcurl then binds and connects a loopback socket of its "
            f"own, to an {conn.family} address, so an INTERFACE address must be one too), or "
            "leave the option unset in tests"
        )
    )


def _is_fake_host(net: FakeNetwork, url: str) -> bool:
    """Whether some endpoint of ``net`` serves the host of ``url`` (on any port)."""
    host = url_host(url)
    if not host or is_ip(host) or is_localhost(host):
        return False  # a lax network lets these reach a real local server on another port
    return net._serves_host(host)


def _describe_url(url: str, spelled: str = "net") -> tuple[str, str]:
    """("host:port (url ...)", "`net.http('host')`") for an unexpected connection's report;
    ``spelled`` is what the hint calls the network (``FakeNetwork.spelled``)."""
    from urllib.parse import urlsplit

    if not url:
        return "an unknown host (the handle's URL was set outside curlfault)", "a fake for it"
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return f"the host of {url}", "a fake for it"
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    port = port or default
    kind = "https" if scheme in ("https", "wss") else "http"
    extra = "" if port in (None, default) else f", {port}"
    name = host.rstrip(".") or host  # "api.test." is "api.test": either spelling serves both
    return f"{host}:{port or '?'} (url {url})", f"`{spelled}.{kind}({name!r}{extra})`"


def _inode(sock: _socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino
