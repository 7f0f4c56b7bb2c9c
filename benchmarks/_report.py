"""Turning measurements into the targets table, the detail tables and the chart."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from _common import median, p90, quantile
from _timing import Timings


@dataclass
class Target:
    """``value`` compared with ``limit``: at most (``"max"``) or at least (``"min"``)."""

    text: str
    limit: float
    sense: str = "max"

    def check(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return "n/a"
        ok = value <= self.limit if self.sense == "max" else value >= self.limit
        return "PASS" if ok else "MISS"


@dataclass
class Line:
    """One request row: per-operation times and the ratio to its floor."""

    key: str
    label: str
    group: str
    median_us: float
    p90_us: float
    n: int
    floor: str = ""
    ratio: float = float("nan")
    spread: tuple[float, float] = (float("nan"), float("nan"))  # p10-p90 of per-round ratios
    target: Target | None = None
    value: float = float("nan")  # what the target is checked against (usually the ratio)
    # 90% bootstrap interval of ``ratio`` over rounds (rows with a target only)
    interval: tuple[float, float] = (float("nan"), float("nan"))

    def interval_text(self, *, percent: bool = False) -> str:
        """The ratio's 90% interval as text, and whether it straddles the target's limit."""
        lo, hi = self.interval
        if math.isnan(lo):
            return ""
        if percent:
            text = f"90% interval {(lo - 1) * 100:+.0f}% to {(hi - 1) * 100:+.0f}%"
        else:
            text = f"90% interval {lo:.2f}-{hi:.2f}x"
        if self.target is not None and lo <= self.target.limit <= hi:
            text += ", which straddles the limit: this verdict is within the run's noise"
        return text

    @property
    def result(self) -> str:
        return self.target.check(self.value) if self.target is not None else ""


@dataclass
class Check:
    """One line of the targets table."""

    what: str
    measured: str
    target: str
    result: str


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


def request_line(
    t: Timings, key: str, label: str, group: str, floor: str = "", target: Target | None = None
) -> Line:
    values = t.samples(key)
    line = Line(key, label, group, median(values) / 1000, p90(values) / 1000, len(values))
    if floor:
        line.floor = floor
        line.ratio = median(values) / median(t.samples(floor))
        per_round = [
            median(a) / median(b) for a, b in zip(t.rounds[key], t.rounds[floor], strict=True)
        ]
        line.spread = (quantile(per_round, 0.1), quantile(per_round, 0.9))
        line.value = line.ratio
        if target is not None:
            line.interval = ratio_interval(t.rounds[key], t.rounds[floor])
    line.target = target
    return line


BOOTSTRAP_SEED = 20261121
BOOTSTRAP_N = 300


def ratio_interval(
    rows: list[list[int]], floors: list[list[int]], n: int = BOOTSTRAP_N
) -> tuple[float, float]:
    """The 5th and 95th percentiles of the ratio of medians over ``n`` bootstrap resamples
    of whole rounds (a round of the row and the same round of its floor stay together, as
    they were measured side by side). Seeded: the same timings give the same interval."""
    rng = random.Random(BOOTSTRAP_SEED)
    count = len(rows)
    ratios = []
    for _ in range(n):
        picked = [rng.randrange(count) for _ in range(count)]
        a = [ns for i in picked for ns in rows[i]]
        b = [ns for i in picked for ns in floors[i]]
        ratios.append(median(a) / median(b))
    return quantile(ratios, 0.05), quantile(ratios, 0.95)


def fmt_us(us: float) -> str:
    if math.isnan(us):
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} us" if us >= 10 else f"{us:.1f} us"


def fmt_x(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


def requests_table(lines: list[Line]) -> str:
    out = [
        "| row | median | p90 | floor | ratio to floor | per-round ratio p10-p90 | target "
        "| result |",
        "|---|---:|---:|---|---:|---:|---|---|",
    ]
    for ln in lines:
        spread = "-" if math.isnan(ln.spread[0]) else f"{ln.spread[0]:.2f}-{ln.spread[1]:.2f}"
        target = ln.target.text if ln.target is not None else ""
        result = f"**{ln.result}**" if ln.result else ""
        out.append(
            f"| {ln.label} | {fmt_us(ln.median_us)} | {fmt_us(ln.p90_us)} | "
            f"{ln.floor or '(floor)'} | {fmt_x(ln.ratio)} | {spread} | {target} | {result} |"
        )
    return "\n".join(out)


def checks_table(checks: list[Check]) -> str:
    out = ["| target (issue 6) | measured | limit | result |", "|---|---|---|---|"]
    for c in checks:
        result = f"**{c.result}**" if c.result.startswith(("PASS", "MISS")) else c.result
        out.append(f"| {c.what} | {c.measured} | {c.target} | {result} |")
    return "\n".join(out)


def chart(bars: list[tuple[str, float, float | None, str]], path: str, title: str) -> None:
    """A horizontal bar chart of ratios: (label, ratio, target or None, colour key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "PASS": "#2e8b57",
        "MISS": "#c0392b",
        "peer": "#9e9e9e",
        "floor": "#7fa7d0",
        "info": "#e0a030",
    }
    fig_h = 1.0 + 0.42 * len(bars)
    fig, ax = plt.subplots(figsize=(10, fig_h), dpi=110)
    ys = list(range(len(bars)))[::-1]
    for y, (_label, ratio, target, colour) in zip(ys, bars, strict=True):
        ax.barh(y, ratio, color=colours[colour], height=0.65)
        ax.text(ratio * 1.04, y, f"{ratio:.2f}x", va="center", fontsize=8)
        if target is not None:
            ax.plot([target, target], [y - 0.42, y + 0.42], color="black", linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    top = max(b[1] for b in bars)
    ax.set_xlim(0.5, top * 2.2)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [t for t in (0.5, 1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200) if t <= top * 2.2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="#444444", linewidth=0.8, linestyle="--")
    ax.set_xlabel("median time / median of the row's floor (log scale; 1.0 = the floor)")
    ax.set_title(title, fontsize=10)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color=colours["PASS"], label="curlfault, meets its target"),
            Patch(color=colours["MISS"], label="curlfault, misses its target"),
            Patch(color=colours["info"], label="curlfault, no target (context)"),
            Patch(color=colours["floor"], label="stricter floor (no thread)"),
            Patch(color=colours["peer"], label="peer server"),
            Line2D([0], [0], color="black", linewidth=2, label="target"),
        ],
        loc="lower right",
        fontsize=7,
    )
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def as_dict(report: Report) -> dict[str, Any]:
    return {
        "lines": [
            {
                "key": ln.key,
                "label": ln.label,
                "median_us": ln.median_us,
                "p90_us": ln.p90_us,
                "n": ln.n,
                "floor": ln.floor,
                "ratio": ln.ratio,
                "result": ln.result,
            }
            for ln in report.lines
        ],
        "checks": [c.__dict__ for c in report.checks],
    }
