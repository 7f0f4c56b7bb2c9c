"""Per-test cost inside a real pytest run, and the hook for leak-tracking overhead.

A generated test module (in a temporary directory, outside this project's pytest config) holds
N tests of each kind, interleaved (empty, floor, curlfault, ...). Every test of a kind but
"empty" makes one GET. A conftest times each test's whole runtest protocol (setup, call,
teardown, reporting) with ``perf_counter_ns`` and writes the times to a JSON file. The cost a
fixture adds per test is the kind's median minus the empty test's median.

Leak tracking (``pytest --curlfault-leaks``) is not built yet. ``leak_overhead`` is the hook:
it asks ``pytest --help`` whether the option exists and, once it does, times a real loopback
transfer per test with and without the option, in interleaved runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import median, p90, quantile

LEAK_OPTION = "--curlfault-leaks"
SUBPROCESS_TIMEOUT = 300

CONFTEST = textwrap.dedent(
    '''
    import io
    import json
    import os
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pycurl
    import pytest

    RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello"
    _times = {}


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        t0 = time.perf_counter_ns()
        yield
        _times[item.name] = time.perf_counter_ns() - t0


    def pytest_sessionfinish(session):
        with open(os.environ["CF_BENCH_OUT"], "w") as f:
            json.dump(_times, f)


    @pytest.fixture
    def prewritten():
        """The floor: a socketpair whose server end already holds the whole response."""
        client, server = socket.socketpair()
        server.send(RESPONSE)
        yield client
        client.close()
        server.close()


    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass


    @pytest.fixture(scope="session")
    def listener():
        """A loopback listener that no thread serves: the test answers from PREREQFUNCTION."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(10)
        yield sock
        sock.close()


    @pytest.fixture(scope="session")
    def stdlib_server():
        """The standard library's ThreadingHTTPServer on 127.0.0.1, for the whole session."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/"
        server.shutdown()
        server.server_close()
        thread.join(5)
    '''
)

MODULE_HEAD = textwrap.dedent(
    """
    import io
    import os

    import pycurl


    def get(url, sock=None):
        c = pycurl.Curl()
        buf = io.BytesIO()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.WRITEDATA, buf)
        c.setopt(pycurl.TIMEOUT, 10)
        if sock is not None:
            c.setopt(pycurl.NOPROXY, "*")
            c.setopt(pycurl.OPENSOCKETFUNCTION, lambda purpose, address: sock.detach())
            c.setopt(pycurl.SOCKOPTFUNCTION, lambda fd, purpose: pycurl.SOCKOPT_ALREADY_CONNECTED)
            c.setopt(pycurl.CLOSESOCKETFUNCTION, lambda fd: os.close(fd) or 0)
        elif not url.startswith("http://api.test"):
            c.setopt(pycurl.NOPROXY, "*")
        c.perform()
        c.close()
        assert buf.getvalue() == b"hello"


    def get_loopback(listener):
        # A real loopback TCP transfer with no server thread: libcurl connects to the
        # listener itself; PREREQFUNCTION (after the connect, before the request is sent)
        # accepts the connection and writes the whole response into it.
        served = []

        def prereq(*args):
            conn, _ = listener.accept()
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello")
            served.append(conn)
            return pycurl.PREREQFUNC_OK

        c = pycurl.Curl()
        buf = io.BytesIO()
        port = listener.getsockname()[1]
        c.setopt(pycurl.URL, f"http://127.0.0.1:{port}/")
        c.setopt(pycurl.WRITEDATA, buf)
        c.setopt(pycurl.TIMEOUT, 10)
        c.setopt(pycurl.NOPROXY, "*")
        c.setopt(pycurl.PREREQFUNCTION, prereq)
        try:
            c.perform()
        finally:
            c.close()
            for conn in served:
                conn.close()
        assert buf.getvalue() == b"hello"
    """
)

KINDS = {
    "empty": "def test_empty_{i}():\n    pass\n",
    "floor": "def test_floor_{i}(prewritten):\n    get('http://127.0.0.1:9/', prewritten)\n",
    "curlfault": (
        "def test_curlfault_{i}(curlfault):\n"
        "    curlfault.http('api.test').get('/').respond(200, body=b'hello')\n"
        "    get('http://api.test/')\n"
    ),
    "httpserver": (
        "def test_httpserver_{i}(httpserver):\n"
        "    httpserver.expect_request('/').respond_with_data('hello')\n"
        "    get(httpserver.url_for('/'))\n"
    ),
    "stdlib": "def test_stdlib_{i}(stdlib_server):\n    get(stdlib_server)\n",
}
# Not a per-test row: the real transfer that leak tracking is measured on.
LOOPBACK = "def test_loopback_{i}(listener):\n    get_loopback(listener)\n"
LABELS = {
    "empty": "empty test (baseline)",
    "floor": "floor fixture: response pre-written into a socketpair",
    "curlfault": "`curlfault` fixture, one endpoint + one GET",
    "httpserver": "pytest-httpserver `httpserver` fixture + one GET",
    "stdlib": "session ThreadingHTTPServer + one GET",
}


def _module(kinds: list[str], n: int) -> str:
    parts = [MODULE_HEAD]
    templates = {**KINDS, "loopback": LOOPBACK}
    for i in range(n):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            parts.append(templates[kind].format(i=i))
    return "\n\n".join(parts)


def _run(directory: Path, extra: list[str]) -> dict[str, int]:
    out = directory / "times.json"
    env = dict(os.environ, CF_BENCH_OUT=str(out), PYTEST_HTTPSERVER_HOST="127.0.0.1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(directory)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pytest run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    times: dict[str, int] = json.loads(out.read_text())
    out.unlink()
    return times


def _by_kind(times: dict[str, int], kinds: list[str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {k: [] for k in kinds}
    for name, ns in times.items():
        grouped[name.split("_")[1]].append(ns)
    return grouped


def per_test(n: int, rounds: int) -> dict[str, list[int]]:
    """ns per test, by kind, over ``rounds`` pytest runs of ``n`` interleaved tests per kind."""
    kinds = list(KINDS)
    samples: dict[str, list[int]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="curlfault-bench-") as tmp:
        directory = Path(tmp)
        (directory / "conftest.py").write_text(CONFTEST)
        (directory / "test_bench.py").write_text(_module(kinds, n))
        for _ in range(rounds):
            for kind, values in _by_kind(_run(directory, []), kinds).items():
                samples[kind].extend(values)
    return samples


def summarize(samples: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Median and p90 per test, and the median cost added over an empty test, in us."""
    base = median(samples["empty"])
    return {
        kind: {
            "median_us": median(v) / 1000,
            "p90_us": p90(v) / 1000,
            "added_us": (median(v) - base) / 1000,
            "n": len(v),
        }
        for kind, v in samples.items()
    }


# leak tracking -----------------------------------------------------------------------------


def leak_option_available() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    return LEAK_OPTION in proc.stdout


def leak_overhead(n: int, rounds: int) -> dict[str, float] | None:
    """Per-test cost of a real loopback GET with and without leak tracking; None if not built.

    Each round runs the same module three times: without the option, with it, and without it
    again (an A/A control), rotating the order. The overhead is the median over rounds of
    median(with) / median(without); the control's ratio says how much of that is noise.
    """
    if not leak_option_available():
        return None
    ratios: list[float] = []
    controls: list[float] = []
    on_all: list[int] = []
    off_all: list[int] = []
    with tempfile.TemporaryDirectory(prefix="curlfault-bench-leaks-") as tmp:
        directory = Path(tmp)
        (directory / "conftest.py").write_text(CONFTEST)
        (directory / "test_bench.py").write_text(_module(["loopback"], n))
        runs = [("off", []), ("on", [LEAK_OPTION]), ("control", [])]
        for r in range(rounds):
            got: dict[str, list[int]] = {}
            for name, flag in runs[r % 3 :] + runs[: r % 3]:
                got[name] = _by_kind(_run(directory, flag), ["loopback"])["loopback"]
            ratios.append(median(got["on"]) / median(got["off"]))
            controls.append(median(got["control"]) / median(got["off"]))
            on_all += got["on"]
            off_all += got["off"] + got["control"]
    return {
        "off_us": median(off_all) / 1000,
        "on_us": median(on_all) / 1000,
        "overhead": median(ratios) - 1.0,
        "overhead_p10": quantile(ratios, 0.1) - 1.0,
        "overhead_p90": quantile(ratios, 0.9) - 1.0,
        "control": median(controls) - 1.0,
        "control_p10": quantile(controls, 0.1) - 1.0,
        "control_p90": quantile(controls, 0.9) - 1.0,
        "rounds": rounds,
    }
