"""The fault vocabulary: small frozen values, validated when they are made.

Connection faults decide what happens when libcurl asks for a socket; give them to
``endpoint.connection_faults(...)``. Stream faults cut or shape the bytes of one response;
give them as ``respond(..., fault=...)``. Each docstring names the CURLcode libcurl 8.x
returns, and ``curlfault matrix`` proves it against the installed pycurl.

    >>> from curlfault import faults
    >>> faults.refuse()
    refuse()
    >>> faults.close(after_bytes=10)
    close(after_bytes=10)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from ._errors import UsageError

__all__: list[str] = [
    "POINTS",
    "Close",
    "Compose",
    "ConnectionFault",
    "Delay",
    "Drip",
    "Fault",
    "Garbage",
    "Latency",
    "Pacing",
    "PointFault",
    "Reset",
    "Slicer",
    "SlowClose",
    "Stall",
    "StreamFault",
    "close",
    "delay",
    "drip",
    "garbage",
    "latency",
    "reset",
    "slicer",
    "slow_close",
    "stall",
]


@dataclass(frozen=True)
class Fault:
    """Base class. ``curlcode`` is what libcurl returns when the fault is met."""

    curlcode: ClassVar[int]
    name: ClassVar[str]
    # False while a fault is declared but not produced yet: declaring it raises
    # NotImplementedError rather than faking its CURLcode.
    modelled: ClassVar[bool] = True

    def __add__(self, other: object) -> Compose:
        # Only stream faults compose (StreamFault overrides this): a clear error for the rest.
        if not isinstance(other, Fault):
            return NotImplemented
        raise UsageError(_no_compose(self, other))

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({args})"


@dataclass(frozen=True, repr=False)
class ConnectionFault(Fault):
    """A fault applied when libcurl asks for a socket."""


@dataclass(frozen=True, repr=False)
class StreamFault(Fault):
    """A fault applied to the bytes of one response. ``a + b`` composes two of them."""

    # An HTTP/2 fault that ends or holds the stream's answer (rst_stream, refused_stream,
    # goaway, bad_frame, flow_stall): a response can have one, since it would hide another.
    ends_h2_stream: ClassVar[bool] = False

    @property
    def no_h2_response(self) -> bool:
        """An HTTP/2 fault that sends no response on the stream at all (RST_STREAM before
        the headers, REFUSED_STREAM, a malformed frame, a request never answered): a pacing
        fault composed with it could never act."""
        return False

    def __add__(self, other: object) -> Compose:
        if not isinstance(other, StreamFault):
            if isinstance(other, Fault):
                raise UsageError(_no_compose(self, other))
            return NotImplemented
        return Compose(faults=(self, other))


def _no_compose(a: Fault, b: Fault) -> str:
    """Why ``a + b`` is refused: one of them is not a stream fault."""
    odd = a if not isinstance(a, StreamFault) else b
    if isinstance(odd, ConnectionFault):
        what = (
            "a connection fault, which decides what happens to one whole connection: give "
            "connection faults to endpoint.connection_faults(...) (the n-th fault for the "
            "n-th connection)"
        )
    else:
        what = "not a stream fault: give it where its docs say (a WebSocket route's fault())"
    return (
        f"{a!r} + {b!r}: only stream faults compose with +, and {odd!r} is {what}; give "
        "stream faults to respond(..., fault=...)"
    )


def _seconds(value: object, what: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what} must be a number of seconds, got {value!r}")
    if value != value:
        raise UsageError(f"{what} must be a number of seconds, got {value!r} (not a number)")
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if value == float("inf"):
        raise UsageError(
            f"{what} must be finite, got {value!r}; for a server that never sends the rest, "
            "use faults.stall()"
        )
    return float(value)


def _byte_count(value: object, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be an int number of bytes, got {value!r}")
    if value < minimum:
        raise UsageError(f"{what} must be >= {minimum}, got {value}")
    return value


# Named byte points of an HTTP/1.1 response, resolved against the bytes actually sent.
POINTS = {
    "status_line": "inside the status line",
    "headers": "inside the header block, after the status line",
    "body_start": "after the blank line that ends the headers, before any body byte",
    "body": "in the middle of the body",
    "chunk_size": "inside the first chunk-size line (chunked responses)",
    "last_chunk": "before the terminating zero-size chunk (chunked responses)",
}


def _point(after_bytes: object, at: object, what: str) -> None:
    if at is not None:
        if after_bytes:
            raise UsageError(f"{what}: give after_bytes= or at=, not both")
        if at not in POINTS:
            raise UsageError(
                f"{what}: at={at!r} is not a byte point; use one of {', '.join(POINTS)}"
            )
    else:
        _byte_count(after_bytes, f"{what}(after_bytes=...)")


@dataclass(frozen=True, repr=False)
class PointFault(StreamFault):
    """A stream fault that acts at one byte point: ``after_bytes=N`` or ``at="name"``."""

    after_bytes: int = 0
    at: str | None = None

    def __repr__(self) -> str:
        args = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("after_bytes", "at")
        ]
        args.append(f"at={self.at!r}" if self.at is not None else f"after_bytes={self.after_bytes}")
        return f"{self.name}({', '.join(args)})"

    def __post_init__(self) -> None:
        _point(self.after_bytes, self.at, self.name)


@dataclass(frozen=True, repr=False)
class Close(PointFault):
    """Send the response up to the byte point, then FIN (half-close, drain, close).

    The CURLcode depends on where the cut falls, so ``curlcode`` (18) names the mid-body case:
    before any byte (``after_bytes=0``) gives 52 (``GOT_NOTHING``); inside the body of a
    response with a Content-Length, or inside a chunked body, 18 (``PARTIAL_FILE``); inside
    the header block, 0: libcurl ends the headers at EOF. ``curlfault matrix`` proves each
    point it lists.
    """

    curlcode: ClassVar[int] = 18
    name: ClassVar[str] = "close"


@dataclass(frozen=True, repr=False)
class Reset(PointFault):
    """Send the response up to the byte point, then RST (``SO_LINGER(1, 0)``).

    An RST needs TCP: an endpoint that has a reset fault serves every connection over a
    loopback TCP pair, whatever transport it was given. libcurl returns 56 (``RECV_ERROR``).
    """

    curlcode: ClassVar[int] = 56
    name: ClassVar[str] = "reset"


@dataclass(frozen=True, repr=False)
class Stall(PointFault):
    """Send the response up to the byte point, then nothing more.

    The client's own ``TIMEOUT`` (or ``LOW_SPEED_LIMIT``) ends it: 28 (``OPERATION_TIMEDOUT``).
    A client with neither is not left waiting forever: after 60 s the fake closes the
    connection and ``check()`` raises ``UsageError`` asking for a ``TIMEOUT``. On an HTTP/2
    stream (at the default byte point) it holds that stream alone: the connection's other
    streams are answered.
    """

    curlcode: ClassVar[int] = 28
    name: ClassVar[str] = "stall"


@dataclass(frozen=True, repr=False)
class Delay(PointFault):
    """Pause ``seconds`` at the byte point, then send the rest.

    28 if the client's ``TIMEOUT`` is shorter; otherwise the transfer succeeds (0), late. On
    an HTTP/2 stream (at the default byte point) it delays that stream's answer alone: the
    connection's other streams are answered meanwhile.
    """

    seconds: float = 0.0
    curlcode: ClassVar[int] = 28
    name: ClassVar[str] = "delay"

    def __post_init__(self) -> None:
        super().__post_init__()
        _seconds(self.seconds, "delay(seconds=...)")


@dataclass(frozen=True, repr=False)
class Garbage(PointFault):
    """Send the response up to the byte point, then ``data`` instead of the rest, then FIN.

    Garbage as the status line gives 1 (``UNSUPPORTED_PROTOCOL``), not 8: libcurl decides the
    reply is not HTTP at all. Elsewhere the code is that of the cut at the same point (the
    garbage is followed by FIN); a malformed chunk-size line is ``bad_chunk_size()`` (56).
    """

    data: bytes = b"GARBAGE"
    curlcode: ClassVar[int] = 1
    name: ClassVar[str] = "garbage"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.data, bytes) or not self.data:
            raise UsageError(f"garbage(data=...) must be non-empty bytes, got {self.data!r}")


@dataclass(frozen=True, repr=False)
class Pacing(StreamFault):
    """Faults that shape how the bytes after ``after_bytes`` are sent (one per response).

    Over HTTP/2 they pace one stream's body in DATA frames, and ``after_bytes`` counts body
    bytes (a stream's data has no status line or header bytes).
    """

    after_bytes: int = 0


@dataclass(frozen=True, repr=False)
class Drip(Pacing):
    """Send ``chunk`` bytes at a time at ``bytes_per_second``.

    Under the client's ``LOW_SPEED_LIMIT``/``LOW_SPEED_TIME`` (or past ``TIMEOUT``): 28.
    """

    bytes_per_second: float = 1000.0
    chunk: int = 1
    curlcode: ClassVar[int] = 28
    name: ClassVar[str] = "drip"

    def __post_init__(self) -> None:
        _byte_count(self.after_bytes, "drip(after_bytes=...)")
        _seconds(self.bytes_per_second, "drip(bytes_per_second=...)", allow_zero=False)
        _byte_count(self.chunk, "drip(chunk=...)", minimum=1)


@dataclass(frozen=True, repr=False)
class Slicer(Pacing):
    """Send ``size`` bytes at a time with ``delay`` seconds between pieces (0 when served)."""

    size: int = 1
    delay: float = 0.0
    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "slicer"

    def __post_init__(self) -> None:
        _byte_count(self.after_bytes, "slicer(after_bytes=...)")
        _byte_count(self.size, "slicer(size=...)", minimum=1)
        _seconds(self.delay, "slicer(delay=...)")


@dataclass(frozen=True, repr=False)
class Latency(StreamFault):
    """Wait ``seconds`` (plus up to ``jitter``, seeded) before every piece the server sends.

    Alone, one wait before the response; with ``slicer``/``drip``, one before each piece.
    ``seed=None`` draws a seed, which the connection trace records so a run can be repeated.
    """

    seconds: float = 0.0
    jitter: float = 0.0
    seed: int | None = None
    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "latency"

    def __post_init__(self) -> None:
        _seconds(self.seconds, "latency(seconds=...)")
        _seconds(self.jitter, "latency(jitter=...)")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise UsageError(f"latency(seed=...) must be an int or None, got {self.seed!r}")


@dataclass(frozen=True, repr=False)
class SlowClose(StreamFault):
    """Send the whole response, wait ``seconds``, then FIN (the connection is not reused).

    A body delimited by the close (no Content-Length) completes only then: 0, or 28 past
    ``TIMEOUT``.
    """

    seconds: float = 1.0
    curlcode: ClassVar[int] = 0
    name: ClassVar[str] = "slow_close"

    def __post_init__(self) -> None:
        _seconds(self.seconds, "slow_close(seconds=...)")


@dataclass(frozen=True, repr=False)
class Compose(StreamFault):
    """Several stream faults on one response, e.g. ``delay(0.5) + reset(after_bytes=100)``.

    Point faults act in byte order (a delay at 0 before a reset at 100); at most one pacing
    fault and one protocol rewrite; the first fault that ends the stream wins.
    """

    faults: tuple[StreamFault, ...] = ()
    name: ClassVar[str] = "compose"

    def __post_init__(self) -> None:
        if not self.faults:
            raise UsageError("compose at least one stream fault, such as faults.delay(0.5)")
        flat: list[StreamFault] = []
        for f in self.faults:
            if isinstance(f, Compose):
                flat.extend(f.faults)
            elif isinstance(f, StreamFault):
                flat.append(f)
            else:
                raise UsageError(
                    f"{f!r} is not a stream fault and cannot be composed{_misuse_hint(f)}"
                )
        if sum(isinstance(f, Pacing) for f in flat) > 1:
            raise UsageError("compose at most one pacing fault (drip or slicer) per response")
        if sum(isinstance(f, Latency) for f in flat) > 1:
            raise UsageError("compose at most one latency(...) per response")
        cuts = [f for f in flat if isinstance(f, (Close, Reset, Stall, Garbage))]
        if len(cuts) > 1:
            raise UsageError(
                f"{' + '.join(map(repr, cuts))}: compose at most one of close, reset, stall "
                "and garbage per response (the first to act ends the response, so the "
                "others never would); for one fault per request, give each step its own: "
                "respond(..., fault=close(...)).respond(..., fault=reset(...))"
            )
        silent = [f for f in flat if f.no_h2_response]
        paced = [f for f in flat if isinstance(f, (Pacing, Latency))]
        if silent and paced:
            raise UsageError(
                f"{' + '.join(map(repr, paced + silent))}: {silent[0]!r} sends no response "
                "on the stream, so there is nothing to pace; for a wait before it, compose "
                "delay(seconds) instead"
            )
        ending = [f for f in flat if f.ends_h2_stream]
        if len(ending) > 1:
            raise UsageError(
                f"{' + '.join(map(repr, ending))}: compose at most one of rst_stream, "
                "refused_stream, goaway, bad_frame and flow_stall per response (the first "
                "to act would hide the others); settings() composes with any of them"
            )
        object.__setattr__(self, "faults", tuple(flat))

    def __repr__(self) -> str:
        return " + ".join(repr(f) for f in self.faults)


def close(after_bytes: int = 0, *, at: str | None = None) -> Close:
    """FIN at the byte point (52 before any byte, 18 inside the body, 0 inside headers)."""
    return Close(after_bytes=after_bytes, at=at)


def reset(after_bytes: int = 0, *, at: str | None = None) -> Reset:
    """RST at the byte point (CURLcode 56)."""
    return Reset(after_bytes=after_bytes, at=at)


def stall(after_bytes: int = 0, *, at: str | None = None) -> Stall:
    """Send nothing more after the byte point (28 at the client's TIMEOUT)."""
    return Stall(after_bytes=after_bytes, at=at)


def delay(seconds: float, *, after_bytes: int = 0, at: str | None = None) -> Delay:
    """Pause ``seconds`` at the byte point (28 if past the client's TIMEOUT)."""
    return Delay(after_bytes=after_bytes, at=at, seconds=seconds)


def garbage(data: bytes = b"GARBAGE", *, after_bytes: int = 0, at: str | None = None) -> Garbage:
    """``data`` instead of the rest of the response, then FIN (1 as the status line)."""
    return Garbage(after_bytes=after_bytes, at=at, data=data)


def drip(bytes_per_second: float, *, chunk: int = 1, after_bytes: int = 0) -> Drip:
    """``chunk`` bytes at a time at ``bytes_per_second`` (28 under LOW_SPEED_LIMIT)."""
    return Drip(after_bytes=after_bytes, bytes_per_second=bytes_per_second, chunk=chunk)


def slicer(size: int, delay: float = 0.0, *, after_bytes: int = 0) -> Slicer:
    """``size`` bytes at a time, ``delay`` seconds apart (0: the transfer still succeeds)."""
    return Slicer(after_bytes=after_bytes, size=size, delay=delay)


def latency(seconds: float, jitter: float = 0.0, seed: int | None = None) -> Latency:
    """Wait ``seconds`` (+ seeded jitter) before every piece sent."""
    return Latency(seconds=seconds, jitter=jitter, seed=seed)


def slow_close(seconds: float) -> SlowClose:
    """FIN ``seconds`` after the whole response was sent."""
    return SlowClose(seconds=seconds)


def _call_text(name: str) -> str:
    """``faults.refuse()`` for a factory that takes no argument, else ``faults.reset(...)``."""
    code = getattr(globals()[name], "__code__", None)
    takes = code is None or code.co_argcount + code.co_kwonlyargcount > 0
    return f"faults.{name}({'...' if takes else ''})"


def _misuse_hint(value: object) -> str:
    """What to write instead when ``value`` names a fault but is not one: a factory of this
    module (``faults.reset``), a fault class (``Reset``) or a factory's name (``"refuse"``).
    ``"; call it: faults.reset(...)"``, ``"; pass faults.refuse(), not the string"``, or
    ``""`` for anything else."""
    if isinstance(value, str):
        if value in __all__ and value.islower() and callable(globals().get(value)):
            return f"; pass {_call_text(value)}, not the string"
        return ""
    if isinstance(value, type) and issubclass(value, Fault):
        name = getattr(value, "name", None)  # abstract bases (StreamFault, ...) have none
    else:
        name = getattr(value, "__name__", None)
        if not isinstance(name, str) or globals().get(name) is not value:
            return ""
    if isinstance(name, str) and name in __all__ and callable(globals().get(name)):
        return f"; call it: {_call_text(name)}"
    return ""


# Protocol faults live in modules of their own and belong to this namespace; they are
# imported last because they subclass the bases above.
from . import _faults_connect, _faults_h2, _faults_http1, _faults_tls, _faults_ws  # noqa: E402
from ._faults_connect import *  # noqa: E402, F403
from ._faults_h2 import *  # noqa: E402, F403
from ._faults_http1 import *  # noqa: E402, F403
from ._faults_tls import *  # noqa: E402, F403
from ._faults_ws import *  # noqa: E402, F403

__all__ += [
    *_faults_connect.__all__,
    *_faults_http1.__all__,
    *_faults_tls.__all__,
    *_faults_h2.__all__,
    *_faults_ws.__all__,
]
