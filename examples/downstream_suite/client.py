"""The code under test: a small JSON-over-HTTP client built on pycurl."""

from __future__ import annotations

import io
import json
from typing import Any

import pycurl

# One handle per base URL, reused so its connection is reused: faster, but nothing ever
# closes these handles, so each keeps a connection (a descriptor) open for good.
_HANDLES: dict[str, pycurl.Curl] = {}


def get_json(url: str) -> Any:
    """GET ``url`` on a fresh handle, closed when done."""
    curl = pycurl.Curl()
    try:
        return _get(curl, url)
    finally:
        curl.close()


def get_json_cached(base: str, path: str) -> Any:
    """GET ``base + path`` on the handle kept for ``base``."""
    curl = _HANDLES.get(base)
    if curl is None:
        curl = _HANDLES[base] = pycurl.Curl()
    return _get(curl, base + path)


def close_all() -> None:
    """Close the cached handles (and their connections)."""
    while _HANDLES:
        _HANDLES.popitem()[1].close()


def _get(curl: pycurl.Curl, url: str) -> Any:
    body = io.BytesIO()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.TIMEOUT, 10)
    curl.perform()
    return json.loads(body.getvalue())
