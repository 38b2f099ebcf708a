"""End-to-end wall time of ``nrnn reproduce`` with 1 and with 2 Dask workers (issue 13).

Each run is a fresh ``python -m nrnn_theory.cli reproduce`` subprocess in a new output
folder, timed from start to exit (start-up, the jobs, figures and report):

* **1 worker**: ``--executor serial`` (every job in the command's process, one torch
  thread per job: the reference);
* **2 workers**: ``--workers 2`` (the embedded local cluster, one torch thread each);
* the ratio of the two, per preset; targets (issue 13): >= 1.7x on 2 cores, and the
  ``quick`` preset under 10 minutes end to end.

The two settings alternate (1, 2, 1, 2, ...) over ``--repeats`` rounds and the ratio is
the median of the per-round ratios, so a load change moves both sides together.

Run: ``python benchmarks/bench_reproduce.py`` (smoke and quick presets, about 15 minutes
on a quiet 2-core machine); ``--smoke``: the smoke preset only, one round;
``--preset quick``: that preset only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import machine_line


SETTINGS = {"1 worker": ["--executor", "serial"], "2 workers": ["--workers", "2"]}


def run_once(preset: str, options: list[str], folder: Path) -> float:
    """Wall seconds of one reproduction in a new folder under ``folder``."""
    out = Path(tempfile.mkdtemp(dir=folder)) / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nrnn_theory.cli", "reproduce", "--preset", preset]
    cmd += ["--out", str(out), "--quiet", *options]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="smoke preset, one round")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 1)")
    parser.add_argument(
        "--preset", action="append", default=None, help="these presets only (repeat)"
    )
    args = parser.parse_args(argv)
    presets = ("smoke",) if args.smoke else tuple(args.preset or ("smoke", "quick"))
    repeats = args.repeats or 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        for preset in presets:
            times: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(repeats):
                for name, options in SETTINGS.items():
                    times[name].append(run_once(preset, options, Path(folder)))
            ratios = [a / b for a, b in zip(times["1 worker"], times["2 workers"], strict=True)]
            one = statistics.median(times["1 worker"])
            two = statistics.median(times["2 workers"])
            ratio = statistics.median(ratios)
            print(
                f"{preset:>6}: 1 worker {one:7.1f} s   2 workers {two:7.1f} s   "
                f"speed-up {ratio:4.2f}x (target >= 1.7x)"
                + (
                    f"   quick <= 600 s: {'yes' if two <= 600 else 'NO'}"
                    if preset == "quick"
                    else ""
                )
            )
    print(machine_line())


if __name__ == "__main__":
    main()
