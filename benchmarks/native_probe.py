"""What a compiled core would take off leak tracking's cost: a probe, not part of curlfault.

    python benchmarks/native_probe.py time --rounds 60   # interleaved wall-clock ratios
    python benchmarks/native_probe.py count               # instructions per transfer (valgrind)

``native_probe/_cfprobe.c`` is the hot path of ``Tracker(leaks=True)`` (a tracked handle's
creation with its creation-site walk, its SOCKOPTFUNCTION record, its ``setopt`` override)
written in C; its header says what it leaves out (on the measured path, two small things).
This script compiles it with the compiler Python was built with (``sysconfig``'s ``CC``)
into a temporary directory, twice: ``native`` reads the stack with CPython's public frame
API (portable from 3.11 on), ``native-internal`` reads the interpreter's frames directly
(CPython 3.11's internal layout: the least a walk can cost). It then times, on each of the
loopback transfers of ``leak_cost.py`` (``fresh``: served from PREREQFUNCTION, the worst
case; ``server``: ThreadingHTTPServer in this process; ``process``: in a child process;
``reused``: a warm keep-alive connection), four rows side by side: untracked (``off``),
curlfault's tracking (``on``), and the two probes. Each probe row checks at the end of each
batch that it recorded one socket per connection.

curlfault is a pure-Python package; this probe exists to put a number on "tracking within
5% needs a compiled core" (docs/native-probe.md), not to ship one.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pycurl  # noqa: E402
from _cases import Loopback  # noqa: E402
from _common import REAL_CURL, callgrind_instructions, median, quantile, run_case  # noqa: E402
from _timing import Case, run_interleaved  # noqa: E402

SOURCE = HERE / "native_probe" / "_cfprobe.c"
VARIANTS = {"native": [], "native-internal": ["-DCF_PROBE_INTERNAL"]}
KINDS = ("fresh", "server", "process", "reused")
STATES = ("off", "on", *VARIANTS)
BUILD_ENV = "CF_PROBE_BUILD"  # where count's child processes find the built modules


def build(into: Path) -> dict[str, Path]:
    """Compile both variants into ``into``; a clear error if this Python cannot."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        raise SystemExit(
            "native_probe: the probe reads CPython 3.11's frames (native-internal uses its "
            f"internal layout); this is {sys.implementation.name} {sys.version.split()[0]}. "
            "Run it with CPython 3.11."
        )
    cc = sysconfig.get_config_var("CC") or "cc"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    built = {}
    for name, flags in VARIANTS.items():
        out = into / name / f"_cfprobe{suffix}"
        out.parent.mkdir()
        cmd = [*shlex.split(cc), "-O2", "-shared", "-fPIC", *flags, "-I", include, str(SOURCE)]
        try:
            subprocess.run([*cmd, "-o", str(out)], check=True, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise SystemExit(f"native_probe: no C compiler ({exc.filename}); install gcc") from exc
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"native_probe: {' '.join(cmd)} failed:\n{exc.stderr}") from exc
        built[name] = out
    return built


def load(variant: str, path: Path) -> type:
    """Import one build and return the tracked ``pycurl.Curl`` subclass it drives."""
    spec = importlib.util.spec_from_file_location("_cfprobe", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"native_probe: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from curlfault import _intercept, _sites

    cls = type(f"Probe_{variant.replace('-', '_')}", (REAL_CURL,), {"__slots__": ("_w",)})
    module.install(
        cls,
        REAL_CURL.setopt,
        frozenset(_intercept.WATCHED_OPTIONS),
        REAL_CURL.setopt,  # the other watched options: pycurl's own (see _cfprobe.c)
        REAL_CURL.__basicsize__,  # the slot's offset: right after pycurl's own object
        _sites._LIBRARY_FILES,
        pycurl.SOCKOPTFUNCTION,
        pycurl.URL,
    )
    cls._probe = module
    return cls


class Probe(Loopback):
    """``leak_cost.py``'s loopback GET with the handle made by a probe's tracked class."""

    def __init__(self, kind: str, variant: str, cls: type) -> None:
        super().__init__(tracked=False, kind=kind)
        self.cls = cls
        self.key = f"{variant}.{kind}"
        self.label = f"{self.label}, tracked by the C probe ({variant})"

    def begin(self) -> None:
        # The class stands in for pycurl.Curl for the batch, as a tracker's does.
        self.open: dict[int, Any] = {}
        self.cls._probe.begin(self.key, self.open)
        self.saved = pycurl.Curl
        pycurl.Curl = self.cls  # type: ignore[misc]
        super().begin()

    def end(self) -> None:
        made, recorded = self.cls._probe.counts()
        self.cls._probe.end()
        pycurl.Curl = self.saved  # type: ignore[misc]
        super().end()
        # A handle per transfer (one for the batch when reused), each with one connection
        # recorded, under the URL, at the line of Loopback._new_handle that made it.
        expected = 1 if self.kind == "reused" else self.batch
        entries = list(self.open.values())
        if (made, recorded) != (expected, expected) or not all(
            e[3] == self.url and e[4][0] is Loopback._new_handle.__code__ for e in entries
        ):
            raise RuntimeError(
                f"{self.key}: {made} handles made and {recorded} sockets recorded, expected "
                f"{expected} each, under {self.url} and made in Loopback._new_handle: {entries}"
            )


def make(row: str, built: dict[str, Path], classes: dict[str, type]) -> Case:
    state, kind = row.split(".")
    if state in ("off", "on"):
        return Loopback(tracked=state == "on", kind=kind)
    if state not in classes:
        classes[state] = load(state, built[state])
    return Probe(kind, state, classes[state])


def time_rows(rounds: int, kinds: list[str], built: dict[str, Path]) -> None:
    rows = [f"{state}.{kind}" for kind in kinds for state in STATES]
    classes: dict[str, type] = {}
    cases = [make(row, built, classes) for row in rows]
    timings = run_interleaved(cases, rounds, verbose=False)
    print(f"{'row':24} {'median us':>10} {'ratio':>7} {'p10':>6} {'p90':>6}  to")
    for row, case in zip(rows, cases, strict=True):
        base = cases[rows.index(f"off.{row.split('.')[1]}")]
        off = timings.rounds[base.key]
        ratios = [median(a) / median(b) for a, b in zip(timings.rounds[case.key], off, strict=True)]
        print(
            f"{row:24} {median(timings.samples(case.key)) / 1000:10.1f} {median(ratios):7.3f} "
            f"{quantile(ratios, 0.1):6.3f} {quantile(ratios, 0.9):6.3f}  off.{row.split('.')[1]}"
        )


def count_rows(rows: list[str]) -> None:
    print(f"{'row':24} {'instructions':>13} {'over off':>9}")
    counts: dict[str, int] = {}
    for row in rows:
        few = callgrind_instructions([__file__, "row", row, "100"])
        many = callgrind_instructions([__file__, "row", row, "400"])
        counts[row] = (many - few) // 300
        off = counts.get(f"off.{row.split('.')[1]}")
        extra = f"{counts[row] - off:+9,}" if off is not None else ""
        print(f"{row:24} {counts[row]:13,} {extra}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time", help="interleaved wall-clock ratios to the untracked row")
    t.add_argument("--rounds", type=int, default=60)
    t.add_argument("kinds", nargs="*", help=f"of {', '.join(KINDS)} (default: all)")
    c = sub.add_parser("count", help="instructions per transfer under valgrind")
    c.add_argument("rows", nargs="*", default=[f"{s}.fresh" for s in STATES])
    r = sub.add_parser("row", help="one row alone (what count runs under valgrind)")
    r.add_argument("row")
    r.add_argument("n", type=int)
    args = ap.parse_args(argv)
    if args.cmd == "time" and set(args.kinds) - set(KINDS):
        ap.error(f"kinds are {', '.join(KINDS)}; got {', '.join(args.kinds)}")
    if args.cmd == "row":
        built = {name: Path(os.environ[BUILD_ENV], name) for name in VARIANTS}
        built = {name: next(path.iterdir()) for name, path in built.items()}
        case = make(args.row, built, {})
        case.batch = args.n  # run_case's transfers between begin() and end()
        run_case(case, args.n)
        return 0
    with tempfile.TemporaryDirectory(prefix="cfprobe-") as tmp:
        built = build(Path(tmp))
        if args.cmd == "time":
            time_rows(args.rounds, args.kinds or list(KINDS), built)
        else:
            os.environ[BUILD_ENV] = tmp
            count_rows(args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
