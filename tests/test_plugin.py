"""The pytest plugin, driven through ``pytester``: fixtures, marker, options, report sections.

Every generated test file starts with ``HELPER``: a ``get()`` that runs one real pycurl
transfer (always with a TIMEOUT) and a one-shot loopback HTTP server for the cases where a
connection must reach a real listener. Inner runs are in-process unless they need a
separate interpreter (xdist); our own ``_no_leaks`` check then proves that an inner session
leaves no descriptor or thread behind.
"""

from __future__ import annotations

import textwrap

import pycurl
import pytest

from curlfault import InterceptedCurl

HELPER = '''
import io
import socket
import threading
import time

import pycurl
import pytest

ORIGINAL_CURL = pycurl.Curl


def get(url, curl=None, **opts):
    """One transfer on a fresh (or the given) handle: (CURLcode, HTTP status, body)."""
    own = curl is None
    c = pycurl.Curl() if own else curl
    buf = io.BytesIO()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEDATA, buf)
    c.setopt(pycurl.TIMEOUT, 10)
    c.setopt(pycurl.CONNECTTIMEOUT, 5)
    for name, value in opts.items():
        c.setopt(getattr(pycurl, name), value)
    code = 0
    try:
        c.perform()
    except pycurl.error as exc:
        code = exc.args[0]
    status = c.getinfo(pycurl.RESPONSE_CODE)
    if own:
        c.close()
    return code, status, buf.getvalue()


class LoopbackServer:
    """A real listener on 127.0.0.1 (port 0) that answers one HTTP request, then stops."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/real"
        self.request = b""
        self.connected = False
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-server")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.sock.close()
        assert not self._thread.is_alive()

    def _serve(self):
        deadline = time.monotonic() + 10
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    continue
                self.connected = True
                with conn:
                    conn.settimeout(10)
                    while b"\\r\\n\\r\\n" not in self.request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        self.request += chunk
                    conn.sendall(
                        b"HTTP/1.1 200 OK\\r\\nContent-Length: 4\\r\\n"
                        b"Connection: close\\r\\n\\r\\nreal"
                    )
                return
        except BaseException as exc:
            self.error = exc
'''


def make_tests(pytester: pytest.Pytester, source: str, name: str = "test_inner") -> None:
    pytester.makepyfile(**{name: HELPER + textwrap.dedent(source)})


def sections(result: pytest.RunResult, nodeid_part: str, when: str) -> dict[str, str]:
    """The report sections of the ``when`` phase of the inner test whose id contains the part."""
    reprec = result.reprec  # type: ignore[attr-defined]
    reports = [
        r
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.when == when and nodeid_part in r.nodeid
    ]
    assert len(reports) == 1, reports
    return dict(reports[0].sections)


# the fixture -----------------------------------------------------------------------------


def test_fixture_serves_a_real_get_without_import(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        import json

        def test_items(curlfault):
            api = curlfault.http("api.test")
            api.get("/items").respond(200, json=[1, 2])
            code, status, body = get("http://api.test/items?page=1")
            assert (code, status) == (0, 200)
            assert json.loads(body) == [1, 2]
            assert api.requests[0].path == "/items"
            assert api.requests[0].query == "page=1"
            assert len(api.requests) == 1
            assert isinstance(pycurl.Curl(), ORIGINAL_CURL)
            assert pycurl.Curl is not ORIGINAL_CURL
        """,
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    assert pycurl.Curl is not InterceptedCurl


# teardown failures -----------------------------------------------------------------------


def test_unmatched_request_errors_at_teardown_with_trace(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_unmatched(curlfault):
            api = curlfault.http("api.test")
            api.get("/known").respond(200)
            code, status, body = get("http://api.test/unknown")
            assert (code, status) == (0, 404)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unmatched*",
            "*UnmatchedRequest: GET /unknown to http://api.test matched no route*GET /known*",
            "*- curlfault connections (teardown) -*",
            "#1 api.test via 127.77.0.1:80 [[]socketpair[]]*url=http://api.test/unknown",
        ]
    )
    secs = sections(result, "test_unmatched", "teardown")
    assert "#1 api.test" in secs["curlfault connections (teardown)"]
    # the test itself passed: its call report carries no trace under the default "failed"
    assert sections(result, "test_unmatched", "call") == {}


def test_unknown_host_is_refused_and_reported_with_its_url(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_unknown(curlfault):
            curlfault.http("api.test").get("/").respond(200)
            code, status, body = get("http://nowhere.test:8080/path")
            assert code == pycurl.E_COULDNT_CONNECT
            assert curlfault.connections[0].refused
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unknown*",
            "*UnexpectedConnection: pycurl connected to *http://nowhere.test:8080/path*"
            "which no fake serves*",
            "*- curlfault connections (teardown) -*",
            "*refused: no fake serves this host (strict)*",
        ]
    )


def test_leaked_descriptor_is_a_leak_error_at_teardown(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        KEEP = []

        def test_leaks(curlfault):
            curlfault.http("api.test").get("/").respond(200, body="kept alive")
            c = pycurl.Curl()
            KEEP.append(c)  # outlives the test, and so does its pooled connection
            assert get("http://api.test/", curl=c) == (0, 200, b"kept alive")

        def test_zz_close_the_kept_handle():
            KEEP.pop().close()
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*LeakError: descriptor never closed: *socketpair to api.test*"
            "url=http://api.test/*opened in test_inner.py::test_leaks*",
        ]
    )


def test_already_failed_test_gets_no_second_error(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_fails(curlfault):
            curlfault.http("api.test")
            assert get("http://api.test/nothing-here")[1] == 404
            assert False, "the test's own failure"
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the test's own failure*", "*- curlfault connections (call) -*", "#1 api.test*"]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
    note = sections(result, "test_fails", "teardown")[
        "curlfault problems (test had already failed)"
    ]
    assert "GET /nothing-here to http://api.test matched no route" in note


@pytest.mark.xfail(
    reason="plugin bug: pytest prints a passing teardown report's sections only when their "
    "name contains 'teardown', so the 'curlfault problems' note never reaches the terminal",
)
def test_already_failed_note_is_shown_in_the_terminal(pytester: pytest.Pytester) -> None:
    make_tests(
        pytester,
        """
        def test_fails(curlfault):
            curlfault.http("api.test")
            get("http://api.test/nothing-here")
            assert False
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*curlfault problems*", "*GET /nothing-here*matched no route*"])


# the marker ------------------------------------------------------------------------------


def test_marker_strict_false_lets_unknown_hosts_reach_a_real_listener(
    pytester: pytest.Pytester,
) -> None:
    make_tests(
        pytester,
        """
        @pytest.mark.curlfault(strict=False)
        def test_not_strict(curlfault):
            assert curlfault.strict is False
            with LoopbackServer() as srv:
                assert get(srv.url) == (0, 200, b"real")
            assert srv.error is None
            assert srv.request.startswith(b"GET /real HTTP/1.1")
            assert [c.transport for c in curlfault.connections] == ["passthrough"]

        def test_strict_by_default(curlfault):
            with LoopbackServer() as srv:
                assert get(srv.url)[0] == pycurl.E_COULDNT_CONNECT
            assert not srv.connected
            from curlfault import UnexpectedConnection

            with pytest.raises(UnexpectedConnection, match=f"127.0.0.1:{srv.port}"):
                curlfault.check()  # consumed here, so teardown has nothing left to report
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
