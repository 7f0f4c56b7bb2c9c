import time

import pycurl
import pytest


def connect(url):
    """A handle connected with CONNECT_ONLY=2: perform() does the WebSocket handshake."""
    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, url)
    curl.setopt(pycurl.CONNECT_ONLY, 2)
    curl.setopt(pycurl.TIMEOUT_MS, 5000)
    curl.perform()
    return curl


def recv(curl, wait=5.0):
    """One whole frame as (payload, flags); TimeoutError if none comes within ``wait``."""
    deadline = time.monotonic() + wait
    parts = []
    while True:
        try:
            data, meta = curl.ws_recv(65536)
        except BlockingIOError:  # CURLE_AGAIN: nothing to read yet
            if time.monotonic() > deadline:
                raise TimeoutError from None
            time.sleep(0.001)
            continue
        parts.append(data)
        if meta.bytesleft == 0:
            return b"".join(parts), meta.flags


# --8<-- [start:echo]
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_echo(curlfault, scheme):
    server = curlfault.https("chat.test") if scheme == "wss" else curlfault.http("chat.test")
    room = server.websocket("/room").send("welcome").echo()

    curl = connect(f"{scheme}://chat.test/room")
    try:
        assert recv(curl) == (b"welcome", pycurl.WS_TEXT)
        curl.ws_send("hello")
        assert recv(curl) == (b"hello", pycurl.WS_TEXT)
        curl.ws_send(b"\x00\x01")
        assert recv(curl) == (b"\x00\x01", pycurl.WS_BINARY)
    finally:
        curl.close()

    assert room.received == ["hello", b"\x00\x01"]  # str: text message, bytes: binary
    assert [f.opcode for f in room.frames] == ["text", "binary"]


# --8<-- [end:echo]


# --8<-- [start:script]
def test_script_and_close(curlfault):
    room = curlfault.http("chat.test").websocket("/room")
    room.receive().send("got it").close(1001, "going away")

    curl = connect("ws://chat.test/room")
    try:
        curl.ws_send("ping me")
        assert recv(curl) == (b"got it", pycurl.WS_TEXT)
        payload, flags = recv(curl)
        assert flags == pycurl.WS_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1001
        curl.ws_close(1000)  # libcurl does not answer a close frame by itself
    finally:
        curl.close()
    assert room.close_codes == [1000]


# --8<-- [end:script]


# --8<-- [start:faults]
def test_server_drops_the_connection(curlfault):
    from curlfault import faults

    room = curlfault.http("chat.test").websocket("/room")
    room.echo(count=1).fault(faults.ws_drop())  # answer one message, then FIN

    curl = connect("ws://chat.test/room")
    try:
        curl.ws_send("hi")
        assert recv(curl) == (b"hi", pycurl.WS_TEXT)
        with pytest.raises(pycurl.error) as info:
            recv(curl)
        assert info.value.args[0] == 52  # GOT_NOTHING
    finally:
        curl.close()


def test_fragmented_message(curlfault):
    from curlfault import faults

    room = curlfault.http("chat.test").websocket("/room")
    room.send("hello world", fault=faults.ws_fragment(6))

    curl = connect("ws://chat.test/room")
    try:
        first, second = recv(curl), recv(curl)
    finally:
        curl.close()
    assert first == (b"hello ", pycurl.WS_TEXT | pycurl.WS_CONT)  # more frames follow
    assert second == (b"world", pycurl.WS_TEXT)


# --8<-- [end:faults]


# --8<-- [start:writefunction]
def test_writefunction_client(curlfault):
    room = curlfault.http("chat.test").websocket("/room")
    room.send("question").receive().close(1000)

    frames = []
    curl = pycurl.Curl()

    def on_frame(data):
        flags = curl.ws_meta().flags
        frames.append((data, flags))
        if flags & pycurl.WS_TEXT:
            curl.ws_send("answer")
        elif flags & pycurl.WS_CLOSE:
            curl.ws_close(1000)

    curl.setopt(pycurl.URL, "ws://chat.test/room")
    curl.setopt(pycurl.WRITEFUNCTION, on_frame)
    curl.setopt(pycurl.TIMEOUT_MS, 5000)
    try:
        curl.perform()  # runs until the server closes the connection
    finally:
        curl.close()
    assert frames == [(b"question", pycurl.WS_TEXT), (b"\x03\xe8", pycurl.WS_CLOSE)]
    assert room.received == ["answer"]


# --8<-- [end:writefunction]
