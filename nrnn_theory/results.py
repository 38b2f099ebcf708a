"""Frozen result records returned by the analysis functions.

Each carries what is needed to trust it (standard errors, sample counts, the
convention and assumptions used) and converts to plain JSON-ready data with
:meth:`Result.to_dict`. Tensors are converted to nested lists of floats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


__all__ = [
    "Certificate",
    "ComparisonTable",
    "ContinuousRegularizer",
    "ConventionMapping",
    "EmpiricalMargin",
    "ExplicitRegularizer",
    "FitHistory",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "JacobianNorm",
    "LocalMarginEstimate",
    "LyapunovSpectrum",
    "MarginCertificate",
    "MarginSummary",
    "NoiseGapEstimate",
    "RegularizerConvergence",
    "Result",
    "RobustnessCurve",
    "RobustnessSweep",
    "SpectralDensity",
    "StabilityReport",
    "StabilizingNoise",
    "StateJacobianNorms",
    "TraceEstimate",
    "to_jsonable",
]


def to_jsonable(value: Any) -> Any:
    """Convert tensors, arrays, dataclasses and containers to JSON-ready Python data.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` so
    the output is strict JSON.

    Examples
    --------
    >>> to_jsonable({"a": torch.tensor([1.0, float("inf")]), "b": (1, 2)})
    {'a': [1.0, 'inf'], 'b': [1, 2]}
    """
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Result:
    """Base class of result records: frozen, with a JSON-ready :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready Python data (see :func:`to_jsonable`)."""
        return to_jsonable(self)


@dataclass(frozen=True)
class ConventionMapping(Result):
    r"""How a ``"paper_code"`` noise corresponds to an Euler-Maruyama (``"sde"``) one.

    Attributes
    ----------
    source, target : NoiseSpec
        The ``"paper_code"`` spec and the ``"sde"`` spec matching its additive part
        exactly in law (:math:`\epsilon\sigma_1 = a/\sqrt{\Delta t}`).
    dt : float
        Time step used by the mapping.
    drift_scale : float
        :math:`1 - \mu/2`: the mean of the multiplicative factor. The noisy
        ``"paper_code"`` chain moves with mean step :math:`(1-\mu/2)\,d`.
    drift_variance : float
        :math:`\mu^2/12`: the variance of the multiplicative factor; one step's
        covariance gains :math:`\tfrac{\mu^2}{12}\mathrm{diag}(d\odot f)^2`, i.e.
        :math:`\tfrac{\mu^2\Delta t}{12}\mathrm{diag}(f)^2` per unit time.
    exact : bool
        True when :math:`\mu = 0`: the two conventions then agree in law.
    note : str
        What is not reproduced, in words.
    """

    source: Any
    target: Any
    dt: float
    drift_scale: float
    drift_variance: float
    exact: bool
    note: str


@dataclass(frozen=True)
class FitHistory(Result):
    """What a training run (:func:`nrnn_theory.train.fit`) did, epoch by epoch.

    Attributes
    ----------
    records : tuple of dict
        One per completed epoch: ``epoch``, ``lr``, ``train_loss`` and
        ``train_accuracy`` (on the training batches, with the training noise),
        ``val_loss`` and ``val_accuracy`` (clean, ``None`` without a validation
        split), ``steps`` (optimizer steps so far) and ``seconds`` (of that epoch).
    test_loss, test_accuracy : float or None
        Clean cross-entropy and accuracy on the test split after the last epoch
        (``None`` if the run was interrupted).
    epochs : int
        Epochs completed.
    steps : int
        Optimizer steps completed.
    seconds : float
        Wall time of this call (a resumed run counts only its own part).
    task : str
        Task name.
    model : dict
        The model configuration (:func:`nrnn_theory.train.model_config`).
    device : str
        Device trained on.
    world_size : int
        Number of processes (DistributedDataParallel); 1 without.
    seed : int
        Seed of the shuffling and of the training noise.
    interrupted : bool
        True when the run stopped early (``stop_after_steps``).
    out_dir : str or None
        Run directory with ``history.jsonl`` and the checkpoints.
    """

    records: tuple[dict[str, Any], ...]
    test_loss: float | None
    test_accuracy: float | None
    epochs: int
    steps: int
    seconds: float
    task: str
    model: dict[str, Any]
    device: str
    world_size: int
    seed: int
    interrupted: bool = False
    out_dir: str | None = None

    @property
    def best_val_accuracy(self) -> float | None:
        """Highest validation accuracy over the epochs (``None`` without validation)."""
        vals = [r["val_accuracy"] for r in self.records if r.get("val_accuracy") is not None]
        return max(vals) if vals else None


# ------------------------------------------------------------------ margins (THEORY.md §8)
@dataclass(frozen=True)
class JacobianNorm(Result):
    r"""Spectral norm of the input-output Jacobian :math:`J(x) = \partial s/\partial x`.

    :math:`J(x)` has shape (C, T*D) per example: the logits against the whole input
    sequence. Not a certificate (THEORY.md §8): it holds at ``x`` only, and power
    iteration approaches :math:`\|J\|_2` from below.

    Attributes
    ----------
    norm : Tensor, shape (B,)
        :math:`\|J(x)\|_2` (largest singular value), in the inputs' dtype.
    residual : Tensor, shape (B,)
        :math:`\|JJ^\top u - \lambda u\|_2` at the final unit iterate ``u``, with
        :math:`\lambda` its Rayleigh quotient (an eigenvalue of :math:`JJ^\top` lies
        within it). Zero for ``method="gram"``.
    converged : Tensor, shape (B,), bool
        Whether the relative change of :math:`\lambda` fell below ``rtol``.
    n_iter : int
        Iterations run (products with :math:`JJ^\top`); 0 for ``method="gram"``.
    method : str
        ``"power"`` (JVP/VJP power iteration) or ``"gram"`` (exact C x C Gram matrix).
    """

    norm: Any
    residual: Any
    converged: Any
    n_iter: int
    method: str


@dataclass(frozen=True)
class MarginCertificate(Result):
    r"""Certified lower bound on the :math:`\ell_2` input margin, per example (THEORY.md §8).

    For every class :math:`j \ne y` the score gap :math:`s_y - s_j` is globally
    :math:`L_j`-Lipschitz in the input sequence, with

    .. math:: L_j = \|(e_y - e_j)^\top V\|_2\,\max_i|s_i|\,\|U\|_2
              \Big(\sum_{k<M}\rho^{2(M-1-k)}\Big)^{1/2},

    so no perturbation of :math:`\ell_2` norm below
    :math:`\min_j (s_y - s_j)/L_j` changes the prediction away from ``y``.

    Attributes
    ----------
    radius : Tensor, shape (B,), float64
        The certified radius; 0 where ``y`` is not the predicted class.
    score_margin : Tensor, shape (B,), float64
        :math:`s_y - \max_{j\ne y}s_j` of the clean model, computed in float64.
    labels : Tensor, shape (B,)
        The class ``y`` certified (the prediction unless labels were given).
    runner_up : Tensor, shape (B,)
        The class ``j`` attaining the minimum.
    lipschitz : Tensor, shape (B, C), float64
        :math:`L_j`; ``inf`` at ``j = y``.
    rho : float
        Bound on :math:`\|\tilde J_k\|_2` over every trajectory (THEORY.md §9(f)).
    rho_terms : dict
        The candidate forms of :math:`\rho` and the quantities entering them.
    step_max : float
        :math:`\max_i|s_i|` of the drift step (``dt`` or the per-unit ``step``).
    U_norm : float
        :math:`\|U\|_2`.
    n_steps : int
        Sequence length :math:`M`.
    growth : float
        :math:`(\sum_{k<M}\rho^{2(M-1-k)})^{1/2}`.
    method, certified, dtype, assumptions : str, bool, str, str
        What was computed, that it is a certificate, the arithmetic, and the
        assumptions in words.
    """

    radius: Any
    score_margin: Any
    labels: Any
    runner_up: Any
    lipschitz: Any
    rho: float
    rho_terms: dict
    step_max: float
    U_norm: float
    n_steps: int
    growth: float
    method: str
    certified: bool
    dtype: str
    assumptions: str


@dataclass(frozen=True)
class LocalMarginEstimate(Result):
    r"""First-order (linearized) margin at ``x``: **not certified** (THEORY.md §8).

    .. math:: \hat\gamma(x) = \min_{j\ne y}\frac{s_y(x) - s_j(x)}
              {\|\nabla_x(s_y - s_j)(x)\|_2}

    It equals the exact :math:`\ell_2` margin for an affine model and is the
    distance of DeepFool's first step; for a nonlinear model it is neither an upper
    nor a lower bound.

    Attributes
    ----------
    estimate : Tensor, shape (B,)
    score_margin : Tensor, shape (B,)
    labels, runner_up : Tensor, shape (B,)
    pair_gradient_norm : Tensor, shape (B, C)
        :math:`\|\nabla_x(s_y - s_j)\|_2`; 0 at ``j = y``.
    certified : bool
        Always False.
    """

    estimate: Any
    score_margin: Any
    labels: Any
    runner_up: Any
    pair_gradient_norm: Any
    certified: bool


@dataclass(frozen=True)
class EmpiricalMargin(Result):
    r"""Smallest perturbation an attack found that changes the prediction, per example.

    Every finite ``distance`` belongs to a verified adversarial input
    (``perturbed``), so it is an upper bound on the true margin; a certified radius
    must never exceed it (THEORY.md §8).

    Attributes
    ----------
    distance : Tensor, shape (B,)
        Norm (``norm``) of ``perturbed - xs``; ``inf`` where no attack succeeded and
        0 where the label is already not the prediction.
    success : Tensor, shape (B,), bool
    perturbed : Tensor, shape (B, T, D)
        The adversarial inputs (the clean inputs where ``success`` is False).
    labels : Tensor, shape (B,)
        The classes the attack moved away from.
    lower : Tensor, shape (B,)
        Largest radius at which the bisection's attack failed: a bracket, **not** a
        certified bound (0 when no bisection ran).
    norm : str
        ``"l2"`` or ``"linf"``, over all T*D input values.
    method : str
    bounds : tuple of float or None
        Box the perturbed inputs were clipped to, if any.
    """

    distance: Any
    success: Any
    perturbed: Any
    labels: Any
    lower: Any
    norm: str
    method: str
    bounds: Any


@dataclass(frozen=True)
class MarginSummary(Result):
    r"""Distribution of certified and empirical margins over a test set.

    Attributes
    ----------
    n_examples : int
    certified_quantiles, empirical_quantiles, ratio_quantiles : dict
        Quantiles (``"min"``, ``"q10"``, ``"q25"``, ``"median"``, ``"q75"``, ``"q90"``,
        ``"max"``) and ``"mean"`` of the certified radii, of the empirical distances
        (finite ones) and of empirical / certified (where both are finite and the
        certified radius is positive).
    tight_factor : float
        The factor ``c`` of ``fraction_tight``.
    fraction_tight : float
        Fraction of examples with ``empirical <= c * certified`` and
        ``certified > 0``: the bound is tight within ``c``.
    n_violations : int
        Examples with ``certified > empirical``; a sound certificate gives 0.
    n_unbroken : int
        Examples no attack broke (empirical distance ``inf``).
    n_zero_certified : int
        Examples whose certified radius is 0 (e.g. misclassified).
    norm : str
    """

    n_examples: int
    certified_quantiles: dict
    empirical_quantiles: dict
    ratio_quantiles: dict
    tight_factor: float
    fraction_tight: float
    n_violations: int
    n_unbroken: int
    n_zero_certified: int
    norm: str


# ----------------------------------------------------------- robustness (THEORY.md §11)
@dataclass(frozen=True)
class RobustnessCurve(Result):
    r"""Accuracy against the strength of one input perturbation.

    Attributes
    ----------
    perturbation : str
        Registry name (:data:`nrnn_theory.robustness.PERTURBATIONS`).
    kind : str
        ``"noise"`` (random, drawn ``n_draws`` times) or ``"attack"``.
    strengths : Tensor, shape (S,), float64
    accuracy : Tensor, shape (S,), float64
        Accuracy averaged over the draws.
    ci_low, ci_high : Tensor, shape (S,), float64
        Confidence interval of each point (method in the sweep record).
    draws : Tensor, shape (R, S), float64
        Accuracy of each draw.
    clipped : bool
        Whether perturbed inputs were clipped to the data range.
    ci_method : str
        How ``ci_low``/``ci_high`` were computed
        (:data:`nrnn_theory.robustness.CI_METHODS`).
    """

    perturbation: str
    kind: str
    strengths: Any
    accuracy: Any
    ci_low: Any
    ci_high: Any
    draws: Any
    clipped: bool
    ci_method: str


@dataclass(frozen=True)
class RobustnessSweep(Result):
    r"""Accuracy-versus-strength curves of one model under several perturbations.

    Attributes
    ----------
    name : str
        Model name used in tables and figures.
    n_examples : int
    clean_accuracy : float
    clean_ci : tuple of float
    curves : tuple of RobustnessCurve
    n_draws : int
        Random draws per noise strength (attacks: one run, random starts seeded).
    confidence : float
    ci_method : str
    data_range : tuple of float
        ``(low, high)``: salt-and-pepper values and the clipping box.
    clip_noise, clip_attacks : bool
    attack : dict
        Attack settings (steps, loss, step-size rule, random start).
    seed : int or None
        ``initial_seed()`` of the generator passed, for the record.
    """

    name: str
    n_examples: int
    clean_accuracy: float
    clean_ci: tuple
    curves: tuple
    n_draws: int
    confidence: float
    ci_method: str
    data_range: tuple
    clip_noise: bool
    clip_attacks: bool
    attack: dict
    seed: int | None

    def curve(self, perturbation: str) -> RobustnessCurve:
        """The curve of one perturbation, by registry name."""
        for c in self.curves:
            if c.perturbation == perturbation:
                return c
        have = ", ".join(repr(c.perturbation) for c in self.curves)
        raise KeyError(f"perturbation: expected one of {have}, got {perturbation!r}")


@dataclass(frozen=True)
class ComparisonTable(Result):
    r"""Accuracy of several models under each perturbation and strength.

    Attributes
    ----------
    models : tuple of str
        Row labels.
    columns : tuple of (str, float)
        ``(perturbation, strength)``; the first is ``("clean", 0.0)``.
    accuracy, ci_low, ci_high : Tensor, shape (M, K), float64
        ``nan`` where a model was not evaluated on a column.
    confidence : float
    ci_method : str
    """

    models: tuple
    columns: tuple
    accuracy: Any
    ci_low: Any
    ci_high: Any
    confidence: float
    ci_method: str


@dataclass(frozen=True)
class ExplicitRegularizer(Result):
    r"""Exact small-noise regularizer of THEORY.md §6, per example.

    :math:`\hat Q` and :math:`\hat R` do not contain :math:`\epsilon^2`; the predicted
    noise gap is :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)` (see
    :func:`~nrnn_theory.explicit_regularizer` for how :math:`\epsilon` enters each
    convention). Tensors keep their autograd graph.

    Attributes
    ----------
    Q, R, total : Tensor, shape (B,)
        :math:`\hat Q = 2g^\top m_M`, :math:`\hat R = \mathrm{tr}(H_\ell\hat\Sigma_M)`, and
        their sum (the noise-space Hessian trace).
    noise_gap : Tensor, shape (B,)
        :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)`: predicted
        :math:`\mathbb E\,\ell(h_M) - \ell(\bar h_M)` around the reference chain.
    mean_shift : Tensor, shape (B,)
        :math:`\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)`, exact: reference (mean-step)
        chain minus inference chain; zero for ``"sde"``.
    predicted_gap : Tensor, shape (B,)
        ``mean_shift + noise_gap``: predicted train-minus-inference loss gap.
    reference_loss, clean_loss : Tensor, shape (B,)
        Loss of the reference chain and of the inference (clean) chain.
    per_step_Q, per_step_R : Tensor, shape (B, M), or None
        Contributions of the noise injected at each step (``method="adjoint"`` or
        ``"naive"``); rows sum to ``Q`` and ``R``.
    covariance : Tensor, shape (B, H, H), or None
        :math:`\hat\Sigma_M`, the covariance of the first-order state perturbation
        :math:`h^{(1)}_M` per unit :math:`\epsilon` (``method="forward"``).
    mean_correction : Tensor, shape (B, H), or None
        :math:`m_M = \mathbb E\,h^{(2)}_M`, the second-order mean shift of the state per
        unit :math:`\epsilon^2` (``method="forward"``).
    epsilon : float
    noise : NoiseSpec
    convention, structure, method, loss : str
    """

    Q: Any
    R: Any
    total: Any
    noise_gap: Any
    mean_shift: Any
    predicted_gap: Any
    reference_loss: Any
    clean_loss: Any
    per_step_Q: Any
    per_step_R: Any
    covariance: Any
    mean_correction: Any
    epsilon: float
    noise: Any
    convention: str
    structure: str
    method: str
    loss: str

    @property
    def Q_mean(self) -> torch.Tensor:
        """Batch mean of ``Q`` (0-dim, differentiable)."""
        return self.Q.mean()

    @property
    def R_mean(self) -> torch.Tensor:
        """Batch mean of ``R`` (0-dim, differentiable)."""
        return self.R.mean()

    @property
    def total_mean(self) -> torch.Tensor:
        """Batch mean of ``total`` (0-dim, differentiable)."""
        return self.total.mean()

    @property
    def predicted_gap_mean(self) -> torch.Tensor:
        """Batch mean of ``predicted_gap`` (0-dim, differentiable)."""
        return self.predicted_gap.mean()

    def to_dict(self) -> dict[str, Any]:
        """Fields plus the batch means, as JSON-ready data."""
        out = super().to_dict()
        for name in ("Q_mean", "R_mean", "total_mean", "predicted_gap_mean"):
            out[name] = float(getattr(self, name))
        return out


@dataclass(frozen=True)
class NoiseGapEstimate(Result):
    r"""Antithetic Monte Carlo estimate of the noisy-minus-clean loss (THEORY.md §6).

    Attributes
    ----------
    gap, stderr : Tensor, shape (B,)
        Per-example estimate of :math:`\mathbb E\,\ell_{\rm noisy} - \ell_{\rm clean}` (clean
        = inference chain) and its standard error; with the control variate when
        ``control_variate``.
    predicted : Tensor, shape (B,)
        Exact second-order prediction (``ExplicitRegularizer.predicted_gap``).
    plain_gap, plain_stderr : Tensor, shape (B,)
        The antithetic estimate without control variate.
    mean, mean_stderr, predicted_mean, plain_mean, plain_mean_stderr : float
        The same over the batch mean.
    n_pairs : int
        Antithetic pairs per example.
    epsilon : float
    noise : NoiseSpec
    convention, loss : str
    control_variate : bool
    """

    gap: Any
    stderr: Any
    predicted: Any
    plain_gap: Any
    plain_stderr: Any
    mean: float
    mean_stderr: float
    predicted_mean: float
    plain_mean: float
    plain_mean_stderr: float
    n_pairs: int
    epsilon: float
    noise: Any
    convention: str
    control_variate: bool
    loss: str

    @property
    def residual(self) -> torch.Tensor:
        r"""``gap - predicted`` (B,): the estimated :math:`O(\epsilon^4)` remainder."""
        return self.gap - self.predicted


@dataclass(frozen=True)
class ContinuousRegularizer(Result):
    r"""Continuous-time regularizer :math:`Q, R` of THEORY.md §5, per example.

    Attributes
    ----------
    Q, R, total, noise_gap : Tensor, shape (B,)
        :math:`Q = 2g^\top m_T`, :math:`R = \mathrm{tr}(H_\ell\Sigma_T)`, their sum and
        :math:`\tfrac{\epsilon^2}{2}(Q + R)`.
    loss_value : Tensor, shape (B,)
        :math:`\ell(\bar h_T)` of the ODE solution.
    horizon : float
        :math:`T = M\Delta t`.
    epsilon : float
    noise : NoiseSpec
    solver : str
    n_substeps : int
    loss : str
    """

    Q: Any
    R: Any
    total: Any
    noise_gap: Any
    loss_value: Any
    horizon: float
    epsilon: float
    noise: Any
    solver: str
    n_substeps: int
    loss: str


@dataclass(frozen=True)
class RegularizerConvergence(Result):
    r"""Discrete regularizer against its continuous limit at fixed horizon (THEORY.md §6).

    Attributes
    ----------
    dts : Tensor, shape (L,)
        Step sizes, coarse to fine.
    Q_hat, R_hat : Tensor, shape (L, B)
        Discrete values per level and example.
    Q, R : Tensor, shape (B,)
        Continuous-time values.
    error : Tensor, shape (L,)
        :math:`\max_b|\hat Q_b + \hat R_b - Q_b - R_b|` per level.
    order : float
        Least-squares slope of ``log(error)`` against ``log(dts)`` (about 1 expected).
    noise : NoiseSpec
    """

    dts: Any
    Q_hat: Any
    R_hat: Any
    Q: Any
    R: Any
    error: Any
    order: float
    noise: Any


# ----------------------------------------------------------------- flatness (THEORY.md §7)
@dataclass(frozen=True)
class TraceEstimate(Result):
    r"""A Hutchinson estimate of a Hessian trace (:func:`~nrnn_theory.estimate_hessian_trace`).

    Attributes
    ----------
    mean : float
        :math:`\frac1N\sum_j z_j^\top H z_j`.
    stderr : float
        Sample standard deviation over :math:`\sqrt N` (``nan`` when ``N = 1``).
    n_probes : int
        Probes used, ``N``.
    samples : Tensor, shape (N,)
        The individual :math:`z_j^\top H z_j`.
    block_means, block_stderrs : dict[str, float]
        Per-block estimates :math:`z_B^\top(Hz)_B` and their standard errors; the
        block samples sum to ``samples``.
    converged : bool or None
        Whether the ``rtol``/``atol`` stopping rule was met; ``None`` when none was set.
    n_params : int
        Dimension ``n`` of the parameter space.
    """

    mean: float
    stderr: float
    n_probes: int
    samples: Any
    block_means: dict
    block_stderrs: dict
    converged: bool | None
    n_params: int


@dataclass(frozen=True)
class HessianTrace(Result):
    """The exact Hessian trace (:func:`~nrnn_theory.hessian_trace`).

    Attributes
    ----------
    trace : float
    blocks : dict[str, float]
        Trace of each diagonal block; they sum to ``trace``.
    diagonal : Tensor, shape (n,)
        The Hessian's diagonal in the flat layout of
        :func:`~nrnn_theory.params_to_vector`.
    n_params : int
    n_hvps : int
        Hessian-vector products used (``n``).
    """

    trace: float
    blocks: dict
    diagonal: Any
    n_params: int
    n_hvps: int


@dataclass(frozen=True)
class HessianEigenvalues(Result):
    r"""Extreme Hessian eigenvalues (:func:`~nrnn_theory.hessian_eigenvalues`).

    Attributes
    ----------
    eigenvalues : Tensor, shape (k,)
        Descending for ``which="largest"`` or ``"magnitude"``, ascending for ``"smallest"``.
    residuals : Tensor, shape (k,)
        :math:`\|H y_i - \lambda_i y_i\|` for the unit Ritz vectors :math:`y_i`, computed
        with ``k`` extra products. By Weyl's bound each :math:`\lambda_i` lies within its
        residual of an exact eigenvalue.
    eigenvectors : Tensor, shape (k, n), or None
        Unit vectors in the flat layout, if requested.
    which : str
    method : str
        ``"lanczos"`` or ``"power"``.
    converged : bool
        Whether the tolerance was met within ``max_iter``.
    n_hvps : int
        Hessian-vector products used.
    n_params : int
    """

    eigenvalues: Any
    residuals: Any
    eigenvectors: Any
    which: str
    method: str
    converged: bool
    n_hvps: int
    n_params: int


@dataclass(frozen=True)
class SpectralDensity(Result):
    r"""A Hessian eigenvalue density by stochastic Lanczos quadrature.

    Returned by :func:`~nrnn_theory.estimate_spectral_density`.

    Attributes
    ----------
    nodes, weights : Tensor, shape (n_probes, n_steps)
        Gauss quadrature nodes (Ritz values) and weights (squared first components) per
        probe; each row of ``weights`` sums to 1.
    grid, density : Tensor, shape (n_grid,)
        The Gaussian-smoothed density :math:`\phi(t)`, which integrates to 1.
    bandwidth : float
        Kernel standard deviation :math:`\sigma`.
    moments, moment_stderrs : Tensor, shape (max_moment + 1,)
        Estimates of :math:`\mathrm{tr}(H^q)/n`, :math:`q = 0, 1, \dots`, and their standard
        errors over probes (``nan`` for one probe).
    n_probes, n_steps, n_params : int
    """

    nodes: Any
    weights: Any
    grid: Any
    density: Any
    bandwidth: float
    moments: Any
    moment_stderrs: Any
    n_probes: int
    n_steps: int
    n_params: int


@dataclass(frozen=True)
class HiddenStateHessian(Result):
    r"""The loss curvature in the final hidden state (:func:`~nrnn_theory.hidden_state_hessian`).

    Attributes
    ----------
    state : Tensor, shape (B, H)
        :math:`h_M`.
    loss : Tensor, shape (B,)
    grad : Tensor, shape (B, H)
        :math:`g = V^\top(p - e_y)`.
    hessian : Tensor, shape (B, H, H)
        :math:`H_\ell = V^\top\Pi_pV`.
    trace : Tensor, shape (B,)
    eigenvalues : Tensor, shape (B, H)
        Ascending; non-negative up to rounding, at most ``C - 1`` non-zero.
    """

    state: Any
    loss: Any
    grad: Any
    hessian: Any
    trace: Any
    eigenvalues: Any


@dataclass(frozen=True)
class LyapunovSpectrum(Result):
    r"""Lyapunov exponents estimated by the Benettin/QR method (THEORY.md §9).

    Attributes
    ----------
    exponents : Tensor, shape (k,)
        Mean over trajectories, natural log, per unit time (per step divided by
        ``dt``), sorted in descending order.
    exponents_per_step : Tensor, shape (k,)
        The same per step (``exponents * dt``); the natural unit when a per-unit
        step makes "time" ambiguous.
    stderr : Tensor, shape (k,)
        Standard error of ``exponents`` across trajectories (sample standard
        deviation over ``sqrt(B)``); NaN for a single trajectory.
    per_trajectory : Tensor, shape (B, k)
        Finite-time exponents of each trajectory (per unit time), columns in the
        order of ``exponents``.
    n_steps : int
        Steps accumulated after the transient.
    transient : int
        Steps discarded before accumulating.
    dt : float
        Time step used to convert per step to per unit time.
    reortho_every : int
        Steps between re-orthonormalizations.
    convention : str
        ``"clean"``, ``"sde"`` or ``"paper_code"`` for an NRNN; ``"map"`` for
        :func:`~nrnn_theory.lyapunov_spectrum_map`.
    noise : NoiseSpec or None
        Noise whose frozen path the tangent dynamics followed.
    history : Tensor, shape (B, n_records, k), or None
        Finite-time exponents (per unit time) after each re-orthonormalization
        past the transient, if requested.
    history_steps : Tensor, shape (n_records,), or None
        Steps since the transient at each record of ``history``.
    """

    exponents: Any
    exponents_per_step: Any
    stderr: Any
    per_trajectory: Any
    n_steps: int
    transient: int
    dt: float
    reortho_every: int
    convention: str
    noise: Any = None
    history: Any = None
    history_steps: Any = None

    @property
    def k(self) -> int:
        """Number of exponents."""
        return int(self.exponents.shape[0])

    @property
    def top(self) -> float:
        """The largest exponent (per unit time) as a float."""
        return float(self.exponents[0])


@dataclass(frozen=True)
class StateJacobianNorms(Result):
    r"""Norms of the state-transition Jacobians :math:`\partial h_T/\partial h_k`.

    Attributes
    ----------
    norms : Tensor, shape (B, T + 1)
        :math:`\|\partial h_T/\partial h_k\|` for :math:`k = 0, \dots, T`
        (``norms[:, T] == 1``). May overflow to ``inf`` in low precision when the
        dynamics explode; ``log_norms`` does not.
    log_norms : Tensor, shape (B, T + 1)
        Natural logarithms of ``norms``, accumulated without overflow.
    norm : str
        ``"spectral"`` or ``"frobenius"``.
    noise : NoiseSpec or None
        Noise of the frozen path along which the Jacobians were evaluated.
    """

    norms: Any
    log_norms: Any
    norm: str
    noise: Any = None


@dataclass(frozen=True)
class Certificate(Result):
    r"""A stability certificate (THEORY.md §9), computed in float64.

    Attributes
    ----------
    holds : bool
        True when the certified exponent bound is negative (for ``"discrete"``:
        when :math:`\rho < 1`).
    bound : float
        Certified upper bound on the top Lyapunov exponent of the difference of two
        trajectories sharing input and noise path, per unit time (for
        ``"mean_square"``: on the growth rate of
        :math:`(\mathbb E|\Delta|^2)^{1/2}`). Negative means exponentially stable.
    condition : str
        Key of the condition used (:data:`nrnn_theory.stability.CONDITIONS`).
    description : str
        The condition in words with its THEORY.md reference.
    one_sided : str
        Method used for the one-sided constant :math:`\hat\lambda`.
    quantities : dict of str to float
        Every number entering the bound.
    assumptions : tuple of str
        The assumptions under which the bound holds, in words.
    noise : NoiseSpec or None
        The noise the certificate is about.
    convention : str
        ``"clean"``, ``"sde"`` or ``"paper_code"``.
    dtype : str
        Precision of the computation (always ``"float64"``).
    metric : str or None
        Quadratic metric :math:`\|\Delta\|_P` of an LMI certificate
        (``"identity"``, ``"diagonal"``, ``"full"``); ``None`` for the norm-based ones.
    metric_matrix : Tensor, shape (H, H), or None
        The metric :math:`P \succ 0` (float64) in which the bound holds.
    metric_condition_number : float or None
        :math:`\kappa(P) = \lambda_{\max}(P)/\lambda_{\min}(P)`; Euclidean distances
        obey :math:`|\Delta_t| \le \sqrt{\kappa(P)}\,e^{\text{bound}\cdot t}|\Delta_0|`.
    solver_status : str or None
        Solver, its status and tolerances, and the float64 re-verification outcome.
    input_set : str or None
        The inputs (and initial states) the certificate holds for, in words.
    """

    holds: bool
    bound: float
    condition: str
    description: str
    one_sided: str
    quantities: dict
    assumptions: tuple
    noise: Any = None
    convention: str = "clean"
    dtype: str = "float64"
    metric: str | None = None
    metric_matrix: torch.Tensor | None = None
    metric_condition_number: float | None = None
    solver_status: str | None = None
    input_set: str | None = None


@dataclass(frozen=True)
class StabilizingNoise(Result):
    r"""Smallest multiplicative noise level certified to reach a target rate (THEORY.md §9).

    Attributes
    ----------
    exists : bool
        Whether some finite level certifies ``target_rate``.
    level : float
        The infimum :math:`\epsilon\sigma_2` of certifying levels (any larger
        level certifies a rate below ``target_rate``; ``0`` when no noise is needed);
        ``inf`` when none exists.
    structure : str
        ``"scalar"`` or ``"diagonal"`` multiplicative noise (``"sde"`` convention).
    target_rate : float
        The exponent to certify (``0`` for plain almost-sure stability).
    lambda_hat : float
        The one-sided constant used.
    one_sided : str
        Its method.
    hidden_size : int
        :math:`d_h`, which enters the diagonal bound.
    reason : str
        Why, in words.
    """

    exists: bool
    level: float
    structure: str
    target_rate: float
    lambda_hat: float
    one_sided: str
    hidden_size: int
    reason: str


@dataclass(frozen=True)
class StabilityReport(Result):
    r"""Certificates next to measured exponents, as printed by ``nrnn certify``.

    Attributes
    ----------
    one_sided : dict of str to float
        :math:`\hat\lambda` by each method computed (THEORY.md §9).
    certificates : tuple of Certificate
        One per applicable condition and noise.
    spectra : tuple of LyapunovSpectrum
        Measured exponents without noise (first) and along a frozen path of each
        noise.
    minimal_noise : tuple of StabilizingNoise
        Smallest certifying ``scalar`` and ``diagonal`` levels.
    hidden_size : int
    dt : float
    """

    one_sided: dict
    certificates: tuple
    spectra: tuple
    minimal_noise: tuple
    hidden_size: int
    dt: float
