"""Instructions per operation of one benchmark row, under callgrind: a view that does not
wander with the machine's load, for comparing two versions of the hot path.

    python benchmarks/instructions.py cf.get.keepalive      # one row
    python benchmarks/instructions.py cf.get.fresh floor.get.fresh --low 50 --high 250

Each row runs twice under ``valgrind --tool=callgrind`` (``--low`` and ``--high``
operations, after the case's own warm-up); the difference over ``high - low`` is the
user-space instructions of one operation (imports and setup cancel out). Kernel time is
not counted, so read it next to ``run.py``'s wall-clock ratios, not instead of them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import callgrind_instructions, run_case  # noqa: E402


def _cases() -> dict[str, Any]:
    from _cases import CfFresh, CfKeepAlive
    from _floors import FloorFresh, FloorFreshReading, FloorKeepAlive, FloorKeepAliveReading

    return {
        "cf.get.fresh": CfFresh,
        "cf.get.keepalive": CfKeepAlive,
        "floor.get.fresh": FloorFresh,
        "floor.get.keepalive": FloorKeepAlive,
        "floor.get.fresh.reading": FloorFreshReading,
        "floor.get.keepalive.reading": FloorKeepAliveReading,
    }


def run_row(key: str, n: int) -> None:
    from curlfault._loop import Loop

    loop = Loop(name="instructions")
    loop.start()
    try:
        cls = _cases()[key]
        run_case(cls(loop) if key.startswith("cf.") else cls(), n)
    finally:
        loop.stop()


def _collected(key: str, n: int) -> int:
    return callgrind_instructions([__file__, "--row", key, str(n)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("rows", nargs="*", default=["cf.get.keepalive"])
    ap.add_argument("--low", type=int, default=100)
    ap.add_argument("--high", type=int, default=600)
    ap.add_argument("--row", nargs=2, metavar=("KEY", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.row:
        run_row(args.row[0], int(args.row[1]))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    known = _cases()
    for key in args.rows:
        if key not in known:
            raise SystemExit(f"unknown row {key!r}; known: {', '.join(known)}")
        per = (_collected(key, args.high) - _collected(key, args.low)) // (args.high - args.low)
        print(f"{key:22} {per:8d} instructions per operation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
