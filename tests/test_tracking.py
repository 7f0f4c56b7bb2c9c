"""``curlfault.Tracker`` on real pycurl against a real loopback server: descriptors, pools,
user callbacks, strict refusal. The segfault traps run in child processes (see test_traps)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycurl
import pytest
from cfhelpers import transfer
from loopback_server import LoopbackServer

from curlfault import (
    CallbackError,
    FakeNetwork,
    InterceptedCurl,
    LeakError,
    Tracker,
    UnexpectedConnection,
    _track_wiring,
)
from curlfault import UsageError as CurlFaultUsageError
from curlfault._intercept import TrackedCurl, real_curl
from curlfault._track_wiring import TrackWiring
from curlfault._tracking import DOUBLE_CLOSE, UNEXPECTED, UNKNOWN_CLOSE, parse_host
from curlfault._wiring import Wiring

POOLED_CLOSE = "closesocket_callback failed to acquire thread"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker(label="t")
    with t:
        yield t


def drive(multi: pycurl.CurlMulti) -> None:
    for _ in range(2000):
        _ret, active = multi.perform()
        if not active:
            return
        multi.select(0.05)
    raise AssertionError("the multi transfer did not finish")  # pragma: no cover


def multi_handle(url: str) -> pycurl.Curl:
    c = pycurl.Curl()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    c.setopt(pycurl.TIMEOUT, 10)
    return c


# descriptors -------------------------------------------------------------------------------


def test_closed_handle_leaves_nothing_open(tracker: Tracker, server: LoopbackServer) -> None:
    assert isinstance(pycurl.Curl(), InterceptedCurl)
    assert transfer(server.url).body == b"hello"
    report = tracker.audit("t")
    assert report.ok
    assert tracker.open_records() == []
    tracker.check()


def test_handle_kept_open_is_a_leak(tracker: Tracker, server: LoopbackServer) -> None:
    c = pycurl.Curl()
    try:
        assert transfer(server.url, curl=c).code == 0
        assert transfer(server.url, curl=c).code == 0  # the same pooled connection
        (rec,) = tracker.audit("t").leaked
        assert (rec.url, rec.opened_in, rec.kind, rec.peer) == (
            server.url,
            "t",
            "tcp",
            f"127.0.0.1:{server.port}",
        )
        assert rec.closes == 0
        assert rec.handle_site.frames[0][2] == test_handle_kept_open_is_a_leak.__name__  # type: ignore[union-attr]
        assert tracker.audit("other label").ok
        with pytest.raises(
            LeakError, match=r"descriptor never closed: fd \d+ .*tcp to 127\.0\.0\.1"
        ):
            tracker.check("t")
        tracker.check("t")  # each leak is reported once
    finally:
        c.close()
    assert server.accepted == 1
    assert tracker.audit().ok


def test_a_reused_descriptor_number_is_not_mistaken_for_the_closed_socket(
    tracker: Tracker, server: LoopbackServer
) -> None:
    c = pycurl.Curl()
    assert transfer(server.url, curl=c).code == 0
    (fd,) = tracker._open  # libcurl's descriptor, recorded with its inode
    c.close()  # libcurl closes it itself: no callback tells the tracker
    with socket.socket() as other:
        os.dup2(other.fileno(), fd)  # somebody else's socket under the same number
        try:
            assert tracker.audit("t").ok  # a different inode: not the recorded socket
            assert tracker._open == {}
        finally:
            os.close(fd)


def test_creation_site_line_numbers_match_the_frames() -> None:
    from curlfault._sites import caller_site

    def make() -> Any:
        return caller_site(skip=1), sys._getframe().f_lineno

    site, line = make()
    assert site.frames[0] == (__file__, line, "make")
    assert site.frames[1][2] == "test_creation_site_line_numbers_match_the_frames"
    assert len(caller_site(skip=1, depth=2).frames) == 2
    assert caller_site(skip=1, depth=0).frames == ()
    assert str(caller_site(skip=1, depth=0)) == "?"


def test_one_site_per_stack_and_identical_code_in_two_files_keeps_its_own_file() -> None:
    from curlfault._sites import caller_site

    source = "def make(site):\n    return site(skip=1)\n"
    makers = []
    for name in ("first.py", "second.py"):
        scope: dict[str, Any] = {}
        exec(compile(source, name, "exec"), scope)
        makers.append(scope["make"])
    # Equal code objects (code compares by value, not by file) must not share a site.
    assert makers[0].__code__ == makers[1].__code__
    sites = [[make(caller_site) for _ in range(3)] for make in makers]
    assert sites[0][0].frames[0] == ("first.py", 2, "make")
    assert sites[1][0].frames[0] == ("second.py", 2, "make")
    assert sites[0][0] is sites[0][1] is sites[0][2]  # a place made again shares its site


def test_one_place_reached_from_two_callers_keeps_two_stacks() -> None:
    """Sites are shared by stack, not by the innermost place: a helper that makes handles
    for two callers reports each caller, and a walk of another depth gets its own site."""
    from curlfault._sites import caller_site

    def helper(depth: int = 6) -> Any:
        return caller_site(skip=1, depth=depth)

    def first() -> Any:
        return helper()

    def second() -> Any:
        return helper()

    def at(depth: int) -> Any:
        return helper(depth)

    def make_all() -> tuple[Any, ...]:
        return first(), second(), at(2), at(6)

    made = [make_all() for _ in range(3)]  # the same four stacks each time
    a, b, shallow, deep = made[0]
    assert a is not b
    assert [f[2] for f in a.frames[:3]] == ["helper", "first", "make_all"]
    assert [f[2] for f in b.frames[:3]] == ["helper", "second", "make_all"]
    assert [f[2] for f in shallow.frames] == ["helper", "at"]  # not the 6 frames of `deep`
    assert len(deep.frames) == 6
    assert [f[2] for f in deep.frames[:3]] == ["helper", "at", "make_all"]
    assert all(m == made[0] for m in made)  # the same stacks share their sites


def test_a_tracked_handles_site_is_its_own_and_reads_like_a_cached_one() -> None:
    """The tracker's handles walk the stack without the cache (own_site): each gets a site
    of its own, with the frames caller_site reads, also for a stack shorter than six."""
    import threading

    from curlfault import _sites
    from curlfault._sites import caller_site, own_site

    def cached_sites() -> dict[Any, Any]:
        return _sites._SITES

    def make() -> tuple[Any, Any]:
        return own_site(skip=1), caller_site(skip=1)

    def outer() -> tuple[Any, Any]:
        return make()

    (first, cached), (again, _) = [outer() for _ in range(2)]  # one stack, twice
    assert first is not again
    # and a tracked handle takes that path (TrackedCurl.__new__): its site is not cached
    tracker = Tracker(leaks=True, label="own-site")
    tracker.install()
    try:
        handle = pycurl.Curl()
    finally:
        tracker.uninstall()
    try:
        assert type(handle) is TrackedCurl
        site = handle._cf_wiring.site
        assert (
            site.frames[0][2]
            == "test_a_tracked_handles_site_is_its_own_and_reads_like_a_cached_one"
        )
        assert all(site is not cached for cached in cached_sites().values())
    finally:
        handle.close()
    assert first.frames == cached.frames == again.frames
    assert [f[2] for f in first.frames[:2]] == ["make", "outer"]
    made: list[tuple[Any, Any]] = []
    thread = threading.Thread(target=lambda: made.append(make()))
    thread.start()
    thread.join(10)
    short, short_cached = made[0]
    assert short.frames == short_cached.frames
    assert 2 <= len(short.frames) < 6  # the thread's stack ends early: no None frames
    assert [f[2] for f in short.frames[:2]] == ["make", "<lambda>"]


@pytest.mark.parametrize("depth", [6, 50], ids=["usual depth", "deeper walk"])
def test_a_stack_that_ends_before_the_depth_is_shared_and_kept_apart(depth: int) -> None:
    """A site that ran out of frames is shared by the stacks that end there too, and not
    given to a longer stack through the same innermost frames. (A thread's stack here is
    five frames: the usual walk of six runs past its end too.)"""
    import threading

    from curlfault._sites import caller_site

    def helper() -> Any:
        return caller_site(skip=1, depth=depth)

    def inner() -> None:
        got.append(helper())

    got: list[Any] = []
    for _ in range(2):  # a thread's stack ends a few frames up, well inside 50
        thread = threading.Thread(target=inner)
        thread.start()
        thread.join(10)
    short, again = got
    assert again is short
    assert len(short.frames) < depth
    assert short.frames[0][2] == "helper"
    inner()  # the same innermost frames, then the test's longer stack
    deeper = got[-1]
    assert deeper is not short
    assert len(deeper.frames) > len(short.frames)
    assert deeper.frames[:2] == short.frames[:2]


@pytest.mark.parametrize("walk", ["caller_site", "own_site"])
def test_a_handle_made_inside_a_library_keeps_the_code_that_called_the_library(
    monkeypatch: pytest.MonkeyPatch, walk: str
) -> None:
    """Frames of an installed package (or the standard library) do not count toward the six:
    the site keeps them and six frames past them, so a leak names the user's fixture, not
    only the library's innards; a walk that finds no end keeps at most LIBRARY_FRAMES_MAX."""
    from curlfault import _sites

    walker = getattr(_sites, walk)
    library: list[Any] = []
    for i in range(8):  # a library 8 frames deep, each level in a file of its own
        scope: dict[str, Any] = {"inner": library[-1] if library else None, "walker": walker}
        src = (
            "def level():\n    return inner() if inner else walker(skip=1)\n"
            if i
            else "def level():\n    return walker(skip=1)\n"
        )
        filename = f"/opt/lib/site-packages/fakelib/level{i}.py"
        exec(compile(src, filename, "exec"), scope)
        library.append(scope["level"])
    outermost = library[-1]

    def fixture_code() -> Any:
        return outermost()

    def made_by_a_fixture() -> Any:
        return fixture_code()

    site = made_by_a_fixture()
    functions = [f[2] for f in site.frames]
    assert functions[:8] == ["level"] * 8
    assert functions[8:10] == ["fixture_code", "made_by_a_fixture"]
    assert len(site.frames) == 8 + 6
    assert not _sites._is_library_file(__file__)
    assert _sites._is_library_file(pytest.__file__)  # an installed package
    assert _sites._is_library_file(os.__file__)  # the standard library

    # a library that calls itself past the bound: the walk stops there, then takes six more
    monkeypatch.setattr(_sites, "LIBRARY_FRAMES_MAX", 5)
    deep = made_by_a_fixture()
    assert [f[2] for f in deep.frames[:9]] == ["level"] * 8 + ["fixture_code"]
    assert len(deep.frames) == 5 + 6
    # a frame of the user's own code innermost: six frames, library frames among them or not
    monkeypatch.setattr(_sites, "LIBRARY_FRAMES_MAX", 24)

    def own() -> Any:
        return walker(skip=1)

    assert len(own().frames) == 6


def test_the_site_cache_is_bounded_and_each_site_names_its_own_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper reached from ever new callers (test after test) gets a site per stack; the
    cache starts over when full (bounded memory), and a stack seen again after that gets
    a right site again."""
    from curlfault import _sites
    from curlfault._sites import caller_site

    monkeypatch.setattr(_sites, "_SITES_MAX", 8)
    monkeypatch.setattr(_sites, "_SITES", {})

    def helper() -> Any:
        return caller_site(skip=1)

    callers = []
    for i in range(20):
        scope: dict[str, Any] = {"helper": helper}
        exec(compile("def caller():\n    return helper()\n", f"caller{i}.py", "exec"), scope)
        callers.append(scope["caller"])
    # Every call below comes through the same frames above `caller`: one stack per caller.
    made = [[c() for c in batch] for batch in (callers, callers[-1:], callers[:1])]
    first = made[0]
    assert [s.frames[1][0] for s in first] == [f"caller{i}.py" for i in range(20)]
    assert len({id(s) for s in first}) == 20
    assert made[1][0] is first[-1]  # still cached: the latest stacks are
    assert made[2][0] is not first[0]  # made anew after the cache started over
    assert made[2][0].frames == first[0].frames
    assert len(_sites._SITES) <= 8


def test_handle_dropped_without_close_is_closed_by_pycurl_dealloc(
    tracker: Tracker, server: LoopbackServer
) -> None:
    c = pycurl.Curl()
    assert transfer(server.url, curl=c).code == 0
    del c  # dealloc closes the connection through our closesocket callback
    assert tracker.open_records() == []
    assert tracker.audit().ok


def test_handle_in_a_reference_cycle_is_collected_before_calling_it_a_leak(
    tracker: Tracker, server: LoopbackServer
) -> None:
    box: dict[str, Any] = {}
    box["curl"] = pycurl.Curl()
    box["self"] = box
    assert transfer(server.url, curl=box["curl"]).code == 0
    del box
    assert tracker.audit("t").ok  # audit collects garbage before deciding


def test_connect_failure_attempts_are_closed(tracker: Tracker) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert transfer(f"http://127.0.0.1:{port}/").code == pycurl.E_COULDNT_CONNECT
    assert tracker.audit().ok


# multi, share, asyncio, tornado --------------------------------------------------------------


def test_multi_pool_closed_by_pycurl_is_not_a_leak(
    tracker: Tracker, server: LoopbackServer
) -> None:
    m = pycurl.CurlMulti()
    for _ in range(3):
        c = multi_handle(server.url)
        m.add_handle(c)
        drive(m)
        m.remove_handle(c)
        c.close()
        del c  # freed while its connection sits in the multi's pool
    gc.collect()
    assert len(tracker.open_records()) == 1  # one pooled connection, reused three times
    assert server.accepted == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.close()  # pycurl closes the pooled connection in C
    # No close callback on the handle, so none of pycurl's "failed to acquire thread".
    assert [str(w.message) for w in caught] == []
    report = tracker.audit()
    assert report.ok


def test_share_pool_closed_by_pycurl_is_not_a_leak(
    tracker: Tracker, server: LoopbackServer
) -> None:
    share = pycurl.CurlShare()
    share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
    for _ in range(2):
        c = pycurl.Curl()
        c.setopt(pycurl.SHARE, share)
        assert transfer(server.url, curl=c).code == 0
        c.close()
        del c
    gc.collect()
    assert server.accepted == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share.close()
    assert tracker.audit().ok


def test_async_curl_multi(tracker: Tracker, server: LoopbackServer) -> None:
    async def main() -> list[int]:
        async with pycurl.AsyncCurlMulti() as multi:
            codes = []
            for _ in range(3):
                c = multi_handle(server.url)
                await multi.perform(c)
                codes.append(c.getinfo(pycurl.RESPONSE_CODE))
                c.close()
            return codes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert asyncio.run(main()) == [200, 200, 200]
    assert tracker.audit().ok


def test_tornado_curl_client_with_reset_after_each_request(
    tracker: Tracker, server: LoopbackServer
) -> None:
    pytest.importorskip("tornado")
    from tornado.curl_httpclient import CurlAsyncHTTPClient

    async def main() -> None:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            for _ in range(3):
                response = await client.fetch(server.url)
                assert response.body == b"hello"
            assert len(tracker.open_records()) == 1  # pooled in tornado's CurlMulti
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                client.close()

    asyncio.run(main())
    assert server.accepted == 1
    assert tracker.audit().ok


def test_tornado_client_left_open_is_a_leak(tracker: Tracker, server: LoopbackServer) -> None:
    pytest.importorskip("tornado")
    from tornado.curl_httpclient import CurlAsyncHTTPClient

    async def main() -> None:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch(server.url)
            assert response.code == 200
            (rec,) = tracker.audit("t").leaked
            assert rec.url == server.url
            functions = [fn for _f, _n, fn in rec.handle_site.frames]  # type: ignore[union-attr]
            assert "_curl_create" in functions
            assert "main" in functions
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                client.close()

    asyncio.run(main())
    assert tracker.audit().ok


# duphandle, reset, user callbacks ------------------------------------------------------------


def test_duphandle_copy_has_its_own_wiring(tracker: Tracker, server: LoopbackServer) -> None:
    c = pycurl.Curl()
    c.setopt(pycurl.URL, server.url)
    c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    d = c.duphandle()
    try:
        assert isinstance(d, InterceptedCurl)
        assert d._cf_wiring is not c._cf_wiring
        assert d._cf_wiring.url == server.url
        d.perform()
        c.perform()
        assert len(tracker.open_records()) == 2  # one connection per handle
    finally:
        d.close()
        c.close()
    assert tracker.audit().ok


def test_reset_rewires_and_forgets_the_users_callbacks(
    tracker: Tracker, server: LoopbackServer
) -> None:
    seen: list[object] = []

    def user_open(purpose: int, address: Any) -> int:
        seen.append(address)
        return socket.socket(address.family, socket.SOCK_STREAM, address.protocol).detach()

    c = pycurl.Curl()
    try:
        assert transfer(server.url, curl=c, OPENSOCKETFUNCTION=user_open, FORBID_REUSE=1).code == 0
        assert len(seen) == 1
        c.reset()
        assert transfer(server.url, curl=c, FORBID_REUSE=1).code == 0
        assert len(seen) == 1  # the user's callback went with reset()
        assert server.accepted == 2
        assert tracker.audit().ok  # and the connection after reset() was tracked and closed
    finally:
        c.close()


def test_user_opensocket_may_return_a_socket_object(
    tracker: Tracker, server: LoopbackServer
) -> None:
    mine: list[socket.socket] = []

    def user_open(purpose: int, address: Any) -> socket.socket:
        s = socket.socket(address.family, socket.SOCK_STREAM, address.protocol)
        mine.append(s)
        return s  # pycurl's contract: libcurl gets a dup, the object stays ours

    try:
        assert transfer(server.url, OPENSOCKETFUNCTION=user_open).code == 0
        assert tracker.audit().ok
        assert mine[0].fileno() >= 0  # still open: ours to close
    finally:
        for s in mine:
            s.close()


def test_user_closesocket_is_chained_and_one_that_does_not_close_is_a_leak(
    tracker: Tracker, server: LoopbackServer
) -> None:
    closed: list[int] = []
    kept: list[int] = []

    def closes(fd: int) -> int:
        closed.append(fd)
        os.close(fd)
        return 0

    def forgets(fd: int) -> int:
        kept.append(fd)
        return 0

    assert transfer(server.url, CLOSESOCKETFUNCTION=closes).code == 0
    assert len(closed) == 1
    assert tracker.audit().ok
    assert transfer(server.url, CLOSESOCKETFUNCTION=forgets).code == 0
    try:
        (rec,) = tracker.audit("t").leaked
        assert rec.closes == 1
        assert "CLOSESOCKETFUNCTION returned without closing it" in rec.notes[0]
    finally:
        os.close(kept[0])
    assert tracker.audit().ok


def test_unsetting_closesocket_keeps_tracking(tracker: Tracker, server: LoopbackServer) -> None:
    c = pycurl.Curl()
    try:
        assert transfer(server.url, curl=c).code == 0
        c.unsetopt(pycurl.CLOSESOCKETFUNCTION)
        c.setopt(pycurl.CLOSESOCKETFUNCTION, None)
        assert transfer(server.url, curl=c).code == 0
    finally:
        c.close()
    assert tracker.audit().ok


def test_double_and_unknown_closes_are_events(tracker: Tracker, server: LoopbackServer) -> None:
    c = pycurl.Curl()
    wiring = c._cf_wiring
    try:
        # libcurl never closes twice by itself: drive the callback the way a broken
        # CLOSESOCKETFUNCTION chain would.
        fd = socket.socket().detach()
        wiring._sockopt(fd, pycurl.SOCKTYPE_IPCXN)
        assert [r.fd for r in tracker.open_records()] == [fd]
        wiring.user_close = lambda fd: 0  # "closes" without closing
        wiring._closesocket(fd)
        wiring._closesocket(fd)  # the same socket, again
        wiring.user_close = None
        wiring._closesocket(fd)  # closes it for real
        wiring._closesocket(fd)  # and now the fd is not open at all
        with socket.socket() as stranger:
            wiring._closesocket(stranger.fileno())  # never handed to libcurl
            assert stranger.fileno() >= 0  # left open: not ours to close
        with socket.create_server(("127.0.0.1", 0)) as listening:
            wiring._closesocket(listening.fileno())  # a listener libcurl did not make
            assert listening.getsockname()[1] > 0  # still open
        kinds = [e.kind for e in tracker.take_events("t")]
        assert kinds == [DOUBLE_CLOSE, DOUBLE_CLOSE, UNKNOWN_CLOSE, UNKNOWN_CLOSE, UNKNOWN_CLOSE]
    finally:
        c.close()
    assert tracker.audit().ok


@pytest.mark.parametrize("own_close", ["none", "chained", "unset", "open-first"])
def test_ftp_active_mode_listener_is_libcurls_own_not_an_unknown_close(
    tracker: Tracker, own_close: str
) -> None:
    """libcurl's FTP active-mode listening socket never reaches SOCKOPTFUNCTION, so no record
    holds it; its close is neither an unknown close nor left open (which would leak it)."""
    from ftp_server import ActiveFtpServer

    closed: list[int] = []
    opened: list[int] = []

    def closes(fd: int) -> int:
        closed.append(fd)
        os.close(fd)
        return 0

    def opens(purpose: int, address: Any) -> int:
        fd = socket.socket(address.family, socket.SOCK_STREAM, address.protocol).detach()
        opened.append(fd)
        return fd

    handed: list[tuple[int, int]] = []

    def sockopt(fd: int, purpose: int) -> int:
        handed.append((fd, purpose))
        return pycurl.SOCKOPT_OK

    c = pycurl.Curl()
    with ActiveFtpServer(b"over ftp") as srv:
        try:
            c.setopt(pycurl.SOCKOPTFUNCTION, sockopt)  # chained behind curlfault's
            if own_close == "open-first":  # the handle's own opensocket stays in use
                c.setopt(pycurl.OPENSOCKETFUNCTION, opens)
            if own_close != "none":
                c.setopt(pycurl.CLOSESOCKETFUNCTION, closes)
            if own_close == "unset":
                c.setopt(pycurl.CLOSESOCKETFUNCTION, None)  # curlfault's callback stays on
            result = transfer(srv.url("file.txt"), curl=c, FTPPORT="127.0.0.1")
        finally:
            c.close()
        assert any(cmd.startswith("EPRT") or cmd.startswith("PORT") for cmd in srv.commands)
    assert (result.code, result.body) == (0, b"over ftp")
    assert tracker.take_events("t") == []
    assert tracker.audit().ok
    assert tracker._made == {}  # every socket noted at opensocket was accounted for
    # The chained callback closed the control connection and the listener, which the
    # handle's own opensocket made when it had one. Not the accepted data connection:
    # libcurl 8.23 closes that one itself, without CLOSESOCKETFUNCTION (its record was
    # found closed by the audit above).
    assert len(closed) == (2 if own_close in ("chained", "open-first") else 0)
    assert [p for _, p in handed] == [pycurl.SOCKTYPE_IPCXN, pycurl.SOCKTYPE_ACCEPT]
    # The data connection was open alongside the control connection and the listener, so
    # its number is neither of theirs: no close callback ever saw it.
    assert handed[1][0] not in closed
    assert len(opened) == (2 if own_close == "open-first" else 0)
    if own_close == "open-first":
        assert sorted(opened) == sorted(closed)


def test_ftp_active_mode_through_a_passthrough_network() -> None:
    from ftp_server import ActiveFtpServer

    with ActiveFtpServer() as srv, FakeNetwork(strict=False) as net, net.intercept():
        result = transfer(srv.url("file.txt"), FTPPORT="127.0.0.1")
        assert (result.code, result.body) == (0, b"hello ftp")
    # The control connection and libcurl's listener went through opensocket/closesocket.
    assert [(r.kind, r.closes) for r in net.ledger.records] == [("passthrough", 1)] * 2


def test_check_raises_double_close_as_leak_error(tracker: Tracker, server: LoopbackServer) -> None:
    c = pycurl.Curl()
    try:
        fd = socket.socket().detach()
        c._cf_wiring._sockopt(fd, pycurl.SOCKTYPE_IPCXN)
        c._cf_wiring._closesocket(fd)
        c._cf_wiring._closesocket(fd)
    finally:
        c.close()
    with pytest.raises(LeakError, match=rf"closesocket\({fd}\) .*fd {fd} is not open"):
        tracker.check("t")


def test_an_internal_error_is_a_callback_error_and_the_socket_is_still_closed(
    tracker: Tracker, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("recording failed")

    monkeypatch.setattr(_track_wiring, "_fstat", broken)
    assert transfer(server.url).code == 0  # the transfer is not disturbed
    assert tracker._unrecorded == set()  # libcurl closed it itself: no close callback
    assert tracker.open_records() == []
    with pytest.raises(CallbackError, match="sockopt callback raised RuntimeError: recording"):
        tracker.check("t")


# stacking with FakeNetwork ---------------------------------------------------------------------


def test_fake_network_stacks_on_top_and_owns_its_handles(
    tracker: Tracker, server: LoopbackServer
) -> None:
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(200, body="fake")
        with net.intercept():
            c = pycurl.Curl()
            assert transfer("http://api.test/", curl=c).body == b"fake"
            assert c._cf_wiring.network is net  # type: ignore[union-attr]
            c.close()
        assert tracker.open_records() == []  # the network's descriptors are not ours
    assert pycurl.Curl is TrackedCurl
    assert InterceptedCurl._cf_network is tracker
    assert transfer(server.url).code == 0
    assert tracker.audit().ok


def test_a_tracked_handle_transfers_with_pycurls_own_perform(
    tracker: Tracker, server: LoopbackServer
) -> None:
    """Under a tracker, handles have no Python frame in front of a transfer."""
    c = pycurl.Curl()
    try:
        assert type(c) is TrackedCurl
        assert isinstance(c, InterceptedCurl)
        assert TrackedCurl.perform is real_curl().perform
        assert transfer(server.url, curl=c).code == 0
        dup = c.duphandle()
        assert type(dup) is TrackedCurl
        assert transfer(server.url, curl=dup).code == 0
        dup.close()
    finally:
        c.close()
    assert tracker.audit().ok


def test_a_tracked_handle_attached_to_a_network_transfers_through_its_wiring(
    tracker: Tracker, server: LoopbackServer
) -> None:
    """attach() turns a tracked handle into an InterceptedCurl: its perform() must raise
    what the network's callbacks caught (here a KeyboardInterrupt from the user's
    DEBUGFUNCTION, which the wiring chains), which pycurl's own perform() would not."""

    def interrupt(kind: int, data: bytes) -> None:
        raise KeyboardInterrupt

    c = pycurl.Curl()
    try:
        assert transfer(server.url, curl=c).code == 0
        with FakeNetwork() as net:
            net.http("api.test").get("/").respond(body="fake")
            net.attach(c)
            assert type(c) is InterceptedCurl
            assert transfer("http://api.test/", curl=c).body == b"fake"
            with pytest.raises(KeyboardInterrupt):
                transfer("http://api.test/", curl=c, VERBOSE=1, DEBUGFUNCTION=interrupt)
            dup = c.duphandle()
            assert type(dup) is InterceptedCurl
            dup.close()
            c.close()
            assert net.ledger.audit().ok
    finally:
        c.close()
    assert tracker.audit().ok


def test_a_curl_class_taken_under_the_tracker_is_routed_fully_by_a_network_later(
    tracker: Tracker,
) -> None:
    """Under --curlfault-leaks the tracker is installed before collection: a module's
    `from pycurl import Curl` (or another thread's lookup) holds TrackedCurl, and a user's
    subclass of pycurl.Curl subclasses it. Made under a network's intercept(), such handles
    must transfer through the network's wiring (here: raise the KeyboardInterrupt its
    chained DEBUGFUNCTION caught), not with pycurl's own perform()."""
    Curl = pycurl.Curl

    class MyCurl(pycurl.Curl):  # type: ignore[misc, valid-type]
        pass

    def interrupt(kind: int, data: bytes) -> None:
        raise KeyboardInterrupt

    assert MyCurl.perform is InterceptedCurl.perform
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(body="fake")
        with net.intercept():
            for make in (Curl, MyCurl):
                c = make()
                try:
                    assert type(c) is (InterceptedCurl if make is Curl else MyCurl)
                    assert transfer("http://api.test/", curl=c).body == b"fake"
                    with pytest.raises(KeyboardInterrupt):
                        transfer("http://api.test/", curl=c, VERBOSE=1, DEBUGFUNCTION=interrupt)
                finally:
                    c.close()
        assert net.ledger.audit().ok
    with_tracker = MyCurl()  # made under the tracker alone: tracked, transfers as usual
    try:
        assert isinstance(with_tracker._cf(), TrackWiring)
    finally:
        with_tracker.close()


def test_a_subclass_that_skips_super_init_is_still_routed_and_tracked(tracker: Tracker) -> None:
    """Handles are wired when pycurl makes them (__new__), so a subclass of pycurl.Curl
    whose __init__ never calls super().__init__() (fine for pycurl) cannot escape the
    tracker, nor a network's routing (which would resolve the fake name: CURLcode 6)."""

    class NoInit(pycurl.Curl):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            pass

    class WithArgs(pycurl.Curl):  # type: ignore[misc, valid-type]
        def __init__(self, url: str) -> None:
            self.setopt(pycurl.URL, url)

    tracked = NoInit()
    try:
        assert isinstance(tracked._cf(), TrackWiring)
    finally:
        tracked.close()
    with FakeNetwork() as net:
        net.http("api.test").get("/").respond(body="fake")
        with net.intercept():
            handles = [NoInit(), WithArgs("http://api.test/")]
        for c in handles:
            try:
                assert transfer("http://api.test/", curl=c).body == b"fake"
            finally:
                c.close()
        assert [r.closes for r in net.ledger.records] == [1, 1]
    with pytest.raises(TypeError, match="takes no arguments"):
        pycurl.Curl(1)


def test_every_handle_is_an_instance_of_pycurl_curl_while_a_tracker_is_innermost(
    tracker: Tracker,
) -> None:
    plain = real_curl()()  # made before anything was swapped in (the fixture made the tracker)
    with FakeNetwork() as net:
        with net.intercept():
            routed = pycurl.Curl()
        attached = net.attach(real_curl()())  # a plain handle, attached
        assert pycurl.Curl is TrackedCurl
        try:
            assert isinstance(routed, pycurl.Curl)
            assert issubclass(InterceptedCurl, pycurl.Curl)
            assert issubclass(TrackedCurl, pycurl.Curl)
            tracked = pycurl.Curl()
            assert isinstance(tracked, pycurl.Curl)
            tracked.close()
            # As with pycurl's own class: a handle curlfault never routed is one too.
            assert isinstance(attached, pycurl.Curl)
            assert isinstance(plain, pycurl.Curl)
            assert issubclass(real_curl(), pycurl.Curl)
            # curlfault's own class answers for itself while it is not installed.
            assert not isinstance(plain, InterceptedCurl)
        finally:
            routed.close()
            attached.close()
            plain.close()


def test_a_handle_made_before_intercept_is_still_an_instance_of_pycurl_curl() -> None:
    """A module-level client's handle, made at import, is checked with isinstance() by code
    that runs under the fixture: the swap must not change pycurl's answer. curlfault's own
    precise check (is_routed_class) still tells routed handles from plain ones."""
    from curlfault._intercept import is_routed_class

    class Mine(real_curl()):  # type: ignore[misc, valid-type]
        pass

    plain, mine = real_curl()(), Mine()
    try:
        with FakeNetwork() as net, net.intercept():
            assert pycurl.Curl is InterceptedCurl
            routed = pycurl.Curl()
            try:
                for h in (plain, mine, routed):
                    assert isinstance(h, pycurl.Curl)
                assert issubclass(Mine, pycurl.Curl)
                assert is_routed_class(type(routed))
                assert not is_routed_class(type(plain))
                assert not is_routed_class(Mine)
                # attach() still sees a plain handle as plain (FORBID_REUSE, RESOLVE rules)
                net.attach(plain)
                # The network keeps a plain handle's wiring (a routed one is kept by handle)
                found = [r() for r in net._wirings]
                (wiring,) = [w for w in found if isinstance(w, Wiring) and w._handle() is plain]
                assert wiring.plain
                assert wiring.outsider
                assert routed._cf().plain is False
            finally:
                routed.close()
        assert not isinstance(plain, InterceptedCurl)
        assert isinstance(routed, InterceptedCurl)
        assert not issubclass(Mine, InterceptedCurl)
    finally:
        plain.close()
        mine.close()


def test_uninstall_restores_pycurl_curl() -> None:
    original = pycurl.Curl
    t = Tracker()
    with t:
        assert pycurl.Curl is TrackedCurl
        assert t.installed
    assert pycurl.Curl is original
    assert t.closed
    with pytest.raises(CurlFaultUsageError, match="closed"):
        t.install()


# strict ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", "localhost"),
        ("DB.Internal.", "db.internal"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        # as libcurl spells it (inet_ntop), not as ipaddress does ("::ffff:7f00:1")
        ("::FFFF:127.0.0.1", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ],
)
def test_parse_host_accepts_names_and_addresses(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    "value", ["", "http://localhost", "localhost:8080", "a/b", "a b", ".x", "a..b", "a,b"]
)
def test_parse_host_rejects_anything_else(value: str) -> None:
    with pytest.raises(CurlFaultUsageError, match="not a host name or an IP address"):
        parse_host(value)


def test_allow_hosts_must_be_a_list() -> None:
    with pytest.raises(CurlFaultUsageError, match="list of host names"):
        Tracker(allow_hosts="localhost")


def test_strict_refuses_unlisted_hosts_without_a_resolver_query(server: LoopbackServer) -> None:
    with Tracker(strict=True, allow_hosts=["127.0.0.1"], label="s") as t:
        assert transfer(server.url).code == 0
        # .invalid never resolves: a resolver query would give 6 (COULDNT_RESOLVE_HOST).
        assert transfer("http://api.example.invalid:8443/items").code == pycurl.E_COULDNT_CONNECT
        # the name is not allowed, even though it resolves to an allowed address
        assert transfer(f"http://localhost:{server.port}/").code == pycurl.E_COULDNT_CONNECT
        first, second = t.take_events("s")
        assert first.kind == second.kind == UNEXPECTED
        assert "api.example.invalid:8443 (url http://api.example.invalid:8443/items)" in first.text
        assert "--curlfault-allow-hosts=api.example.invalid" in first.text
        assert "localhost" in second.text
        assert first.site is not None
        assert server.accepted == 1
        assert t.audit().ok


@pytest.mark.parametrize("leaks", [True, False], ids=["leaks", "strict-only"])
def test_a_handle_made_while_relaxed_is_not_strict_for_its_life(
    server: LoopbackServer, leaks: bool
) -> None:
    with Tracker(strict=True, leaks=leaks, label="r") as t:
        t.relaxed = True
        free = pycurl.Curl()
        t.relaxed = False
        strict = pycurl.Curl()
        try:
            assert not free._cf_wiring.strict
            assert strict._cf_wiring.strict
            assert transfer(server.url, curl=free).code == 0  # after relaxed ended, too
            assert transfer(server.url, curl=strict).code == pycurl.E_COULDNT_CONNECT
            free.reset()  # wired again as it was made: still free
            assert transfer(server.url, curl=free).code == 0
            dup = free.duphandle()
            try:
                assert transfer(server.url, curl=dup).code == 0
            finally:
                dup.close()
            # its own CONNECT_TO goes to libcurl as is (no sink entry in front of it)
            free.setopt(pycurl.CONNECT_TO, [f"elsewhere.test:80:127.0.0.1:{server.port}"])
            assert transfer("http://elsewhere.test/", curl=free).code == 0
        finally:
            free.close()
            strict.close()
        (refused,) = t.take_events("r")
        assert refused.kind == UNEXPECTED
        assert server.accepted == 3  # reset() kept the first connection for reuse
        assert t.audit().ok


def test_strict_allowed_name_reaches_every_address_libcurl_resolves(server: LoopbackServer) -> None:
    with Tracker(strict=True, allow_hosts=["localhost"]) as t:
        # libcurl tries ::1 first (nothing listens there), then 127.0.0.1
        assert transfer(f"http://localhost:{server.port}/").code == 0
        assert transfer(server.url).code == 0  # the name's addresses are allowed too
        assert t.take_events() == []


def test_strict_allows_an_allowed_name_spelled_with_its_trailing_dot(
    server: LoopbackServer,
) -> None:
    # libcurl matches CONNECT_TO entries as the URL spells the name: before, "localhost."
    # went to the sink and was refused, with advice to allow "localhost." as well.
    with Tracker(strict=True, allow_hosts=["localhost"]) as t:
        assert transfer(f"http://localhost.:{server.port}/").code == 0
        assert t.take_events() == []
    with Tracker(strict=True, allow_hosts=["localhost."]) as t:
        assert transfer(f"http://localhost:{server.port}/").code == 0
        assert t.take_events() == []


def test_strict_allows_an_ipv4_mapped_address_as_libcurl_spells_it() -> None:
    # An IPv6 socket bound to the mapped address listens on 127.0.0.1 (loopback only).
    with LoopbackServer(host="::ffff:127.0.0.1") as srv:
        url = f"http://[::ffff:127.0.0.1]:{srv.port}/"
        for entry in ("::ffff:127.0.0.1", "[::ffff:7f00:1]"):
            with Tracker(strict=True, allow_hosts=[entry]) as t:
                assert transfer(url).code == 0  # was 7: pinned as [::ffff:7f00:1], no match
                assert t.take_events() == []
        assert srv.accepted == 2


def test_strict_refusal_after_a_redirect_does_not_blame_the_allowed_host() -> None:
    # A tracked handle does not see the Location: the refused connection is for another
    # host than the URL's, which is allowed, and the report must not suggest allowing it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def redirect_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: http://blocked.invalid:8080/target\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )

    # Allowed by address, and by a name that resolves to it (a report said "127.0.0.1 ...
    # is not an allowed host" when "localhost" was the allowed entry).
    try:
        for allowed in ("127.0.0.1", "localhost"):
            server = threading.Thread(target=redirect_once)
            server.start()
            try:
                with Tracker(strict=True, allow_hosts=[allowed]) as t:
                    r = transfer(f"http://127.0.0.1:{port}/start", FOLLOWLOCATION=1)
                    assert r.code == pycurl.E_COULDNT_CONNECT
                    (event,) = t.take_events()
                assert "port 8080 of a host that is not allowed" in event.text
                assert "not the URL's host 127.0.0.1, which is allowed" in event.text
                assert "--curlfault-allow-hosts=127.0.0.1" not in event.text
            finally:
                server.join(10)
    finally:
        listener.close()


def test_strict_address_gate_catches_connect_to_an_unlisted_address(server: LoopbackServer) -> None:
    with Tracker(strict=True, allow_hosts=["127.0.0.1"]) as t:
        ok = transfer(
            f"http://alias.test:{server.port}/",
            CONNECT_TO=[f"alias.test:{server.port}:127.0.0.1:{server.port}"],
        )
        assert ok.code == 0  # the user's own mapping to an allowed address passes
        bad = transfer(
            f"http://127.0.0.1:{server.port}/",
            CONNECT_TO=[f"127.0.0.1:{server.port}:127.0.0.2:{server.port}"],
        )
        assert bad.code == pycurl.E_COULDNT_CONNECT
        (event,) = t.take_events()
        assert f"127.0.0.2:{server.port} for host 127.0.0.1" in event.text


def test_strict_check_raises_unexpected_connection() -> None:
    with Tracker(strict=True) as t:
        assert transfer("http://nowhere.invalid/").code == pycurl.E_COULDNT_CONNECT
        with pytest.raises(UnexpectedConnection, match=r"nowhere\.invalid:80 \(url http://nowhere"):
            t.check()


def test_strict_without_leaks_installs_no_closesocket(server: LoopbackServer) -> None:
    with Tracker(leaks=False, strict=True, allow_hosts=["127.0.0.1"]) as t:
        c = pycurl.Curl()
        try:
            assert pycurl.CLOSESOCKETFUNCTION not in c._cf_wiring.owned
            assert transfer(server.url, curl=c).code == 0
        finally:
            c.close()
        assert t.open_records() == []  # nothing is recorded without leaks=True


def test_unix_socket_is_tracked_and_allowed(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    try:
        with Tracker(strict=True) as t:
            c = pycurl.Curl()
            try:
                r = transfer("http://unix.test/", curl=c, UNIX_SOCKET_PATH=path, TIMEOUT=1)
                assert r.code == pycurl.E_OPERATION_TIMEDOUT  # connected; nobody answers
                assert t.take_events() == []
            finally:
                c.close()
            assert t.audit().ok
    finally:
        listener.close()


# the segfault traps, in child processes -------------------------------------------------------

CHILD = """
import gc, os, pycurl, socket, threading, warnings
warnings.simplefilter("ignore", RuntimeWarning)
from curlfault import Tracker
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
URL = "http://127.0.0.1:%d/" % srv.getsockname()[1]
def answer():
    conns = []
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        conns.append(c)
        def serve(c=c):
            buf = b""
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                while b"\\r\\n\\r\\n" in buf:
                    _, buf = buf.split(b"\\r\\n\\r\\n", 1)
                    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        threading.Thread(target=serve, daemon=True).start()
threading.Thread(target=answer, daemon=True).start()
OWN_CLOSE = False  # the handle sets a CLOSESOCKETFUNCTION of its own
def own_close(fd):
    os.close(fd)
    return 0
def handle():
    c = pycurl.Curl(); c.setopt(pycurl.URL, URL); c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    c.setopt(pycurl.TIMEOUT, 10)
    if OWN_CLOSE:
        c.setopt(pycurl.CLOSESOCKETFUNCTION, own_close)
    return c
def drive(m):
    while m.perform()[1]:
        m.select(0.05)
tracker = Tracker().install()
"""


def run_child(body: str, own_close: bool = False) -> str:
    """CHILD + body in a fresh interpreter with a debug allocator (freed memory is poisoned).

    ``own_close``: every handle sets its own CLOSESOCKETFUNCTION, so curlfault's close
    callback sits in front of it (the case where pycurl calls into the handle).
    """
    source = CHILD + f"OWN_CLOSE = {own_close}\n" + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", source],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "PYTHONMALLOC": "debug"},
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("own_close", [False, True])
def test_easy_freed_before_its_multi_is_closed_does_not_crash(own_close: bool) -> None:
    # Without tracking this is correct code; with a closesocket callback pycurl 7.49 would
    # call into the freed handle when the multi closes its pool.
    out = run_child(
        """
        m = pycurl.CurlMulti()
        for _ in range(3):
            c = handle(); m.add_handle(c); drive(m); m.remove_handle(c); c.close(); del c
        gc.collect()
        m.close()
        print(tracker.audit().ok)
        """,
        own_close,
    )
    assert out.split() == ["True"]


@pytest.mark.parametrize("own_close", [False, True])
def test_easy_freed_before_its_share_is_closed_does_not_crash(own_close: bool) -> None:
    out = run_child(
        """
        s = pycurl.CurlShare(); s.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
        for _ in range(2):
            c = handle(); c.setopt(pycurl.SHARE, s); c.perform(); c.close(); del c
        gc.collect()
        s.close()
        print(tracker.audit().ok)
        """,
        own_close,
    )
    assert out.split() == ["True"]


@pytest.mark.parametrize("own_close", [False, True])
def test_reset_and_unsetopt_with_pooled_connections_do_not_crash(own_close: bool) -> None:
    out = run_child(
        """
        m = pycurl.CurlMulti()
        c = handle()
        for _ in range(3):               # what tornado does: reset() after every request
            m.add_handle(c); drive(m); m.remove_handle(c)
            c.reset(); c.setopt(pycurl.URL, URL); c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
        c.unsetopt(pycurl.CLOSESOCKETFUNCTION)
        c.setopt(pycurl.CLOSESOCKETFUNCTION, None)
        d = handle(); d.perform(); d.reset(); d.close()
        m.close(); c.close()
        print(tracker.audit().ok)
        """,
        own_close,
    )
    assert out.split() == ["True"]


@pytest.mark.parametrize("own_close", [False, True])
def test_dealloc_of_a_tracked_handle_closes_its_connection(own_close: bool) -> None:
    out = run_child(
        """
        c = handle(); c.perform()
        (rec,) = tracker.open_records()
        del c; gc.collect()
        print(rec.closes, tracker.audit().ok, tracker.open_records())
        """,
        own_close,
    )
    # Through curlfault's close callback when the handle has one of its own; by libcurl,
    # found closed at audit, when it has none.
    assert out.split() == [str(int(own_close)), "True", "[]"]


@pytest.mark.parametrize("own_close", [False, True])
def test_exit_with_a_live_multi_holding_a_freed_handles_connection(own_close: bool) -> None:
    # The multi is never closed; interpreter shutdown frees it after the tracker.
    out = run_child(
        """
        m = pycurl.CurlMulti()
        c = handle(); m.add_handle(c); drive(m); m.remove_handle(c); c.close(); del c
        gc.collect()
        tracker.close()
        print("exiting")
        """,
        own_close,
    )
    assert out.split() == ["exiting"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.test", False),
        ("localhost", False),
        ("db1", False),  # ends in a digit: asked of ipaddress, which says no
        ("10.0.0.1", True),
        ("127.0.0.1", True),
        ("1.2.3.4.5", False),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("2001:db8::", True),
        ("api.test.", False),
        ("a:b", False),
    ],
)
def test_is_ip_agrees_with_ipaddress(host: str, expected: bool) -> None:
    """The pins ask this of every declared host (once per test): names that end in a letter
    take a shortcut past ipaddress, which must not change an answer."""
    import ipaddress

    from curlfault._track_report import is_ip

    try:
        ipaddress.ip_address(host)
        truth = True
    except ValueError:
        truth = False
    assert truth is expected
    assert is_ip(host) is expected
