"""The run under ``--curlfault-leaks`` / ``--curlfault-strict``: attribution and reports.

The label of the descriptors the tracker records is the running test's node id. After a
test's teardown (its fixtures are finalized by then) the test's own descriptors that are
still open, and whatever its handles did wrong (double or unknown closes, refused
connections), fail the test as an error at teardown. Problems travel in the teardown
report's ``user_properties``, so xdist carries them to the controller, whose terminal
summary lists them all.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from curlfault import SocketRecord, Tracker
from curlfault._track_report import LIBRARY_FRAMES
from curlfault._tracking import (
    CALLBACK_ERROR,
    DOUBLE_CLOSE,
    UNEXPECTED,
    UNKNOWN_CLOSE,
    describe_record,
)

from ._leaks_advice import Advice, advice, advice_text, relative
from ._leaks_options import FIXTURE_PROPERTY, MARKER, waiver

__all__ = ["LeakPlugin"]

# user_properties names: one per kind of problem, the value is the problem's text.
LEAK = "curlfault_leak"
PROPERTY = {
    UNEXPECTED: "curlfault_unexpected_connection",
    DOUBLE_CLOSE: "curlfault_close_error",
    UNKNOWN_CLOSE: "curlfault_close_error",
    CALLBACK_ERROR: "curlfault_internal_error",
}
WAIVED = "curlfault_leak_waived"
TITLE = {
    LEAK: "LeakError",
    "curlfault_unexpected_connection": "UnexpectedConnection",
    "curlfault_close_error": "LeakError",
    "curlfault_internal_error": "CallbackError",
    FIXTURE_PROPERTY: "curlfault fixture",
}
# pytest's and pluggy's own frames between a test function and the code that made a handle.
HIDE = LIBRARY_FRAMES
# What the test's error advises, from its first handle that left a descriptor open.
advice_key = pytest.StashKey[Advice | None]()


@dataclass
class _Deferred:
    record: SocketRecord
    scope: str
    module: str
    why: str


class LeakPlugin:
    """Per-test attribution, teardown errors and the terminal summary."""

    def __init__(
        self,
        config: pytest.Config,
        tracker: Tracker | None,
        *,
        leaks: bool,
        strict: bool,
        scopes: list[tuple[str, str]],
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.leaks = leaks
        self.strict = strict
        self.scopes = scopes
        self.root = str(config.rootpath)
        self._deferred: list[_Deferred] = []
        self._session_checked = False
        # What the terminal summary lists: (property, nodeid, text), from every report.
        self.found: list[tuple[str, str, str]] = []
        self._failed: set[str] = set()  # node ids whose setup or call failed (the summary)
        # Per running test, by node id, until its teardown report: failed or xfailed in
        # setup or call; problems found at teardown; refusals already shown in a report.
        self._already_failed: set[str] = set()
        self._findings: dict[str, list[tuple[str, str]]] = {}
        self._shown: dict[str, list[tuple[str, str]]] = {}
        self._sections: dict[tuple[str, str], str] = {}  # (node id, phase): refusals to show
        # Under --curlfault-strict: node ids marked @pytest.mark.curlfault(strict=False),
        # whose own handles reach the network (see pytest_collection_modifyitems).
        self._relaxed: frozenset[str] = frozenset()

    # attribution -----------------------------------------------------------------------
    # A suite-wide run pays for every hook implementation on every test (pluggy's dispatch
    # costs more than most of their bodies), so the only wrapper is teardown's, and reports
    # are edited in pytest_runtest_logreport (tryfirst: before the terminal, junitxml and
    # xdist read them). Nothing here relies on a phase's report being logged before the next
    # phase runs: pytest-rerunfailures logs all three after the teardown.
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Under --curlfault-strict, note the tests marked ``curlfault(strict=False)``: the
        handles each makes (in its fixtures too) may reach the network, as the marker says
        for a test with the ``curlfault`` fixture. A test with a misused marker stays strict
        (it fails at setup: see ``marker_error``)."""
        if not self.strict or self.tracker is None:
            return
        from .plugin import marker_error, marker_options

        self._relaxed = frozenset(
            item.nodeid
            for item in items
            if item.get_closest_marker("curlfault") is not None
            and not marker_error(item)
            and not marker_options(item, True)["strict"]
        )
        if self._relaxed and not self.config.pluginmanager.has_plugin(_LONGER_FIXTURES):
            self.config.pluginmanager.register(
                _StrictLongerFixtures(self.tracker), _LONGER_FIXTURES
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        tracker = self.tracker
        if tracker is not None:
            tracker.label = nodeid  # back to "" at the end of the test's teardown
            if self._relaxed:
                tracker.relaxed = nodeid in self._relaxed

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        # A plain hook before pytest's own makes the report (it returns None: the others
        # run): a setup or call that raised is known here, before the teardown audit.
        excinfo = call.excinfo
        if excinfo is None or call.when == "teardown" or self.tracker is None:
            return
        if not excinfo.errisinstance(pytest.skip.Exception):  # failed, or xfailed
            self._note_failure(item.nodeid, call.when)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        __tracebackhide__ = _hide_unless_own_failure
        tracker = self.tracker
        if tracker is None:
            return (yield)
        nodeid = item.nodeid
        tracker.label = nodeid  # in case a setup hook that runs before ours raised
        if self._relaxed:
            tracker.relaxed = nodeid in self._relaxed
        try:
            try:
                result = yield
            except BaseException:
                # The teardown failed already: note what we found, raise theirs.
                self._already_failed.add(nodeid)
                self._check(tracker, item, nodeid, nextitem)
                raise
            findings = self._check(tracker, item, nodeid, nextitem)
            counted = [(k, t) for k, t in findings if k != WAIVED]
            if counted and nodeid not in self._already_failed:
                pytest.fail(self._message(item, counted), pytrace=False)
            return result
        finally:
            tracker.label = ""
            tracker.relaxed = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        when, outcome = report.when, report.outcome  # plain attributes (runs 3x per test)
        if self.tracker is not None:  # in the process that ran the test
            if when == "teardown":
                self._teardown_report(report)
            else:
                if outcome == "failed" or (outcome == "skipped" and hasattr(report, "wasxfail")):
                    # (a strict xpass fails without an exception: known only here)
                    self._note_failure(report.nodeid, when)
                if self._sections:
                    texts = self._sections.pop((report.nodeid, when), None)
                    if texts:
                        report.sections.append(
                            (f"curlfault: refused by --curlfault-strict ({when})", texts)
                        )
        if when != "teardown" and (
            outcome == "failed" or (outcome == "skipped" and hasattr(report, "wasxfail"))
        ):
            self._failed.add(report.nodeid)  # an xfail failed too (xdist carries wasxfail)
        if report.user_properties:
            for name, value in report.user_properties:
                if isinstance(name, str) and name.startswith("curlfault_"):
                    self.found.append((name, report.nodeid, str(value)))

    def _note_failure(self, nodeid: str, when: str) -> None:
        """A failed (or xfailed) setup or call: problems found at teardown then do not fail
        the test again, and a connection refused by strict mode is said in that phase's
        report (the failure shows pycurl's error 7: this says why)."""
        assert self.tracker is not None
        self._already_failed.add(nodeid)
        events = self.tracker.take_events(nodeid, kinds=[UNEXPECTED])
        if events:
            texts = [e.describe(self.root, HIDE) for e in events]
            # A client that retried: each refusal once, with its count (as in the summary).
            self._sections[(nodeid, when)] = "\n".join(
                _counted(text, n) for text, n in Counter(texts).items()
            )
            self._shown.setdefault(nodeid, []).extend((PROPERTY[UNEXPECTED], t) for t in texts)

    def _teardown_report(self, report: pytest.TestReport) -> None:
        """Every problem of the test travels in its teardown report: xdist carries it to the
        controller, junitxml writes it, the summary counts it once."""
        nodeid = report.nodeid
        if not (self._findings or self._shown or self._already_failed):
            return  # nothing noted for any test (the usual case)
        findings = self._findings.pop(nodeid, [])
        earlier = self._shown.pop(nodeid, [])
        already_failed = nodeid in self._already_failed
        self._already_failed.discard(nodeid)
        if earlier or findings:
            report.user_properties.extend(earlier + findings)
        if findings and already_failed:
            report.sections.append(
                (
                    "curlfault problems at teardown (test had already failed)",
                    "\n".join(f"{TITLE.get(k, k)}: {t}" for k, t in findings if k != WAIVED),
                )
            )

    def _check(
        self, tracker: Tracker, item: pytest.Item, nodeid: str, nextitem: pytest.Item | None
    ) -> list[tuple[str, str]]:
        """The test's problems, and those of the scopes that end with it."""
        root = self.root
        findings: list[tuple[str, str]] = []
        if self.leaks:
            report = tracker.audit(nodeid)
            # The marker is read only when there is something to waive (most tests: nothing).
            marked, marker_scope, reason = waiver(item) if report.leaked else (False, None, "")
            for rec in report.leaked:
                if rec.reported:
                    continue
                scope, why = (
                    (marker_scope, f"@pytest.mark.{MARKER}") if marked else self._scope_of(rec)
                )
                if scope is not None:
                    self._deferred.append(_Deferred(rec, scope, _module_of(nodeid), why))
                elif marked:
                    rec.reported = True
                    note = f" ({reason})" if reason else ""
                    findings.append(
                        (WAIVED, describe_record(rec, root, HIDE).splitlines()[0] + note)
                    )
                else:
                    rec.reported = True
                    findings.append(
                        (LEAK, f"descriptor never closed: {describe_record(rec, root, HIDE)}")
                    )
                    if advice_key not in item.stash:
                        item.stash[advice_key] = advice(item, rec, root, HIDE)
            events = report.events
        else:
            events = tracker.take_events(nodeid)
        findings.extend((PROPERTY[e.kind], e.describe(root, HIDE)) for e in events)
        if self.leaks:
            findings.extend(self._scope_ends(tracker, item, nextitem))
        if nextitem is None:
            self._session_checked = True
            findings.extend(
                (PROPERTY[e.kind], e.describe(root, HIDE)) for e in tracker.take_events("")
            )
        if findings:
            self._findings[nodeid] = findings
        return findings

    def _scope_of(self, rec: SocketRecord) -> tuple[str | None, str]:
        """The scope the ini setting gives this record's handle, and which line did."""
        if not self.scopes or isinstance(rec.handle_site, str):
            return None, ""
        keys = [f"{relative(f, self.root)}::{fn}" for f, _n, fn in rec.handle_site.frames]
        for scope, pattern in self.scopes:
            if any(fnmatch.fnmatchcase(key, pattern) for key in keys):
                return scope, f"curlfault_handle_scopes: {scope} {pattern}"
        return None, ""

    def _scope_ends(
        self, tracker: Tracker, item: pytest.Item, nextitem: pytest.Item | None
    ) -> list[tuple[str, str]]:
        """Deferred descriptors whose scope ends with this test and that are still open."""
        if not self._deferred and nextitem is not None:
            return []  # nothing deferred, and the session goes on
        module = _module_of(item.nodeid)
        module_ends = nextitem is None or _module_of(nextitem.nodeid) != module
        due: list[_Deferred] = []
        keep: list[_Deferred] = []
        for d in self._deferred:
            ends = nextitem is None or (d.scope == "module" and d.module == module and module_ends)
            (due if ends else keep).append(d)
        self._deferred = keep
        out: list[tuple[str, str]] = []
        still = {r.inode for r in tracker.still_open([d.record for d in due])}
        for d in due:
            if d.record.inode in still and not d.record.reported:
                d.record.reported = True
                where = f"module {d.module}" if d.scope == "module" else "the session"
                out.append(
                    (
                        LEAK,
                        f"descriptor still open at the end of {where} ({d.scope} scope from "
                        f"{d.why}): {describe_record(d.record, self.root, HIDE)}",
                    )
                )
        if nextitem is None:
            # Descriptors opened outside any test (at import, in a session hook).
            for rec in tracker.still_open(r for r in tracker.open_records("") if not r.reported):
                rec.reported = True
                out.append(
                    (
                        LEAK,
                        f"descriptor still open at the end of the session: "
                        f"{describe_record(rec, self.root, HIDE)}",
                    )
                )
        return out

    def _message(self, item: pytest.Item, findings: list[tuple[str, str]]) -> str:
        leaks = sum(k == LEAK for k, _ in findings)
        refused = sum(k == PROPERTY[UNEXPECTED] for k, _ in findings)
        other = len(findings) - leaks - refused
        parts = []
        if leaks:
            parts.append(f"{leaks} descriptor{'s' * (leaks != 1)} left open")
        if refused:
            parts.append(
                f"{refused} connection{'s' * (refused != 1)} refused by --curlfault-strict"
            )
        if other:
            parts.append(f"{other} other problem{'s' * (other != 1)}")
        lines = [f"curlfault: {item.nodeid}: {', '.join(parts)}"]
        # The same finding again (a client retrying a refused host) is counted, not listed
        # again.
        for i, ((kind, text), n) in enumerate(Counter(findings).items(), 1):
            lines.append(f"{i}. {TITLE.get(kind, kind)}: {_counted(text, n)}")
        if advice_key in item.stash:
            lines.append(advice_text(item.stash[advice_key]))
        elif leaks:
            lines.append(
                "A handle given a longer scope must be closed by the end of that scope, for "
                "instance in the teardown of the fixture that made it."
            )
        return "\n".join(lines)

    # after the last test ---------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        tracker = self.tracker
        if tracker is None or self._session_checked:
            return
        # The run stopped early (-x, --maxfail, interrupted): session fixtures were torn down
        # after the last test, so what is still open is listed without a test to blame.
        found: list[str] = []
        if self.leaks:
            open_now = [r for r in tracker.open_records() if not r.reported]
            for rec in tracker.still_open(open_now):
                rec.reported = True
                found.append(
                    f"descriptor still open at the end of the session: "
                    f"{describe_record(rec, self.root, HIDE)}"
                )
        found.extend(e.describe(self.root, HIDE) for e in tracker.take_events())
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["curlfault_after_run"] = found
        else:
            self.found.extend((LEAK, "(after the last test)", text) for text in found)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        for text in output.get("curlfault_after_run", []):
            self.found.append((LEAK, "(after the last test)", text))

    # the summary ---------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        tr = terminalreporter
        # One entry per distinct problem of a test (a client retrying a refused host
        # makes the same one again), with how many times it happened.
        times = Counter(f for f in self.found if f[0] != WAIVED)
        counted = list(times)
        waived = [f for f in self.found if f[0] == WAIVED]
        what = " and ".join(
            w
            for w, on in (("--curlfault-leaks", self.leaks), ("--curlfault-strict", self.strict))
            if on
        )
        if not counted:
            tr.write_sep(
                "-",
                f"curlfault ({what}): no problems"
                + (f", {len(waived)} descriptor(s) waived" if waived else ""),
            )
            return
        tr.write_sep("=", f"curlfault ({what}): {len(counted)} problem(s)")
        for name, nodeid, text in counted:
            first, _, rest = text.partition("\n")
            note = " (test had already failed)" if nodeid in self._failed else ""
            tr.write_line(f"{nodeid}{note}")
            again = (
                f" ({times[(name, nodeid, text)]} times)" if times[(name, nodeid, text)] > 1 else ""
            )
            tr.write_line(f"  {TITLE.get(name, name)}: {first}{again}")
            made = [line for line in rest.splitlines() if line.startswith("    ")]
            if made:
                tr.write_line(f"    handle made at {made[0].strip()}")
        if waived:
            tests = sorted({nodeid for _, nodeid, _ in waived})
            tr.write_line(
                f"{len(waived)} descriptor(s) left open in {len(tests)} test(s) were waived by "
                f"@pytest.mark.{MARKER}: {', '.join(tests)}"
            )


def _hide_unless_own_failure(excinfo: pytest.ExceptionInfo[BaseException] | None) -> bool:
    """``__tracebackhide__`` of the teardown wrapper. A teardown error (the curlfault
    fixture's own check, a user fixture's) passes through that frame: hidden, the error is
    shown as in an untracked run, not located in this file as if the plugin had crashed. The
    wrapper's own ``pytest.fail(pytrace=False)`` shows no traceback anyway; its frame is kept
    because pytest adds "All traceback entries are hidden" under a failure with none left."""
    if excinfo is None:
        return True
    value = excinfo.value
    return not (isinstance(value, pytest.fail.Exception) and not value.pytrace)


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _counted(text: str, n: int) -> str:
    """``text`` with "(N times)" at the end of its first line when it was seen N > 1 times."""
    if n == 1:
        return text
    first, newline, rest = text.partition("\n")
    return f"{first} ({n} times){newline}{rest}"


_LONGER_FIXTURES = "curlfault-strict-longer-fixtures"


class _StrictLongerFixtures:
    """Registered only when some test is marked ``curlfault(strict=False)``: a fixture that
    outlives the test (module, class, package, session) makes strict handles even when a
    marked test sets it up, so whether a later test may reach the network never depends on
    which test happened to make the shared handle first."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        tracker = self.tracker
        if not tracker.relaxed or fixturedef.scope == "function":
            return (yield)
        tracker.relaxed = False
        try:
            return (yield)
        finally:
            tracker.relaxed = True
