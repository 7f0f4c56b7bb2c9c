"""``pytest --curlfault-strict`` and its allow-list, driven through ``pytester``."""

from __future__ import annotations

import pytest

# Imported once, outside every inner run (see test_plugin.py).
import trustme  # noqa: F401
from pytest_curlfault._leaks import parse_allow_hosts
from pytester_support import QUIET, section
from test_leaks import make_tests, properties

STRICT = """
def test_swallows_the_error():
    # the client under test retries, logs and goes on: only the teardown check notices
    assert get("http://api.example.invalid:8443/items")[0] == pycurl.E_COULDNT_CONNECT

def test_raises(server):
    c = pycurl.Curl()
    try:
        c.setopt(pycurl.URL, "https://api.prod.example/v1/users")
        c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
        c.perform()
    finally:
        c.close()

def test_loopback(server):
    assert get(server.url) == (0, b"hello")
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, "-W", "error", *args)


def test_refused_connection_fails_the_test_naming_host_and_url(pytester: pytest.Pytester) -> None:
    make_tests(pytester, STRICT)
    result = run(pytester, "--curlfault-strict")
    result.assert_outcomes(
        passed=1, failed=2, errors=1
    )  # test_swallows_the_error passed, then errored
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_swallows_the_error _*",
            "curlfault: test_inner.py::test_swallows_the_error: "
            "1 connection refused by --curlfault-strict",
            "1. UnexpectedConnection: pycurl connected to api.example.invalid:8443 "
            "(url http://api.example.invalid:8443/items), which is not an allowed host; "
            "the connection was refused (CURLcode 7). Serve it with the curlfault fixture or "
            "allow it with --curlfault-allow-hosts=api.example.invalid "
            "(ini: curlfault_allow_hosts)",
            "  the handle was made at:",
            "    test_inner.py:* in get",
            "    test_inner.py:* in test_swallows_the_error",
        ]
    )
    # a test that already failed on pycurl's error 7 says why, once, in its own report
    result.stdout.fnmatch_lines(
        [
            "*_ test_raises _*",
            "E * pycurl.error: (7, *api.prod.example*",
            "*- curlfault: refused by --curlfault-strict (call) -*",
            "pycurl connected to api.prod.example:443 (url https://api.prod.example/v1/users)*",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_raises*")
    result.stdout.no_fnmatch_line("*_intercept.py*")  # our frame is hidden from tracebacks
    # the loopback server is not allowed either
    result.stdout.fnmatch_lines(["*_ test_loopback _*"])
    ((name, text),) = properties(result, "test_raises")
    assert name == "curlfault_unexpected_connection"
    assert "api.prod.example" in text
    result.stdout.fnmatch_lines(
        [
            "*= curlfault (--curlfault-strict): 3 problem(s) =*",
            "test_inner.py::test_raises (test had already failed)",
            "  UnexpectedConnection: pycurl connected to api.prod.example:443*",
        ]
    )


def test_a_handle_the_network_in_use_did_not_route_is_told_to_attach(
    pytester: pytest.Pytester,
) -> None:
    # A module-scoped fixture's handle is made before the test's network intercepts. The
    # report said "allow it with --curlfault-allow-hosts=api.test", which would send a
    # made-up name to the resolver, although the test's network serves api.test.
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="module")
        def client():
            c = pycurl.Curl()
            yield c
            c.close()

        def test_unrouted(client, curlfault):
            curlfault.http("api.test").get("/").respond(200)
            assert get("http://api.test/", curl=client)[0] == pycurl.E_COULDNT_CONNECT

        def test_attached(client, curlfault):
            curlfault.http("api.test").get("/").respond(200)
            assert get("http://api.test/", curl=curlfault.attach(client)) == (0, b"")
        """,
    )
    result = run(pytester, "--curlfault-strict")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_unrouted _*",
            "1. UnexpectedConnection: pycurl connected to api.test:80 (url http://api.test/) "
            "with a handle that the FakeNetwork in use did not route, though it serves that "
            "host: the handle was made before the network intercepted (by an autouse "
            "fixture, a fixture of a wider scope, at import time, or in another thread); the "
            "connection was refused (CURLcode 7). Make the handle inside the test (or in a "
            "function-scoped fixture that is not autouse), or route it with "
            "curlfault.attach(handle), which a reset() of a plain pycurl handle undoes "
            "(tornado's client resets its handles after every request)",
        ]
    )
    result.stdout.no_fnmatch_line("*--curlfault-allow-hosts=api.test*")


def test_a_refusal_repeated_by_retries_is_listed_once_with_a_count(
    pytester: pytest.Pytester,
) -> None:
    make_tests(
        pytester,
        """
        def test_retries():
            for _ in range(3):
                assert get("http://api.example.invalid/")[0] == pycurl.E_COULDNT_CONNECT

        def test_retries_then_fails():
            for _ in range(3):
                get("http://retry.example.invalid/")
            assert False
        """,
    )
    result = run(pytester, "--curlfault-strict")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    # the failed test's report says why its connections failed: each refusal once, counted
    failed = section(result, "FAILURES")
    assert failed.count("pycurl connected to retry.example.invalid") == 1
    assert "(url http://retry.example.invalid/)" in failed
    assert "(ini: curlfault_allow_hosts) (3 times)" in failed
    result.stdout.fnmatch_lines(
        [
            "curlfault: test_inner.py::test_retries: 3 connections refused by --curlfault-strict",
            "1. UnexpectedConnection: pycurl connected to api.example.invalid:80 *(ini: "
            "curlfault_allow_hosts) (3 times)",
            "  the handle was made at:",
        ]
    )
    assert section(result, "ERRORS").count("1. UnexpectedConnection") == 1
    result.stdout.no_fnmatch_line("2. *")
    # the run's summary lists it once too, with the count
    result.stdout.fnmatch_lines(
        [
            "*= curlfault (--curlfault-strict): 2 problem(s) =*",
            "test_inner.py::test_retries",
            "  UnexpectedConnection: pycurl connected to api.example.invalid:80 *(3 times)",
        ]
    )


def test_allow_hosts_option_lets_loopback_through(pytester: pytest.Pytester) -> None:
    make_tests(pytester, STRICT)
    result = run(pytester, "--curlfault-strict", "--curlfault-allow-hosts=localhost,127.0.0.1")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.no_fnmatch_line("*_ test_loopback _*")


def test_allow_hosts_ini_and_the_option_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncurlfault_allow_hosts = localhost\n    127.0.0.1 ::1\n")
    make_tests(
        pytester,
        """
        def test_by_address(server):
            assert get(server.url) == (0, b"hello")

        def test_by_name(server):
            assert get(f"http://localhost:{server.port}/") == (0, b"hello")
        """,
    )
    run(pytester, "--curlfault-strict", "--strict-config").assert_outcomes(passed=2)
    # the option replaces the ini list: now only the address is allowed, not the name (an
    # allowed name allows the addresses it resolves to, an address allows only itself)
    result = run(pytester, "--curlfault-strict", "--curlfault-allow-hosts=127.0.0.1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_by_name _*", "*refused by --curlfault-strict (call)*"])


def test_fakes_are_served_and_strict_false_fixtures_pass_through(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_fake(curlfault):
            curlfault.http("api.test").get("/").respond(200, body="fake")
            assert get("http://api.test/") == (0, b"fake")

        @pytest.mark.curlfault(strict=False)
        def test_fixture_says_real_network(curlfault, server):
            # the marker of the test that asks for it wins over the suite-wide switch
            assert get(server.url) == (0, b"hello")
        """,
    )
    run(pytester, "--curlfault-strict").assert_outcomes(passed=2)


RELAXED = """
@pytest.fixture
def client():
    c = pycurl.Curl()  # made for the marked test: relaxed too
    yield c
    c.close()

@pytest.fixture(scope="module")
def shared():
    c = pycurl.Curl()  # outlives the marked test that sets it up: strict all the same
    yield c
    c.close()

@pytest.mark.curlfault(strict=False)
def test_marked(server, client, shared):
    assert get(server.url) == (0, b"hello")
    assert get(server.url, curl=client) == (0, b"hello")
    dup = client.duphandle()  # a copy of a relaxed handle is relaxed
    try:
        assert get(server.url, curl=dup) == (0, b"hello")
    finally:
        dup.close()

@pytest.mark.curlfault(strict=False)
class TestMarkedClass:
    def test_in_class(self, server):
        assert get(server.url) == (0, b"hello")

    @pytest.mark.curlfault(strict=True)
    def test_closer_marker_wins(self, server):
        assert get(server.url)[0] == pycurl.E_COULDNT_CONNECT

@pytest.mark.curlfault(strict=False)
def test_marked_and_leaky(server):
    kept(server.url)

def test_unmarked(server, shared):
    assert get(server.url)[0] == pycurl.E_COULDNT_CONNECT
    assert get(server.url, curl=shared)[0] == pycurl.E_COULDNT_CONNECT

def test_zz_close():
    close_kept()
"""


@pytest.mark.parametrize("dist", [False, True], ids=["in-process", "xdist"])
def test_a_test_marked_strict_false_may_reach_the_network_without_the_fixture(
    pytester: pytest.Pytester, dist: bool
) -> None:
    # The marker that lets a curlfault fixture's handles reach the network does the same
    # for a test without the fixture under --curlfault-strict: the handles made while it
    # runs are not refused (a function fixture's too; a module fixture's stays strict, or
    # the tests after would depend on which test made it). Leak tracking goes on for them.
    make_tests(pytester, RELAXED)
    args = ("-p", "xdist", "-n", "2") if dist else ()
    result = run(pytester, "--curlfault-strict", *args)
    result.assert_outcomes(passed=6, errors=2)  # the unmarked tests are refused, once each
    result.stdout.fnmatch_lines(["*ERROR at teardown of*test_closer_marker_wins*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of*test_unmarked*"])
    result = run(pytester, "--curlfault-strict", "--curlfault-leaks", *args)
    result.assert_outcomes(passed=6, errors=3)
    result.stdout.fnmatch_lines(["*ERROR at teardown of*test_marked_and_leaky*"])
    result.stdout.fnmatch_lines(["*LeakError: descriptor never closed*test_marked_and_leaky*"])


def test_strict_alone_does_not_report_leaks(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_leaky(server):
            kept(server.url)

        def test_zz_close():
            close_kept()
        """,
    )
    result = run(pytester, "--curlfault-strict", "--curlfault-allow-hosts=127.0.0.1")
    result.assert_outcomes(passed=2)
    result = run(
        pytester, "--curlfault-strict", "--curlfault-leaks", "--curlfault-allow-hosts=127.0.0.1"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*= curlfault (--curlfault-leaks and --curlfault-strict): 1 *"])


def test_xdist_strict_reports_reach_the_controller(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("n", range(4))
        def test_refused(n):
            assert get(f"http://host{n}.example.invalid/")[0] == pycurl.E_COULDNT_CONNECT
        """,
    )
    result = pytester.runpytest_subprocess(
        *QUIET, "-W", "error", "-n", "2", "--curlfault-strict", timeout=120
    )
    result.assert_outcomes(passed=4, errors=4)
    text = result.stdout.str()
    summary = text[text.index("curlfault (--curlfault-strict): 4 problem(s)") :]
    for n in range(4):
        assert f"test_inner.py::test_refused[{n}]\n" in summary
        assert f"host{n}.example.invalid:80 (url http://host{n}.example.invalid/)" in summary


PROXY = """
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []


class Proxy(BaseHTTPRequestHandler):
    # A proxy that reaches nothing: what a real one answers for the sink address.
    def do_CONNECT(self):
        SEEN.append(self.requestline)
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_CONNECT

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    srv.daemon_threads = False  # server_close() joins the handler threads
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def test_proxy_allowed(proxy):
    # the origin's name is not sent: libcurl tunnels to the sink address, which fails there
    code, _ = get("http://api.example.invalid/items", PROXY=proxy)
    assert code in (pycurl.E_COULDNT_CONNECT, pycurl.E_RECV_ERROR)
    assert SEEN == ["CONNECT 127.77.255.254:80 HTTP/1.1"]


def test_proxy_not_allowed(proxy):
    code, _ = get("http://api.example.invalid/items", PROXY=proxy)
    assert code == pycurl.E_COULDNT_CONNECT
    assert SEEN == []
"""


def test_proxy_is_outside_what_strict_mode_governs(pytester: pytest.Pytester) -> None:
    # What docs/leaks.md says of proxies: an allowed proxy is asked to CONNECT to the sink
    # address for a host that is not allowed, and strict mode reports nothing of it; a proxy
    # that is not allowed is refused and reported like any other address.
    make_tests(pytester, PROXY)
    allowed = ("--curlfault-strict", "--curlfault-allow-hosts=127.0.0.1")
    result = run(pytester, *allowed, "-k", "test_proxy_allowed")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*- curlfault (--curlfault-strict): no problems -*"])
    result = run(pytester, "--curlfault-strict", "-k", "test_proxy_not_allowed")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "1. UnexpectedConnection: pycurl connected to 127.0.0.1:* for host "
            "api.example.invalid (url http://api.example.invalid/items), an address that no "
            "allowed host resolves to (reached through a proxy, *",
        ]
    )


# configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", ("localhost",)),
        ("localhost,127.0.0.1", ("localhost", "127.0.0.1")),
        (" localhost , ::1,,", ("localhost", "::1")),
        (["db.internal", "[::1]", "db.internal"], ("db.internal", "::1")),
        ("", ()),
    ],
)
def test_parse_allow_hosts_good(value: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_allow_hosts(value) == expected


@pytest.mark.parametrize(
    "value", ["http://localhost", "localhost:8080", "a/b", ["x y"], "-x", "a..b", "db!internal"]
)
def test_parse_allow_hosts_bad(value: str | list[str]) -> None:
    with pytest.raises(pytest.UsageError, match="not a host name or an IP address"):
        parse_allow_hosts(value)


@pytest.mark.parametrize("value", ["*", "local*", "db?.internal"])
def test_parse_allow_hosts_refuses_patterns_it_would_never_match(value: str) -> None:
    # Matched exactly: a glob was accepted before and then matched nothing.
    with pytest.raises(pytest.UsageError, match="is a pattern, and allowed hosts are matched"):
        parse_allow_hosts(value)


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        ("", ("--curlfault-allow-hosts=localhost",), "*only applies with --curlfault-strict*"),
        (
            "",
            ("--curlfault-strict", "--curlfault-allow-hosts=localhost:8080"),
            "*'localhost:8080' is not a host name or an IP address*",
        ),
        (
            "curlfault_allow_hosts = http://api.test",
            (),
            "*'http://api.test' is not a host name or an IP address*",
        ),
    ],
)
def test_bad_allow_list_is_a_usage_error(
    pytester: pytest.Pytester, ini: str, args: tuple[str, ...], message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    make_tests(pytester, "def test_x():\n    pass\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
