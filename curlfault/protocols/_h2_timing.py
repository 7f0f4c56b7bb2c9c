"""Time faults on one HTTP/2 stream: what waits on the loop thread's timers.

``delay()`` and ``stall()`` before a stream's response or inside its body, and ``drip()``,
``slicer()`` and ``latency()`` pacing its body, hold that one stream on a timer while the
connection's other streams are served. ``StreamTimers`` is the part of ``Http2Server`` that
keeps them: the held streams (``_held``: stream id -> the timer that ends its wait),
answering a delayed stream late, placing the points of a body's delays and stalls (and
reporting those that never act), sending a paced body piece by piece, the bound on a stall,
and letting every held stream go when the client resets it or the connection ends. Timers
call back through weak references, so a pending one never keeps a closed network alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import h2.connection
import h2.exceptions

from .. import _plan
from .._errors import UsageError
from .._plan import compose
from ..faults import Delay, Stall, StreamFault

if TYPE_CHECKING:
    from .._faults_h2 import GoAway, RstStream
    from .._http import Request, Response
    from .._loop import Timer
    from .._network import Connection, HttpEndpoint
    from .._transports import Channel
    from .http1 import ByteTransport

__all__ = ["Reply", "StreamTimers", "Unsent", "at_body", "is_wait"]


class Unsent:
    """A response still being sent on one stream: body bytes the windows have not let out."""

    __slots__ = ("data", "end", "more", "reset")

    def __init__(self, data: bytes, end: bool, reset: int | None) -> None:
        self.data = data
        self.end = end  # END_STREAM with the last DATA frame
        self.reset = reset  # RST_STREAM(error code) once the data is out
        self.more = False  # pieces of a paced body still to come (see StreamTimers._pace)


class Reply:
    """A stream's response as it goes out: the HEADERS (None once sent, with ``note`` for
    the trace), the ``(wait, bytes)`` pieces of ``_plan.stream_pieces`` (the first the
    HEADERS' own), and the RST_STREAM error code to end it with, if any."""

    __slots__ = ("headers", "note", "pieces", "reset")

    def __init__(
        self,
        headers: list[tuple[str, str]],
        note: str,
        pieces: list[tuple[float, bytes]],
        reset: int | None,
    ) -> None:
        self.headers: list[tuple[str, str]] | None = headers
        self.note = note
        self.pieces = pieces
        self.reset = reset


def is_wait(f: StreamFault) -> bool:
    """A ``delay()`` or ``stall()`` before the response: one an HTTP/2 stream takes."""
    return isinstance(f, Delay | Stall) and f.after_bytes == 0 and f.at is None


def at_body(f: StreamFault) -> bool:
    """A ``delay`` or ``stall`` at a point of the body (not before the response: a wait)."""
    return isinstance(f, Delay | Stall) and not is_wait(f) and _plan.body_point(f, 0) is not None


class StreamTimers:
    """The held streams of one HTTP/2 connection (a part of ``Http2Server``)."""

    # Set by Http2Server.__init__.
    h2: h2.connection.H2Connection
    endpoint: HttpEndpoint
    transport: ByteTransport
    conn: Connection
    _channel: Channel | None
    _held: dict[int, Timer]
    _out: dict[int, Unsent]
    _dead: bool
    _goaway_after: GoAway | None

    # Http2Server's own, used here.
    def _respond(self, sid: int, request: Request, response: Response) -> None:
        raise NotImplementedError

    def _send_pending(self, sid: int) -> None:
        raise NotImplementedError

    def _goaway(self, f: GoAway) -> None:
        raise NotImplementedError

    def _gone(self, sid: int) -> None:
        raise NotImplementedError

    def _end(self, why: str) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _release_held(self, why: str = "the client closed the connection") -> None:
        for sid, timer in self._held.items():
            timer.cancel()
            self.conn.event(f"stream {sid} was still held when {why}")
        self._held.clear()

    def _later(self, seconds: float, method: Callable[..., None], *args: object) -> Timer:
        """``method(*args)`` from the loop thread in ``seconds``, through a weak reference: a
        pending timer never keeps a closed network's connection (and the network) alive."""
        ref = weakref.WeakMethod(method)

        def fire() -> None:
            bound = ref()
            if bound is not None:
                bound(*args)

        return self.endpoint.network.loop.call_later(seconds, fire)

    def _stall_limit(self, fault: str, what: str, sid: int | None = None) -> None:
        """The client still waits on a stall after the bound: it has no timeout."""
        if sid is not None and self._held.pop(sid, None) is None:
            return  # the client reset the stream meanwhile
        if self.transport.closed or self._dead:
            return  # the client's TIMEOUT ended it, or the network closed: the usual case
        seconds = f"{_plan.STALL_LIMIT_SECONDS:g}"
        self.conn.event(f"{fault}: the client still waited after {seconds} s; closed")
        text = _plan.stall_limit_message(f"{fault} held {what}")
        self.endpoint.network._record(UsageError(f"connection #{self.conn.id}: {text}"))
        self._end(f"curlfault closed the connection ({fault} bound)")
        self.transport.finish()

    def _hold(
        self,
        sid: int,
        request: Request,
        response: Response,
        faults: list[StreamFault],
        waits: list[StreamFault],
    ) -> None:
        """Answer stream ``sid`` after its ``delay()`` (or never: ``stall()``), from the loop
        thread's timer; the connection's other streams are answered meanwhile."""
        rest = [f for f in faults if not is_wait(f)]
        on = f"{request.method} {request.target} (stream {sid})"
        self.conn.fault = faults[0] if len(faults) == 1 else response.fault
        self.conn.fault_on = on
        if any(isinstance(f, Stall) for f in waits):
            if len(faults) > 1:
                others = " + ".join(repr(f) for f in faults if not isinstance(f, Stall))
                self.endpoint.network._record(
                    UsageError(
                        f"{others} composed with stall() on {on} to {self.endpoint.url}: the "
                        "stream is never answered, so they can never act; declare them on "
                        "another step"
                    )
                )
            self.conn.event(f"fault stall() on stream {sid}: never answered")
            self._held[sid] = self._later(
                _plan.STALL_LIMIT_SECONDS, self._stall_limit, "stall()", f"stream {sid}", sid
            )
            return
        seconds = sum(f.seconds for f in waits if isinstance(f, Delay))
        later = replace(response, fault=compose(rest))
        self.conn.event(
            f"fault {' + '.join(map(repr, waits))} on stream {sid}: answered in {seconds:g} s"
        )
        self._held[sid] = self._later(seconds, self._answer_late, sid, request, later)

    def _answer_late(self, sid: int, request: Request, response: Response) -> None:
        """A delayed stream's answer, from the loop thread's timer."""
        conn = self.conn
        fault, fault_on = conn.fault, conn.fault_on  # the whole fault, delay included

        def answer() -> None:
            try:
                self._respond(sid, request, response)
            finally:
                conn.fault, conn.fault_on = fault, fault_on

        self._timer_step(sid, answer)

    def _timer_step(self, sid: int, step: Callable[[], None]) -> None:
        """Run a held stream's ``step`` when its timer fires, unless the client reset the
        stream or the connection ended meanwhile; an error in it fails the connection, as
        the loop does with a server's error while it pumps."""
        if self._held.pop(sid, None) is None or self.transport.closed or self._dead:
            return
        try:
            step()
            if not self._dead:
                self._flush()
        except h2.exceptions.StreamClosedError:
            self._gone(sid)
        except BaseException as exc:
            self._server_failed(exc)
            return
        self._finish_after_goaway()

    def _finish_after_goaway(self) -> None:
        """The GOAWAY that waited, once its last held stream is answered (or reset)."""
        f = self._goaway_after
        if f is not None and not self._held and not self._dead:
            self._goaway_after = None
            self._goaway(f)

    def _pace(self, sid: int, reply: Reply) -> None:
        """Send stream ``sid``'s response piece by piece (see ``Reply``): the HEADERS, then
        the body's pieces, each after its wait on a timer of the loop thread, so a paced
        stream never holds up the connection's others; a stall's piece is never sent. The
        pieces still to come make the stream held (``_held``): a client's reset or the
        connection's end stops them, a graceful GOAWAY waits for them."""
        pieces, reset = reply.pieces, reply.reset
        while pieces:
            wait, piece = pieces[0]
            if wait == _plan.NEVER:
                # A stall inside the body: the stream is never finished. Bounded like every
                # stall: a client with no TIMEOUT would wait forever.
                self.conn.event(f"fault stall() on stream {sid}: the rest never sent")
                self._held[sid] = self._later(
                    _plan.STALL_LIMIT_SECONDS, self._stall_limit, "stall()", f"stream {sid}", sid
                )
                return
            if wait > 0:
                self._held[sid] = self._later(wait, self._next_piece, sid, reply)
                return
            del pieces[0]
            last = not pieces
            if reply.headers is not None:
                empty = last and not piece and reset is None
                self.h2.send_headers(sid, reply.headers, end_stream=empty)
                self.conn.event(reply.note)
                reply.headers = None
                if empty:
                    return  # no body
            out = self._out.get(sid)
            if out is None:
                out = self._out[sid] = Unsent(b"", False, reset)
            out.data += piece
            out.more = not last
            out.end = last and reset is None
            self._send_pending(sid)

    def _next_piece(self, sid: int, reply: Reply) -> None:
        """A paced stream's next piece, from the loop thread's timer."""

        def send() -> None:
            reply.pieces[0] = (0.0, reply.pieces[0][1])  # its wait is over
            self._pace(sid, reply)

        self._timer_step(sid, send)

    def _server_failed(self, exc: BaseException) -> None:
        """What the loop does with a server's error while it pumps: the connection fails
        (the client sees it close) and check() raises the error."""
        self._end("the server failed")
        channel = self._channel
        if channel is not None:
            channel.on_error(exc)
        else:  # pragma: no cover - every served connection has a channel
            self.conn.server_failed(exc)
            self.transport.abort()

    def _body_points(
        self,
        request: Request,
        body: bytes,
        paced: list[StreamFault],
        cut: RstStream | None,
    ) -> tuple[list[StreamFault], RstStream | None]:
        """``paced`` with each delay and stall inside the body at its byte (its point worked
        out on the whole body), and the RST_STREAM cut if it still acts. The first fault to
        act ends the stream: against a cut at byte M (the RST wins a tie with a stall), a
        stall before M leaves the RST unsent and a delay or stall past M never acts; a delay
        at or past a stall never acts. A HEAD response has no body for a point to fall in.
        Each fault that never acts is reported."""
        size = len(body)
        head = request.method == "HEAD"
        end = size if cut is None else min(size, cut.after_bytes or 0)
        kept: list[StreamFault] = []
        never: list[StreamFault] = []
        points: dict[int, int] = {}  # id(fault kept) -> its point
        for f in paced:
            if not at_body(f):
                kept.append(f)
                continue
            assert isinstance(f, Delay | Stall)
            point = _plan.body_point(f, size)
            assert point is not None
            if head or (f.at == "body" and not size):
                never.append(f)  # as over HTTP/1.1: no body to put the point in
            elif cut is not None and (point > end or (isinstance(f, Stall) and point == end)):
                never.append(f)
            else:
                at = replace(f, after_bytes=point, at=None)
                kept.append(at)
                points[id(at)] = point
        stall = next((f for f in kept if isinstance(f, Stall)), None)
        if stall is not None:
            if cut is not None:
                never.append(cut)  # the stall ends the stream first
                cut = None
            late = [
                f
                for f in kept
                if isinstance(f, Delay) and id(f) in points and points[id(f)] >= points[id(stall)]
            ]
            never += late
            kept = [f for f in kept if f not in late]
        if never:
            self._never_acted(request, never, size)
        return kept, cut

    def _never_acted(self, request: Request, never: list[StreamFault], size: int) -> None:
        if request.method == "HEAD":
            route = self.endpoint.match(request)
            why = (
                "a HEAD response has no body to put a point in: a GET route answers HEAD "
                "too, and this HEAD took the step meant for a GET; declare "
                f".head({request.path!r}).respond(...) on the endpoint for the HEAD, or give "
                "the fault to a later step"
                if route is not None and route.method == "GET"
                else "a HEAD response has no body to put a point in"
            )
        elif not size:
            why = "this response has no body to put a point in"
        else:
            why = "the first fault to act ends the stream; give each step its own fault"
        self.endpoint.network._record(
            UsageError(
                f"{' + '.join(map(repr, never))} on {request.method} {request.target} to "
                f"{self.endpoint.url} never acted: {why}"
            )
        )
