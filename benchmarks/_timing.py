"""Interleaved timing: every case runs one batch per round, in a rotating order.

On a shared, noisy machine a slow minute hurts every row alike when the rows take turns, so
ratios between rows stay meaningful even when absolute times drift. Each operation is timed on
its own (``perf_counter_ns``), so medians and p90s are per operation.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field


class Case:
    """One benchmarked operation. Subclasses set ``key``/``label``/``batch`` and define ``op``.

    ``setup``/``teardown`` run once (servers); ``begin``/``end`` run around every batch,
    untimed (a fresh network, a warm keep-alive connection); ``op`` is timed.
    """

    key = ""
    label = ""
    batch = 50
    group = "curlfault"  # floor | curlfault | peer

    def setup(self) -> None:
        pass

    def begin(self) -> None:
        pass

    def op(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        pass

    def teardown(self) -> None:
        pass


@dataclass
class Timings:
    rounds: dict[str, list[list[int]]] = field(default_factory=dict)  # ns per op, per round
    seconds: float = 0.0

    def samples(self, key: str) -> list[int]:
        return [ns for batch in self.rounds[key] for ns in batch]


def run_interleaved(
    cases: list[Case], rounds: int, scale: float = 1.0, verbose: bool = True
) -> Timings:
    """Warm every case up with one batch, then ``rounds`` rounds of one batch per case."""
    result = Timings({c.key: [] for c in cases})
    started = time.monotonic()
    set_up: list[Case] = []
    try:
        for case in cases:
            case.setup()
            set_up.append(case)
        for r in range(-1, rounds):  # round -1 is the warm-up, not recorded
            shift = r % len(cases)
            order = cases[shift:] + cases[:shift]
            for case in order:
                n = max(3, int(case.batch * scale))
                case.begin()
                samples: list[int] = []
                try:
                    clock = time.perf_counter_ns
                    op = case.op
                    for _ in range(n):
                        t0 = clock()
                        op()
                        samples.append(clock() - t0)
                finally:
                    case.end()
                if r >= 0:
                    result.rounds[case.key].append(samples)
                gc.collect()  # garbage of one row is not collected on the next row's clock
            if verbose:
                print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for case in reversed(set_up):
            case.teardown()
    result.seconds = time.monotonic() - started
    return result
