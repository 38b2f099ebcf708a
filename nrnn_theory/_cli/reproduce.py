"""Reproduce the paper's claims end to end: train the model zoo, compute every theory
quantity, run the theory-only studies, draw the figures and write a report.

The report (OUT/report.md, and OUT/report.html with the figures embedded, viewable
offline) lists each claim of the paper with its measured evidence, effect size,
confidence interval over seeds and a computed verdict (supported / not supported /
inconclusive at this scale).

Presets (expected wall time):
  smoke     seconds; for tests
  quick     sklearn digits (T = 64), 8 models x 4 seeds: about 5 minutes on a 2-core CPU
  standard  + MNIST-5k pixels, permuted pixels, a UCR task: about 2 hours on a 2-core CPU
  full      full pixel MNIST / permuted MNIST / ECG5000 from local files (--data-root);
            for a GPU machine (several hours)

An interrupted run continues with --resume (finished parts are not recomputed).

Examples:

  nrnn reproduce
  nrnn reproduce --preset standard --out runs/standard
  nrnn reproduce --out runs/standard --preset standard --resume
"""

from __future__ import annotations

import argparse


HELP = "train the zoo, compute every theory quantity, draw figures, write the report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory.experiments.zoo import PRESETS

    parser.add_argument("--preset", default="quick", choices=list(PRESETS), help="run size")
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
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or chatter")


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory._cli._common import cli_device
    from nrnn_theory.experiments.pipeline import reproduce

    if args.threads < 0:
        raise ValueError(f"--threads: expected >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = reproduce(
        args.preset,
        tasks=args.task,
        out=args.out,
        resume=args.resume,
        data_root=args.data_root,
        device=cli_device(args.device),
        progress=not args.quiet,
        log=(lambda _msg: None) if args.quiet else print,
    )
    width = max(len(k) for k in result.verdicts)
    print("claims:")
    for key, verdict in result.verdicts.items():
        print(f"  {key:<{width}}  {verdict}")
    print(f"report: {result.report_md}")
    print(f"        {result.report_html}")
    return 0
