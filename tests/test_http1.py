"""HTTP/1.1 fakes driven by real pycurl: routes, steps, records, framing."""

from __future__ import annotations

import io
import json

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import FakeNetwork, Response, UnmatchedRequest, UsageError


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
    ("kwargs", "message"),
    [
        ({"status": 99}, "status must be an int from 100 to 999"),
        ({"status": "200"}, "status must be an int"),
        ({"status": 100}, "informational"),
        ({"body": b"x", "json": [1]}, "not both"),
        ({"body": 5}, "body must be bytes or str"),
        ({"headers": [("a",)]}, "headers must be a mapping"),
    ],
)
def test_bad_response_fails_at_declaration(curlfault, kwargs, message) -> None:
    route = curlfault.http("api.test").get("/")
    with pytest.raises(UsageError, match=message):
        route.respond(**kwargs)


def test_bad_host_and_port(curlfault) -> None:
    with pytest.raises(UsageError, match="port must be"):
        curlfault.http("api.test", 0)
    with pytest.raises(UsageError, match="host must be"):
        curlfault.http("bad host")
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
