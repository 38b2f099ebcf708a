"""Reproduce the paper's claims end to end: train the model zoo, compute every theory
quantity, run the theory-only studies, draw the figures and write a report.

The report (OUT/report.md, and OUT/report.html with the figures embedded, viewable
offline) lists each claim of the paper with its measured evidence, effect size,
confidence interval over seeds and a computed verdict (supported / not supported /
inconclusive at this scale).

Presets (expected wall time):
  smoke     seconds; for tests
  quick     sklearn digits (T = 64), 4 core models x 3 seeds, 100 epochs: about 9 minutes
            on a 2-core CPU
  standard  digits, all 9 zoo models x 3 seeds, 150 epochs: about 45 minutes on a 2-core
            CPU (MNIST-5k and the UCR tasks run with --task)
  full      full pixel MNIST / permuted MNIST / ECG5000 from local files (--data-root);
            for a GPU machine (several hours)

The zoo members and the theory studies run as Dask tasks: by default on an embedded
local cluster of worker processes (one per core, one torch thread each), on a running
Dask scheduler with --scheduler ADDRESS (the output folder must then be on storage every
worker sees), or in this process with --executor serial (or --workers 1). Results are
the same, bit for bit, on CPU. A failed task does not stop the others; the exit status
is 1 and the report names it. Per-task lines go to OUT/reproduce.log.

An interrupted run continues with --resume (finished parts are not recomputed).

Examples:

  nrnn reproduce
  nrnn reproduce --preset standard --out runs/standard
  nrnn reproduce --out runs/standard --preset standard --resume
  nrnn reproduce --preset standard --scheduler tcp://head-node:8786 --out /shared/std
"""

from __future__ import annotations

import argparse


HELP = "train the zoo, compute every theory quantity, draw figures, write the report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory._vocabulary import PRESET_NAMES

    parser.add_argument("--preset", default="quick", choices=list(PRESET_NAMES), help="run size")
    parser.add_argument(
        "--task", action="append", default=None, help="task(s) instead of the preset's (repeat)"
    )
    parser.add_argument("--out", default="reproduction", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue a run in --out")
    parser.add_argument(
        "--data-root", default=None, help="folder with the files of local-path tasks"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "serial"),
        help="local: an embedded Dask cluster of worker processes (default); serial: "
        "everything in this process",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the local cluster (default: cores / threads per worker)",
    )
    parser.add_argument(
        "--threads-per-worker",
        "--threads",
        dest="threads_per_worker",
        type=int,
        default=1,
        help="torch threads of each task, on every executor (default 1)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask scheduler at ADDRESS (e.g. tcp://host:8786) instead",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the local cluster's Dask dashboard (needs bokeh)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or chatter")


def run(args: argparse.Namespace) -> int:
    import sys

    from nrnn_theory._cli._common import cli_device
    from nrnn_theory.experiments.pipeline import reproduce

    if args.threads_per_worker < 1:
        raise ValueError(f"--threads-per-worker: expected >= 1, got {args.threads_per_worker}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: expected >= 1, got {args.workers}")
    result = reproduce(
        args.preset,
        tasks=args.task,
        out=args.out,
        resume=args.resume,
        data_root=args.data_root,
        device=cli_device(args.device),
        progress=not args.quiet,
        log=(lambda _msg: None) if args.quiet else print,
        executor=args.executor,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        scheduler=args.scheduler,
        dashboard=args.dashboard,
    )
    width = max(len(k) for k in result.verdicts)
    print("claims:")
    for key, verdict in result.verdicts.items():
        print(f"  {key:<{width}}  {verdict}")
    print(f"report: {result.report_md}")
    print(f"        {result.report_html}")
    if result.failures:
        listed = "; ".join(f"{k} ({v})" for k, v in result.failures.items())
        n = len(result.failures)
        print(f"{n} of {result.tasks} tasks failed: {listed}", file=sys.stderr)
        return 1
    return 0
