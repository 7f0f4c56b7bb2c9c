"""The descriptor ledger: inode keys, double and unknown closes, /proc/self/fd as truth."""

from __future__ import annotations

import os
import socket

import pycurl
import pytest
from cfhelpers import transfer

from curlfault import FakeNetwork, LeakError, Ledger, SocketRecord
from curlfault._ledger import open_socket_inodes


def _record(sock: socket.socket) -> SocketRecord:
    return SocketRecord(
        inode=os.fstat(sock.fileno()).st_ino,
        fd=sock.fileno(),
        family="socketpair",
        peer="127.77.0.1:80",
        host="api.test",
        url="http://api.test/",
        kind="socketpair",
        opened_in="test",
        handle_site="here",
    )


def test_open_socket_inodes_sees_a_live_socket() -> None:
    a, b = socket.socketpair()
    try:
        assert os.fstat(a.fileno()).st_ino in open_socket_inodes()
    finally:
        a.close()
        b.close()
    assert os.fstat is not None


def test_audit_leaked_vs_closed_in_c() -> None:
    ledger = Ledger()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        ra = ledger.opened(_record(a))
        rc = ledger.opened(_record(c))
        c.close()  # closed without the callback, like pycurl does at multi teardown
        report = ledger.audit()
        assert report.leaked == [ra]
        assert report.closed_by_pycurl == [rc]
        assert not report.ok
        assert "fd" in ra.describe()
        assert "api.test" in ra.describe()
    finally:
        a.close()
        b.close()
        d.close()
    assert ledger.audit().ok  # a is gone now: no longer a leak


def test_double_and_unknown_closes_are_reported() -> None:
    ledger = Ledger()
    a, b = socket.socketpair()
    try:
        rec = ledger.opened(_record(a))
        assert ledger.bind(a.fileno()) is rec
        assert rec.bound == 1
        ledger.closing(a.fileno(), rec.inode)
        ledger.closing(a.fileno(), rec.inode)
        ledger.closing(99999, None)
        ledger.closing(b.fileno(), os.fstat(b.fileno()).st_ino)
        report = ledger.audit()
        assert report.double_closed == [rec]
        assert len(report.unknown_closes) == 2
        assert "not open" in report.unknown_closes[0]
        assert "never handed out" in report.unknown_closes[1]
    finally:
        a.close()
        b.close()


def test_the_open_count_follows_closes_and_pycurls_own_closes() -> None:
    # check() and close() trust has_unclosed and the audit's early return: the count must
    # agree with the records through first closes, double closes and closes in C.
    ledger = Ledger()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        assert not ledger.has_unclosed
        ra = ledger.opened(_record(a))
        rc = ledger.opened(_record(c))
        assert ledger.has_unclosed
        assert ledger.unclosed() == [ra, rc]
        ledger.closing(a.fileno(), ra.inode)
        assert ledger.unclosed() == [rc]
        ledger.closing(a.fileno(), ra.inode)  # a second close: not a second decrement
        assert ledger.unclosed() == [rc]
        assert ledger.has_unclosed
        c.close()  # pycurl's close in C, found by the audit
        report = ledger.audit()
        assert report.closed_by_pycurl == [rc]
        assert report.double_closed == [ra]
        assert not ledger.has_unclosed
        assert ledger.unclosed() == []
        ledger.closing(d.fileno(), rc.inode)  # a late callback for it changes nothing
        assert not ledger.has_unclosed
        assert ledger.audit().double_closed == [ra]  # still reported after the early exits
        ledger.opened(_record(b))
        assert ledger.has_unclosed
    finally:
        a.close()
        b.close()
        d.close()


def test_inode_not_fd_number_is_the_key() -> None:
    ledger = Ledger()
    a, b = socket.socketpair()
    rec = ledger.opened(_record(a))
    fd = a.fileno()
    a.close()
    b.close()
    # A new socket may reuse the fd number; it is a different inode, so not our record.
    c, d = socket.socketpair()
    try:
        assert ledger.bind(c.fileno()) is None or c.fileno() != fd
        assert ledger.lookup(c.fileno()) is None
        assert rec.closes == 0
    finally:
        c.close()
        d.close()


def test_leaked_handle_is_reported_by_check_then_released() -> None:
    net = FakeNetwork()
    keep = []
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(body="x")
            c = pycurl.Curl()
            assert transfer("http://api.test/", curl=c).code == 0  # keep-alive: still open
            keep.append(c)
        with pytest.raises(LeakError, match=r"never closed: .*api\.test.*test_ledger\.py"):
            net.check()
        c.close()
        net.check()  # closed now, and the leak was reported once
        assert [r.closes for r in net.ledger.records] == [1]
    finally:
        for h in keep:
            h.close()
        net.close()


def test_handle_in_a_reference_cycle_is_collected_before_blaming() -> None:
    net = FakeNetwork()
    try:
        with net.intercept():
            net.http("api.test").get("/").respond(body="x")
            c = pycurl.Curl()
            c.cycle = c  # only the garbage collector can free it
            assert transfer("http://api.test/", curl=c).code == 0
            del c
        net.check()  # check() collects before it calls anything a leak
        assert [r.closes for r in net.ledger.records] == [1]
    finally:
        net.close()


def test_record_knows_where_the_handle_was_made(curlfault) -> None:
    curlfault.http("api.test").get("/").respond()
    transfer("http://api.test/")
    (rec,) = curlfault.ledger.records
    assert "cfhelpers.py" in str(rec.handle_site)
    assert "test_ledger.py" in rec.handle_site.format()  # the stack reaches the test
    assert rec.opened_in.endswith("test_record_knows_where_the_handle_was_made")
    assert rec.url == "http://api.test/"
    assert rec.bound == 1
    assert rec.closes == 1


def test_sockopt_binds_the_descriptor_opensocket_just_handed_out_without_fstat(
    curlfault, monkeypatch
) -> None:
    """libcurl calls sockopt on the very number opensocket returned (no dup in between), so
    the record is bound as it is; any other number still goes through fstat and the inode."""
    import curlfault._ledger as ledger_module

    looked_up: list[int] = []
    real = ledger_module.socket_inode

    def counting(fd: int) -> int | None:
        looked_up.append(fd)
        return real(fd)

    monkeypatch.setattr(ledger_module, "socket_inode", counting)
    curlfault.http("api.test").get("/").respond(body="x")
    assert transfer("http://api.test/").code == 0
    (rec,) = curlfault.ledger.records
    assert (rec.bound, rec.closes) == (1, 1)
    assert looked_up == []
    # A number the ledger was not just handed: bound by its inode.
    a, b = socket.socketpair()
    try:
        other = curlfault.ledger.opened(_record(a))
        assert curlfault.ledger.bind(a.fileno()) is other
        assert looked_up == [a.fileno()]
        curlfault.ledger.closing(a.fileno(), other.inode)
    finally:
        a.close()
        b.close()


def test_pair_record_is_the_keyword_built_record() -> None:
    # pair_record() passes every field by position (the fast call a connection makes): it
    # must give what naming them gives, whatever order the fields are declared in.
    from curlfault._ledger import pair_record

    owner, keep = object(), object()
    fast = pair_record(11, 7, "ipv4", "127.0.0.1:80", "api.test", "http://api.test/", "tcp",
                       "test_x", "site", owner, keep)  # fmt: skip
    named = SocketRecord(
        inode=11,
        fd=7,
        family="ipv4",
        peer="127.0.0.1:80",
        host="api.test",
        url="http://api.test/",
        kind="tcp",
        opened_in="test_x",
        handle_site="site",
        owner=owner,
        keepalive=keep,
    )
    assert fast == named
    assert (fast.owner, fast.keepalive) == (owner, keep)
    assert (fast.seq, fast.bound, fast.closes, fast.notes) == (0, 0, 0, ())
    assert (fast.closed_by_pycurl, fast.reported, fast.connected) == (False, False, True)
