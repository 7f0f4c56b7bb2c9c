"""``curlfault`` / ``python -m curlfault``: the fault matrix and a self-check.

    curlfault matrix                      every fault, both transports, a text table
    curlfault matrix --format json        the same as JSON (for CI)
    curlfault selfcheck                   versions, one healthy GET, ledger and interception

Both commands exit 0 when everything is as documented and 1 otherwise; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from collections.abc import Callable, Sequence

import pycurl

from . import __version__
from ._errors import CurlFaultError
from ._matrix import CASES, DEFAULT_TIMEOUT, Case, run_matrix
from ._matrix_render import FORMATS, docs_table, render
from ._network import FakeNetwork
from ._transports import ENDPOINT_TRANSPORTS as TRANSPORTS

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit status: 0 if every check passed, 1 if any failed, 2 for bad arguments.
Every transfer goes to an in-process fake host; nothing leaves the machine."""


def _positive_seconds(text: str) -> float:
    """argparse type for --timeout: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curlfault`` command."""
    parser = argparse.ArgumentParser(
        prog="curlfault",
        description="Fault injection for pycurl: prove what the installed libcurl returns "
        "for each curlfault fault, or check that curlfault works here.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"curlfault {__version__} ({pycurl.version})",
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    matrix = commands.add_parser(
        "matrix",
        help="run every fault against the installed pycurl/libcurl and compare CURLcodes",
        description="Run every fault in curlfault.faults through real pycurl transfers to "
        "fake hosts, one fresh FakeNetwork per row, and compare libcurl's CURLcode with the "
        "documented one. A row also fails if the descriptor ledger does not balance or "
        "net.check() reports an unexpected problem.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    matrix.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="output format (default: text)",
    )
    matrix.add_argument(
        "--transport",
        choices=(*TRANSPORTS, "all"),
        default="all",
        help="endpoint transport to run each fault over (default: all)",
    )
    matrix.add_argument(
        "--list",
        action="store_true",
        help="print the cases as the docs table (fault, documented CURLcode, note) "
        "without running them",
    )
    matrix.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"pycurl TIMEOUT of each transfer (default: {DEFAULT_TIMEOUT:g})",
    )

    commands.add_parser(
        "selfcheck",
        help="print versions and check one healthy transfer through a fake network",
        description="Print the pycurl, libcurl and Python versions, run one healthy GET "
        "through a FakeNetwork, and check that the descriptor ledger balances and that "
        "pycurl.Curl is restored after intercept().",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def main(argv: Sequence[str] | None = None, *, cases: Sequence[Case] | None = None) -> int:
    """Run the ``curlfault`` command; returns the exit status.

    ``cases`` replaces the matrix's case list (for tests and for proving faults of your own).
    """
    args = build_parser().parse_args(argv)
    if args.command == "matrix" and args.list:
        print(docs_table(CASES if cases is None else cases))
        return 0
    if args.command == "matrix":
        transports = TRANSPORTS if args.transport == "all" else (args.transport,)
        return _matrix(args.format, transports, CASES if cases is None else cases, args.timeout)
    return _selfcheck()


def _matrix(fmt: str, transports: Sequence[str], cases: Sequence[Case], timeout: float) -> int:
    rows = run_matrix(transports, cases, timeout=timeout)
    print(render(rows, fmt))
    return 0 if all(row.ok for row in rows) else 1


# selfcheck -----------------------------------------------------------------------------------
_SELFCHECK_BODY = b"curlfault selfcheck\n"
Check = tuple[bool, str]


def _loop_threads() -> int:
    return sum(t.name == "curlfault-loop" for t in threading.enumerate())


def _healthy_get(net: FakeNetwork) -> Check:
    """One GET through ``net`` with real pycurl; ok if it returned 200 and the body."""
    net.http("selfcheck.test").get("/").respond(200, body=_SELFCHECK_BODY)
    body = io.BytesIO()
    curl = pycurl.Curl()
    try:
        curl.setopt(pycurl.URL, "http://selfcheck.test/")
        curl.setopt(pycurl.WRITEDATA, body)
        curl.setopt(pycurl.TIMEOUT, int(DEFAULT_TIMEOUT))
        start = time.perf_counter()
        try:
            curl.perform()
        except (pycurl.error, CurlFaultError) as exc:
            return False, f"healthy GET through a FakeNetwork failed: {exc!r}"
        ms = (time.perf_counter() - start) * 1000
        status = curl.getinfo(pycurl.RESPONSE_CODE)
    finally:
        curl.close()
    ok = status == 200 and body.getvalue() == _SELFCHECK_BODY
    return ok, (
        f"healthy GET through a FakeNetwork: status {status}, "
        f"{len(body.getvalue())} bytes, {ms:.1f} ms"
    )


def _network_checks() -> list[Check]:
    checks: list[Check] = []
    before_curl, before_threads = pycurl.Curl, _loop_threads()
    net = FakeNetwork(label="curlfault selfcheck")
    try:
        with net.intercept():
            routed = pycurl.Curl is not before_curl
            checks.append((routed, "pycurl.Curl is replaced inside intercept()"))
            checks.append(_healthy_get(net))
        report = net.ledger.audit()
        opened = len(net.ledger)
        balance = (
            f"descriptor ledger balances: {opened} opened, {len(report.leaked)} leaked, "
            f"{len(report.double_closed)} closed twice"
        )
        checks.append((report.ok and opened > 0, balance))
        try:
            net.check()
            checks.append((True, "net.check() reports no problem"))
        except CurlFaultError as exc:
            checks.append((False, f"net.check() raised {type(exc).__name__}: {exc}"))
    finally:
        net.close()
    checks.append((pycurl.Curl is before_curl, "pycurl.Curl is restored after intercept()"))
    stopped = _loop_threads() <= before_threads
    checks.append((stopped, "the network's loop thread stopped on close()"))
    return checks


def _selfcheck(emit: Callable[[str], None] = print) -> int:
    emit(f"curlfault {__version__} selfcheck")
    emit(f"  python   {sys.version.split()[0]} ({sys.executable})")
    emit(f"  pycurl   {pycurl.version}")
    emit(f"  libcurl  {pycurl.version_info()[1]}")
    checks = _network_checks()
    for ok, text in checks:
        emit(f"{'ok  ' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    emit("selfcheck passed" if passed else "selfcheck FAILED")
    return 0 if passed else 1


if __name__ == "__main__":  # pragma: no cover - python -m curlfault._cli
    sys.exit(main())
