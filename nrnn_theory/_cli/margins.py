"""Certified and empirical input margins of a trained checkpoint.

For each evaluation example: the score margin, the certified lower bound on the l2
input margin (docs/theory/margins.md, sound, float64; NRNN-family models only), the certified
radius in the attack's norm by bound propagation through the time loop
(nrnn_theory.certified_radius, CROWN by default; the ball is intersected with the
task's data range) and the smallest perturbation an attack finds that flips the
prediction (DeepFool then PGD bisection). Prints their distributions and the fraction
of examples where a bound is tight within a factor of 2; a sound certificate never
exceeds the attack distance.

Example:

  nrnn margins runs/nrnn-digits --examples 200
"""

from __future__ import annotations

import argparse

from nrnn_theory._cli._common import (
    add_checkpoint_arguments,
    add_output_options,
    emit_json,
    load_checkpoint_data,
    progress,
)


HELP = "certified and empirical input margins of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, examples=200)
    parser.add_argument("--norm", default="l2", choices=["l2", "linf"], help="attack norm")
    parser.add_argument(
        "--bound-method",
        default="crown",
        choices=["crown", "forward", "ibp", "auto", "none"],
        help="bound propagation for the certified radius (none: skip it)",
    )
    parser.add_argument(
        "--tight-factor",
        type=float,
        default=2.0,
        help="a bound is tight when empirical <= factor * certified",
    )
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.attacks import minimal_perturbation
    from nrnn_theory.margins import certified_margin, format_margin_summary, margin_summary
    from nrnn_theory.train import params_from_module
    from nrnn_theory.verification import certified_radius

    (ck,), task, xs, ys = load_checkpoint_data([args.checkpoint], args)
    try:
        params = params_from_module(ck.model)
    except TypeError:
        params = None
    stages = 1 + (params is not None) * (1 + (args.bound_method != "none"))
    bar = progress(args, stages, "margins")
    bar.set_postfix_str(f"attack on {len(xs)} examples")
    gen = torch.Generator(device=xs.device).manual_seed(args.seed)
    empirical = minimal_perturbation(
        ck.model, xs, ys, norm=args.norm, bounds=task.value_range, generator=gen
    )
    bar.update()
    result = {
        "task": task.name,
        "split": args.split,
        "n_examples": len(xs),
        "model": ck.config.get("model"),
        "empirical": empirical,
    }
    radius_summary = radius = None
    if params is not None and args.bound_method != "none":
        lo, hi = task.value_range
        inside = bool((xs >= lo).all() and (xs <= hi).all())
        bar.set_postfix_str(f"certified radius ({args.bound_method})")
        radius = certified_radius(
            params,
            xs,
            ys,
            norm=args.norm,
            method=args.bound_method,
            data_range=(lo, hi) if inside else None,
            generator=gen,
        )
        result["certified_radius"] = radius.to_dict()
        radius_summary = margin_summary(
            radius.radius, empirical, tight_factor=args.tight_factor, norm=args.norm
        )
        result["radius_summary"] = radius_summary
        bar.update()
    if params is None:
        result["certified"] = None
        note = (
            f"no certificate: {ck.config.get('model')} is not an NRNN-family model "
            "(docs/theory/margins.md applies to the NRNN drift)"
        )
    else:
        bar.set_postfix_str("Lipschitz certificate")
        cert = certified_margin(params, xs, ys)
        bar.update()
        result["certified"] = cert
        if args.norm == "l2":
            result["summary"] = margin_summary(cert, empirical, tight_factor=args.tight_factor)
            note = None
        else:
            note = "the global Lipschitz certificate is an l2 bound; see it with --norm l2"
    bar.close()
    if args.json:
        emit_json(result, args)
        return 0
    if radius is not None:
        title = (
            f"{args.checkpoint} on {task.name}: certified radius ({radius.method}, {args.norm}) "
            f"vs attack, {len(xs)} examples"
        )
        print(format_margin_summary(radius_summary, title=title))
    if "summary" in result:
        title = f"{args.checkpoint} on {task.name}: global Lipschitz bound (l2) vs attack"
        print(format_margin_summary(result["summary"], title=title))
    elif radius_summary is None:
        d = empirical.distance[torch.isfinite(empirical.distance)]
        q = torch.quantile(d.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        print(
            f"{args.checkpoint} on {task.name}: empirical {args.norm} margin over {len(xs)} "
            f"examples: 10% {q[0]:.4g}, median {q[1]:.4g}, 90% {q[2]:.4g}"
        )
    if note:
        print(note)
    return 0
