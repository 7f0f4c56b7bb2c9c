"""Scaffolding shared by the tests that drive an inner pytest run through ``pytester``.

Inner test files get ``cfhelpers.py`` (tests/cfhelpers.py) written next to them, so their
``get()`` helpers run the same real pycurl transfer as the outer tests, in-process or in a
subprocess (xdist). Reports are read back from the in-process run's hook recorder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Inner runs leave out hypothesis's plugin: it imports all of hypothesis at every session end,
# and pytester drops modules an inner run imported, so each run would pay that again. Inner
# tests that share module state rely on file order, so no reordering plugin either.
QUIET = ("-p", "no:hypothesispytest", "-p", "no:randomly")

CFHELPERS = Path(__file__).with_name("cfhelpers.py").read_text(encoding="utf-8")

# The inner tests' transfer: cfhelpers.transfer with the timeouts every inner handle gets.
TRANSFER = '''
from cfhelpers import transfer as _cf_transfer


def _transfer(url, curl, opts):
    """One transfer on a fresh (or the given) handle: (CURLcode, HTTP status or 0, body)."""
    r = _cf_transfer(url, curl, **{"TIMEOUT": 10, "CONNECTTIMEOUT": 5, **opts})
    return r.code, r.status or 0, r.body
'''


def write_inner(pytester: pytest.Pytester, name: str, helper: str, source: str) -> None:
    """``cfhelpers.py`` and the test file ``name``: ``TRANSFER``, ``helper``, then ``source``."""
    pytester.makepyfile(cfhelpers=CFHELPERS)
    pytester.makepyfile(**{name: TRANSFER + helper + source})


def report(result: pytest.RunResult, nodeid_part: str, when: str) -> Any:
    """The one ``when`` report of the inner test whose node id contains ``nodeid_part``."""
    reprec = result.reprec  # type: ignore[attr-defined]
    reports = [
        r
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.when == when and nodeid_part in r.nodeid
    ]
    assert len(reports) == 1, reports
    return reports[0]


def section(result: pytest.RunResult, title: str) -> str:
    """The inner run's ``=== title ===`` section, up to the next such header line.

    Assertions about one section must not read the next: how much of each error the short
    test summary shows depends on the terminal's width and on whether pytest thinks it runs
    on CI (the ``CI`` variable: then it shows each message whole).
    """
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith("=") and title in line)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("==")),
        len(lines),
    )
    return "\n".join(lines[start:end]) + "\n"
