"""``pytest --curlfault-leaks``, driven through ``pytester`` against a real loopback server.

Every inner test directory gets ``loopback.py`` (tests/loopback_server.py), a session
``server`` fixture and a ``get()`` helper. Inner tests that keep a handle on purpose close it
in a last test, so the inner session leaves no descriptor behind for our own leak check.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

# Imported once, outside every inner run (see test_plugin.py: cryptography cannot be
# imported twice in one process, and pytester drops what an inner run imported).
import trustme  # noqa: F401
from pytest_curlfault._leaks import parse_handle_scope
from pytester_support import QUIET, report, section, write_inner

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = (Path(__file__).with_name("loopback_server.py")).read_text(encoding="utf-8")

HELPER = '''
import io
import warnings

import pycurl
import pytest

from curlfault import InterceptedCurl
from curlfault._intercept import TrackedCurl

KEEP = []


def get(url, curl=None, **opts):
    """One transfer on a fresh (or the given) handle: (CURLcode, body)."""
    code, _status, body = _transfer(url, curl, opts)
    return code, body


def kept(url):
    """A handle that outlives the test (closed by close_kept())."""
    c = pycurl.Curl()
    KEEP.append(c)
    assert get(url, curl=c) == (0, b"hello")
    return c


def close_kept():
    while KEEP:
        KEEP.pop().close()
'''

CONFTEST = """
import pytest
from loopback import LoopbackServer


@pytest.fixture(scope="session")
def server():
    with LoopbackServer() as srv:
        yield srv
"""


def setup_dir(pytester: pytest.Pytester, conftest: str = "") -> None:
    pytester.makepyfile(loopback=LOOPBACK)
    pytester.makeconftest(CONFTEST + textwrap.dedent(conftest))


def make_tests(
    pytester: pytest.Pytester, source: str, name: str = "test_inner", conftest: str = ""
) -> None:
    setup_dir(pytester, conftest)
    write_inner(pytester, name, HELPER, textwrap.dedent(source))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, "-W", "error", *args)


def properties(
    result: pytest.RunResult, nodeid_part: str, when: str = "teardown"
) -> list[tuple[str, Any]]:
    props = report(result, nodeid_part, when).user_properties
    return [(k, v) for k, v in props if k.startswith("curlfault_")]


LEAKY = """
def test_clean(server):
    assert get(server.url) == (0, b"hello")

def test_leaky(server):
    kept(server.url)

def test_zz_close():
    close_kept()
"""


# the basic report -----------------------------------------------------------------------


def test_leaky_test_errors_at_teardown_with_url_host_and_stack(pytester: pytest.Pytester) -> None:
    make_tests(pytester, LEAKY)
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_leaky _*",
            "curlfault: test_inner.py::test_leaky: 1 descriptor left open",
            "1. LeakError: descriptor never closed: fd * (inode *) tcp to 127.0.0.1:*, "
            "url http://127.0.0.1:*/, opened in test_inner.py::test_leaky",
            "  the handle was made at:",
            "    test_inner.py:* in kept",
            "    test_inner.py:* in test_leaky",
            "Close each handle (curl.close()) by the end of the test's teardown*",
        ]
    )
    # pytest's and pluggy's frames between the test and the handle are left out
    result.stdout.no_fnmatch_line("*pluggy/_*")
    result.stdout.no_fnmatch_line("*_pytest/*")
    # the error is the message alone (no traceback, and no note that it was hidden)
    result.stdout.no_fnmatch_line("*traceback entries are hidden*")
    result.stdout.fnmatch_lines(
        [
            "*= curlfault (--curlfault-leaks): 1 problem(s) =*",
            "test_inner.py::test_leaky",
            "  LeakError: descriptor never closed: fd *url http://127.0.0.1:*",
            "    handle made at test_inner.py:* in kept",
        ]
    )
    ((name, text),) = properties(result, "test_leaky")
    assert name == "curlfault_leak"
    assert text.startswith("descriptor never closed: fd ")
    assert properties(result, "test_clean") == []


def test_problems_reach_a_junit_xml_report(pytester: pytest.Pytester) -> None:
    make_tests(pytester, LEAKY)
    result = run(pytester, "--curlfault-leaks", "--junitxml=report.xml")
    result.assert_outcomes(passed=3, errors=1)
    xml = (pytester.path / "report.xml").read_text(encoding="utf-8")
    assert '<property name="curlfault_leak" value="descriptor never closed: fd ' in xml


def test_without_the_option_nothing_is_tracked(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        LEAKY
        + """
def test_not_replaced():
    assert not issubclass(pycurl.Curl, InterceptedCurl)
""",
    )
    result = run(pytester)
    result.assert_outcomes(passed=4)
    result.stdout.no_fnmatch_line("*curlfault (--*")


def test_clean_run_says_so_in_one_line(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_clean(server):
            assert get(server.url) == (0, b"hello")
            assert pycurl.Curl is TrackedCurl
        """,
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*- curlfault (--curlfault-leaks): no problems -*"])


def test_failed_test_gets_a_note_not_a_second_error(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_fails(server):
            c = kept(server.url)
            assert False, "its own failure"

        def test_zz_close():
            close_kept()
        """,
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
    result.stdout.fnmatch_lines(
        [
            "*its own failure*",
            "*- curlfault problems at teardown (test had already failed) -*",
            "LeakError: descriptor never closed: fd *",
            "*= curlfault (--curlfault-leaks): 1 problem(s) =*",
            "test_inner.py::test_fails (test had already failed)",
        ]
    )


def test_xfailed_test_that_leaks_stays_xfailed_and_the_leak_is_listed(
    pytester: pytest.Pytester,
) -> None:
    """An expected failure is a failure too: its leak is reported, not raised as an error
    that would turn the xfail into a failure."""
    make_tests(
        pytester,
        """
        @pytest.mark.xfail(reason="known bug")
        def test_known_bug(server):
            kept(server.url)
            assert False, "the known bug"

        def test_zz_close():
            close_kept()
        """,
    )
    for args in ((), ("-n", "2")):  # the summary is the controller's under xdist
        result = run(pytester, "--curlfault-leaks", *args)
        result.assert_outcomes(passed=1, xfailed=1)
        result.stdout.no_fnmatch_line("*ERROR at teardown*")
        result.stdout.fnmatch_lines(
            [
                "*= curlfault (--curlfault-leaks): 1 problem(s) =*",
                "test_inner.py::test_known_bug (test had already failed)",
            ]
        )
    assert [k for k, _ in properties(result, "test_known_bug")] == ["curlfault_leak"]


# pytest-rerunfailures (and pytest-forked) run the three phases with log=False and log
# their reports only after the teardown; this conftest does the same.
LOG_AFTER_TEARDOWN = """
from _pytest.runner import runtestprotocol


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for rep in reports:
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


def test_failure_known_before_its_report_is_logged_gets_no_second_error(
    pytester: pytest.Pytester,
) -> None:
    """Whether a test already failed is known from the phase itself, not from its logged
    report: a runner that logs the reports after the teardown (pytest-rerunfailures) must
    not get a second error for the same test, and the refusal keeps its section."""
    make_tests(
        pytester,
        """
        def test_fails(server):
            kept(server.url)
            assert False, "its own failure"

        def test_refused(server):
            assert get("http://192.0.2.1:9/")[0] == 7
            assert False, "failed after a refusal"

        def test_zz_close():
            close_kept()
        """,
        conftest="import pytest\n" + LOG_AFTER_TEARDOWN,
    )
    result = run(
        pytester, "--curlfault-leaks", "--curlfault-strict", "--curlfault-allow-hosts=127.0.0.1"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
    assert "curlfault: refused by --curlfault-strict (call)" in dict(
        report(result, "test_refused", "call").sections
    )
    result.stdout.fnmatch_lines(["*= curlfault (--curlfault-leaks*): 2 problem(s) =*"])


def test_a_setup_hook_that_fails_before_ours_keeps_the_tests_attribution(
    pytester: pytest.Pytester,
) -> None:
    """The label is the test's from its log start: a descriptor a module fixture's finalizer
    leaves open during the teardown of a test whose setup another plugin failed before any
    plain setup hook ran (a setup wrapper) is that test's, not "opened in no test"."""
    make_tests(pytester, "", name="test_zz_last")
    with open(pytester.path / "test_zz_last.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef test_last():\n    close_kept()\n")
    sub = pytester.mkdir("sub")
    (sub / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.hookimpl(wrapper=True)
            def pytest_runtest_setup(item):
                if item.name == "test_2":
                    raise RuntimeError("another plugin's setup hook failed")
                return (yield)
            """
        ),
        encoding="utf-8",
    )
    (sub / "test_sub.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from test_zz_last import kept

            @pytest.fixture(scope="module")
            def leaks_at_module_end(server):
                yield
                kept(server.url)

            def test_1(leaks_at_module_end):
                pass

            def test_2():
                pass
            """
        ),
        encoding="utf-8",
    )
    result = run(pytester, "--curlfault-leaks", "-p", "no:randomly", "sub", "test_zz_last.py")
    result.assert_outcomes(passed=2, errors=1)  # test_2's own setup error only
    assert [k for k, _ in properties(result, "sub/test_sub.py::test_2")] == ["curlfault_leak"]
    assert properties(result, "test_last") == []
    result.stdout.fnmatch_lines(["sub/test_sub.py::test_2 (test had already failed)"])


def test_handles_closed_by_gc_or_fixtures_are_not_leaks(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture
        def handle():
            c = pycurl.Curl()
            yield c
            c.close()  # fixture teardown runs before the check

        def test_fixture_closes(server, handle):
            assert get(server.url, curl=handle) == (0, b"hello")

        def test_dropped(server):
            c = pycurl.Curl()
            get(server.url, curl=c)  # never closed: freed when the test returns

        def test_cycle(server):
            box = {"c": pycurl.Curl()}
            box["box"] = box  # freed by the garbage collection the check runs
            get(server.url, curl=box["c"])
        """,
    )
    run(pytester, "--curlfault-leaks").assert_outcomes(passed=3)


# waivers --------------------------------------------------------------------------------


def test_marker_waives_one_test(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.curlfault_leaks_ok(reason="a pool on purpose")
        def test_waived(server):
            kept(server.url)

        def test_leaky(server):
            kept(server.url)

        def test_zz_close():
            close_kept()
        """,
    )
    result = run(pytester, "--curlfault-leaks", "--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaky*"])
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_waived*")
    result.stdout.fnmatch_lines(
        [
            "1 descriptor(s) left open in 1 test(s) were waived by "
            "@pytest.mark.curlfault_leaks_ok: test_inner.py::test_waived"
        ]
    )
    ((name, text),) = properties(result, "test_waived")
    assert name == "curlfault_leak_waived"
    assert text.endswith("(a pool on purpose)")


MODULE_SCOPED = """
@pytest.mark.curlfault_leaks_ok(scope="module")
def test_opens(server):
    kept(server.url)

def test_middle(server):
    assert get(server.url)[0] == 0

def test_last_of_module():
    {close}
"""

NEXT_MODULE = """
from test_a import close_kept

def test_other_module():
    close_kept()
"""


def test_module_scope_is_checked_at_the_end_of_the_module(pytester: pytest.Pytester) -> None:
    make_tests(pytester, MODULE_SCOPED.format(close="pass"), name="test_a")
    pytester.makepyfile(test_b=NEXT_MODULE)
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_last_of_module _*",
            "curlfault: test_a.py::test_last_of_module: 1 descriptor left open",
            "1. LeakError: descriptor still open at the end of module test_a.py (module scope "
            "from @pytest.mark.curlfault_leaks_ok): fd *opened in test_a.py::test_opens",
        ]
    )


def test_module_scope_closed_within_the_module_is_fine(pytester: pytest.Pytester) -> None:
    make_tests(pytester, MODULE_SCOPED.format(close="close_kept()"), name="test_a")
    pytester.makepyfile(test_b=NEXT_MODULE)
    run(pytester, "--curlfault-leaks").assert_outcomes(passed=4)


SESSION_CLIENT = """
@pytest.fixture(scope="session")
def client(server):
    c = pycurl.Curl()
    yield c
    {close}
"""

USES_CLIENT = """
def test_one(server, client):
    assert get(server.url, curl=client) == (0, b"hello")

def test_two(server, client):
    assert get(server.url, curl=client) == (0, b"hello")

def test_three():
    pass
"""


def test_session_fixture_handle_blames_the_first_test_without_the_ini(
    pytester: pytest.Pytester,
) -> None:
    make_tests(
        pytester, USES_CLIENT, conftest="import pycurl\n" + SESSION_CLIENT.format(close="c.close()")
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_one*",
            "*opened in test_inner.py::test_one",
            "  the handle was made at:",
            "    conftest.py:* in client",
        ]
    )


def test_ini_handle_scopes_defer_a_session_fixtures_handle(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncurlfault_handle_scopes =\n    session conftest.py::client\n")
    make_tests(
        pytester, USES_CLIENT, conftest="import pycurl\n" + SESSION_CLIENT.format(close="c.close()")
    )
    run(pytester, "--curlfault-leaks", "--strict-config").assert_outcomes(passed=3)


def test_ini_handle_scopes_still_check_at_the_end_of_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncurlfault_handle_scopes =\n    session conftest.py\n")
    conftest = "import pycurl\nLEFT = []\n" + SESSION_CLIENT.format(close="LEFT.append(c)")
    make_tests(
        pytester,
        USES_CLIENT
        + """
def test_zz_last(request):
    # after the session fixture's teardown (the last test's teardown), close what it left
    import conftest
    request.addfinalizer(lambda: [c.close() for c in conftest.LEFT])
""",
        conftest=conftest,
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_zz_last*",
            "1. LeakError: descriptor still open at the end of the session (session scope "
            "from curlfault_handle_scopes: session conftest.py::*): fd *"
            "opened in test_inner.py::test_one",
        ]
    )


@pytest.mark.parametrize(
    ("fixture_scope", "suggested"),
    [("class", "module"), ("module", "module"), ("session", "session")],
)
def test_leak_error_suggests_the_scope_of_the_fixture_that_made_the_handle(
    pytester: pytest.Pytester, fixture_scope: str, suggested: str
) -> None:
    # The handle is made in the fixture and opens its connection in test_one, whose teardown
    # finds it open: the suggestion names the fixture with a scope that outlives the
    # fixture's own (class -> module), and the suggested line defers the check.
    conftest = f"""
import pycurl

@pytest.fixture(scope="{fixture_scope}")
def client(server):
    c = pycurl.Curl()
    yield c
    c.close()
"""
    source = """
        class TestClient:
            def test_one(self, server, client):
                assert get(server.url, curl=client) == (0, b"hello")

            def test_two(self, server, client):
                assert get(server.url, curl=client) == (0, b"hello")

        def test_three():
            pass
        """
    make_tests(pytester, source, conftest=conftest)
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of TestClient.test_one*",
            f'*mark the test @pytest.mark.curlfault_leaks_ok(scope="{suggested}"), or add the '
            f"line '{suggested} conftest.py::client' to the curlfault_handle_scopes ini setting.",
        ]
    )
    pytester.makeini(f"[pytest]\ncurlfault_handle_scopes = {suggested} conftest.py::client\n")
    run(pytester, "--curlfault-leaks", "--strict-config").assert_outcomes(passed=3)


def test_leak_error_of_a_function_fixtures_handle_says_to_close_it_there(
    pytester: pytest.Pytester,
) -> None:
    # pytest keeps a fixture's value until the test's teardown is over: a client returned by
    # a function fixture and never closed is still open at the check, the same client made
    # in the test is not (docs/leaks.md, "Handles held by fixtures").
    conftest = """
import pycurl

class Client:
    def __init__(self, url):
        self.url = url
        self.curl = pycurl.Curl()

@pytest.fixture
def client(server):
    return Client(server.url)
"""
    source = """
        from conftest import Client

        def test_fixture_client(client):
            assert get(client.url, curl=client.curl) == (0, b"hello")

        def test_local_client(server):
            client = Client(server.url)
            assert get(client.url, curl=client.curl) == (0, b"hello")
        """
    make_tests(pytester, source, conftest=conftest)
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_fixture_client*",
            "    conftest.py:* in __init__",
            "    conftest.py:* in client",
            "Close each handle (curl.close()) by the end of the test's teardown: in the test, "
            "or in the teardown of the function-scoped fixture that made it. A CurlMulti or "
            "CurlShare that the handle was added to keeps its connections open after "
            "curl.close(): close it too (multi.close(), share.close()). This handle was "
            "made in the function-scoped fixture conftest.py::client: pytest holds a fixture's "
            "value until the test's teardown is over, so close the handle in that fixture, "
            "after a yield.",
        ]
    )
    result.stdout.no_fnmatch_line("*curlfault_handle_scopes*")


LIBRARY = """
import pycurl


def make(depth=7):
    # deeper than the six frames recorded for a handle
    return make(depth - 1) if depth else pycurl.Curl()
"""


@pytest.mark.parametrize("where", ["site-packages", "outside"])
def test_leak_error_suggests_the_users_own_code_not_a_library_path(
    pytester: pytest.Pytester, where: str
) -> None:
    # A handle a library makes: the suggested line names the innermost frame of the user's
    # own code (under the rootdir, not in site-packages), never this machine's path to the
    # library; when every recorded frame is the library's, a glob that holds anywhere.
    if where == "site-packages":
        lib = pytester.mkdir("venv").joinpath("lib", "site-packages")
        lib.mkdir(parents=True)
        (lib / "fakelib.py").write_text(
            "import pycurl\n\ndef make():\n    return pycurl.Curl()\n", encoding="utf-8"
        )
        suggested = "session test_inner.py::test_library"
    else:
        lib = pytester.path.parent / f"{pytester.path.name}-lib" / "fakelib"
        lib.mkdir(parents=True)
        (lib / "fakelib.py").write_text(LIBRARY, encoding="utf-8")
        suggested = "session */fakelib/fakelib.py::make"
    pytester.syspathinsert(lib)
    source = """
        import fakelib

        def test_library(server):
            c = fakelib.make()
            KEEP.append(c)
            assert get(server.url, curl=c) == (0, b"hello")

        def test_zz_close():
            close_kept()
        """
    make_tests(pytester, source)
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [f"*or add the line '{suggested}' to the curlfault_handle_scopes ini setting."]
    )
    result.stdout.no_fnmatch_line(f"*add the line '*{lib}*")
    # the suggested line works: the handle is checked at the end of the session instead
    pytester.makeini(f"[pytest]\ncurlfault_handle_scopes = {suggested}\n")
    run(pytester, "--curlfault-leaks", "--strict-config").assert_outcomes(passed=2)


def test_leak_error_suggests_the_caller_of_a_constructor(pytester: pytest.Pytester) -> None:
    # The user's own client class makes its handle in __init__: a line naming __init__
    # would exempt every client; the caching function that made this one is named instead.
    pytester.makepyfile(
        client="""
        import pycurl

        class Client:
            def __init__(self):
                self.curl = pycurl.Curl()

        _CACHE = {}

        def cached():
            if "c" not in _CACHE:
                _CACHE["c"] = Client()
            return _CACHE["c"]

        def drop():
            _CACHE.pop("c").curl.close()
        """
    )
    make_tests(
        pytester,
        """
        import client

        def test_cached(server):
            assert get(server.url, curl=client.cached().curl) == (0, b"hello")

        def test_zz_close():
            client.drop()
        """,
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*or add the line 'session client.py::cached' to the *"])


def test_parse_handle_scope() -> None:
    assert parse_handle_scope("session tests/conftest.py::client") == (
        "session",
        "tests/conftest.py::client",
    )
    assert parse_handle_scope("  module   src/pool.py ") == ("module", "src/pool.py::*")
    for bad in ("session", "function tests/x.py", "session a b", "Session x"):
        with pytest.raises(pytest.UsageError, match="curlfault_handle_scopes line"):
            parse_handle_scope(bad)


@pytest.mark.parametrize(
    ("ini", "marker", "message"),
    [
        (
            "curlfault_handle_scopes = forever x.py",
            "",
            "*curlfault_handle_scopes line 'forever x.py'*",
        ),
        ("", "curlfault_leaks_ok('module')", "*takes keyword arguments only*on *::test_x"),
        ("", "curlfault_leaks_ok(scope='class')", "*must be 'module' or 'session'*on *::test_x"),
        ("", "curlfault_leaks_ok(scope='module', why='x')", "*unknown option(s) why on *::test_x*"),
        ("", "curlfault_leaks_ok(reason=1)", "*reason=...) must be a str, got 1 on *::test_x"),
    ],
)
def test_misuse_is_a_usage_error(
    pytester: pytest.Pytester, ini: str, marker: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    make_tests(pytester, f"@pytest.mark.{marker or 'skip'}\ndef test_x():\n    pass\n")
    result = run(pytester)  # validated whether or not tracking is on
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


# pycurl's pooled-close warning under filterwarnings = error --------------------------------

MULTI = """
import os


def run_multi(url, n=2, close=None, keep=None):
    m = pycurl.CurlMulti()
    for _ in range(n):
        c = pycurl.Curl()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
        if close is not None:
            c.setopt(pycurl.CLOSESOCKETFUNCTION, close)
            keep.append(c)  # pycurl calls into it when the multi closes its pool
        m.add_handle(c)
        while m.perform()[1]:
            m.select(0.05)
        m.remove_handle(c)
        c.close()
    return m

def test_multi_close_with_pooled_connections(server):
    run_multi(server.url).close()

def test_no_pooled_close_warning_without_a_close_callback(server):
    m = run_multi(server.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.close()
    assert [str(w.message) for w in caught] == []

def test_own_close_callback_makes_pycurl_warn(server):
    def own_close(fd):
        os.close(fd)
        return 0

    m = run_multi(server.url, close=own_close, keep=[])
    with pytest.warns(RuntimeWarning, match="closesocket_callback failed to acquire thread"):
        m.close()

def test_share_close_with_pooled_connections(server):
    share = pycurl.CurlShare()
    share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
    for _ in range(2):
        c = pycurl.Curl()
        c.setopt(pycurl.SHARE, share)
        assert get(server.url, curl=c) == (0, b"hello")
        c.close()
    share.close()

def test_async_curl_multi(server):
    import asyncio

    async def main():
        async with pycurl.AsyncCurlMulti() as multi:
            for _ in range(2):
                c = pycurl.Curl()
                c.setopt(pycurl.URL, server.url)
                c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
                await multi.perform(c)
                c.close()

    asyncio.run(main())

def test_other_runtime_warnings_still_fail():
    warnings.warn("something else", RuntimeWarning)
"""


@pytest.mark.parametrize("how", ["ini", "cmdline"])
@pytest.mark.parametrize("tracked", [True, False], ids=["leaks", "untracked"])
def test_tracking_adds_no_pooled_close_warning(
    pytester: pytest.Pytester, how: str, tracked: bool
) -> None:
    # Tracked handles get no closesocket callback of curlfault's unless they set their own,
    # so pycurl warns exactly when it would without tracking: no filter is needed.
    if how == "ini":
        pytester.makeini("[pytest]\nfilterwarnings = error\n")
    make_tests(pytester, MULTI)
    args = ("-W", "error") if how == "cmdline" else ()
    result = pytester.runpytest(*QUIET, *args, *(["--curlfault-leaks"] if tracked else []))
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeWarning: something else*"])


def test_a_multi_that_keeps_a_closed_handles_connection_is_named_in_the_advice(
    pytester: pytest.Pytester,
) -> None:
    # The handle was removed and closed; the multi's connection cache still holds its
    # connection. Advice that only says "close each handle" sent the user looking for a
    # handle they had closed.
    make_tests(
        pytester,
        MULTI
        + """
def test_multi_kept(server):
    KEEP.append(run_multi(server.url, n=1))

def test_zz_close():
    close_kept()
""",
    )
    result = run(pytester, "--curlfault-leaks", "-k", "multi_kept or zz_close")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_multi_kept*",
            "*A CurlMulti or CurlShare that the handle was added to keeps its connections open "
            "after curl.close(): close it too (multi.close(), share.close()).*",
        ]
    )


def test_tornado_client_under_filterwarnings_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tornado")
    make_tests(
        pytester,
        """
        import asyncio
        from tornado.curl_httpclient import CurlAsyncHTTPClient

        CLIENTS = []

        async def fetch_three(url, close):
            client = CurlAsyncHTTPClient(force_instance=True)
            CLIENTS.append(client)
            for _ in range(3):
                assert (await client.fetch(url)).body == b"hello"
            if close:
                client.close()

        def test_closed_client(server):
            asyncio.run(fetch_three(server.url, close=True))

        def test_client_left_open(server):
            asyncio.run(fetch_three(server.url, close=False))

        def test_zz_close():
            CLIENTS[-1].close()
        """,
    )
    result = pytester.runpytest(*QUIET, "-W", "error", "--curlfault-leaks")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_client_left_open*",
            "*LeakError: descriptor never closed*opened in test_inner.py::test_client_left_open",
            "*curl_httpclient.py:* in _curl_create",
        ]
    )
    # the suggested ini line names the test's own code, not this machine's tornado
    result.stdout.fnmatch_lines(["*add the line 'session test_inner.py::*' to the *"])
    result.stdout.no_fnmatch_line("*add the line '*site-packages*")


def test_a_tornado_client_made_deep_in_a_fixture_is_reported_with_that_fixture(
    pytester: pytest.Pytester,
) -> None:
    # tornado makes its handles five frames deep; the user's wrapper and helper add two
    # more: the six frames past tornado's own name the module fixture, so the error says
    # which fixture holds the client and suggests its scope, and the suggested line works.
    pytest.importorskip("tornado")
    make_tests(
        pytester,
        """
        import asyncio
        import warnings
        import pytest
        from tornado.curl_httpclient import CurlAsyncHTTPClient

        class Api:
            def __init__(self):
                self.client = CurlAsyncHTTPClient(force_instance=True)

        def connect():
            return Api()

        @pytest.fixture(scope="module")
        def loop():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            yield loop
            asyncio.set_event_loop(None)
            loop.close()

        @pytest.fixture(scope="module")
        def api(loop):
            return connect()  # closed by the last test, not by this fixture

        def test_uses_api(api, loop, server):
            assert loop.run_until_complete(api.client.fetch(server.url)).body == b"hello"

        def test_zz_close(api):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                api.client.close()
        """,
    )
    # In child processes: tornado's and asyncio's process-wide state (the loop it binds a
    # client to) does not carry over from one run to the next, nor into this process.
    args = (*QUIET, "-W", "error", "--curlfault-leaks")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_uses_api*",
            "*curl_httpclient.py:* in _curl_create",
            "*test_inner.py:* in __init__",
            "*test_inner.py:* in connect",
            "*test_inner.py:* in api",
            "*or add the line 'module test_inner.py::api' to the curlfault_handle_scopes*",
        ]
    )
    pytester.makeini("[pytest]\ncurlfault_handle_scopes = module test_inner.py::api\n")
    pytester.runpytest_subprocess(*args, "--strict-config").assert_outcomes(passed=2)


# the curlfault fixture in a tracked run -----------------------------------------------------


def test_fixture_tests_are_checked_by_the_fixture_once(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        from curlfault import InterceptedCurl, Tracker

        def test_fake_clean(curlfault):
            curlfault.http("api.test").get("/").respond(200, body="fake")
            assert get("http://api.test/") == (0, b"fake")
            assert not isinstance(InterceptedCurl._cf_network, Tracker)

        def test_fake_leaky(curlfault):
            curlfault.http("api.test").get("/").respond(200, body="fake")
            c = pycurl.Curl()
            KEEP.append(c)
            assert get("http://api.test/", curl=c) == (0, b"fake")

        def test_real_after_the_fixture(server):
            assert isinstance(InterceptedCurl._cf_network, Tracker)
            kept(server.url)

        def test_zz_close():
            close_kept()
        """,
    )
    result = run(pytester, "--curlfault-leaks")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_fake_leaky*",
            "*LeakError: descriptor never closed: *socketpair to api.test*",
            "*ERROR at teardown of test_real_after_the_fixture*",
            "curlfault: test_inner.py::test_real_after_the_fixture: 1 descriptor left open",
        ]
    )
    # the fake's descriptor was never the tracker's: one report, from the fixture
    ((name, text),) = properties(result, "test_fake_leaky")
    assert name == "curlfault_fixture_check"
    assert text.startswith("LeakError: descriptor never closed: #1 ")
    result.stdout.fnmatch_lines(["*= curlfault (--curlfault-leaks): 2 problem(s) =*"])


@pytest.mark.parametrize("tracked", [True, False], ids=["leaks", "untracked"])
def test_a_module_level_handle_attached_test_after_test_passes_either_way(
    pytester: pytest.Pytester, tracked: bool
) -> None:
    # The module-level client: made at import (a tracked handle under --curlfault-leaks, a
    # plain one without), attached to each test's network. Neither run keeps a connection
    # to a fake past the test, so neither reports one; the suite's verdict does not change
    # when the option is turned on.
    make_tests(
        pytester,
        """
        from curlfault._intercept import real_curl

        CLIENT = pycurl.Curl()

        @pytest.mark.parametrize("body", ["one", "two", "three"])
        def test_attached(curlfault, body):
            curlfault.http("api.test").get("/").respond(200, body=body)
            curlfault.attach(CLIENT)
            assert get("http://api.test/", curl=CLIENT) == (0, body.encode())
            assert get("http://api.test/", curl=CLIENT) == (0, body.encode())
            # a new connection per transfer: the handle outlives the network
            assert len(curlfault.connections) == 2
            assert (type(CLIENT) is not real_curl()) is TRACKED

        def test_zz_close():
            CLIENT.close()
        """.replace("TRACKED", str(tracked)),
    )
    result = run(pytester, *(["--curlfault-leaks"] if tracked else []))
    result.assert_outcomes(passed=4)
    if tracked:
        result.stdout.fnmatch_lines(["*curlfault (--curlfault-leaks): no problems*"])


@pytest.mark.parametrize("tracked", [True, False], ids=["leaks", "untracked"])
def test_fixture_check_failure_does_not_point_at_the_plugin(
    pytester: pytest.Pytester, tracked: bool
) -> None:
    # The fixture's LeakError passes through the teardown wrapper of --curlfault-leaks: its
    # frame is hidden, so the error looks the same as in an untracked run (no plugin source,
    # no "_leaks_plugin.py:NNN: LeakError" location line).
    make_tests(
        pytester,
        """
        def test_fake_leaky(curlfault):
            curlfault.http("api.test").get("/").respond(200, body="fake")
            c = pycurl.Curl()
            KEEP.append(c)
            assert get("http://api.test/", curl=c) == (0, b"fake")

        def test_zz_close():
            close_kept()
        """,
    )
    result = run(pytester, *(["--curlfault-leaks"] if tracked else []))
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_fake_leaky*",
            "E   curlfault.LeakError: descriptor never closed: *socketpair to api.test*",
        ]
    )
    result.stdout.no_fnmatch_line("*_leaks_plugin.py*")
    result.stdout.no_fnmatch_line("*def pytest_runtest_teardown*")


# xdist, stopped runs, options -------------------------------------------------------------


@pytest.mark.parametrize("xdist", [False, True], ids=["in-process", "xdist"])
def test_the_summary_lists_what_the_curlfault_fixture_found(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    # Before: "no problems" under two tests that the fixture's own check had failed.
    make_tests(
        pytester,
        """
        def test_fixture_leak(curlfault):
            curlfault.http("api.test").get("/").respond(200)
            c = pycurl.Curl()
            KEEP.append(c)
            assert get("http://api.test/", curl=c) == (0, b"")

        def test_fixture_refusal(curlfault):
            assert get("http://nope.test/")[0] == pycurl.E_COULDNT_CONNECT

        def test_failed_first(curlfault):
            get("http://nope.test/")
            assert False

        @pytest.fixture
        def breaks():
            yield
            raise RuntimeError("another fixture's teardown")

        def test_two_teardown_errors(curlfault, breaks):
            # pytest raises both as a group: the fixture's finding is still listed
            for _ in range(2):
                assert get("http://twice.test/")[0] == pycurl.E_COULDNT_CONNECT

        @pytest.fixture
        def own_error():
            from curlfault import UnexpectedConnection

            yield
            raise UnexpectedConnection("raised by a user's fixture, not the check")

        def test_not_the_fixtures(curlfault, own_error):
            pass
        """,
    )
    extra = ("-n", "2") if xdist else ()
    result = pytester.runpytest_subprocess(
        *QUIET, "-W", "error", *extra, "--curlfault-leaks", timeout=120
    )
    result.assert_outcomes(passed=4, failed=1, errors=4)
    result.stdout.fnmatch_lines(["*= curlfault (--curlfault-leaks): 4 problem(s) =*"])
    text = result.stdout.str()
    summary = section(result, "curlfault (--curlfault-leaks): 4 problem(s)")
    assert "UnexpectedConnection: raised by a user's fixture" in text  # the test's error
    assert "raised by a user's fixture" not in summary
    for line in (
        "test_inner.py::test_two_teardown_errors\n  curlfault fixture: UnexpectedConnection: "
        "pycurl connected to twice.test:80 (url http://twice.test/), which no fake serves; "
        "add `curlfault.http('twice.test')`, or use strict=False (marker: curlfault(strict=False)) "
        "to let it reach the real network (the same problem 2 times)\n",
        "test_inner.py::test_fixture_leak\n  curlfault fixture: LeakError: descriptor never "
        "closed: #1 ",
        "test_inner.py::test_fixture_refusal\n  curlfault fixture: UnexpectedConnection: "
        "pycurl connected to nope.test:80",
        "test_inner.py::test_failed_first (test had already failed)\n  curlfault fixture: "
        "UnexpectedConnection: pycurl connected to nope.test:80",
    ):
        assert line in summary


def test_xdist_worker_reports_reach_the_controller(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(4))
        def test_leaky(server, n):
            c = pycurl.Curl()
            KEEP.append(c)
            assert get(server.url + str(n), curl=c) == (0, b"hello")

        @pytest.mark.parametrize("n", range(4))
        def test_clean(server, n):
            assert get(server.url)[0] == 0
        """,
    )
    result = pytester.runpytest_subprocess(
        *QUIET, "-W", "error", "-n", "2", "--curlfault-leaks", timeout=120
    )
    result.assert_outcomes(passed=8, errors=4)
    result.stdout.fnmatch_lines(
        ["created: 2/2 workers", "*= curlfault (--curlfault-leaks): 4 problem(s) =*"]
    )
    text = result.stdout.str()
    summary = text[text.index("curlfault (--curlfault-leaks): 4 problem(s)") :]
    for n in range(4):
        assert f"test_inner.py::test_leaky[{n}]\n" in summary
        assert re.search(
            rf"url http://127\.0\.0\.1:\d+/{n}, opened in test_inner.py::test_leaky\[{n}\]", summary
        )
        assert f"ERROR at teardown of test_leaky[{n}]" in text


def run_stopping_with_a_session_client(
    pytester: pytest.Pytester, stop: str, *args: str
) -> pytest.RunResult:
    """A session ``client`` that is never closed; ``test_one`` uses it, then runs ``stop``."""
    conftest = "import pycurl\nLEFT = []\n" + SESSION_CLIENT.format(close="LEFT.append(c)")
    make_tests(
        pytester,
        f"""
        def test_one(server, client):
            assert get(server.url, curl=client)[0] == 0
            {stop}

        def test_two():
            pass
        """,
        conftest=conftest,
    )
    pytester.makeini("[pytest]\ncurlfault_handle_scopes = session conftest.py::client\n")
    return pytester.runpytest_subprocess(*QUIET, *args, "--curlfault-leaks", timeout=120)


def test_exitfirst_checks_the_session_at_the_failing_test(pytester: pytest.Pytester) -> None:
    # pytest tears the session down in the teardown of the test that stops the run
    result = run_stopping_with_a_session_client(pytester, "assert False", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- curlfault problems at teardown (test had already failed) -*",
            "LeakError: descriptor still open at the end of the session (session scope from "
            "curlfault_handle_scopes: session conftest.py::client): fd *",
            "*= curlfault (--curlfault-leaks): 1 problem(s) =*",
            "test_inner.py::test_one (test had already failed)",
        ]
    )


def test_interrupted_run_lists_what_the_session_left_open(pytester: pytest.Pytester) -> None:
    # No teardown of the interrupted test: session fixtures end in sessionfinish.
    result = run_stopping_with_a_session_client(pytester, "raise KeyboardInterrupt")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*= curlfault (--curlfault-leaks): 1 problem(s) =*",
            "(after the last test)",
            "  LeakError: descriptor still open at the end of the session: fd *",
        ]
    )


def test_the_settings_snippet_is_valid_configuration(pytester: pytest.Pytester) -> None:
    snippet = (ROOT / "docs" / "examples" / "curlfault-leaks-settings.toml").read_text("utf-8")
    pytester.makepyprojecttoml(snippet)
    make_tests(
        pytester,
        """
        def test_settings(request):
            hosts = request.config.getini("curlfault_allow_hosts")
            assert hosts == ["localhost", "127.0.0.1", "::1"]
            assert len(request.config.getini("curlfault_handle_scopes")) == 2
        """,
    )
    run(pytester, "--strict-config", "--curlfault-leaks", "--curlfault-strict").assert_outcomes(
        passed=1
    )


def test_options_and_marker_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUIET, "--help")
    result.stdout.fnmatch_lines(
        [
            "curlfault: fake servers for pycurl:",
            "  --curlfault-leaks*",
            "  --curlfault-strict*",
            "  --curlfault-allow-hosts=HOSTS",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*curlfault_allow_hosts (args)*", "*curlfault_handle_scopes (linelist)*"]
    )
    result = pytester.runpytest(*QUIET, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.curlfault_leaks_ok(scope=None, reason=''): *"])


# the example downstream suite ------------------------------------------------------------


def normalized(text: str) -> list[str]:
    """Lines with the numbers that change from run to run replaced by placeholders."""
    text = re.sub(r"fd \d+ \(inode \d+\)", "fd N (inode N)", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"\.py:\d+", ".py:LINE", text)
    text = re.sub(r" in \d+\.\d+s", " in N.NNs", text)
    return [line.rstrip() for line in text.splitlines()]


def test_example_suite_produces_the_documented_report(pytester: pytest.Pytester) -> None:
    example = ROOT / "examples" / "downstream_suite"
    for name in ("client.py", "conftest.py", "test_client.py", "pytest.ini"):
        shutil.copy(example / name, pytester.path / name)
    result = pytester.runpytest_subprocess("--curlfault-leaks", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    report = (example / "report.txt").read_text(encoding="utf-8")
    expected = normalized(report)
    actual = normalized(result.stdout.str())
    start = actual.index(expected[0])
    assert actual[start : start + len(expected)] == expected
    # the README shows the same report, and its fix works
    readme = (example / "README.md").read_text(encoding="utf-8")
    assert report in readme
    ini_fix = readme.split("```ini\n", 1)[1].split("```", 1)[0]
    with open(pytester.path / "pytest.ini", "a", encoding="utf-8") as ini:
        ini.write(ini_fix)
    # with the ini line alone the cache is reported at the end of the session ...
    result = pytester.runpytest_subprocess("--curlfault-leaks", "--strict-config", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*descriptor still open at the end of the session*", "A handle given a longer scope*"]
    )
    # ... and with the fixture that closes it, the run is clean
    fixture_fix = readme.split("```python\n", 1)[1].split("```", 1)[0]
    with open(pytester.path / "conftest.py", "a", encoding="utf-8") as conftest:
        conftest.write("\nimport client\n\n\n" + fixture_fix)
    result = pytester.runpytest_subprocess("--curlfault-leaks", "--strict-config", timeout=120)
    result.assert_outcomes(passed=2)


def test_a_path_through_dotdot_reads_and_matches_as_the_files_path() -> None:
    # A module imported through a sys.path entry such as "realtests/../tests": the suggested
    # scope pattern said "realtests/../tests/apiclient.py", which the rootdir-relative
    # pattern the docs describe did not match.
    import os

    from pytest_curlfault._leaks_advice import relative

    from curlfault._ledger import under_root

    root = os.sep + os.path.join("r", "proj")
    path = os.path.join(root, "realtests", "..", "tests", "apiclient.py")
    assert relative(path, root) == "tests/apiclient.py"
    assert under_root(path, root) == os.path.join("tests", "apiclient.py")
    assert relative(os.path.join(os.sep, "elsewhere", "x.py"), root) == "/elsewhere/x.py"
