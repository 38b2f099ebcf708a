r"""What ``nrnn analyse`` and ``nrnn certify`` compute, for a model and tensors of your own.

:func:`analyse_model` is ``nrnn analyse`` (the explicit small-noise regularizer of
docs/theory/regularizer.md with an optional antithetic Monte Carlo check, and the Hessian flatness
of docs/theory/flatness.md) and :func:`certify_model` is ``nrnn certify`` (the stability
certificates of docs/theory/stability.md beside measured Lyapunov exponents), as functions of a
module or an
:class:`~nrnn_theory.NRNNParams` and the evaluation tensors: the command line calls
them, so that both give the same numbers for the same seed.

A module is any model :func:`~nrnn_theory.train.params_from_module` maps to an NRNN
(the models of :mod:`nrnn_theory.train`, a one-layer tanh ``torch.nn.RNN`` with an
``nn.Linear`` readout, a module with ``nrnn_params()``); the flatness analysis takes any
module.

This module imports :mod:`nrnn_theory.experiments` (the records of its per-model
analyses), so :mod:`nrnn_theory.train` does not re-export it: import it as
``from nrnn_theory.train.analysis import analyse_model``.

Examples
--------
>>> import torch
>>> from nrnn_theory import NoiseSpec
>>> from nrnn_theory.train import TorchRNNClassifier
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = TorchRNNClassifier(2, 4, 3)
>>> xs, ys = torch.rand(8, 6, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
>>> noise = NoiseSpec.paper_code(add=0.05)
>>> result = analyse_model(model, xs, ys, noise=noise, probes=4, top_k=1)
>>> result.regularizer.result.Q.shape, result.flatness.n_params
(torch.Size([8]), 47)
>>> report = certify_model(model, xs, noise=noise, k=1)
>>> len(report.spectra)  # measured without noise and with it
2
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.experiments.model_analysis import FlatnessAnalysis, RegularizerAnalysis
from nrnn_theory.stability import StabilityReport


__all__ = [
    "QUANTILES",
    "ModelAnalysis",
    "StepShare",
    "analyse_model",
    "certify_model",
]

#: Quantiles over examples of each per-example regularizer quantity.
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class StepShare(Result):
    """One time step's contribution to R-hat, mean over examples.

    Attributes
    ----------
    step : int
        The time step (0-based).
    R : float
        Its mean contribution to R-hat.
    share : float
        ``R`` divided by the mean R-hat (nan when that is 0).
    """

    step: int
    R: float
    share: float


@dataclass(frozen=True)
class ModelAnalysis(Result):
    """The analyses of one model on one set of examples (:func:`analyse_model`).

    Attributes
    ----------
    n_examples : int
        Number of examples ``N`` analysed.
    seed : int
        Seed of every random generator used (one fresh generator per computation).
    noise_source : str or None
        ``"argument"`` (``noise=`` was given) or ``"model"`` (the module's own training
        noise); ``None`` without the regularizer.
    regularizer : RegularizerAnalysis or None
        The exact regularizer per example, and the Monte Carlo check if asked for.
    summary : dict of str to dict of str to float
        Per quantity (``Q``, ``R``, ``total``, ``noise_gap`` and, for ``paper_code`` with
        multiplicative noise, ``mean_shift``, ``predicted_gap``): ``mean`` and the
        :data:`QUANTILES` over examples (``q10``, ``q50``, ``q90``); empty without the
        regularizer.
    top_steps : tuple of StepShare
        The time steps contributing most to R-hat, largest first.
    flatness : FlatnessAnalysis or None
        Hessian trace (per parameter tensor too) and top eigenvalues of the clean loss.
    """

    n_examples: int
    seed: int
    noise_source: str | None
    regularizer: RegularizerAnalysis | None
    summary: dict[str, dict[str, float]]
    top_steps: tuple[StepShare, ...]
    flatness: FlatnessAnalysis | None

    def to_pandas(self):
        """The regularizer summary as a ``pandas.DataFrame`` (needs pandas).

        Returns
        -------
        pandas.DataFrame
            One row per quantity (``Q``, ``R``, ``total``, ...), columns ``mean`` and
            the quantiles; empty without the regularizer.
        """
        from nrnn_theory._record import require_pandas

        pd = require_pandas()
        return pd.DataFrame.from_dict(self.summary, orient="index")


def _stats(values: Tensor) -> dict[str, float]:
    v = values.detach().to(torch.float64)
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=torch.float64, device=v.device))
    out = {"mean": float(v.mean())}
    out.update({f"q{round(100 * p):02d}": float(x) for p, x in zip(QUANTILES, q, strict=True)})
    return out


def _params(model: nn.Module | NRNNParams, what: str) -> NRNNParams:
    from nrnn_theory.train.adapters import params_from_module

    if isinstance(model, NRNNParams):
        return model.to(dtype=torch.float64)
    try:
        return params_from_module(model, dtype=torch.float64)
    except TypeError as exc:
        raise ValueError(
            f"model: {what} needs a model of the NRNN family; "
            f"{type(model).__name__} is not one ({exc})"
        ) from None


def _noise(model: nn.Module | NRNNParams, noise: NoiseSpec | None) -> tuple[NoiseSpec, str]:
    from nrnn_theory.train.adapters import noise_from_module

    if noise is not None:
        if not isinstance(noise, NoiseSpec):
            raise TypeError(f"noise: expected a NoiseSpec or None, got {type(noise).__name__}")
        return noise, "argument"
    own = noise_from_module(model) if isinstance(model, nn.Module) else None
    if own is None or own.is_zero:
        raise ValueError(
            "noise: the model carries no training noise to expand in; pass noise= "
            "(a NoiseSpec, e.g. NoiseSpec.paper_code(add=0.05))"
        )
    return own, "model"


def _inputs(xs: object) -> Tensor:
    from nrnn_theory._contract import check_finite, check_shape, check_tensor

    xs = check_tensor("xs", xs)
    check_shape("xs", xs, (None, None, None), "(N, T, D), batch first")
    check_finite("xs", xs)
    return xs.to(torch.float64)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def analyse_model(
    model: nn.Module | NRNNParams,
    xs: Tensor,
    labels: Tensor,
    *,
    regularizer: bool = True,
    flatness: bool | None = None,
    noise: NoiseSpec | None = None,
    mc_pairs: int = 0,
    top_steps: int = 5,
    probes: int = 100,
    top_k: int = 3,
    seed: int = 0,
) -> ModelAnalysis:
    r"""The explicit regularizer and the Hessian flatness of a model: ``nrnn analyse``.

    The regularizer (docs/theory/regularizer.md) is exact, per example, in float64:
    :math:`\hat Q + \hat R` and the predicted noisy-minus-clean loss gap
    :math:`\tfrac{\varepsilon^2}{2}(\hat Q + \hat R)`, with the time steps whose noise
    contributes most to :math:`\hat R`; ``mc_pairs`` measures the gap by antithetic
    Monte Carlo. The flatness (docs/theory/flatness.md) is the Hessian of the clean mean
    cross-entropy with respect to all parameters of a float64 copy of the module in
    eval mode: its Hutchinson trace (per parameter tensor too) and top eigenvalues.

    Parameters
    ----------
    model : nn.Module or NRNNParams
        The model; the flatness analysis needs a module.
    xs : Tensor, shape (N, T, D)
        Input sequences, batch first.
    labels : Tensor, shape (N,)
        Integer class labels.
    regularizer : bool
        Compute the explicit regularizer (NRNN family only).
    flatness : bool, optional
        Compute the Hessian flatness (default: when ``model`` is a module).
    noise : NoiseSpec, optional
        The noise to expand in (default: the module's own training noise, see
        :func:`~nrnn_theory.train.noise_from_module`; an error if it has none).
    mc_pairs : int
        Antithetic Monte Carlo pairs per example for the measured gap (0: none, else
        at least 2).
    top_steps : int
        How many time steps to list by their share of R-hat.
    probes : int
        Hutchinson probes for the Hessian trace.
    top_k : int
        Number of top Hessian eigenvalues.
    seed : int
        Seed of the Monte Carlo paths, the probes and the Lanczos start (one fresh
        generator per computation, on the device of ``xs``).

    Returns
    -------
    ModelAnalysis
        What ``nrnn analyse`` prints (and its ``--json``).

    Raises
    ------
    ValueError
        If neither analysis is asked for, a count is out of range, the model is not of
        the NRNN family (regularizer), or there is no noise to expand in.
    """
    from nrnn_theory.experiments.model_analysis import analyse_flatness, analyse_regularizer

    if flatness is None:
        flatness = isinstance(model, nn.Module)
    if not (regularizer or flatness):
        raise ValueError("regularizer, flatness: expected at least one True, got neither")
    if flatness and not isinstance(model, nn.Module):
        raise TypeError(
            f"model: the flatness analysis needs an nn.Module, got {type(model).__name__}"
        )
    for name, value, minimum in (
        ("mc_pairs", mc_pairs, 0),
        ("top_steps", top_steps, 1),
        ("probes", probes, 1),
        ("top_k", top_k, 1),
        ("seed", seed, 0),
    ):
        _check_count(name, value, minimum)
    if mc_pairs == 1:
        raise ValueError("mc_pairs: expected 0 (no Monte Carlo) or at least 2 pairs, got 1")
    xs = _inputs(xs)
    labels = torch.as_tensor(labels)
    if labels.shape != (xs.shape[0],) or labels.dtype.is_floating_point:
        raise ValueError(
            f"labels: expected integer labels of shape ({xs.shape[0]},), got "
            f"{labels.dtype} of shape {tuple(labels.shape)}"
        )
    labels = labels.to(device=xs.device, dtype=torch.int64)
    reg = source = None
    summary: dict[str, dict[str, float]] = {}
    steps: tuple[StepShare, ...] = ()
    if regularizer:
        params = _params(model, "the explicit regularizer (docs/theory/regularizer.md)")
        noise, source = _noise(model, noise)
        gen = torch.Generator(device=xs.device).manual_seed(seed) if mc_pairs else None
        reg = analyse_regularizer(params, xs, labels, noise, mc_pairs=mc_pairs, generator=gen)
        names = ["Q", "R", "total", "noise_gap"]
        if noise.convention == "paper_code" and noise.multiplicative > 0:
            names += ["mean_shift", "predicted_gap"]
        summary = {name: _stats(getattr(reg.result, name)) for name in names}
        per_step = reg.result.per_step_R.mean(dim=0)
        top = torch.topk(per_step, min(top_steps, per_step.shape[0]))
        r_mean = float(reg.result.R.mean())
        steps = tuple(
            StepShare(
                step=int(i), R=float(v), share=float(v) / r_mean if r_mean != 0 else float("nan")
            )
            for v, i in zip(top.values, top.indices, strict=True)
        )
    flat = None
    if flatness:
        copy_ = copy.deepcopy(model).to(torch.float64).eval()
        n_params = sum(t.numel() for t in copy_.parameters())
        if top_k > n_params:
            raise ValueError(
                f"top_k: expected at most {n_params} (the number of parameters), got {top_k}"
            )
        flat = analyse_flatness(
            copy_,
            xs,
            labels,
            n_probes=probes,
            k=top_k,
            per_parameter=True,
            generator=torch.Generator(device=xs.device).manual_seed(seed),
            eigen_generator=torch.Generator(device=xs.device).manual_seed(seed),
        )
    return ModelAnalysis(
        n_examples=int(xs.shape[0]),
        seed=seed,
        noise_source=source,
        regularizer=reg,
        summary=summary,
        top_steps=steps,
        flatness=flat,
    )


def certify_model(
    model: nn.Module | NRNNParams,
    xs: Tensor,
    *,
    noise: NoiseSpec | None = None,
    one_sided: str = "auto",
    k: int = 2,
    transient: int | None = None,
    seed: int = 0,
) -> StabilityReport:
    """The stability certificates of a model beside its measured exponents: ``nrnn certify``.

    :func:`~nrnn_theory.stability_report` (docs/theory/stability.md) of the model's NRNN in float64,
    without noise and with ``noise`` (default: the module's own training noise, if any),
    the exponents measured on ``xs`` from zero.

    Parameters
    ----------
    model : nn.Module or NRNNParams
        A model of the NRNN family (see :func:`~nrnn_theory.train.params_from_module`).
    xs : Tensor, shape (N, T, D)
        Input sequences driving the measured exponents.
    noise : NoiseSpec, optional
        The noise to certify beside no noise (default: the module's own; a zero noise
        means none).
    one_sided : str
        The one-sided constant of the certificates (see
        :func:`~nrnn_theory.one_sided_constant`).
    k : int
        Number of leading Lyapunov exponents measured (at most the hidden size).
    transient : int, optional
        Steps discarded before accumulating exponents (default: the library's).
    seed : int
        Seed of the initial tangent frames and the noise paths.

    Returns
    -------
    StabilityReport
        What ``nrnn certify`` prints (and its ``--json`` under ``"report"``).
    """
    from nrnn_theory.stability import stability_report
    from nrnn_theory.train.adapters import noise_from_module

    _check_count("k", k, 1)
    _check_count("seed", seed, 0)
    params = _params(model, "the certificates of docs/theory/stability.md")
    if k > params.hidden_size:
        raise ValueError(f"k: expected at most the hidden size {params.hidden_size}, got {k}")
    if noise is not None and not isinstance(noise, NoiseSpec):
        raise TypeError(f"noise: expected a NoiseSpec or None, got {type(noise).__name__}")
    if noise is None and isinstance(model, nn.Module):
        noise = noise_from_module(model)
    noises = [] if noise is None or noise.is_zero else [noise]
    xs = _inputs(xs).to(params.A.device)
    return stability_report(
        params,
        xs,
        noises=noises,
        one_sided=one_sided,
        k=k,
        transient=transient,
        generator=torch.Generator(device=xs.device).manual_seed(seed),
    )
