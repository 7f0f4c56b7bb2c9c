"""Rendering of the fault matrix: text, Markdown and JSON, and the docs/faults.md table."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import pycurl

from ._errors import UsageError
from ._matrix import CASES, Case, Row, curlcode_name

__all__ = ["FORMATS", "docs_table", "header_line", "render"]

FORMATS = ("text", "markdown", "json")


def docs_table(cases: Sequence[Case] = CASES) -> str:
    """The cases as the markdown table of docs/faults.md (documented codes, not measured)."""
    lines = ["| fault | CURLcode | notes |", "|---|---|---|"]
    for case in cases:
        notes = case.note
        if case.problem is not None:
            extra = f"`check()` raises `{case.problem.__name__}`"
            notes = f"{notes}; {extra}" if notes else extra
        name = curlcode_name(case.expected)
        lines.append(f"| `{case.label}` | {case.expected} `{name}` | {notes} |")
    return "\n".join(lines)


# rendering ---------------------------------------------------------------------------------
def header_line() -> str:
    from . import __version__

    return f"curlfault {__version__} fault matrix on {pycurl.version}"


def _code(code: int | None) -> str:
    if code is None:
        return "error"
    name = curlcode_name(code)
    return f"{code} {name}" if name else str(code)


def _transport(row: Row) -> str:
    # Say so when the fake used another transport than the one asked for (reset needs TCP).
    served = [t for t in row.served_over if t != row.transport]
    return f"{row.transport}->{'+'.join(served)}" if served else row.transport


def _cells(row: Row) -> list[str]:
    return [
        row.label,
        _transport(row),
        _code(row.expected),
        _code(row.observed),
        f"{row.ms:.1f}",
        "ok" if row.ledger_ok else "LEAK",
        "+".join(row.problems) or "-",
        "OK" if row.ok else "MISMATCH",
        row.message,
    ]


_COLUMNS = [
    "fault",
    "transport",
    "expected",
    "observed",
    "ms",
    "ledger",
    "check",
    "result",
    "libcurl message",
]


def _summary(rows: Sequence[Row]) -> str:
    bad = sum(not r.ok for r in rows)
    return f"{len(rows)} rows: {len(rows) - bad} OK, {bad} MISMATCH"


def _notes(rows: Sequence[Row]) -> list[str]:
    """One "label: note" line per case that has a note, in row order."""
    notes = dict.fromkeys(f"{r.label}: {r.note}" for r in rows if r.note)
    return ["notes:", *(f"  {n}" for n in notes), ""] if notes else []


def render_text(rows: Sequence[Row]) -> str:
    """An aligned plain-text table with a header line and a summary."""
    table = [_COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS) - 1)]
    lines = [header_line(), ""]
    for line in table:
        padded = [cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    lines += ["", *_notes(rows), _summary(rows)]
    return "\n".join(lines)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def render_markdown(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table, for docs and CI summaries."""
    lines = [f"**{header_line()}**", ""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in _COLUMNS) + "|")
    for row in rows:
        cells = _cells(row)
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    notes = [f"- {_md(n.strip())}" if n else "" for n in _notes(rows)[1:]]
    lines += ["", *notes, _summary(rows)]
    return "\n".join(lines)


def render_json(rows: Sequence[Row]) -> str:
    """Versions, the overall verdict and every row as a JSON document."""
    from . import __version__

    doc = {
        "curlfault": __version__,
        "pycurl": pycurl.version,
        "libcurl": pycurl.version_info()[1],
        "python": sys.version.split()[0],
        "ok": all(r.ok for r in rows),
        "rows": [r.to_dict() for r in rows],
    }
    return json.dumps(doc, indent=2)


def render(rows: Sequence[Row], fmt: str = "text") -> str:
    """``rows`` as "text", "markdown" or "json"."""
    if fmt == "text":
        return render_text(rows)
    if fmt == "markdown":
        return render_markdown(rows)
    if fmt == "json":
        return render_json(rows)
    raise UsageError(f"format {fmt!r} is not known; use one of {', '.join(FORMATS)}")
