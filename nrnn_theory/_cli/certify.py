"""Stability certificates of a trained NRNN-family checkpoint beside measured exponents.

One row per condition of docs/theory/stability.md that applies (deterministic contraction of the
ODE, contraction of the discrete map, almost-sure stability with scalar or diagonal
multiplicative noise, mean-square stability), for the model without noise and with
its training noise (or the noise given by --add/--mult): the certified bound on the
top Lyapunov exponent of the difference of two trajectories (negative: exponentially
stable), whether it holds, and every quantity entering it. Next to each bound: the
measured top Lyapunov exponents of the model driven by the evaluation inputs (from
zero), without noise and along one frozen noise path per input. Last, the smallest
scalar and diagonal multiplicative noise certifying almost-sure stability.

Then the LMI certificates (docs/theory/stability.md in the best quadratic metric, --metric) of the
clean model's map, on the global slope sector [0, 1] and on the sector of the reachable
set over the input box (--input-box, default the range of the training inputs) for
--horizon steps (default the sequence length), and the certified bound on the
finite-time exponent over that input set. The first line of the output is a one-line
conclusion: "certified contracting at rate <= c on inputs in [lo,hi]", or "not
certified; best certified bound c ..., measured top exponent l".

Certificates and exponents are computed in float64. The seed fixes the initial
tangent frames and the noise paths.

Examples:

  nrnn certify runs/nrnn-digits
  nrnn certify runs/lip-digits --convention sde --mult 1.5 --noise-structure scalar
  nrnn certify runs/nrnn-digits --one-sided midpoint --exponents 4 --json
  nrnn certify runs/nrnn-digits --metric sdp --input-box 0,1 --horizon 64
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
    progress,
)


HELP = "stability certificates of a checkpoint beside measured Lyapunov exponents"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nrnn_theory._vocabulary import ONE_SIDED_METHODS

    add_checkpoint_arguments(parser, examples=64)
    parser.add_argument(
        "--one-sided",
        default="auto",
        choices=list(ONE_SIDED_METHODS),
        help="one-sided constant used by the certificates (docs/theory/stability.md; auto: "
        "exact for H <= 12, else relaxation)",
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
    parser.add_argument(
        "--metric",
        default="identity",
        choices=["identity", "diagonal", "sdp"],
        help="quadratic metric of the LMI certificates (sdp: full P by semidefinite "
        "programming; identity: today's Euclidean norm)",
    )
    parser.add_argument(
        "--input-box",
        default=None,
        help="LO,HI: the input set of the reachable-set sector (default: the range of the "
        "task's training inputs, [0,1] for digits/MNIST; the evaluated inputs' for a "
        "--data file without a train split)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="steps of the reachable set and of the finite-horizon bound (default: the "
        "sequence length of the task)",
    )
    add_noise_options(parser, from_checkpoint=True)
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.stability import check_step, format_stability_report
    from nrnn_theory.train import noise_from_module, params_from_module
    from nrnn_theory.train.analysis import certify_model

    override = noise_from_options(args)
    if args.exponents < 1:
        raise ValueError(f"--exponents: expected an integer >= 1, got {args.exponents}")
    box = _input_box(args)
    if args.horizon is not None and args.horizon < 1:
        raise ValueError(f"--horizon: expected an integer >= 1, got {args.horizon}")
    (ck,), task, xs, _ = load_checkpoint_data([args.checkpoint], args)
    try:
        params = params_from_module(ck.model, dtype=torch.float64)
    except TypeError:
        raise ValueError(
            f"checkpoint {args.checkpoint} holds a {ck.config.get('model')!r} model, not one "
            "of the NRNN family (nrnn, lipschitz, antisymmetric, or a one-layer tanh "
            "torch.nn.RNN); the certificates of docs/theory/stability.md are about the NRNN drift"
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
    bar = progress(args, 1, "certify")
    bar.set_postfix_str(f"certificates and exponents on {len(xs)} inputs")
    report = certify_model(
        params,
        xs,
        noise=noises[0] if noises else None,
        one_sided=args.one_sided,
        k=args.exponents,
        transient=args.transient,
        seed=args.seed,
    )
    lmi = _lmi_rows(args, box, params, task, xs, report)
    bar.update()
    bar.close()
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
                "lmi": lmi,
            },
            args,
        )
        return 0
    print(lmi["conclusion"])
    print(
        f"{ck.path} ({ck.config.get('model')}); exponents measured on {len(xs)} "
        f"{args.split} inputs of {task.name}; noise from the {source}"
        + ("" if noises else ": none")
    )
    if step_check.flagged:
        print(f"warning: learned step: {step_check.message}")
    print(format_stability_report(report, details=True))
    print("")
    print(
        f"LMI certificates, metric {lmi['metric']}, {lmi['input_set']} "
        f"({lmi['input_box_source']}), horizon {lmi['horizon']}:"
    )
    for cert in lmi["certificates"]:
        print(
            f"  {cert.condition:<20} bound {cert.bound: .4g}  holds {'yes' if cert.holds else 'no'}"
            f"  cond(P) {cert.metric_condition_number:.3g}  [{cert.solver_status}]"
        )
    return 0


def _input_box(args) -> tuple[float, float] | None:
    """--input-box as (lo, hi), or None for the default."""
    import math

    if args.input_box is None:
        return None
    try:
        lo, hi = (float(v) for v in args.input_box.split(","))
    except ValueError:
        raise ValueError(f"--input-box: expected LO,HI, got {args.input_box!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"--input-box: expected finite LO <= HI, got {args.input_box!r}")
    return lo, hi


def _lmi_rows(args, box, params, task, xs, report) -> dict:
    """The LMI certificates on the global and reachable sectors, and the conclusion."""
    import torch

    from nrnn_theory.reachability import reachable_sector, reachable_set
    from nrnn_theory.sdp_certificates import check_stability_lmi, finite_horizon_certificate

    metric = "full" if args.metric == "sdp" else args.metric
    if box is not None:
        lo, hi = box
        source = "command line"
    elif "train" in getattr(task, "splits", ("train",)):
        train = task.inputs("train")
        lo, hi = float(train.min()), float(train.max())
        source = f"range of the training inputs of {task.name}"
    else:  # a data file of your own without a training split
        lo, hi = float(xs.min()), float(xs.max())
        source = f"range of the {len(xs)} evaluated inputs of {task.name} (no train split)"
    horizon = args.horizon if args.horizon is not None else int(xs.shape[1])
    with torch.no_grad():
        reach = reachable_set(params, (lo, hi), horizon)
    sector = reachable_sector(reach, dynamics="map")
    certs = [
        check_stability_lmi(params, condition="lmi_discrete", metric=metric),
        check_stability_lmi(params, condition="lmi_discrete", metric=metric, sector=sector),
        finite_horizon_certificate(params, reach, metric=metric),
    ]
    box = f"inputs in [{lo:g},{hi:g}]"
    measured = float(report.spectra[0].top)
    words, certified, best_bound = conclusion(certs, sector.horizon, box, horizon, measured)
    return {
        "conclusion": words,
        "certified": certified,
        "best_bound": best_bound,
        "measured_top_exponent": measured,
        "metric": metric,
        "input_set": box,
        "input_box": [lo, hi],
        "input_box_source": source,
        "horizon": horizon,
        "sector_horizon": sector.horizon,
        "certificates": certs,
    }


def conclusion(certs, sector_horizon, box, horizon, measured) -> tuple[str, bool, float]:
    """The one-line conclusion from [global, reachable, finite-horizon] certificates.

    Returns ``(words, certified, best_bound)``: certified when the global-sector or the
    reachable-sector map certificate holds (the latter "for ``horizon`` steps" when its
    sector covers only those); otherwise the smallest bound of the three, the
    finite-horizon one, and the measured top exponent.
    """
    import math

    glob, reach, finite = certs
    best = min((glob, reach), key=lambda c: c.bound)
    if best.holds:
        words = f"certified contracting at rate <= {best.bound:.4g} on {box}"
        if best is reach and sector_horizon is not None:
            words += f" for {sector_horizon} steps"
        elif best is glob:
            words += " (the global sector: it holds for any input)"
        return words, True, float(best.bound)
    fh = finite.bound
    b = min(best.bound, fh) if math.isfinite(fh) else best.bound
    words = (
        f"not certified; best certified bound {b:.4g} (finite horizon {horizon}: "
        f"{fh:.4g}) on {box}, measured top exponent {measured:.4g}"
    )
    return words, False, float(b)
