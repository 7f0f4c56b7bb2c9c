"""HTTP/1.1 rows of the fault matrix: stream faults and connection faults.

``curlfault._matrix.CASES`` puts them in order around its control rows.
"""

from __future__ import annotations

from . import faults
from ._matrix import (
    BIG_UPLOAD,
    BODY,
    CHUNKED,
    GARBAGE,
    HOST,
    SHORT,
    URL,
    Case,
    Setup,
    http_endpoint,
)
from ._network import FakeNetwork

__all__ = ["CONNECTION_CASES", "STREAM_CASES", "dual_stack_endpoint"]


def _point_cases() -> list[Case]:
    cut = {"status_line": 52, "headers": 0, "body_start": 18, "body": 18}
    rows = [
        Case(f"{faults.close(at=at)!r}", http_endpoint(faults.close(at=at)), URL, code)
        for at, code in cut.items()
    ]
    rows += [
        Case(
            f"{faults.close(at=at)!r} chunked",
            http_endpoint(faults.close(at=at), headers=CHUNKED),
            URL,
            18,
        )
        for at in ("chunk_size", "body", "last_chunk")
    ]
    return rows


STREAM_CASES: tuple[Case, ...] = (
    *_point_cases(),
    Case(f"{faults.reset(at='body')!r}", http_endpoint(faults.reset(at="body")), URL, 56),
    Case(f"{faults.stall()!r}", http_endpoint(faults.stall()), URL, 28, options=SHORT),
    Case(
        f"{faults.stall(at='body')!r}",
        http_endpoint(faults.stall(at="body")),
        URL,
        28,
        options=SHORT,
    ),
    Case(f"{faults.delay(0.05)!r} under TIMEOUT", http_endpoint(faults.delay(0.05)), URL, 0),
    Case(
        f"{faults.delay(1.0)!r} past TIMEOUT",
        http_endpoint(faults.delay(1.0)),
        URL,
        28,
        options=SHORT,
    ),
    Case(
        f"{GARBAGE!r} as status line",
        http_endpoint(GARBAGE),
        URL,
        faults.Garbage.curlcode,
        note="not 8: libcurl decides the reply is not HTTP at all",
    ),
    Case(
        f"{faults.drip(1000, chunk=10)!r} past TIMEOUT",
        http_endpoint(faults.drip(1000, chunk=10)),
        URL,
        28,
        options=SHORT,
    ),
    Case(
        f"{faults.drip(500_000, chunk=100)!r}",
        http_endpoint(faults.drip(500_000, chunk=100)),
        URL,
        0,
    ),
    Case(f"{faults.slicer(100, 0.002)!r}", http_endpoint(faults.slicer(100, 0.002)), URL, 0),
    Case(
        f"{faults.latency(0.01, jitter=0.01, seed=7)!r}",
        http_endpoint(faults.latency(0.01, jitter=0.01, seed=7)),
        URL,
        0,
    ),
    Case(
        f"{faults.slow_close(0.05)!r}",
        http_endpoint(faults.slow_close(0.05)),
        URL,
        0,
        note="the body has a Content-Length: the client is done before the FIN",
    ),
    Case(
        f"{faults.delay(0.02) + faults.reset(after_bytes=100)!r}",
        http_endpoint(faults.delay(0.02) + faults.reset(after_bytes=100)),
        URL,
        56,
    ),
    Case(f"{faults.bad_content_length()!r}", http_endpoint(faults.bad_content_length()), URL, 8),
    Case(
        f"{faults.conflicting_content_length()!r}",
        http_endpoint(faults.conflicting_content_length()),
        URL,
        8,
    ),
    Case(f"{faults.body_length(10)!r} (shorter)", http_endpoint(faults.body_length(10)), URL, 18),
    Case(
        f"{faults.body_length(-10)!r} (longer)",
        http_endpoint(faults.body_length(-10)),
        URL,
        0,
        note="libcurl discards the excess and does not reuse the connection",
    ),
    Case(f"{faults.bad_chunk_size()!r}", http_endpoint(faults.bad_chunk_size()), URL, 56),
    Case(
        f"{faults.wrong_encoding()!r} with ACCEPT_ENCODING",
        http_endpoint(faults.wrong_encoding()),
        URL,
        61,
        options=(("ACCEPT_ENCODING", ""),),
    ),
    Case(
        f"{faults.wrong_encoding()!r} without decoding",
        http_endpoint(faults.wrong_encoding()),
        URL,
        0,
    ),
    Case(f"{faults.oversized_header()!r}", http_endpoint(faults.oversized_header()), URL, 100),
    Case(
        f"{faults.stop_reading(1000)!r} on a 3 MB POST",
        http_endpoint(faults.stop_reading(1000), method="POST"),
        URL,
        28,
        options=(*SHORT, ("POSTFIELDS", BIG_UPLOAD)),
    ),
    Case(
        f"{faults.no_continue()!r}",
        http_endpoint(faults.no_continue(), method="POST"),
        URL,
        0,
        options=(
            ("POSTFIELDS", b"y" * 100),
            ("HTTPHEADER", ["Expect: 100-continue"]),
            ("EXPECT_100_TIMEOUT_MS", 100),
        ),
        note="libcurl sends the body after EXPECT_100_TIMEOUT_MS",
    ),
    Case(
        f"{faults.early_response()!r} 413 on a 3 MB POST",
        http_endpoint(faults.early_response(), method="POST", status=413),
        URL,
        0,
        options=(("POSTFIELDS", BIG_UPLOAD),),
        note="libcurl stops sending and reports the 413",
    ),
)


def dual_stack_endpoint(ipv6_fault: faults.ConnectionFault) -> Setup:
    """A setup whose host resolves to IPv6 and IPv4: ``ipv6_fault`` on IPv6, IPv4 served."""

    def setup(net: FakeNetwork, transport: str) -> None:
        endpoint = net.http(HOST, transport=transport)
        endpoint.connection_faults(ipv6_fault, family="ipv6")
        endpoint.get("/").respond(200, body=BODY)

    return setup


CONNECT_MS = 100  # CONNECTTIMEOUT_MS of the rows that a connect timeout ends
OWN_CONNECT = "libcurl's own connect to a reserved loopback port"
CONNECTION_CASES: tuple[Case, ...] = (
    Case(
        f"{faults.connection_refused()!r} via connection_faults",
        http_endpoint(connection_faults=[faults.connection_refused()]),
        URL,
        faults.ConnectionRefused.curlcode,
        note=f"{OWN_CONNECT}, closed: the kernel answers RST",
    ),
    Case(
        f"{faults.connect_timeout()!r} with CONNECTTIMEOUT_MS={CONNECT_MS}",
        http_endpoint(connection_faults=[faults.connect_timeout()]),
        URL,
        faults.ConnectTimeout.curlcode,
        options=(("CONNECTTIMEOUT_MS", CONNECT_MS),),
        note=f"{OWN_CONNECT} whose accept queue is full: the kernel drops the SYN",
    ),
    Case(
        f"{faults.slow_connect(0.2)!r}",
        http_endpoint(connection_faults=[faults.slow_connect(0.2)]),
        URL,
        faults.SlowConnect.curlcode,
        note="connects on the first SYN retransmission at or after 0.2 s: 1 s on Linux",
    ),
    Case(
        f"{faults.slow_connect(2.0)!r} past CONNECTTIMEOUT_MS={CONNECT_MS}",
        http_endpoint(connection_faults=[faults.slow_connect(2.0)]),
        URL,
        28,
        options=(("CONNECTTIMEOUT_MS", CONNECT_MS),),
    ),
    Case(
        f"{faults.connection_refused()!r} on IPv6, IPv4 served",
        dual_stack_endpoint(faults.connection_refused()),
        URL,
        0,
        note="happy eyeballs: libcurl falls back to IPv4 at once",
    ),
    Case(
        f"{faults.connect_timeout()!r} on IPv6, IPv4 served",
        dual_stack_endpoint(faults.connect_timeout()),
        URL,
        0,
        note="happy eyeballs: libcurl starts IPv4 ~200 ms after the pending IPv6 attempt",
    ),
)
