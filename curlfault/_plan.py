"""How a faulted response is sent: rewrite the bytes, then play a schedule of operations.

A response with stream faults is serialized whole first (by h11), rewritten by the protocol
faults (bad Content-Length, chunking, extra headers), then turned into a list of operations
over its bytes: ``write``, ``sleep``, ``fin``, ``rst``, ``stall``. Point faults act at the
exact byte their point resolves to; pacing faults split the bytes after their start into
pieces; latency waits before every write. ``Plan`` plays the list on the connection's byte
transport, waiting on the loop's timers; the first write happens at once, in the thread
that pumped the request.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ._errors import UsageError
from ._loop import Loop
from .faults import (
    BadChunkSize,
    BadContentLength,
    BodyLength,
    Close,
    Compose,
    ConflictingContentLength,
    Delay,
    Drip,
    Garbage,
    Latency,
    OversizedHeader,
    Pacing,
    PointFault,
    Reset,
    Slicer,
    SlowClose,
    Stall,
    StreamFault,
    WrongEncoding,
)

__all__ = [
    "NEVER",
    "Layout",
    "Plan",
    "body_point",
    "build_ops",
    "compose",
    "flatten",
    "rewrite",
    "stream_pieces",
]

Op = tuple[str, object]


class ByteTransport(Protocol):
    @property
    def closed(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
    def when_flushed(self, callback: Callable[[], None]) -> None: ...


def flatten(fault: StreamFault | None) -> list[StreamFault]:
    if fault is None:
        return []
    if isinstance(fault, Compose):
        return list(fault.faults)
    return [fault]


def compose(faults: list[StreamFault]) -> StreamFault | None:
    """``flatten``'s inverse: None, the one fault, or their ``Compose``."""
    if not faults:
        return None
    return faults[0] if len(faults) == 1 else Compose(faults=tuple(faults))


class Layout:
    """Where the parts of one serialized HTTP/1.1 response are (our own bytes)."""

    def __init__(self, data: bytes) -> None:
        self.total = len(data)
        self.status_end = data.find(b"\r\n")
        head = data.find(b"\r\n\r\n")
        self.head_end = head + 4 if head >= 0 else len(data)
        head_bytes = data[: self.head_end].lower()
        self.chunked = b"\r\ntransfer-encoding: chunked" in head_bytes
        self.first_size_end = -1
        if self.chunked:
            self.first_size_end = data.find(b"\r\n", self.head_end)

    def resolve(self, fault: PointFault) -> int:
        if fault.at is None:
            return fault.after_bytes
        at = fault.at
        if at == "status_line":
            return max(1, self.status_end // 2)
        if at == "headers":
            return (self.status_end + 2 + self.head_end - 2) // 2
        if at == "body_start":
            return self.head_end
        if at in ("body", "chunk_size", "last_chunk") and self.total == self.head_end:
            raise UsageError(f"{fault!r}: this response has no body to cut")
        if at == "body":
            if self.chunked:
                data_start = self.first_size_end + 2
                return data_start + max(1, (self.total - 7 - data_start) // 2)
            return self.head_end + max(1, (self.total - self.head_end) // 2)
        if not self.chunked:
            raise UsageError(
                f"{fault!r} needs a chunked response; add headers={{'Transfer-Encoding': "
                "'chunked'}"
            )
        if at == "chunk_size":
            return self.head_end + 1
        return self.total - 5  # last_chunk: before b"0\r\n\r\n"


def _replace_header(head: bytes, name: bytes, value: bytes | None, extra: bytes = b"") -> bytes:
    """Drop header ``name`` from ``head`` and add ``name: value`` (and ``extra`` lines)."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if not ln.lower().startswith(name + b":")]
    if value is not None:
        kept.append(name + b": " + value)
    out = b"\r\n".join(kept) + b"\r\n"
    return out + extra + b"\r\n"


def _chunk(body: bytes) -> bytes:
    return (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"


def rewrite(data: bytes, body: bytes, faults: list[StreamFault]) -> tuple[bytes, bool]:
    """Apply the protocol-breakage faults; returns (bytes, close_after)."""
    close_after = False
    head_end = data.find(b"\r\n\r\n") + 4
    head, rest = data[:head_end], data[head_end:]
    for f in faults:
        if isinstance(f, BadContentLength):
            head = _replace_header(head, b"content-length", f.value.encode("latin-1"))
        elif isinstance(f, ConflictingContentLength):
            head = _replace_header(
                head,
                b"content-length",
                b"%d" % len(body),
                b"Content-Length: %d\r\n" % (len(body) + 7),
            )
        elif isinstance(f, BodyLength):
            head = _replace_header(head, b"content-length", b"%d" % len(body))
            rest = body[: len(body) - f.delta] if f.delta > 0 else body + b"x" * -f.delta
            close_after = True
        elif isinstance(f, BadChunkSize):
            head = _replace_header(head, b"content-length", None)
            head = _replace_header(head, b"transfer-encoding", b"chunked")
            chunked = _chunk(body or b"x")
            rest = f.size_line + chunked[chunked.find(b"\r\n") :]
        elif isinstance(f, WrongEncoding):
            head = _replace_header(head, b"content-encoding", f.encoding.encode("latin-1"))
        elif isinstance(f, OversizedHeader):
            head = _replace_header(head, b"x-oversized", b"a" * f.size)
    return head + rest, close_after


def build_ops(data: bytes, faults: list[StreamFault], trace: Callable[[str], None]) -> list[Op]:
    """The schedule that sends ``data`` with ``faults`` applied."""
    layout = Layout(data)
    points = sorted(
        (
            (min(layout.resolve(f), len(data)), i, f)
            for i, f in enumerate(faults)
            if isinstance(f, PointFault)
        ),
        key=lambda t: (t[0], t[1]),
    )
    pacing = next((f for f in faults if isinstance(f, Pacing)), None)
    slow = next((f for f in faults if isinstance(f, SlowClose)), None)
    latency = _latency_waits(faults, trace)

    ops: list[Op] = []

    def write(piece: bytes) -> None:
        if not piece:
            return
        if latency is not None:
            wait = latency()
            if wait > 0:
                ops.append(("sleep", wait))
        ops.append(("write", piece))

    def emit(start: int, end: int) -> None:
        for a, b, gap in _segment(start, end, pacing):
            if gap > 0:
                ops.append(("sleep", gap))
            write(data[a:b])

    pos = 0
    for at, _, f in points:
        emit(pos, at)
        pos = at
        if isinstance(f, Delay):
            if f.seconds > 0:
                ops.append(("sleep", f.seconds))
        elif isinstance(f, Stall):
            ops.append(("stall", at))
            return ops
        elif isinstance(f, Close):
            ops.append(("fin", at))
            return ops
        elif isinstance(f, Reset):
            ops.append(("rst", at))
            return ops
        elif isinstance(f, Garbage):
            ops.append(("write", f.data))
            ops.append(("fin", at))
            return ops
    emit(pos, len(data))
    if slow is not None:
        if slow.seconds > 0:
            ops.append(("sleep", slow.seconds))
        ops.append(("fin", len(data)))
    return ops


def _latency_waits(
    faults: Sequence[StreamFault], trace: Callable[[str], None]
) -> Callable[[], float] | None:
    """The wait before each write of a ``latency()`` among ``faults`` (None: no latency);
    with jitter, drawn from a generator seeded by ``latency(seed=...)`` or at random, the
    seed then traced so that a failing run can be replayed."""
    latency = next((f for f in faults if isinstance(f, Latency)), None)
    if latency is None:
        return None
    seconds, jitter = latency.seconds, latency.jitter
    if not jitter:
        return lambda: seconds
    seed = latency.seed if latency.seed is not None else random.randrange(2**32)
    trace(f"latency jitter seed={seed}")
    rng = random.Random(seed)
    return lambda: seconds + rng.uniform(0, jitter)


def _segment(start: int, end: int, pacing: Pacing | None) -> Iterator[tuple[int, int, float]]:
    """The writes of bytes ``[start, end)`` under ``pacing``, as ``(from, to, gap before)``:
    the bytes before its ``after_bytes`` at once, the rest in pieces of its size, each after
    its gap but the segment's first (an empty write is the caller's to skip)."""
    if pacing is None or end <= pacing.after_bytes:
        yield start, end, 0.0
        return
    split = max(start, pacing.after_bytes)
    yield start, split, 0.0
    size, gap = _piece_size_and_gap(pacing)
    for i in range(split, end, size):
        yield i, min(i + size, end), gap if i > split else 0.0


def _piece_size_and_gap(pacing: Pacing) -> tuple[int, float]:
    if isinstance(pacing, Drip):
        return pacing.chunk, pacing.chunk / pacing.bytes_per_second
    if isinstance(pacing, Slicer):
        return pacing.size, pacing.delay
    raise TypeError(f"unknown pacing fault {pacing!r}")  # pragma: no cover - two kinds


# The wait of a stall's piece in ``stream_pieces``: never sent, the stream never finished.
NEVER = math.inf


def body_point(f: Delay | Stall, body_size: int) -> int | None:
    """Where in an HTTP/2 stream's body a ``delay`` or ``stall`` at a byte point acts:
    ``after_bytes`` counts body bytes (as ``rst_stream(after_bytes=N)`` does), ``at`` names
    ``body_start`` (after the HEADERS) or ``body`` (its middle); None for the points of an
    HTTP/1.1 head (status line, headers, chunk sizes), which a stream does not have."""
    if f.at is None:
        return min(f.after_bytes, body_size)
    if f.at == "body_start":
        return 0
    if f.at == "body":
        return max(1, body_size // 2) if body_size else 0
    return None


def stream_pieces(
    body: bytes, faults: Sequence[StreamFault], trace: Callable[[str], None]
) -> list[tuple[float, bytes]]:
    """An HTTP/2 stream's response as ``(wait, piece)`` pairs: ``build_ops`` for one stream.

    The first pair is the HEADERS frame's (its bytes empty), its wait the one before the
    response (a ``latency()``). The body follows, split as ``build_ops`` splits an HTTP/1.1
    response, byte points counting body bytes (as ``rst_stream(after_bytes=N)`` does): each
    ``delay``/``stall`` point (``body_point``) ends a segment, and a pacing fault cuts each
    segment past its ``after_bytes`` into pieces of its size, each after its gap (none before
    a segment's first); every write but the first (which goes with the HEADERS) waits a
    ``latency()`` too. A delay's seconds are added to the wait of the piece after its point
    (an empty last piece, END_STREAM alone, at the body's end); a stall ends the list with
    ``(NEVER, b"")``.
    """
    pacing = next((f for f in faults if isinstance(f, Pacing)), None)
    latency = _latency_waits(faults, trace)

    def wait() -> float:
        return latency() if latency is not None else 0.0

    pieces: list[tuple[float, bytes]] = [(wait(), b"")]  # the HEADERS' own
    pending = 0.0  # a delay's seconds, waited before the next piece

    def write(piece: bytes, gap: float = 0.0) -> None:
        nonlocal pending
        if piece:
            pieces.append((pending + gap + (wait() if len(pieces) > 1 else 0.0), piece))
            pending = 0.0

    def emit(start: int, end: int) -> None:
        for a, b, gap in _segment(start, end, pacing):
            write(body[a:b], gap)

    points: list[tuple[int, int, Delay | Stall]] = []
    for i, f in enumerate(faults):
        if isinstance(f, Delay | Stall):
            offset = body_point(f, len(body))
            if offset is not None:
                points.append((offset, i, f))
    pos = 0
    for offset, _, f in sorted(points, key=lambda p: p[:2]):
        emit(pos, offset)
        pos = offset
        if isinstance(f, Stall):
            pieces.append((NEVER, b""))
            return pieces
        pending += f.seconds
    emit(pos, len(body))
    if pending:
        pieces.append((pending, b""))  # a delay at the body's end: END_STREAM alone, late
    return pieces


# How long a stall() holds a connection before the fake gives up: a client with no TIMEOUT
# (nor LOW_SPEED_LIMIT) would wait forever, and curlfault never lets a test hang. A module
# value, so that a test of this bound can lower it.
STALL_LIMIT_SECONDS = 60.0


def stall_limit_message(what: str) -> str:
    """The problem a stall bound records: ``what`` is "stall() held the connection" or the
    like; the rest (why, and the fix) is the same for every stall."""
    return (
        f"{what} for {STALL_LIMIT_SECONDS:g} s and the client was still waiting: the handle "
        "has no TIMEOUT (or LOW_SPEED_LIMIT) to end it, so curlfault closed the connection "
        "rather than let the test hang; give the handle a TIMEOUT (the behaviour a stall "
        "tests is the client's own timeout, CURLcode 28)"
    )


class Plan:
    """Plays a schedule on one connection; ``on_done`` runs if it ends without closing."""

    def __init__(
        self,
        transport: ByteTransport,
        loop: Loop,
        ops: list[Op],
        trace: Callable[[str], None],
        on_done: Callable[[], None],
        on_error: Callable[[BaseException], None],
        on_stall_limit: Callable[[str], None] | None = None,
    ) -> None:
        self.transport = transport
        self._on_stall_limit = on_stall_limit
        self.loop = loop
        self.ops: deque[Op] = deque(ops)
        self.trace = trace
        self.on_done = on_done
        self._on_error = on_error
        self.ended = False  # the plan closed, reset or stalled the connection

    def start(self) -> None:
        self._step()

    def on_error(self, exc: BaseException) -> None:
        self._on_error(exc)

    def _step(self) -> None:
        t = self.transport
        while self.ops:
            if t.closed:
                self.trace("plan stopped: the connection is closed")
                return
            kind, arg = self.ops.popleft()
            if kind == "write":
                assert isinstance(arg, bytes)
                t.write(arg)
            elif kind == "sleep":
                self.loop.call_later(float(arg), self._step)  # type: ignore[arg-type]
                return
            elif kind == "fin":
                self.ended = True
                self.trace(f"FIN after {arg} bytes")
                t.finish()
                return
            elif kind == "rst":
                self.ended = True
                self.trace(f"RST after {arg} bytes")
                t.when_flushed(t.abort)
                return
            elif kind == "stall":
                self.ended = True
                self.trace(f"stalled after {arg} bytes")
                if self._on_stall_limit is not None:
                    self.loop.call_later(STALL_LIMIT_SECONDS, self._stall_limit)
                return
        self.on_done()

    def _stall_limit(self) -> None:
        """The client is still waiting on a stall: it has no timeout. End it, loudly."""
        t = self.transport
        if t.closed:
            return  # the client's TIMEOUT ended it, or the network closed: the usual case
        seconds = f"{STALL_LIMIT_SECONDS:g}"
        self.trace(f"stall(): the client still waited after {seconds} s; closed by curlfault")
        assert self._on_stall_limit is not None
        self._on_stall_limit(stall_limit_message("stall() held the connection"))
        t.finish()
