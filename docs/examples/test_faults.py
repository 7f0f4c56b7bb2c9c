import io

import pycurl
import pytest

from curlfault import UsageError, faults


# --8<-- [start:helper]
def perform(url):
    """Run one GET; return its CURLcode (0 when the transfer succeeded)."""
    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, io.BytesIO())
    curl.setopt(pycurl.TIMEOUT, 10)
    try:
        curl.perform()
    except pycurl.error as exc:
        return exc.args[0]
    finally:
        curl.close()
    return 0


# --8<-- [end:helper]


# --8<-- [start:refuse-host]
def test_a_host_that_refuses_every_connection(curlfault):
    curlfault.refuse("down.test")  # every port; refuse("down.test", 443) for one

    assert perform("http://down.test/") == pycurl.E_COULDNT_CONNECT  # 7
    assert perform("http://down.test:8080/") == pycurl.E_COULDNT_CONNECT


# --8<-- [end:refuse-host]


# --8<-- [start:connection-faults]
def get_with_retries(url, attempts):
    for _ in range(attempts):
        code = perform(url)
        if code != pycurl.E_COULDNT_CONNECT:
            break
    return code


def test_the_client_retries_refused_connections(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    # The next two connections are refused; every later one is healthy.
    api.connection_faults(faults.refuse(), faults.refuse())

    assert get_with_retries("http://api.test/", attempts=3) == 0
    assert [c.refused for c in api.connections] == [True, True, False]


# --8<-- [end:connection-faults]


# --8<-- [start:stream-faults]
BODY = b"x" * 1000  # with its headers the response is 1041 bytes


def test_connection_closed_before_any_byte(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body=BODY, fault=faults.close(after_bytes=0))

    assert perform("http://api.test/") == pycurl.E_GOT_NOTHING  # 52


def test_connection_closed_inside_the_body(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body=BODY, fault=faults.close(after_bytes=100))

    assert perform("http://api.test/") == pycurl.E_PARTIAL_FILE  # 18


def test_connection_reset_inside_the_body(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200, body=BODY, fault=faults.reset(after_bytes=100))

    assert perform("http://api.test/") == pycurl.E_RECV_ERROR  # 56
    assert api.connections[0].transport == "tcp"  # an RST needs TCP


# --8<-- [end:stream-faults]


# --8<-- [start:fault-then-recovery]
def test_the_first_response_is_cut_then_the_server_recovers(curlfault):
    route = curlfault.http("api.test").get("/")
    route.respond(200, body=BODY, fault=faults.close(after_bytes=100))  # the first request
    route.respond(200, body=BODY)  # every later one

    assert perform("http://api.test/") == pycurl.E_PARTIAL_FILE
    assert perform("http://api.test/") == 0


# --8<-- [end:fault-then-recovery]


# --8<-- [start:table]
# The stream faults of the CURLcode table, and more cut points, on the installed pycurl.
# The response is BODY with a Content-Length header: 39 bytes of status line and headers.
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (faults.close(after_bytes=0), 52),  # nothing sent: GOT_NOTHING
        (faults.close(after_bytes=5), 52),  # inside the status line: GOT_NOTHING
        (faults.close(after_bytes=20), 0),  # inside the headers: libcurl ends them at EOF
        (faults.close(after_bytes=100), 18),  # inside the body: PARTIAL_FILE
        (faults.close(after_bytes=5000), 0),  # past the end: the whole response was sent
        (faults.reset(after_bytes=0), 56),  # RECV_ERROR
        (faults.reset(after_bytes=100), 56),  # RECV_ERROR
    ],
    ids=repr,
)
def test_curlcode_table(curlfault, fault, code):
    curlfault.http("api.test").get("/").respond(200, body=BODY, fault=fault)

    assert perform("http://api.test/") == code


# --8<-- [end:table]


# --8<-- [start:misuse]
def test_faults_are_checked_when_they_are_declared(curlfault):
    api = curlfault.http("api.test")

    with pytest.raises(UsageError, match="not a connection fault"):
        api.connection_faults(faults.close())
    with pytest.raises(UsageError, match="not a stream fault"):
        api.get("/").respond(200, fault=faults.refuse())
    with pytest.raises(UsageError, match="must be >= 0"):
        faults.close(after_bytes=-1)


# --8<-- [end:misuse]
