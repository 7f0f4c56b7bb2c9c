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
from _common import BIG_BODY, BODY, RESPONSE, TIMEOUT, basic_options, drain, expect
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

    options: dict[int, Any] = {}

    def get(self) -> None:
        c = pycurl.Curl()  # InterceptedCurl while the batch runs
        buf = io.BytesIO()
        basic_options(c, self.url, buf, own_proxy=False)
        for option, value in self.options.items():
            c.setopt(option, value)
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


class CfHttps12(CfHttps):
    key = "cf.https12"
    label = "curlfault: HTTPS GET, TLS 1.2, fresh handle (full handshake)"

    options = {pycurl.SSLVERSION: pycurl.SSLVERSION_TLSv1_2 | pycurl.SSLVERSION_MAX_TLSv1_2}

    def end(self) -> None:
        try:
            versions = {c.tls.get("version") for c in self.net.connections}
            if versions != {"TLSv1.2"}:
                raise RuntimeError(f"{self.key}: served TLS versions {versions}, not TLS 1.2")
        finally:
            super().end()


class CfHttp2(CfHttps):
    key = "cf.https.h2"
    label = "curlfault: HTTP/2 GET over TLS, fresh handle (full handshake)"

    def declare(self, net: FakeNetwork) -> None:
        net.https(self.host, http2=True).get("/").respond(200, body=self.body)

    options = {pycurl.HTTP_VERSION: pycurl.CURL_HTTP_VERSION_2TLS}

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
    label at its end. ``kind`` says which transfer:

    - ``"fresh"``: a fresh handle per GET (the worst case: tracking's cost is per handle);
    - ``"reused"``: one handle per batch, each GET on its warm keep-alive connection;
    - ``"server"``: a fresh handle per GET against the standard library's
      ``ThreadingHTTPServer`` on 127.0.0.1 in this process, the kind of server a
      downstream suite runs under ``--curlfault-leaks`` (its thread shares the client's
      interpreter lock and processor caches);
    - ``"process"``: the same server in a child process, as a service a suite reaches on
      loopback runs (started before the tests, or in a container).
    """

    batch = 150
    KINDS = ("fresh", "reused", "server", "process")

    def __init__(self, tracked: bool, kind: str = "fresh") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.tracked = tracked
        self.kind = kind
        state = "on" if tracked else "off"
        self.key = f"leaks.{state}" if kind == "fresh" else f"leaks.{kind}.{state}"
        what = {
            "fresh": "real loopback GET, fresh handle",
            "reused": "real loopback GET, reused handle (keep-alive)",
            "server": "real loopback GET, fresh handle, ThreadingHTTPServer",
            "process": "real loopback GET, fresh handle, ThreadingHTTPServer in another process",
        }[kind]
        self.label = f"{what}, under `Tracker(leaks=True)`" if tracked else what
        self.group = "leaks"

    def setup(self) -> None:
        self.served: list[socket.socket] = []
        self.peer: Any = None
        if self.kind in ("server", "process"):
            from _peers import ProcessPeer, StdlibPeer

            self.peer = StdlibPeer() if self.kind == "server" else ProcessPeer()
            self.url = f"http://127.0.0.1:{self.peer.port}/"
            return
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(TIMEOUT)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"

    def _prereq(self, *args: Any) -> int:
        if self.kind == "reused" and self.served:
            conn = self.served[0]
            drain(conn)  # the previous request
        else:
            conn, _ = self.listener.accept()
            self.served.append(conn)
        conn.sendall(RESPONSE)
        return pycurl.PREREQFUNC_OK

    def _new_handle(self) -> Any:
        c = pycurl.Curl()  # a tracked handle while the tracker is installed
        buf = io.BytesIO()
        basic_options(c, self.url, buf)
        if self.peer is None:
            c.setopt(pycurl.PREREQFUNCTION, self._prereq)
        self.configure(c)
        return c, buf

    def begin(self) -> None:
        self.tracker = None
        if self.tracked:
            self.tracker = curlfault.Tracker(leaks=True, label=self.key)
            self.tracker.install()
        self.curl: Any = None
        if self.kind == "reused":
            self.curl, buf = self._new_handle()
            self.curl.perform()  # the connection, untimed
            expect(buf, BODY, self.key)

    def op(self) -> None:
        if self.curl is not None:
            buf = io.BytesIO()
            self.curl.setopt(pycurl.WRITEDATA, buf)
            self.curl.perform()
        else:
            c, buf = self._new_handle()
            c.perform()
            c.close()
            self._close_served()
        expect(buf, BODY, self.key)

    def _close_served(self) -> None:
        for conn in self.served:
            conn.close()
        self.served.clear()

    def configure(self, curl: Any) -> None:
        """More options for the handle (benchmarks/leak_cost.py's callback floors)."""

    def end(self) -> None:
        if self.curl is not None:
            self.curl.close()
            self.curl = None
        self._close_served()
        if self.tracker is not None:
            try:
                self.tracker.check(self.key)
            finally:
                self.tracker.close()

    def teardown(self) -> None:
        if self.peer is not None:
            self.peer.stop()
        else:
            self.listener.close()


def leak_tracking_built() -> bool:
    """Whether this curlfault has the tracker behind ``--curlfault-leaks``."""
    return hasattr(curlfault, "Tracker")
