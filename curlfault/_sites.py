"""Where a handle was made: the frames read when a routed or tracked handle is created.

Every handle made under a network or a tracker records the code that made it, so that a
leak or an unexpected connection names the line of the test, the fixture or the helper.
That runs for every handle a suite makes, so the walk reads only each frame's code object
and instruction offset (``Site`` turns them into file names and lines when a report needs
them), and it is written out for the usual depth rather than looped.

A handle made inside an installed library (tornado's client makes its handles five frames
deep) keeps the library's frames and the six after them, so the report still reaches the
code that called the library.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ._ledger import Site

__all__ = ["LIBRARY_FRAMES_MAX", "caller_site", "is_library_file", "own_site"]

# curlfault's own directory: frames in it are skipped (a handle is made for its caller).
_HERE = os.path.dirname(os.path.abspath(__file__))
_getframe = sys._getframe


def caller_site(skip: int = 2, depth: int = 6) -> Site:
    """The first ``depth`` frames outside curlfault, innermost first (a frame walk, cheap).

    Only each frame's code object and instruction offset are read here; ``Site.frames``
    turns them into file names and line numbers when a report needs them. This runs for
    every handle made under a network or a tracker, so the usual depth (6) is walked
    without a loop, and the frames read make the key of a cache of sites: handles are made
    at a few places, again and again, and share one ``Site`` per stack (a site per handle
    would add a few hundred bytes to each). The key holds each code object's identity, not
    the code object: equal code in two files compares equal.
    """
    if depth <= 0:
        return _site_of(())
    frame: Any = _getframe(skip)
    code = frame.f_code
    while code.co_filename.startswith(_HERE):
        frame = frame.f_back
        if frame is None:
            return _site_of(())
        code = frame.f_code
    library = _LIBRARY_FILES.get(code.co_filename)
    if library is None:
        library = _is_library_file(code.co_filename)
    if library:
        depth += _library_frames(frame)
    if depth != 6:
        return _walked_site(frame, depth)
    # A stack that ends first (a thread's) goes on with _END, whose code is None.
    f1 = frame.f_back or _END
    f2 = f1.f_back or _END
    f3 = f2.f_back or _END
    f4 = f3.f_back or _END
    f5 = f4.f_back or _END
    c1, c2, c3, c4, c5 = f1.f_code, f2.f_code, f3.f_code, f4.f_code, f5.f_code
    l0, l1, l2, l3, l4, l5 = (
        frame.f_lasti,
        f1.f_lasti,
        f2.f_lasti,
        f3.f_lasti,
        f4.f_lasti,
        f5.f_lasti,
    )
    key = (id(code), l0, id(c1), l1, id(c2), l2, id(c3), l3, id(c4), l4, id(c5), l5)
    site = _SITES.get(key)
    if site is None:
        raw: tuple[Any, ...] = (code, l0, c1, l1, c2, l2, c3, l3, c4, l4, c5, l5)
        site = _cached(key, raw)  # a stack that ended early ends in (None, -1) pairs
    return site


def own_site(skip: int = 2) -> Site:
    """``caller_site()`` (depth 6) without the cache: a site of its own for one handle.

    For the tracker's handles (``TrackedCurl``), made by the thousand in a tracked suite:
    building the cache key (six ``id()`` calls, a 12-tuple hashed and compared) costs more
    than the frame reads themselves, about 4,000 of the 36,000 instructions tracking adds
    to a fresh handle's transfer. The price is a tuple per handle (about 150 bytes) instead
    of one per stack; fake networks' handles, whose memory per idle connection is a target,
    keep the cache. caller_site's walk is written out again here on purpose: a shared
    helper, or caller_site(cached=False), measured 2,000 more instructions per handle.
    """
    frame: Any = _getframe(skip)
    code = frame.f_code
    while code.co_filename.startswith(_HERE):
        frame = frame.f_back
        if frame is None:
            return _site_of(())
        code = frame.f_code
    library = _LIBRARY_FILES.get(code.co_filename)
    if library is None:
        library = _is_library_file(code.co_filename)
    if library:
        return _walked_site(frame, 6 + _library_frames(frame))
    f1 = frame.f_back or _END
    f2 = f1.f_back or _END
    f3 = f2.f_back or _END
    f4 = f3.f_back or _END
    f5 = f4.f_back or _END
    raw: tuple[Any, ...] = (
        code,
        frame.f_lasti,
        f1.f_code,
        f1.f_lasti,
        f2.f_code,
        f2.f_lasti,
        f3.f_code,
        f3.f_lasti,
        f4.f_code,
        f4.f_lasti,
        f5.f_code,
        f5.f_lasti,
    )
    return _site_of(raw)  # a stack that ended early ends in (None, -1) pairs: Site skips them


class _END:
    """Past the outermost frame: what ``caller_site`` reads there instead of a frame."""

    f_code = None
    f_lasti = -1
    f_back: Any = None


_END.f_back = _END


def _library_prefixes() -> tuple[str, ...]:
    """Where installed packages and the standard library live on this machine."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - an embedded interpreter's stripped site module
        pass
    return tuple(sorted(os.path.join(os.path.abspath(p), "") for p in paths if p))


_LIBRARY_PREFIXES = _library_prefixes()
_LIBRARY_PARTS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
# co_filename -> whether it is a library's (see caller_site): one lookup per handle made.
_LIBRARY_FILES: dict[str, bool] = {}
_LIBRARY_FILES_MAX = 4096
# How many library frames caller_site walks past at most, looking for the code that called
# the library: a deeper stack keeps this many library frames and the next six.
LIBRARY_FRAMES_MAX = 24


def is_library_file(filename: str) -> bool:
    """Whether ``filename`` is an installed package's or the standard library's."""
    library = _LIBRARY_FILES.get(filename)
    return _is_library_file(filename) if library is None else library


def _is_library_file(filename: str) -> bool:
    """Whether ``filename`` is an installed package's or the standard library's (cached)."""
    library = (
        filename.startswith(_LIBRARY_PREFIXES)
        or any(part in filename for part in _LIBRARY_PARTS)
        or filename.startswith("<frozen ")
    )
    if len(_LIBRARY_FILES) >= _LIBRARY_FILES_MAX:
        _LIBRARY_FILES.clear()  # bounded, like the site cache
    _LIBRARY_FILES[filename] = library
    return library


def _library_frames(frame: Any) -> int:
    """How many frames from ``frame`` outward are a library's (at most LIBRARY_FRAMES_MAX).

    A handle made inside a library (tornado's client makes its handles five frames deep)
    would otherwise be recorded with the library's frames only, and a leak report would not
    name the test code that made the client. The library's frames stay in the site: a scope
    pattern such as ``*/tornado/curl_httpclient.py::_curl_create`` still matches.
    """
    n = 0
    while frame is not None and n < LIBRARY_FRAMES_MAX:
        filename = frame.f_code.co_filename
        library = _LIBRARY_FILES.get(filename)
        if library is None:
            library = _is_library_file(filename)
        if not library:
            break
        n += 1
        frame = frame.f_back
    return n


def _walked_site(frame: Any, depth: int) -> Site:
    """``caller_site`` for a depth other than 6: a loop, the same cache."""
    raw: list[Any] = []
    ids: list[int] = []
    while frame is not None and depth > 0:
        code, lasti = frame.f_code, frame.f_lasti
        raw += (code, lasti)
        ids += (id(code), lasti)
        frame = frame.f_back
        depth -= 1
    key = tuple(ids)
    return _SITES.get(key) or _cached(key, tuple(raw))


def _cached(key: tuple[int, ...], raw: tuple[Any, ...]) -> Site:
    if len(_SITES) >= _SITES_MAX:
        # Bounded memory: start over (one step, safe against other threads). A helper that
        # makes handles for test after test sees a new stack in each.
        _SITES.clear()
    # A site keeps its code objects, so the identities in its key are not reused while
    # the key is in the cache. Threads may race here: a site is then made twice, and each
    # is right for the stack it is returned for.
    site = _SITES[key] = _site_of(raw)
    return site


_site_of = Site.capture
# (id(code), f_lasti, ...) of a stack, innermost first -> its site.
_SITES: dict[tuple[int, ...], Site] = {}
_SITES_MAX = 2048
