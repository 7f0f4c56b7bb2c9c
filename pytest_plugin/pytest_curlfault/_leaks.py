"""``--curlfault-leaks`` and ``--curlfault-strict``: a ``curlfault.Tracker`` for the whole run.

One tracker per process (per xdist worker) is installed at configure time, under any
``curlfault`` fixture's network; ``_leaks_plugin.LeakPlugin`` attributes its records to
tests and reports them. The options and marker are parsed in ``_leaks_options``.
"""

from __future__ import annotations

import pytest

from curlfault import Tracker

from ._leaks_options import (
    MARKER,
    addoption,
    parse_allow_hosts,
    parse_handle_scope,
    waiver,
)
from ._leaks_plugin import LeakPlugin

__all__ = [
    "addoption",
    "configure",
    "parse_allow_hosts",
    "parse_handle_scope",
    "waiver",
]


def configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(scope=None, reason=''): under --curlfault-leaks, descriptors this test "
        "leaves open are not reported; with scope='module' or 'session' they are checked "
        "at the end of that scope instead.",
    )
    scopes = [parse_handle_scope(line) for line in config.getini("curlfault_handle_scopes")]
    cli_hosts = config.getoption("curlfault_allow_hosts")
    strict = config.getoption("curlfault_strict_run")
    leaks = config.getoption("curlfault_leaks")
    if cli_hosts is not None and not strict:
        raise pytest.UsageError(
            "--curlfault-allow-hosts only applies with --curlfault-strict; add it, or drop "
            "the allow-list"
        )
    hosts = parse_allow_hosts(
        cli_hosts if cli_hosts is not None else config.getini("curlfault_allow_hosts")
    )
    config.pluginmanager.register(_MarkerCheck(), "curlfault-leaks-markers")
    if not (leaks or strict):
        return
    controller = not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no"
    tracker = None if controller else Tracker(leaks=leaks, strict=strict, allow_hosts=hosts)
    plugin = LeakPlugin(config, tracker, leaks=leaks, strict=strict, scopes=scopes)
    config.pluginmanager.register(plugin, "curlfault-leaks")
    if tracker is not None:
        tracker.install()
        config.add_cleanup(tracker.close)


class _MarkerCheck:
    """A misused ``curlfault_leaks_ok`` stops the run at collection, tracking or not."""

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            waiver(item)
