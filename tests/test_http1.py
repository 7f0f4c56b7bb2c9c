"""HTTP/1.1 fakes driven by real pycurl: routes, steps, records, framing."""

from __future__ import annotations

import io
import json
from typing import Any

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import FakeNetwork, Response, UnmatchedRequest, UsageError, faults


def test_get_json_and_request_record(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/items").respond(200, json=[1, 2])
    r = transfer("http://api.test/items?page=2", HTTPHEADER=["X-Trace: abc"])
    assert (r.code, r.status) == (0, 200)
    assert json.loads(r.body) == [1, 2]
    assert b"application/json" in r.headers.lower()
    (req,) = api.requests
    assert (req.method, req.path, req.query) == ("GET", "/items", "page=2")
    assert req.args == {"page": ["2"]}
    assert req.header("x-trace") == "abc"
    assert req.header("Host") == "api.test"


def test_json_none_sends_null_and_no_json_sends_no_body(curlfault) -> None:
    # Before, json=None was taken for "no JSON": a JSON null could not be sent.
    api = curlfault.http("api.test")
    api.get("/null").respond(200, json=None)
    api.get("/empty").respond(200)
    r = transfer("http://api.test/null")
    assert (r.code, r.status, r.body) == (0, 200, b"null")
    assert b"content-type: application/json" in r.headers.lower()
    r = transfer("http://api.test/empty")
    assert (r.code, r.status, r.body) == (0, 200, b"")
    assert b"content-type" not in r.headers.lower()
    with pytest.raises(UsageError, match="give body= or json=, not both"):
        Response.make(200, body="x", json=None)


@pytest.mark.parametrize("http2", [False, True])
def test_request_headers_are_lowercased_and_trailers_not_kept(curlfault, http2) -> None:
    """What docs/api.md says of Request.headers: names lowercased, values as sent, in order;
    no trailer fields; over HTTP/2 no pseudo-headers (so no host)."""
    api = curlfault.http("api.test", http2=http2)
    api.put("/x").respond(200)
    version = pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE if http2 else pycurl.CURL_HTTP_VERSION_1_1
    r = transfer(
        "http://api.test/x",
        HTTP_VERSION=version,
        UPLOAD=1,
        READDATA=io.BytesIO(b"abc"),
        HTTPHEADER=["Transfer-Encoding: chunked", "Trailer: X-Trail", "X-MiXed: Va Lue"],
        TRAILERFUNCTION=lambda: ["X-Trail: t"],
    )
    assert (r.code, r.status) == (0, 200)
    (req,) = api.requests
    assert (req.http_version, req.body) == ("2" if http2 else "1.1", b"abc")
    names = [name for name, _ in req.headers]
    assert names == [name.lower() for name in names]
    assert ("trailer", "X-Trail") in req.headers
    assert ("x-mixed", "Va Lue") in req.headers
    assert "x-trail" not in names
    assert req.header("X-MiXed") == "Va Lue"
    if http2:
        assert not [name for name in names if name.startswith(":")]
        assert req.header("host") is None
    else:
        assert names.index("host") < names.index("x-mixed")  # in the order sent
        assert req.header("host") == "api.test"


def test_steps_in_order_last_repeats(curlfault) -> None:
    api = curlfault.http("api.test")
    api.post("/items").respond(503).respond(201)
    statuses = [transfer("http://api.test/items", POSTFIELDS="a=1").status for _ in range(4)]
    assert statuses == [503, 201, 201, 201]
    assert [r.body for r in api.requests] == [b"a=1"] * 4


def test_port_and_https_default_ports_are_distinct(curlfault) -> None:
    a = curlfault.http("api.test", 8080)
    a.get("/").respond(body="eight")
    b = curlfault.http("api.test")
    b.get("/").respond(body="eighty")
    assert transfer("http://api.test:8080/").body == b"eight"
    assert transfer("http://api.test/").body == b"eighty"


def test_keep_alive_reuses_one_connection(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/a").respond(body="A")
    c = pycurl.Curl()
    try:
        for _ in range(5):
            assert transfer("http://api.test/a", curl=c).body == b"A"
    finally:
        c.close()
    assert len(api.connections) == 1
    assert {r.connection_id for r in api.requests} == {api.connections[0].id}


def test_connection_close_from_client_closes_each_time(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/a").respond(body="A")
    c = pycurl.Curl()
    try:
        for _ in range(3):
            r = transfer("http://api.test/a", curl=c, HTTPHEADER=["Connection: close"])
            assert r.body == b"A"
            assert b"connection: close" in r.headers.lower()
    finally:
        c.close()
    assert len(api.connections) == 3


def test_server_connection_close_header(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/a").respond(body="A", headers={"Connection": "close"})
    c = pycurl.Curl()
    try:
        assert transfer("http://api.test/a", curl=c).body == b"A"
        assert transfer("http://api.test/a", curl=c).body == b"A"
    finally:
        c.close()
    assert len(api.connections) == 2


def test_head_has_no_body(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/file").respond(body=b"x" * 100)
    r = transfer("http://api.test/file", NOBODY=1)
    assert (r.code, r.status, r.body) == (0, 200, b"")
    assert b"content-length: 100" in r.headers.lower()
    assert api.requests[0].method == "HEAD"


def test_chunked_request_body(curlfault) -> None:
    api = curlfault.http("api.test")
    api.post("/upload").respond(204)
    chunks = [b"hello ", b"chunked ", b"world"]
    r = transfer(
        "http://api.test/upload",
        POST=1,
        HTTPHEADER=["Transfer-Encoding: chunked"],
        READFUNCTION=lambda n: chunks.pop(0) if chunks else b"",
    )
    assert (r.code, r.status) == (0, 204)
    assert api.requests[0].body == b"hello chunked world"
    assert api.requests[0].header("transfer-encoding") == "chunked"


def test_expect_100_continue(curlfault) -> None:
    api = curlfault.http("api.test")
    api.put("/blob").respond(201)
    data = b"z" * 200_000
    r = transfer(
        "http://api.test/blob",
        UPLOAD=1,
        READDATA=io.BytesIO(data),
        INFILESIZE=len(data),
        HTTPHEADER=["Expect: 100-continue"],
    )
    assert (r.code, r.status) == (0, 201)
    assert api.requests[0].body == data
    assert any("100 Continue" in text for _, text in api.connections[0].events)


def test_large_response_body(curlfault) -> None:
    api = curlfault.http("api.test")
    body = bytes(range(256)) * 4096  # 1 MiB
    api.get("/big").respond(body=body)
    r = transfer("http://api.test/big")
    assert r.code == 0
    assert r.body == body


def test_chunked_response(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/c").respond(body=b"abc" * 1000, headers={"Transfer-Encoding": "chunked"})
    r = transfer("http://api.test/c")
    assert (r.code, r.body) == (0, b"abc" * 1000)


def test_clear_replaces_a_routes_steps_from_the_next_request_on(curlfault) -> None:
    """A fixture declares the happy path; a test replaces it. After two requests, clear()
    and two new steps: the third request takes the first new step, not the second."""
    route = curlfault.http("api.test").get("/f").respond(200, body="happy")
    assert transfer("http://api.test/f").body == b"happy"
    assert transfer("http://api.test/f").body == b"happy"
    route.clear().respond(503).respond(200, body="again", fault=faults.close(at="body"))
    assert transfer("http://api.test/f").status == 503
    assert transfer("http://api.test/f").code == pycurl.E_PARTIAL_FILE
    assert route.calls == 4  # requests are kept across clear()
    route.clear()
    r = transfer("http://api.test/f")
    assert (r.code, r.status, r.body) == (0, 200, b"")  # no step: an empty 200


def test_handler_step_sees_request(curlfault) -> None:
    api = curlfault.http("api.test")
    api.post("/echo").handle(lambda req: Response.make(200, body=req.body.upper()))
    assert transfer("http://api.test/echo", POSTFIELDS="shout").body == b"SHOUT"


def test_handler_may_return_status(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/s").handle(lambda req: 418)
    assert transfer("http://api.test/s").status == 418


def test_method_wildcard_route(curlfault) -> None:
    api = curlfault.http("api.test")
    api.route("*", "/any").respond(202)
    api.delete("/any").respond(204)
    assert transfer("http://api.test/any", CUSTOMREQUEST="PATCH").status == 202
    assert transfer("http://api.test/any", CUSTOMREQUEST="DELETE").status == 204


def test_unmatched_request_gets_404_and_fails_check() -> None:
    with FakeNetwork() as net, net.intercept():
        api = net.http("api.test")
        api.get("/known").respond(200)
        r = transfer("http://api.test/unknown")
        assert r.status == 404
        assert b"GET /known" in r.body
        assert api.requests[0].matched is False
        with pytest.raises(UnmatchedRequest, match=r"GET /unknown .*known routes: GET /known"):
            net.check()
        net.check()  # each problem is raised once


def test_handler_exception_is_500_and_server_error() -> None:
    from curlfault import ServerError

    def boom(req):
        raise RuntimeError("kaput")

    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test").get("/x").handle(boom)
            assert transfer("http://api.test/x").status == 500
        with pytest.raises(ServerError, match="kaput"):
            net.check()
    finally:
        net.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (99, "returned 99, which cannot be sent"),
        (1000, "returned 1000, which cannot be sent"),
        (100, "returned 100, which cannot be sent"),
        ("200", "returned '200'; return a curlfault.Response or an int status"),
        (None, "returned None; return a curlfault.Response"),
    ],
)
def test_handler_returning_no_sendable_status_is_500_and_server_error(value, message) -> None:
    """As docs/api.md says: the client gets a 500 (not a dropped connection, 52) and the
    ServerError names the handler and what it returned."""
    from curlfault import ServerError

    def answer(req):
        return value

    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test").get("/x").handle(answer)
            r = transfer("http://api.test/x")
            assert (r.code, r.status) == (0, 500)
        with pytest.raises(ServerError, match=rf"handler '.*answer' for GET /x {message}"):
            net.check()
    finally:
        net.close()


def test_bodiless_statuses_are_served_without_a_body(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/none").respond(204)
    api.get("/same").respond(304, headers={"ETag": '"v1"'})
    assert transfer("http://api.test/none").status == 204
    r = transfer("http://api.test/same")
    assert (r.code, r.status, r.body) == (0, 304, b"")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("OK\r\nX-Injected: 1", "status line cannot carry"),
        ("caf\u00e9 \u2615", "status line cannot carry"),
        (b"OK", "reason must be a str"),
        (None, "a 204 response cannot carry a body"),  # a body where HTTP forbids one
    ],
)
def test_handler_response_built_by_hand_badly_is_500(reason, message) -> None:
    """A Response made without Response.make() is checked too: no header is injected."""
    from curlfault import ServerError

    net = FakeNetwork()
    try:
        with net.intercept():
            by_hand = (
                Response(204, b"hi", (), None, None)
                if reason is None
                else Response(200, b"hi", (), None, reason)
            )
            net.http("api.test").get("/x").handle(lambda req: by_hand)
            r = transfer("http://api.test/x")
            assert (r.code, r.status) == (0, 500)
            assert b"X-Injected" not in r.headers
        with pytest.raises(ServerError, match=message):
            net.check()
    finally:
        net.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "status must be an int from 100 to 999"),
        ({"status": "200"}, "status must be an int"),
        ({"status": 100}, "informational"),
        ({"body": b"x", "json": [1]}, "not both"),
        ({"body": 5}, "body must be bytes or str"),
        ({"headers": [("a",)]}, "headers must be a mapping"),
        ({"reason": "OK\r\nX-Injected: 1"}, "status line cannot carry"),
        ({"reason": "caf\u00e9 \u2615"}, "status line cannot carry"),
        ({"reason": b"OK"}, "reason must be a str"),
        ({"status": 204, "body": "x"}, "a 204 response cannot carry a body"),
        ({"status": 304, "json": {}}, "a 304 response cannot carry a body"),
        (
            {"headers": {b"X": b"v"}},
            r"b'X': b'v' has a bytes name and a bytes value; pass a str name and a str",
        ),
        ({"headers": {"X": "a\r\nb"}}, r"header X: 'a\\r\\nb' has '\\r', which no header value"),
        ({"headers": {"X": "a\x00b"}}, "which no header value can carry"),
        ({"headers": {"Bad Name": "v"}}, r"header name 'Bad Name' is not a token"),
        ({"headers": {"X": " v"}}, "whitespace at an end"),
        ({"headers": {"X": "caf\u00e9"}}, "not ASCII"),
        (
            {"body": "abc", "headers": {"Content-Length": "5"}},
            r"Content-Length: 5 disagrees with the body \(3 bytes\).*faults\.body_length",
        ),
        ({"headers": {"Content-Length": "x"}}, r"Content-Length: 'x' is not a number of bytes"),
        (
            {"body": "abc", "headers": [("Content-Length", "3"), ("Content-Length", "4")]},
            r"disagree \(3, 4\).*faults\.conflicting_content_length",
        ),
        (
            {"body": "abc", "headers": {"Transfer-Encoding": "gzip"}},
            "curlfault frames the body itself",
        ),
        ({"headers": [("Transfer-Encoding", "chunked")] * 2}, "two Transfer-Encoding"),
    ],
)
def test_bad_response_fails_at_declaration(curlfault, kwargs, message) -> None:
    route = curlfault.http("api.test").get("/")
    with pytest.raises(UsageError, match=message):
        route.respond(**kwargs)


def _h11_sends(method: str, status: int, body: bytes, headers: list) -> bool:
    """Whether h11 sends this response to a ``method`` request (as the fake frames it)."""
    import h11

    h = h11.Connection(h11.SERVER)
    h.receive_data(f"{method} / HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
    h.next_event()
    h.next_event()
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    try:
        h.send(h11.Response(status_code=status, headers=headers))
        if body and method != "HEAD":
            h.send(h11.Data(data=body))
        h.send(h11.EndOfMessage())
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return False
    return True


HEADER_CASES = [
    (200, b"abc", [("X-Ok", "a \t b"), ("X-Empty", ""), ("X-Ctl", "a\x01b")]),
    (200, b"abc", [("Content-Length", "3")]),
    (200, b"abc", [("Content-Length", "3, 3"), ("content-length", "3")]),
    (200, b"abc", [("Transfer-Encoding", "Chunked")]),
    (200, b"abc", [("Transfer-Encoding", "chunked"), ("Content-Length", "9")]),
    (200, b"", [("Content-Length", "100")]),  # what a HEAD response declares
    (304, b"", [("Content-Length", "100"), ("ETag", '"v1"')]),
    (204, b"", [("Content-Length", "0")]),
    (200, b"abc", [("X", "a\r\nb")]),
    (200, b"abc", [("X", "a\nb")]),
    (200, b"abc", [("X", "a\x00b")]),
    (200, b"abc", [("X", "a\x0bb")]),
    (200, b"abc", [("X", "v ")]),
    (200, b"abc", [("X", "caf\u00e9")]),
    (200, b"abc", [("Bad Name", "v")]),
    (200, b"abc", [("X:Y", "v")]),
    (200, b"abc", [("", "v")]),
    (200, b"abc", [("Content-Length", "5")]),
    (200, b"abc", [("Content-Length", "x")]),
    (200, b"abc", [("Content-Length", "3,")]),
    (200, b"abc", [("Content-Length", "3"), ("Content-Length", "03")]),
    (200, b"", [("Content-Length", "1" * 21)]),
    (200, b"abc", [("Transfer-Encoding", "gzip")]),
    (200, b"abc", [("Transfer-Encoding", "gzip, chunked")]),
]


@pytest.mark.parametrize(
    ("status", "body", "headers"), HEADER_CASES, ids=[f"{c[0]}-{c[2]!r}" for c in HEADER_CASES]
)
def test_response_headers_are_refused_exactly_when_h11_cannot_send_them(
    status, body, headers
) -> None:
    """Declaring refuses what would fail while serving, and nothing h11 sends: a response
    with an empty body may declare a length, which a response to HEAD does."""
    sendable = _h11_sends("GET", status, body, headers) or (
        not body and _h11_sends("HEAD", status, body, headers)
    )
    try:
        Response.make(status, body=body, headers=headers)
    except UsageError:
        accepted = False
    else:
        accepted = True
    assert accepted == sendable


def test_handler_response_with_a_bad_header_is_500() -> None:
    """A Response built by hand with a header h11 would refuse gets a 500 and a
    ServerError naming the header, not a dropped connection."""
    from curlfault import ServerError

    net = FakeNetwork()
    try:
        with net.intercept():
            by_hand = Response(200, b"hi", (("X", "a\r\nX-Injected: 1"),))
            net.http("api.test").get("/x").handle(lambda req: by_hand)
            r = transfer("http://api.test/x")
            assert (r.code, r.status) == (0, 500)
            assert b"X-Injected" not in r.headers
        with pytest.raises(ServerError, match=r"returned header X: .* no header value can carry"):
            net.check()
    finally:
        net.close()


@pytest.mark.parametrize(
    ("status", "reason", "line"),
    [
        (200, None, b"HTTP/1.1 200 OK"),
        (404, None, b"HTTP/1.1 404 Not Found"),
        (599, None, b"HTTP/1.1 599 "),
        (200, "Fine\tthanks", b"HTTP/1.1 200 Fine\tthanks"),
        (503, "", b"HTTP/1.1 503 "),
        (200, "d\u00e9j\u00e0 vu", "HTTP/1.1 200 d\u00e9j\u00e0 vu".encode("latin-1")),
    ],
)
@pytest.mark.parametrize("requests", [1, 2], ids=["fresh", "keep-alive"])
def test_status_line_reason(curlfault, status, reason, line, requests) -> None:
    """The status line libcurl reads: the standard phrase, the given one, or none."""
    curlfault.http("api.test").get("/").respond(status, body=b"ok", reason=reason)
    curl = pycurl.Curl()
    try:
        for _ in range(requests):  # the second one is served from the cached framing
            lines: list[bytes] = []
            curl.setopt(pycurl.URL, "http://api.test/")
            curl.setopt(pycurl.HEADERFUNCTION, lines.append)
            curl.setopt(pycurl.WRITEDATA, io.BytesIO())
            curl.perform()
            assert curl.getinfo(pycurl.RESPONSE_CODE) == status
            assert lines[0] == line + b"\r\n"
    finally:
        curl.close()


def test_bad_host_and_port(curlfault) -> None:
    with pytest.raises(UsageError, match="port must be"):
        curlfault.http("api.test", 0)
    with pytest.raises(UsageError, match="host must be"):
        curlfault.http("bad host")
    # A port in the name would be pinned as part of the name, and never match a URL.
    with pytest.raises(UsageError, match=r"includes a port.*curlfault\.http\('api\.test', 8080\)"):
        curlfault.http("api.test:8080")
    with pytest.raises(UsageError, match=r"includes a port"):
        curlfault.refuse("[down.test]:443")
    # libcurl's pin lists are ASCII: one such name would break every routed handle.
    with pytest.raises(UsageError, match=r"not ASCII.*'xn--exmple-cua\.test'"):
        curlfault.https("exämple.test")
    with pytest.raises(UsageError, match="host must be"):
        curlfault.http("user@api.test")
    # Routes no request could match: a method that is not a token, a path with a space.
    api = curlfault.http("routes.test")
    with pytest.raises(UsageError, match=r"method 'GE T' is not a token"):
        api.route("GE T", "/")
    with pytest.raises(UsageError, match=r"path '/a b' has ' '.*%20"):
        api.get("/a b")
    with pytest.raises(UsageError, match=r"has '\\x00'"):
        api.websocket("/ws\x00")
    # libcurl sends a URL's other characters percent-encoded: say how to declare them
    with pytest.raises(UsageError, match=r"not ASCII.*'/caf%C3%A9\?q=%C3%A9'"):
        api.get("/café?q=é")
    api.get("/caf%C3%A9").respond(body="é")
    assert transfer("http://routes.test/caf%C3%A9").body == "é".encode()
    assert api.route("PURGE", "/cache?key=1").method == "PURGE"
    assert curlfault.http("[::1]", 8080).host == "::1"
    assert curlfault.http("Mixed_Case.Test").host == "mixed_case.test"
    curlfault.http("dup.test")
    with pytest.raises(UsageError, match="already served"):
        curlfault.http("dup.test")


def test_malformed_request_gets_400_and_is_recorded() -> None:
    from curlfault import MalformedRequest

    net = FakeNetwork()
    try:
        with net.intercept():
            api = net.http("api.test")
            api.get("/").respond(200)
            # "G(T" is not an HTTP token: h11 rejects the request line.
            r = transfer("http://api.test/", CUSTOMREQUEST="G(T")
        assert r.status == 400
        assert b"malformed request" in r.body
        assert api.requests[-1].error
        assert len(api.requests) == 1
        with pytest.raises(MalformedRequest, match="answered 400"):
            net.check()
    finally:
        net.close()


def test_two_host_fields_get_400_and_a_malformed_request() -> None:
    """RFC 9112 3.2: a request with more than one Host field gets a 400 (h11 checks it).
    libcurl sends only the first of two ``Host:`` entries of HTTPHEADER, so the second one
    reaches the wire here inside one entry."""
    from curlfault import MalformedRequest

    with FakeNetwork() as net, net.intercept():
        api = net.http("api.test")
        api.get("/").respond(200)
        r = transfer("http://api.test/", HTTPHEADER=["Host: api.test\r\nHost: other.test"])
        assert (r.code, r.status) == (0, 400)
        assert b"multiple Host" in r.body
        assert [q.error for q in api.requests] == ["Found multiple Host: headers"]
        with pytest.raises(MalformedRequest, match=r"multiple Host.*answered 400"):
            net.check()


@pytest.mark.parametrize(
    "response",
    [
        Response.make(200, body=b"hello"),
        Response.make(201, json={"a": 1}, headers={"X-One": "1"}),
        Response.make(204),
        Response.make(200, body=b"x" * 70_000, headers={"Transfer-Encoding": "chunked"}),
        Response.make(404, body="", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
        Response.make(200, body=b"hello", reason="Fine"),
        Response.make(599, reason=""),
    ],
    ids=["plain", "json", "no-content", "chunked", "repeated-headers", "reason", "no-reason"],
)
def test_cached_response_bytes_are_h11s(response: Response) -> None:
    """The bytes sent from the per-response cache are what h11 writes for that request."""
    import h11

    from curlfault.protocols._http1_wire import keepalive_bytes

    h = h11.Connection(h11.SERVER)
    h.receive_data(b"GET /x?y=1 HTTP/1.1\r\nHost: api.test\r\nAccept: */*\r\n\r\n")
    assert isinstance(h.next_event(), h11.Request)
    assert isinstance(h.next_event(), h11.EndOfMessage)
    headers = list(response.headers)
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        headers.append(("Content-Length", str(len(response.body))))
    phrase = (
        response.reason.encode()
        if response.reason is not None
        else {200: b"OK", 201: b"Created", 204: b"No Content", 404: b"Not Found"}[response.status]
    )
    expected = h.send(h11.Response(status_code=response.status, headers=headers, reason=phrase))
    expected = expected or b""
    if response.body:
        expected += h.send(h11.Data(data=response.body)) or b""
    expected += h.send(h11.EndOfMessage()) or b""
    assert keepalive_bytes(response) == expected
    assert keepalive_bytes(response) is keepalive_bytes(response)  # made once


def test_equal_responses_share_one_framing_by_content() -> None:
    """Each test declares its routes anew: an equal response is framed by h11 only once."""
    from curlfault.protocols._http1_wire import keepalive_bytes

    first = keepalive_bytes(Response.make(200, body=b"same", headers={"X-Key": "content"}))
    again = keepalive_bytes(Response.make(200, body=b"same", headers={"X-Key": "content"}))
    assert again is first
    other = keepalive_bytes(Response.make(200, body=b"same", headers={"X-Key": "other"}))
    assert b"X-Key: other" in other
    assert b"X-Key: content" not in other
    assert keepalive_bytes(Response.make(203, body=b"same", headers={"X-Key": "content"})) != (
        first
    )
    # Built by hand with a list of headers (unhashable): framed, never cached by content.
    by_hand = Response(200, b"hand", [("X-Key", "list")])  # type: ignore[arg-type]
    assert b"X-Key: list" in keepalive_bytes(by_hand)
    assert keepalive_bytes(by_hand).endswith(b"\r\n\r\nhand")


def test_framing_cache_by_content_is_bounded_in_bytes(monkeypatch) -> None:
    from curlfault.protocols import _http1_wire

    monkeypatch.setattr(_http1_wire, "_WIRE_MAX_HELD", 0)  # nothing fits: framed each time
    body = b"bounded-" + str(id(monkeypatch)).encode()
    first = _http1_wire.keepalive_bytes(Response.make(200, body=body))
    again = _http1_wire.keepalive_bytes(Response.make(200, body=body))
    assert first == again
    assert first is not again


def test_content_cached_responses_reach_the_client_unmixed() -> None:
    """Networks one after another, equal bodies, different headers: each gets its own."""
    for value in ["one", "two", "one"]:
        with FakeNetwork() as net, net.intercept():
            net.http("api.test").get("/").respond(body="b", headers={"X-Value": value})
            r = transfer("http://api.test/")
            assert (r.code, r.body) == (0, b"b")
            assert f"x-value: {value}".encode() in r.headers.lower()


def test_keep_alive_mixes_cached_and_h11_responses_on_one_connection(curlfault) -> None:
    """GET (cached bytes), HEAD and POST (h11), a faulted response, then GET again."""
    api = curlfault.http("api.test")
    api.get("/a").respond(body="A" * 10)
    api.post("/b").respond(201, body="B")
    api.get("/slow").respond(body="S", fault=faults.delay(0.01))
    c = pycurl.Curl()
    try:
        got = [
            transfer("http://api.test/a", curl=c).body,
            transfer("http://api.test/a", curl=c, NOBODY=1).body,
            transfer("http://api.test/b", curl=c, NOBODY=0, POSTFIELDS="x=1").body,
            transfer("http://api.test/slow", curl=c, HTTPGET=1).body,
            transfer("http://api.test/a", curl=c).body,
        ]
    finally:
        c.close()
    assert got == [b"A" * 10, b"", b"B", b"S", b"A" * 10]
    assert [r.method for r in api.requests] == ["GET", "HEAD", "POST", "GET", "GET"]
    assert len(api.connections) == 1


def test_http10_client_is_closed_after_each_response(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/a").respond(body="A")
    c = pycurl.Curl()
    try:
        for _ in range(2):
            r = transfer("http://api.test/a", curl=c, HTTP_VERSION=pycurl.CURL_HTTP_VERSION_1_0)
            assert (r.code, r.body) == (0, b"A")
    finally:
        c.close()
    assert len(api.connections) == 2
    assert {r.http_version for r in api.requests} == {"1.0"}


def test_pipelined_requests_after_a_cached_response(curlfault) -> None:
    """Two requests in one write: the second is kept for the fresh h11 state and answered."""
    import socket as _socket

    from curlfault._network import Connection
    from curlfault._transports import Channel
    from curlfault.protocols.http1 import Http1Server

    api = curlfault.http("api.test")
    api.get("/a").respond(body="A")
    api.get("/b").respond(body="BB")
    client, server = _socket.socketpair()
    conn = Connection(curlfault, 1, api, "test", "")
    channel = Channel(curlfault.loop, server, conn)
    channel.start(Http1Server(api, channel, conn))
    try:
        client.sendall(
            b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\nGET /b HTTP/1.1\r\nHost: api.test\r\n\r\n"
        )
        client.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"BB"):
            curlfault.loop.pump()
            chunk = client.recv(65536)
            assert chunk, f"server closed early after {data!r}"
            data += chunk
    finally:
        channel.close()
        client.close()
    assert [r.path for r in api.requests] == ["/a", "/b"]
    assert data.endswith(b"\r\n\r\nBB")


def _count_h11_reads(monkeypatch) -> list[bytes]:
    import h11

    seen: list[bytes] = []
    real = h11.Connection.receive_data

    def counting(self: h11.Connection, data: bytes) -> None:
        seen.append(bytes(data))
        real(self, data)

    monkeypatch.setattr(h11.Connection, "receive_data", counting)
    return seen


def test_repeated_request_bytes_are_not_parsed_again(curlfault, monkeypatch) -> None:
    """libcurl repeats byte-identical requests: h11's parse of the first answers the rest."""
    api = curlfault.http("replay.test")
    api.get("/same").respond(body="S")
    seen = _count_h11_reads(monkeypatch)
    results = [transfer("http://replay.test/same?n=1") for _ in range(3)]
    assert [(r.code, r.body) for r in results] == [(0, b"S")] * 3
    # Each request is its own record, on its own connection, as if parsed each time.
    assert len({id(r) for r in api.requests}) == 3
    assert [r.connection_id for r in api.requests] == [c.id for c in api.connections]
    assert {(r.method, r.target, r.header("host")) for r in api.requests} == {
        ("GET", "/same?n=1", "replay.test")
    }
    request_reads = [d for d in seen if d.startswith(b"GET /same")]
    assert len(request_reads) == 1, request_reads  # parsed once, replayed twice


def test_repeated_requests_on_one_keepalive_connection_are_not_parsed_again(
    curlfault, monkeypatch
) -> None:
    api = curlfault.http("replay.test")
    api.get("/kept").respond(body="K")
    seen = _count_h11_reads(monkeypatch)
    c = pycurl.Curl()
    try:
        results = [transfer("http://replay.test/kept", curl=c) for _ in range(4)]
    finally:
        c.close()
    assert [(r.code, r.body) for r in results] == [(0, b"K")] * 4
    assert len(api.connections) == 1  # one connection, kept alive
    assert [r.connection_id for r in api.requests] == [1] * 4
    request_reads = [d for d in seen if d.startswith(b"GET /kept")]
    assert len(request_reads) == 1, request_reads  # parsed once, replayed three times


def test_replayed_head_and_post_still_follow_h11(curlfault) -> None:
    api = curlfault.http("replay.test")
    api.get("/f").respond(body=b"12345")
    api.post("/p").respond(201, body="made")
    heads = [transfer("http://replay.test/f", NOBODY=1) for _ in range(2)]
    assert [(r.code, r.status, r.body) for r in heads] == [(0, 200, b"")] * 2
    assert all(b"content-length: 5" in r.headers.lower() for r in heads)
    posts = [transfer("http://replay.test/p", POSTFIELDS="a=1") for _ in range(2)]
    assert [(r.code, r.status, r.body) for r in posts] == [(0, 201, b"made")] * 2
    # a closing response (h11 serializes it) to a replayed request with a body: h11 parses
    # the same bytes again, body included (a ServerError, 52, before)
    api.post("/c").respond(201, body="made", headers={"Connection": "close"})
    posts = [transfer("http://replay.test/c", POSTFIELDS="a=2") for _ in range(2)]
    assert [(r.code, r.status, r.body) for r in posts] == [(0, 201, b"made")] * 2
    assert [r.body for r in api.requests] == [b"", b"", b"a=1", b"a=1", b"a=2", b"a=2"]


def test_upload_fault_on_a_repeated_request_is_applied(curlfault) -> None:
    """A request replayed from h11's earlier parse still meets its route's upload fault."""
    api = curlfault.http("replay.test")
    api.post("/up").respond(201).respond(413, fault=faults.early_response())
    first = transfer("http://replay.test/up", POSTFIELDS="a=1")
    second = transfer("http://replay.test/up", POSTFIELDS="a=1")
    assert (first.code, first.status) == (0, 201)
    assert (second.code, second.status) == (0, 413)
    assert [r.body for r in api.requests] == [b"a=1", b""]  # answered before its body


def test_upload_fault_declared_after_requests_were_served_is_applied(curlfault) -> None:
    """Requests skip the upload-fault look-ahead only until the endpoint declares one."""
    api = curlfault.http("replay.test")
    api.post("/up").respond(201)
    first = transfer("http://replay.test/up", POSTFIELDS="a=1")
    api.post("/late").respond(413, fault=faults.early_response())
    second = transfer("http://replay.test/late", POSTFIELDS="a=1")
    assert (first.code, first.status) == (0, 201)
    assert (second.code, second.status) == (0, 413)
    assert [r.body for r in api.requests] == [b"a=1", b""]  # answered before its body


def test_keepalive_requests_answered_from_cached_parses_keep_a_full_timeline(curlfault) -> None:
    # Requests answered from a cached parse (the same bytes as an earlier request) record the
    # same events as parsed ones, with one kept copy of each text.
    api = curlfault.http("api.test")
    api.get("/").respond(200, body=b"hello")
    api.get("/made").handle(lambda request: Response.make(201, body=b"made!"))
    c = pycurl.Curl()
    try:
        for _ in range(3):
            assert transfer("http://api.test/", curl=c).body == b"hello"
            assert transfer("http://api.test/made", curl=c).body == b"made!"
    finally:
        c.close()
    (conn,) = api.connections
    texts = [t for _, t in conn.events if t.startswith(("request", "response"))]
    one_round = ["request GET /", "response 200, 43 bytes", "request GET /made"]
    one_round.append("response 201, 48 bytes")
    assert texts == one_round * 3
    # Kept once, not one copy per request.
    assert all(texts[i + 4] is texts[i] and texts[i + 8] is texts[i] for i in range(4))
    times = [at for at, _ in conn.events]
    assert times == sorted(times)
    assert [r.path for r in api.requests] == ["/", "/made"] * 3
    for request in api.requests:  # the parsed and the replayed ones alike
        assert (request.method, request.http_version, request.scheme) == ("GET", "1.1", "http")
        assert (request.host, request.port, request.body) == ("api.test", 80, b"")
        assert request.connection_id == conn.id
        assert request.header("host") == "api.test"


def test_steps_go_one_each_in_list_order_to_requests_from_many_threads(curlfault) -> None:
    # Without a lock, each request still gets the step of its place in route.requests: none
    # is skipped or given twice, however the threads interleave.
    import threading

    route = curlfault.http("api.test").get("/")
    for i in range(10):
        route.respond(200, body=f"step {i}")
    got: list[bytes] = []

    def client() -> None:
        c = pycurl.Curl()
        try:
            for _ in range(10):
                r = transfer("http://api.test/", curl=c)
                got.append(r.body if r.code == 0 else b"error %d" % r.code)
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == [b"step %d" % i for i in range(9)] + [b"step 9"] * 31
    assert len(route.requests) == 40


RANGED = bytes(range(256)) * 40  # 10,240 bytes


@pytest.mark.parametrize(
    ("opts", "code", "status", "body", "content_range"),
    [
        ({}, 0, 200, RANGED, None),
        ({"RANGE": "1000-"}, 0, 206, RANGED[1000:], "bytes 1000-10239/10240"),
        ({"RESUME_FROM": 1000}, 0, 206, RANGED[1000:], "bytes 1000-10239/10240"),
        ({"RANGE": "-100"}, 0, 206, RANGED[-100:], "bytes 10140-10239/10240"),
        ({"RANGE": "10-19"}, 0, 206, RANGED[10:20], "bytes 10-19/10240"),
        ({"RANGE": "10-99999"}, 0, 206, RANGED[10:], "bytes 10-10239/10240"),
        ({"RESUME_FROM": 10240}, 0, 416, b"", "bytes */10240"),
        ({"RANGE": "20000-", "FAILONERROR": 1}, 22, 416, b"", None),
        ({"RANGE": "0-1,5-6"}, 0, 200, RANGED, None),  # several ranges: the whole body
        ({"RANGE": "19-10"}, 0, 200, RANGED, None),  # invalid: ignored
        ({"RESUME_FROM": 1000, "HTTPHEADER": ['If-Range: "v0"']}, 33, 200, b"", None),
        ({"RESUME_FROM": 1000, "HTTPHEADER": ['If-Range: "v1"']}, 0, 206, RANGED[1000:], None),
    ],
)
def test_ranges_serves_byte_ranges_as_a_file_server_does(
    curlfault, opts: dict[str, Any], code: int, status: int, body: bytes, content_range: str | None
) -> None:
    from curlfault import ranges

    curlfault.http("api.test").get("/f").handle(ranges(RANGED, etag='"v1"'))
    r = transfer("http://api.test/f", **opts)
    assert (r.code, r.status, r.body) == (code, status, body)
    if code == 0:
        assert b"accept-ranges: bytes" in r.headers.lower()
        assert b'etag: "v1"' in r.headers.lower()
    if content_range is not None:
        assert f"content-range: {content_range}".encode() in r.headers.lower()


def test_ranges_lets_a_download_resume_after_a_cut(curlfault) -> None:
    from curlfault import ranges

    api = curlfault.http("api.test")
    api.get("/f").handle(ranges(RANGED, fault=faults.close(at="body"))).handle(ranges(RANGED))
    first = transfer("http://api.test/f")
    assert first.code == pycurl.E_PARTIAL_FILE
    assert 0 < len(first.body) < len(RANGED)
    rest = transfer("http://api.test/f", RESUME_FROM=len(first.body))
    assert (rest.code, rest.status) == (0, 206)
    assert first.body + rest.body == RANGED
    assert api.requests[1].header("range") == f"bytes={len(first.body)}-"
    head = transfer("http://api.test/f", NOBODY=1)
    assert (head.code, head.status, head.body) == (0, 200, b"")
    assert b"content-length: 10240" in head.headers.lower()


def test_ranges_refuses_what_it_cannot_serve() -> None:
    from curlfault import ranges

    with pytest.raises(UsageError, match="serves bytes or str"):
        ranges(12)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="quoted entity tag"):
        ranges(b"x", etag="v1")
    with pytest.raises(UsageError, match="not a stream fault"):
        ranges(b"x", fault=faults.refuse())  # type: ignore[arg-type]
    assert repr(ranges(b"abc", etag='"e"')) == "ranges(<3 bytes>, etag='\"e\"')"
