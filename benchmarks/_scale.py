"""Scale: many concurrent transfers through one CurlMulti, and memory per idle connection.

Each measurement runs in a fresh interpreter (``python _scale.py MODE N``, JSON on stdout) so
that thread, descriptor and memory counts start from the same place for every row.

* ``multi-curlfault`` / ``multi-floor``: N handles in one ``CurlMulti`` driven the way tornado
  drives it (``M_SOCKETFUNCTION`` + epoll + ``socket_action``; ``select()`` cannot watch
  descriptors above 1024). One timed pass, then a second pass that samples threads and
  descriptors on every loop iteration. Everything is closed at the end and the process must
  hold the threads and descriptors it started with.
* ``idle-curlfault`` / ``idle-floor``: N easy handles, each with one finished keep-alive GET,
  so each holds one idle connection; resident memory before and after, per connection.
* ``idle-curlfault-py``: the same under ``tracemalloc``: Python bytes per connection and the
  allocation sites, for the profile.
"""

from __future__ import annotations

import gc
import io
import json
import os
import select
import socket
import sys
import time
import warnings
from typing import Any

import pycurl
from _common import (
    BODY,
    REAL_CURL,
    RESPONSE,
    basic_options,
    expect,
    fd_count,
    rss_kib,
    thread_count,
)

DEADLINE = 120.0  # seconds for one pass of the multi loop
SCALE_TIMEOUT = 60  # TIMEOUT on every handle here (a thousand transfers share the CPU)


def _close_fd(fd: int) -> int:
    os.close(fd)
    return 0


class _Floor:
    """Pre-written socketpairs; the server ends are held until ``close()``."""

    url = "http://127.0.0.1:9/"

    def __init__(self) -> None:
        self.servers: list[socket.socket] = []

    def _open(self, purpose: int, address: Any) -> int:
        client, server = socket.socketpair()
        server.send(RESPONSE)
        self.servers.append(server)
        return client.detach()

    def handle(self) -> tuple[Any, io.BytesIO]:
        c = REAL_CURL()
        buf = io.BytesIO()
        basic_options(c, self.url, buf)
        c.setopt(pycurl.TIMEOUT, SCALE_TIMEOUT)
        c.setopt(pycurl.OPENSOCKETFUNCTION, self._open)
        c.setopt(pycurl.SOCKOPTFUNCTION, lambda fd, purpose: pycurl.SOCKOPT_ALREADY_CONNECTED)
        c.setopt(pycurl.CLOSESOCKETFUNCTION, _close_fd)
        return c, buf

    def close(self) -> None:
        for s in self.servers:
            s.close()
        self.servers.clear()


class _Curlfault:
    url = "http://api.test/"

    def __init__(self) -> None:
        from curlfault import FakeNetwork

        self.net = FakeNetwork(label="scale")  # its own loop, stopped by close()
        self.net.http("api.test").get("/").respond(200, body=BODY)
        # Handles made under intercept() keep their connections (an attached plain handle
        # gets FORBID_REUSE, and the idle rows measure kept connections).
        self._routing = self.net.intercept()
        self._routing.__enter__()

    def handle(self) -> tuple[Any, io.BytesIO]:
        c = pycurl.Curl()
        buf = io.BytesIO()
        basic_options(c, self.url, buf, own_proxy=False)
        c.setopt(pycurl.TIMEOUT, SCALE_TIMEOUT)
        return c, buf

    def kept(self) -> int:
        """Connections not closed yet: the idle ones the handles keep."""
        return len(self.net.ledger.unclosed())

    def close(self) -> None:
        try:
            self._routing.__exit__(None, None, None)
            self.net.check()
        finally:
            self.net.close()


def _drive(multi: Any, n: int, sample: Any = None) -> None:
    """Run every transfer in ``multi`` to completion with epoll and socket_action."""
    ep = select.epoll()
    watched: set[int] = set()
    timeout = [0.0]

    def on_socket(what: int, fd: int, _multi: Any, _data: Any) -> None:
        if what == pycurl.POLL_REMOVE:
            if fd in watched:
                watched.discard(fd)
                try:
                    ep.unregister(fd)
                except OSError:
                    pass
            return
        mask = (select.EPOLLIN if what & pycurl.POLL_IN else 0) | (
            select.EPOLLOUT if what & pycurl.POLL_OUT else 0
        )
        if fd in watched:
            ep.modify(fd, mask)
        else:
            ep.register(fd, mask)
            watched.add(fd)

    def on_timer(ms: int) -> None:
        timeout[0] = -1.0 if ms < 0 else ms / 1000.0

    multi.setopt(pycurl.M_SOCKETFUNCTION, on_socket)
    multi.setopt(pycurl.M_TIMERFUNCTION, on_timer)
    ok = 0
    failed: list[Any] = []
    try:
        multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        deadline = time.monotonic() + DEADLINE
        while True:
            while True:
                queued, done, errors = multi.info_read()
                ok += len(done)
                failed.extend(errors)
                if not queued:
                    break
            if ok + len(failed) >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{n - ok - len(failed)} transfers still running after {DEADLINE}s"
                )
            wait = timeout[0]
            events = ep.poll(0.1 if wait < 0 else min(wait, 0.1))
            if sample is not None:
                sample()
            if not events:
                multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
            for fd, ev in events:
                flags = (pycurl.CSELECT_IN if ev & select.EPOLLIN else 0) | (
                    pycurl.CSELECT_OUT if ev & select.EPOLLOUT else 0
                )
                if ev & (select.EPOLLERR | select.EPOLLHUP):
                    flags |= pycurl.CSELECT_ERR
                multi.socket_action(fd, flags)
    finally:
        ep.close()
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} transfers failed, first: {failed[0][1:]}")


def _multi_pass(kind: str, n: int, sample: Any = None) -> float:
    server = _Curlfault() if kind == "curlfault" else _Floor()
    t0 = time.perf_counter()
    multi = pycurl.CurlMulti()
    handles = []
    for _ in range(n):
        c, buf = server.handle()
        multi.add_handle(c)
        handles.append((c, buf))
    _drive(multi, n, sample)
    for c, buf in handles:
        expect(buf, BODY, f"multi-{kind}")
        multi.remove_handle(c)
    # Handles outlive their multi: freeing one whose connection is pooled in the multi and
    # then closing the multi is a use-after-free in pycurl 7.49.
    multi.close()
    for c, _ in handles:
        c.close()
    server.close()
    wall = time.perf_counter() - t0
    return wall


def multi(kind: str, n: int) -> dict[str, Any]:
    # pycurl closes the connections pooled in the multi in C and warns that it could not call
    # the closesocket callback; expected here (see PYCURL_NOTES.md).
    warnings.filterwarnings("ignore", "closesocket_callback failed to acquire thread")
    _multi_pass(kind, 10)  # warm-up: imports, the first connection
    gc.collect()
    fds0, threads0 = fd_count(), thread_count()
    wall = _multi_pass(kind, n)
    peak = {"threads": 0, "fds": 0}

    def sample() -> None:
        peak["threads"] = max(peak["threads"], thread_count())
        peak["fds"] = max(peak["fds"], fd_count())

    _multi_pass(kind, n, sample)
    gc.collect()
    return {
        "wall_s": wall,
        "threads_before": threads0,
        "peak_threads": peak["threads"],
        "threads_after": thread_count(),
        "fds_before": fds0,
        "peak_fds": peak["fds"],
        "fds_after": fd_count(),
    }


def idle(kind: str, n: int, python_only: bool = False) -> dict[str, Any]:
    server = _Curlfault() if kind == "curlfault" else _Floor()

    def connect(count: int) -> list[Any]:
        held = []
        for _ in range(count):
            c, buf = server.handle()
            c.perform()
            expect(buf, BODY, f"idle-{kind}")
            held.append(c)  # its connection stays in the handle's pool, idle
        return held

    for c in connect(20):  # warm-up
        c.close()
    gc.collect()
    if python_only:
        import tracemalloc

        tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot()
    before = rss_kib()
    held = connect(n)
    gc.collect()
    after = rss_kib()
    result: dict[str, Any] = {"rss_before_kib": before, "rss_after_kib": after}
    result["kib_per_connection"] = (after - before) / n
    if python_only:
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snap1.compare_to(snap0, "lineno")
        result["py_bytes_per_connection"] = sum(s.size_diff for s in stats) / n
        result["top"] = [
            (str(s.traceback[0]), s.size_diff / n, s.count_diff / n)
            for s in stats[:12]
            if s.size_diff > 0
        ]
    fds_held = fd_count()
    if isinstance(server, _Curlfault) and server.kept() < n:
        raise RuntimeError(f"idle-{kind}: {server.kept()} connections kept idle, not {n}")
    for c in held:
        c.close()
    server.close()
    gc.collect()
    result["fds_held"] = fds_held
    result["fds_after"] = fd_count()
    return result


def main(argv: list[str]) -> None:
    mode, n = argv[0], int(argv[1])
    if mode.startswith("multi-"):
        out = multi(mode.split("-", 1)[1], n)
    elif mode == "idle-curlfault-py":
        out = idle("curlfault", n, python_only=True)
    elif mode.startswith("idle-"):
        out = idle(mode.split("-", 1)[1], n)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
