"""What ``FakeNetwork.check()`` raises: the ledger's findings as errors, and one error for many.

``check()`` gathers every problem of a network (leaks, double closes, unmatched requests,
server and callback errors) and raises the first, carrying the rest and the connection
trace, so one failure shows all of them. Kept apart from the network so that the wording a
user reads is in one place.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

from ._errors import CurlFaultError, LeakError
from ._ledger import LedgerReport, Site
from ._track_report import LIBRARY_FRAMES, format_site

__all__ = ["combined", "ledger_problems"]


def ledger_problems(report: LedgerReport, stack_root: str | None) -> list[CurlFaultError]:
    """What ``report`` found, as errors: each leak or double close once (then marked)."""
    problems: list[CurlFaultError] = []
    # Said only where pytest runs (a unittest user has no fixtures); looked up, not imported.
    fixture_advice = (
        " (a pytest fixture's value is referenced until the test's teardown is over: close "
        "it after the fixture's yield)"
        if "_pytest" in sys.modules
        else ""
    )
    for rec in report.leaked:
        if rec.reported:
            continue
        site = rec.handle_site
        stack = format_site(site, stack_root, LIBRARY_FRAMES) if isinstance(site, Site) else ""
        verb = getattr(site, "verb", "made")
        problems.append(
            LeakError(
                f"descriptor never closed: {rec.describe(stack_root)}; close the pycurl handle "
                "(curl.close()), or drop every reference to it, before the check"
                + fixture_advice
                + (
                    "; the handle was in a CurlMulti or CurlShare when it made this "
                    "connection, and their connection cache keeps it open after "
                    "curl.close(): close the multi or share too (multi.close(), "
                    "share.close())"
                    if rec.keepalive is not None
                    else ""
                )
                + (f"\nthe handle was {verb} at:\n{stack}" if stack else "")
            )
        )
    for rec in report.double_closed:
        if rec.reported:
            continue
        problems.append(
            LeakError(f"descriptor closed {rec.closes} times: {rec.describe(stack_root)}")
        )
    problems += [LeakError(text) for text in report.unknown_closes]
    for rec in report.leaked + report.double_closed:
        rec.reported = True  # raise each problem once
    return problems


def combined(
    problems: list[CurlFaultError], trace: Callable[[], str], *, with_trace: bool
) -> CurlFaultError:
    """The error ``check()`` raises for ``problems`` (not empty): the first, alone if it is
    the only one and there is no trace to show; otherwise an error of the first's class
    whose text lists the others and the trace, and whose ``problems`` holds them all."""
    first = problems[0]
    if len(problems) == 1 and not with_trace:
        return first
    # The same problem again (a client retrying a refused host) is counted, not listed
    # again: (class, text) -> how many times.
    distinct = list(Counter((type(p), str(p)) for p in problems).items())
    lines = [f"{first}"]
    if distinct[0][1] > 1:
        lines.append(f"(the same problem {distinct[0][1]} times)")
    if len(distinct) > 1:
        lines.append(f"... and {len(distinct) - 1} more problem(s):")
        for i, ((kind, text), n) in enumerate(distinct[1:], 2):
            times = f" ({n} times)" if n > 1 else ""
            lines.append(f"  {i}. {kind.__name__}: {text}{times}")
    lines.append("connection trace:")
    lines.append(trace())
    error = type(first)("\n".join(lines))
    error.problems = problems
    error.__cause__ = first.__cause__
    return error
