"""Train a noisy RNN or a baseline on an offline sequence-classification task.

Examples:

  nrnn train --task digits --model nrnn --add 0.02 --mult 0.02 --epochs 40 --out runs/nrnn-digits
  nrnn train --task digits --model lipschitz --dt 0.03 --lr 0.003 --out runs/lip-digits
  nrnn train --resume runs/nrnn-digits --epochs 60
  nrnn train --task digits --model nrnn --add 0.02 --explicit-reg 1 --reg-examples 16 --out runs/reg
  torchrun --nproc_per_node=2 -m nrnn_theory.cli train --task mnist5k --out runs/ddp

The noise options use the vocabulary of the authors' code (docs/theory/conventions.md): with
--convention paper_code (the default) --add is add_noise (a) and --mult is mult_noise
(mu); with --convention sde they are the Euler-Maruyama levels eps*sigma1 and
eps*sigma2. The remaining defaults are the authors' driver defaults (docs/theory/experiments.md).
They are those of fit() (one set, in FitSettings); the learning rate decays x0.1 at
floor(0.9 * epochs) unless --lr-decay-epochs says otherwise (the authors' 90 of 100).
With a validation split the run keeps its best validation epoch in checkpoints/best
and ends with its weights (--keep-last: the last epoch's); --patience N stops after N
epochs without a better validation accuracy. A learned step (--learn-step) that ends
with entries <= 0 is reported with a warning (docs/theory/conventions.md).

--explicit-reg LAMBDA trains a noise-free model with LAMBDA times the exact small-noise
regularizer of docs/theory/regularizer.md instead of injecting the noise: the noise options then
describe the noise the regularizer stands for, the model itself has no noise (in train
mode too; its config records noise = null), and the checkpoints record LAMBDA, K and the
regularizer's noise under fit.penalty. --reg-examples K evaluates the regularizer on K
examples of each (shuffled) batch, an unbiased estimate at a fraction of the cost.
Prints the final clean test accuracy; --out saves history.jsonl, checkpoints and
summary.json, and never overwrites an existing run (use --resume DIR to continue one).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from nrnn_theory._cli._common import (
    add_noise_options,
    add_output_options,
    apply_run_options,
    cli_device,
    emit_json,
    noise_from_options,
)


if TYPE_CHECKING:
    from nrnn_theory._types import NoiseSpec


HELP = "train a noisy RNN or a baseline (digits, MNIST, UCR/UEA, ...)"

_NRNN_FAMILY = ("nrnn", "lipschitz", "antisymmetric")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--task",
        default="digits",
        help="task name: digits, mnist5k, pmnist5k, mnist, pmnist, fashion_mnist, ecg5000, "
        "cifar10_noise, or ucr:<Problem> (e.g. ucr:GunPoint, ucr:BasicMotions)",
    )
    data.add_argument(
        "--data-root", default=None, help="folder with the files of a local-path task"
    )
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    data.add_argument(
        "--val-fraction", type=float, default=0.1, help="fraction of each class for validation"
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="fraction of each class for testing (tasks without an official test split)",
    )
    data.add_argument(
        "--pixels-per-step",
        type=int,
        default=None,
        help="image tasks: pixels per time step (unset: 1)",
    )
    data.add_argument(
        "--permutation-seed",
        type=int,
        default=None,
        help="permuted tasks: seed of the pixel permutation (unset: 12008, the authors')",
    )
    data.add_argument(
        "--binary", action="store_true", help="ecg5000: normal vs abnormal heartbeats"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="nrnn",
        choices=["nrnn", "lipschitz", "antisymmetric", "cornn", "lstm", "gru"],
        help="architecture",
    )
    model.add_argument("--hidden", type=int, default=64, help="hidden units H")
    model.add_argument("--dt", type=float, default=0.1, help="time step (nrnn family and cornn)")
    model.add_argument(
        "--beta", type=float, default=0.75, help="nrnn/lipschitz: symmetric (0) to skew (1)"
    )
    model.add_argument(
        "--gamma",
        type=float,
        default=0.001,
        help="nrnn/lipschitz: gamma_A = gamma_W; antisymmetric: its gamma",
    )
    model.add_argument("--gamma-A", type=float, default=None, help="override gamma for A")
    model.add_argument("--gamma-W", type=float, default=None, help="override gamma for W")
    model.add_argument(
        "--alpha", type=float, default=1.0, help="nrnn/lipschitz: weight of the linear term"
    )
    model.add_argument(
        "--init-std", type=float, default=0.1, help="std * H of the entries of M_A and M_W"
    )
    model.add_argument(
        "--learn-step",
        action="store_true",
        help="train a per-unit step initialised to dt (the authors' solver='noisy')",
    )
    model.add_argument("--cornn-gamma", type=float, default=1.0, help="cornn: oscillator stiffness")
    model.add_argument("--cornn-epsilon", type=float, default=1.0, help="cornn: damping")
    model.add_argument("--layers", type=int, default=1, help="lstm/gru: stacked layers")
    model.add_argument(
        "--dtype", default="float32", choices=["float32", "float64"], help="parameter dtype"
    )

    add_noise_options(parser, from_checkpoint=False)

    reg = parser.add_argument_group("explicit regularizer (nrnn, lipschitz, antisymmetric)")
    reg.add_argument(
        "--explicit-reg",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="train noise-free with LAMBDA >= 0 times the exact regularizer of the noise given "
        "by --add/--mult/--convention/--noise-structure, instead of injecting that noise "
        "(unset: inject the noise)",
    )
    reg.add_argument(
        "--reg-examples",
        type=int,
        default=None,
        metavar="K",
        help="with --explicit-reg: examples of each batch the regularizer is computed on "
        "(unset: the whole batch)",
    )

    train = parser.add_argument_group("training")
    train.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (unset: 35, or the stored number on --resume)",
    )
    # Unset options take FitSettings' defaults (one set shared with fit();
    # docs/theory/experiments.md).
    train.add_argument("--batch-size", type=int, default=None, help="global minibatch size (128)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (0.01)")
    train.add_argument(
        "--optimizer",
        default=None,
        choices=["adam", "adamw", "sgd", "rmsprop"],
        help="optimizer (adam)",
    )
    train.add_argument("--weight-decay", type=float, default=None, help="weight decay (0)")
    train.add_argument("--momentum", type=float, default=None, help="sgd/rmsprop momentum (0)")
    train.add_argument(
        "--lr-decay-epochs",
        type=int,
        nargs="*",
        default=None,
        help="epochs (0-based) from which the learning rate is multiplied by --lr-decay "
        "(unset: floor(0.9 * epochs), the authors' 90 of 100; give none for no decay)",
    )
    train.add_argument(
        "--lr-decay", type=float, default=None, help="learning-rate decay factor (0.1)"
    )
    train.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the initialisation, shuffling and noise"
    )
    train.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    train.add_argument(
        "--eval-batch-size", type=int, default=None, help="evaluation batch size (1000)"
    )
    train.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: stop after this many epochs without a better validation "
        "accuracy (unset: train all epochs)",
    )
    train.add_argument(
        "--keep-last",
        action="store_true",
        help="end with the last epoch's weights instead of the best validation epoch's "
        "(checkpoints/best is written either way)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--out", default=None, help="run folder (history, checkpoints); must be new or empty"
    )
    out.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint (model, data and settings "
        "are read from it; --epochs, --patience, --keep-last, --device, --quiet and --json "
        "may be given); a DIR without a checkpoint yet (a run killed at its start) is "
        "started with the options given",
    )
    out.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept")
    add_output_options(parser)


def _task_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from nrnn_theory.train.data import TASKS

    kwargs: dict[str, Any] = {
        "seed": args.split_seed,
        "root": args.data_root,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
    }
    takes = TASKS[args.task][1] if args.task in TASKS else {}
    for name, value in (
        ("pixels_per_step", args.pixels_per_step),
        ("permutation_seed", args.permutation_seed),
        ("binary", args.binary or None),
    ):
        if value is None:
            continue
        if name not in takes:
            raise ValueError(f"--{name.replace('_', '-')}: task {args.task!r} takes no such option")
        kwargs[name] = value
    return kwargs


def _noise(args: argparse.Namespace) -> NoiseSpec | None:
    """The noise of the options, or ``None`` when its levels are zero."""
    noise = noise_from_options(args)
    return None if noise is None or noise.is_zero else noise


def _explicit_penalty(args: argparse.Namespace):
    """The penalty of --explicit-reg (None without it), checked before any data is loaded."""
    if args.explicit_reg is None:
        if args.reg_examples is not None:
            raise ValueError("--reg-examples: only meaningful with --explicit-reg LAMBDA")
        return None
    from nrnn_theory.train.penalties import explicit_regularizer_penalty

    if args.model not in _NRNN_FAMILY:
        raise ValueError(
            f"--explicit-reg: the regularizer is defined for the NRNN family "
            f"({', '.join(_NRNN_FAMILY)}), got --model {args.model}"
        )
    lam = args.explicit_reg
    if not lam >= 0 or lam == float("inf"):
        raise ValueError(f"--explicit-reg: expected a finite LAMBDA >= 0, got {lam}")
    noise = _noise(args)
    if noise is None:
        raise ValueError(
            "--explicit-reg: give the noise the regularizer stands for with --add and/or "
            "--mult (the regularizer of zero noise is zero)"
        )
    if args.reg_examples is not None and args.reg_examples <= 0:
        raise ValueError(f"--reg-examples: expected a positive integer, got {args.reg_examples}")
    return explicit_regularizer_penalty(noise, weight=lam, max_examples=args.reg_examples)


def _model_config(args: argparse.Namespace, input_size: int, num_classes: int) -> dict[str, Any]:
    sizes = {"input_size": input_size, "hidden_size": args.hidden, "num_classes": num_classes}
    noise = _noise(args)
    if args.explicit_reg is not None:
        noise = None  # the noise options describe the regularizer; the model trains noise-free
    if noise is not None and args.model not in ("nrnn", "antisymmetric"):
        raise ValueError(f"--add/--mult: model {args.model!r} takes no noise (use nrnn)")
    noise = None if noise is None else noise.to_dict()
    gamma_A = args.gamma if args.gamma_A is None else args.gamma_A
    gamma_W = args.gamma if args.gamma_W is None else args.gamma_W
    base = {"model": args.model, **sizes, "dtype": args.dtype}
    if args.model in ("nrnn", "lipschitz"):
        base.update(
            dt=args.dt,
            beta=args.beta,
            gamma_A=gamma_A,
            gamma_W=gamma_W,
            alpha=args.alpha,
            learn_step=args.learn_step,
            init_std=args.init_std,
        )
        if args.model == "nrnn":
            base["noise"] = noise
    elif args.model == "antisymmetric":
        base.update(
            dt=args.dt,
            gamma=gamma_W,
            noise=noise,
            learn_step=args.learn_step,
            init_std=args.init_std,
        )
    elif args.model == "cornn":
        base.update(dt=args.dt, gamma=args.cornn_gamma, epsilon=args.cornn_epsilon)
    else:
        base.update(num_layers=args.layers)
    return base


def _fit_settings(args: argparse.Namespace):
    """The :class:`~nrnn_theory.train.FitSettings` of a new run's options."""
    from nrnn_theory.train.loop import FitSettings

    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "weight_decay": args.weight_decay,
        "momentum": args.momentum,
        "lr_schedule": None if args.lr_decay_epochs is None else tuple(args.lr_decay_epochs),
        "lr_decay": args.lr_decay,
        "eval_batch_size": args.eval_batch_size,
    }
    # unset options keep FitSettings' defaults, the ones fit() uses
    kwargs = {k: v for k, v in given.items() if v is not None}
    return FitSettings(
        **kwargs,
        grad_clip=args.grad_clip,
        seed=args.seed,
        patience=args.patience,
        restore_best=not args.keep_last,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.train.checkpoint import latest_checkpoint, load_checkpoint
    from nrnn_theory.train.data import load_task
    from nrnn_theory.train.distributed import init_from_env, teardown
    from nrnn_theory.train.loop import FitSettings, fit
    from nrnn_theory.train.models import build_model

    apply_run_options(args)
    ctx = init_from_env(args.device)
    penalty = None
    try:
        is_main = ctx is None or ctx.is_main
        quiet = args.quiet or not is_main
        device = ctx.device if ctx is not None else cli_device(args.device)
        fresh = (
            args.resume is not None
            and latest_checkpoint(args.resume) is None
            and not os.path.exists(os.path.join(args.resume, "checkpoint.json"))
        )
        if args.resume is not None and not fresh:
            if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
                raise ValueError("--out: give either --out (a new run) or --resume DIR, not both")
            ckpt = load_checkpoint(args.resume)
            if not ckpt.task:
                raise ValueError(
                    f"--resume: {args.resume} was trained on data built in Python; resume it "
                    "with nrnn_theory.train.fit(..., resume=True)"
                )
            task = dict(ckpt.task)
            data = load_task(task.pop("name"), **task)
            model = build_model(dict(ckpt.config), generator=torch.Generator().manual_seed(0))
            changes: dict[str, Any] = {} if args.epochs is None else {"epochs": args.epochs}
            if args.patience is not None:
                changes["patience"] = args.patience
            if args.keep_last:
                changes["restore_best"] = False
            settings = FitSettings.from_checkpoint(ckpt.fit or {}, **changes)
            record = (ckpt.fit or {}).get("penalty")
            if record is not None:
                from nrnn_theory.train.penalties import penalty_from_config

                penalty = penalty_from_config(record)
            out_dir, resume = args.resume, True
        else:
            penalty = _explicit_penalty(args)
            try:
                data = load_task(args.task, **_task_kwargs(args))
            except ValueError as exc:
                if str(exc).startswith("name:"):  # the task name itself
                    raise ValueError(f"--task: {str(exc)[len('name: ') :]}") from None
                raise
            config = _model_config(args, data.input_size, data.num_classes)
            model = build_model(config, generator=torch.Generator().manual_seed(args.seed))
            settings = _fit_settings(args)
            # --resume DIR without a checkpoint yet (a run killed at its start, or a new
            # folder): the run starts from the options given; fit clears only its own
            # leftovers there and refuses a folder holding anything else
            out_dir, resume = (args.resume, True) if fresh else (args.out, False)
        history = fit(
            model,
            data,
            settings,
            device=device,
            out_dir=out_dir,
            resume=resume,
            keep_checkpoints=args.keep_checkpoints,
            quiet=quiet,
            penalty=penalty,
        )
        del model
    finally:
        if ctx is not None:
            teardown()
    if not is_main:
        return 0
    if args.json:
        emit_json(history.to_dict())
        return 0
    where = f"; run saved in {history.out_dir}" if history.out_dir else ""
    print(
        f"final clean test accuracy: {history.test_accuracy:.4f} "
        f"(test loss {history.test_loss:.4f}) after {history.epochs} epochs on "
        f"{history.task}{where}"
    )
    return 0
