"""pytest plugin: the ``curlfault`` fixture, its marker, options and report sections.

Thin by design: it builds engine objects and wires them to pytest's hooks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from curlfault import CurlFaultError, FakeNetwork, Loop, ServerError, UsageError
from curlfault._ledger import socket_inode

from . import _leaks
from ._leaks_options import FIXTURE_PROPERTY
from ._leaks_options import MARKER as LEAKS_OK

__all__ = ["curlfault", "curlfault_ca", "curlfault_loop"]

_MARKER_KEYS = {"strict", "intercept", "trust", "check", "all_used"}
_TRACE_CHOICES = ("failed", "all", "none")
network_key = pytest.StashKey[FakeNetwork]()
call_failed_key = pytest.StashKey[bool]()
teardown_note_key = pytest.StashKey[tuple[str, str]]()  # (error class, message)
traced_key = pytest.StashKey[int]()  # the call report has the trace: its connections
# The fixture's failed check: (summary line, raised at teardown rather than noted).
check_failed_key = pytest.StashKey[tuple[str, bool]]()
marker_error_key = pytest.StashKey[str]()  # a misused curlfault marker: the test fails
guard_key = pytest.StashKey["_PooledCloseGuard"]()
# The run's settings, read once at configure time rather than for every test.
strict_key = pytest.StashKey[bool]()
trace_key = pytest.StashKey[str]()
root_key = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("curlfault", "curlfault: fake servers for pycurl")
    group.addoption(
        "--curlfault-trace",
        action="store",
        dest="curlfault_trace",
        default=None,
        choices=_TRACE_CHOICES,
        help="when to add the curlfault connection trace to a test's report: "
        "failed (default), all, none.",
    )
    parser.addini(
        "curlfault_strict",
        type="bool",
        default=True,
        help="refuse and report connections to hosts no fake serves (default: true).",
    )
    parser.addini(
        "curlfault_trace",
        default="failed",
        help="default for --curlfault-trace: failed, all or none.",
    )
    _leaks.addoption(parser, group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "curlfault(strict=True, intercept=True, trust=True, check=True, all_used=False): "
        "options of the curlfault fixture for this test.",
    )
    try:
        config.stash[strict_key] = bool(config.getini("curlfault_strict"))
    except (ValueError, pytest.UsageError) as exc:
        raise pytest.UsageError(
            f"curlfault_strict is not valid: {exc}; use true or false"
        ) from None
    # The ini value is checked even when the option overrides it: a bad setting in a
    # config file would otherwise surface only on the run that drops the option.
    ini_trace = config.getini("curlfault_trace")
    if ini_trace not in _TRACE_CHOICES:
        raise pytest.UsageError(
            f"curlfault_trace = {ini_trace!r} is not valid; use one of {', '.join(_TRACE_CHOICES)}"
        )
    config.stash[trace_key] = config.getoption("curlfault_trace") or ini_trace
    config.stash[root_key] = str(config.rootpath)
    _leaks.configure(config)


# pycurl closes connections pooled in a CurlMulti/CurlShare in C when that handle is closed
# and says so with this RuntimeWarning, because it cannot call the closesocket callback
# then. Nothing is lost: the ledger checks /proc/self/fd, not the callback count. Under
# filterwarnings=error the warning would fail an innocent test (tornado's client.close()
# raises it), so tests that use the curlfault fixture ignore exactly this message. A run
# with --curlfault-leaks or --curlfault-strict needs no filter: tracked handles get no
# closesocket callback unless they set one of their own (then the warning is pycurl's).
POOLED_CLOSE_MESSAGE = "closesocket_callback failed to acquire thread"
POOLED_CLOSE_WARNING = f"ignore:{POOLED_CLOSE_MESSAGE}:RuntimeWarning"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misused = False
    for item in items:
        if item.get_closest_marker("curlfault") is not None and marker_error(item):
            misused = True
        if "curlfault" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.filterwarnings(POOLED_CLOSE_WARNING))
            _set_up_first(item)
    if misused and not config.pluginmanager.has_plugin(_MisusedMarkers.name):
        config.pluginmanager.register(_MisusedMarkers(), _MisusedMarkers.name)


def marker_error(item: pytest.Item) -> str:
    """What is wrong with ``item``'s curlfault markers ("" if nothing), noted for setup.

    A misused marker fails its own test at setup, not the run at collection: a usage error
    raised while xdist's workers collect becomes an INTERNALERROR that hides the message,
    and a test deselected with ``-k`` would still stop every other."""
    error = item.stash.get(marker_error_key, None)
    if error is None:
        try:
            marker_options(item, True)
            error = ""
        except pytest.UsageError as exc:
            error = str(exc)
        item.stash[marker_error_key] = error
    return error


class _MisusedMarkers:
    """Registered only when a collected test has a misused marker: it fails at setup."""

    name = "curlfault-misused-markers"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        __tracebackhide__ = True  # the report shows the message, not this hook
        error = item.stash.get(marker_error_key, "")
        if error:
            raise UsageError(error)


def _set_up_first(item: pytest.Item) -> None:
    """Set ``curlfault`` up before the test's other function-scoped fixtures.

    pytest sets a test's fixtures up in the order of its closure: wider scopes first, then
    autouse fixtures, then the test's arguments as written. A handle that an argument
    fixture listed before ``curlfault`` made was not routed: a strict network did not refuse
    it and its fake host name went to the system resolver. Wider scopes stay before it
    (their handles outlive the test: ``attach()`` routes them), and so do autouse fixtures,
    which usually wrap the whole test (a descriptor or thread count, a timer) and must see
    the network open and close inside them. ``item.fixturenames`` is the list pytest walks;
    scopes and autouse come from private attributes (``_fixtureinfo``, pytest 7.4 to 9, and
    ``FixtureDef._autouse``, pytest 8.4 on): without them the order is left as it is.
    """
    names: list[str] = item.fixturenames  # type: ignore[attr-defined]
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", None)
    if not isinstance(defs, dict):
        return
    for name in names:
        if name == "curlfault":
            return  # already before every function-scoped fixture it should precede
        fixturedefs = defs.get(name)
        if not fixturedefs or getattr(fixturedefs[-1], "scope", None) != "function":
            continue
        flags = [getattr(fd, "_autouse", None) for fd in fixturedefs]
        if None in flags:
            return  # an older pytest: autouse fixtures cannot be told apart
        # Overridden without autouse=True, an autouse fixture's name is still auto-used.
        if not any(flags):
            names.remove("curlfault")
            names.insert(names.index(name), "curlfault")
            return


def marker_options(node: pytest.Item, default_strict: bool) -> dict[str, bool]:
    """The ``curlfault`` marker's keyword options for ``node``, validated."""
    opts = {
        "strict": default_strict,
        "intercept": True,
        "trust": True,
        "check": True,
        "all_used": False,
    }
    # node.iter_markers("curlfault") without its generators (this runs for every test that
    # uses the fixture), applied in reverse so that a closer marker wins.
    marks = []
    parent: Any = node
    while parent is not None:
        for mark in parent.own_markers:
            if mark.name == "curlfault":
                marks.append(mark)
        parent = parent.parent
    for mark in reversed(marks):
        if mark.args:
            raise pytest.UsageError(
                f"@pytest.mark.curlfault takes keyword arguments only, got {mark.args!r} "
                f"on {node.nodeid}"
            )
        for key, value in mark.kwargs.items():
            if key not in _MARKER_KEYS:
                raise pytest.UsageError(
                    f"@pytest.mark.curlfault got unknown option {key!r} on {node.nodeid}; "
                    f"known options: {', '.join(sorted(_MARKER_KEYS))}"
                )
            if not isinstance(value, bool):
                raise pytest.UsageError(
                    f"@pytest.mark.curlfault({key}=...) must be True or False, got {value!r} "
                    f"on {node.nodeid}"
                )
            opts[key] = value
    return opts


# The session's loop once its fixture has been set up, for the ``curlfault`` fixture to take
# without declaring ``curlfault_loop`` as an argument: pytest pays about 17 us per test for
# each session fixture a function fixture depends on (it resolves it and registers a
# finalizer on it every time). The first test asks pytest for the fixture; the rest read it
# here. Gone when the fixture is torn down.
loop_key = pytest.StashKey[Loop]()


@pytest.fixture(scope="session")
def curlfault_loop(pytestconfig: pytest.Config) -> Iterator[Loop]:
    """The session's curlfault reactor: one helper thread for every fake, started on first use."""
    loop = Loop(name="curlfault-loop")
    pytestconfig.stash[loop_key] = loop
    try:
        yield loop
    finally:
        if pytestconfig.stash.get(loop_key, None) is loop:
            del pytestconfig.stash[loop_key]
    loop.stop()
    if loop.errors:
        errors = ", ".join(repr(e) for e in loop.errors)
        raise ServerError(f"the curlfault loop raised outside any test: {errors}")


@pytest.fixture(scope="session")
def curlfault_ca() -> Any:
    """The session's ``trustme.CA``: it signs every fake HTTPS certificate in this session.

    Handles routed through a fake network trust it by default; a test that checks its own
    trust settings can write ``curlfault_ca.cert_pem`` wherever its client looks.
    """
    import trustme

    return trustme.CA()


# The fixture takes no ``request`` argument: pytest 9 builds a new FixtureDef (with an
# ``inspect.signature`` call) each time a fixture asks for ``request``, which measured
# +60 us per test, a fifth of what the fixture costs in all. pytest hands the same request
# to ``pytest_fixture_setup`` right before it calls the fixture function, so it is taken
# from there.
_handover: list[pytest.FixtureRequest] = []


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    if fixturedef.argname == "curlfault" and getattr(fixturedef.func, "__module__", "") == __name__:
        _handover.append(request)


def _own_request() -> pytest.FixtureRequest:
    if not _handover:
        raise RuntimeError(
            "the curlfault fixture was set up without pytest_fixture_setup seeing it (another "
            "plugin's hook answered for it first); please report this with your plugin list"
        )
    request = _handover[-1]
    _handover.clear()
    return request


@pytest.fixture
def curlfault() -> Iterator[FakeNetwork]:
    """A strict, intercepting ``curlfault.FakeNetwork`` for this test.

    Every ``pycurl.Curl()`` made during the test is routed through it; connections to hosts
    it does not serve are refused (CURLcode 7) and reported. At teardown it checks that every
    descriptor handed to libcurl was closed exactly once, that every request matched a route,
    and that nothing raised in a callback or a fake server. Options:
    ``@pytest.mark.curlfault(strict=..., intercept=..., trust=..., check=..., all_used=...)``.

        def test_items(curlfault):
            api = curlfault.http("api.test")
            api.get("/items").respond(200, json=[1, 2])
            assert my_client.list_items() == [1, 2]
    """
    request = _own_request()
    if hasattr(request, "param"):
        raise UsageError(
            f"the curlfault fixture takes no parameter (got {request.param!r} from an "
            "indirect parametrization); set its options per case with "
            "pytest.param(..., marks=pytest.mark.curlfault(strict=False))"
        )
    if "curlfault" not in getattr(request.node, "fixturenames", ()):
        _ignore_pooled_close_warning()
    opts = marker_options(request.node, request.config.stash[strict_key])
    loop = request.config.stash.get(loop_key, None)
    if loop is None:
        loop = request.getfixturevalue("curlfault_loop")
    net = FakeNetwork(
        strict=opts["strict"],
        loop=loop,
        ca=lambda: request.getfixturevalue("curlfault_ca"),
        label=request.node.nodeid,
        trust=opts["trust"],
    )
    net._stack_root = request.config.stash.get(root_key, None)  # leak stacks: rootdir-relative
    net.spelled = "curlfault"  # hints say curlfault.http(...), as the test writes it
    node = request.node
    node.stash[network_key] = net
    _reports_on(request.config)
    marks_at_setup = len(node.own_markers)
    try:
        if opts["intercept"]:
            with net.intercept():
                yield net
        else:
            yield net
        late = [m for m in node.own_markers[marks_at_setup:] if m.name == "curlfault"]
        if opts["check"]:
            # @pytest.mark.curlfault_leaks_ok: a handle kept on purpose. The network closes
            # now, so no scope can be checked later: its open descriptors are left out.
            leaks = node.get_closest_marker(LEAKS_OK) is None
            if node.stash.get(call_failed_key, False) or late:
                # The test already failed (or fails below): report what the network saw,
                # but do not turn one failure into two.
                try:
                    net.check(leaks=leaks, all_used=opts["all_used"])
                except CurlFaultError as exc:
                    node.stash[teardown_note_key] = (type(exc).__name__, str(exc))
                    node.stash[check_failed_key] = (_problem_line(exc), False)
            else:
                __tracebackhide__ = True
                try:
                    net.check(leaks=leaks, all_used=opts["all_used"])
                except CurlFaultError as exc:
                    node.stash[check_failed_key] = (_problem_line(exc), True)
                    raise
        if late:
            __tracebackhide__ = True
            raise UsageError(
                f"@pytest.mark.curlfault{_marker_text(late[0])} was applied to "
                f"{node.nodeid} after the curlfault fixture was set up (request.applymarker() "
                "in a fixture set up after it, or in the test), so it changed nothing: apply "
                "it in an autouse fixture, which is set up before curlfault, or mark the test"
            )
    finally:
        net.close()
        _guard_outliving_handles(request.config, net)


def _guard_outliving_handles(config: pytest.Config, net: FakeNetwork) -> None:
    """Connections the network's handles still hold open after it closed (a client dropped
    without close() under a ``curlfault_leaks_ok`` marker, a module-level client): when
    their CurlMulti or CurlShare is closed or collected later, in some other test, pycurl
    warns that it closed the pooled connection in C. Later tests ignore that warning too,
    for as long as one of those descriptors is open."""
    if not net.ledger.has_unclosed:
        return
    still_open = [(r.fd, r.inode) for r in net.ledger.unclosed() if socket_inode(r.fd) == r.inode]
    if not still_open:
        return
    guard = config.stash.get(guard_key, None)
    if guard is None:
        guard = config.stash[guard_key] = _PooledCloseGuard()
        config.pluginmanager.register(guard, "curlfault-pooled-close-guard")
    guard.open += still_open


class _PooledCloseGuard:
    """Registered once a connection outlives its test's network (see
    _guard_outliving_handles): a hook that costs every later test, so most sessions never
    have it."""

    def __init__(self) -> None:
        self.open: list[tuple[int, int]] = []  # (fd, inode) of the outliving connections

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Inside the catch_warnings() that spans the test: the filter ends with it.
        if self.open:
            self.open = [(fd, ino) for fd, ino in self.open if socket_inode(fd) == ino]
            if self.open:
                _ignore_pooled_close_warning()


def _marker_text(mark: Any) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in mark.kwargs.items()) + ")"


def _problem_line(exc: CurlFaultError) -> str:
    """One line for the --curlfault-leaks/--curlfault-strict summary: the first problem of
    a failed check(), how often it recurred, and how many others there were."""
    problems = getattr(exc, "problems", None) or [exc]
    first = problems[0]
    kinds = {(type(p), str(p)) for p in problems}
    same = sum(1 for p in problems if type(p) is type(first) and str(p) == str(first))
    text = f"{type(first).__name__}: {_first_line(str(first))}"
    if same > 1:
        text += f" (the same problem {same} times)"
    if len(kinds) > 1:
        text += f" (and {len(kinds) - 1} more problem(s): see the test's report)"
    return text


def _ignore_pooled_close_warning() -> None:
    """The pooled-close filter for a test that asked for the fixture with getfixturevalue():
    collection gave it no filterwarnings mark. pytest reads those marks once, when it enters
    the one catch_warnings() that spans the test's setup, call and teardown (pytest 7.4 to
    9.x), so a mark added now would never be read; a filter added now lasts until the end of
    the test's teardown and goes with that catch_warnings()."""
    warnings.filterwarnings("ignore", POOLED_CLOSE_MESSAGE, RuntimeWarning)


class _Reports:
    """What the ``curlfault`` fixture adds to its test's reports. Registered when the fixture
    is first set up in a session: every hook implementation costs every test (pluggy's
    dispatch of a wrapper, three times per test), and most suites that have curlfault
    installed run most of their tests without it."""

    NAME = "curlfault-reports"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        net = item.stash.get(network_key, None)
        if net is None:
            return report  # a test without the curlfault fixture: nothing to add
        return _add_to_report(item, call, report, net)


def _misuse(call: pytest.CallInfo[None]) -> bool:
    """Whether the call failed with curlfault's UsageError (a test's own declaration)."""
    return call.excinfo is not None and call.excinfo.errisinstance(UsageError)


def _first_line(text: str) -> str:
    return text.partition("\n")[0]


def _reports_on(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(_Reports.NAME):
        config.pluginmanager.register(_Reports(), _Reports.NAME)


def _add_to_report(
    item: pytest.Item, call: pytest.CallInfo[None], report: Any, net: FakeNetwork
) -> Any:
    when = report.when
    stash = item.stash
    if when == "setup":
        if report.failed:
            # A fixture set up after the network failed: the test's error is that one, and
            # the teardown check reports what it finds as a note, not as a second error.
            stash[call_failed_key] = True
        return report  # the trace is added to the call and teardown reports
    trace = item.config.stash[trace_key]
    if when == "call":
        # An xfailed call did fail: its report says "skipped", its excinfo says otherwise.
        stash[call_failed_key] = report.failed or call.excinfo is not None
        if trace == "all" or (
            trace == "failed"
            and report.failed
            # A curlfault usage error before any connection: the error says it all, and the
            # trace's "no connections" hint (a handle that bypassed the network) misleads.
            and (net.connections or not _misuse(call))
        ):
            report.sections.append(("curlfault connections (call)", net.trace()))
            stash[traced_key] = len(net.connections)
        return report
    note = stash.get(teardown_note_key, None)
    if note is not None:
        report.sections.append(
            ("curlfault problems at teardown (test had already failed)", note[1])
        )
        del stash[teardown_note_key]
    # The fixture's own failed check, as the fixture noted it (not guessed from the
    # teardown's exception, which may be another fixture's or a group of several): for the
    # --curlfault-leaks/--curlfault-strict summary (on the xdist controller too) and JUnit.
    failed_check = stash.get(check_failed_key, None)
    own_failure = False
    if failed_check is not None:
        del stash[check_failed_key]
        line, own_failure = failed_check
        report.user_properties.append((FIXTURE_PROPERTY, line))
    # Once per phase that has something new: -rP prints a passing test's call and teardown
    # sections one after the other. The teardown's is added when it failed, or when
    # connections were made after the call (a fixture's teardown logging out). A failed
    # check() already carries the trace in its message.
    traced = stash.get(traced_key, None)
    if traced is not None:
        del stash[traced_key]
    grew = traced is None or len(net.connections) > traced
    if not own_failure and ((trace == "all" and grew) or (trace != "none" and report.failed)):
        report.sections.append(("curlfault connections (teardown)", net.trace()))
    # Items live until the session ends: do not keep each test's network (its records,
    # request bodies) that long.
    del stash[network_key]
    return report
