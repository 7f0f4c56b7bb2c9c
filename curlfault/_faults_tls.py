"""TLS faults: part of the public ``curlfault.faults`` namespace (re-exported there)."""

from __future__ import annotations

__all__: list[str] = []
