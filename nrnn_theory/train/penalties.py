r"""Training penalties: the explicit small-noise regularizer instead of noise injection.

Training an NRNN with noise minimises :math:`\mathbb E\,\ell(h^\epsilon_M)`; to second
order in the noise (docs/theory/regularizer.md) that is the clean loss plus

.. math:: \mathbb E\,\ell_{\rm train} - \ell_{\rm inference}
          = \underbrace{\ell(\bar h^{(s)}_M) - \ell(\bar h^{(d)}_M)}_{\text{mean shift}}
          + \tfrac{\epsilon^2}{2}(\hat Q + \hat R) + O(\epsilon^4),

with :math:`\hat Q, \hat R` computed exactly (no sampling) by
:func:`nrnn_theory.explicit_regularizer`. :func:`explicit_regularizer_penalty` turns it
into the ``penalty(model, xs, ys)`` that :func:`~nrnn_theory.train.fit` adds to the loss,
so a **noise-free** model can be trained with

.. math:: \mathrm{penalty} = \lambda\,\frac1B\sum_i\tfrac{\epsilon^2}{2}(\hat Q_i + \hat R_i)

(the ``noise_gap`` of :func:`~nrnn_theory.explicit_regularizer`) instead of the noise.

Two estimators of it:

* ``estimator="pathwise"`` (default): an **unbiased** estimate at O(M H^2) per example,
  the cost of a few rollouts. For each example and each of ``probes`` Rademacher probes
  :math:`\eta` it propagates the first-order response :math:`h^{(1)}` of the chain to
  the probe and the reference chain's adjoint :math:`\lambda`, and returns
  :math:`\epsilon^2 Z` with
  :math:`Z = \sum_k\lambda_{k+1}^\top(\tfrac12 s\odot\tanh''(z_k)\odot(Wh^{(1)}_k)^2)
  + \tfrac12 h^{(1)\top}_MH_\ell h^{(1)}_M`, whose expectation over the probes is
  exactly :math:`\tfrac{\epsilon^2}{2}(\hat Q + \hat R)` (because
  :math:`\mathbb E\,h^{(1)}_kh^{(1)\top}_k = \hat\Sigma_k`; derivation in
  ``nrnn_theory._pathwise``). The penalty and its gradient are therefore unbiased
  estimates of the exact ones; the probes are drawn from the generator that ``fit``
  passes (its training-noise generator, saved in every checkpoint, so a resumed run
  draws the same probes).
* ``estimator="exact"``: the exact value (forward covariance recursion, O(M H^3) per
  example), deterministic.

Both are computed on the first ``max_examples`` rows of each batch, which ``fit``
shuffles every epoch: a uniformly random subset, so the sub-sample keeps either
estimate unbiased for the whole batch's penalty.
For the ``"sde"`` convention the mean shift is exactly zero and :math:`\lambda = 1`
reproduces the noisy training objective to second order. For ``"paper_code"`` with
:math:`\mu > 0` the mean shift, first order in :math:`\mu`, is deliberately **left
out**: it is not a regularizer but a deterministic rescaling of the step
(:math:`d\to(1-\mu/2)d`), and weighted by :math:`\lambda > 1` it would reward a
*larger* clean loss (the objective would contain :math:`(1-\lambda)\,\ell(\bar h^{(d)}_M)`).
Add it yourself with :func:`nrnn_theory.regularizer_penalty` if you want the full
second-order surrogate at :math:`\lambda = 1`.

The penalty is a picklable frozen record with a JSON-able ``config()``; ``fit`` stores
that record in the checkpoint (``Checkpoint.fit["penalty"]``) and
:func:`penalty_from_config` rebuilds the penalty from it (``nrnn train --resume``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nrnn_theory._contract import check_choice, check_positive_int
from nrnn_theory._pathwise import draw_probes, pathwise_noise_gap
from nrnn_theory._types import NoiseSpec
from nrnn_theory.regularizer import explicit_regularizer
from nrnn_theory.train.adapters import params_from_module
from nrnn_theory.train.models import NoisyRNN, unwrap_model


__all__ = [
    "ESTIMATORS",
    "PENALTY_NAME",
    "ExplicitRegularizerPenalty",
    "explicit_regularizer_penalty",
    "penalty_from_config",
]

#: The ``"name"`` of the explicit regularizer's record in ``Checkpoint.fit["penalty"]``.
PENALTY_NAME = "explicit_regularizer"

#: Estimators of the penalty (module docstring).
ESTIMATORS = ("pathwise", "exact")


@dataclass(frozen=True)
class ExplicitRegularizerPenalty:
    r"""``penalty(model, xs, ys)``: :math:`\lambda` times the batch-mean noise gap.

    Build it with :func:`explicit_regularizer_penalty` (which validates its fields).

    Attributes
    ----------
    noise : NoiseSpec
        The noise the model *would* have been trained with; it fixes :math:`C_k` and
        :math:`\epsilon`. The model itself trains noise-free.
    weight : float
        :math:`\lambda \ge 0`.
    max_examples : int or None
        Examples of each batch used (the first ``max_examples``), or all.
    estimator : {"pathwise", "exact"}
        The unbiased O(M H^2) estimate or the exact value (module docstring).
    probes : int
        Rademacher probes per example of the pathwise estimate.
    """

    noise: NoiseSpec
    weight: float
    max_examples: int | None = None
    estimator: str = "pathwise"
    probes: int = 1

    @property
    def uses_generator(self) -> bool:
        """Whether a call draws random numbers (``fit`` then passes ``generator=``)."""
        return self.estimator == "pathwise"

    def check_model(self, model: nn.Module) -> None:
        """Raise unless ``model`` is a noise-free model of the NRNN family.

        :func:`~nrnn_theory.train.fit` calls this before training starts.

        Parameters
        ----------
        model : nn.Module
            The model about to be trained (possibly wrapped in ``DistributedDataParallel``).

        Raises
        ------
        TypeError, ValueError
            For a model outside the NRNN family, or one that trains with noise.
        """
        inner = unwrap_model(model)
        if not isinstance(inner, NoisyRNN):
            raise TypeError(
                f"model: the explicit regularizer needs a model of the NRNN family (nrnn, "
                f"lipschitz, antisymmetric), got {type(inner).__name__}"
            )
        if inner.noise is not None:
            raise ValueError(
                f"model: the explicit regularizer replaces noise injection, so the model must "
                f"train noise-free (noise=None), got training noise {inner.noise}; give the "
                f"noise to the penalty instead"
            )

    def __call__(
        self,
        model: nn.Module,
        xs: torch.Tensor,
        ys: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The penalty of one batch: a differentiable 0-dim tensor (model's dtype).

        ``generator`` is the source of the pathwise estimator's probes (``None``: torch's
        default generator); the exact estimator draws nothing.
        """
        if self.max_examples is not None:
            xs, ys = xs[: self.max_examples], ys[: self.max_examples]
        params = params_from_module(model, detach=False)
        if self.estimator == "exact":
            gap = explicit_regularizer(params, xs, ys, self.noise).noise_gap
        else:
            B, M, _ = xs.shape
            probes = draw_probes(
                self.noise,
                params.hidden_size,
                M,
                self.probes,
                B,
                dtype=xs.dtype,
                device=xs.device,
                generator=generator,
            )
            gap = pathwise_noise_gap(params, xs, ys, self.noise, probes)
        return self.weight * gap.mean()

    def config(self) -> dict[str, Any]:
        """JSON-able record: name, weight, max_examples, estimator, probes and the noise."""
        return {
            "name": PENALTY_NAME,
            "weight": self.weight,
            "max_examples": self.max_examples,
            "estimator": self.estimator,
            "probes": self.probes,
            "noise": self.noise.to_dict(),
        }


def explicit_regularizer_penalty(
    noise: NoiseSpec,
    *,
    weight: float,
    max_examples: int | None = None,
    estimator: str = "pathwise",
    probes: int = 1,
) -> ExplicitRegularizerPenalty:
    r"""The explicit small-noise regularizer as a penalty for :func:`~nrnn_theory.train.fit`.

    .. math:: \mathrm{penalty}(\theta) = \frac{\lambda}{K}\sum_{i<K}
              \tfrac{\epsilon^2}{2}\big(\hat Q_i(\theta) + \hat R_i(\theta)\big)

    over the first :math:`K` examples of each batch (docs/theory/regularizer.md; for
    ``"paper_code"`` around the mean-step reference chain, as
    :func:`~nrnn_theory.explicit_regularizer` defines :math:`\hat Q, \hat R`, without the mean-step
    shift: see the module docstring), estimated without bias from probes (``"pathwise"``) or
    computed exactly (``"exact"``). It is differentiable
    in the module's parameters: the NRNN parameters are taken with
    ``params_from_module(model, detach=False)``, so gradients flow through the
    Lipschitz parametrization to :math:`M_A, M_W, U, b, V, c` (and a learned step).

    Parameters
    ----------
    noise : NoiseSpec
        The noise the regularizer stands for (either convention, either structure).
        Must inject something: a zero noise has a zero regularizer.
    weight : float
        :math:`\lambda \ge 0`. :math:`\lambda = 1` matches noise injection at ``noise``
        to second order (``"sde"``; up to the mean-step shift for ``"paper_code"``);
        :math:`\lambda = 0` is plain noise-free training.
    max_examples : int, optional
        :math:`K`: use only the first ``K`` examples of each batch. ``fit`` shuffles the
        training set every epoch, so the first ``K`` rows of a batch are a uniformly
        random ``K``-subset of it: the penalty and its gradient are then **unbiased**
        estimates of the full-batch ones (over the shuffle), with a variance that grows
        as ``K`` shrinks. Called on unshuffled batches, the first rows are not random
        and the estimate is biased towards them. Default: the whole batch.
    estimator : {"pathwise", "exact"}
        ``"pathwise"`` (default): unbiased over the probes, :math:`O(K\,M\,H^2)` per
        batch, about the cost of training on the ``K`` examples with noise.
        ``"exact"``: :math:`O(K\,M\,H^3)` per batch (forward recursion of
        :math:`H\times H` covariances), deterministic.
    probes : int
        Probes per example of the pathwise estimate (variance falls as ``1/probes``).

    Returns
    -------
    ExplicitRegularizerPenalty
        A callable ``penalty(model, xs, ys, *, generator=None) -> Tensor`` (0-dim) with
        ``config()``.

    Raises
    ------
    TypeError, ValueError
        ``noise`` not a NoiseSpec or zero, ``weight`` negative or not finite,
        ``max_examples`` not a positive integer.

    Notes
    -----
    The model must train noise-free: ``fit`` calls :meth:`~ExplicitRegularizerPenalty.check_model`
    and refuses a model with training noise (the noise would then be counted twice).
    Memory under autograd is :math:`O(K\,M\,H^2)` (docs/theory/regularizer.md, forward pass).

    References
    ----------
    .. [1] docs/theory/regularizer.md (regularizer, recursions), docs/theory/oracles.md.

    Examples
    --------
    >>> from nrnn_theory.train import LipschitzRNN
    >>> model = LipschitzRNN(1, 4, 2, generator=torch.Generator().manual_seed(0))
    >>> pen = explicit_regularizer_penalty(NoiseSpec(epsilon=0.1, sigma1=1.0), weight=2.0)
    >>> value = pen(model, torch.ones(3, 5, 1), torch.tensor([0, 1, 0]),
    ...             generator=torch.Generator().manual_seed(0))
    >>> value.shape, value.requires_grad, pen.config()["estimator"]
    (torch.Size([]), True, 'pathwise')
    """
    if not isinstance(noise, NoiseSpec):
        raise TypeError(f"noise: expected a NoiseSpec, got {type(noise).__name__}")
    if noise.is_zero:
        raise ValueError(
            f"noise: expected a noise that injects something (the regularizer of zero noise "
            f"is zero), got {noise}"
        )
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise TypeError(f"weight: expected a real number >= 0, got {weight!r}")
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"weight: expected a finite number >= 0 (lambda), got {weight!r}")
    if max_examples is not None:
        max_examples = check_positive_int("max_examples", max_examples)
    check_choice("estimator", estimator, ESTIMATORS)
    probes = check_positive_int("probes", probes)
    return ExplicitRegularizerPenalty(
        noise=noise,
        weight=float(weight),
        max_examples=max_examples,
        estimator=estimator,
        probes=probes,
    )


def penalty_from_config(config: dict[str, Any]) -> ExplicitRegularizerPenalty:
    """Rebuild a penalty from its :meth:`~ExplicitRegularizerPenalty.config` record.

    Parameters
    ----------
    config : dict
        ``{"name": "explicit_regularizer", "weight": ..., "max_examples": ...,
        "estimator": ..., "probes": ..., "noise": {...}}``, e.g.
        ``load_checkpoint(run).fit["penalty"]``. A record without ``"estimator"`` and
        ``"probes"`` (written before the pathwise estimator existed) is the exact
        estimator it was trained with.

    Raises
    ------
    ValueError
        An unknown ``name`` or fields (e.g. a penalty that was a Python callable, which
        a checkpoint cannot rebuild).

    Examples
    --------
    >>> pen = explicit_regularizer_penalty(NoiseSpec.paper_code(add=0.05), weight=0.5,
    ...                                    max_examples=16)
    >>> penalty_from_config(pen.config()) == pen
    True
    """
    if not isinstance(config, dict) or config.get("name") != PENALTY_NAME:
        raise ValueError(
            f"penalty: expected a record {{'name': {PENALTY_NAME!r}, 'weight', 'max_examples', "
            f"'noise'}}, got {config!r}; only the explicit regularizer can be rebuilt from a "
            "checkpoint (pass other penalties to fit(..., penalty=...) again)"
        )
    fields = {"name", "weight", "max_examples", "estimator", "probes", "noise"}
    legacy = {"name", "weight", "max_examples", "noise"}
    if set(config) not in (fields, legacy):
        raise ValueError(f"penalty: expected the fields {sorted(fields)}, got {sorted(config)}")
    noise = NoiseSpec.from_dict(config["noise"])
    return explicit_regularizer_penalty(
        noise,
        weight=config["weight"],
        max_examples=config["max_examples"],
        estimator=config.get("estimator", "exact"),
        probes=config.get("probes", 1),
    )
