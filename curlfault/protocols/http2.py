"""HTTP/2 server side of one fake connection, on h2.

h2 does framing, HPACK, stream states and flow control; this module turns its events into
``Request`` records, answers each stream from the endpoint's routes and applies the HTTP/2
faults of ``curlfault._faults_h2`` to that stream (or to the connection, for GOAWAY and a
malformed frame). Every frame either side sends is logged in ``connection.frames`` from the
bytes themselves, so tests can assert frames as well as CURLcodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .. import _plan
from .._errors import MalformedRequest, UsageError
from .._faults_h2 import (
    ERROR_CODES,
    SETTING_CODES,
    BadFrame,
    FlowStall,
    GoAway,
    H2Fault,
    RefusedStream,
    RstStream,
    Settings,
)
from .._http import Request, Response
from .._plan import compose, flatten
from ..faults import Delay, Latency, Pacing, Stall
from ._h2_frames import ERROR_NAMES, PREFACE, Frame, FrameLog, error_name
from ._h2_timing import Reply, StreamTimers, Unsent, at_body, is_wait

if TYPE_CHECKING:
    from .._loop import Timer
    from .._network import Connection, HttpEndpoint
    from .._transports import StreamProtocol
    from .http1 import ByteTransport

__all__ = ["PREFACE", "Frame", "FrameLog", "Http2Server", "Sniffer"]

# Connection-specific headers that HTTP/2 forbids (RFC 9113 section 8.2.2).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class Http2Server(StreamTimers):
    """Serves one HTTP/2 connection: every stream from the endpoint's routes."""

    def __init__(self, endpoint: HttpEndpoint, transport: ByteTransport, conn: Connection) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.conn = conn
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._recv_log = FrameLog("recv", conn.frames, preface=True)
        self._sent_log = FrameLog("sent", conn.frames)
        self._requests: dict[int, Request] = {}
        self._bodies: dict[int, list[bytes]] = {}
        self._stalled: set[int] = set()
        # Streams whose answer waits on a delay() or stall(), by stream: the timer that ends
        # the wait (a stall's is its bound). The other streams are answered meanwhile.
        self._held: dict[int, Timer] = {}
        self._out: dict[int, Unsent] = {}
        self._dead = False
        # A graceful GOAWAY that waits for the held streams it covers (see _goaway).
        self._goaway_after: GoAway | None = None
        # Streams whose request body is still arriving. libcurl announces DATA_OUT when it
        # hands data to nghttp2, which writes it later: the last frames of an upload come
        # with no debug event after them. While a body is incomplete the loop thread
        # watches this end, so their arrival wakes it (else the 20 ms scan serves them).
        self._uploading: set[int] = set()
        self._watching = False
        conn.event("HTTP/2")
        channel = self._channel = conn.channel
        if channel is not None:
            # Flow control makes the server wait for the client's WINDOW_UPDATE, which no
            # debug event announces: pump this end after libcurl reads, too.
            channel.loop.followers.add(channel.fd)
        self.h2.initiate_connection()
        self._flush()

    # from the transport ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._dead:
            return
        self._recv_log.feed(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._bad_client(exc)
            return
        for event in events:
            if self._dead:
                break
            self._event(event)
        else:
            self._flush()
        channel = self._channel
        uploading = bool(self._uploading) and not self._dead
        if uploading != self._watching and channel is not None:
            self._watching = uploading
            channel.loop.watch(channel, uploading)

    def eof_received(self) -> None:
        self._end("the client closed the connection")

    def client_closed(self) -> None:
        """The client closed the connection: uploads still arriving are recorded."""
        for sid in list(self._bodies):
            self._cut_short(sid, "closed the connection")
        self._release_held()

    def _end(self, why: str) -> None:
        """Nothing more is served on this connection: held streams are never answered."""
        self._dead = True
        self._release_held(why)

    def _cut_short(self, sid: int, how: str) -> None:
        """Record the request of stream ``sid`` if its body never all arrived (an upload
        the client gave up), with ``error`` saying so, as HTTP/1.1 does."""
        request = self._requests.get(sid)
        if request is None or sid in self._stalled or sid not in self._bodies:
            return  # answered already (or recorded when it stalled)
        self.endpoint.keep_incomplete(request, b"".join(self._bodies.pop(sid)), f"the client {how}")
        self.conn.event(f"request {request.method} {request.target} cut short by the client")

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._start(event)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            if sid in self._bodies and event.data:
                self._bodies[sid].append(event.data)
                if sid in self._stalled:
                    # Recorded (dispatched) already: its body grows as bytes arrive. The
                    # others are joined once, when the stream ends.
                    self._requests[sid].body = b"".join(self._bodies[sid])
            if sid not in self._stalled and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            sid = event.stream_id
            self._uploading.discard(sid)
            if sid in self._requests and sid not in self._stalled:
                self._complete(sid)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for sid in list(self._out):
                try:
                    self._send_pending(sid)
                except h2.exceptions.StreamClosedError:
                    self._gone(sid)
        elif isinstance(event, h2.events.StreamReset):
            held = self._held.pop(event.stream_id, None)
            if held is not None:
                held.cancel()  # the client gave up waiting (its TIMEOUT): nothing to answer
                self._finish_after_goaway()
            self._cut_short(event.stream_id, "reset the stream")
            self._out.pop(event.stream_id, None)
            self._uploading.discard(event.stream_id)
            self.conn.event(
                f"client reset stream {event.stream_id} ({error_name(event.error_code)})"
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.conn.event(f"client sent GOAWAY ({error_name(event.error_code)})")
            self._end("the client sent GOAWAY")
            self._flush()
            self.transport.finish()

    def _start(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        pseudo: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        for k, v in event.headers or ():
            name, value = str(k), str(v)
            if name.startswith(":"):
                pseudo[name] = value
            else:
                headers.append((name, value))
        ep = self.endpoint
        request = Request(
            method=pseudo.get(":method", "?"),
            target=pseudo.get(":path", "/"),
            headers=headers,
            http_version="2",
            scheme=ep.scheme,
            host=ep.host,
            port=ep.port or 0,
            connection_id=self.conn.id,
            stream_id=sid,
        )
        self._requests[sid] = request
        self._bodies[sid] = []
        if event.stream_ended is None:
            self._uploading.add(sid)
        self.conn.event(f"request {request.method} {request.target} on stream {sid}")
        route = ep.match(request)
        fault = route.peek_fault() if route is not None else None
        if any(isinstance(f, FlowStall) for f in flatten(fault)):
            self._stalled.add(sid)
            self._uploading.discard(sid)  # its body is never waited for
            self.conn.event(f"flow_stall(): no WINDOW_UPDATE for stream {sid}, never answered")
            ep.dispatch(request, self.conn)  # recorded now; its body grows as bytes arrive
            # Bounded like stall(): a client with no TIMEOUT would wait forever.
            self._later(_plan.STALL_LIMIT_SECONDS, self._stall_limit, "flow_stall()", "the upload")

    def _complete(self, sid: int) -> None:
        request = self._requests[sid]
        request.body = b"".join(self._bodies.pop(sid, []))
        response = self.endpoint.dispatch(request, self.conn)
        try:
            self._respond(sid, request, response)
        except h2.exceptions.StreamClosedError:
            self._gone(sid)

    def _gone(self, sid: int) -> None:
        # libcurl reset the stream (a timeout, a cancelled transfer) before we answered.
        self._out.pop(sid, None)
        held = self._held.pop(sid, None)
        if held is not None:
            held.cancel()  # a paced stream's next piece: nothing left to send it on
        self.conn.event(f"stream {sid} was closed by the client before its response was sent")

    # answering ---------------------------------------------------------------------------
    def _respond(self, sid: int, request: Request, response: Response) -> None:
        faults = flatten(response.fault)
        waits = [f for f in faults if is_wait(f)]
        if waits:
            self._hold(sid, request, response, faults, waits)
            return
        # The time faults a stream takes: pacing, latency, and a delay or stall at a point
        # of its body (a delay or stall before the response is a wait, above).
        paced = [f for f in faults if isinstance(f, Pacing | Latency) or at_body(f)]
        other = [f for f in faults if not isinstance(f, H2Fault) and f not in paced]
        if other:
            hint = (
                "; a delay() or stall() applies to a stream before its response or at a "
                "point of its body (after_bytes counts body bytes, or at='body_start' or "
                "'body'), not at a point of an HTTP/1.1 head"
                if any(isinstance(f, Delay | Stall) for f in other)
                else ""
            )
            self.endpoint.network._record(
                UsageError(
                    f"{' + '.join(map(repr, other))} on {request.method} {request.target} to "
                    f"{self.endpoint.url}, which the client asked over HTTP/2: HTTP/1.1 byte "
                    "faults do not apply to an HTTP/2 stream, so it was answered without them; "
                    f"use the HTTP/2 faults (rst_stream, goaway, ...) or force HTTP/1.1{hint}"
                )
            )
        h2_faults = [f for f in faults if isinstance(f, H2Fault)]
        acting = h2_faults + paced
        if acting:
            self.conn.fault = acting[0] if len(acting) == 1 else response.fault
            self.conn.fault_on = f"{request.method} {request.target} (stream {sid})"
            self.conn.event(f"fault {' + '.join(map(repr, acting))} on stream {sid}")
        for f in h2_faults:
            if isinstance(f, Settings):
                self.h2.update_settings({SETTING_CODES[k]: v for k, v in f.values})
                self._flush()
        early = next((f for f in h2_faults if self._before_response(f, sid)), None)
        if early is not None and paced:
            self.endpoint.network._record(
                UsageError(
                    f"{' + '.join(map(repr, paced))} composed with {early!r} on "
                    f"{request.method} {request.target} to {self.endpoint.url}: stream {sid} "
                    "gets no response, so there is nothing for them to act on; for a wait "
                    "before it, compose delay(seconds) instead"
                )
            )
        for f in h2_faults:
            if isinstance(f, BadFrame):
                self._flush()
                self.transport.write(f.frame)
                self._sent_log.feed(f.frame)
                self._end("bad_frame() ended the connection")  # its HTTP/2 state means nothing
                self.transport.finish()  # libcurl waits for the close after its GOAWAY
                return
            if isinstance(f, RefusedStream):
                self._reset(sid, ERROR_CODES["REFUSED_STREAM"])
                return
            if isinstance(f, RstStream) and f.after_bytes is None:
                self._reset(sid, f.error_code)
                return
            if isinstance(f, GoAway) and f.last_stream_id < sid:
                self._goaway(f)
                return
        cut = next((f for f in h2_faults if isinstance(f, RstStream)), None)
        body = b"" if request.method == "HEAD" else response.body
        headers = [(":status", str(response.status))]
        names = set()
        for k, v in response.headers:
            name = k.lower()
            if name not in _HOP_BY_HOP:
                headers.append((name, v))
                names.add(name)
        if "content-length" not in names:
            headers.append(("content-length", str(len(response.body))))
        reset = None
        paced, cut = self._body_points(request, body, paced, cut)
        if cut is not None:
            assert cut.after_bytes is not None
            body, reset = body[: cut.after_bytes], cut.error_code
        goaway = next((f for f in h2_faults if isinstance(f, GoAway)), None)
        stall = next((f for f in paced if isinstance(f, Stall)), None)
        if goaway is not None and stall is not None:
            self.endpoint.network._record(
                UsageError(
                    f"{stall!r} + {goaway!r} on {request.method} {request.target} to "
                    f"{self.endpoint.url}: the stream is never finished, so the GOAWAY that "
                    "follows its response never goes; give each step its own fault"
                )
            )
        note = f"response {response.status} on stream {sid}, {len(body)} body bytes"
        pieces = _plan.stream_pieces(body, paced, self.conn.event) if paced else [(0.0, body)]
        self._pace(sid, Reply(headers, note, pieces, reset))
        if goaway is not None:  # covers this stream: after its response
            self._goaway(goaway, after=sid)

    @staticmethod
    def _before_response(f: H2Fault, sid: int) -> bool:
        """Whether ``f`` acts on stream ``sid`` instead of its response."""
        if isinstance(f, RstStream):
            return f.after_bytes is None
        if isinstance(f, GoAway):
            return f.last_stream_id < sid
        return isinstance(f, BadFrame | RefusedStream)

    def _send_pending(self, sid: int) -> None:
        out = self._out.get(sid)
        if out is None:
            return
        h = self.h2
        ended = False
        while out.data:
            window = min(h.local_flow_control_window(sid), h.max_outbound_frame_size)
            if window <= 0:
                return  # a WINDOW_UPDATE resumes it
            chunk, out.data = out.data[:window], out.data[window:]
            ended = out.end and not out.data
            h.send_data(sid, chunk, end_stream=ended)
        if out.more:
            return  # the next piece comes on a timer (see StreamTimers._pace)
        del self._out[sid]
        if out.end and not ended:
            h.end_stream(sid)  # a paced body's last piece was empty: END_STREAM alone
        if out.reset is not None:
            self._reset(sid, out.reset)

    def _reset(self, sid: int, code: int) -> None:
        self.h2.reset_stream(sid, code)
        self.conn.event(f"RST_STREAM({ERROR_NAMES.get(code, code)}) on stream {sid}")
        self._flush()

    def _goaway(self, f: GoAway, after: int | None = None) -> None:
        """GOAWAY, then FIN; ``after``: the stream whose own response it comes with, sent
        first (a paced response is waited for, whatever the error code)."""
        graceful = not f.error_code
        covered = [
            sid
            for sid in self._held
            if sid == after or (graceful and (sid <= f.last_stream_id or sid in self._out))
        ]
        if covered:
            # A graceful GOAWAY promises the streams it covers, and h2 serves nothing once
            # it has sent one: it waits until the held ones are answered (at their delay's
            # end, or their paced body's). A stream whose response has begun is processed,
            # whatever last_stream_id says: it is finished too. Held streams it does not
            # cover are never processed: the client's to retry.
            for sid in [sid for sid in self._held if sid not in covered]:
                self._held.pop(sid).cancel()
            self.conn.event(
                f"GOAWAY(last_stream_id={f.last_stream_id}) waits for held stream(s) "
                f"{', '.join(map(str, covered))}"
            )
            self._goaway_after = f
            return
        self.h2.close_connection(error_code=f.error_code, last_stream_id=f.last_stream_id)
        self.conn.event(f"GOAWAY(last_stream_id={f.last_stream_id}), then FIN")
        self._end("GOAWAY ended the connection")
        self._flush()
        self.transport.finish()

    def _bad_client(self, exc: h2.exceptions.ProtocolError) -> None:
        self._end("the client sent malformed HTTP/2")
        self.endpoint.network._record(
            MalformedRequest(f"{self.endpoint.url} received HTTP/2 it could not parse ({exc})")
        )
        self.conn.event(f"malformed HTTP/2 from the client: {exc}")
        self._flush()  # h2 queued a GOAWAY
        self.transport.finish()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self._sent_log.feed(data)
            self.transport.write(data)


def strip_h2_faults(response: Response) -> tuple[Response, list[H2Fault]]:
    """``response`` without its HTTP/2 faults, and those faults (for an HTTP/1.1 request)."""
    faults = flatten(response.fault)
    h2_faults = [f for f in faults if isinstance(f, H2Fault)]
    if not h2_faults:
        return response, []
    rest = [f for f in faults if not isinstance(f, H2Fault)]
    return replace(response, fault=compose(rest)), h2_faults


class Sniffer:
    """Serves HTTP/2 when a connection opens with the HTTP/2 preface, HTTP/1.1 otherwise.

    ``net.http(host, http2=True)``: prior-knowledge clients get HTTP/2 (h2c); every other
    client, including one asking ``Upgrade: h2c``, is served HTTP/1.1 (a server may ignore
    an upgrade).
    """

    def __init__(
        self, make_h2: Callable[[], StreamProtocol], make_h1: Callable[[], StreamProtocol]
    ) -> None:
        self._make_h2 = make_h2
        self._make_h1 = make_h1
        self._buf = b""
        self.target: StreamProtocol | None = None

    def data_received(self, data: bytes) -> None:
        if self.target is not None:
            self.target.data_received(data)
            return
        self._buf += data
        if len(self._buf) < len(PREFACE) and PREFACE.startswith(self._buf):
            return
        self._choose()

    def eof_received(self) -> None:
        target = self.target if self.target is not None else self._choose()
        target.eof_received()

    def client_closed(self) -> None:
        """The client closed its end: the protocol chosen hears of it (an upload cut short
        is recorded, a held HTTP/2 stream let go), as it does without a sniffer in front."""
        closing = getattr(self.target, "client_closed", None)
        if closing is not None:
            closing()

    def _choose(self) -> StreamProtocol:
        buf, self._buf = self._buf, b""
        target = self._make_h2() if buf.startswith(PREFACE) else self._make_h1()
        self.target = target
        if buf:
            target.data_received(buf)
        return target
