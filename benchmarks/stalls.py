"""Transfers whose last client bytes come with no debug event after them: do they wait?

    python benchmarks/stalls.py              # medians per row, and how many took > 15 ms
    python benchmarks/stalls.py --n 25

curlfault serves a fake connection in the client's thread, from libcurl's debug callback,
right after libcurl wrote. Two kinds of write have no event after them: a TLS 1.2 client's
last handshake flight (it then waits for the server's Finished), and the last frames of an
HTTP/2 request body (libcurl announces ``DATA_OUT`` when it hands the bytes to nghttp2, which
writes them later). For those the loop thread watches the connection and wakes when the
bytes arrive; without that, only its 20 ms safety-net scan would serve them. A row whose
median sits near 20 ms (or 40 ms) is a transfer that waited for the scan; the "over 15 ms"
count is only a hint (a 1 MB HTTP/2 body over TLS takes longer than that in h2's own frame
work). The decisive check is in the tests, which make the scan a minute long and still
expect these transfers to finish (tests/test_tls.py, tests/test_http2.py).

Every row is a fresh handle per transfer against one ``FakeNetwork`` per row; the first
transfer of a row is a warm-up (imports, certificates) and is not counted.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from typing import Any

import pycurl

from curlfault import FakeNetwork

SLOW = 0.015  # seconds: a transfer slower than this probably waited for the scan
TLS12 = pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2
H2 = {"http": pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, "https": pycurl.CURL_HTTP_VERSION_2TLS}


def _one(url: str, opts: dict[int, Any]) -> float:
    c = pycurl.Curl()
    buf = io.BytesIO()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEDATA, buf)
    c.setopt(pycurl.TIMEOUT, 30)
    for option, value in opts.items():
        c.setopt(option, value)
    try:
        t0 = time.perf_counter()
        c.perform()
        elapsed = time.perf_counter() - t0
        if c.getinfo(pycurl.RESPONSE_CODE) != 200 or buf.getvalue() != b"ok":
            raise RuntimeError(f"{url}: unexpected answer {buf.getvalue()[:60]!r}")
    finally:
        c.close()
    return elapsed


def row(label: str, scheme: str, http2: bool, opts: dict[int, Any], n: int) -> None:
    with FakeNetwork() as net:
        make = net.https if scheme == "https" else net.http
        make("stall.test", http2=http2).route("*", "/").respond(200, body=b"ok")
        url = f"{scheme}://stall.test/"
        with net.intercept():
            _one(url, opts)  # warm-up
            times = sorted(_one(url, opts) for _ in range(n))
    median = times[len(times) // 2]
    slow = sum(t > SLOW for t in times)
    print(f"| {label} | {median * 1e3:.1f} ms | {slow}/{n} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=15, help="transfers per row")
    args = ap.parse_args(argv)
    print(f"| transfer (fresh handle) | median | over {SLOW * 1e3:.0f} ms |")
    print("|---|---:|---:|")
    for scheme in ("https",):
        row("HTTPS GET, TLS 1.3", scheme, False, {}, args.n)
        row("HTTPS GET, TLS 1.2", scheme, False, {pycurl.SSLVERSION: TLS12}, args.n)
        row(
            "HTTP/2 GET over TLS 1.2",
            scheme,
            True,
            {pycurl.SSLVERSION: TLS12, pycurl.HTTP_VERSION: H2[scheme]},
            args.n,
        )
    for scheme in ("http", "https"):
        for size in (150_000, 1_000_000):
            for http2 in (False, True):
                opts: dict[int, Any] = {pycurl.POSTFIELDS: b"y" * size}
                if http2:
                    opts[pycurl.HTTP_VERSION] = H2[scheme]
                kind = "HTTP/2" if http2 else "HTTP/1.1"
                if scheme == "https":
                    kind += " over TLS"
                row(f"{kind} POST, {size // 1000} KB body", scheme, http2, opts, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
