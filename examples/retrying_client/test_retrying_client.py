"""Tests of retrying_client.download against curlfault fakes: each failure is a real
OS-level event that libcurl meets (refusal, stall, RST), not a mocked exception."""

from __future__ import annotations

import re

import pytest
from retrying_client import DownloadFailed, download

from curlfault import Request, Response, faults

DATA = bytes(range(256)) * 400  # 100 KiB


def ranged(request: Request) -> Response:
    """Serve DATA, honouring a ``Range: bytes=N-`` header like a real file server."""
    match = re.fullmatch(r"bytes=(\d+)-", request.header("range") or "")
    if match is None:
        return Response.make(200, body=DATA)
    start = int(match.group(1))
    return Response.make(
        206,
        body=DATA[start:],
        headers={"Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"},
    )


def test_retry_after_refused_connections(curlfault) -> None:
    files = curlfault.http("files.test")
    files.get("/data").respond(200, body=DATA)
    files.connection_faults(faults.refuse(), faults.refuse())
    assert download("http://files.test/data") == DATA
    assert [c.refused for c in files.connections] == [True, True, False]


def test_timeout_then_success(curlfault) -> None:
    files = curlfault.http("files.test")
    files.get("/data").respond(200, body=DATA, fault=faults.stall()).respond(200, body=DATA)
    assert download("http://files.test/data", timeout=0.3) == DATA
    assert len(files.requests) == 2


def test_reset_mid_download_then_resume_with_range(curlfault) -> None:
    files = curlfault.http("files.test")
    route = files.get("/data")
    route.respond(200, body=DATA, fault=faults.reset(after_bytes=30_000))
    route.handle(ranged)
    assert download("http://files.test/data") == DATA
    first, second = files.requests
    assert first.header("range") is None
    resumed_at = int(second.header("range").removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(DATA)  # it asked only for what it did not have


def test_gives_up_on_a_host_that_stays_down(curlfault) -> None:
    curlfault.refuse("files.test")
    with pytest.raises(DownloadFailed) as info:
        download("http://files.test/data", attempts=3)
    assert (info.value.code, info.value.attempts) == (7, 3)


def test_does_not_retry_what_retrying_cannot_fix(curlfault) -> None:
    files = curlfault.http("files.test")
    files.get("/data").respond(200, body=DATA, fault=faults.bad_content_length())
    with pytest.raises(DownloadFailed) as info:
        download("http://files.test/data")
    assert (info.value.code, info.value.attempts) == (8, 1)
