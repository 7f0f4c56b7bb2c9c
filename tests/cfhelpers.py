"""Helpers for tests that drive real pycurl (imported as ``cfhelpers``: tests/ is on sys.path)."""

from __future__ import annotations

import io
from typing import Any

import pycurl


class Result:
    """What one transfer gave: CURLcode, HTTP status and body."""

    def __init__(self, code: int, status: int | None, body: bytes, headers: bytes) -> None:
        self.code = code
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"Result(code={self.code}, status={self.status}, body={self.body[:60]!r})"


def transfer(url: str, curl: Any = None, **opts: Any) -> Result:
    """Run one transfer with real pycurl; never raises pycurl.error (returns the code)."""
    own = curl is None
    c = pycurl.Curl() if own else curl
    body, headers = io.BytesIO(), io.BytesIO()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEDATA, body)
    c.setopt(pycurl.HEADERFUNCTION, headers.write)
    c.setopt(pycurl.TIMEOUT, 20)
    for name, value in opts.items():
        c.setopt(getattr(pycurl, name), value)
    code = 0
    try:
        c.perform()
    except pycurl.error as exc:
        code = exc.args[0]
    status = c.getinfo(pycurl.RESPONSE_CODE) or None
    if own:
        c.close()
    return Result(code, status, body.getvalue(), headers.getvalue())
