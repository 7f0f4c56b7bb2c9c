"""Where curlfault's time goes per request: event counts, ablations, piece costs, cProfile.

    python benchmarks/hotspots.py                 # everything, markdown on stdout (~1-2 min)
    python benchmarks/hotspots.py --n 500 --rounds 5 --skip cprofile

Four views, each with its limits:

1. **Debug events per request**, by libcurl info type, and how many pumps found work: the
   wiring pumps the fake servers from libcurl's debug callback, so this is the number of
   Python calls libcurl makes per request just to give curlfault a chance to run.
2. **Ablations**: the fresh-handle GET timed, interleaved, with one piece of curlfault switched
   off at a time by patching it *in this process only* (nothing on disk changes). The
   difference to the unpatched row is what that piece costs, uninstrumented. Some patches
   are only valid for this request (a stub protocol that answers every request the same way).
3. **Pieces** timed on their own, outside libcurl: a socketpair, an h11 exchange, wiring a
   handle, the ledger, a pump that finds nothing.
4. **cProfile** of each curlfault row: the top functions by own time, per request. cProfile
   makes Python calls 2-3x slower and C calls barely slower, so read it for shares and call
   counts, and views 2 and 3 for microseconds.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pycurl  # noqa: E402
from _cases import CfBig, CfFixture, CfFresh, CfHttps, CfKeepAlive, _NetCase  # noqa: E402
from _common import BODY, REAL_CURL, RESPONSE, basic_options, expect, median  # noqa: E402
from _floors import URL, FloorFresh, FloorKeepAlive, _already_connected, _close  # noqa: E402
from _timing import Case, run_interleaved  # noqa: E402

import curlfault  # noqa: E402
from curlfault import _intercept, _loop, _network, _wiring  # noqa: E402

INFO_NAMES = {getattr(pycurl, n): n[9:] for n in dir(pycurl) if n.startswith("INFOTYPE_")}


# 1. debug events -----------------------------------------------------------------------------


def count_events(n: int) -> list[str]:
    loop = curlfault.Loop(name="profile-loop")
    import trustme

    ca = trustme.CA()
    kinds: collections.Counter[int] = collections.Counter()
    pumps: collections.Counter[str] = collections.Counter()
    served_by: collections.Counter[str] = collections.Counter()
    orig_debug = _wiring.Wiring._debug
    orig_pump = _loop.Loop.pump
    from curlfault import _transports

    orig_readable = _transports.Channel.on_readable

    last = [0]
    useful: collections.Counter[int] = collections.Counter()

    def debug(self: Any, kind: int, data: bytes) -> None:
        kinds[kind] += 1
        last[0] = kind
        orig_debug(self, kind, data)

    def pump(self: Any) -> int:
        served = orig_pump(self)
        pumps["found work" if served else "found nothing"] += 1
        if served and threading.current_thread() is threading.main_thread():
            useful[last[0]] += 1
        return served

    def on_readable(self: Any) -> None:
        served_by[threading.current_thread().name] += 1
        orig_readable(self)

    rows = [
        "| row | debug callbacks per request (by info type) | pumps: found work / nothing | "
        "pumps that found work, by the event that triggered them | server reads by thread |",
        "|---|---|---|---|---|",
    ]
    patches = [
        (_wiring.Wiring, "_debug", debug),
        (_loop.Loop, "pump", pump),
        (_transports.Channel, "on_readable", on_readable),
    ]
    with patched(patches):
        for cls in (CfFresh, CfKeepAlive, CfBig, CfHttps):
            case = cls(loop, ca)
            case.begin()
            try:
                for _ in range(5):
                    case.op()
                kinds.clear()
                pumps.clear()
                served_by.clear()
                useful.clear()
                m = max(20, n // (10 if cls in (CfBig, CfHttps) else 1))
                for _ in range(m):
                    case.op()
            finally:
                case.end()
            by_kind = ", ".join(f"{INFO_NAMES[k]} {v / m:.1f}" for k, v in sorted(kinds.items()))
            by_thread = ", ".join(f"{k} {v / m:.2f}" for k, v in served_by.items())
            by_trigger = ", ".join(
                f"{INFO_NAMES[k]} {v / m:.1f}" for k, v in sorted(useful.items())
            )
            rows.append(
                f"| {case.label} | **{sum(kinds.values()) / m:.1f}**: {by_kind} | "
                f"{pumps['found work'] / m:.1f} / {pumps['found nothing'] / m:.1f} | "
                f"{by_trigger} | {by_thread} |"
            )
    loop.stop()
    return rows


class patched:
    """Set attributes for the duration of a with block; restore them after."""

    def __init__(self, patches: list[tuple[Any, str, Any]]) -> None:
        self.patches = patches
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> None:
        for obj, name, value in self.patches:
            self.saved.append((obj, name, obj.__dict__[name]))
            setattr(obj, name, value)

    def __exit__(self, *exc: object) -> None:
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        self.saved.clear()


# 2. ablations --------------------------------------------------------------------------------


class _Stub:
    """A protocol that answers every request with the same pre-built response: no h11, no
    routing, no Request record. Valid only for the benchmark's GET."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.buf = b""
            self.channel.write(RESPONSE)

    def eof_received(self) -> None:
        pass


def _stub_serve(self: Any, channel: Any, conn: Any) -> None:
    channel.start(_Stub(channel))


_SITE = _intercept.Site((("bench", 1, "bench"),)) if hasattr(_intercept, "Site") else None

ABLATIONS: dict[str, tuple[str, Callable[[], list[tuple[Any, str, Any]]]]] = {
    "no-wake": (
        "no helper-thread wake-up when a connection is added (`Loop._wake` no-op)",
        lambda: [(_loop.Loop, "_wake", lambda self: None)],
    ),
    "no-events": (
        "no connection timeline (`Connection.event` no-op)",
        lambda: [(_network.Connection, "event", lambda self, text, at=None: None)],
    ),
    "no-site": (
        "no creation-site frame walk (`caller_site` returns a constant)",
        lambda: [(_intercept, "caller_site", lambda skip=2, depth=6: _SITE)],
    ),
    "stub-protocol": (
        "protocol stubbed: pre-built response, no h11, no routing, no Request (upper bound)",
        lambda: [(_network.HttpEndpoint, "_serve", _stub_serve)],
    ),
}


def ablated(base: type[_NetCase]) -> Any:
    """``base`` (a curlfault row) with some of ``ABLATIONS`` patched in around each batch."""

    class Ablated(base):  # type: ignore[valid-type, misc]
        group = "ablation"

        def __init__(self, loop: Any, ca: Any, names: list[str]) -> None:
            super().__init__(loop, ca)
            self.names = names
            self.key = f"{base.key}-" + "+".join(names)
            what = "all of the above" if len(names) > 1 else ABLATIONS[names[0]][0]
            self.label = f"{base.label}: {what}"
            self._patch: patched | None = None

        def begin(self) -> None:
            patches = [p for name in self.names for p in ABLATIONS[name][1]()]
            self._patch = patched(patches)
            self._patch.__enter__()
            super().begin()

        def end(self) -> None:
            try:
                super().end()
            finally:
                assert self._patch is not None
                self._patch.__exit__()

    return Ablated


def _floor_handle(debug: bool, pins: bool) -> tuple[Any, io.BytesIO, list[socket.socket]]:
    servers: list[socket.socket] = []

    def opensocket(purpose: int, address: Any) -> int:
        client, server = socket.socketpair()
        server.send(RESPONSE)
        servers.append(server)
        return client.detach()

    c = REAL_CURL()
    buf = io.BytesIO()
    basic_options(c, "http://api.test/" if pins else URL, buf)
    c.setopt(pycurl.OPENSOCKETFUNCTION, opensocket)
    c.setopt(pycurl.SOCKOPTFUNCTION, _already_connected)
    c.setopt(pycurl.CLOSESOCKETFUNCTION, _close)
    if debug:
        c.setopt(pycurl.VERBOSE, 1)
        c.setopt(pycurl.DEBUGFUNCTION, lambda kind, data: None)
    if pins:
        # What the wiring pins for one endpoint in strict mode.
        c.setopt(pycurl.RESOLVE, ["api.test:80:127.77.0.1"])
        c.setopt(pycurl.CONNECT_TO, ["api.test:80:127.77.0.1:80", "::127.77.255.254:9"])
    return c, buf, servers


class FloorPlus(Case):
    group = "ablation"

    def __init__(self, debug: bool, pins: bool) -> None:
        self.debug, self.pins = debug, pins
        parts = (["VERBOSE + a no-op Python DEBUGFUNCTION"] if debug else []) + (
            ["curlfault's RESOLVE/CONNECT_TO pins"] if pins else []
        )
        self.key = "floor+" + ("debug" if debug else "") + ("pins" if pins else "")
        self.label = "floor GET, fresh, plus " + " and ".join(parts)
        self.batch = 200

    def op(self) -> None:
        c, buf, servers = _floor_handle(self.debug, self.pins)
        c.perform()
        c.close()
        for s in servers:
            s.close()
        expect(buf, BODY, self.key)


def ablations(rounds: int) -> list[str]:
    import trustme

    ca = trustme.CA()
    loop = curlfault.Loop(name="profile-loop")
    fresh, keep = CfFresh(loop, ca), CfKeepAlive(loop, ca)
    every = list(ABLATIONS)
    cases: list[Case] = [FloorFresh(), FloorPlus(True, False), FloorPlus(False, True), fresh]
    cases += [ablated(CfFresh)(loop, ca, [name]) for name in ABLATIONS]
    cases.append(ablated(CfFresh)(loop, ca, every))
    cases += [FloorKeepAlive(), keep]
    cases += [ablated(CfKeepAlive)(loop, ca, [name]) for name in ("stub-protocol",)]
    cases.append(ablated(CfKeepAlive)(loop, ca, every))
    try:
        t = run_interleaved(cases, rounds, verbose=False)
    finally:
        loop.stop()
    rows = [
        "| row | median | vs floor | saves vs curlfault |",
        "|---|---:|---:|---:|",
    ]
    for case in cases:
        floor_key, base = (
            ("floor.get.keepalive", keep) if "keepalive" in case.key else ("floor.get.fresh", fresh)
        )
        floor = median(t.samples(floor_key)) / 1000
        cf = median(t.samples(base.key)) / 1000
        med = median(t.samples(case.key)) / 1000
        if case.key.startswith("floor+"):
            saves = f"costs {med - floor:+.0f} us over the floor"
        elif case is base or case.key == floor_key:
            saves = "-"
        else:
            saves = f"{cf - med:.0f} us ({(cf - med) / cf * 100:.0f}%)"
        rows.append(f"| {case.label} | {med:.0f} us | {med / floor:.2f}x | {saves} |")
    return rows


# 3. pieces -----------------------------------------------------------------------------------


def per_call(fn: Callable[[], Any], n: int) -> float:
    """Median over 7 runs of the mean time per call, in microseconds."""
    runs = []
    for _ in range(7):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter_ns() - t0) / n / 1000)
    return median(runs)


def pieces(n: int) -> list[str]:
    import h11

    from curlfault.protocols.http1 import Http1Server

    request = b"GET / HTTP/1.1\r\nHost: api.test\r\nAccept: */*\r\n\r\n"
    out: list[tuple[str, float]] = []

    def pair() -> None:
        a, b = socket.socketpair()
        a.close()
        b.close()

    out.append(("`socket.socketpair()` and closing both ends", per_call(pair, n)))
    a, b = socket.socketpair()
    fd = a.fileno()
    out.append(
        (
            "`os.fstat(fd)` (opensocket, sockopt and closesocket each call it)",
            per_call(lambda: os.fstat(fd), n),
        )
    )
    a.close()
    b.close()

    def h11_exchange() -> None:
        h = h11.Connection(h11.SERVER)
        h.receive_data(request)
        h.next_event()
        h.next_event()
        h.send(h11.Response(status_code=200, headers=[("Content-Length", "5")]))
        h.send(h11.Data(data=BODY))
        h.send(h11.EndOfMessage())

    out.append(
        (
            "h11: a server connection, parse curl's GET, serialize a 5-byte response",
            per_call(h11_exchange, n),
        )
    )

    net = curlfault.FakeNetwork(label="pieces")
    ep = net.http("api.test")
    ep.get("/").respond(200, body=BODY)

    class Sink:
        closed = False

        def write(self, data: bytes) -> None:
            pass

        def finish(self) -> None:
            pass

        def abort(self) -> None:
            pass

        def when_flushed(self, cb: Any) -> None:
            cb()

    conn = _network.Connection(net, 1, ep, "127.77.0.1:80", "http://api.test/")

    def http1_server() -> None:
        Http1Server(ep, Sink(), conn).data_received(request)

    out.append(
        (
            "`Http1Server`: new server, parse, route, build and write the response",
            per_call(http1_server, n // 4),
        )
    )
    conn._log.clear()
    ep._requests.clear()
    net.requests.clear()
    ep.routes[0].requests.clear()

    def wire() -> None:
        c = REAL_CURL()
        net.attach(c)
        c.close()

    def bare() -> None:
        REAL_CURL().close()

    wiring = per_call(wire, n // 4) - per_call(bare, n // 4)
    out.append(
        ("wiring one handle (`attach`: Wiring, 6 setopts, pins, site), over a bare handle", wiring)
    )
    out.append(
        (
            "`caller_site()` (frame walk for the handle's creation site)",
            per_call(_intercept.caller_site, n),
        )
    )
    out.append(
        ("`Connection(...)` record", per_call(lambda: _network.Connection(net, 1, ep, "p", "u"), n))
    )
    out.append(("`Connection.event(text)`", per_call(lambda: conn.event("x"), n)))
    net.close()

    from curlfault._ledger import Ledger, SocketRecord

    ledger = Ledger()
    s1, s2 = socket.socketpair()
    fd1 = s1.fileno()
    ino = os.fstat(fd1).st_ino

    def ledger_round() -> None:
        ledger.opened(
            SocketRecord(
                inode=ino,
                fd=fd1,
                family="socketpair",
                peer="p",
                host="h",
                url="u",
                kind="socketpair",
                opened_in="t",
                handle_site="s",
            )
        )
        ledger.bind(fd1)
        ledger.closing(fd1, ino)

    out.append(("ledger: record, bind (fstat), count the close", per_call(ledger_round, n)))
    s1.close()
    s2.close()

    loop = curlfault.Loop(name="pieces-loop").start()

    class Idle:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def fileno(self) -> int:
            return self.sock.fileno()

        def on_readable(self) -> None:
            pass

        def on_writable(self) -> None:
            pass

        def on_error(self, exc: BaseException) -> None:
            pass

    x, y = socket.socketpair()
    idle = Idle(x)

    def add_remove() -> None:
        loop.add(idle)
        loop.remove(idle)

    out.append(
        (
            "`Loop.add` + `remove` on an empty loop (wakes the helper thread)",
            per_call(add_remove, n // 4),
        )
    )
    with patched([(_loop.Loop, "_wake", lambda self: None)]):
        out.append(("`Loop.add` + `remove`, wake-up patched out", per_call(add_remove, n // 4)))
    loop.add(idle)
    out.append(
        ("`Loop.pump()` that finds nothing ready (one registered end)", per_call(loop.pump, n))
    )
    loop.remove(idle)
    loop.stop()
    x.close()
    y.close()
    rows = ["| piece | us per call |", "|---|---:|"]
    rows += [f"| {name} | {us:.1f} |" for name, us in out]
    return rows


# 4. cProfile ---------------------------------------------------------------------------------


def profile_rows(n: int, top: int) -> list[str]:
    import trustme

    ca = trustme.CA()
    loop = curlfault.Loop(name="profile-loop")
    lines: list[str] = []
    for cls, count in (
        (CfFresh, n),
        (CfKeepAlive, n),
        (CfBig, n // 10),
        (CfHttps, n // 10),
        (CfFixture, n),
    ):
        case = cls(loop, ca)
        case.begin()
        try:
            for _ in range(10):
                case.op()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(count):
                case.op()
            prof.disable()
        finally:
            case.end()
        stats = pstats.Stats(prof)
        total = stats.total_tt  # type: ignore[attr-defined]
        lines.append(f"### {case.label}\n")
        lines.append(
            f"{count} operations, {total / count * 1e6:.0f} us each under cProfile. "
            "Own time per operation, top functions:\n"
        )
        lines.append("| function | calls/op | own us/op | cumulative us/op |")
        lines.append("|---|---:|---:|---:|")
        table = stats.stats  # type: ignore[attr-defined]
        entries = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)
        for (filename, lineno, name), (_cc, nc, tt, ct, _callers) in entries[:top]:
            where = _short(filename, lineno, name)
            own, cum = tt / count * 1e6, ct / count * 1e6
            lines.append(f"| `{where}` | {nc / count:.1f} | {own:.1f} | {cum:.1f} |")
        lines.append("")
        lines.append("Cumulative time per operation of the main entry points:\n")
        lines.append("| entry point | calls/op | cumulative us/op | share |")
        lines.append("|---|---:|---:|---:|")
        for label, match in CENTRES:
            hits = [(k, v) for k, v in stats.stats.items() if match(k)]  # type: ignore[attr-defined]
            if not hits:
                continue
            calls = sum(v[1] for _, v in hits)
            cum = max(v[3] for _, v in hits)
            share = cum / total * 100
            lines.append(
                f"| {label} | {calls / count:.1f} | {cum / count * 1e6:.1f} | {share:.0f}% |"
            )
        lines.append("")
    loop.stop()
    return lines


def _short(filename: str, lineno: int, name: str) -> str:
    if filename == "~":
        return name
    parts = Path(filename).parts
    for anchor in ("curlfault", "h11", "benchmarks"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{'/'.join(parts[i:])}:{lineno}({name})"
    return f"{Path(filename).name}:{lineno}({name})"


def _fn(file_end: str, name: str) -> Callable[[tuple[str, int, str]], bool]:
    return lambda k: k[0].endswith(file_end) and k[2] == name


CENTRES: list[tuple[str, Callable[[tuple[str, int, str]], bool]]] = [
    (
        "`pycurl perform()` (libcurl in C, plus every callback)",
        lambda k: "perform" in k[2] and k[0] == "~" and "InterceptedCurl" in k[2],
    ),
    ("debug callback (`Wiring._debug`)", _fn("_wiring.py", "_debug")),
    ("  of which `Loop.pump`", _fn("_loop.py", "pump")),
    ("  of which HTTP/1 server (`Http1Server.data_received`)", _fn("http1.py", "data_received")),
    ("  of which TLS layer (`TlsLayer.data_received`)", _fn("_tls.py", "data_received")),
    ("opensocket callback (`Wiring._opensocket`)", _fn("_wiring.py", "_opensocket")),
    ("  of which `Loop.add` (incl. wake-up)", _fn("_loop.py", "add")),
    ("sockopt callback (`Wiring._sockopt`)", _fn("_wiring.py", "_sockopt")),
    ("closesocket callback (`Wiring._closesocket`)", _fn("_wiring.py", "_closesocket")),
    (
        "handle creation (`InterceptedCurl.__new__`: Wiring install)",
        _fn("_intercept.py", "__new__"),
    ),
    ("`InterceptedCurl.setopt`", _fn("_intercept.py", "setopt")),
    ("`caller_site`", _fn("_sites.py", "caller_site")),
    ("`Connection.event`", _fn("_connection.py", "event")),
    ("`FakeNetwork.check`", _fn("_network.py", "check")),
    ("`FakeNetwork.close`", _fn("_network.py", "close")),
    ("`FakeNetwork.__init__`", _fn("_network.py", "__init__")),
]


# 5. py-spy -----------------------------------------------------------------------------------

SPY_TARGET = """
import sys, time
sys.path.insert(0, {here!r})
import trustme
from curlfault import Loop
from _cases import CfFresh, CfKeepAlive
loop = Loop()
case = {{"fresh": CfFresh, "keepalive": CfKeepAlive}}[sys.argv[1]](loop, trustme.CA())
deadline = time.monotonic() + float(sys.argv[2])
case.begin()
n = 0
while time.monotonic() < deadline:
    case.op()
    n += 1
    if n % 200 == 0:
        case.end()
        case.begin()
case.end()
loop.stop()
"""

# (bucket, test on the frames below the timed operation); the first match wins.
SPY_BUCKETS: list[tuple[str, Callable[[list[str]], bool]]] = [
    ("waiting for the GIL", lambda fs: any("take_gil" in f for f in fs[-3:])),
    ("debug callback: h11", lambda fs: _has(fs, "Wiring._debug") and _has(fs, "(h11/")),
    (
        "debug callback: curlfault HTTP/1 server, routing",
        lambda fs: _has(fs, "Wiring._debug") and _has(fs, "http1.py"),
    ),
    ("debug callback: pump, epoll, channel", lambda fs: _has(fs, "Wiring._debug")),
    ("opensocket callback", lambda fs: _has(fs, "Wiring._opensocket")),
    ("closesocket callback", lambda fs: _has(fs, "Wiring._closesocket")),
    ("sockopt callback", lambda fs: _has(fs, "Wiring._sockopt")),
    (
        "handle creation + wiring (`InterceptedCurl.__init__`)",
        lambda fs: _has(fs, "InterceptedCurl.__init__"),
    ),
    ("`InterceptedCurl.setopt` (Python)", lambda fs: _has(fs, "InterceptedCurl.setopt")),
    ("libcurl and pycurl C in perform (no callback)", lambda fs: _has(fs, "curl_easy_perform")),
    ("handle close (C)", lambda fs: _has(fs, "do_curl_close") or _has(fs, "curl_easy_cleanup")),
    ("garbage collection", lambda fs: _has(fs, "gc_collect")),
]


def _is_op(frame: str) -> bool:
    """A frame of a benchmark case's timed ``op`` (``CfKeepAlive.op (_cases.py:70)``)."""
    name, _, where = frame.partition(" ")
    return name.endswith(".op") and "_cases.py" in where


def _has(frames: list[str], text: str) -> bool:
    return any(text in f for f in frames)


def spy(seconds: float) -> list[str]:
    """Wall-clock split of the timed operation by py-spy --native samples (main thread)."""
    import shutil
    import tempfile

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return ["py-spy is not installed (`pip install py-spy`); skipped.", ""]
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="curlfault-spy-") as tmp:
        target = Path(tmp) / "target.py"
        target.write_text(SPY_TARGET.format(here=str(HERE)))
        for kind in ("fresh", "keepalive"):
            raw = Path(tmp) / f"{kind}.txt"
            proc = subprocess.run(
                [
                    exe,
                    "record",
                    "--native",
                    "-r",
                    "400",
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--",
                    sys.executable,
                    str(target),
                    kind,
                    str(seconds),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 120,
                check=False,
            )
            if proc.returncode != 0 or not raw.exists():
                return [f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-300:]}", ""]
            buckets: collections.Counter[str] = collections.Counter()
            total = 0
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = stack.split(";")
                op = next((i for i, f in enumerate(frames) if _is_op(f)), None)
                if op is None:
                    continue  # start-up, batch set-up, interpreter exit
                below = frames[op:]
                n = int(count)
                total += n
                bucket = next(
                    (b for b, test in SPY_BUCKETS if test(below)), "other (harness, BytesIO)"
                )
                buckets[bucket] += n
            rows.append(f"**{kind}** ({total} samples inside the timed operation):\n")
            rows.append("| where | share of the operation's wall time |")
            rows.append("|---|---:|")
            for bucket, n in buckets.most_common():
                rows.append(f"| {bucket} | {n / total * 100:.1f}% |")
            rows.append("")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=2000, help="operations per profiled row")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the ablations")
    ap.add_argument("--top", type=int, default=15, help="functions listed per cProfile row")
    ap.add_argument(
        "--skip", default="", help="comma-separated: events,ablations,pieces,spy,cprofile"
    )
    ap.add_argument("--out", default=None, help="write the markdown here too")
    ap.add_argument(
        "--spy-seconds", type=float, default=10.0, help="py-spy sampling time per row (0: skip)"
    )
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    out: list[str] = ["# Where curlfault's time goes\n", f"pycurl: {pycurl.version}\n"]
    if "events" not in skip:
        out += ["## Debug callbacks per request\n", *count_events(args.n // 4), ""]
    if "ablations" not in skip:
        out += [
            "## Ablations (fresh-handle GET, interleaved, uninstrumented)\n",
            *ablations(args.rounds),
            "",
        ]
    if "pieces" not in skip:
        out += ["## Pieces, timed on their own\n", *pieces(args.n * 5), ""]
    if "spy" not in skip and args.spy_seconds > 0:
        out += [
            "## py-spy: wall time of the GET, by where libcurl's thread is\n",
            *spy(args.spy_seconds),
        ]
    if "cprofile" not in skip:
        out += ["## cProfile per row\n", *profile_rows(args.n, args.top)]
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if left:
        print(f"threads left running: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
