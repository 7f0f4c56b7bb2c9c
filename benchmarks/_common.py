"""Shared pieces of the benchmark harness: canned responses, handle set-up, statistics, probes.

Every handle gets a TIMEOUT, ``NOPROXY = "*"`` and either a socketpair (floors, curlfault) or a
loopback address (peers); nothing here connects anywhere else.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pycurl

# pycurl's own class, taken before anything can swap in curlfault's intercepting subclass:
# floors and peers must never be routed through a fake network.
REAL_CURL: type[pycurl.Curl] = pycurl.Curl
if REAL_CURL.__module__ == "curlfault":  # pragma: no cover - imported inside an intercept
    from curlfault._intercept import real_curl

    REAL_CURL = real_curl()

TIMEOUT = 10  # seconds, on every handle
BODY = b"hello"
BIG = 1 << 20  # the 1 MiB body
BIG_BODY = b"x" * BIG


def http_response(body: bytes) -> bytes:
    """A complete keep-alive HTTP/1.1 response with ``body``."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


RESPONSE = http_response(BODY)
BIG_RESPONSE = http_response(BIG_BODY)


def basic_options(curl: Any, url: str, buf: io.BytesIO, *, own_proxy: bool = True) -> None:
    """The options every benchmarked request sets (curlfault owns NOPROXY on its handles)."""
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, buf)
    curl.setopt(pycurl.TIMEOUT, TIMEOUT)
    if own_proxy:
        curl.setopt(pycurl.NOPROXY, "*")


def expect(buf: io.BytesIO, body: bytes, what: str) -> None:
    got = buf.getvalue()
    if got != body:
        raise RuntimeError(f"{what}: expected {len(body)} body bytes, got {len(got)}: {got[:60]!r}")


# statistics -------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks (q=0.5: the median)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def p90(values: Sequence[float]) -> float:
    return quantile(values, 0.9)


# process probes ---------------------------------------------------------------------------


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    """OS threads of this process (Python threads and any native ones)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1  # pragma: no cover


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1  # pragma: no cover


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def join_or_fail(thread: threading.Thread, timeout: float = 5.0) -> None:
    thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError(f"thread {thread.name} did not stop within {timeout}s")


def drain(sock: socket.socket) -> None:
    """Read whatever request bytes are waiting, without blocking."""
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def callgrind_instructions(argv: list[str], timeout: float = 900) -> int:
    """User-space instructions of ``python argv...`` under ``valgrind --tool=callgrind``.

    With a fixed hash seed: string hashes decide dict and set layouts (and so probe counts),
    which otherwise move a count by a few percent from one run to the next.
    """
    import os
    import re
    import subprocess
    import sys

    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *argv],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def run_case(case: Any, n: int) -> None:
    """``case``'s whole life with ``n`` operations (a row run alone, as under callgrind)."""
    case.setup()
    case.begin()
    try:
        for _ in range(n):
            case.op()
    finally:
        case.end()
        case.teardown()
