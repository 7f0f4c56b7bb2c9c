"""What a ``--curlfault-leaks`` error tells the user to do about a leaked handle.

Worked out only when a test is failed for a leak, from the frames recorded where the handle
was made (the innermost six outside curlfault and past a library's own, see
``curlfault._sites.caller_site``).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import pytest

from curlfault import SocketRecord
from curlfault._ledger import under_root

from ._leaks_options import MARKER

__all__ = ["Advice", "advice", "advice_text", "relative"]

# A pytest scope to the scope of a curlfault_handle_scopes line that outlives it.
_INI_SCOPE = {"class": "module", "module": "module", "package": "session", "session": "session"}
_INSTALLED = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class Advice:
    """``scope``: "module" or "session" (the ini line's), or "function" for a handle made by a
    function-scoped fixture; ``pattern``: ``path::function`` where the handle was made;
    ``known``: whether a fixture's scope said the scope, rather than a guess."""

    scope: str
    pattern: str
    known: bool


_CONSTRUCTORS = frozenset({"__init__", "__new__", "__post_init__"})


def advice(item: pytest.Item, rec: SocketRecord, root: str, hide: tuple[str, ...]) -> Advice | None:
    """Where the handle of ``rec`` was made and for how long it was meant to live, if known."""
    site = rec.handle_site
    if isinstance(site, str):
        return None
    frames = [(f, fn) for f, _n, fn in site.frames if not any(h in f for h in hide)]
    if not frames:
        return None
    # A frame that is one of the test's fixtures says the scope the handle was made for, and
    # is the narrowest pattern that matches its handles (a helper it calls may make others).
    scopes = _fixture_scopes(item)
    for filename, function in frames:
        scope = scopes.get((filename, function))
        if scope is not None:
            lasts = "function" if scope == "function" else _INI_SCOPE.get(scope, "session")
            return Advice(lasts, f"{relative(filename, root)}::{function}", True)
    # Otherwise the innermost frame of the user's own code: under the rootdir and not in an
    # installed package, as a path outside the rootdir is this machine's, and a library's
    # function would match every handle that library makes. With none of the user's frames
    # among those recorded, the library's file, as a glob that holds on any machine. The
    # scope is then a guess: the session, the longest.
    own = [(f, fn) for f, fn in frames if _is_own(f, root)]
    # A constructor (a client class's __init__ that makes its handle) would match every
    # instance; the code that made this one, when recorded, names the long-lived one.
    named = [(f, fn) for f, fn in own if fn not in _CONSTRUCTORS] or own
    if named:
        filename, function = named[0]
        return Advice("session", f"{relative(filename, root)}::{function}", False)
    filename, function = frames[0]
    parts = filename.replace(os.sep, "/").rsplit("/", 2)[-2:]
    return Advice("session", f"*/{'/'.join(parts)}::{function}", False)


def advice_text(found: Advice | None) -> str:
    """The last paragraph of the error of a test that left a descriptor open: how to close
    its handle, or to say that it is meant to live longer."""
    close = (
        "Close each handle (curl.close()) by the end of the test's teardown: in the test, or "
        "in the teardown of the function-scoped fixture that made it. A CurlMulti or CurlShare "
        "that the handle was added to keeps its connections open after curl.close(): close "
        "it too (multi.close(), share.close())."
    )
    if found is None:
        return close
    if found.scope == "function":
        return (
            f"{close} This handle was made in the function-scoped fixture {found.pattern}: "
            "pytest holds a fixture's value until the test's teardown is over, so close the "
            "handle in that fixture, after a yield."
        )
    # The same scope in both: when the handle's lifetime is not known (a module-level
    # cache), "session" is the one that cannot move the error to a later test.
    return (
        f"{close} If a handle is meant to outlive the test, mark the test "
        f'@pytest.mark.{MARKER}(scope="{found.scope}"), or add the line '
        f"'{found.scope} {found.pattern}' to the curlfault_handle_scopes ini setting."
    )


def _fixture_scopes(item: pytest.Item) -> dict[tuple[str, str], str]:
    """``(filename, function) -> scope`` of the fixtures the item's arguments reach."""
    # pytest's private _fixtureinfo (stable since pytest 3): read only for a failing test.
    info = getattr(item, "_fixtureinfo", None)
    out: dict[tuple[str, str], str] = {}
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            code = getattr(inspect.unwrap(fixturedef.func), "__code__", None)
            if code is not None:
                out.setdefault((code.co_filename, code.co_name), fixturedef.scope)
    return out


def _is_own(path: str, root: str) -> bool:
    prefix = root.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return False
    return not any(part in _INSTALLED for part in path[len(prefix) :].split(os.sep))


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` with ``/`` separators when under it, else unchanged."""
    return under_root(path, root).replace(os.sep, "/")
