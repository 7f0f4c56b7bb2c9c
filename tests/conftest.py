"""Our own suite checks itself for leaks: descriptors and threads before and after every test."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator

import pytest
from cfhelpers import Result, transfer

from curlfault import Loop


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _threads() -> set[str]:
    return {f"{t.name}#{t.ident}" for t in threading.enumerate()}


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest, curlfault_loop: Loop) -> Iterator[None]:
    """Fail a test that leaves a descriptor or a thread behind (the session loop excepted)."""
    if request.node.get_closest_marker("leaks_ok"):
        yield
        return
    curlfault_loop.start()  # the session's loop thread is meant to outlive a test
    gc.collect()
    fds, threads = _fds(), _threads()
    yield
    for _ in range(3):
        gc.collect()
        extra_fds = _fds() - fds
        extra_threads = _threads() - threads
        if not extra_fds and not extra_threads:
            return
    details = []
    for fd in sorted(extra_fds):
        try:
            details.append(f"fd {fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            details.append(f"fd {fd} (gone)")
    pytest.fail(
        f"test leaked {len(extra_fds)} descriptor(s) and {len(extra_threads)} thread(s): "
        f"{details} {sorted(extra_threads)}",
        pytrace=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks_ok: skip the suite's own fd/thread leak check")


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Inner runs print 80 columns wide, whatever terminal the outer run has: some tests
    compare with a documented report. (pytest's ``CI`` variable, which makes the short test
    summary show whole messages, is left as it is: the suite must pass with it and without.)"""
    monkeypatch.setenv("COLUMNS", "80")
    return pytester


@pytest.fixture
def fetch() -> Callable[..., Result]:
    """``fetch(url, **pycurl_options) -> Result`` on a fresh pycurl handle."""
    return transfer
