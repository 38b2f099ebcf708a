"""Stability certificates of a trained NRNN-family checkpoint beside measured exponents.

One row per condition of THEORY.md §9 that applies (deterministic contraction of the
ODE, contraction of the discrete map, almost-sure stability with scalar or diagonal
multiplicative noise, mean-square stability), for the model without noise and with
its training noise (or the noise given by --add/--mult): the certified bound on the
top Lyapunov exponent of the difference of two trajectories (negative: exponentially
stable), whether it holds, and every quantity entering it. Next to each bound: the
measured top Lyapunov exponents of the model driven by the evaluation inputs (from
zero), without noise and along one frozen noise path per input. Last, the smallest
scalar and diagonal multiplicative noise certifying almost-sure stability.

Certificates and exponents are computed in float64. The seed fixes the initial
tangent frames and the noise paths.

Examples:

  nrnn certify runs/nrnn-digits
  nrnn certify runs/lip-digits --convention sde --mult 1.5 --noise-structure scalar
  nrnn certify runs/nrnn-digits --one-sided midpoint --exponents 4 --json
"""

from __future__ import annotations

import argparse

from nrnn_theory._cli._common import (
    add_checkpoint_arguments,
    add_noise_options,
    add_output_options,
    emit_json,
    load_checkpoint_data,
    noise_from_options,
)


HELP = "stability certificates of a checkpoint beside measured Lyapunov exponents"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory.stability import ONE_SIDED_METHODS

    add_checkpoint_arguments(parser, examples=64)
    parser.add_argument(
        "--one-sided",
        default="auto",
        choices=list(ONE_SIDED_METHODS),
        help="one-sided constant used by the certificates (THEORY.md §9; auto: exact for "
        "H <= 12, else relaxation)",
    )
    parser.add_argument(
        "--exponents", type=int, default=2, help="leading Lyapunov exponents measured (k)"
    )
    parser.add_argument(
        "--transient",
        type=int,
        default=None,
        help="steps discarded before accumulating exponents (unset: the library default)",
    )
    add_noise_options(parser, default=None)
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.stability import check_step, format_stability_report, stability_report
    from nrnn_theory.train import noise_from_module, params_from_module

    override = noise_from_options(args)
    if args.exponents < 1:
        raise ValueError(f"--exponents: expected an integer >= 1, got {args.exponents}")
    (ck,), task, xs, _ = load_checkpoint_data([args.checkpoint], args)
    try:
        params = params_from_module(ck.model, dtype=torch.float64)
    except TypeError:
        raise ValueError(
            f"checkpoint {args.checkpoint} holds a {ck.config.get('model')!r} model, not one "
            "of the NRNN family (nrnn, lipschitz, antisymmetric); the certificates of "
            "THEORY.md §9 are about the NRNN drift"
        ) from None
    if args.exponents > params.hidden_size:
        raise ValueError(
            f"--exponents: expected at most the hidden size {params.hidden_size}, "
            f"got {args.exponents}"
        )
    step_check = check_step(params)  # a learned step <= 0 changes which certificates apply
    noise = override if override is not None else noise_from_module(ck.model)
    source = "command line" if override is not None else "checkpoint"
    noises = [] if noise is None or noise.is_zero else [noise]
    report = stability_report(
        params,
        xs.to(torch.float64),
        noises=noises,
        one_sided=args.one_sided,
        k=args.exponents,
        transient=args.transient,
        generator=torch.Generator(device=xs.device).manual_seed(args.seed),
    )
    if args.json:
        emit_json(
            {
                "checkpoint": str(ck.path),
                "model": ck.config.get("model"),
                "task": task.name,
                "split": args.split,
                "n_examples": len(xs),
                "examples": (
                    f"the first {len(xs)} examples of the {args.split} split of {task.name}"
                ),
                "seed": args.seed,
                "noise": noises[0] if noises else None,
                "noise_source": source if noises else None,
                "step_check": step_check,
                "report": report,
            }
        )
        return 0
    print(
        f"{ck.path} ({ck.config.get('model')}); exponents measured on {len(xs)} "
        f"{args.split} inputs of {task.name}; noise from the {source}"
        + ("" if noises else ": none")
    )
    if step_check.flagged:
        print(f"warning: learned step: {step_check.message}")
    print(format_stability_report(report, details=True))
    return 0
