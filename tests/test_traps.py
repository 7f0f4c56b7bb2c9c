"""Every trap in PYCURL_NOTES.md, pinned. The ones that segfault when mishandled run in a
child process, so a regression fails one test instead of killing the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import (
    CallbackError,
    FakeNetwork,
    InterceptedCurl,
    Intercepting,
    Response,
    Tracker,
    UsageError,
    faults,
)

PRELUDE = """
import gc, io, pycurl
from curlfault import FakeNetwork
def get(c, url):
    c.setopt(pycurl.URL, url); c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    c.setopt(pycurl.TIMEOUT, 10); c.perform()
    return c.getinfo(pycurl.RESPONSE_CODE)
def code_after_reset(c, url):  # reset(), then the CURLcode of a GET (0 if it succeeds)
    c.reset(); c.setopt(pycurl.CONNECTTIMEOUT, 5)
    try:
        get(c, url); return 0
    except pycurl.error as e:
        return e.args[0]
net = FakeNetwork()
api = net.http("api.test"); api.get("/").respond(200, body="ok")
"""


def run_child(body: str, env: dict[str, str] | None = None) -> str:
    """Run PRELUDE + body in a fresh interpreter; fail with its output if it crashed."""
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),  # import the installed curlfault, not the source tree
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_a_collection_inside_the_ledgers_lock_may_close_a_handle() -> None:
    # A garbage collection runs whenever an allocation crosses its threshold, so one can run
    # inside any locked region that allocates (a list of the unclosed records, say). If it
    # frees a handle in a reference cycle, pycurl calls that handle's close callbacks right
    # there, in the same thread: they must not wait on the lock this thread holds.
    out = run_child(
        """
        import faulthandler
        from curlfault import _ledger
        faulthandler.dump_traceback_later(30, exit=True)  # a hang fails instead of waiting
        with net.intercept():
            c = pycurl.Curl()
            assert get(c, "http://api.test/") == 200   # its connection stays pooled
            cycle = {"curl": c}
            cycle["self"] = cycle
            c.cycle = cycle
            del c, cycle
        original = _ledger.Ledger.unclosed
        def unclosed(self):
            with self._lock:
                gc.collect()   # what an allocation in here can set off
                return original(self)
        _ledger.Ledger.unclosed = unclosed
        net.check()
        print("closes", [r.closes for r in net.ledger.records])
        net.close()
        """
    )
    assert "closes [1]" in out


def test_a_collection_inside_the_trackers_lock_may_close_a_handle() -> None:
    out = run_child(
        """
        import faulthandler, os, socket, threading
        import curlfault
        from curlfault import _tracking
        faulthandler.dump_traceback_later(30, exit=True)
        listener = socket.create_server(("127.0.0.1", 0))
        served = []
        def serve():
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            served.append(conn)  # kept open: the client pools the connection
        server = threading.Thread(target=serve)
        server.start()
        tracker = curlfault.Tracker(leaks=True, label="t").install()
        c = pycurl.Curl()
        c.setopt(pycurl.CLOSESOCKETFUNCTION, lambda fd: os.close(fd) or 0)
        c.setopt(pycurl.NOPROXY, "*")
        assert get(c, f"http://127.0.0.1:{listener.getsockname()[1]}/") == 200
        server.join(10)
        cycle = {"curl": c}
        cycle["self"] = cycle
        c.cycle = cycle
        del c, cycle
        original = _tracking.Tracker.take_events
        def take_events(self, *args, **kwargs):
            with self._lock:
                gc.collect()   # what an allocation in here can set off
                return original(self, *args, **kwargs)
        _tracking.Tracker.take_events = take_events
        print("events", tracker.take_events("t"), "open", tracker.open_records("t"))
        tracker.close()
        for conn in served:
            conn.close()
        listener.close()
        net.close()
        """
    )
    assert "events [] open []" in out


def test_reset_with_pooled_connection_does_not_segfault() -> None:
    # pycurl 7.49: reset() clears the closesocket callback a pooled connection still uses.
    out = run_child(
        """
        with net.intercept():
            c = pycurl.Curl()
            assert get(c, "http://api.test/") == 200
            c.reset()                      # the connection stays pooled
            assert get(c, "http://api.test/") == 200   # reused after reset
            c.reset()
            c.close()                      # closes the pooled connection via the callback
        rep = net.ledger.audit()
        print(len(api.connections), [r.closes for r in net.ledger.records], rep.ok)
        net.check(); net.close()
        """
    )
    assert out.split() == ["1", "[1]", "True"]


def test_attached_plain_handle_survives_reset() -> None:
    # A plain pycurl.Curl's reset() runs in C, so nothing re-installs the close callback
    # there: attach() keeps its connections out of the pool (a pooled one would crash
    # pycurl 7.49 when it is closed after the reset). Re-attached, it is routed again.
    out = run_child(
        """
        c = net.attach(pycurl.Curl())
        assert get(c, "http://api.test/") == 200
        c.reset()
        c.close()                      # the crash, with a pooled connection
        c = net.attach(pycurl.Curl())
        assert get(c, "http://api.test/") == 200
        c.reset()
        net.attach(c)
        assert get(c, "http://api.test/") == 200
        c.close()
        print(len(api.connections), [r.closes for r in net.ledger.records], net.ledger.audit().ok)
        net.check(); net.close()
        """
    )
    assert out.split() == ["3", "[1,", "1,", "1]", "True"]


def test_attached_plain_handle_reset_before_its_next_transfer_does_not_segfault() -> None:
    # libcurl keeps a RESOLVE list pending until a transfer starts, and reset() in C does
    # not clear it while pycurl 7.49 frees the list: a plain handle given RESOLVE by
    # attach() (or by a re-pin when an endpoint is added) and reset before its next
    # perform() read freed memory (a segfault in perform). Plain handles get no RESOLVE
    # entries for single-stack fakes; a dual-stack fake still gets its synthetic name's.
    out = run_child(
        """
        c = net.attach(pycurl.Curl())
        # reset before any transfer (the list was pending); routing gone: nothing listens
        print(code_after_reset(c, "http://127.0.0.1:9/"))
        net.attach(c)
        assert get(c, "http://api.test/") == 200
        net.http("late.test").get("/").respond(200, body="late")  # re-pins the handle
        print(code_after_reset(c, "http://127.0.0.1:9/"))
        net.attach(c)
        assert get(c, "http://late.test/") == 200
        both = net.http("both.test")
        both.get("/").respond(200, body="both")
        both.connection_faults(None, family="ipv6")  # dual-stack: IPv6 first, healthy
        assert get(c, "http://both.test/") == 200  # its synthetic name is still pinned
        assert both.connections[-1].family == "ipv6"
        c.close()
        net.check(); net.close()
        print("ok")
        """
    )
    assert out.split() == ["7", "7", "ok"]


@pytest.mark.parametrize("router", ["tracker", "network"])
def test_a_handles_own_resolve_list_pending_at_reset_does_not_segfault(router: str) -> None:
    # The same pycurl trap with the handle's own RESOLVE list (it crashes without curlfault
    # too): a tracked handle's wiring sets no RESOLVE of its own to replace the pending
    # pointer, so InterceptedCurl.reset() unsets the option before pycurl frees the list.
    out = run_child(
        f"""
        from curlfault import Tracker
        net.close()
        router = Tracker(leaks=True) if {router!r} == "tracker" else FakeNetwork(strict=False)
        with router if {router!r} == "tracker" else router.intercept():
            c = pycurl.Curl()
            c.setopt(pycurl.RESOLVE, ["own.test:80:127.0.0.1"])
            print(code_after_reset(c, "http://127.0.0.1:9/"))
            c.close()
        router.close()
        """
    )
    assert out.split() == ["7"]


def test_reset_then_empty_pin_lists_do_not_segfault() -> None:
    # pycurl 7.49 ignores setopt(RESOLVE, []) (and CONNECT_TO), and reset() frees its copy
    # of the list that libcurl still points at: setting an empty list after reset() made
    # the next perform() read freed memory. Only wildcard-port fakes (no RESOLVE entries),
    # and a lax network with no fakes at all (no CONNECT_TO entries) give empty lists.
    out = run_child(
        """
        net.close()
        refusing = FakeNetwork()
        refusing.refuse("down.test")
        lax = FakeNetwork(strict=False)
        for network, url in ((refusing, "http://down.test/"), (lax, "http://127.0.0.1:9/")):
            with network.intercept():
                c = pycurl.Curl()
                c.setopt(pycurl.RESOLVE, ["other.test:8080:127.0.0.2", "x.test:80:127.0.0.3"])
                c.setopt(pycurl.CONNECT_TO, ["zzz.test:80:127.0.0.9:80"])
                print(code_after_reset(c, url))
                c.close()
            network.close()
        """
    )
    assert out.split() == ["7", "7"]  # refused by the fake; nothing listens on port 9


@pytest.mark.parametrize("how", ["setopt_none", "unsetopt"])
def test_unsetting_closesocket_with_pooled_connection_is_safe(how: str) -> None:
    action = (
        "c.setopt(pycurl.CLOSESOCKETFUNCTION, None)"
        if how == "setopt_none"
        else "c.unsetopt(pycurl.CLOSESOCKETFUNCTION)"
    )
    out = run_child(
        f"""
        with net.intercept():
            c = pycurl.Curl()
            assert get(c, "http://api.test/") == 200
            {action}
            assert get(c, "http://api.test/") == 200
            c.close()
        print([r.closes for r in net.ledger.records], net.ledger.audit().ok)
        net.check(); net.close()
        """
    )
    assert out.split() == ["[1]", "True"]


def test_dealloc_of_intercepted_handle_closes_through_callback() -> None:
    # A subclass __del__ that skipped super().__del__() would bypass the callback.
    out = run_child(
        """
        with net.intercept():
            c = pycurl.Curl()
            assert get(c, "http://api.test/") == 200
            del c
        gc.collect()
        print([r.closes for r in net.ledger.records], net.ledger.audit().ok)
        net.check(); net.close()
        """
    )
    assert out.split() == ["[1]", "True"]


def test_duphandle_gets_its_own_wiring(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok")
    c = pycurl.Curl()
    c.setopt(pycurl.URL, "http://api.test/")
    c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    d = c.duphandle()
    try:
        assert isinstance(d, InterceptedCurl)
        assert d._cf_wiring is not c._cf_wiring
        assert d._cf_wiring.url == "http://api.test/"
        d.perform()
        c.perform()
        assert d.getinfo(pycurl.RESPONSE_CODE) == 200
    finally:
        d.close()
        c.close()
    assert len(api.connections) == 2
    assert all(r.closes == 1 for r in curlfault.ledger.records)


def test_handle_made_before_intercept_is_not_routed_until_attached() -> None:
    c = pycurl.Curl()
    net = FakeNetwork()
    try:
        with net.intercept():
            assert type(c) is not InterceptedCurl
            net.http("api.test").get("/").respond(body="attached")
            net.attach(c)
            assert transfer("http://api.test/", curl=c).body == b"attached"
        c.close()
        net.check()
    finally:
        net.close()


def test_attached_plain_handle_sees_endpoints_added_later() -> None:
    net = FakeNetwork()
    try:
        c = net.attach(pycurl.Curl())
        net.http("late.test").get("/").respond(body="late")  # re-pins the attached handle
        assert transfer("http://late.test/", curl=c).body == b"late"
        c.close()
        net.check()
    finally:
        net.close()


def test_intercepted_handle_sees_endpoints_added_after_creation(curlfault) -> None:
    c = pycurl.Curl()
    try:
        curlfault.http("later.test").get("/").respond(body="later")
        assert transfer("http://later.test/", curl=c).body == b"later"
    finally:
        c.close()


def test_handles_made_and_dropped_do_not_pile_up_and_attached_ones_still_re_pin() -> None:
    import threading

    net = FakeNetwork()
    try:
        attached = net.attach(pycurl.Curl())
        with net.intercept():
            for _ in range(1000):
                pycurl.Curl().close()  # each one's wiring is dropped with it
            assert len(net._wirings) <= 65  # pruned as it grew: the attached one, and a few
            kept: list[pycurl.Curl] = []

            def make() -> None:
                kept.extend(pycurl.Curl() for _ in range(300))

            threads = [threading.Thread(target=make) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        live = [w for w in (r() for r in net._wirings) if w is not None]
        assert len(live) == 1 + len(kept) == 1201  # none lost while others pruned
        for c in kept:
            c.close()
        net.http("late.test").get("/").respond(body="late")  # re-pins the attached handle
        assert transfer("http://late.test/", curl=attached).body == b"late"
        attached.close()
        net.check()
    finally:
        net.close()


def test_overlapping_decorated_calls_in_threads_each_undo_their_own_entry() -> None:
    import threading

    net, other = FakeNetwork(), FakeNetwork()
    try:
        routing = net.intercept()
        a_inside, b_inside, a_left, other_in = (threading.Event() for _ in range(4))
        seen: dict[str, object] = {}

        @routing
        def first() -> None:
            a_inside.set()
            other_in.wait(10)
            b_inside.wait(10)  # leaves while the second call is still inside

        @routing
        def second() -> None:
            b_inside.set()
            a_left.wait(10)
            c = pycurl.Curl()  # inside its own block: routed through net
            seen["network"] = c._cf().network
            c.close()

        ta = threading.Thread(target=lambda: (first(), a_left.set()))
        ta.start()
        a_inside.wait(10)
        with other.intercept():  # another network stacks in between
            other_in.set()
            tb = threading.Thread(target=second)
            tb.start()
            ta.join(10)
            tb.join(10)
        assert seen["network"] is net
        assert pycurl.Curl is not InterceptedCurl
    finally:
        net.close()
        other.close()


def test_reset_does_not_register_a_handle_again() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            c = pycurl.Curl()
        for _ in range(500):
            c.reset()  # wires the handle again, through the same wiring
        assert len(net._wirings) == 1
        net.http("api.test").get("/").respond(body="after resets")
        assert transfer("http://api.test/", curl=c).body == b"after resets"
        c.close()
        net.check()
    finally:
        net.close()


def test_intercept_restores_pycurl_curl_even_on_error() -> None:
    original = pycurl.Curl
    net = FakeNetwork()
    try:
        with pytest.raises(ZeroDivisionError), net.intercept():  # noqa: PT012
            assert pycurl.Curl is InterceptedCurl
            1 / 0  # noqa: B018
        assert pycurl.Curl is original
        inner = FakeNetwork()
        with net.intercept():
            with inner.intercept():
                assert InterceptedCurl._cf_network is inner
            assert InterceptedCurl._cf_network is net
        inner.close()
        assert pycurl.Curl is original
    finally:
        net.close()


def test_intercept_as_a_decorator_and_entered_again_while_entered() -> None:
    original = pycurl.Curl
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(body="decorated")
        routing = net.intercept()
        assert isinstance(routing, Intercepting)  # public, for type hints
        assert type(routing).__module__ == "curlfault"

        @routing
        def fetch() -> bytes:
            return transfer("http://api.test/").body

        assert fetch() == b"decorated"
        assert pycurl.Curl is original
        assert routing._recreate_cm() is not routing  # as a decorator: a fresh one per call
        with routing:
            with routing:  # the same object, nested: each exit undoes its own entry
                assert InterceptedCurl._cf_network is net
            assert pycurl.Curl is InterceptedCurl
        assert pycurl.Curl is original
    finally:
        net.close()


def test_exception_in_user_closesocket_is_reraised_not_lost(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond(200, headers={"Connection": "close"})
    c = pycurl.Curl()

    def bad_close(fd: int) -> int:
        raise RuntimeError("user closesocket broke")

    c.setopt(pycurl.CLOSESOCKETFUNCTION, bad_close)
    try:
        with pytest.raises(CallbackError, match="user closesocket broke"):
            transfer("http://api.test/", curl=c)
    finally:
        c.close()
    # The descriptor was still closed exactly once, by curlfault, after the user's failure.
    assert [r.closes for r in curlfault.ledger.records] == [1]
    curlfault.check()  # delivered once already: not raised again


def test_exception_in_opensocket_does_not_become_code_7(curlfault, monkeypatch) -> None:
    curlfault.http("api.test").get("/").respond(200)

    def broken(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(curlfault, "open_socket", broken)
    with pytest.raises(CallbackError, match="Too many open files") as info:
        transfer("http://api.test/")
    # perform's own error (7) is chained, so nothing is lost either way.
    assert isinstance(info.value.__context__, pycurl.error)
    assert info.value.__context__.args[0] == 7


def test_callback_exception_in_multi_does_not_break_other_transfers(curlfault) -> None:
    api = curlfault.http("api.test")
    api.get("/").respond(200, body="ok", headers={"Connection": "close"})
    good, bad = pycurl.Curl(), pycurl.Curl()
    sink: list[bytes] = []
    for c in (good, bad):
        c.setopt(pycurl.URL, "http://api.test/")
        c.setopt(pycurl.WRITEFUNCTION, sink.append)
        c.setopt(pycurl.TIMEOUT, 10)
    bad.setopt(pycurl.CLOSESOCKETFUNCTION, lambda fd: 1 / 0)
    m = pycurl.CurlMulti()
    m.add_handle(good)
    m.add_handle(bad)
    try:
        for _ in range(1000):
            _ret, active = m.perform()
            if not active:
                break
            m.select(0.1)
        _, ok, failed = m.info_read()
        assert len(ok) == 2
        assert failed == []
        assert good.getinfo(pycurl.RESPONSE_CODE) == 200
    finally:
        m.remove_handle(good)
        m.remove_handle(bad)
        m.close()
        good.close()
        bad.close()
    with pytest.raises(CallbackError, match="ZeroDivisionError"):
        curlfault.check()


def test_multi_close_with_pooled_connections_is_not_a_false_leak() -> None:
    # pycurl closes connections pooled in a multi in C, bypassing the closesocket callback
    # (it warns "closesocket_callback failed to acquire thread"). /proc/self/fd is the truth.
    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(200, body="ok")
            m = pycurl.CurlMulti()
            c = pycurl.Curl()
            c.setopt(pycurl.URL, "http://api.test/")
            c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
            m.add_handle(c)
            for _ in range(1000):
                _, active = m.perform()
                if not active:
                    break
                m.select(0.1)
            m.remove_handle(c)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                m.close()
            c.close()
        net.check()
        assert len(net.ledger) == 1
        assert net.ledger.records[0].closed_by_pycurl
        assert net.ledger.audit().ok
        # The trace says what happened to it (a user trial found it ended with no close).
        assert "found closed: pycurl closed it in C without the close callback" in net.trace()
    finally:
        net.close()


def test_share_with_pooled_connections_is_not_a_false_leak() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(200, body="ok")
            share = pycurl.CurlShare()
            share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
            handles = []
            for _ in range(2):
                c = pycurl.Curl()
                c.setopt(pycurl.SHARE, share)
                assert transfer("http://api.test/", curl=c).status == 200
                handles.append(c)
            # Handles stay alive until the share is closed (use-after-free trap).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for c in handles:
                    c.close()
                share.close()
        assert net.ledger.audit().ok
        net.check()
    finally:
        net.close()


def test_unknown_host_is_refused_without_any_resolver_query(curlfault) -> None:
    # .invalid never resolves: a resolver query would give 6, our sink gives 7.
    r = transfer("http://nowhere.invalid:8080/x")
    assert r.code == 7
    from curlfault import UnexpectedConnection

    with pytest.raises(UnexpectedConnection, match=r"nowhere\.invalid:8080/x"):
        curlfault.check()


def test_refused_host(curlfault) -> None:
    curlfault.refuse("down.test")
    assert transfer("http://down.test/").code == 7
    assert transfer("http://down.test:8443/").code == 7
    assert len(curlfault.ledger) == 0  # no descriptor was ever made
    curlfault.check()  # refusing a declared host is not a problem


def test_environment_proxy_is_ignored(curlfault, monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    curlfault.http("api.test").get("/").respond(body="direct")
    assert transfer("http://api.test/").body == b"direct"


def test_user_debugfunction_is_chained(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="dbg")
    seen: list[int] = []
    r = transfer("http://api.test/", VERBOSE=1, DEBUGFUNCTION=lambda kind, data: seen.append(kind))
    assert r.body == b"dbg"
    assert pycurl.INFOTYPE_HEADER_OUT in seen
    assert pycurl.INFOTYPE_HEADER_IN in seen


def test_debugfunction_without_verbose_is_not_called(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="quiet")
    seen: list[int] = []
    assert transfer("http://api.test/", DEBUGFUNCTION=lambda k, d: seen.append(k)).code == 0
    assert seen == []


def test_verbose_without_debugfunction_prints_like_libcurl(curlfault, capfd) -> None:
    curlfault.http("api.test").get("/").respond(body="v")
    assert transfer("http://api.test/", VERBOSE=1).code == 0
    err = capfd.readouterr().err
    assert "> GET / HTTP/1.1" in err
    assert "< HTTP/1.1 200" in err


def test_user_connect_to_and_resolve_are_merged(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="via connect_to")
    # The user's own mapping sends alias.test to api.test, which is a fake.
    r = transfer(
        "http://alias.test/",
        CONNECT_TO=["alias.test:80:api.test:80"],
    )
    assert r.body == b"via connect_to"


def test_user_opensocket_is_not_used_for_fakes(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="fake")
    called: list[object] = []
    r = transfer("http://api.test/", OPENSOCKETFUNCTION=lambda p, a: called.append(a) or -1)
    assert r.body == b"fake"
    assert called == []


def test_reset_forgets_the_users_debugfunction(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="x")
    seen: list[int] = []
    c = pycurl.Curl()
    try:
        transfer("http://api.test/", curl=c, VERBOSE=1, DEBUGFUNCTION=lambda k, d: seen.append(k))
        assert seen
        seen.clear()
        c.reset()
        assert transfer("http://api.test/", curl=c).body == b"x"
        assert seen == []
    finally:
        c.close()


def test_duphandle_keeps_the_users_debugfunction(curlfault) -> None:
    # pycurl copies VERBOSE and curlfault's own debug callback into the copy; the user's
    # callback, which curlfault chains, must come along (it was silently dropped).
    curlfault.http("api.test").get("/").respond(body="x")
    seen: list[int] = []
    c = pycurl.Curl()
    c.setopt(pycurl.VERBOSE, 1)
    c.setopt(pycurl.DEBUGFUNCTION, lambda k, d: seen.append(k))
    d = c.duphandle()
    try:
        assert transfer("http://api.test/", curl=d).body == b"x"
        assert pycurl.INFOTYPE_HEADER_OUT in seen
    finally:
        d.close()
        c.close()


def test_keyboard_interrupt_in_a_callback_comes_back_as_itself(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="x")

    def interrupt(kind: int, data: bytes) -> None:
        raise KeyboardInterrupt

    c = pycurl.Curl()
    try:
        with pytest.raises(KeyboardInterrupt):
            transfer("http://api.test/", curl=c, VERBOSE=1, DEBUGFUNCTION=interrupt)
        assert c.getinfo(pycurl.RESPONSE_CODE) == 200  # the transfer itself went on
    finally:
        c.close()
    assert curlfault.ledger.audit().ok  # and closesocket ran for its connection


@pytest.mark.parametrize("pool", ["multi", "share"])
def test_handle_freed_before_its_pool_closes_does_not_crash(pool: str) -> None:
    # pycurl calls the closesocket callback with the handle that made the connection; a
    # handle freed while its connection is still pooled in a multi/share is a use-after-free
    # at the pool's close. curlfault keeps such a handle alive. PYTHONMALLOC=debug makes
    # the use-after-free crash reliably instead of silently reading freed memory.
    body = (
        """
        import warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        with net.intercept():
            m = pycurl.CurlMulti()
            c = pycurl.Curl()
            c.setopt(pycurl.URL, "http://api.test/"); c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
            m.add_handle(c)
            for _ in range(1000):
                _, active = m.perform()
                if not active:
                    break
                m.select(0.1)
            m.remove_handle(c)
            c.close(); del c; gc.collect()
            m.close()
        """
        if pool == "multi"
        else """
        import warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        with net.intercept():
            s = pycurl.CurlShare()
            s.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
            c = pycurl.Curl()
            c.setopt(pycurl.SHARE, s)
            assert get(c, "http://api.test/") == 200
            c.close(); del c; gc.collect()
            s.close()
        """
    )
    out = run_child(
        body
        + """
        net.check(); net.close()
        print("survived")
        """,
        env={"PYTHONMALLOC": "debug"},
    )
    assert out.split() == ["survived"]


# LOCALPORT / INTERFACE: libcurl binds the socket it is given ------------------------------

BINDS = [
    ({"LOCALPORT": 41000, "LOCALPORTRANGE": 2000}, "LOCALPORT 41000"),
    ({"INTERFACE": "127.0.0.1"}, "INTERFACE '127.0.0.1'"),
    ({"INTERFACE": "host!127.0.0.1"}, "INTERFACE 'host!127.0.0.1'"),
]


@pytest.mark.parametrize(("opts", "named"), BINDS)
@pytest.mark.parametrize("transport", ["socketpair", "tcp"])
def test_a_handle_that_binds_is_told_a_pair_cannot_be_bound(
    transport: str, opts: dict[str, object], named: str
) -> None:
    # libcurl bind()s the descriptor opensocket gave it, even one already connected: a pair
    # end refuses, and the transfer fails with 45. That code is libcurl's own; curlfault
    # adds why, and the transport that works.
    net = FakeNetwork()
    try:
        net.http("api.test", transport=transport).get("/").respond(body="x")
        with net.intercept():
            assert transfer("http://api.test/", **opts).code == pycurl.E_INTERFACE_FAILED
        with pytest.raises(UsageError) as info:
            net.check()
        assert f"the handle sets {named}, so libcurl binds" in str(info.value)
        assert "net.http('api.test', transport='listener')" in str(info.value)
    finally:
        net.close()


@pytest.mark.parametrize(("opts", "named"), BINDS)
def test_a_handle_that_binds_is_served_by_the_listener_transport(
    opts: dict[str, object], named: str
) -> None:
    with FakeNetwork() as net, net.intercept():
        net.http("api.test", transport="listener").get("/").respond(body="x")
        assert transfer("http://api.test/", **opts).body == b"x"
        net.check()


def test_bind_options_unset_or_reset_are_forgotten(curlfault) -> None:
    curlfault.http("api.test").get("/").respond(body="x")
    c = pycurl.Curl()
    try:
        c.setopt(pycurl.INTERFACE, "127.0.0.1")
        c.setopt(pycurl.INTERFACE, "")  # pycurl cannot unset it; an empty name binds nothing
        assert transfer("http://api.test/", curl=c).body == b"x"
        c.setopt(pycurl.LOCALPORT, 41000)
        c.reset()
        assert transfer("http://api.test/", curl=c).body == b"x"
        c.setopt(pycurl.LOCALPORT, 41000)
        c.setopt(pycurl.LOCALPORT, 0)  # 0: no bind
        assert transfer("http://api.test/", curl=c).body == b"x"
        # A device name is bound with SO_BINDTODEVICE (which works or not with privileges
        # and the kernel: not predicted), and then libcurl binds no port: nothing to report.
        d = c.duphandle()
        d.setopt(pycurl.INTERFACE, "lo")
        d.setopt(pycurl.LOCALPORT, 41000)
        assert transfer("http://api.test/", curl=d).code in (0, pycurl.E_INTERFACE_FAILED)
        d.close()
    finally:
        c.close()
    assert curlfault.problems == []


def test_bind_options_follow_a_handle_into_attach() -> None:
    # A handle made under a tracker (or another network) sets INTERFACE, then meets a
    # network through attach(): its pair connection still cannot be bound, and says so.
    with Tracker(leaks=True):
        c = pycurl.Curl()
        c.setopt(pycurl.INTERFACE, "127.0.0.1")
    net = FakeNetwork()
    try:
        net.http("api.test").get("/").respond(body="x")
        net.attach(c)
        assert transfer("http://api.test/", curl=c).code == pycurl.E_INTERFACE_FAILED
        with pytest.raises(UsageError, match=r"the handle sets INTERFACE '127\.0\.0\.1'"):
            net.check()
    finally:
        c.close()
        net.close()


def _share(*kinds: int) -> pycurl.CurlShare:
    share = pycurl.CurlShare()
    for kind in kinds:
        share.setopt(pycurl.SH_SHARE, kind)
    return share


def test_a_connection_cache_shared_by_threads_at_once_raises_instead_of_crashing() -> None:
    """libcurl does not support one connection cache (CurlShare, LOCK_DATA_CONNECT) used by
    concurrent threads; with the network's callbacks it crashed within a few transfers
    (exit -11 in this test before the guard). Now a transfer that would overlap another
    thread's raises ClientError before libcurl runs, and nothing crashes."""
    out = run_child(
        """
        import threading
        from curlfault import ClientError
        done, refused, other = [], [], []
        with net.intercept():
            share = pycurl.CurlShare()
            share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_DNS)
            share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
            handles = []
            def worker():
                c = pycurl.Curl(); handles.append(c)
                c.setopt(pycurl.SHARE, share)
                for _ in range(20):
                    try:
                        done.append(get(c, "http://api.test/"))
                    except ClientError as e:
                        refused.append(str(e))
                    except Exception as e:
                        other.append(repr(e))
            threads = [threading.Thread(target=worker) for _ in range(8)]
            [t.start() for t in threads]; [t.join() for t in threads]
            for c in handles:
                c.close()
            share.close()
        print(len(done), set(done), len(refused), other)
        print(refused[0] if refused else "")
        net.close()
        """
    )
    counts, message = out.splitlines()[:2]
    n_done, codes, n_refused, other = counts.split(" ", 3)
    assert other == "[]", out
    assert int(n_done) + int(n_refused) == 160, out
    assert int(n_done) > 0, out
    assert codes == "{200}", out
    if int(n_refused):
        assert "LOCK_DATA_CONNECT" in message, out
        assert "own CurlShare" in message, out


def test_a_second_thread_in_a_busy_connection_cache_is_refused_and_other_shares_are_not(
    curlfault,
) -> None:
    """Thread A's transfer waits for a delayed response; meanwhile thread B's transfer
    through the same connection cache raises ClientError, while a share of DNS only (which
    libcurl supports across threads) lets a transfer through. After A is done, B may use
    the cache from its own thread. (The delay runs on the loop's timer: a handler that
    blocked would hold up every connection of the network, not only A's.)"""
    import threading

    from curlfault import ClientError

    api = curlfault.http("api.test")
    entered = threading.Event()

    def slow(request: object) -> Response:
        entered.set()
        return Response.make(200, body="slow", fault=faults.delay(3))

    api.get("/slow").handle(slow)
    api.get("/fast").respond(200)
    conn_share = _share(pycurl.LOCK_DATA_DNS, pycurl.LOCK_DATA_CONNECT)
    dns_share = _share(pycurl.LOCK_DATA_DNS)
    results: dict[str, object] = {}

    def run(name: str, share: pycurl.CurlShare, path: str) -> None:
        c = pycurl.Curl()
        try:
            c.setopt(pycurl.SHARE, share)
            results[name] = transfer(f"http://api.test{path}", curl=c).status
        except Exception as exc:
            results[name] = exc
        finally:
            c.close()

    a = threading.Thread(target=run, args=("a", conn_share, "/slow"))
    a.start()
    try:
        assert entered.wait(10)
        for name, share in (("b", conn_share), ("dns", dns_share)):
            t = threading.Thread(target=run, args=(name, share, "/fast"))
            t.start()
            t.join(10)
        assert a.is_alive(), "A's transfer ended before B and the DNS share tried"
    finally:
        a.join(10)
    b = threading.Thread(target=run, args=("b again", conn_share, "/fast"))
    b.start()
    b.join(10)
    conn_share.close()
    dns_share.close()
    assert isinstance(results["b"], ClientError), results
    assert "LOCK_DATA_CONNECT" in str(results["b"])
    assert "http://api.test/fast" in str(results["b"])
    assert (results["a"], results["dns"], results["b again"]) == (200, 200, 200), results
    assert api.get("/fast").calls == 2  # B's refused transfer never reached the fake


def test_pycurl_curlshare_is_swapped_while_a_network_intercepts_and_restored_after() -> None:
    from curlfault._share import REAL_SHARE, InterceptedShare

    before = REAL_SHARE()  # made before the network intercepted
    try:
        with FakeNetwork() as net, net.intercept():
            assert pycurl.CurlShare is InterceptedShare
            share = pycurl.CurlShare()
            share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
            assert type(share) is InterceptedShare
            assert share._cf_connections is True
            share.setopt(pycurl.SH_UNSHARE, pycurl.LOCK_DATA_CONNECT)
            assert share._cf_connections is False
            assert isinstance(share, pycurl.CurlShare)
            assert isinstance(before, pycurl.CurlShare)
            share.close()
        with Tracker():
            assert pycurl.CurlShare is REAL_SHARE  # the tracker adds no callbacks to guard
        assert pycurl.CurlShare is REAL_SHARE
    finally:
        before.close()


def test_a_share_dropped_without_close_is_freed_with_its_connection() -> None:
    """The guard keeps no reference to a handle's share: one dropped without close() is
    freed, its pooled connection closed by pycurl, and check() finds no leak (a reference
    from the handle's wiring kept it, and its connection, open for good)."""
    import gc

    with FakeNetwork() as net, net.intercept():
        net.http("api.test").get("/").respond(200, body="ok")
        share = pycurl.CurlShare()
        share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_CONNECT)
        c = pycurl.Curl()
        c.setopt(pycurl.SHARE, share)
        assert transfer("http://api.test/", curl=c).status == 200
        c.close()
        with warnings.catch_warnings():
            # pycurl closes the pooled connection in C when the share goes (documented)
            warnings.simplefilter("ignore", RuntimeWarning)
            del c, share
            gc.collect()
        net.check()
