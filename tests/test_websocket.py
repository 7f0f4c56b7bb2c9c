"""WebSocket fakes driven by real pycurl (``CONNECT_ONLY=2`` with ws_send/ws_recv, and a
WRITEFUNCTION transfer): scripts, echo, recorded client frames, every ws fault, ws and wss
over every transport, a balanced ledger."""

from __future__ import annotations

import time
from typing import Any

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import (
    FakeNetwork,
    MalformedRequest,
    ServerError,
    UsageError,
    WebSocketFrame,
    faults,
)

TRANSPORTS = ["socketpair", "tcp", "listener"]
WAIT = 0.3  # seconds a test waits for a frame that must not come


def endpoint(net: FakeNetwork, scheme: str = "ws", transport: str = "socketpair") -> Any:
    return (net.https if scheme == "wss" else net.http)("api.test", transport=transport)


def connect(url: str = "ws://api.test/chat") -> Any:
    """A pycurl handle connected with CONNECT_ONLY=2: perform() did the handshake."""
    c = pycurl.Curl()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.CONNECT_ONLY, 2)
    c.setopt(pycurl.TIMEOUT_MS, 5000)
    try:
        c.perform()
    except BaseException:
        c.close()
        raise
    return c


def recv(c: Any, wait: float = 5.0) -> tuple[bytes, int]:
    """One whole frame: (payload, flags). Raises TimeoutError after ``wait`` seconds of
    BlockingIOError (CURLE_AGAIN), pycurl.error for a failure."""
    deadline = time.monotonic() + wait
    parts: list[bytes] = []
    while True:
        try:
            data, meta = c.ws_recv(65536)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no frame within {wait}s") from None
            time.sleep(0.001)
            continue
        parts.append(data)
        if meta.bytesleft == 0:
            return b"".join(parts), meta.flags


def recv_error(c: Any) -> int:
    """Read frames until ws_recv fails; its CURLcode."""
    for _ in range(100):
        try:
            recv(c)
        except pycurl.error as exc:
            return int(exc.args[0])
    raise AssertionError("ws_recv never failed")


# behaviour -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_over_every_transport(curlfault, scheme, transport) -> None:
    chat = endpoint(curlfault, scheme, transport).websocket("/chat").echo()
    c = connect(f"{scheme}://api.test/chat")
    try:
        for message in ["hello", b"\x00\x01binary", "ünïcode"]:
            c.ws_send(message)
            data, flags = recv(c)
            expected = message.encode() if isinstance(message, str) else message
            assert data == expected
            assert flags == (pycurl.WS_TEXT if isinstance(message, str) else pycurl.WS_BINARY)
    finally:
        c.close()
    assert chat.received == ["hello", b"\x00\x01binary", "ünïcode"]
    assert chat.sessions == 1
    assert chat.requests[0].header("Upgrade") == "websocket"
    assert curlfault.ledger.audit().ok


def test_reply_is_there_on_the_first_ws_recv(curlfault) -> None:
    """The intercepting handle pumps the fakes around ws_send/ws_recv: no CURLE_AGAIN."""
    endpoint(curlfault).websocket("/chat").echo()
    c = connect()
    try:
        for i in range(20):
            c.ws_send(f"m{i}")
            data, meta = c.ws_recv(1024)  # no retry: a BlockingIOError fails the test
            assert (data, meta.flags) == (f"m{i}".encode(), pycurl.WS_TEXT)
    finally:
        c.close()


def test_an_attached_plain_handle_cannot_keep_a_detached_websocket() -> None:
    # attach() gives a plain handle FORBID_REUSE (its reset() cannot be followed): libcurl
    # closes the CONNECT_ONLY connection after the handshake. Documented: detached mode
    # needs a handle made under intercept().
    with FakeNetwork() as net:
        endpoint(net).websocket("/chat").echo()
        c = net.attach(pycurl.Curl())
        try:
            c.setopt(pycurl.URL, "ws://api.test/chat")
            c.setopt(pycurl.CONNECT_ONLY, 2)
            c.setopt(pycurl.TIMEOUT_MS, 5000)
            c.perform()
            with pytest.raises(pycurl.error):
                c.ws_send("hi")
        finally:
            c.close()


def test_scripted_messages_in_order(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat")
    chat.send("welcome").send(b"\xff\xfe").receive(2).send("got two").close(1000, "bye")
    c = connect()
    try:
        assert recv(c) == (b"welcome", pycurl.WS_TEXT)
        assert recv(c) == (b"\xff\xfe", pycurl.WS_BINARY)
        with pytest.raises(TimeoutError):
            recv(c, WAIT)  # the script waits for two client messages
        c.ws_send("one")
        c.ws_send(b"two")
        assert recv(c) == (b"got two", pycurl.WS_TEXT)
        assert recv(c) == (b"\x03\xe8bye", pycurl.WS_CLOSE)
        c.ws_close(1000)  # libcurl does not answer a close frame by itself
        assert recv_error(c) == 52
    finally:
        c.close()
    assert chat.received == ["one", b"two"]
    assert chat.close_codes == [1000]
    assert curlfault.ledger.audit().ok


def test_each_connection_plays_the_script_from_the_start(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat").send("hi")
    for _ in range(2):
        c = connect()
        try:
            assert recv(c) == (b"hi", pycurl.WS_TEXT)
        finally:
            c.close()
    assert chat.sessions == 2
    assert len(curlfault.connections) == 2


def test_client_frames_are_recorded_with_opcode_and_fin(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat")
    c = connect()
    try:
        c.ws_send("hel", pycurl.WS_TEXT | pycurl.WS_CONT)  # a fragmented text message
        c.ws_send("lo", pycurl.WS_TEXT)
        c.ws_send(b"\x01\x02")
        c.ws_send(b"ping?", pycurl.WS_PING)
        assert recv(c) == (b"ping?", pycurl.WS_PONG)
        c.ws_close(4001, "done")
        assert recv(c) == (b"\x0f\xa1done", pycurl.WS_CLOSE)  # the server answers close
        assert recv_error(c) == 52
    finally:
        c.close()
    assert chat.frames == [
        WebSocketFrame("text", b"hel", False),
        WebSocketFrame("continuation", b"lo", True),
        WebSocketFrame("binary", b"\x01\x02", True),
        WebSocketFrame("ping", b"ping?", True),
        WebSocketFrame("close", b"\x0f\xa1done", True),
    ]
    assert chat.received == ["hello", b"\x01\x02"]
    assert chat.close_codes == [4001]


def test_handle_answers_from_a_function(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat")
    chat.handle(lambda m: [m.upper(), "!"] if isinstance(m, str) else None, count=2).send("end")
    c = connect()
    try:
        c.ws_send("abc")
        assert [recv(c), recv(c)] == [(b"ABC", pycurl.WS_TEXT), (b"!", pycurl.WS_TEXT)]
        c.ws_send(b"bin")  # None: no reply
        assert recv(c) == (b"end", pycurl.WS_TEXT)
    finally:
        c.close()
    assert chat.received == ["abc", b"bin"]


def test_handler_that_raises_closes_1011_and_fails_check() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            endpoint(net).websocket("/chat").handle(lambda m: 1 / 0)
            c = connect()
            try:
                c.ws_send("x")
                assert recv(c) == (b"\x03\xf3handler raised", pycurl.WS_CLOSE)
            finally:
                c.close()
        with pytest.raises(ServerError, match="ZeroDivisionError"):
            net.check()
    finally:
        net.close()


def test_handler_that_returns_a_bad_value_closes_1011_and_fails_check() -> None:
    # Before: nothing was sent, and the client waited until its own deadline.
    net = FakeNetwork()
    try:
        with net.intercept():
            endpoint(net).websocket("/chat").handle(lambda m: 42)
            c = connect()
            try:
                c.ws_send("x")
                assert recv(c) == (b"\x03\xf3handler returned a bad value", pycurl.WS_CLOSE)
            finally:
                c.close()
        with pytest.raises(ServerError, match="a WebSocket handler returned 42"):
            net.check()
    finally:
        net.close()


def test_server_ping_is_answered_by_libcurl_on_the_next_send(curlfault) -> None:
    """CONNECT_ONLY=2: libcurl queues its automatic pong until the client's next ws_send."""
    chat = endpoint(curlfault).websocket("/chat").ping(b"beat").receive()
    c = connect()
    try:
        with pytest.raises(TimeoutError):
            recv(c, WAIT)  # the ping is consumed by libcurl, not returned
        assert chat.frames == []
        c.ws_send("hello")
    finally:
        c.close()
    assert chat.frames == [
        WebSocketFrame("pong", b"beat", True),
        WebSocketFrame("text", b"hello", True),
    ]


def test_server_ping_with_noautopong_reaches_the_client(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat").ping(b"beat").receive()
    c = pycurl.Curl()
    c.setopt(pycurl.URL, "ws://api.test/chat")
    c.setopt(pycurl.CONNECT_ONLY, 2)
    c.setopt(pycurl.WS_OPTIONS, pycurl.WS_NOAUTOPONG)
    try:
        c.perform()
        assert recv(c) == (b"beat", pycurl.WS_PING)
        c.ws_send(b"own pong", pycurl.WS_PONG)
        c.ws_send("done")
    finally:
        c.close()
    assert chat.frames == [
        WebSocketFrame("pong", b"own pong", True),
        WebSocketFrame("text", b"done", True),
    ]


def test_server_ping_in_a_writefunction_transfer_is_answered_at_once(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat").ping(b"beat").receive()
    got: list[bytes] = []
    r = transfer("ws://api.test/chat", WRITEFUNCTION=got.append, TIMEOUT_MS=300)
    assert r.code == 28  # the script waits for a message this client never sends
    assert got == []  # the ping never reaches the callback
    assert chat.frames == [WebSocketFrame("pong", b"beat", True)]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_writefunction_transfer_with_replies_from_the_callback(curlfault, scheme) -> None:
    """Without CONNECT_ONLY, perform() runs the whole session through WRITEFUNCTION."""
    chat = endpoint(curlfault, scheme).websocket("/chat")
    chat.send("question").receive().close(1000)
    got: list[tuple[bytes, int]] = []
    c = pycurl.Curl()

    def write(data: bytes) -> None:
        meta = c.ws_meta()
        got.append((data, meta.flags))
        if meta.flags & pycurl.WS_TEXT:
            c.ws_send("answer")
        elif meta.flags & pycurl.WS_CLOSE:
            c.ws_close(1000)

    r = transfer(f"{scheme}://api.test/chat", curl=c, WRITEFUNCTION=write, TIMEOUT_MS=5000)
    c.close()
    assert r.code == 0
    assert got == [(b"question", pycurl.WS_TEXT), (b"\x03\xe8", pycurl.WS_CLOSE)]
    assert chat.received == ["answer"]
    assert chat.close_codes == [1000]


# faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ws_close_gives_the_close_frame_then_52(curlfault, scheme, transport) -> None:
    chat = endpoint(curlfault, scheme, transport).websocket("/chat")
    chat.send("hi").fault(faults.ws_close(1011, "oops"))
    c = connect(f"{scheme}://api.test/chat")
    try:
        assert recv(c) == (b"hi", pycurl.WS_TEXT)
        assert recv(c) == ((1011).to_bytes(2, "big") + b"oops", pycurl.WS_CLOSE)
        assert recv_error(c) == faults.WsClose.curlcode == 52
    finally:
        c.close()
    assert curlfault.ledger.audit().ok


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ws_drop_after_messages_gives_52(curlfault, scheme, transport) -> None:
    chat = endpoint(curlfault, scheme, transport).websocket("/chat")
    chat.echo(count=2).fault(faults.ws_drop())
    c = connect(f"{scheme}://api.test/chat")
    try:
        for m in ("a", "b"):
            c.ws_send(m)
            assert recv(c) == (m.encode(), pycurl.WS_TEXT)
        assert recv_error(c) == faults.WsDrop.curlcode == 52
    finally:
        c.close()
    assert chat.received == ["a", "b"]
    assert curlfault.ledger.audit().ok


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ws_drop_with_reset_gives_56_over_tcp(curlfault, scheme, transport) -> None:
    chat = endpoint(curlfault, scheme, transport).websocket("/chat")
    chat.send("hi").fault(faults.ws_drop(reset=True))
    c = connect(f"{scheme}://api.test/chat")
    try:
        assert recv(c) == (b"hi", pycurl.WS_TEXT)
        assert recv_error(c) == 56
    finally:
        c.close()
    assert {conn.transport for conn in curlfault.connections} <= {"tcp", "listener"}
    assert curlfault.ledger.audit().ok


def test_ws_drop_with_reset_on_a_socketpair_made_earlier_is_a_usage_error() -> None:
    # The fault is declared once the socketpair is connected, before the handshake is sent:
    # the connection cannot send an RST, and check() says so.
    net = FakeNetwork()
    try:
        with net.intercept():
            chat = endpoint(net).websocket("/chat").send("hi")
            declared: list[bool] = []

            def debug(kind: int, data: bytes) -> None:
                if kind == pycurl.INFOTYPE_TEXT and b"Established" in data and not declared:
                    declared.append(True)
                    chat.fault(faults.ws_drop(reset=True))

            c = pycurl.Curl()
            c.setopt(pycurl.VERBOSE, 1)
            c.setopt(pycurl.DEBUGFUNCTION, debug)
            c.setopt(pycurl.URL, "ws://api.test/chat")
            c.setopt(pycurl.CONNECT_ONLY, 2)
            c.setopt(pycurl.TIMEOUT_MS, 5000)
            try:
                c.perform()
                assert recv(c) == (b"hi", pycurl.WS_TEXT)
                assert recv_error(c) == 52  # an abrupt close, not an RST
            finally:
                c.close()
        assert declared
        assert [conn.transport for conn in net.connections] == ["socketpair"]
        with pytest.raises(UsageError, match="no RST to send"):
            net.check()
    finally:
        net.close()


def test_ws_drop_ends_a_writefunction_transfer_with_0(curlfault) -> None:
    endpoint(curlfault).websocket("/chat").send("hi").fault(faults.ws_drop())
    got: list[bytes] = []
    r = transfer("ws://api.test/chat", WRITEFUNCTION=got.append, TIMEOUT_MS=5000)
    assert (r.code, got) == (0, [b"hi"])


def recv_partial(c: Any, wait: float = 5.0) -> tuple[bytes, int]:
    """The payload bytes ws_recv returns before it fails, and the failure's CURLcode."""
    deadline = time.monotonic() + wait
    parts: list[bytes] = []
    while time.monotonic() < deadline:
        try:
            data, _meta = c.ws_recv(65536)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except pycurl.error as exc:
            return b"".join(parts), exc.args[0]
        parts.append(data)
    raise TimeoutError(f"ws_recv did not fail within {wait}s")


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("message", ["x" * 300, b"\x00" * 300])
def test_ws_cut_sends_part_of_a_frame_then_fin(curlfault, scheme, transport, message) -> None:
    # 300 bytes of payload: a 4-byte head (126 + a 16-bit length), so a cut at 104 leaves
    # 100 payload bytes; ws_recv returns them (the frame not whole), then raises 52.
    chat = endpoint(curlfault, scheme, transport).websocket("/chat")
    chat.send(message, fault=faults.ws_cut(104))
    c = connect(f"{scheme}://api.test/chat")
    try:
        got, code = recv_partial(c)
    finally:
        c.close()
    raw = message.encode() if isinstance(message, str) else message
    assert (got, code) == (raw[:100], faults.WsCut.curlcode)
    assert faults.WsCut.curlcode == 52
    (conn,) = curlfault.connections
    assert conn.fault == faults.ws_cut(104)
    assert "104 of the frame's 304 bytes" in curlfault.trace()
    assert curlfault.ledger.audit().ok
    curlfault.check()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_ws_cut_with_reset_gives_56_over_tcp(curlfault, scheme) -> None:
    chat = endpoint(curlfault, scheme).websocket("/chat")
    chat.send("x" * 100, fault=faults.ws_cut(50, reset=True))
    c = connect(f"{scheme}://api.test/chat")
    try:
        got, code = recv_partial(c)
    finally:
        c.close()
    assert (got, code) == (b"x" * 48, 56)
    assert {conn.transport for conn in curlfault.connections} <= {"tcp", "listener"}


@pytest.mark.parametrize(
    ("cut", "code", "received"), [(0, 52, b""), (1, 56, b""), (50, 56, b"x" * 48)]
)
def test_ws_cut_fails_a_writefunction_transfer(curlfault, cut, code, received) -> None:
    endpoint(curlfault).websocket("/chat").send("x" * 100, fault=faults.ws_cut(cut))
    got: list[bytes] = []
    r = transfer("ws://api.test/chat", WRITEFUNCTION=got.append, TIMEOUT_MS=5000)
    assert (r.code, b"".join(got)) == (code, received)


@pytest.mark.parametrize(
    ("message", "size"), [("hi", 4), (b"x" * 126, 130), ("é" * 40_000, 80_010)]
)
def test_ws_cut_at_or_past_the_frames_end_is_refused_at_declaration(
    curlfault, message, size
) -> None:
    # A 2-byte head, 4 from 126 payload bytes, 10 from 65536 (text counted in UTF-8 bytes).
    chat = endpoint(curlfault).websocket("/chat")
    with pytest.raises(UsageError, match=rf"frame is {size} bytes, so nothing would be cut"):
        chat.send(message, fault=faults.ws_cut(size))
    chat.send(message, fault=faults.ws_cut(size - 1))  # the last byte is cut: accepted


@pytest.mark.parametrize(
    "ending",
    [
        lambda r: r.fault(faults.ws_close()),
        lambda r: r.fault(faults.ws_drop()),
        lambda r: r.send("x", fault=faults.ws_oversized()),
        lambda r: r.send("xx", fault=faults.ws_cut(3)),
    ],
)
def test_no_step_can_follow_one_that_ends_the_connection(curlfault, ending) -> None:
    chat = endpoint(curlfault).websocket("/chat")
    ending(chat)
    with pytest.raises(UsageError, match="ends the connection, so no step can follow it"):
        chat.send("never")


def test_a_cut_inside_the_frames_head_gives_no_payload(curlfault) -> None:
    endpoint(curlfault).websocket("/chat").send("x" * 100, fault=faults.ws_cut(1))
    c = connect()
    try:
        assert recv_partial(c) == (b"", 52)
    finally:
        c.close()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: faults.ws_cut(-1), "int >= 0"),
        (lambda: faults.ws_cut(True), "int >= 0"),
        (lambda: faults.ws_cut(1, reset=1), "takes a bool"),
    ],
)
def test_ws_cut_arguments(make, match) -> None:
    with pytest.raises(UsageError, match=match):
        make()


def test_ws_cut_is_a_message_fault_not_a_step(curlfault) -> None:
    chat = endpoint(curlfault).websocket("/chat")
    with pytest.raises(UsageError, match=r"ws_cut\(\) shape a message"):
        chat.fault(faults.ws_cut(3))


@pytest.mark.parametrize("message", ["hello world", b"hello world"])
def test_ws_fragment_sends_continuation_frames(curlfault, message) -> None:
    endpoint(curlfault).websocket("/chat").send(message, fault=faults.ws_fragment(4))
    kind = pycurl.WS_TEXT if isinstance(message, str) else pycurl.WS_BINARY
    c = connect()
    try:
        frames = [recv(c) for _ in range(3)]
        with pytest.raises(TimeoutError):
            recv(c, WAIT)
    finally:
        c.close()
    assert frames == [
        (b"hell", kind | pycurl.WS_CONT),
        (b"o wo", kind | pycurl.WS_CONT),
        (b"rld", kind),
    ]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_ws_oversized_gives_56(curlfault, scheme) -> None:
    endpoint(curlfault, scheme).websocket("/chat").send("hi", fault=faults.ws_oversized())
    c = connect(f"{scheme}://api.test/chat")
    try:
        assert recv_error(c) == faults.WsOversized.curlcode == 56
    finally:
        c.close()
    assert curlfault.ledger.audit().ok


def test_ws_oversized_fails_a_writefunction_transfer_with_56(curlfault) -> None:
    endpoint(curlfault).websocket("/chat").send("hi", fault=faults.ws_oversized(2**64 - 1))
    r = transfer("ws://api.test/chat", WRITEFUNCTION=lambda d: None, TIMEOUT_MS=5000)
    assert r.code == 56


def test_a_big_valid_message_arrives_in_pieces(curlfault) -> None:
    big = bytes(range(256)) * 800  # 204800 bytes: more than one ws_recv buffer
    endpoint(curlfault).websocket("/chat").send(big)
    c = connect()
    try:
        assert recv(c) == (big, pycurl.WS_BINARY)
    finally:
        c.close()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_ws_no_pong_leaves_the_ping_unanswered(curlfault, scheme) -> None:
    chat = endpoint(curlfault, scheme).websocket("/chat")
    chat.receive().fault(faults.ws_no_pong())
    c = connect(f"{scheme}://api.test/chat")
    try:
        c.ws_send(b"1", pycurl.WS_PING)
        assert recv(c) == (b"1", pycurl.WS_PONG)  # answered before the fault
        c.ws_send("go")
        c.ws_send(b"2", pycurl.WS_PING)
        with pytest.raises(TimeoutError):  # CURLE_AGAIN (BlockingIOError) all along
            recv(c, WAIT)
    finally:
        c.close()
    assert [f.opcode for f in chat.frames] == ["ping", "text", "ping"]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_without_ws_no_pong_the_same_ping_gets_its_pong(curlfault, scheme) -> None:
    # The control of the test above: the 81 (no pong before the client's deadline) is the
    # fault's doing, not a silent fake's.
    chat = endpoint(curlfault, scheme).websocket("/chat")
    chat.receive()
    c = connect(f"{scheme}://api.test/chat")
    try:
        c.ws_send(b"1", pycurl.WS_PING)
        assert recv(c) == (b"1", pycurl.WS_PONG)
        c.ws_send("go")
        c.ws_send(b"2", pycurl.WS_PING)
        assert recv(c) == (b"2", pycurl.WS_PONG)
    finally:
        c.close()
    assert [f.opcode for f in chat.frames] == ["ping", "text", "ping"]


# handshakes and usage ----------------------------------------------------------------------


def test_plain_get_to_a_websocket_path_gets_426_and_fails_check() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            chat = endpoint(net).websocket("/chat").send("never")
            r = transfer("http://api.test/chat")
        assert r.status == 426
        assert b"Upgrade: websocket" in r.headers
        assert chat.requests[0].error
        assert chat.sessions == 0
        with pytest.raises(MalformedRequest, match="answered 426"):
            net.check()
    finally:
        net.close()


def test_a_path_with_an_http_route_and_a_websocket_route_serves_both(curlfault) -> None:
    # A page and its socket on one path, as real servers do. Before, the GET route could
    # never answer: every plain GET got the WebSocket route's 426.
    api = endpoint(curlfault)
    page = api.get("/chat").respond(200, body="the chat page")
    chat = api.websocket("/chat").echo()
    r = transfer("http://api.test/chat")
    assert (r.code, r.status, r.body) == (0, 200, b"the chat page")
    c = connect()
    try:
        c.ws_send("hi")
        assert recv(c) == (b"hi", pycurl.WS_TEXT)
    finally:
        c.close()
    assert (page.calls, chat.sessions, chat.received) == (1, 1, ["hi"])


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_an_upgrade_to_a_path_with_only_an_http_route_is_answered_as_plain_http(
    curlfault, scheme: str
) -> None:
    """A server without WebSocket support answers the upgrade as an ordinary request, and
    libcurl refuses it (22): faithful, so check() passes, and the trace says which route
    to declare."""
    api = endpoint(curlfault, scheme)
    page = api.get("/chat").respond(200, body="the chat page")
    with pytest.raises(pycurl.error) as info:
        connect(f"{scheme}://api.test/chat")
    assert info.value.args[0] == pycurl.E_HTTP_RETURNED_ERROR
    assert page.calls == 1
    assert api.requests[0].header("Upgrade") == "websocket"
    curlfault.check()
    events = [text for _, text in curlfault.connections[0].events]
    assert any(
        text.startswith("WebSocket upgrade asked for /chat, which no websocket() route of ")
        and ".websocket('/chat')" in text
        for text in events
    ), events


def test_an_upgrade_to_a_path_with_no_route_suggests_a_websocket_route(curlfault) -> None:
    # From a user trial: the hint offered an HTTP route and the known routes left out the
    # WebSocket one.
    from curlfault import UnmatchedRequest

    api = endpoint(curlfault)
    api.websocket("/room").send("hi")
    with pytest.raises(pycurl.error) as info:
        connect("ws://api.test/rooms")
    assert info.value.args[0] == pycurl.E_HTTP_RETURNED_ERROR
    with pytest.raises(UnmatchedRequest) as problem:
        curlfault.check()
    text = str(problem.value)
    assert "(known routes: WebSocket /room)" in text
    assert (
        "add `.websocket('/rooms')` to the api.test endpoint; the closest WebSocket path is '/room'"
    ) in text


def test_a_repeated_plain_get_to_a_websocket_path_gets_426_again() -> None:
    # libcurl sends byte-identical requests: the second must not be answered from the
    # request-parse cache as a plain HTTP request (404) instead of the WebSocket route.
    net = FakeNetwork()
    try:
        with net.intercept():
            chat = endpoint(net).websocket("/chat").send("never")
            first = transfer("http://api.test/chat")
            second = transfer("http://api.test/chat")
        assert (first.status, second.status) == (426, 426)
        assert len(chat.requests) == 2
        assert all(r.error for r in chat.requests)
        with pytest.raises(MalformedRequest, match="answered 426"):
            net.check()
    finally:
        net.close()


def test_bad_websocket_version_gets_426() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            endpoint(net).websocket("/chat")
            headers = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 8"]
            r = transfer("http://api.test/chat", HTTPHEADER=[*headers, "Sec-WebSocket-Key: x"])
        assert r.status == 426
        with pytest.raises(MalformedRequest, match="Sec-WebSocket-Version"):
            net.check()
    finally:
        net.close()


def test_other_paths_still_answer_http(curlfault) -> None:
    api = endpoint(curlfault)
    api.websocket("/chat").echo()
    api.get("/health").respond(200, body="ok")
    assert transfer("http://api.test/health").body == b"ok"


def test_usage_errors(curlfault) -> None:
    api = endpoint(curlfault)
    chat = api.websocket("/chat")
    assert api.websocket("/chat") is chat
    with pytest.raises(UsageError, match="count"):
        chat.echo(count=0)
    with pytest.raises(UsageError, match="str"):
        chat.send(42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cannot be sent"):
        chat.close(1006)
    with pytest.raises(UsageError, match="cannot be sent"):
        faults.ws_close(999)
    with pytest.raises(UsageError, match="123 bytes"):
        faults.ws_close(1000, "x" * 124)
    with pytest.raises(UsageError, match="positive int"):
        faults.ws_fragment(0)
    with pytest.raises(UsageError, match="125 bytes"):
        chat.ping(b"x" * 126)
    with pytest.raises(UsageError, match="bool"):
        faults.ws_drop(reset=1)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="2\\*\\*63"):
        faults.ws_oversized(1000)
    with pytest.raises(UsageError, match="shape a message"):
        chat.fault(faults.ws_fragment(2))
    with pytest.raises(UsageError, match="only ws_fragment"):
        chat.send("x", fault=faults.ws_drop())
    with pytest.raises(UsageError, match="not a WebSocket connection fault"):
        chat.fault(faults.close(0))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="must start with '/'"):
        api.websocket("chat")
    chat.echo()
    with pytest.raises(UsageError, match="no step can follow"):
        chat.send("late")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: faults.WsFragment(size=0), "positive int"),
        (lambda: faults.WsFragment(size=True), "positive int"),
        (lambda: faults.WsOversized(length=1000), "2\\*\\*63"),
        (lambda: faults.WsOversized(length=2**64), "2\\*\\*63"),
        (lambda: faults.WsClose(code=1006), "cannot be sent"),
        (lambda: faults.WsClose(code=1000, reason="x" * 124), "123 bytes"),
        (lambda: faults.WsClose(code="1000"), "must be an int"),
        (lambda: faults.WsDrop(reset=1), "bool"),
    ],
)
def test_the_fault_classes_validate_like_their_functions(make, words) -> None:
    with pytest.raises(UsageError, match=words):
        make()


def test_the_fault_classes_accept_what_their_functions_accept() -> None:
    assert faults.WsFragment(size=4) == faults.ws_fragment(4)
    assert faults.WsOversized() == faults.ws_oversized()
    assert faults.WsClose(code=1011, reason="oops") == faults.ws_close(1011, "oops")
    assert faults.WsDrop(reset=True) == faults.ws_drop(reset=True)


def test_a_frame_wsproto_rejects_closes_1007_and_fails_check() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            chat = endpoint(net).websocket("/chat").echo()
            c = connect()
            try:
                c.ws_send(b"\xff\xfe", pycurl.WS_TEXT)  # a text frame that is not UTF-8
                payload, flags = recv(c)
                assert (int.from_bytes(payload[:2], "big"), flags) == (1007, pycurl.WS_CLOSE)
                assert recv_error(c) == 52
            finally:
                c.close()
        assert chat.received == []
        with pytest.raises(MalformedRequest, match="breaks RFC 6455"):
            net.check()
    finally:
        net.close()
