"""Benchmark curlfault against its floors and its peers, side by side, in one run (issue 6).

    python benchmarks/run.py             # the full run (a few minutes): docs/benchmarks.md
    python benchmarks/run.py --quick     # a smoke run (under a minute), same outputs
    python benchmarks/run.py --rounds 40 --out /tmp/bench.md --json /tmp/bench.json

Writes the markdown page (``--out``), the chart next to it (``--chart``, default: the page's
name with ``.png``) and prints the targets table. See benchmarks/README.md for what each row
measures and why its floor is fair.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _pytest_rows  # noqa: E402
import pycurl  # noqa: E402
from _bounds import BoundFresh, BoundFreshH11  # noqa: E402
from _cases import (  # noqa: E402
    CfBig,
    CfFixture,
    CfFixtureEndpoint,
    CfFresh,
    CfHttp2,
    CfHttps,
    CfHttps12,
    CfKeepAlive,
    Loopback,
    leak_tracking_built,
)
from _common import fd_count, median, p90  # noqa: E402
from _floors import (  # noqa: E402
    FloorBigInline,
    FloorBigThread,
    FloorFresh,
    FloorFreshReading,
    FloorKeepAlive,
    FloorKeepAliveReading,
    FloorTls12Thread,
    FloorTlsInline,
    FloorTlsThread,
    FloorTlsThreadVerbose,
)
from _peers import PeerCase  # noqa: E402
from _report import (  # noqa: E402
    Check,
    Line,
    Report,
    Target,
    as_dict,
    chart,
    checks_table,
    fmt_us,
    fmt_x,
    ratio_interval,
    request_line,
    requests_table,
)
from _timing import Case, run_interleaved  # noqa: E402

import curlfault  # noqa: E402

SCALE_N = 1000
SUBPROCESS_TIMEOUT = 600

# The targets of issue 6.
T_FRESH = Target("<= 1.3x floor", 1.3)
T_KEEPALIVE = Target("<= 1.5x floor", 1.5)
T_BIG = Target("<= 1.2x writer-thread floor", 1.2)
T_HTTPS = Target("<= 1.1x TLS socketpair floor", 1.1)
T_PEER = Target(">= 10x curlfault's time", 10.0, "min")
T_PER_TEST = Target("<= 1.5x floor fixture", 1.5)
T_FIXTURE = Target("< 0.1 ms median", 100.0)
T_MEMORY = Target("< 2 KiB beyond the floor", 2.0)
T_LEAKS = Target("<= 5%", 0.05)
T_LEAKS_RATIO = Target("<= 1.05x untracked", 1.05)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# machine facts --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))}), {cpu}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "pycurl": pycurl.version,
        "h11": importlib.metadata.version("h11"),
        "curlfault": f"{curlfault.__version__} ({commit or '?'})",
    }


# request rows --------------------------------------------------------------------------------


def request_cases(loop: Any, ca: Any) -> list[Case]:
    cases: list[Case] = [
        FloorFresh(),
        FloorFreshReading(),
        BoundFresh(),
        BoundFreshH11(),
        FloorKeepAlive(),
        FloorKeepAliveReading(),
        FloorBigThread(),
        FloorBigInline(),
        FloorTlsThread(ca),
        FloorTlsInline(ca),
        FloorTlsThreadVerbose(ca),
        FloorTls12Thread(ca),
        CfFresh(loop, ca),
        CfKeepAlive(loop, ca),
        CfBig(loop, ca),
        CfHttps(loop, ca),
        CfHttp2(loop, ca),
        CfHttps12(loop, ca),
        CfFixture(loop, ca),
        CfFixtureEndpoint(loop, ca),
    ]
    for peer in ("httpserver", "stdlib"):
        for kind in ("fresh", "keepalive", "big", "https"):
            cases.append(PeerCase(peer, kind, ca))
    if leak_tracking_built():
        for kind in Loopback.KINDS:
            cases += [Loopback(tracked=False, kind=kind), Loopback(tracked=True, kind=kind)]
    return cases


def measure_requests(rounds: int, scale: float) -> tuple[Any, dict[str, str]]:
    import trustme

    ca = trustme.CA()
    loop = curlfault.Loop(name="curlfault-bench-loop")  # shared, like the plugin's session loop
    cases = request_cases(loop, ca)
    labels = {c.key: c.label for c in cases}
    try:
        timings = run_interleaved(cases, rounds, scale)
    finally:
        loop.stop()
    if loop.errors:
        raise RuntimeError(f"the shared loop recorded errors: {loop.errors!r}")
    return timings, labels


# scale rows ----------------------------------------------------------------------------------


def scale_run(mode: str, n: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "_scale.py"), mode, str(n)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
        cwd=HERE,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"_scale.py {mode} {n} failed:\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure_scale(reps: int, n: int) -> dict[str, list[dict[str, Any]]]:
    modes = ["multi-floor", "multi-curlfault", "idle-floor", "idle-curlfault"]
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(reps):
        for mode in modes[r % 2 :] + modes[: r % 2]:
            out[mode].append(scale_run(mode, n))
        log(f"  scale {r + 1}/{reps} done")
    out["idle-curlfault-py"] = [scale_run("idle-curlfault-py", n)]
    return out


# assembling ----------------------------------------------------------------------------------


def build(
    t: Any,
    labels: dict[str, str],
    per_test: dict[str, dict[str, float]] | None,
    scale: dict[str, list[dict[str, Any]]] | None,
    leaks: dict[str, float] | None,
) -> tuple[Report, list[tuple[str, float, float | None, str]]]:
    rep = Report()
    L = rep.lines

    def line(key: str, floor: str = "", target: Target | None = None, group: str = "") -> Line:
        ln = request_line(t, key, labels[key], group, floor, target)
        L.append(ln)
        return ln

    # GET, fresh handle
    line("floor.get.fresh")
    read_fresh = line("floor.get.fresh.reading", "floor.get.fresh", group="floor")
    bound_fresh = line("bound.get.fresh", "floor.get.fresh", group="floor")
    bound_h11 = line("bound.get.fresh.h11", "floor.get.fresh", group="floor")
    bound_fresh.interval = ratio_interval(t.rounds["bound.get.fresh"], t.rounds["floor.get.fresh"])
    cf_fresh = line("cf.get.fresh", "floor.get.fresh", T_FRESH, "curlfault")
    hs_fresh = line("httpserver.fresh", "floor.get.fresh", group="peer")
    line("stdlib.fresh", "floor.get.fresh", group="peer")
    # GET, reused handle
    line("floor.get.keepalive")
    read_keep = line("floor.get.keepalive.reading", "floor.get.keepalive", group="floor")
    cf_keep = line("cf.get.keepalive", "floor.get.keepalive", T_KEEPALIVE, "curlfault")
    hs_keep = line("httpserver.keepalive", "floor.get.keepalive", group="peer")
    line("stdlib.keepalive", "floor.get.keepalive", group="peer")
    # 1 MiB
    line("floor.big.thread")
    line("floor.big.inline", "floor.big.thread", group="floor")
    cf_big = line("cf.big", "floor.big.thread", T_BIG, "curlfault")
    line("httpserver.big", "floor.big.thread", group="peer")
    line("stdlib.big", "floor.big.thread", group="peer")
    # HTTPS
    line("floor.https.thread")
    line("floor.https.inline", "floor.https.thread", group="floor")
    read_https = line("floor.https.thread.verbose", "floor.https.thread", group="floor")
    cf_https = line("cf.https", "floor.https.thread", T_HTTPS, "curlfault")
    cf_h2 = line("cf.https.h2", "floor.https.thread", group="curlfault")
    line("httpserver.https", "floor.https.thread", group="peer")
    line("stdlib.https", "floor.https.thread", group="peer")
    # TLS 1.2: measured against a TLS 1.2 floor, no target of its own
    line("floor.https12.thread")
    line("cf.https12", "floor.https12.thread", group="curlfault")
    # leak tracking, once it exists
    tracked: dict[str, Line] = {}
    if "leaks.on" in labels:
        for kind in Loopback.KINDS:
            off, on = (
                ("leaks.off", "leaks.on")
                if kind == "fresh"
                else (f"leaks.{kind}.off", f"leaks.{kind}.on")
            )
            line(off)
            tracked[kind] = line(on, off, T_LEAKS_RATIO, "curlfault")

    # The peer target: pytest-httpserver's time over curlfault's.
    speed_fresh = hs_fresh.median_us / cf_fresh.median_us
    speed_keep = hs_keep.median_us / cf_keep.median_us
    fixture = t.samples("cf.fixture")
    fixture_us = median(fixture) / 1000

    C = rep.checks
    after_request = "answering after the request alone"
    for ln, what, reading, alone in (
        (cf_fresh, "GET, fresh handle", read_fresh, after_request),
        (cf_keep, "GET, reused handle (keep-alive)", read_keep, after_request),
        (cf_big, "1 MiB body, fresh handle", None, ""),
        (
            cf_https,
            "HTTPS GET, fresh handle, full handshake",
            read_https,
            "the debug callback alone (VERBOSE, a no-op DEBUGFUNCTION on the thread floor)",
        ),
    ):
        assert ln.target is not None
        measured = f"{fmt_x(ln.ratio)} ({fmt_us(ln.median_us)}; {ln.interval_text()})"
        if reading is not None:
            # What a fake that must see the request first cannot avoid, and so what the
            # target leaves for everything curlfault does on top of that.
            room = ln.target.limit * (ln.median_us / ln.ratio) - reading.median_us
            measured += (
                f"; {alone}: {fmt_x(reading.ratio)}, which leaves "
                f"{fmt_us(room)} per request for curlfault's own work; it uses "
                f"{fmt_us(ln.median_us - reading.median_us)}"
            )
        result = ln.result
        if ln is cf_fresh:
            # The least any fake that keeps the design's promises can cost (_bounds.py): when
            # that alone is past the limit, no implementation of this design meets it here.
            measured += (
                f"; the least a fake meeting the design pays (routing subclass, socket "
                f"callbacks, ledger, pins, answered after the request, nothing parsed): "
                f"{fmt_x(bound_fresh.ratio)} ({bound_fresh.interval_text()}), and "
                f"{fmt_x(bound_h11.ratio)} parsing each request with a new h11 connection"
            )
            if result == "MISS" and bound_fresh.interval[0] > ln.target.limit:
                result = "MISS (out of reach for this design on this machine)"
        C.append(Check(what, measured, ln.target.text, result))
    C.append(
        Check(
            "HTTP/2 GET over TLS, fresh handle, full handshake",
            f"{fmt_x(cf_h2.ratio)} ({fmt_us(cf_h2.median_us)}) of the HTTP/1.1 TLS floor",
            "no limit of its own (HTTPS's is <= 1.1x)",
            "measured",
        )
    )
    for speed, what, hs in ((speed_fresh, "fresh", hs_fresh), (speed_keep, "keep-alive", hs_keep)):
        # The floor does no server work at all: no fake can be faster, so pytest-httpserver's
        # ratio to the floor is the most any fake can reach on this machine.
        ceiling = hs.ratio
        result = T_PEER.check(speed)
        note = f"; a fake costing nothing beyond the floor would reach {ceiling:.1f}x"
        if result == "MISS" and ceiling < T_PEER.limit:
            result = "MISS (out of reach on this machine)"
        C.append(
            Check(
                f"pytest-httpserver per request / curlfault ({what} GET)",
                f"{speed:.1f}x slower than curlfault{note}",
                ">= 10x",
                result,
            )
        )
    if per_test is not None:
        cf_added = per_test["curlfault"]["added_us"]
        floor_added = per_test["floor"]["added_us"]
        hs_added = per_test["httpserver"]["added_us"]
        ratio = cf_added / floor_added
        C.append(
            Check(
                "per test in a real pytest run (one GET; minus an empty test)",
                f"{fmt_x(ratio)} ({fmt_us(cf_added)} vs {fmt_us(floor_added)}); "
                f"pytest-httpserver {fmt_us(hs_added)} = {hs_added / cf_added:.1f}x curlfault",
                T_PER_TEST.text,
                T_PER_TEST.check(ratio),
            )
        )
    C.append(
        Check(
            "`curlfault` fixture setup + teardown (engine part, direct)",
            f"{fmt_us(fixture_us)} median, {fmt_us(p90(fixture) / 1000)} p90",
            T_FIXTURE.text,
            T_FIXTURE.check(fixture_us),
        )
    )
    if scale is not None:
        cf = scale["multi-curlfault"]
        extra_threads = max(r["peak_threads"] - r["threads_before"] for r in cf)
        back = all(r["fds_after"] == r["fds_before"] for r in cf) and all(
            r["threads_after"] == r["threads_before"] for r in cf
        )
        wall = median([r["wall_s"] for r in cf])
        C.append(
            Check(
                f"{SCALE_N:,} concurrent transfers, one CurlMulti, one network: threads",
                f"peak {extra_threads} thread(s) beyond the main thread, wall {wall * 1000:.0f} ms",
                "no thread per connection",
                "PASS" if extra_threads <= 1 else "MISS",
            )
        )
        C.append(
            Check(
                f"{SCALE_N:,} concurrent transfers: descriptors and threads back at the end",
                ", ".join(
                    f"{r['fds_before']}->{max(r['peak_fds'], 0)}->{r['fds_after']} fds" for r in cf
                ),
                "all back",
                "PASS" if back else "MISS",
            )
        )
        mem = memory_per_connection(scale)
        C.append(
            Check(
                "resident memory per idle fake connection",
                f"{mem['extra']:.1f} KiB beyond the floor ({mem['curlfault']:.1f} vs "
                f"{mem['floor']:.1f} KiB per handle + idle connection)",
                T_MEMORY.text,
                T_MEMORY.check(mem["extra"]),
            )
        )
    what = "leak tracking (`--curlfault-leaks`) overhead on a real loopback transfer"
    if not tracked:
        C.append(
            Check(
                what,
                "not built yet (measured once `curlfault.Tracker` and `pytest --help` show it)",
                T_LEAKS.text,
                "not built yet",
            )
        )
    for kind, how in (
        ("fresh", "fresh handle, served from PREREQFUNCTION (no server work: worst case)"),
        ("server", "fresh handle, ThreadingHTTPServer in the same process"),
        ("process", "fresh handle, ThreadingHTTPServer in another process"),
        ("reused", "reused handle (keep-alive), served from PREREQFUNCTION"),
    ):
        if kind not in tracked:
            continue
        ln = tracked[kind]
        measured = (
            f"{(ln.ratio - 1) * 100:+.0f}% per transfer "
            f"({fmt_us(ln.median_us)} vs {fmt_us(ln.median_us / ln.ratio)}; "
            f"{ln.interval_text(percent=True)})"
        )
        if kind == "fresh" and leaks is not None:
            measured += (
                f"; per pytest test {leaks['overhead'] * 100:+.0f}% "
                f"(A/A control {leaks['control'] * 100:+.0f}%)"
            )
        C.append(Check(f"{what}: {how}", measured, T_LEAKS.text, ln.result))

    # the chart
    def colour(ln: Line) -> str:
        if ln.group == "curlfault":
            return ln.result or "info"
        return "peer" if ln.group == "peer" else "floor"

    names = {
        "floor.get.fresh.reading": "GET fresh: floor answering after the request",
        "bound.get.fresh": "GET fresh: the least a fake meeting the design pays",
        "bound.get.fresh.h11": "GET fresh: the same, h11 per connection",
        "cf.get.fresh": "GET fresh: curlfault",
        "httpserver.fresh": "GET fresh: pytest-httpserver",
        "stdlib.fresh": "GET fresh: ThreadingHTTPServer",
        "floor.get.keepalive.reading": "GET keep-alive: floor answering after the request",
        "cf.get.keepalive": "GET keep-alive: curlfault",
        "httpserver.keepalive": "GET keep-alive: pytest-httpserver",
        "stdlib.keepalive": "GET keep-alive: ThreadingHTTPServer",
        "floor.big.inline": "1 MiB: threadless floor",
        "cf.big": "1 MiB: curlfault",
        "httpserver.big": "1 MiB: pytest-httpserver",
        "stdlib.big": "1 MiB: ThreadingHTTPServer",
        "floor.https.inline": "HTTPS: threadless TLS floor",
        "floor.https.thread.verbose": "HTTPS: thread floor with a no-op debug callback",
        "cf.https": "HTTPS: curlfault",
        "cf.https.h2": "HTTP/2 over TLS: curlfault",
        "cf.https12": "HTTPS, TLS 1.2: curlfault",
        "httpserver.https": "HTTPS: pytest-httpserver",
        "stdlib.https": "HTTPS: ThreadingHTTPServer",
        "leaks.on": "loopback GET, fresh handle: under leak tracking",
        "leaks.server.on": "ThreadingHTTPServer GET, fresh handle: under leak tracking",
        "leaks.process.on": "server process GET, fresh handle: under leak tracking",
        "leaks.reused.on": "loopback GET, reused handle: under leak tracking",
    }
    bars: list[tuple[str, float, float | None, str]] = []
    for ln in L:
        if ln.key in names:
            target = ln.target.limit if ln.target is not None else None
            bars.append((names[ln.key], ln.ratio, target, colour(ln)))
    if per_test is not None:
        base = per_test["floor"]["added_us"]
        cf_ratio = per_test["curlfault"]["added_us"] / base
        bars.append(
            ("per pytest test: curlfault fixture", cf_ratio, 1.5, T_PER_TEST.check(cf_ratio))
        )
        bars.append(
            (
                "per pytest test: pytest-httpserver",
                per_test["httpserver"]["added_us"] / base,
                None,
                "peer",
            )
        )
        bars.append(
            (
                "per pytest test: ThreadingHTTPServer",
                per_test["stdlib"]["added_us"] / base,
                None,
                "peer",
            )
        )
    if scale is not None:
        floor_wall = median([r["wall_s"] for r in scale["multi-floor"]])
        cf_wall = median([r["wall_s"] for r in scale["multi-curlfault"]])
        bars.append(
            (f"{SCALE_N:,} concurrent (CurlMulti): curlfault", cf_wall / floor_wall, None, "info")
        )
    return rep, bars


def memory_per_connection(scale: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    floor = median([r["kib_per_connection"] for r in scale["idle-floor"]])
    cf = median([r["kib_per_connection"] for r in scale["idle-curlfault"]])
    return {"floor": floor, "curlfault": cf, "extra": cf - floor}


# the page ------------------------------------------------------------------------------------


def page(
    args: argparse.Namespace,
    facts: dict[str, str],
    rep: Report,
    t: Any,
    labels: dict[str, str],
    per_test: dict[str, dict[str, float]] | None,
    scale: dict[str, list[dict[str, Any]]] | None,
    leaks: dict[str, float] | None,
    chart_name: str,
    seconds: float,
) -> str:
    cmd = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    if args.rounds is not None:
        cmd += f" --rounds {args.rounds}"
    out: list[str] = []
    w = out.append
    w("# Benchmarks\n")
    w(
        "What a fake costs per request and per test, measured side by side with what libcurl "
        "itself costs (the *floor*) and with real servers on a port (the *peers*), in one run "
        "with interleaved rounds. Regenerate this page (and its chart) with:\n"
    )
    w(f"```bash\n{cmd}\n```\n")
    w(
        "`--quick` gives a smoke run in under a minute; the full run takes about six minutes, "
        "three of them counting instructions under valgrind (`--no-instructions` skips that). "
        "The harness lives in `benchmarks/` (its README explains every row and floor); it is a "
        "benchmark, never a timed test. Absolute times depend on the machine; the ratios are "
        "what the targets of the performance issue are about.\n"
    )
    w("## Machine\n")
    w("| | |\n|---|---|")
    for k, v in facts.items():
        w(f"| {k} | {v} |")
    mode = "quick" if args.quick else "full"
    w(
        f"| run | {mode}: {args.rounds_used} interleaved rounds of request rows, "
        f"{args.pytest_rounds} pytest run(s) of {args.pytest_n} tests per kind, "
        f"{args.scale_reps} scale repetition(s); {seconds:.0f} s in all |\n"
    )
    w("## Targets\n")
    w(checks_table(rep.checks) + "\n")
    w(
        "Each request target's ratio comes with a 90% interval: the ratio of medians "
        "recomputed over resamples of whole rounds (each round of a row stays with the same "
        "round of its floor; seeded, so the same timings give the same interval). Where the "
        "interval straddles the limit, this run cannot tell its verdict from noise. The "
        "interval covers the noise within one run only, not the drift between runs (the "
        "machine's other tenants come and go); the instruction counts below are the steady "
        "measure of a change.\n"
    )
    w(f"![curlfault and its peers as ratios to their floors]({chart_name})\n")
    w(
        "Bars are median time over the median of the row's floor (log scale). Black ticks are "
        "the targets. Per pytest test, the ratio is the time added over an empty test, against "
        "the floor fixture's.\n"
    )
    w("## Per request\n")
    w(
        "Median and p90 per operation over every round; the ratio is the row's median over its "
        "floor's median, and the spread is the 10th to 90th percentile of the same ratio "
        "computed round by round (a wide spread means a noisy run).\n"
    )
    w(requests_table(rep.lines) + "\n")
    fix = [
        ("cf.fixture", t.samples("cf.fixture")),
        ("cf.fixture.endpoint", t.samples("cf.fixture.endpoint")),
    ]
    w("## The `curlfault` fixture, without pytest\n")
    w(
        "What the fixture does per test, timed directly: `FakeNetwork(loop=shared_loop)`, "
        "`intercept()` entered and left, `check()`, `close()`. The shared loop is already "
        "running, as it is after a session's first test.\n"
    )
    w("| row | median | p90 | target | result |\n|---|---:|---:|---|---|")
    for key, values in fix:
        med = median(values) / 1000
        target = T_FIXTURE.text if key == "cf.fixture" else ""
        result = f"**{T_FIXTURE.check(med)}**" if key == "cf.fixture" else ""
        w(f"| {labels[key]} | {fmt_us(med)} | {fmt_us(p90(values) / 1000)} | {target} | {result} |")
    w("")
    if per_test is not None:
        w("## Per test, inside a real pytest run\n")
        w(
            "A generated module of interleaved tests (one GET each, except the empty ones) runs "
            "in a pytest subprocess with this project's plugin and pytest-httpserver installed. "
            "Each test is timed over its whole runtest protocol (setup, call, teardown, "
            "reporting); *added* is the median minus the empty test's median.\n"
        )
        base = per_test["floor"]["added_us"]
        w("| fixture | median per test | p90 | added over empty | ratio to floor fixture |")
        w("|---|---:|---:|---:|---:|")
        for kind, s in per_test.items():
            ratio = "-" if kind == "empty" else fmt_x(s["added_us"] / base)
            added = "-" if kind == "empty" else fmt_us(s["added_us"])
            w(
                f"| {_pytest_rows.LABELS[kind]} | {fmt_us(s['median_us'])} | "
                f"{fmt_us(s['p90_us'])} | {added} | {ratio} |"
            )
        w("")
    if scale is not None:
        w("## Scale\n")
        w(
            f"{SCALE_N:,} transfers added at once to one `CurlMulti` (driven with "
            "`M_SOCKETFUNCTION`, epoll and `socket_action`, as tornado drives it) against one "
            "`FakeNetwork` with its own loop, each in a fresh interpreter; the floor serves the "
            "same transfers from pre-written socketpairs. Wall time covers making the handles, "
            "the transfers and closing everything. Threads and descriptors are sampled on every "
            "iteration of a second pass.\n"
        )
        w("| row | wall (median) | threads before / peak / after | fds before / peak / after |")
        w("|---|---:|---|---|")
        for mode in ("multi-floor", "multi-curlfault"):
            rs = scale[mode]
            r = rs[-1]
            w(
                f"| {mode} | {median([x['wall_s'] for x in rs]) * 1000:.0f} ms | "
                f"{r['threads_before']} / {r['peak_threads']} / {r['threads_after']} | "
                f"{r['fds_before']} / {r['peak_fds']} / {r['fds_after']} |"
            )
        mem = memory_per_connection(scale)
        py = scale["idle-curlfault-py"][0]
        w("")
        w(
            f"Resident memory per idle connection: {SCALE_N:,} easy handles, each with one "
            "finished keep-alive GET whose connection stays in the handle's pool; RSS after minus "
            f"RSS before, over {SCALE_N:,}. Floor: {mem['floor']:.1f} KiB; curlfault: "
            f"{mem['curlfault']:.1f} KiB; curlfault's own share: **{mem['extra']:.1f} KiB** per "
            f"handle and connection ({py['py_bytes_per_connection'] / 1024:.1f} KiB of it "
            "allocated by Python, by tracemalloc).\n"
        )
    w("## Leak tracking\n")
    if "leaks.on" not in labels:
        w(
            "`pytest --curlfault-leaks` is **not built yet**, so there is no number here. Once "
            "`curlfault.Tracker` exists the harness times a real loopback GET with and without "
            "a tracker installed (interleaved, in one process), and once `pytest --help` lists "
            "the option it also times whole pytest runs with and without it.\n"
        )
    else:

        def pct(on_key: str, off_key: str) -> str:
            on, off = median(t.samples(on_key)), median(t.samples(off_key))
            return (
                f"{fmt_us(off / 1000)} without, {fmt_us(on / 1000)} with "
                f"({(on / off - 1) * 100:+.0f}%)"
            )

        w(
            "Real loopback TCP GETs that libcurl connects itself, with and without a "
            "`curlfault.Tracker(leaks=True)` installed, interleaved in one process:\n\n"
            "- a fresh handle per GET, the listener's backlog completing the handshake and "
            "`PREREQFUNCTION` accepting and writing the response (no server thread, so no "
            "server work: the cheapest real transfer, and the worst case for a cost paid per "
            f"handle): {pct('leaks.on', 'leaks.off')};\n"
            "- a fresh handle per GET against the standard library's `ThreadingHTTPServer` on "
            "127.0.0.1 in the same process, the kind of server a suite starts in a fixture (its "
            "threads share the client's interpreter lock and processor caches, so each Python "
            "callback of the client waits longer and runs colder): "
            f"{pct('leaks.server.on', 'leaks.server.off')};\n"
            "- the same server in a child process, as a service a suite reaches on loopback "
            "runs (started before the tests, or in a container): "
            f"{pct('leaks.process.on', 'leaks.process.off')};\n"
            "- one handle per batch, each GET on its warm keep-alive connection: "
            f"{pct('leaks.reused.on', 'leaks.reused.off')}.\n\n"
            "Tracking costs once per handle (the intercepting subclass, the creation-site frame "
            "walk) and once per connection (one SOCKOPTFUNCTION call and an `fstat`); a reused "
            "connection costs only the `setopt()` override (a tracked handle's `perform()` is "
            "pycurl's own). `python "
            "benchmarks/leak_cost.py count` gives the same rows as instructions per transfer, "
            "with the floor of any tracking written in Python (a bare `pycurl.Curl` subclass "
            "that sets one trivial callback). What the same tracking costs written in C, "
            "measured side by side with these rows by a probe that is not part of curlfault, "
            "is in [A compiled core, probed](native-probe.md).\n"
        )
        if leaks is not None:
            w(
                f"The same GET, one per test, in whole pytest runs of {args.pytest_n} tests "
                f"without and with `--curlfault-leaks`: {fmt_us(leaks['off_us'])} and "
                f"{fmt_us(leaks['on_us'])} per test, {leaks['overhead'] * 100:+.1f}% (round by "
                f"round {leaks['overhead_p10'] * 100:+.1f}% to "
                f"{leaks['overhead_p90'] * 100:+.1f}%). Two runs without the option (A/A "
                f"control) differ by {leaks['control'] * 100:+.1f}% "
                f"({leaks['control_p10'] * 100:+.1f}% to {leaks['control_p90'] * 100:+.1f}%): "
                "an overhead inside that band is noise.\n"
            )
    w("## How the rows are measured\n")
    w(METHOD)
    return "\n".join(out)


METHOD = """\
- **One process, interleaved.** Every request row runs one batch per round, in an order that
  rotates each round, after one warm-up round; each operation is timed on its own with
  `perf_counter_ns`. A slow minute on a shared machine then hurts every row alike.
- **Same request everywhere.** `GET /` answered `200` with a 5-byte body (or 1 MiB), `TIMEOUT`
  on every handle, written to a `BytesIO`; a *fresh* row makes, uses and closes a handle per
  operation; a *reused* row keeps one handle per batch and times `perform()` on its warm
  keep-alive connection.
- **Floors** hand libcurl one end of an AF_UNIX socketpair from `OPENSOCKETFUNCTION`
  (`SOCKOPT_ALREADY_CONNECTED`; `CLOSESOCKETFUNCTION` closes it). Fresh GET: the whole
  response is written into the pair first. Reused GET: the response is written from
  `PREREQFUNCTION`, just before libcurl sends the request (a pre-written response would be
  unread input on an idle connection, which libcurl drops). 1 MiB does not fit in a socketpair,
  so the issue's floor is one long-lived writer thread handed each server end through a queue;
  HTTPS's is one long-lived thread doing a blocking `ssl` handshake and answer per connection,
  with the same trustme CA, key type, context and ALPN as curlfault's endpoint. Both thread
  floors pay a thread wake-up per connection; curlfault serves in libcurl's own thread, so the
  page also shows stricter *threadless* floors (1 MiB topped up from the write callback; TLS
  on an `SSLObject` pumped from the debug callback) as context.
- **Bounds** (`bound.*`, `benchmarks/_bounds.py`) are the smallest fake that still keeps the
  design's promises on every connection: `pycurl.Curl()` routes itself (a subclass wired in
  `__new__`, a `setopt` override), the three socket callbacks, a ledger entry per descriptor
  counted at its close, pinned names, exceptions caught and raised after `perform()`, and
  the response written from the debug callback once the request is read. Nothing is parsed,
  routed or recorded (a second row parses each request with a new h11 connection). They say
  how much of the fresh-GET limit is left once those promises are paid for.
- **curlfault** rows use one shared `Loop` (as the pytest plugin's session loop) and a fresh
  `FakeNetwork` per batch (as per test), intercepting while the batch runs.
- **Leak tracking** is timed on real loopback TCP GETs that libcurl connects itself (to a
  listener served from `PREREQFUNCTION` with no server thread, fresh and reused handles, and
  to `ThreadingHTTPServer`), with and without a `curlfault.Tracker(leaks=True)` installed,
  interleaved like every other row.
- **Peers** bind 127.0.0.1 only. pytest-httpserver is configured as its fixture configures it
  (werkzeug, `threaded=False`, which answers HTTP/1.0 and closes after each response, so its
  "reused" handle reconnects every time). `ThreadingHTTPServer` speaks HTTP/1.1 keep-alive
  with Nagle off.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="few rounds, small N: a smoke run under a minute"
    )
    ap.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds of the request rows"
    )
    ap.add_argument(
        "--out", default=str(ROOT / "docs" / "benchmarks.md"), help="the markdown page to write"
    )
    ap.add_argument("--chart", default=None, help="the PNG chart (default: next to --out, .png)")
    ap.add_argument("--json", default=None, help="also write the numbers as JSON here")
    ap.add_argument("--no-pytest", action="store_true", help="skip the per-test pytest rows")
    ap.add_argument("--no-scale", action="store_true", help="skip the scale and memory rows")
    ap.add_argument(
        "--no-instructions",
        action="store_true",
        help="skip the instruction counts (valgrind; a full run makes them when it is there)",
    )
    args = ap.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        ap.error("--rounds must be at least 1")
    args.rounds_used = args.rounds or (3 if args.quick else 60)
    batch_scale = 0.5 if args.quick else 1.0
    args.pytest_rounds = 1 if args.quick else 3
    args.pytest_n = 60 if args.quick else 300
    args.scale_reps = 1 if args.quick else 3
    out = Path(args.out)
    chart_path = Path(args.chart) if args.chart else out.with_suffix(".png")

    missing = [m for m in ("matplotlib", "pytest_httpserver", "trustme") if not _importable(m)]
    if missing:
        ap.error(f"missing {', '.join(missing)}: pip install -e '.[bench]'")
    started = time.monotonic()
    fds0, threads0 = fd_count(), threading.active_count()
    facts = machine()
    log(f"request rows: {args.rounds_used} rounds")
    timings, labels = measure_requests(args.rounds_used, batch_scale)
    per_test = None
    if not args.no_pytest:
        log(f"pytest rows: {args.pytest_rounds} run(s) x {args.pytest_n} tests per kind")
        per_test = _pytest_rows.summarize(_pytest_rows.per_test(args.pytest_n, args.pytest_rounds))
    scale = None
    if not args.no_scale:
        log(f"scale rows: {args.scale_reps} repetition(s), N={SCALE_N}")
        scale = measure_scale(args.scale_reps, SCALE_N)
    log("leak tracking: looking for --curlfault-leaks")
    leaks = _pytest_rows.leak_overhead(args.pytest_n, 2 if args.quick else 6)
    counts = None
    if not (args.quick or args.no_instructions) and shutil.which("valgrind"):
        log("instruction counts under callgrind: " + ", ".join(k for k, _, _ in COUNTED))
        counts = measure_instructions()
    seconds = time.monotonic() - started

    gc.collect()
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    clean = fd_count() == fds0 and threading.active_count() == threads0
    facts["load"] += (
        " at the start, " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " at the end"
    )
    facts["left behind"] = (
        f"nothing ({fds0} fds, {threads0} thread before and after)"
        if clean
        else f"{fd_count() - fds0} fd(s), threads {left}"
    )

    rep, bars = build(timings, labels, per_test, scale, leaks)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    chart(
        bars, str(chart_path), f"curlfault vs floors and peers ({facts['date']}, {mode_name(args)})"
    )
    text = page(args, facts, rep, timings, labels, per_test, scale, leaks, chart_path.name, seconds)
    if counts is not None:
        text = text.replace("## How the rows are measured\n", instructions_section(counts), 1)
    out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        data = {
            "machine": facts,
            **as_dict(rep),
            "per_test": per_test,
            "scale": scale,
            "leaks": leaks,
            "instructions": counts,
        }
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(checks_table(rep.checks))
    print()
    print(requests_table(rep.lines))
    log(f"wrote {out} and {chart_path} in {seconds:.0f} s")
    if not clean:
        log(f"the harness left something behind: {facts['left behind']}")
        return 1
    return 0


# (row, what, its floor): instructions per operation under callgrind, made by the scripts
# that print them (instructions.py for request rows, leak_cost.py for tracking).
COUNTED = [
    ("floor.get.fresh", "floor: GET, fresh handle", ""),
    ("cf.get.fresh", "curlfault: GET, fresh handle", "floor.get.fresh"),
    ("floor.get.keepalive", "floor: GET, reused handle", ""),
    ("cf.get.keepalive", "curlfault: GET, reused handle (keep-alive)", "floor.get.keepalive"),
    ("leaks.off", "real loopback GET, fresh handle", ""),
    ("leaks.on", "the same under `Tracker(leaks=True)`", "leaks.off"),
    (
        "leaks.subclass",
        "the same untracked, by a bare `pycurl.Curl` subclass that sets one trivial callback "
        "(the floor of any tracking written in Python)",
        "leaks.off",
    ),
    ("leaks.on-site", "tracked, without the walk of the stack that made the handle", "leaks.off"),
    ("leaks.on-setopt", "tracked, without the `setopt()` override", "leaks.off"),
    ("leaks.on-inode", "tracked, without the `fstat` that reads each socket's inode", "leaks.off"),
]


def measure_instructions() -> dict[str, int]:
    """Instructions per operation of each ``COUNTED`` row: two callgrind runs of the row
    (a low and a high number of operations), the difference over the operations between."""
    import instructions
    import leak_cost

    low, high = 50, 250
    counts: dict[str, int] = {}
    for key, _, _ in COUNTED:
        if key.startswith("leaks."):
            row = key.removeprefix("leaks.")  # leak_cost.py's row
            runs = [leak_cost._instructions(row, n) for n in (low, high)]
        else:
            runs = [instructions._collected(key, n) for n in (low, high)]
        counts[key] = (runs[1] - runs[0]) // (high - low)
    return counts


def instructions_section(counts: dict[str, int]) -> str:
    lines = [
        "## Instructions per operation\n",
        "User-space instructions per operation under `valgrind --tool=callgrind` (each row "
        "run twice, 50 and 250 operations, the difference over 200). They do not wander "
        "with the machine's load the way the times above do, so they show where a change "
        "moved the hot path; kernel time (system calls, wake-ups) is not in them, so they are "
        "context for the targets, not the targets. The same figures: `python "
        "benchmarks/instructions.py ROW` and `python benchmarks/leak_cost.py count`. The last "
        "three rows each take one part out of tracking, a part the issue or the design "
        "requires (the stack in a leak report, a client's own SOCKOPTFUNCTION not switching "
        "tracking off, a socket's identity by inode): the tracked row minus one of them is "
        "what that part costs.\n",
        "| row | instructions | ratio to its floor |",
        "|---|---:|---:|",
    ]
    for key, what, floor in COUNTED:
        ratio = f"{counts[key] / counts[floor]:.2f}x" if floor else "(floor)"
        lines.append(f"| {what} | {counts[key]:,} | {ratio} |")
    return "\n".join(lines) + "\n\n## How the rows are measured\n"


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def mode_name(args: argparse.Namespace) -> str:
    return "quick run" if args.quick else f"{args.rounds_used} rounds"


if __name__ == "__main__":
    sys.exit(main())
