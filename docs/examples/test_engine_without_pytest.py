import contextlib
import io
import unittest
import warnings

import pycurl
import pytest

from curlfault import FakeNetwork, LeakError, Loop


def get(curl, url):
    body = io.BytesIO()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.TIMEOUT, 10)
    curl.perform()
    return body.getvalue()


# --8<-- [start:intercept]
def test_intercept_routes_every_handle_made_inside_the_block():
    with FakeNetwork() as net:  # leaving the block runs net.check(), then net.close()
        api = net.http("api.test")
        api.get("/status").respond(200, body="up")

        with net.intercept():
            curl = pycurl.Curl()  # made inside the block: routed through net
        try:
            assert get(curl, "http://api.test/status") == b"up"  # still routed
        finally:
            curl.close()

        assert api.requests[0].path == "/status"


# --8<-- [end:intercept]


# --8<-- [start:attach]
def test_attach_routes_a_handle_made_earlier():
    curl = pycurl.Curl()  # made before any fake network existed
    curl.setopt(pycurl.USERAGENT, "inventory-client/1.0")  # set your own options first

    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(200, body="hi")
        net.attach(curl)
        try:
            assert get(curl, "http://api.test/") == b"hi"
        finally:
            curl.close()  # before check(): an open connection is a leak

        assert net.requests[0].header("User-Agent") == "inventory-client/1.0"


# --8<-- [end:attach]


# --8<-- [start:check]
def test_check_reports_a_descriptor_that_was_never_closed():
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(200)
        with net.intercept():
            curl = pycurl.Curl()
        get(curl, "http://api.test/")

        # The handle keeps its connection alive for reuse, so its descriptor is open.
        with pytest.raises(LeakError, match="descriptor never closed"):
            net.check()
        curl.close()
    finally:
        net.close()


# --8<-- [end:check]


# --8<-- [start:loop]
def test_networks_can_share_one_loop_thread():
    with Loop() as loop:  # stopped when the block ends
        for n in range(3):
            with FakeNetwork(loop=loop) as net, net.intercept():
                net.http("api.test").get("/").respond(200, body=str(n))
                curl = pycurl.Curl()
                try:
                    assert get(curl, "http://api.test/") == str(n).encode()
                finally:
                    curl.close()


# --8<-- [end:loop]


# --8<-- [start:multi]
def test_a_curlmulti_under_warnings_as_errors():
    with FakeNetwork() as net, net.intercept():
        net.http("api.test").get("/a").respond(200, body="A")
        multi, curl = pycurl.CurlMulti(), pycurl.Curl()  # keep both until the multi is closed
        body = io.BytesIO()
        curl.setopt(pycurl.URL, "http://api.test/a")
        curl.setopt(pycurl.WRITEDATA, body)
        curl.setopt(pycurl.TIMEOUT, 10)
        multi.add_handle(curl)
        while multi.perform()[1]:
            multi.select(0.1)
        multi.remove_handle(curl)
        with warnings.catch_warnings():
            # pycurl closes the pooled connection itself, in C, and says so; not a leak
            warnings.filterwarnings(
                "ignore", "closesocket_callback failed to acquire thread", RuntimeWarning
            )
            multi.close()
        curl.close()
        assert body.getvalue() == b"A"


# --8<-- [end:multi]


# --8<-- [start:unittest]
class InventoryClientTest(unittest.TestCase):
    def setUp(self):
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)  # runs net.check(), then closes the network
        # The label names this test in leak reports ("opened in ...").
        self.net = stack.enter_context(FakeNetwork(label=self.id()))
        stack.enter_context(self.net.intercept())
        self.api = self.net.http("inventory.test")

    def test_lists_items(self):
        self.api.get("/items").respond(200, json=["bolt", "nut"])
        curl = pycurl.Curl()
        try:
            body = get(curl, "http://inventory.test/items")
        finally:
            curl.close()
        assert body == b'["bolt", "nut"]'


# --8<-- [end:unittest]
