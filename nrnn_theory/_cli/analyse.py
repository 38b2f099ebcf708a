"""The explicit small-noise regularizer and the Hessian flatness of a trained checkpoint.

--regularizer (NRNN family: nrnn, lipschitz, antisymmetric): the exact regularizer
Q-hat, R-hat of docs/theory/regularizer.md on each evaluation example, for the checkpoint's own
training noise (or the noise given by --add/--mult), and the predicted noisy-minus-clean
loss gap eps^2/2 (Q-hat + R-hat), as mean and quantiles over examples, with the time
steps whose noise contributes most to R-hat. --mc-pairs N also measures the gap by
antithetic Monte Carlo and prints it, with its standard error, beside the prediction.

--flatness (any model): the Hessian of the clean mean cross-entropy on the evaluation
examples with respect to all trained parameters (docs/theory/flatness.md), in eval mode with the
noise off: its Hutchinson trace with standard error (per parameter tensor too) and its
top eigenvalues with residuals.

Everything is computed in float64 on a float64 copy of the model. Randomness (probes,
Lanczos start, Monte Carlo paths) comes from generators seeded with --seed, one fresh
generator per computation.

Examples:

  nrnn analyse runs/nrnn-digits --regularizer --flatness
  nrnn analyse runs/lip-digits --regularizer --add 0.05 --mult 0.02 --mc-pairs 200
  nrnn analyse runs/lstm-digits --flatness --top-k 5 --json
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nrnn_theory._cli._common import (
    add_checkpoint_arguments,
    add_noise_options,
    add_output_options,
    emit_json,
    load_checkpoint_data,
    noise_from_options,
    progress,
)


HELP = "explicit noise regularizer and Hessian flatness of a checkpoint"

#: Quantiles over examples printed and stored for each per-example quantity.
QUANTILES = (0.1, 0.5, 0.9)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to compute (at least one)")
    what.add_argument(
        "--regularizer",
        action="store_true",
        help="exact small-noise regularizer Q-hat, R-hat and predicted gap (NRNN family)",
    )
    what.add_argument(
        "--flatness",
        action="store_true",
        help="Hessian trace and top eigenvalues of the clean mean loss on the evaluation "
        "examples (--split, --examples; any model)",
    )
    add_checkpoint_arguments(parser, examples=200)
    reg = parser.add_argument_group("regularizer")
    reg.add_argument(
        "--mc-pairs",
        type=int,
        default=0,
        help="also measure the gap by antithetic Monte Carlo with N pairs per example "
        "(0: no; costs about 2N noisy rollouts per example)",
    )
    reg.add_argument(
        "--top-steps", type=int, default=5, help="time steps listed by their share of R-hat"
    )
    add_noise_options(parser, from_checkpoint=True)
    flat = parser.add_argument_group("flatness")
    flat.add_argument("--probes", type=int, default=100, help="Hutchinson probes")
    flat.add_argument("--top-k", type=int, default=3, help="number of top Hessian eigenvalues")
    add_output_options(parser)


def _check_options(args: argparse.Namespace) -> None:
    if not (args.regularizer or args.flatness):
        raise ValueError(
            "expected at least one of --regularizer and --flatness, got neither "
            "(see nrnn analyse --help)"
        )
    for flag, value, minimum in (
        ("--mc-pairs", args.mc_pairs, 0),
        ("--top-steps", args.top_steps, 1),
        ("--probes", args.probes, 1),
        ("--top-k", args.top_k, 1),
    ):
        if value < minimum:
            raise ValueError(f"{flag}: expected an integer >= {minimum}, got {value}")
    if args.mc_pairs == 1:
        raise ValueError("--mc-pairs: expected 0 (no Monte Carlo) or at least 2 pairs, got 1")


def _nrnn_or_explain(ck, path: str) -> None:
    """A ValueError saying why the checkpoint has no explicit regularizer, if it has none."""
    import torch

    from nrnn_theory.train import params_from_module

    try:
        params_from_module(ck.model, dtype=torch.float64)
    except TypeError:
        raise ValueError(
            f"--regularizer: checkpoint {path} holds a {ck.config.get('model')!r} model, not "
            "one of the NRNN family (nrnn, lipschitz, antisymmetric, or a one-layer tanh "
            "torch.nn.RNN); the explicit regularizer of docs/theory/regularizer.md is defined "
            "for the NRNN drift and its injected noise only (--flatness works for any model)"
        ) from None


def _regularizer_noise(ck, args: argparse.Namespace):
    from nrnn_theory.train import noise_from_module

    override = noise_from_options(args)
    if override is not None:
        return override, "command line"
    own = noise_from_module(ck.model)
    if own is None or own.is_zero:
        raise ValueError(
            f"--regularizer: checkpoint {args.checkpoint} was trained without noise, so "
            "there is no noise to expand in; give one with --add and/or --mult (and "
            "--convention, --noise-structure as for nrnn train)"
        )
    return own, "checkpoint"


def _mc_check(mc) -> dict[str, Any] | None:
    from nrnn_theory.testing.tolerances import STATISTICAL_SIGMAS

    if mc is None:
        return None
    diff = mc.mean - mc.predicted_mean
    se = mc.mean_stderr
    return {
        "difference": diff,
        "z": diff / se if se > 0 else None,
        "sigmas": STATISTICAL_SIGMAS,
        "pass": bool(abs(diff) <= STATISTICAL_SIGMAS * se),
    }


def _regularizer_dict(analysis, source: str) -> dict[str, Any]:
    reg = analysis.regularizer
    return {
        "monte_carlo_check": _mc_check(reg.monte_carlo),
        "noise": reg.noise,
        "noise_source": source,
        "epsilon": reg.noise.epsilon,
        "summary": analysis.summary,
        "top_steps": [{"step": s.step, "R": s.R, "share": s.share} for s in analysis.top_steps],
        "result": reg.result,
        "monte_carlo": reg.monte_carlo,
    }


def _flatness_dict(flat) -> dict[str, Any]:
    return {
        "loss": "mean cross-entropy of the clean (eval-mode, noise-free) model",
        "loss_value": flat.loss_value,
        "parameters": flat.parameters,
        "n_params": flat.n_params,
        "trace": flat.trace,
        "eigenvalues": flat.eigenvalues,
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory.train.analysis import analyse_model

    _check_options(args)
    if not args.regularizer:
        noise_from_options(args)  # reject stray noise options rather than ignore them silently
        if args.add is not None or args.mult is not None:
            raise ValueError("--add/--mult: the noise options only apply with --regularizer")
    (ck,), task, xs, ys = load_checkpoint_data([args.checkpoint], args)
    xs = xs.to(torch.float64)
    noise = source = None
    if args.regularizer:
        _nrnn_or_explain(ck, args.checkpoint)
        noise, source = _regularizer_noise(ck, args)  # fail before any computation
    n_params = sum(t.numel() for t in ck.model.parameters())
    if args.flatness and args.top_k > n_params:
        raise ValueError(
            f"--top-k: expected at most {n_params} (the number of parameters), got {args.top_k}"
        )
    options = {
        "noise": noise,
        "mc_pairs": args.mc_pairs,
        "top_steps": args.top_steps,
        "probes": args.probes,
        "top_k": args.top_k,
        "seed": args.seed,
    }
    # One stage at a time, for the progress bar; each stage seeds its own generators,
    # so the numbers equal those of one analyse_model call with both analyses.
    stages = [name for name in ("regularizer", "flatness") if getattr(args, name)]
    bar = progress(args, len(stages), "analyse")
    parts = {}
    for stage in stages:
        bar.set_postfix_str(stage)
        parts[stage] = analyse_model(
            ck.model,
            xs,
            ys,
            regularizer=stage == "regularizer",
            flatness=stage == "flatness",
            **options,
        )
        bar.update()
    bar.close()
    analysis = parts.get("regularizer", parts.get("flatness"))
    if "flatness" in parts:
        analysis = dataclasses.replace(analysis, flatness=parts["flatness"].flatness)
    result: dict[str, Any] = {
        "checkpoint": str(ck.path),
        "model": ck.config.get("model"),
        "task": task.name,
        "split": args.split,
        "n_examples": len(xs),
        "examples": f"the first {len(xs)} examples of the {args.split} split of {task.name}",
        "seed": args.seed,
        "dtype": "float64",
        "step_check": _step_check(ck),
        "regularizer": _regularizer_dict(analysis, source) if args.regularizer else None,
        "flatness": _flatness_dict(analysis.flatness) if args.flatness else None,
    }
    if args.json:
        emit_json(result, args)
    else:
        if result["step_check"] is not None and result["step_check"].flagged:
            print(f"warning: learned step: {result['step_check'].message}")
        print(format_analysis(result))
    return 0


def _step_check(ck):
    """The sign of the checkpoint's Euler step (NRNN family), else ``None``."""
    from nrnn_theory.stability import check_step
    from nrnn_theory.train import params_from_module

    try:
        params = params_from_module(ck.model)
    except TypeError:
        return None
    return check_step(params)


def _noise_words(noise) -> str:
    if noise.convention == "paper_code":
        return (
            f"paper_code add_noise a = {noise.additive:g}, mult_noise mu = {noise.multiplicative:g}"
        )
    return (
        f"sde {noise.structure}, eps*sigma1 = {noise.additive:g}, "
        f"eps*sigma2 = {noise.multiplicative:g}"
    )


def format_analysis(result: dict[str, Any]) -> str:
    """The human-readable report of ``nrnn analyse`` (``result`` as built by ``run``)."""
    lines = [
        f"{result['checkpoint']} ({result['model']}) on {result['n_examples']} "
        f"{result['split']} examples of {result['task']}; computed in float64",
    ]
    reg = result["regularizer"]
    if reg is not None:
        lines += [
            "",
            "Explicit regularizer (docs/theory/regularizer.md), exact, per example",
            f"  noise ({reg['noise_source']}): {_noise_words(reg['noise'])}, "
            f"eps = {reg['epsilon']:g}",
        ]
        # Rows are labelled with their JSON keys (regularizer.summary.<key>).
        header = ("quantity", "mean", *(f"q{round(100 * p):02d}" for p in QUANTILES))
        rows = [
            (name, *(f"{v: .4e}" for v in stats.values())) for name, stats in reg["summary"].items()
        ]
        lines.append(
            "  (Q, R: Q-hat, R-hat; total = Q + R; noise_gap = eps^2/2 total, the predicted "
            "noisy-minus-clean loss gap)"
        )
        lines += _table(header, rows)
        if "predicted_gap" in reg["summary"]:
            lines.append(
                "  (paper_code: the mean shift is the exact loss change of the mean-step "
                "chain; predicted gap = mean shift + eps^2/2 (Q+R))"
            )
        lines.append("  steps whose noise contributes most to R-hat (mean over examples):")
        for s in reg["top_steps"]:
            lines.append(
                f"    step {s['step']:>5}  R {s['R']: .4e}  ({100 * s['share']:5.1f}% of R-hat)"
            )
        mc = reg["monte_carlo"]
        check = reg.get("monte_carlo_check")
        if mc is not None and check is not None:
            verdict = "pass" if check["pass"] else "fail"
            lines += [
                f"  Monte Carlo ({mc.n_pairs} antithetic pairs per example), batch mean:",
                f"    measured gap   {mc.mean: .6e} ± {mc.mean_stderr:.2e} (standard error)",
                f"    predicted gap  {mc.predicted_mean: .6e}",
                f"    difference     {check['difference']: .6e} ("
                + (
                    f"{check['z']:+.1f} standard errors"
                    if check["z"] is not None
                    else "standard error 0"
                )
                + (
                    f"; {100 * check['difference'] / mc.predicted_mean:+.2f}% of the prediction)"
                    if mc.predicted_mean != 0
                    else ")"
                ),
                f"    within {check['sigmas']:g} standard errors: {verdict}"
                + (
                    ""
                    if check["pass"]
                    else " (the prediction drops O(eps^4) terms and the antithetic standard "
                    "error shrinks at the same rate, so a fail means they are resolved, not "
                    "that the formula is wrong; the relative difference says how good the "
                    "second-order prediction is)"
                ),
            ]
    flat = result["flatness"]
    if flat is not None:
        tr, eig = flat["trace"], flat["eigenvalues"]
        lines += [
            "",
            f"Flatness (docs/theory/flatness.md): Hessian of the {flat['loss']} on these examples",
            f"  loss {flat['loss_value']:.6g}; {flat['n_params']} parameters "
            f"({', '.join(f'{k} {v}' for k, v in flat['parameters'].items())})",
            f"  Hutchinson trace  {tr.mean: .6e} ± {tr.stderr:.2e} ({tr.n_probes} probes)",
        ]
        rows = [
            (name, f"{tr.block_means[name]: .4e}", f"{tr.block_stderrs[name]:.2e}")
            for name in tr.block_means
        ]
        lines += _table(("parameter", "trace", "stderr"), rows, indent="    ")
        values = ", ".join(f"{v:.6e}" for v in eig.eigenvalues.tolist())
        resid = max(eig.residuals.tolist())
        lines.append(
            f"  top {len(eig.eigenvalues)} eigenvalues  {values}  (Lanczos, max residual "
            f"{resid:.2e}; converged: {'pass' if eig.converged else 'fail'})"
        )
    return "\n".join(lines)


def _table(header, rows, indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = indent + "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        fmt.format(*header).rstrip(),
        fmt.format(*("-" * w for w in widths)).rstrip(),
        *(fmt.format(*r).rstrip() for r in rows),
    ]
