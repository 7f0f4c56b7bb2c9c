"""What one test's use of curlfault costs, part by part, without pytest.

    python benchmarks/fixture_parts.py            # 3000 rounds, medians in us
    python benchmarks/fixture_parts.py --rounds 500

Each round does what a test with the ``curlfault`` fixture, one endpoint, one route and one
GET does: ``FakeNetwork(loop=shared)``, ``intercept()`` entered, ``net.http(...)``, a route
answered with a *new* ``Response`` (each test declares its routes anew), one GET on a fresh
handle, ``intercept()`` left with ``check()``, ``close()``. The shared loop is running, as
the plugin's session loop is after the first test. Read it next to the per-test row of
``run.py``, which adds pytest's own cost of the fixture.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import pycurl

from curlfault import FakeNetwork
from curlfault._loop import Loop

PARTS = ("network", "intercept", "http()", "route", "GET", "check", "close")


def _get(url: str) -> None:
    c = pycurl.Curl()
    buf = io.BytesIO()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEDATA, buf)
    c.setopt(pycurl.TIMEOUT, 10)
    try:
        c.perform()
    finally:
        c.close()
    if buf.getvalue() != b"hello":
        raise RuntimeError(f"unexpected body {buf.getvalue()!r}")


def measure(rounds: int) -> dict[str, float]:
    """Median microseconds of each part over ``rounds`` rounds."""
    samples: dict[str, list[int]] = {p: [] for p in PARTS}
    clock = time.perf_counter_ns
    loop = Loop(name="fixture-parts")
    loop.start()
    try:
        for _ in range(rounds):
            t0 = clock()
            net = FakeNetwork(loop=loop)
            t1 = clock()
            routing = net.intercept()
            routing.__enter__()
            t2 = clock()
            api = net.http("api.test")
            t3 = clock()
            api.get("/").respond(200, body=b"hello")
            t4 = clock()
            try:
                _get("http://api.test/")
            finally:
                t5 = clock()
                routing.__exit__(None, None, None)
            net.check()
            t6 = clock()
            net.close()
            t7 = clock()
            marks = (t0, t1, t2, t3, t4, t5, t6, t7)
            for part, start, end in zip(PARTS, marks, marks[1:], strict=False):
                samples[part].append(end - start)
    finally:
        loop.stop()
    return {p: statistics.median(v) / 1000 for p, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    medians = measure(args.rounds)
    for part, us in medians.items():
        print(f"{part:10} {us:8.1f} us")
    print(f"{'sum':10} {sum(medians.values()):8.1f} us")


if __name__ == "__main__":
    main()
