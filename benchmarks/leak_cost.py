"""What leak tracking costs on a real loopback transfer, in time and in instructions.

    python benchmarks/leak_cost.py time --rounds 200   # interleaved wall-clock ratios
    python benchmarks/leak_cost.py count               # instructions per transfer (valgrind)

Rows (each a real loopback GET, the transfers of run.py's leak rows):

- ``off``: a fresh handle per GET, served from ``PREREQFUNCTION`` (no server thread: the
  cheapest real transfer there is, so the worst case for a per-handle cost); ``on``: the
  same under ``curlfault.Tracker(leaks=True)``; ``aa``: ``off`` again (an A/A control: how
  far two identical rows drift apart on this machine);
- ``sockopt``: an untracked handle with a trivial Python SOCKOPTFUNCTION, the floor of
  tracking with one callback per connection;
- ``subclass``: a handle of a minimal Python subclass of ``pycurl.Curl`` whose ``__init__``
  sets that trivial SOCKOPTFUNCTION: the least any tracking written in Python can cost per
  fresh handle (a subclass so that ``pycurl.Curl()`` wires itself, one callback, nothing
  recorded);
- ``open+close``: an untracked handle with trivial Python OPENSOCKETFUNCTION and
  CLOSESOCKETFUNCTION (the floor of a design that makes and closes each socket itself);
- ``reused.off`` / ``reused.on``: one handle per batch, each GET on its warm keep-alive
  connection, untracked and tracked (compared with ``reused.off``);
- ``srv.off`` / ``srv.on``: a fresh-handle GET against the standard library's
  ``ThreadingHTTPServer`` on 127.0.0.1 (a real server thread, what a downstream suite runs
  under ``--curlfault-leaks``), untracked and tracked (compared with ``srv.off``). The
  tracking cost per transfer is the same; the transfer it is added to is longer;
- ``proc.off`` / ``proc.on``: the same server in a child process (a service started before
  the tests), so that the server's threads share neither the client's interpreter lock nor
  its processor caches;
- ``on-site``, ``on-setopt``, ``on-inode``: ``on`` with one part of tracking taken out, to
  show what each costs (each part is one the issue or the design asks for, so these are
  diagnostics, not options): ``on-site`` records one fixed creation site instead of walking
  the stack where the handle was made; ``on-setopt`` gives tracked handles pycurl's own
  ``setopt`` (no override: a client's own SOCKOPTFUNCTION would then switch tracking off,
  and the leak report loses the URL); ``on-inode`` records each socket without ``fstat``
  (no inode: a descriptor number reused by another socket would pass for the leaked one).
  The part's cost is ``on`` minus the row.

``time`` runs the rows interleaved (run.py's harness) and prints each row's median ratio to
its baseline over rounds. On a shared machine wall-clock ratios wander by several percent;
the ``count`` view is repeatable under load: each row runs under ``valgrind
--tool=callgrind`` twice (100 and 400 transfers) and the difference over 300 is the
user-space instructions per transfer (kernel time is not counted, so the instruction ratio
overstates the time ratio of a transfer that spends much of its time in syscalls).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pycurl  # noqa: E402
from _cases import Loopback  # noqa: E402
from _common import REAL_CURL, callgrind_instructions, median, quantile, run_case  # noqa: E402
from _timing import Case, run_interleaved  # noqa: E402

ROWS = (
    "off",
    "on",
    "aa",
    "sockopt",
    "subclass",
    "open+close",
    "reused.off",
    "reused.on",
    "srv.off",
    "srv.on",
    "proc.off",
    "proc.on",
    "on-site",
    "on-setopt",
    "on-inode",
)
BASELINE = {  # the others: "off"
    "reused.off": "reused.off",
    "reused.on": "reused.off",
    "srv.off": "srv.off",
    "srv.on": "srv.off",
    "proc.off": "proc.off",
    "proc.on": "proc.off",
}


def _sockopt(fd: int, purpose: int) -> int:
    return 0


def _open(purpose: int, address: Any) -> int:
    family, socktype, protocol, _addr = address
    return socket.socket(family, socktype, protocol).detach()


def _close(fd: int) -> int:
    os.close(fd)
    return 0


_SETOPT = REAL_CURL.setopt


class _WiredCurl(REAL_CURL):  # type: ignore[misc, valid-type]
    """The ``subclass`` row's handle: wires one trivial callback of its own when made."""

    def __init__(self) -> None:
        _SETOPT(self, pycurl.SOCKOPTFUNCTION, _sockopt)


class Floor(Loopback):
    """The untracked loopback GET with trivial Python callbacks of its own (or none)."""

    def __init__(self, key: str) -> None:
        super().__init__(tracked=False)
        self.key = key
        self.label = f"real loopback GET, fresh handle, trivial callbacks: {key}"

    def _new_handle(self) -> Any:
        if self.key != "subclass":
            return super()._new_handle()
        saved = pycurl.Curl
        pycurl.Curl = _WiredCurl  # type: ignore[misc]
        try:
            return super()._new_handle()
        finally:
            pycurl.Curl = saved  # type: ignore[misc]

    def configure(self, curl: Any) -> None:
        if self.key == "sockopt":
            curl.setopt(pycurl.SOCKOPTFUNCTION, _sockopt)
        elif self.key == "open+close":
            curl.setopt(pycurl.OPENSOCKETFUNCTION, _open)
            curl.setopt(pycurl.CLOSESOCKETFUNCTION, _close)


_INHERITED = object()  # an attribute a class takes from its base, not its own


class Without(Loopback):
    """``on`` with one part of tracking taken out for its batches (see the module docstring).

    The part is patched out in ``begin()`` and put back in ``end()``, so the rows it is
    interleaved with run the whole of tracking.
    """

    def __init__(self, part: str) -> None:
        super().__init__(tracked=True)
        self.part = part
        self.key = f"leaks.on-{part}"
        self.label = f"real loopback GET, fresh handle, tracked without: {part}"
        self._saved: list[tuple[Any, str, Any]] = []

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, _INHERITED)))
        setattr(owner, name, value)

    def begin(self) -> None:
        from curlfault import _intercept, _sites, _track_wiring

        if self.part == "site":
            fixed = _sites.own_site(0)
            self._patch(_intercept, "own_site", lambda skip=2: fixed)
        elif self.part == "setopt":
            self._patch(_intercept.TrackedCurl, "setopt", REAL_CURL.setopt)
        elif self.part == "inode":
            self._patch(_track_wiring, "_fstat", _NoInode)
        super().begin()

    def end(self) -> None:
        try:
            super().end()
        finally:
            while self._saved:
                owner, name, value = self._saved.pop()
                if value is _INHERITED:
                    delattr(owner, name)
                else:
                    setattr(owner, name, value)


class _NoInode:
    """What ``on-inode`` records instead of ``os.fstat(fd)``: inode 0, no system call."""

    st_ino = 0

    def __new__(cls, fd: int) -> Any:
        return cls


def make(row: str) -> Loopback:
    if row.startswith("on-"):
        return Without(row[3:])
    if row in ("off", "on"):
        return Loopback(tracked=row == "on")
    if "." in row:
        kind, state = row.split(".")
        kind = {"srv": "server", "proc": "process"}.get(kind, kind)
        return Loopback(tracked=state == "on", kind=kind)
    return Floor(row)


def run_row(row: str, n: int) -> None:
    run_case(make(row), n)


def time_rows(rounds: int) -> None:
    cases: list[Case] = [make(row) for row in ROWS]
    timings = run_interleaved(cases, rounds, verbose=False)
    keys = dict(zip(ROWS, (c.key for c in cases), strict=True))
    print(f"{'row':12} {'median us':>10} {'ratio':>13} {'p10':>6} {'p90':>6}  to")
    for row, case in zip(ROWS, cases, strict=True):
        base = BASELINE.get(row, "off")
        off = timings.rounds[keys[base]]
        ratios = [median(a) / median(b) for a, b in zip(timings.rounds[case.key], off, strict=True)]
        print(
            f"{row:12} {median(timings.samples(case.key)) / 1000:10.1f} "
            f"{median(ratios):13.3f} {quantile(ratios, 0.1):6.3f} {quantile(ratios, 0.9):6.3f}"
            f"  {base}"
        )


def _instructions(row: str, n: int) -> int:
    return callgrind_instructions([__file__, "row", row, str(n)])


def count_rows(rows: list[str]) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    per: dict[str, int] = {}
    for row in rows:
        per[row] = (_instructions(row, 400) - _instructions(row, 100)) // 300
        print(f"{row:12} {per[row]:8d} instructions per transfer", flush=True)
    for row, ir in per.items():
        base = BASELINE.get(row, "off")
        if base in per:
            print(f"{row:12} {ir / per[base]:.3f}x {base}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("time", help="interleaved wall-clock ratios")
    t.add_argument("--rounds", type=int, default=200)
    c = sub.add_parser("count", help="instructions per transfer under callgrind")
    c.add_argument("rows", nargs="*", default=["off", "on", "sockopt", "subclass", "open+close"])
    r = sub.add_parser("row", help="run one row N times (what callgrind runs)")
    r.add_argument("row", choices=ROWS)
    r.add_argument("n", type=int)
    args = ap.parse_args(argv)
    if args.what == "time":
        time_rows(args.rounds)
    elif args.what == "count":
        count_rows(args.rows)
    else:
        run_row(args.row, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
