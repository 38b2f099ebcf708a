"""Train the model zoo on a task and compute every theory quantity of each model.

Writes ``<out>/results/<task>/<model>/seed<s>/{train,analysis}`` (verified .json +
.npz with config, package version and git revision) and the checkpoints under
``<out>/runs``; finished models are skipped on a rerun with ``--resume``. The same
stage runs inside ``nrnn reproduce``.

    python analysis/zoo.py --preset quick --out reproduction
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from nrnn_theory.experiments.pipeline import open_run, run_zoo
from nrnn_theory.experiments.zoo import PRESETS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=list(PRESETS))
    parser.add_argument("--smoke", action="store_true", help="the seconds-long smoke preset")
    parser.add_argument("--task", action="append", default=None, help="task(s) to use")
    parser.add_argument("--seed", type=int, action="append", default=None, help="seed(s)")
    parser.add_argument("--out", default="reproduction", help="output folder")
    parser.add_argument("--resume", action="store_true", help="reuse what --out holds")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    preset = PRESETS["smoke" if args.smoke else args.preset]
    if args.task:
        preset = preset.with_tasks(tuple(args.task))
    if args.seed:
        preset = dataclasses.replace(preset, seeds=tuple(args.seed))
    open_run(args.out, preset, resume=args.resume)
    run_zoo(preset, out=args.out, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
