"""The options, ini settings and marker of ``--curlfault-leaks`` / ``--curlfault-strict``.

Parsing and validation only: a bad value is a ``pytest.UsageError`` naming the problem and
the fix. ``_leaks`` wires them into the run; ``_leaks_plugin`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from curlfault import UsageError
from curlfault._tracking import parse_host

__all__ = [
    "FIXTURE_PROPERTY",
    "MARKER",
    "SCOPES",
    "addoption",
    "parse_allow_hosts",
    "parse_handle_scope",
    "waiver",
]

SCOPES = ("module", "session")
MARKER = "curlfault_leaks_ok"
# The user_properties name under which the curlfault fixture's failed check is noted: the
# --curlfault-leaks/--curlfault-strict summary lists those problems too.
FIXTURE_PROPERTY = "curlfault_fixture_check"


def addoption(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    group.addoption(
        "--curlfault-leaks",
        action="store_true",
        dest="curlfault_leaks",
        default=False,
        help="track every pycurl handle the run makes (real connections, no fakes) and "
        "fail, at teardown, a test that leaves a descriptor open.",
    )
    group.addoption(
        "--curlfault-strict",
        action="store_true",
        dest="curlfault_strict_run",
        default=False,
        help="refuse every pycurl connection that no curlfault fake serves, unless its host "
        "is allowed; the test that made it fails.",
    )
    group.addoption(
        "--curlfault-allow-hosts",
        action="store",
        dest="curlfault_allow_hosts",
        default=None,
        metavar="HOSTS",
        help="comma-separated host names and IP addresses that --curlfault-strict lets "
        "pycurl reach, e.g. localhost,127.0.0.1 (default: the curlfault_allow_hosts ini "
        "value).",
    )
    parser.addini(
        "curlfault_allow_hosts",
        type="args",
        default=[],
        help="host names and IP addresses that --curlfault-strict lets pycurl reach.",
    )
    parser.addini(
        "curlfault_handle_scopes",
        type="linelist",
        default=[],
        help="lines 'SCOPE PATTERN' (SCOPE: module or session): under --curlfault-leaks, "
        "descriptors of handles made where PATTERN ('path::function', glob) matches one "
        "of the six innermost frames of their stack (past an installed library's own) are "
        "checked at the end of SCOPE instead of the test.",
    )


def parse_allow_hosts(value: str | Sequence[str]) -> tuple[str, ...]:
    """Host names and IP addresses from ``a,b`` or a list of them; ``pytest.UsageError`` if bad."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    hosts: list[str] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            try:
                hosts.append(parse_host(part))
            except UsageError as exc:
                raise pytest.UsageError(f"curlfault allowed hosts: {exc}") from None
    return tuple(dict.fromkeys(hosts))


def parse_handle_scope(line: str) -> tuple[str, str]:
    """One ``curlfault_handle_scopes`` line: ``(scope, pattern)``; ``pytest.UsageError`` if bad."""
    parts = line.split()
    if len(parts) != 2 or parts[0] not in SCOPES:
        raise pytest.UsageError(
            f"curlfault_handle_scopes line {line.strip()!r} is not valid; write "
            "'SCOPE PATTERN' with SCOPE module or session and PATTERN like "
            "'tests/conftest.py::api_client' or 'src/app/pool.py::*'"
        )
    scope, pattern = parts
    return scope, pattern if "::" in pattern else f"{pattern}::*"


def waiver(item: pytest.Item) -> tuple[bool, str | None, str]:
    """``(marked, scope, reason)`` from the item's ``curlfault_leaks_ok`` marker, validated."""
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return False, None, ""
    if mark.args:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword arguments only (scope=..., reason=...), "
            f"got {mark.args!r} on {item.nodeid}"
        )
    unknown = sorted(set(mark.kwargs) - {"scope", "reason"})
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} got unknown option(s) {', '.join(unknown)} on "
            f"{item.nodeid}; known options: reason, scope"
        )
    scope = mark.kwargs.get("scope")
    if scope is not None and scope not in SCOPES:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}(scope=...) must be 'module' or 'session' (or left out to "
            f"waive the check), got {scope!r} on {item.nodeid}"
        )
    reason = mark.kwargs.get("reason", "")
    if not isinstance(reason, str):
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}(reason=...) must be a str, got {reason!r} on {item.nodeid}"
        )
    return True, scope, reason
