"""WebSocket rows of the fault matrix (appended to ``curlfault._matrix.CASES``)."""

from __future__ import annotations

from ._matrix import Case

__all__ = ["CASES"]

CASES: tuple[Case, ...] = ()
