"""The reactor that serves every fake connection, mostly without a thread switch.

Server ends live in one epoll set that no thread ever sleeps on. ``pump()`` polls it with a
zero timeout and serves whatever is ready; the wiring calls it from libcurl's debug callback,
which libcurl invokes right after it has written request bytes (and after it has read
response bytes). So a request is answered in the client's own thread before libcurl starts
waiting, and no cross-thread wake-up is paid (on a VM that costs 200-300 us, ten times the
whole transfer).

One background thread (started on first use, shared: the pytest plugin keeps one per session)
runs the timers of time-based faults and drain deadlines, and pumps every ``SCAN_SECONDS`` as
a safety net for connections no callback pumps (a pooled connection that pycurl closed in C,
a plain handle whose debug callback the user replaced). Every wait has a bound.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["Handler", "Loop", "Timer"]

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
_HUP = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
# The thread pumps again while a pump finds work, at most this many times per wake-up.
_REPUMPS = 16
# Events asked of epoll per call. Left at its default, ``epoll.poll`` allocates room for 1023
# events (12 KiB from malloc) on every call, and the loop polls at least once per request;
# 32 events fit Python's small-object allocator. More ready ends are served by polling
# again (``pump``) or on the next turn of the thread.
_BATCH = 32


# Forks this process has been the child of (see Loop.running).
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def _unregister(ep: select.epoll | None, fd: int) -> None:
    """Drop ``fd`` from ``ep`` if it is there (closed or never added: nothing to do)."""
    if ep is not None:
        try:
            ep.unregister(fd)
        except (OSError, ValueError):
            pass


def _mask(events: int) -> int:
    # RDHUP only while reading: after EOF it would stay ready forever.
    return events | (select.EPOLLRDHUP if events & READ else 0) | select.EPOLLHUP | select.EPOLLERR


class Handler(Protocol):
    def fileno(self) -> int: ...
    def on_readable(self) -> bool | None: ...  # pump_own(): True if it read anything
    def on_writable(self) -> None: ...
    def on_error(self, exc: BaseException) -> None: ...


def _nothing() -> None:
    pass


class Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # The heap keeps the entry until its time: drop what the callback holds now.
        self.callback = _nothing


class Loop:
    """The reactor and its helper thread. ``start()`` and ``stop()`` are idempotent."""

    SCAN_SECONDS = 0.02
    # The thread keeps scanning this long after the last server end went away, so a test
    # that makes connection after connection never pays a cross-thread wake-up in add().
    IDLE_SECONDS = 1.0

    def __init__(self, name: str = "curlfault-loop") -> None:
        self.name = name
        self._ep: select.epoll | None = None
        self._ready: select.epoll | None = None
        self._busy: set[int] = set()
        # Server ends that wait to write (EPOLLOUT): only they need a pump after libcurl
        # has read response bytes, since reading made room in their socket buffer.
        self.writers: set[int] = set()
        # Server ends whose protocol waits on the client between reads (an HTTP/2 server
        # blocked on flow control needs the client's WINDOW_UPDATE): pumped after reads too.
        self.followers: set[int] = set()
        # Per waiting writer: the bytes its last fill put in its socket, and that fill's
        # number in a count of all fills (see Wiring._debug).
        self.fills: dict[int, tuple[int, int]] = {}
        self.refills = 0
        # Server ends the helper thread sleeps on too (``watch``): their client's next bytes
        # come with no debug event after them, so only a wake-up serves them promptly.
        self._watched: set[int] = set()
        # When the thread will next look at its timers and handlers; inf while it is not
        # sleeping on a known deadline, so that call_later() and add() wake it.
        self._deadline = float("inf")
        self._sleeping = False
        self._wake_fd = -1
        self._thread: threading.Thread | None = None
        self._handlers: dict[int, Handler] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._calls: deque[Callable[[], None]] = deque()
        # Held while the loop thread runs handlers, so another thread can act on a
        # connection (close it at teardown) without racing the loop.
        self.lock = threading.RLock()
        self._starting = threading.RLock()
        self._stopping = False
        self.errors: list[BaseException] = []
        self._forks = _forks[0]
        self._alive = False  # the thread runs (see running)

    # lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        # A flag the thread clears as it ends (Thread.is_alive() is three Python calls,
        # and a network asks on every connection); the fork count covers a forked child,
        # which has no thread (os.getpid() would be a system call per connection).
        return self._alive and self._forks == _forks[0]

    def start(self) -> Loop:
        if self.running:
            return self
        with self._starting:
            # Threads making their first connections at once: one starts, the rest find it
            # running (two starts would each make an epoll set, and ends registered in the
            # first would never be pumped).
            if self.running:
                return self
            self._start()
        return self

    def _start(self) -> None:
        self._stopping = False
        self._ep = select.epoll()
        self._ready = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake_fd, READ)
        self._forks = _forks[0]
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._alive = True
        try:
            self._thread.start()
        except BaseException:
            self._alive = False
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, close every handler still registered and the epoll object."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - would need a handler stuck in C
                raise RuntimeError(f"curlfault loop thread did not stop within {timeout}s")
        self._thread = None
        self._alive = False
        with self.lock:
            for handler in list(self._handlers.values()):
                close = getattr(handler, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:  # pragma: no cover - defensive
                        self.errors.append(exc)
            self._handlers.clear()
            self._watched.clear()
            self._timers.clear()
            self._calls.clear()
            if self._ep is not None:
                self._ep.close()
                self._ep = None
            if self._ready is not None:
                self._ready.close()
                self._ready = None
            if self._wake_fd >= 0:
                os.close(self._wake_fd)
                self._wake_fd = -1

    def __enter__(self) -> Loop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # registration ----------------------------------------------------------------------
    def add(self, handler: Handler, events: int = READ) -> None:
        if self._ready is None:
            self.start()
        assert self._ready is not None
        fd = handler.fileno()
        if fd in self._watched:  # a number reused after a close without remove()
            self._unwatch_fd(fd)
        self._handlers[fd] = handler
        self._ready.register(fd, _mask(events))
        if events & WRITE:
            self.writers.add(fd)
        if self._sleeping:
            self._sleeping = False
            self._wake()  # the thread sleeps up to 1 s while idle: start scanning now

    def modify(self, handler: Handler, events: int) -> None:
        if self._ready is not None:
            fd = handler.fileno()
            self._ready.modify(fd, _mask(events))
            if events & WRITE:
                self.writers.add(fd)
            else:
                self.writers.discard(fd)
                self.fills.pop(fd, None)

    def watch(self, handler: Handler, on: bool = True) -> None:
        """Let the client's next bytes to ``handler`` wake the helper thread (or stop).

        For a server end whose client writes its last bytes and then waits with no debug
        event to follow: a TLS 1.2 client's Finished, say. Without a watch only the
        ``SCAN_SECONDS`` safety net would serve them. Edge-triggered: one wake-up per
        arrival, and the pumps that follow serve it through the ready set as usual (the
        thread pumps again while a pump finds work, so a burst bigger than one read is
        served too).
        """
        ep = self._ep
        fd = handler.fileno()
        if ep is None or self._handlers.get(fd) is not handler or (fd in self._watched) == on:
            return
        if not on:
            self._unwatch_fd(fd)
            return
        try:
            ep.register(fd, READ | select.EPOLLET)
            self._watched.add(fd)
        except (OSError, ValueError):
            pass

    def _unwatch_fd(self, fd: int) -> None:
        self._watched.discard(fd)
        _unregister(self._ep, fd)

    def remove(self, handler: Handler) -> None:
        fd = handler.fileno()
        if self._handlers.get(fd) is handler:
            if fd in self._watched:
                self._unwatch_fd(fd)
            del self._handlers[fd]
            self.writers.discard(fd)
            self.fills.pop(fd, None)
            self.followers.discard(fd)
            _unregister(self._ready, fd)

    def pump(self) -> int:
        """Serve every ready server end now, in the calling thread. Returns events served."""
        ready = self._ready
        if ready is None or not self._handlers:
            return 0
        with self.lock:
            served = 0
            for _ in range(1 + len(self._handlers) // _BATCH):
                try:
                    events = ready.poll(0, _BATCH)
                except (OSError, ValueError):  # closed by stop() in another thread
                    break
                self._serve(events)
                served += len(events)
                if len(events) < _BATCH:
                    break
            return served

    def pump_own(self, handler: Handler | None) -> int:
        """``pump()`` for a caller that knows the one server end with input: its own.

        When ``handler`` is the only end registered and waits for nothing but input, asking
        epoll which end is ready (a system call that also drops the interpreter lock) tells
        nothing new: it is served directly, and its read says whether there was work. Any
        other case (``handler`` None included) is an ordinary ``pump()``.
        """
        if handler is None:
            return self.pump()
        handlers = self._handlers
        fd = handler.fileno()
        if len(handlers) == 1 and fd not in self.writers:
            with self.lock:
                busy = self._busy
                # Checked again under the lock (another thread may have added an end or
                # made this one wait to write); not if gone or replaced, nor re-entered
                # from its own handler (a nested perform): pump() then does as it always does.
                if (
                    len(handlers) == 1
                    and handlers.get(fd) is handler
                    and fd not in busy
                    and fd not in self.writers
                ):
                    busy.add(fd)
                    try:
                        return 1 if handler.on_readable() else 0
                    except BaseException as exc:
                        self._fail(handler, exc)
                        return 1
                    finally:
                        busy.discard(fd)
        return self.pump()

    def _serve(self, events: list[tuple[int, int]]) -> None:
        """Run the handlers of ``events`` (the caller holds the lock)."""
        handlers = self._handlers
        busy = self._busy
        for fd, ev in events:
            handler = handlers.get(fd)
            if handler is None or fd in busy:
                continue  # busy: a handler re-entered pump (a nested perform)
            busy.add(fd)
            try:
                if ev & (READ | _HUP):
                    handler.on_readable()
                if ev & WRITE and handlers.get(fd) is handler:
                    handler.on_writable()
            except BaseException as exc:
                self._fail(handler, exc)
            finally:
                busy.discard(fd)

    @property
    def handler_count(self) -> int:
        return len(self._handlers)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self.lock:
            heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        if timer.when < self._deadline and threading.current_thread() is not self._thread:
            self._wake()  # sooner than the thread's next look
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._calls.append(callback)
        if threading.current_thread() is not self._thread:
            self._wake()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _wake(self) -> None:
        if self._wake_fd >= 0:
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:  # pragma: no cover - closed during stop
                pass

    # the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve_forever()
        finally:
            if self._thread is threading.current_thread():  # not a newer thread's flag
                self._alive = False

    def _serve_forever(self) -> None:
        ep = self._ep
        assert ep is not None
        wake_fd = self._wake_fd
        busy_at = time.monotonic()
        me = threading.current_thread()
        # Stopped, or stopped and started again (a stop() called in this thread, then a
        # start() elsewhere): this thread ends either way, and leaves the new one be.
        while not self._stopping and self._thread is me:
            # inf first: a timer pushed while the deadline is computed must wake the poll.
            self._deadline = float("inf")
            now = time.monotonic()
            timeout = self.SCAN_SECONDS
            if self._handlers:
                busy_at = now
            elif now - busy_at > self.IDLE_SECONDS:
                self._sleeping = True
                if self._handlers:  # added while the flag was being set: scan instead
                    self._sleeping = False
                else:
                    timeout = 1.0
            if self._calls:
                timeout = 0.0
            elif self._timers:
                timeout = min(timeout, max(0.0, self._timers[0][0] - now))
            self._deadline = now + timeout
            try:
                events = ep.poll(timeout, _BATCH)
            except InterruptedError:  # pragma: no cover
                continue
            finally:
                self._deadline = float("inf")
                self._sleeping = False
            if events:
                try:
                    os.eventfd_read(wake_fd)
                except BlockingIOError:  # a watched server end woke it (or nobody)
                    pass
            with self.lock:
                self._run_due()
            for _ in range(_REPUMPS):
                if not self.pump():
                    break

    def _run_due(self) -> None:
        while self._calls:
            callback = self._calls.popleft()
            self._guard(callback)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guard(timer.callback)

    def _guard(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except BaseException as exc:
            owner = getattr(callback, "__self__", None)
            if owner is not None and hasattr(owner, "on_error"):
                self._fail(owner, exc)
            else:
                self.errors.append(exc)

    def _fail(self, handler: object, exc: BaseException) -> None:
        try:
            handler.on_error(exc)  # type: ignore[attr-defined]
        except BaseException as inner:  # pragma: no cover - defensive
            self.errors.append(inner)
