"""Issue 19: the catalogue of bad inputs, over the public API and the ``nrnn`` CLI.

Each API case is (call, exception type, pattern): the call must raise exactly that
type (``TypeError`` or ``ValueError``, or a documented subclass) with a message naming
the argument. Each CLI case is (argv, pattern): exit code 2, one line on stderr that
names the option, no traceback, nothing written.
"""

from __future__ import annotations

import pytest
import torch

import nrnn_theory as nt
from nrnn_theory.cli import main as cli_main

from _problems import random_params


# ------------------------------------------------------------------------ fixtures
def _P(**kw):
    return random_params(3, 1, 2, generator=torch.Generator().manual_seed(0), **kw)


P = _P()
XS = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 4, 1)
YS = torch.tensor([0, 1])
H0 = torch.zeros(2, 3, dtype=torch.float64)
NOISE = nt.NoiseSpec(epsilon=0.1, sigma1=1.0)
NAN_XS = XS.clone()
NAN_XS[0, 1, 0] = float("nan")


def G():
    return torch.Generator().manual_seed(0)


def _model(x):  # a callable classifier on (B, T, 1) inputs
    return torch.cat([x.sum(dim=(1, 2)).unsqueeze(1), -x.sum(dim=(1, 2)).unsqueeze(1)], 1)


def _quad_loss(p):
    return (p["w"] ** 2).sum()


W = {"w": torch.ones(3, dtype=torch.float64)}

XS_CASES = [  # (bad xs, exception, pattern), for every function taking (params, xs)
    ("list", [[1.0]], TypeError, "xs: expected a torch.Tensor"),
    ("int dtype", torch.zeros(2, 4, 1, dtype=torch.int64), TypeError, "xs: expected a floating"),
    ("2-D", torch.zeros(2, 4, dtype=torch.float64), ValueError, "xs: expected shape"),
    ("wrong D", torch.zeros(2, 4, 2, dtype=torch.float64), ValueError, "xs: expected shape"),
    ("T = 0", torch.zeros(2, 0, 1, dtype=torch.float64), ValueError, "xs: expected at least one"),
    ("float32", XS.float(), TypeError, "xs: expected dtype torch.float64"),
    ("NaN", NAN_XS, ValueError, "xs: expected finite values"),
]

PARAMS_FUNCTIONS = {  # name -> call(params, xs)
    "rollout": lambda p, x: nt.rollout(p, x),
    "logits": lambda p, x: nt.logits(p, x),
    "lyapunov_spectrum": lambda p, x: nt.lyapunov_spectrum(p, x, generator=G()),
    "certified_margin": lambda p, x: nt.certified_margin(p, x),
    "input_output_jacobian": lambda p, x: nt.input_output_jacobian(p, x),
    "jacobian_gram": lambda p, x: nt.jacobian_gram(p, x),
    "jacobian_spectral_norm": lambda p, x: nt.jacobian_spectral_norm(p, x, generator=G()),
    "local_margin_estimate": lambda p, x: nt.local_margin_estimate(p, x),
    "state_jacobian_norms": lambda p, x: nt.state_jacobian_norms(p, x),
    "explicit_regularizer": lambda p, x: nt.explicit_regularizer(p, x, YS, NOISE),
    "estimate_noise_gap": lambda p, x: nt.estimate_noise_gap(
        p, x, YS, NOISE, n_pairs=2, generator=G()
    ),
    "hidden_state_hessian": lambda p, x: nt.hidden_state_hessian(p, x, YS),
    "accuracy": lambda p, x: nt.accuracy(p, x, YS),
    "nrnn_loss": lambda p, x: nt.nrnn_loss(p, x, YS),
    "regularizer_penalty": lambda p, x: nt.regularizer_penalty(p, x, YS, NOISE),
}


def _api_cases():
    cases = []
    for fname, call in PARAMS_FUNCTIONS.items():
        for label, bad, exc, pattern in XS_CASES:
            cases.append((f"{fname}-xs-{label}", lambda c=call, b=bad: c(P, b), exc, pattern))
        takes_model = fname in ("jacobian_spectral_norm", "local_margin_estimate", "accuracy")
        cases.append(
            (
                f"{fname}-params-str",
                lambda c=call: c("params", XS),
                TypeError,
                "model: expected|params: expected" if takes_model else "params: expected",
            )
        )
    return cases


# Function-specific cases: (id, call, exception, pattern naming the argument).
SPECIFIC = [
    # generators
    (
        "rollout-generator-int",
        lambda: nt.rollout(P, XS, noise=NOISE, generator=42),
        TypeError,
        "generator: expected a torch.Generator",
    ),
    (
        "logits-generator-str",
        lambda: nt.logits(P, XS, noise=NOISE, generator="g"),
        TypeError,
        "generator",
    ),
    (
        "step-generator-int",
        lambda: nt.step(P, H0, XS[:, 0], noise=NOISE, generator=1),
        TypeError,
        "generator",
    ),
    (
        "lyapunov-generator-int",
        lambda: nt.lyapunov_spectrum(P, XS, generator=3),
        TypeError,
        "generator",
    ),
    (
        "noise_gap-generator-int",
        lambda: nt.estimate_noise_gap(P, XS, YS, NOISE, n_pairs=2, generator=7),
        TypeError,
        "generator",
    ),
    (
        "jsn-generator-int",
        lambda: nt.jacobian_spectral_norm(P, XS, generator=5),
        TypeError,
        "generator",
    ),
    (
        "white_noise-generator-int",
        lambda: nt.white_noise(XS, 0.1, generator=1),
        TypeError,
        "generator",
    ),
    (
        "mult_noise-generator-int",
        lambda: nt.multiplicative_noise(XS, 0.1, generator=1),
        TypeError,
        "generator",
    ),
    (
        "salt-generator-int",
        lambda: nt.salt_and_pepper(XS, 0.1, generator=1),
        TypeError,
        "generator",
    ),
    (
        "sample_noise-generator-int",
        lambda: nt.sample_noise(NOISE, 2, 3, 3, generator=2),
        TypeError,
        "generator",
    ),
    (
        "trace-generator-int",
        lambda: nt.estimate_hessian_trace(_quad_loss, W, generator=1),
        TypeError,
        "generator",
    ),
    # noise specs
    ("rollout-noise-dict", lambda: nt.rollout(P, XS, noise={"epsilon": 1}), TypeError, "noise"),
    ("noise-negative-eps", lambda: nt.NoiseSpec(epsilon=-1.0, sigma1=1.0), ValueError, "epsilon"),
    ("noise-nan-sigma1", lambda: nt.NoiseSpec(sigma1=float("nan")), ValueError, "sigma1"),
    (
        "noise-bad-structure",
        lambda: nt.NoiseSpec(sigma2=1.0, structure="full"),
        ValueError,
        "structure",
    ),
    (
        "noise-bad-convention",
        lambda: nt.NoiseSpec(sigma1=1.0, convention="ito"),
        ValueError,
        "convention",
    ),
    ("noise_dim-H0", lambda: nt.noise_dim(NOISE, 0), ValueError, "hidden_size"),
    # NRNNParams
    (
        "params-H0",
        lambda: nt.NRNNParams(
            A=torch.zeros(0, 0),
            W=torch.zeros(0, 0),
            U=torch.zeros(0, 1),
            b=torch.zeros(0),
            V=torch.zeros(2, 0),
            c=torch.zeros(2),
            dt=0.1,
        ),
        ValueError,
        "A: expected at least one",
    ),
    (
        "params-D0",
        lambda: nt.NRNNParams(
            A=torch.zeros(2, 2),
            W=torch.zeros(2, 2),
            U=torch.zeros(2, 0),
            b=torch.zeros(2),
            V=torch.zeros(2, 2),
            c=torch.zeros(2),
            dt=0.1,
        ),
        ValueError,
        "U: expected at least one",
    ),
    (
        "params-C0",
        lambda: nt.NRNNParams(
            A=torch.zeros(2, 2),
            W=torch.zeros(2, 2),
            U=torch.zeros(2, 1),
            b=torch.zeros(2),
            V=torch.zeros(0, 2),
            c=torch.zeros(0),
            dt=0.1,
        ),
        ValueError,
        "V: expected at least one",
    ),
    (
        "params-dt0",
        lambda: nt.NRNNParams(A=P.A, W=P.W, U=P.U, b=P.b, V=P.V, c=P.c, dt=0.0),
        ValueError,
        "dt",
    ),
    (
        "params-dt-nan",
        lambda: nt.NRNNParams(A=P.A, W=P.W, U=P.U, b=P.b, V=P.V, c=P.c, dt=float("nan")),
        ValueError,
        "dt",
    ),
    (
        "params-A-nonsquare",
        lambda: nt.NRNNParams(
            A=torch.zeros(3, 2, dtype=torch.float64), W=P.W, U=P.U, b=P.b, V=P.V, c=P.c, dt=0.1
        ),
        ValueError,
        "A: expected a square",
    ),
    (
        "params-W-shape",
        lambda: nt.NRNNParams(
            A=P.A, W=torch.zeros(2, 2, dtype=torch.float64), U=P.U, b=P.b, V=P.V, c=P.c, dt=0.1
        ),
        ValueError,
        "W: expected shape",
    ),
    (
        "params-b-dtype",
        lambda: nt.NRNNParams(A=P.A, W=P.W, U=P.U, b=P.b.float(), V=P.V, c=P.c, dt=0.1),
        TypeError,
        "b: expected dtype",
    ),
    (
        "params-V-nan",
        lambda: nt.NRNNParams(A=P.A, W=P.W, U=P.U, b=P.b, V=P.V * float("nan"), c=P.c, dt=0.1),
        ValueError,
        "V: expected finite",
    ),
    (
        "params-A-int",
        lambda: nt.NRNNParams(
            A=torch.zeros(3, 3, dtype=torch.int64), W=P.W, U=P.U, b=P.b, V=P.V, c=P.c, dt=0.1
        ),
        TypeError,
        "A: expected a floating",
    ),
    (
        "params-alpha-inf",
        lambda: nt.NRNNParams(A=P.A, W=P.W, U=P.U, b=P.b, V=P.V, c=P.c, dt=0.1, alpha=float("inf")),
        ValueError,
        "alpha",
    ),
    # states, steps, etas
    (
        "rollout-h0-shape",
        lambda: nt.rollout(P, XS, h0=torch.zeros(2, 4, dtype=torch.float64)),
        ValueError,
        "h0: expected shape",
    ),
    (
        "rollout-h0-batch",
        lambda: nt.rollout(P, XS, h0=torch.zeros(3, 3, dtype=torch.float64)),
        ValueError,
        "h0: expected shape",
    ),
    ("rollout-h0-nan", lambda: nt.rollout(P, XS, h0=H0 * float("nan")), ValueError, "h0"),
    (
        "rollout-eta-without-noise",
        lambda: nt.rollout(P, XS, eta=torch.zeros(2, 4, 3)),
        ValueError,
        "eta",
    ),
    (
        "rollout-eta-shape",
        lambda: nt.rollout(P, XS, noise=NOISE, eta=torch.zeros(2, 4, 5, dtype=torch.float64)),
        ValueError,
        "eta: expected shape",
    ),
    (
        "step-h-shape",
        lambda: nt.step(P, torch.zeros(2, 5, dtype=torch.float64), XS[:, 0]),
        ValueError,
        "h",
    ),
    (
        "step-x-shape",
        lambda: nt.step(P, H0, torch.zeros(2, 3, dtype=torch.float64)),
        ValueError,
        "x",
    ),
    ("drift-params", lambda: nt.drift(None, H0, XS[:, 0]), TypeError, "params"),
    (
        "readout-h-shape",
        lambda: nt.readout(P, torch.zeros(2, 4, dtype=torch.float64)),
        ValueError,
        "h",
    ),
    (
        "state_jacobian-h-int",
        lambda: nt.state_jacobian(P, torch.zeros(2, 3, dtype=torch.int64), XS[:, 0]),
        TypeError,
        "h",
    ),
    ("diffusion-noise-none", lambda: nt.diffusion(P, H0, None), ValueError, "noise"),
    (
        "noise_matrix-x-shape",
        lambda: nt.noise_matrix(P, H0, torch.zeros(2, 2, dtype=torch.float64), NOISE),
        ValueError,
        "x",
    ),
    # labels
    (
        "explicit_regularizer-labels-range",
        lambda: nt.explicit_regularizer(P, XS, torch.tensor([0, 5]), NOISE),
        ValueError,
        "labels",
    ),
    (
        "explicit_regularizer-labels-float",
        lambda: nt.explicit_regularizer(P, XS, torch.tensor([0.0, 1.0]), NOISE),
        TypeError,
        "labels",
    ),
    (
        "explicit_regularizer-labels-len",
        lambda: nt.explicit_regularizer(P, XS, torch.tensor([0, 1, 1]), NOISE),
        ValueError,
        "labels",
    ),
    (
        "accuracy-labels-neg",
        lambda: nt.accuracy(P, XS, torch.tensor([0, -1])),
        ValueError,
        "labels",
    ),
    (
        "certified_margin-labels-len",
        lambda: nt.certified_margin(P, XS, torch.tensor([1])),
        ValueError,
        "labels",
    ),
    ("score_margin-1-class", lambda: nt.score_margin(torch.zeros(2, 1)), ValueError, "scores"),
    (
        "score_margin-nan",
        lambda: nt.score_margin(torch.tensor([[float("nan"), 0.0]])),
        ValueError,
        "scores",
    ),
    ("score_margin-list", lambda: nt.score_margin([[1.0, 0.0]]), TypeError, "scores"),
    # integer options
    ("accuracy-batch0", lambda: nt.accuracy(P, XS, YS, batch_size=0), ValueError, "batch_size"),
    (
        "accuracy-batch-float",
        lambda: nt.accuracy(P, XS, YS, batch_size=1.5),
        TypeError,
        "batch_size",
    ),
    ("lyapunov-k0", lambda: nt.lyapunov_spectrum(P, XS, k=0, generator=G()), ValueError, "k"),
    (
        "lyapunov-k-too-big",
        lambda: nt.lyapunov_spectrum(P, XS, k=4, generator=G()),
        ValueError,
        "k",
    ),
    (
        "lyapunov-transient-neg",
        lambda: nt.lyapunov_spectrum(P, XS, transient=-1, generator=G()),
        ValueError,
        "transient",
    ),
    (
        "lyapunov-transient-all",
        lambda: nt.lyapunov_spectrum(P, XS, transient=4, generator=G()),
        ValueError,
        "transient",
    ),
    (
        "lyapunov-reortho0",
        lambda: nt.lyapunov_spectrum(P, XS, reortho_every=0, generator=G()),
        ValueError,
        "reortho_every",
    ),
    (
        "lyapunov-qr-bad",
        lambda: nt.lyapunov_spectrum(P, XS, qr="lu", generator=G()),
        ValueError,
        "qr",
    ),
    (
        "lyapunov-empty-batch",
        lambda: nt.lyapunov_spectrum(P, XS[:0], generator=G()),
        ValueError,
        "xs",
    ),
    (
        "lyapunov-float16",
        lambda: nt.lyapunov_spectrum(
            _P(dtype=torch.float16), XS.half(), generator=torch.Generator().manual_seed(0)
        ),
        TypeError,
        "dtype|float16",
    ),
    ("jsn-max_iter0", lambda: nt.jacobian_spectral_norm(P, XS, max_iter=0), ValueError, "max_iter"),
    ("jsn-rtol-neg", lambda: nt.jacobian_spectral_norm(P, XS, rtol=-1.0), ValueError, "rtol"),
    ("jsn-method", lambda: nt.jacobian_spectral_norm(P, XS, method="svd"), ValueError, "method"),
    (
        "jsn-gram-callable",
        lambda: nt.jacobian_spectral_norm(_model, XS, method="gram"),
        ValueError,
        "method",
    ),
    (
        "noise_gap-pairs0",
        lambda: nt.estimate_noise_gap(P, XS, YS, NOISE, n_pairs=0, generator=G()),
        ValueError,
        "n_pairs",
    ),
    (
        "noise_gap-noise-none",
        lambda: nt.estimate_noise_gap(P, XS, YS, None, n_pairs=2, generator=G()),
        ValueError,
        "noise",
    ),
    (
        "explicit_reg-method",
        lambda: nt.explicit_regularizer(P, XS, YS, NOISE, method="exact"),
        ValueError,
        "method",
    ),
    (
        "explicit_reg-loss",
        lambda: nt.explicit_regularizer(P, XS, YS, NOISE, loss="hinge"),
        ValueError,
        "loss",
    ),
    (
        "regularizer_penalty-weight-nan",
        lambda: nt.regularizer_penalty(P, XS, YS, NOISE, weight=float("nan")),
        ValueError,
        "weight",
    ),
    (
        "regularizer_penalty-weight-str",
        lambda: nt.regularizer_penalty(P, XS, YS, NOISE, weight="1"),
        TypeError,
        "weight",
    ),
    (
        "continuous_reg-substeps0",
        lambda: nt.continuous_regularizer(P, XS, YS, NOISE, n_substeps=0),
        ValueError,
        "n_substeps",
    ),
    (
        "continuous_reg-solver",
        lambda: nt.continuous_regularizer(P, XS, YS, NOISE, solver="x"),
        ValueError,
        "solver",
    ),
    (
        "convergence-refinements",
        lambda: nt.regularizer_convergence(P, XS, YS, NOISE, refinements=(0, 1)),
        ValueError,
        "refinements",
    ),
    ("margin_growth-nan", lambda: nt.margin_growth(float("nan"), 3), ValueError, "rho"),
    ("margin_growth-neg", lambda: nt.margin_growth(-1.0, 3), ValueError, "rho"),
    ("margin_growth-steps0", lambda: nt.margin_growth(0.5, 0), ValueError, "n_steps"),
    ("margin_growth-steps-float", lambda: nt.margin_growth(0.5, 2.0), TypeError, "n_steps"),
    (
        "certified_margin-one_sided",
        lambda: nt.certified_margin(P, XS, one_sided="x"),
        ValueError,
        "one_sided",
    ),
    (
        "check_stability-condition",
        lambda: nt.check_stability(P, condition="x"),
        ValueError,
        "condition",
    ),
    ("check_stability-noise", lambda: nt.check_stability(P, noise=1.0), TypeError, "noise"),
    ("check_stability-params", lambda: nt.check_stability("P"), TypeError, "params"),
    (
        "step_norm_bound-one_sided",
        lambda: nt.step_norm_bound(P, one_sided="x"),
        ValueError,
        "one_sided",
    ),
    ("one_sided_constant-method", lambda: nt.one_sided_constant(P, "x"), ValueError, "method"),
    (
        "min_noise-structure",
        lambda: nt.minimal_stabilizing_noise(P, structure="full"),
        ValueError,
        "structure",
    ),
    (
        "min_noise-target-nan",
        lambda: nt.minimal_stabilizing_noise(P, target_rate=float("nan")),
        ValueError,
        "target_rate",
    ),
    (
        "stability_report-n_steps0",
        lambda: nt.stability_report(P, n_steps=0, generator=G()),
        ValueError,
        "n_steps",
    ),
    (
        "stability_report-k0",
        lambda: nt.stability_report(P, k=0, n_steps=5, generator=G()),
        ValueError,
        "k",
    ),
    ("kaplan_yorke-empty", lambda: nt.kaplan_yorke_dimension([]), ValueError, "exponents"),
    (
        "kaplan_yorke-nan",
        lambda: nt.kaplan_yorke_dimension([float("nan"), 1.0]),
        ValueError,
        "exponents",
    ),
    ("kaplan_yorke-str", lambda: nt.kaplan_yorke_dimension("ab"), TypeError, "exponents"),
    (
        "conventions-dt0",
        lambda: nt.paper_code_to_sde(nt.NoiseSpec.paper_code(add=0.1), 0.0),
        ValueError,
        "dt",
    ),
    ("conventions-noise", lambda: nt.sde_to_paper_code(None, 0.1), TypeError, "noise"),
    # perturbations
    ("white_noise-sigma-neg", lambda: nt.white_noise(XS, -0.1), ValueError, "sigma"),
    ("white_noise-sigma-nan", lambda: nt.white_noise(XS, float("nan")), ValueError, "sigma"),
    ("white_noise-xs-list", lambda: nt.white_noise([1.0], 0.1), TypeError, "xs"),
    (
        "white_noise-bounds",
        lambda: nt.white_noise(XS, 0.1, bounds=(1.0, 0.0)),
        ValueError,
        "bounds",
    ),
    ("mult_noise-sigma-neg", lambda: nt.multiplicative_noise(XS, -1.0), ValueError, "sigma"),
    ("salt-alpha-big", lambda: nt.salt_and_pepper(XS, 1.5), ValueError, "alpha"),
    ("salt-alpha-nan", lambda: nt.salt_and_pepper(XS, float("nan")), ValueError, "alpha"),
    (
        "salt-low-high",
        lambda: nt.salt_and_pepper(XS, 0.1, low=1.0, high=0.0),
        ValueError,
        "low|high",
    ),
    ("perturb-name", lambda: nt.perturb("rain", XS, 0.1), ValueError, "name"),
    ("perturb-strength-neg", lambda: nt.perturb("white_noise", XS, -1.0), ValueError, "strength"),
    ("perturbation_norm-norm", lambda: nt.perturbation_norm(XS, "l3"), ValueError, "norm"),
    ("perturbation_norm-list", lambda: nt.perturbation_norm([1.0], "l2"), TypeError, "delta"),
    # attacks
    ("fgsm-eps-neg", lambda: nt.fgsm(P, XS, YS, eps=-0.1), ValueError, "eps"),
    ("fgsm-eps-nan", lambda: nt.fgsm(P, XS, YS, eps=float("nan")), ValueError, "eps"),
    ("fgsm-norm", lambda: nt.fgsm(P, XS, YS, eps=0.1, norm="l3"), ValueError, "norm"),
    ("fgsm-loss", lambda: nt.fgsm(P, XS, YS, eps=0.1, loss="hinge"), ValueError, "loss"),
    ("pgd-steps0", lambda: nt.pgd(P, XS, YS, eps=0.1, steps=0), ValueError, "steps"),
    (
        "pgd-step_size-neg",
        lambda: nt.pgd(P, XS, YS, eps=0.1, step_size=-1.0),
        ValueError,
        "step_size",
    ),
    ("pgd-bounds", lambda: nt.pgd(P, XS, YS, eps=0.1, bounds=(1.0, -1.0)), ValueError, "bounds"),
    ("pgd-model-str", lambda: nt.pgd("m", XS, YS, eps=0.1), TypeError, "model"),
    ("deepfool-max_iter0", lambda: nt.deepfool(P, XS, YS, max_iter=0), ValueError, "max_iter"),
    (
        "deepfool-overshoot-neg",
        lambda: nt.deepfool(P, XS, YS, overshoot=-1.0),
        ValueError,
        "overshoot",
    ),
    ("deepfool-norm", lambda: nt.deepfool(P, XS, YS, norm="l1"), ValueError, "norm"),
    (
        "minimal_perturbation-method",
        lambda: nt.minimal_perturbation(P, XS, YS, method="cw"),
        ValueError,
        "method",
    ),
    (
        "minimal_perturbation-labels",
        lambda: nt.minimal_perturbation(P, XS, torch.tensor([0, 9])),
        ValueError,
        "labels",
    ),
    (
        "robustness_sweep-draws0",
        lambda: nt.robustness_sweep(P, XS, YS, n_draws=0),
        ValueError,
        "n_draws",
    ),
    (
        "robustness_sweep-perturbation",
        lambda: nt.robustness_sweep(P, XS, YS, perturbations=("rain",)),
        ValueError,
        "perturbations",
    ),
    ("comparison_table-empty", lambda: nt.comparison_table([]), ValueError, "sweeps"),
    ("comparison_table-type", lambda: nt.comparison_table(3), TypeError, "sweeps"),
    # flatness / objectives
    (
        "hessian_trace-probes0",
        lambda: nt.estimate_hessian_trace(_quad_loss, W, n_probes=0, generator=G()),
        ValueError,
        "n_probes",
    ),
    (
        "hessian_trace-params-list",
        lambda: nt.estimate_hessian_trace(_quad_loss, [1.0], generator=G()),
        TypeError,
        "params",
    ),
    (
        "hessian_trace-loss",
        lambda: nt.estimate_hessian_trace(3, W, generator=G()),
        TypeError,
        "loss_fn",
    ),
    (
        "hessian_eigenvalues-k0",
        lambda: nt.hessian_eigenvalues(_quad_loss, W, k=0, generator=G()),
        ValueError,
        "k",
    ),
    (
        "hessian_eigenvalues-which",
        lambda: nt.hessian_eigenvalues(_quad_loss, W, which="x", generator=G()),
        ValueError,
        "which",
    ),
    ("hessian-method", lambda: nt.hessian(_quad_loss, W, method="x"), ValueError, "method"),
    (
        "hessian-max_params",
        lambda: nt.hessian(_quad_loss, W, max_params=2),
        ValueError,
        "max_params",
    ),
    (
        "hvp-vector-shape",
        lambda: nt.hvp(_quad_loss, W, torch.ones(4, dtype=torch.float64)),
        ValueError,
        "vector",
    ),
    (
        "slq-steps0",
        lambda: nt.estimate_spectral_density(_quad_loss, W, n_steps=0, generator=G()),
        ValueError,
        "n_steps",
    ),
    ("params_to_vector-empty", lambda: nt.params_to_vector({}), ValueError, "params"),
    (
        "vector_to_params-size",
        lambda: nt.vector_to_params(torch.ones(5, dtype=torch.float64), W),
        ValueError,
        "vector",
    ),
    (
        "margin_summary-shapes",
        lambda: nt.margin_summary(torch.ones(3), torch.ones(2)),
        ValueError,
        "empirical|certified",
    ),
    (
        "margin_summary-tight",
        lambda: nt.margin_summary(torch.ones(2), torch.ones(2), tight_factor=0.0),
        ValueError,
        "tight_factor",
    ),
    ("format_comparison_table-type", lambda: nt.format_comparison_table(3), TypeError, "table"),
    (
        "certified_radius-norm",
        lambda: nt.certified_radius(P, XS, YS, norm="l3"),
        ValueError,
        "norm",
    ),
    (
        "certified_radius-method",
        lambda: nt.certified_radius(P, XS, YS, method="x"),
        ValueError,
        "method",
    ),
    (
        "logit_bounds-radius-neg",
        lambda: nt.logit_difference_bounds(P, XS, YS, radius=-1.0),
        ValueError,
        "radius",
    ),
]

EMPTY_BATCH = {  # functions that cannot give a meaningful result on no examples
    "noise_gap": lambda: nt.estimate_noise_gap(P, XS[:0], YS[:0], NOISE, n_pairs=2, generator=G()),
    "nrnn_loss": lambda: nt.nrnn_loss(P, XS[:0], YS[:0]),
    "regularizer_penalty": lambda: nt.regularizer_penalty(P, XS[:0], YS[:0], NOISE),
    "certified_margin": lambda: nt.certified_margin(P, XS[:0]),
    "input_output_jacobian": lambda: nt.input_output_jacobian(P, XS[:0]),
    "jacobian_spectral_norm": lambda: nt.jacobian_spectral_norm(P, XS[:0]),
    "local_margin_estimate": lambda: nt.local_margin_estimate(P, XS[:0]),
    "accuracy": lambda: nt.accuracy(P, XS[:0], YS[:0]),
    "pgd": lambda: nt.pgd(P, XS[:0], YS[:0], eps=0.1),
    "deepfool": lambda: nt.deepfool(P, XS[:0], YS[:0]),
    "robustness_sweep": lambda: nt.robustness_sweep(P, XS[:0], YS[:0], n_draws=1),
    "stability_report": lambda: nt.stability_report(P, XS[:0], n_steps=5, generator=G()),
}

P16, XS16 = _P(dtype=torch.float16), XS.half()
HALF = {  # algorithms without half-precision kernels: a TypeError naming the dtype
    "jacobian_spectral_norm-gram": lambda: nt.jacobian_spectral_norm(P16, XS16, method="gram"),
    "state_jacobian_norms": lambda: nt.state_jacobian_norms(P16, XS16),
    "hidden_state_hessian": lambda: nt.hidden_state_hessian(P16, XS16, YS),
    "lyapunov_spectrum-bf16": lambda: nt.lyapunov_spectrum(
        _P(dtype=torch.bfloat16), XS.bfloat16(), generator=G()
    ),
}

API_CASES = (
    [(f"{k}-half", c, TypeError, "expected float32 or float64") for k, c in HALF.items()]
    + _api_cases()
    + [(c[0], c[1], c[2], c[3]) for c in SPECIFIC]
    + [
        (f"{k}-empty-batch", c, ValueError, "xs: expected at least one")
        for k, c in EMPTY_BATCH.items()
    ]
)


def test_empty_batches_that_have_an_answer_get_an_empty_one():
    for fn in (nt.white_noise, nt.multiplicative_noise, nt.salt_and_pepper):
        out = fn(XS[:0], 0.1, generator=G())
        assert out.shape == (0, 4, 1), fn.__name__
    assert nt.rollout(P, XS[:0]).shape == (0, 3)
    assert nt.score_margin(torch.zeros(0, 2)).shape == (0,)


@pytest.mark.parametrize(
    "call, exc, pattern", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_bad_api_input_is_a_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert type(info.value) is exc or issubclass(type(info.value), exc)
    assert "\n" not in str(info.value).strip() or len(str(info.value)) < 2000


def test_the_api_catalogue_is_large_enough():
    assert len(API_CASES) >= 150, len(API_CASES)


# ------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny trained checkpoint (one epoch on digits)."""
    out = tmp_path_factory.mktemp("ck") / "run"
    argv = ["train", "--task", "digits", "--hidden", "4", "--epochs", "1", "--quiet"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    return out


CK = "{ck}"
CLI_CASES = [
    # (id, argv with {ck}/{tmp} placeholders, pattern naming the option)
    ("demo-hidden0", ["demo", "--hidden", "0"], "--hidden"),
    ("demo-hidden-neg", ["demo", "--hidden", "-3"], "--hidden"),
    ("demo-examples0", ["demo", "--examples", "0"], "--examples"),
    ("demo-dt-neg", ["demo", "--dt", "-1"], "dt"),
    ("demo-dt-nan", ["demo", "--dt", "nan"], "dt"),
    ("demo-dt-inf", ["demo", "--dt", "inf"], "dt"),
    ("train-device", ["train", "--device", "bogus", "--out", "{tmp}/a"], "--device"),
    ("train-device-cuda", ["train", "--device", "cuda:7", "--out", "{tmp}/a"], "device"),
    ("train-epochs0", ["train", "--epochs", "0", "--out", "{tmp}/a"], "epochs"),
    ("train-lr0", ["train", "--lr", "0", "--out", "{tmp}/a"], "lr"),
    ("train-lr-nan", ["train", "--lr", "nan", "--out", "{tmp}/a"], "lr"),
    ("train-hidden0", ["train", "--hidden", "0", "--out", "{tmp}/a"], "hidden"),
    ("train-batch0", ["train", "--batch-size", "0", "--out", "{tmp}/a"], "batch"),
    ("train-task", ["train", "--task", "nope", "--out", "{tmp}/a"], "task"),
    ("train-out-existing", ["train", "--out", "{tmp}/full"], "refusing to overwrite"),
    ("train-out-under-file", ["train", "--out", "{tmp}/file.txt/run"], "file.txt"),
    ("train-resume-foreign", ["train", "--resume", "{tmp}/full"], "checkpoint"),
    ("train-resume-and-out", ["train", "--resume", CK, "--out", "{tmp}/b"], "--out"),
    ("train-add-neg", ["train", "--add", "-1", "--out", "{tmp}/a"], "add"),
    ("margins-missing", ["margins", "{tmp}/none"], "none"),
    ("margins-device", ["margins", CK, "--device", "bogus"], "--device"),
    ("margins-examples0", ["margins", CK, "--examples", "0"], "--examples"),
    ("margins-examples-neg", ["margins", CK, "--examples", "-2"], "--examples"),
    ("margins-split", ["margins", CK, "--split", "nope"], "split"),
    ("margins-task", ["margins", CK, "--task", "ucr:BasicMotions"], "checkpoint"),
    ("margins-folder", ["margins", "{tmp}/full"], "checkpoint"),
    ("margins-file", ["margins", "{tmp}/file.txt"], "file.txt"),
    ("robustness-missing", ["robustness", "{tmp}/none"], "none"),
    ("robustness-perturbation", ["robustness", CK, "--perturbations", "rain"], "--perturbations"),
    ("robustness-device", ["robustness", CK, "--device", "bogus"], "--device"),
    ("robustness-examples0", ["robustness", CK, "--examples", "0"], "--examples"),
    ("robustness-draws0", ["robustness", CK, "--draws", "0", "--examples", "4"], "draws"),
    ("robustness-plot-exists", ["robustness", CK, "--plot", "{tmp}/fig.png"], "--plot"),
    ("robustness-plot-suffix", ["robustness", CK, "--plot", "{tmp}/fig.jpg"], "--plot"),
    ("robustness-plot-folder", ["robustness", CK, "--plot", "{tmp}/nodir/fig.png"], "--plot"),
    ("robustness-plot-is-dir", ["robustness", CK, "--plot", "{tmp}/full.png"], "--plot"),
    ("analyse-nothing", ["analyse", CK], "at least one|--regularizer|--flatness"),
    ("analyse-missing", ["analyse", "{tmp}/none", "--flatness"], "none"),
    ("analyse-device", ["analyse", CK, "--flatness", "--device", "bogus"], "--device"),
    ("analyse-examples0", ["analyse", CK, "--flatness", "--examples", "0"], "--examples"),
    ("analyse-probes0", ["analyse", CK, "--flatness", "--probes", "0"], "probes"),
    ("analyse-topk0", ["analyse", CK, "--flatness", "--top-k", "0"], "top-k|k"),
    ("certify-missing", ["certify", "{tmp}/none"], "none"),
    ("certify-device", ["certify", CK, "--device", "bogus"], "--device"),
    ("certify-examples0", ["certify", CK, "--examples", "0"], "--examples"),
    ("reproduce-device", ["reproduce", "--device", "bogus", "--out", "{tmp}/r"], "--device"),
    ("reproduce-threads", ["reproduce", "--threads", "-1", "--out", "{tmp}/r"], "--threads"),
    ("reproduce-out-foreign", ["reproduce", "--preset", "smoke", "--out", "{tmp}/full"], "out"),
    (
        "reproduce-out-file",
        ["reproduce", "--preset", "smoke", "--out", "{tmp}/file.txt"],
        "file.txt",
    ),
    (
        "reproduce-resume-other",
        ["reproduce", "--preset", "smoke", "--resume", "--out", "{tmp}/full"],
        "out",
    ),
]


@pytest.fixture
def cli_tmp(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    (tmp_path / "full.png").mkdir()
    (tmp_path / "file.txt").write_text("keep")
    (tmp_path / "fig.png").write_bytes(b"keep")
    # (no read-only-folder case: the tests run as root here, which ignores folder
    # permissions; an uncreatable output is covered by "train-out-under-file")
    return tmp_path


def _snapshot(root):
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_is_one_line_exit_2_and_writes_nothing(argv, pattern, ckpt, cli_tmp, capsys):
    argv = [a.replace("{ck}", str(ckpt)).replace("{tmp}", str(cli_tmp)) for a in argv]
    before = _snapshot(cli_tmp)
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # a usage error found by argparse
        code = exc.code
    out = capsys.readouterr()
    assert code == 2, (code, out.err)
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nrnn {argv[0]}: error: "), out.err
    assert "Traceback" not in out.err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert _snapshot(cli_tmp) == before  # nothing written, nothing overwritten


def test_the_cli_catalogue_is_large_enough():
    assert len(CLI_CASES) >= 50, len(CLI_CASES)


def test_debug_shows_the_traceback_and_keyboard_interrupt_is_130(monkeypatch, capsys):
    with pytest.raises(ValueError, match="--hidden"):
        cli_main(["--debug", "demo", "--hidden", "0"])
    from nrnn_theory._cli import demo

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run", interrupted)
    assert cli_main(["demo"]) == 130
    assert capsys.readouterr().err.strip() == "nrnn demo: interrupted"


def test_an_unexpected_error_is_one_line_too(monkeypatch, capsys):
    from nrnn_theory._cli import demo

    def buggy(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(demo, "run", buggy)
    assert cli_main(["demo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ZeroDivisionError: boom" in err[0]
    assert "--debug" in err[0]
