"""``ranges(body)``: a route handler that serves byte ranges of one body, as a file server does.

For clients that resume downloads (``RANGE``, ``RESUME_FROM``) or fetch pieces: one range
gets 206 with ``Content-Range``, a range that starts past the end gets 416, an ``If-Range``
that does not match the ETag (or a date) gets the whole body, and so does a request for
several ranges (a server may always answer 200; multipart/byteranges is not modelled).
"""

from __future__ import annotations

import re

from ._errors import UsageError
from ._http import Request, Response
from .faults import StreamFault

__all__ = ["ranges"]

_SPEC = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


class _Ranges:
    """The handler ``ranges()`` returns (a callable with a readable repr)."""

    def __init__(self, body: bytes, etag: str | None, fault: StreamFault | None) -> None:
        self.body = body
        self.etag = etag
        self.fault = fault
        base = [("Accept-Ranges", "bytes")]
        if etag is not None:
            base.append(("ETag", etag))
        self.base = tuple(base)

    def __call__(self, request: Request) -> Response:
        body, total = self.body, len(self.body)
        spec = request.header("range")
        if spec is None or not self._if_range_holds(request.header("if-range")):
            return Response.make(200, body=body, headers=self.base, fault=self.fault)
        match = _SPEC.fullmatch(spec)
        if match is None:
            # Several ranges, or a unit other than bytes: the whole body is a valid answer.
            return Response.make(200, body=body, headers=self.base, fault=self.fault)
        first, last = match.group(1), match.group(2)
        if not first and not last:
            return Response.make(200, body=body, headers=self.base, fault=self.fault)
        if not first:  # bytes=-N: the last N bytes
            start, end = max(0, total - int(last)), total - 1
        else:
            start = int(first)
            end = min(int(last), total - 1) if last else total - 1
            if last and int(last) < start:
                # An invalid range is ignored (RFC 9110, 14.2): the whole body.
                return Response.make(200, body=body, headers=self.base, fault=self.fault)
        if start >= total or end < start:
            return Response.make(416, headers=(*self.base, ("Content-Range", f"bytes */{total}")))
        headers = (*self.base, ("Content-Range", f"bytes {start}-{end}/{total}"))
        return Response.make(206, body=body[start : end + 1], headers=headers, fault=self.fault)

    def _if_range_holds(self, if_range: str | None) -> bool:
        """Whether a Range may be honoured: no If-Range, or one naming our strong ETag."""
        if if_range is None:
            return True
        etag = self.etag
        return etag is not None and not etag.startswith("W/") and if_range.strip() == etag

    def __repr__(self) -> str:
        etag = f", etag={self.etag!r}" if self.etag is not None else ""
        fault = f", fault={self.fault!r}" if self.fault is not None else ""
        return f"ranges(<{len(self.body)} bytes>{etag}{fault})"


def ranges(
    body: bytes | str, *, etag: str | None = None, fault: StreamFault | None = None
) -> _Ranges:
    """A handler for ``route.handle()`` that serves ``body`` and byte ranges of it.

    ``api.get("/file").handle(ranges(data, etag='"v1"'))``: a request without ``Range`` gets
    200 and the whole body (with ``Accept-Ranges: bytes`` and the ETag); ``Range:
    bytes=1000-`` gets 206 and ``Content-Range: bytes 1000-{n-1}/{n}``; a range that starts
    at or past the end gets 416 with ``Content-Range: bytes */{n}`` (libcurl 8.23 returns 0
    for it, 22 with ``FAILONERROR``); an ``If-Range`` other than the ETag gets 200 and the
    whole body (a ``RESUME_FROM`` transfer then fails with 33, ``RANGE_ERROR``). ``fault``
    applies to every response it makes; give steps of their own to cut only the first:
    ``.handle(ranges(data, fault=...)).handle(ranges(data))``.
    """
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise UsageError(f"ranges() serves bytes or str, got {type(body).__name__}")
    if etag is not None and (not isinstance(etag, str) or not etag.strip().endswith('"')):
        raise UsageError(f"etag must be a quoted entity tag such as '\"v1\"', got {etag!r}")
    if fault is not None and not isinstance(fault, StreamFault):
        raise UsageError(f"fault={fault!r} is not a stream fault")
    return _Ranges(bytes(body), etag, fault)
