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


def unused_declarations(endpoints: list[Endpoint]) -> list[str]:
    """One line per endpoint or route with something declared and never used."""
    out: list[str] = []
    for ep in endpoints:
        where = f"{ep.host}:{'*' if ep.port is None else ep.port}"
        sequences: dict[str | None, Any] = getattr(ep, "_faults", None) or {}
        for family, seq in sequences.items():
            left = [(i, f) for i, f in enumerate(seq.faults) if i >= seq.taken and f is not None]
            if left:
                made = _count(seq.taken, "connection")
                if family is not None:
                    made += f" over {family}"
                listed = ", ".join(f"#{i + 1} {f!r}" for i, f in left)
                out.append(
                    f"{where}: connection fault{_s(left)} never taken: {listed} (the client "
                    f"made {made} since they were declared)"
                )
        for route in getattr(ep, "routes", ()):
            line = _unused_steps(where, route)
            if line:
                out.append(line)
    return out


def _unused_steps(where: str, route: Route) -> str:
    with route._lock:
        steps = route.steps
        reached = len(route.requests) - route._cleared_at
    if not steps or reached >= len(steps):
        return ""  # nothing declared (a cleared route), or every step served (the last repeats)
    name = f"{where} {route.method} {route.path}"
    if reached == 0:
        declared = ", ".join(_describe(s) for s in steps)
        return f"{name}: never requested (declared: {declared})"
    listed = ", ".join(f"#{i + 1} {_describe(s)}" for i, s in enumerate(steps) if i >= reached)
    left = steps[reached:]
    return (
        f"{name}: step{_s(left)} never reached: {listed} (the route answered "
        f"{_count(reached, 'request')})"
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
