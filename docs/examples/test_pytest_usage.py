import io

import pycurl
import pytest

from curlfault import UnexpectedConnection, UnmatchedRequest, UnusedDeclaration, faults


def perform(url, curl=None):
    """Run one GET; return its CURLcode (0 when the transfer succeeded)."""
    own = curl is None
    curl = pycurl.Curl() if own else curl
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, io.BytesIO())
    curl.setopt(pycurl.TIMEOUT, 10)
    try:
        curl.perform()
    except pycurl.error as exc:
        return exc.args[0]
    finally:
        if own:
            curl.close()
    return 0


# --8<-- [start:strict]
def test_a_host_no_fake_serves_is_refused_and_reported(curlfault):
    assert perform("http://elsewhere.test/") == pycurl.E_COULDNT_CONNECT

    # Teardown would fail the test with this error; check() raises it now instead,
    # and each problem is raised only once.
    with pytest.raises(UnexpectedConnection, match=r"elsewhere\.test"):
        curlfault.check()


# --8<-- [end:strict]


# --8<-- [start:unmatched]
def test_a_request_no_route_matches_gets_404_and_is_reported(curlfault):
    api = curlfault.http("api.test")
    api.get("/items").respond(200)

    curl = pycurl.Curl()
    perform("http://api.test/itemz", curl)
    assert curl.getinfo(pycurl.RESPONSE_CODE) == 404
    curl.close()

    with pytest.raises(UnmatchedRequest, match="GET /itemz"):
        curlfault.check()
    assert api.requests[0].matched is False


# --8<-- [end:unmatched]


# --8<-- [start:no-intercept]
@pytest.mark.curlfault(intercept=False)
def test_route_only_the_handles_you_attach(curlfault):
    curlfault.http("api.test").get("/").respond(200)

    curl = curlfault.attach(pycurl.Curl())
    try:
        assert perform("http://api.test/", curl) == 0
    finally:
        curl.close()


# --8<-- [end:no-intercept]


# --8<-- [start:no-check]
@pytest.mark.curlfault(check=False)
def test_teardown_checks_are_off(curlfault):
    # Not reported at teardown: the test takes responsibility for what the fake saw.
    assert perform("http://elsewhere.test/") == pycurl.E_COULDNT_CONNECT
    assert curlfault.connections[0].refused


# --8<-- [end:no-check]


# --8<-- [start:all-used]
def fetch_with_retries(url, attempts):
    """The client under test: retries a refused connection."""
    for _ in range(attempts):
        code = perform(url)
        if code != pycurl.E_COULDNT_CONNECT:
            return code
    return code


@pytest.mark.curlfault(all_used=True)
def test_the_client_retries_three_times(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200)
    api.connection_faults(faults.refuse(), faults.refuse(), faults.refuse())
    assert fetch_with_retries("http://api.test/", attempts=4) == 0
    # all_used=True: had the client given up after two refusals, the third refuse() would
    # never have acted, and the teardown check would say so (UnusedDeclaration).


def test_a_client_that_gives_up_early_leaves_a_fault_unused(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200)
    api.connection_faults(faults.refuse(), faults.refuse(), faults.refuse())
    assert fetch_with_retries("http://api.test/", attempts=2) == pycurl.E_COULDNT_CONNECT
    assert curlfault.unused() == [
        "api.test:80: connection fault never taken: #3 refuse() (the client made "
        "2 connections since they were declared)",
        "api.test:80 GET /: never requested (declared: respond(200))",
    ]
    with pytest.raises(UnusedDeclaration, match="#3 refuse"):
        curlfault.check(all_used=True)


# --8<-- [end:all-used]


# --8<-- [start:records]
def test_what_the_fake_network_recorded(curlfault):
    api = curlfault.http("api.test")
    api.get("/a").respond(200)
    api.get("/b").respond(200)

    curl = pycurl.Curl()  # one handle: the second request reuses the connection
    try:
        assert perform("http://api.test/a", curl) == 0
        assert perform("http://api.test/b", curl) == 0
    finally:
        curl.close()

    assert [r.path for r in curlfault.requests] == ["/a", "/b"]
    (connection,) = curlfault.connections
    assert connection.host == "api.test"
    assert {r.connection_id for r in api.requests} == {connection.id}
    assert "request GET /b" in curlfault.trace()


# --8<-- [end:records]
