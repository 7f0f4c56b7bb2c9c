"""What a test declared that nothing used: ``FakeNetwork.unused()`` and ``check(all_used=True)``.

A connection fault that no connection took, or a route step that no request reached, is not
an error by itself (a client may give up early, a shared fixture may declare more than one
test needs), so ``check()`` says nothing of them unless asked. A test that reproduces a
retry bug asks: "refuse the first three connections" is only a reproduction if the client
made the three connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._endpoints import Endpoint
    from ._http import Route, _Step

__all__ = ["unused_declarations"]


Item = tuple[Any, ...]


def unused_declarations(endpoints: list[Endpoint]) -> list[tuple[frozenset[Item], str]]:
    """``(items, line)`` per endpoint, route or WebSocket route with something declared and
    never used. ``items`` name the declarations the line lists (a fault, a step), not the
    counts in it, so that ``check(all_used=True)`` raises a line only for one not raised
    before."""
    out: list[tuple[frozenset[Item], str]] = []
    for ep in endpoints:
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        where = f"{host}:{'*' if ep.port is None else ep.port}"
        sequences: dict[str | None, Any] = getattr(ep, "_faults", None) or {}
        for family, seq in sequences.items():
            left = [(i, f) for i, f in enumerate(seq.faults) if i >= seq.taken and f is not None]
            if left:
                made = _count(seq.taken, "connection")
                if family is not None:
                    made += f" over {family}"
                listed = ", ".join(f"#{i + 1} {f!r}" for i, f in left)
                out.append(
                    (
                        frozenset(("fault", id(seq), i) for i, _ in left),
                        f"{where}: connection fault{_s(left)} never taken: {listed} (the client "
                        f"made {made} since they were declared)",
                    )
                )
        for route in getattr(ep, "routes", ()):
            item = _unused_steps(where, route)
            if item is not None:
                out.append(item)
        for ws in getattr(ep, "websockets", ()):
            if not ws.requests:
                line = f"{where} WebSocket {ws.path}: never connected"
                out.append((frozenset({("websocket", id(ws))}), line))
    return out


def _unused_steps(where: str, route: Route) -> tuple[frozenset[Item], str] | None:
    with route._lock:
        steps = route.steps
        reached = route._reached
        since_clear = len(route.requests) - route._cleared_at
    if not steps or reached >= len(steps):
        return None  # nothing declared (a cleared route), or every step served
    name = f"{where} {route.method} {route.path}"
    key = frozenset(("step", id(steps), i) for i in range(reached, len(steps)))
    if since_clear == 0:
        declared = ", ".join(_describe(s) for s in steps)
        if route._cleared_at:
            return key, f"{name}: not requested since clear() (declared: {declared})"
        return key, f"{name}: never requested (declared: {declared})"
    listed = ", ".join(f"#{i + 1} {_describe(s)}" for i, s in enumerate(steps) if i >= reached)
    left = steps[reached:]
    return key, (
        f"{name}: step{_s(left)} never reached: {listed} (the route answered "
        f"{_count(since_clear, 'request')})"
    )


def _describe(step: _Step) -> str:
    if step.response is not None:
        fault = step.response.fault
        return f"respond({step.response.status}" + (f", fault={fault!r})" if fault else ")")
    handler = step.handler
    name = getattr(handler, "__qualname__", None)
    return f"handle({name if isinstance(name, str) else repr(handler)})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _s(items: list[Any]) -> str:
    return "" if len(items) == 1 else "s"
