"""Start-up time of the ``nrnn`` command: ``--help``, ``--version``, each subcommand's ``--help``.

Each command runs as a fresh subprocess (``python -m nrnn_theory.cli ...``, what the
``nrnn`` console script runs), and its wall time is the median of ``--repeats`` runs,
taken in interleaved rounds so that a load change affects every command alike.

* **reference**: ``python -c "import torch"``, the cost of the one heavy dependency
  (a command that needs torch cannot start faster than this);
* **floor**: ``python -c "pass"``, the interpreter alone (the same ``site`` and
  editable-install start-up every command pays);
* targets (issue 18): ``--help`` and ``--version`` under 0.5 s, any subcommand's
  ``--help`` under 1 s.

It also reports which heavy modules each command imported (``-X importtime`` is the
tool to see why; ``--importtime CMD`` prints the slowest imports of one command).

Run: ``python benchmarks/bench_startup.py`` (``--quick``: one round).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _timing import machine_line


COMMANDS = ("demo", "train", "margins", "robustness", "analyse", "certify", "reproduce")
TARGETS = {"--help": 0.5, "--version": 0.5}
SUB_TARGET = 1.0
HEAVY = ("torch", "numpy", "scipy", "sympy", "matplotlib")


def cases() -> dict[str, list[str]]:
    py = [sys.executable]
    out = {
        "python (interpreter alone)": [*py, "-c", "pass"],
        'python -c "import torch"': [*py, "-c", "import torch"],
        "nrnn --version": [*py, "-m", "nrnn_theory.cli", "--version"],
        "nrnn --help": [*py, "-m", "nrnn_theory.cli", "--help"],
    }
    for name in COMMANDS:
        out[f"nrnn {name} --help"] = [*py, "-m", "nrnn_theory.cli", name, "--help"]
    return out


def heavy_imports(cmd: list[str]) -> list[str]:
    """Heavy modules imported by the command (read from ``-X importtime``)."""
    res = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=False
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if "|" in line}
    return [m for m in HEAVY if m in names]


def slowest_imports(cmd: list[str], n: int = 15) -> str:
    res = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=False
    )
    rows = []
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:") :].split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), name.rstrip()))
    rows.sort(reverse=True)
    return "\n".join(f"{us / 1e6:8.3f} s  {name}" for us, name in rows[:n])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds (median kept)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--importtime", metavar="CMD", help="e.g. 'train --help': top imports")
    args = parser.parse_args(argv)
    if args.importtime:
        cmd = [sys.executable, "-m", "nrnn_theory.cli", *args.importtime.split()]
        print(slowest_imports(cmd))
        return 0
    rounds = 1 if args.quick else args.repeats
    env = dict(os.environ)
    print(machine_line())
    todo = cases()
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(rounds):
        for name, cmd in todo.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, env=env)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    floor = med["python (interpreter alone)"]
    ref = med['python -c "import torch"']
    print(
        f"{'command':<34} {'median s':>9} {'/ floor':>8} {'/ torch':>8} {'target':>7} "
        f"{'met':>4}  heavy imports"
    )
    for name, cmd in todo.items():
        target = None
        if name.startswith("nrnn "):
            flag = name.split()[-1] if len(name.split()) == 2 else None
            target = TARGETS.get(flag, SUB_TARGET) if flag else SUB_TARGET
        met = "-" if target is None else ("yes" if med[name] < target else "no")
        tgt = "-" if target is None else f"{target:.1f}"
        heavy = ", ".join(heavy_imports(cmd)) or "none"
        print(
            f"{name:<34} {med[name]:>9.3f} {med[name] / floor:>8.2f} {med[name] / ref:>8.2f} "
            f"{tgt:>7} {met:>4}  {heavy}"
        )
    print(f"({rounds} interleaved rounds; floor = the interpreter alone, torch = import torch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
