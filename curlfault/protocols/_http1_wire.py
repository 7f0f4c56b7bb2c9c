"""How the fake HTTP/1.1 server's responses become bytes, and the cache of those bytes.

h11 frames every response (``_serialize``); a keep-alive GET's response is framed once on a
template connection and kept, on the response object and, for a small one, by its content
(``_keepalive_bytes``), since the same answer is sent again and again. ``error_response_bytes``
is how a request the fake refuses is answered (HTTP/1.1 and the WebSocket handshake).
"""

from __future__ import annotations

from collections.abc import Iterable

import h11

from .._http import Response, reason_phrase

__all__ = ["error_response_bytes", "keepalive_bytes", "serialize"]

# A keep-alive HTTP/1.1 GET: the request a cached serialization of a response answers.
_TEMPLATE_REQUEST = b"GET / HTTP/1.1\r\nHost: curlfault\r\n\r\n"
# h11's bytes for a keep-alive GET's response, by (status, headers, body): bounded in
# entries, in body size and in bytes held (key bodies and framed bytes), like ``_PARSED``.
_WireKey = tuple[int, tuple[tuple[str, str], ...], bytes, str | None]
_WIRE: dict[_WireKey, bytes] = {}
_WIRE_MAX = 512
_WIRE_MAX_BODY = 64 * 1024
_WIRE_MAX_HELD = 8 * 1024 * 1024
_wire_held = 0


def error_response_bytes(
    h: h11.Connection, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """``h``'s bytes for a text/plain ``status`` response of ``body`` with ``Connection:
    close`` (and ``headers``): how the fake answers a request it refuses."""
    head = [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *headers,
    ]
    data = h.send(h11.Response(status_code=status, headers=head, reason=reason_phrase(status)))
    data = data or b""
    data += h.send(h11.Data(data=body)) or b""
    data += h.send(h11.EndOfMessage()) or b""
    return data


def keepalive_bytes(response: Response) -> bytes:
    """h11's bytes for ``response`` to a keep-alive HTTP/1.1 GET, or b"" if it must close.

    Made with a template connection, then cached on the response object and, for a small
    response, by its content: each test declares its routes anew, so an equal response
    comes back as a new object, and h11 would frame it the same way again.
    """
    data = response.wire.get("keepalive-get")
    if data is None:
        key = _wire_key(response)
        data = _WIRE.get(key) if key is not None else None
        if data is None:
            template = h11.Connection(h11.SERVER)
            template.receive_data(_TEMPLATE_REQUEST)
            template.next_event()
            template.next_event()
            data = serialize(template, response, False, True)
            if template.our_state is not h11.DONE:  # the response itself closes
                data = b""
            if key is not None:
                _remember_wire(key, data)
        response.wire["keepalive-get"] = data
    return data


def _remember_wire(key: _WireKey, data: bytes) -> None:
    global _wire_held
    size = len(key[2]) + len(data)
    if len(_WIRE) < _WIRE_MAX and _wire_held + size <= _WIRE_MAX_HELD:
        _WIRE[key] = data
        _wire_held += size


def _wire_key(response: Response) -> _WireKey | None:
    """What h11's framing of ``response`` depends on, if it is small and hashable."""
    body, headers = response.body, response.headers
    if type(body) is not bytes or len(body) > _WIRE_MAX_BODY or type(headers) is not tuple:
        return None
    key = (response.status, headers, body, response.reason)
    try:
        hash(key)
    except TypeError:  # a Response built by hand with unhashable headers
        return None
    return key


def serialize(h: h11.Connection, response: Response, close: bool, with_body: bool) -> bytes:
    """``response`` as ``h`` frames it (adding Content-Length, and Connection: close)."""
    headers = list(response.headers)
    names = {k.lower() for k, _ in headers}
    if "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(response.body))))
    if close and "connection" not in names:
        headers.append(("Connection", "close"))
    phrase = reason_phrase(response.status, response.reason)
    out = [h.send(h11.Response(status_code=response.status, headers=headers, reason=phrase)) or b""]
    if response.body and with_body:
        out.append(h.send(h11.Data(data=response.body)) or b"")
    out.append(h.send(h11.EndOfMessage()) or b"")
    return b"".join(out)
