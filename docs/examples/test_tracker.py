import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pycurl
import pytest

from curlfault import LeakError, Tracker, UnexpectedConnection


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


@pytest.fixture
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(10)


def get(curl, url):
    body = io.BytesIO()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.TIMEOUT, 10)
    curl.perform()
    return body.getvalue()


# --8<-- [start:leaks]
def test_tracker_finds_the_descriptor_a_kept_handle_holds(url):
    with Tracker() as tracker:  # pycurl.Curl() makes tracked handles until the block ends
        tracker.label = "download"  # descriptors opened from now on belong to "download"
        curl = pycurl.Curl()
        assert get(curl, url) == b"hello"  # the connection stays open for reuse

        (record,) = tracker.audit("download").leaked
        assert record.url == url
        with pytest.raises(LeakError, match="descriptor never closed"):
            tracker.check("download")

        curl.close()
        assert tracker.audit("download").ok


# --8<-- [end:leaks]


# --8<-- [start:strict]
def test_strict_tracker_refuses_hosts_not_allowed(url):
    with Tracker(strict=True, allow_hosts=["127.0.0.1"]) as tracker:
        curl = pycurl.Curl()
        try:
            assert get(curl, url) == b"hello"  # allowed
            with pytest.raises(pycurl.error) as refused:
                get(curl, "https://api.example.invalid/v1/users")  # no resolver query either
            assert refused.value.args[0] == pycurl.E_COULDNT_CONNECT
        finally:
            curl.close()

        with pytest.raises(UnexpectedConnection, match=r"api\.example\.invalid:443"):
            tracker.check()


# --8<-- [end:strict]
