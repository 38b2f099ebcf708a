"""The explicit small-noise regularizer and the Hessian flatness of a trained checkpoint.

--regularizer (NRNN family: nrnn, lipschitz, antisymmetric): the exact regularizer
Q-hat, R-hat of THEORY.md §6 on each evaluation example, for the checkpoint's own
training noise (or the noise given by --add/--mult), and the predicted noisy-minus-clean
loss gap eps^2/2 (Q-hat + R-hat), as mean and quantiles over examples, with the time
steps whose noise contributes most to R-hat. --mc-pairs N also measures the gap by
antithetic Monte Carlo and prints it, with its standard error, beside the prediction.

--flatness (any model): the Hessian of the clean mean cross-entropy on the evaluation
examples with respect to all trained parameters (THEORY.md §7), in eval mode with the
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
from typing import Any

from nrnn_theory._cli._common import (
    add_checkpoint_arguments,
    add_noise_options,
    add_output_options,
    emit_json,
    load_checkpoint_data,
    noise_from_options,
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
        help="Hessian trace and top eigenvalues of the mean training loss (any model)",
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
    add_noise_options(parser, default=None)
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


def _nrnn_or_explain(ck, path: str):
    """``params_from_module`` in float64, or a ValueError saying why there is none."""
    import torch

    from nrnn_theory.train import params_from_module

    try:
        return params_from_module(ck.model, dtype=torch.float64)
    except TypeError:
        raise ValueError(
            f"--regularizer: checkpoint {path} holds a {ck.config.get('model')!r} model, not "
            "one of the NRNN family (nrnn, lipschitz, antisymmetric); the explicit "
            "regularizer of THEORY.md §6 is defined for the NRNN drift and its injected "
            "noise only (--flatness works for any model)"
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


def _stats(values) -> dict[str, float]:
    import torch

    v = values.detach().to(torch.float64)
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=torch.float64, device=v.device))
    out = {"mean": float(v.mean())}
    out.update({f"q{round(100 * p):02d}": float(x) for p, x in zip(QUANTILES, q, strict=True)})
    return out


def _analyse_regularizer(ck, params, xs, ys, args) -> dict[str, Any]:
    import torch

    from nrnn_theory.experiments.model_analysis import analyse_regularizer

    noise, source = _regularizer_noise(ck, args)
    gen = torch.Generator(device=xs.device).manual_seed(args.seed) if args.mc_pairs else None
    analysis = analyse_regularizer(params, xs, ys, noise, mc_pairs=args.mc_pairs, generator=gen)
    reg = analysis.result
    names = ["Q", "R", "total", "noise_gap"]
    if noise.convention == "paper_code" and noise.multiplicative > 0:
        names += ["mean_shift", "predicted_gap"]
    summary = {name: _stats(getattr(reg, name)) for name in names}
    per_step = reg.per_step_R.mean(dim=0)
    n_top = min(args.top_steps, per_step.shape[0])
    top = torch.topk(per_step, n_top)
    r_mean = float(reg.R.mean())
    steps = [
        {
            "step": int(i),
            "R": float(v),
            "share": float(v) / r_mean if r_mean != 0 else float("nan"),
        }
        for v, i in zip(top.values, top.indices, strict=True)
    ]
    return {
        "noise": noise,
        "noise_source": source,
        "epsilon": noise.epsilon,
        "summary": summary,
        "top_steps": steps,
        "result": reg,
        "monte_carlo": analysis.monte_carlo,
    }


def _analyse_flatness(ck, xs, ys, args) -> dict[str, Any]:
    import copy

    import torch

    from nrnn_theory.experiments.model_analysis import analyse_flatness

    model = copy.deepcopy(ck.model).to(torch.float64).eval()
    n_params = sum(t.numel() for t in model.parameters())
    if args.top_k > n_params:
        raise ValueError(
            f"--top-k: expected at most {n_params} (the number of parameters), got {args.top_k}"
        )
    flat = analyse_flatness(
        model,
        xs,
        ys,
        n_probes=args.probes,
        k=args.top_k,
        per_parameter=True,
        generator=torch.Generator(device=xs.device).manual_seed(args.seed),
        eigen_generator=torch.Generator(device=xs.device).manual_seed(args.seed),
    )
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

    _check_options(args)
    if not args.regularizer:
        noise_from_options(args)  # reject stray noise options rather than ignore them silently
        if args.add is not None or args.mult is not None:
            raise ValueError("--add/--mult: the noise options only apply with --regularizer")
    (ck,), task, xs, ys = load_checkpoint_data([args.checkpoint], args)
    xs = xs.to(torch.float64)
    params = _nrnn_or_explain(ck, args.checkpoint) if args.regularizer else None
    if args.regularizer:
        _regularizer_noise(ck, args)  # fail on a missing noise before any computation
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
        "regularizer": None,
        "flatness": None,
    }
    if args.regularizer:
        result["regularizer"] = _analyse_regularizer(ck, params, xs, ys, args)
    if args.flatness:
        result["flatness"] = _analyse_flatness(ck, xs, ys, args)
    if args.json:
        emit_json(result)
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
            "Explicit regularizer (THEORY.md §6), exact, per example",
            f"  noise ({reg['noise_source']}): {_noise_words(reg['noise'])}, "
            f"eps = {reg['epsilon']:g}",
        ]
        labels = {
            "Q": "Q-hat",
            "R": "R-hat",
            "total": "Q-hat + R-hat",
            "noise_gap": "eps^2/2 (Q+R)",
            "mean_shift": "mean shift",
            "predicted_gap": "predicted gap",
        }
        header = ("quantity", "mean", *(f"q{round(100 * p):02d}" for p in QUANTILES))
        rows = [
            (labels[name], *(f"{v: .4g}" for v in stats.values()))
            for name, stats in reg["summary"].items()
        ]
        lines += _table(header, rows)
        if "predicted_gap" in reg["summary"]:
            lines.append(
                "  (paper_code: the mean shift is the exact loss change of the mean-step "
                "chain; predicted gap = mean shift + eps^2/2 (Q+R))"
            )
        lines.append("  steps whose noise contributes most to R-hat (mean over examples):")
        for s in reg["top_steps"]:
            lines.append(
                f"    step {s['step']:>5}  R {s['R']: .4g}  ({100 * s['share']:.1f}% of R-hat)"
            )
        mc = reg["monte_carlo"]
        if mc is not None:
            diff = mc.mean - mc.predicted_mean
            z = diff / mc.mean_stderr if mc.mean_stderr > 0 else float("nan")
            lines += [
                f"  Monte Carlo ({mc.n_pairs} antithetic pairs per example), batch mean:",
                f"    measured gap   {mc.mean: .6g} ± {mc.mean_stderr:.3g} (standard error)",
                f"    predicted gap  {mc.predicted_mean: .6g}",
                f"    difference     {diff: .3g} ({z:+.1f} standard errors; the expansion "
                "drops O(eps^4) terms, which this measures once it exceeds a few standard "
                "errors)",
            ]
    flat = result["flatness"]
    if flat is not None:
        tr, eig = flat["trace"], flat["eigenvalues"]
        lines += [
            "",
            f"Flatness (THEORY.md §7): Hessian of the {flat['loss']} on these examples",
            f"  loss {flat['loss_value']:.6g}; {flat['n_params']} parameters "
            f"({', '.join(f'{k} {v}' for k, v in flat['parameters'].items())})",
            f"  Hutchinson trace  {tr.mean: .6g} ± {tr.stderr:.3g} ({tr.n_probes} probes)",
        ]
        rows = [
            (name, f"{tr.block_means[name]: .4g}", f"{tr.block_stderrs[name]:.3g}")
            for name in tr.block_means
        ]
        lines += _table(("parameter", "trace", "stderr"), rows, indent="    ")
        values = ", ".join(f"{v:.6g}" for v in eig.eigenvalues.tolist())
        resid = max(eig.residuals.tolist())
        lines.append(
            f"  top {len(eig.eigenvalues)} eigenvalues  {values}  (Lanczos, max residual "
            f"{resid:.2g}{'' if eig.converged else ', NOT converged'})"
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
