import io
import os

import pycurl
import pytest

from curlfault import CallbackError, InterceptedCurl


def configure(curl, url, body=None):
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, body if body is not None else io.BytesIO())
    curl.setopt(pycurl.TIMEOUT, 10)


# --8<-- [start:pinning]
def test_a_fake_host_is_pinned_to_an_alias_address(curlfault):
    api = curlfault.http("api.test")
    api.get("/").respond(200)

    curl = pycurl.Curl()
    assert type(curl) is InterceptedCurl  # the intercepting subclass
    configure(curl, "http://api.test/")
    curl.perform()
    assert api.alias.startswith("127.77.")
    assert curl.getinfo(pycurl.PRIMARY_IP) == api.alias  # no resolver was asked
    curl.close()

    (record,) = curlfault.ledger.records  # the one descriptor libcurl was given
    assert record.kind == "socketpair"
    assert (record.bound, record.closes) == (1, 1)  # sockopt once, closesocket once
    assert record.peer == f"{api.alias}:80"


# --8<-- [end:pinning]


# --8<-- [start:reset]
def test_reset_keeps_the_handle_routed(curlfault):
    # tornado's CurlAsyncHTTPClient calls reset() after every request.
    api = curlfault.http("api.test")
    api.get("/").respond(200)

    curl = pycurl.Curl()
    try:
        for _ in range(3):
            configure(curl, "http://api.test/")
            curl.perform()
            curl.reset()  # clears every option in C; curlfault re-wires the handle
    finally:
        curl.close()
    assert len(api.requests) == 3
    assert len(api.connections) == 1  # the pooled connection survived each reset()


# --8<-- [end:reset]


# --8<-- [start:duphandle]
def test_a_duplicated_handle_gets_wiring_of_its_own(curlfault):
    curlfault.http("api.test").get("/").respond(200)

    original = pycurl.Curl()
    configure(original, "http://api.test/")
    copy = original.duphandle()
    try:
        copy.perform()
        original.perform()
    finally:
        copy.close()
        original.close()
    assert len(curlfault.connections) == 2


# --8<-- [end:duphandle]


# --8<-- [start:debug]
def test_verbose_output_goes_to_your_debug_function(curlfault):
    curlfault.http("api.test").get("/").respond(200)
    seen = []

    curl = pycurl.Curl()
    configure(curl, "http://api.test/")
    curl.setopt(pycurl.VERBOSE, 1)
    curl.setopt(pycurl.DEBUGFUNCTION, lambda kind, data: seen.append((kind, data)))
    curl.perform()
    curl.close()

    sent = b"".join(data for kind, data in seen if kind == pycurl.INFOTYPE_HEADER_OUT)
    assert sent.startswith(b"GET / HTTP/1.1\r\n")


# --8<-- [end:debug]


# --8<-- [start:callback-error]
def test_an_exception_in_a_callback_is_raised_after_perform(curlfault):
    curlfault.http("api.test").get("/").respond(200)

    def broken_debug(kind, data):
        raise RuntimeError("bug in my debug function")

    curl = pycurl.Curl()
    configure(curl, "http://api.test/")
    curl.setopt(pycurl.VERBOSE, 1)
    curl.setopt(pycurl.DEBUGFUNCTION, broken_debug)
    with pytest.raises(CallbackError, match="bug in my debug function"):
        curl.perform()
    curl.close()


# --8<-- [end:callback-error]


# --8<-- [start:closesocket]
def test_your_closesocket_function_closes_the_descriptor(curlfault):
    curlfault.http("api.test").get("/").respond(200)
    closed = []

    def close_socket(fd):
        closed.append(fd)
        os.close(fd)  # with a callback set, libcurl leaves the close to it
        return 0

    curl = pycurl.Curl()
    configure(curl, "http://api.test/")
    curl.setopt(pycurl.CLOSESOCKETFUNCTION, close_socket)
    curl.setopt(pycurl.FORBID_REUSE, 1)
    curl.perform()
    assert len(closed) == 1

    # Unsetting it is safe: curlfault keeps its own callback in place underneath.
    curl.setopt(pycurl.CLOSESOCKETFUNCTION, None)
    curl.perform()
    curl.close()
    assert len(closed) == 1
    assert [r.closes for r in curlfault.ledger.records] == [1, 1]


# --8<-- [end:closesocket]


# --8<-- [start:multi]
def test_a_transfer_driven_by_curl_multi(curlfault):
    curlfault.http("api.test").get("/").respond(200, body="from multi")

    body = io.BytesIO()
    multi = pycurl.CurlMulti()
    curl = pycurl.Curl()
    configure(curl, "http://api.test/", body)
    multi.add_handle(curl)
    while multi.perform()[1]:
        multi.select(1.0)
    multi.remove_handle(curl)
    # pycurl closes the pooled connection in C here, without the closesocket callback,
    # and warns; the fixture ignores that one warning, and the ledger sees in
    # /proc/self/fd that the descriptor is gone, so it is not a leak.
    multi.close()  # keep the easy handle alive until its multi is closed
    curl.close()

    assert body.getvalue() == b"from multi"


# --8<-- [end:multi]
