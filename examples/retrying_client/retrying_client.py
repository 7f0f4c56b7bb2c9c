"""A small retrying pycurl downloader: the client under test in this example.

It retries what is worth retrying (a refused connection, a timeout, a reset or a cut
transfer) with a short backoff, and resumes a cut download with a Range request instead of
starting again.
"""

from __future__ import annotations

import io
import time

import pycurl

# CURLcodes worth another attempt: couldn't connect, partial file, timed out, got nothing,
# receive error.
RETRYABLE = {7, 18, 28, 52, 56}


class DownloadFailed(Exception):
    def __init__(self, code: int, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts (last CURLcode {code})")
        self.code = code
        self.attempts = attempts


def download(url: str, *, attempts: int = 4, timeout: float = 2.0, backoff: float = 0.01) -> bytes:
    """The body at ``url``, resuming with Range after a cut; raises DownloadFailed."""
    received = bytearray()
    code = 0
    for attempt in range(1, attempts + 1):
        buf = io.BytesIO()
        curl = pycurl.Curl()
        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.WRITEDATA, buf)
            curl.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
            if received:
                curl.setopt(pycurl.RANGE, f"{len(received)}-")
            try:
                curl.perform()
                code = 0
            except pycurl.error as exc:
                code = exc.args[0]
            status = curl.getinfo(pycurl.RESPONSE_CODE)
        finally:
            curl.close()
        if code == 0 and status == 206 and received:
            return bytes(received + buf.getvalue())
        if code == 0 and status == 200:
            return buf.getvalue()  # a server that ignores Range sends everything again
        if code not in RETRYABLE and code != 0:
            raise DownloadFailed(code, attempt)
        if code == 18 or code == 56:
            received += buf.getvalue()  # keep what arrived before the cut
        time.sleep(backoff * attempt)
    raise DownloadFailed(code, attempts)
