"""The curlfault rows: the same requests as the floors, served by a ``FakeNetwork``.

All networks share one ``Loop`` (as the pytest plugin's session loop does), and every batch
gets a fresh network: a test's network lives for one test, so its records never grow to the
size of a whole benchmark run.
"""

from __future__ import annotations

import io
import socket
from typing import Any

import pycurl
from _common import BIG_BODY, BODY, RESPONSE, TIMEOUT, basic_options, expect
from _timing import Case

import curlfault
from curlfault import FakeNetwork, Loop


class _NetCase(Case):
    group = "curlfault"
    host = "api.test"
    url = "http://api.test/"
    body = BODY

    def __init__(self, loop: Loop, ca: Any = None) -> None:
        self.loop = loop
        self.ca = ca

    def declare(self, net: FakeNetwork) -> None:
        net.http(self.host).get("/").respond(200, body=self.body)

    def begin(self) -> None:
        self.net = FakeNetwork(loop=self.loop, ca=self.ca, label=self.key)
        self.declare(self.net)
        self._intercept = self.net.intercept()
        self._intercept.__enter__()

    def end(self) -> None:
        try:
            self._intercept.__exit__(None, None, None)
            self.net.check()
        finally:
            self.net.close()

    def op(self) -> None:
        self.get()

    def get(self) -> None:
        c = pycurl.Curl()  # InterceptedCurl while the batch runs
        buf = io.BytesIO()
        basic_options(c, self.url, buf, own_proxy=False)
        c.perform()
        c.close()
        expect(buf, self.body, self.key)


class CfFresh(_NetCase):
    key = "cf.get.fresh"
    label = "curlfault: GET, fresh handle"
    batch = 100


class CfKeepAlive(_NetCase):
    key = "cf.get.keepalive"
    label = "curlfault: GET, reused handle (keep-alive)"
    batch = 200

    def begin(self) -> None:
        super().begin()
        self.curl = c = pycurl.Curl()
        self.buf = io.BytesIO()
        basic_options(c, self.url, self.buf, own_proxy=False)
        c.perform()  # the connection, untimed

    def op(self) -> None:
        buf = io.BytesIO()
        self.curl.setopt(pycurl.WRITEDATA, buf)
        self.curl.perform()
        self.buf = buf

    def end(self) -> None:
        try:
            expect(self.buf, BODY, self.key)
            self.curl.close()
            opened = len(self.net.connections)
            if opened != 1:
                raise RuntimeError(f"{self.key}: libcurl opened {opened} connections, not 1")
        finally:
            super().end()


class CfBig(_NetCase):
    key = "cf.big"
    label = "curlfault: 1 MiB, fresh handle"
    batch = 20
    body = BIG_BODY


class CfHttps(_NetCase):
    key = "cf.https"
    label = "curlfault: HTTPS GET, fresh handle (full handshake)"
    batch = 12
    host = "secure.test"
    url = "https://secure.test/"

    def declare(self, net: FakeNetwork) -> None:
        net.https(self.host).get("/").respond(200, body=self.body)

    def begin(self) -> None:
        super().begin()
        # The certificate is made when the endpoint is declared (per network, as per test);
        # one request outside the clock puts the CA blob and key material in place.
        self.get()


class CfHttp2(CfHttps):
    key = "cf.https.h2"
    label = "curlfault: HTTP/2 GET over TLS, fresh handle (full handshake)"

    def declare(self, net: FakeNetwork) -> None:
        net.https(self.host, http2=True).get("/").respond(200, body=self.body)

    def get(self) -> None:
        c = pycurl.Curl()
        buf = io.BytesIO()
        basic_options(c, self.url, buf, own_proxy=False)
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        c.perform()
        c.close()
        expect(buf, self.body, self.key)

    def end(self) -> None:
        try:
            versions = {r.http_version for r in self.net.requests}
            if versions != {"2"}:
                raise RuntimeError(f"{self.key}: served HTTP versions {versions}, not HTTP/2")
        finally:
            super().end()


class CfFixture(Case):
    """What the ``curlfault`` fixture does per test, minus pytest: network, intercept, check."""

    key = "cf.fixture"
    label = "curlfault fixture: setup + teardown (FakeNetwork + intercept + check + close)"
    batch = 300
    group = "fixture"

    def __init__(self, loop: Loop, ca: Any) -> None:
        self.loop = loop
        self.ca = ca

    def op(self) -> None:
        net = FakeNetwork(loop=self.loop, ca=lambda: self.ca, label="bench::test")
        with net.intercept():
            pass
        net.check()
        net.close()


class CfFixtureEndpoint(CfFixture):
    key = "cf.fixture.endpoint"
    label = "curlfault fixture: setup + teardown, one endpoint and one route declared"

    def op(self) -> None:
        net = FakeNetwork(loop=self.loop, ca=lambda: self.ca, label="bench::test")
        with net.intercept():
            net.http("api.test").get("/").respond(200, body=BODY)
        net.check()
        net.close()


class Loopback(Case):
    """A real loopback TCP GET that libcurl connects itself, with no server thread: the
    listener's backlog completes the handshake and ``PREREQFUNCTION`` (after the connect,
    before the request) accepts the connection and writes the whole response into it.

    ``tracked=True`` makes the handle under a ``curlfault.Tracker(leaks=True)`` installed for
    the batch, as ``pytest --curlfault-leaks`` does for a whole run, and audits the batch's
    label at its end.
    """

    batch = 150

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked
        self.key = "leaks.on" if tracked else "leaks.off"
        self.label = (
            "real loopback GET, fresh handle, under `Tracker(leaks=True)`"
            if tracked
            else "real loopback GET, fresh handle (served from PREREQFUNCTION)"
        )
        self.group = "leaks"

    def setup(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(TIMEOUT)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.served: list[socket.socket] = []

    def _prereq(self, *args: Any) -> int:
        conn, _ = self.listener.accept()
        conn.sendall(RESPONSE)
        self.served.append(conn)
        return pycurl.PREREQFUNC_OK

    def begin(self) -> None:
        self.tracker = None
        if self.tracked:
            self.tracker = curlfault.Tracker(leaks=True, label=self.key)
            self.tracker.install()

    def op(self) -> None:
        c = pycurl.Curl()  # a tracked handle while the tracker is installed
        buf = io.BytesIO()
        basic_options(c, self.url, buf)
        c.setopt(pycurl.PREREQFUNCTION, self._prereq)
        self.configure(c)
        c.perform()
        c.close()
        for conn in self.served:
            conn.close()
        self.served.clear()
        expect(buf, BODY, self.key)

    def configure(self, curl: Any) -> None:
        """More options for the handle (benchmarks/leak_cost.py's callback floors)."""

    def end(self) -> None:
        if self.tracker is not None:
            try:
                self.tracker.check(self.key)
            finally:
                self.tracker.close()

    def teardown(self) -> None:
        self.listener.close()


def leak_tracking_built() -> bool:
    """Whether this curlfault has the tracker behind ``--curlfault-leaks``."""
    return hasattr(curlfault, "Tracker")
