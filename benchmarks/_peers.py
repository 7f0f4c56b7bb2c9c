"""Peers: real servers on loopback ports, as test suites use them.

* pytest-httpserver: werkzeug's development server in a thread, configured as its pytest fixture
  configures it (``threaded=False``: werkzeug then speaks HTTP/1.0 and closes the connection
  after every response, so a "reused" handle reconnects each time).
* the standard library's ``ThreadingHTTPServer``: a thread per connection, HTTP/1.1 keep-alive,
  Nagle off (``disable_nagle_algorithm``), so it is measured at its best.

Both bind 127.0.0.1 only; an HTTPS variant of each wraps the same server with the same trustme
CA and host name as the TLS floor, pinned with RESOLVE to 127.0.0.1.
"""

from __future__ import annotations

import io
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pycurl
from _common import BIG_BODY, BODY, REAL_CURL, basic_options, expect, join_or_fail, wait_until
from _floors import TLS_HOST, tls_client_options, tls_server_context
from _timing import Case

BATCH = {"fresh": 40, "keepalive": 60, "big": 12, "https": 8}


class _Server:
    """A started server: ``port``, ``stop()``."""

    port: int

    def stop(self) -> None:
        raise NotImplementedError


class HttpServerPeer(_Server):
    def __init__(self, ssl_context: Any = None) -> None:
        from pytest_httpserver import HTTPServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        self.server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ssl_context)
        self.server.expect_request("/").respond_with_data(BODY)
        self.server.expect_request("/big").respond_with_data(BIG_BODY)
        self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        self.server.clear()
        self.server.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = BIG_BODY if self.path == "/big" else BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StdlibPeer(_Server):
    def __init__(self, ssl_context: Any = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="stdlib-peer"
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        join_or_fail(self.thread)
        # Connection threads end when their client closes; every client is closed by now.
        wait_until(
            lambda: not any("process_request" in t.name for t in threading.enumerate()),
            5.0,
            "the standard library server's connection threads",
        )


class ProcessPeer(_Server):
    """The same ``ThreadingHTTPServer`` in a child process: the server a suite reaches on
    loopback when it runs elsewhere (a service started before the tests, a container), so
    that its work shares neither the client's interpreter lock nor its processor caches."""

    def __init__(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        here = str(Path(__file__).resolve().parent)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]);"
            "from _peers import serve_stdlib_forever; serve_stdlib_forever()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, here],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:  # the port, once it listens: 30 s at most
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            line = self.proc.stdout.readline() if sel.select(30.0) else ""
        if not line.strip().isdigit():
            self.proc.kill()
            self.proc.wait(10)
            self.proc.stdout.close()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            raise RuntimeError(f"the server process did not print its port in 30 s: {line!r}")
        self.port = int(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()  # the child ends when its stdin does
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
            raise
        finally:
            self.proc.stdout.close()


def serve_stdlib_forever() -> None:
    """The child of ``ProcessPeer``: serve until stdin closes, then stop."""
    import sys

    peer = StdlibPeer()
    print(peer.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        peer.stop()


PEERS = {
    "httpserver": ("pytest-httpserver", HttpServerPeer),
    "stdlib": ("ThreadingHTTPServer", StdlibPeer),
}


class PeerCase(Case):
    group = "peer"

    def __init__(self, peer: str, kind: str, ca: Any) -> None:
        self.peer = peer
        self.kind = kind
        self.ca = ca
        name, self.factory = PEERS[peer]
        self.key = f"{peer}.{kind}"
        self.batch = BATCH[kind]
        what = {
            "fresh": "GET, fresh handle",
            "keepalive": "GET, reused handle",
            "big": "1 MiB, fresh handle",
            "https": "HTTPS GET, fresh handle",
        }[kind]
        self.label = f"{name}: {what}"
        self.body = BIG_BODY if kind == "big" else BODY

    def setup(self) -> None:
        ctx = tls_server_context(self.ca, TLS_HOST) if self.kind == "https" else None
        self.server = self.factory(ctx)
        port = self.server.port
        if self.kind == "https":
            self.url = f"https://{TLS_HOST}:{port}/"
        else:
            self.url = f"http://127.0.0.1:{port}/" + ("big" if self.kind == "big" else "")

    def _handle(self) -> tuple[Any, io.BytesIO]:
        c = REAL_CURL()
        buf = io.BytesIO()
        basic_options(c, self.url, buf)
        if self.kind == "https":
            tls_client_options(c, self.ca, self.server.port)
        return c, buf

    def begin(self) -> None:
        if self.kind == "keepalive":
            self.curl, self.buf = self._handle()
            self.curl.perform()  # the connection, untimed

    def op(self) -> None:
        if self.kind == "keepalive":
            buf = io.BytesIO()
            self.curl.setopt(pycurl.WRITEDATA, buf)
            self.curl.perform()
            self.buf = buf
            return
        c, buf = self._handle()
        c.perform()
        c.close()
        expect(buf, self.body, self.key)

    def end(self) -> None:
        if self.kind == "keepalive":
            expect(self.buf, BODY, self.key)
            self.curl.close()

    def teardown(self) -> None:
        self.server.stop()
