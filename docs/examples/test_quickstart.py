import io
import json

import pycurl
import pytest

from curlfault import Response


# --8<-- [start:client]
def list_items(base_url):
    """The code under test: an ordinary pycurl client."""
    curl = pycurl.Curl()
    body = io.BytesIO()
    try:
        curl.setopt(pycurl.URL, f"{base_url}/items")
        curl.setopt(pycurl.WRITEDATA, body)
        curl.setopt(pycurl.TIMEOUT, 10)
        curl.perform()
        status = curl.getinfo(pycurl.RESPONSE_CODE)
    finally:
        curl.close()
    if status != 200:
        raise RuntimeError(f"GET /items answered {status}")
    return json.loads(body.getvalue())


# --8<-- [end:client]


# --8<-- [start:test]
def test_list_items(curlfault):
    api = curlfault.http("api.test")
    api.get("/items").respond(200, json=[1, 2])

    assert list_items("http://api.test") == [1, 2]

    (request,) = api.requests
    assert request.method == "GET"
    assert request.path == "/items"
    assert request.header("Host") == "api.test"


# --8<-- [end:test]


# --8<-- [start:steps]
def test_steps_are_used_in_order(curlfault):
    api = curlfault.http("api.test")
    api.get("/items").respond(503).respond(200, json=[3])

    with pytest.raises(RuntimeError, match="answered 503"):
        list_items("http://api.test")
    assert list_items("http://api.test") == [3]
    assert list_items("http://api.test") == [3]  # the last step repeats

    assert api.get("/items").calls == 3  # get() returns the same route again


# --8<-- [end:steps]


# --8<-- [start:post]
def create_item(base_url, item):
    curl = pycurl.Curl()
    try:
        curl.setopt(pycurl.URL, f"{base_url}/items")
        curl.setopt(pycurl.POSTFIELDS, json.dumps(item))
        curl.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json"])
        curl.setopt(pycurl.WRITEFUNCTION, lambda chunk: None)
        curl.setopt(pycurl.TIMEOUT, 10)
        curl.perform()
        return curl.getinfo(pycurl.RESPONSE_CODE)
    finally:
        curl.close()


def test_create_item(curlfault):
    api = curlfault.http("api.test", 8080)
    api.post("/items").respond(201, headers={"Location": "/items/7"})

    assert create_item("http://api.test:8080", {"name": "seven"}) == 201

    request = api.requests[0]
    assert request.json() == {"name": "seven"}
    assert request.header("content-type") == "application/json"


# --8<-- [end:post]


# --8<-- [start:handler]
def test_a_handler_computes_the_response(curlfault):
    api = curlfault.http("api.test")

    def echo_upper(request):
        return Response.make(200, body=request.body.upper())

    api.post("/items").handle(echo_upper)

    body = io.BytesIO()
    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, "http://api.test/items")
    curl.setopt(pycurl.POSTFIELDS, "shout")
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.TIMEOUT, 10)
    curl.perform()
    curl.close()
    assert body.getvalue() == b"SHOUT"


# --8<-- [end:handler]
