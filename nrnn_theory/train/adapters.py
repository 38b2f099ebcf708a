r"""From trained modules to the records the analysis functions take.

* :func:`params_from_module` extracts the :class:`~nrnn_theory.NRNNParams` of a model
  of the NRNN family (:class:`~nrnn_theory.train.NoisyRNN`, ``LipschitzRNN``,
  ``AntisymmetricRNN``); :func:`noise_from_module` its training noise.
* :func:`import_authors_state_dict` reads a ``state_dict`` of the authors' public
  NoisyRNN implementation (THEORY.md §3) into a :class:`~nrnn_theory.train.NoisyRNN`,
  so models trained with that code can be analysed and certified here.

The authors' layout, in their row-vector convention (``h`` is a row, ``h @ A``):

========================  =================  ==================================
authors' key              shape              here (column convention)
========================  =================  ==================================
``B``                     (H, H)             :math:`M_A = B^\top`
``C``                     (H, H)             :math:`M_W = C^\top`
``E.weight``, ``E.bias``  (H, D), (H,)       :math:`U`, :math:`b` (input layer)
``D.weight``, ``D.bias``  (C, H), (C,)       :math:`V`, :math:`c` (readout)
``d``                     (H,)               per-unit step ``step``
========================  =================  ==================================

Their step is ``h + eps * f`` (``solver='base'``) or ``h + d * m * f + a * zeta``
(``solver='noisy'``, the ``"paper_code"`` convention), with
:math:`f = \alpha h A + \tanh(h W + E(x))` and
:math:`A = \beta(B - B^\top) + (1-\beta)(B + B^\top) - \gamma_A I`; since
:math:`A^\top` is the same expression in :math:`B^\top`, the column-convention matrix
is built from :math:`M_A = B^\top`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nrnn_theory._contract import check_choice, check_nonnegative, check_positive, check_real
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.train.models import NoisyRNN, unwrap_model


__all__ = ["AUTHORS_KEYS", "import_authors_state_dict", "noise_from_module", "params_from_module"]

#: The parameter names of the authors' NoisyRNN ``state_dict``.
AUTHORS_KEYS: tuple[str, ...] = ("B", "C", "E.weight", "E.bias", "D.weight", "D.bias", "d")


def _nrnn_module(model: object) -> NoisyRNN:
    inner = unwrap_model(model)
    if not isinstance(inner, NoisyRNN):
        raise TypeError(
            f"model: expected a model of the NRNN family (NoisyRNN, LipschitzRNN, "
            f"AntisymmetricRNN), got {type(inner).__name__}; only models whose dynamics "
            "are the NRNN drift of THEORY.md §2 have NRNNParams"
        )
    return inner


def params_from_module(
    model: nn.Module, *, dtype: torch.dtype | None = None, detach: bool = True
) -> NRNNParams:
    r"""The :class:`~nrnn_theory.NRNNParams` of a trained NRNN-family model, detached.

    ``readout(p, rollout(p, xs))`` reproduces ``model.eval()(xs)`` (the clean forward
    pass), and ``rollout(p, xs, noise=noise_from_module(model))`` its training-mode
    dynamics; the model itself is left untouched.

    Parameters
    ----------
    model : NoisyRNN, LipschitzRNN or AntisymmetricRNN
        Possibly wrapped in ``DistributedDataParallel``.
    dtype : torch.dtype, optional
        Cast the parameters (e.g. ``torch.float64`` for certificates); default: the
        model's dtype. The device is the model's.
    detach : bool
        ``True`` (default): a detached copy to analyse. ``False``: the tensors keep the
        autograd graph of the module's parameters (through the Lipschitz
        parametrization), for penalties that training differentiates, e.g.
        :func:`~nrnn_theory.train.explicit_regularizer_penalty`.

    Returns
    -------
    NRNNParams
        :math:`A, W` from the Lipschitz parametrization of THEORY.md §2, ``U, b, V, c``,
        ``dt``, ``alpha`` and the per-unit ``step`` when the model learns one.

    Raises
    ------
    TypeError
        For models outside the NRNN family (coRNN, LSTM, GRU).

    Examples
    --------
    >>> from nrnn_theory.train import LipschitzRNN
    >>> from nrnn_theory import readout, rollout
    >>> model = LipschitzRNN(1, 6, 3, generator=torch.Generator().manual_seed(0)).eval()
    >>> p = params_from_module(model)
    >>> xs = torch.rand(2, 7, 1, generator=torch.Generator().manual_seed(1))
    >>> bool(torch.equal(readout(p, rollout(p, xs)), model(xs)))
    True
    """
    inner = _nrnn_module(model)
    if not isinstance(detach, bool):
        raise TypeError(f"detach: expected a bool, got {type(detach).__name__}")
    if detach:
        with torch.no_grad():
            params = inner.nrnn_params().detach()
    else:
        params = inner.nrnn_params()
    return params if dtype is None else params.to(dtype=dtype)


def noise_from_module(model: nn.Module) -> NoiseSpec | None:
    """The training noise of an NRNN-family model (``None`` if it trains without noise).

    Examples
    --------
    >>> from nrnn_theory.train import NoisyRNN
    >>> m = NoisyRNN(1, 4, 2, noise=NoiseSpec.paper_code(add=0.02), generator=torch.Generator())
    >>> noise_from_module(m).additive
    0.02
    """
    return _nrnn_module(model).noise


def _check_tensor_entry(state: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    t = state[key]
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise TypeError(f"state_dict[{key!r}]: expected a floating-point tensor, got {t!r}")
    if tuple(t.shape) != shape:
        raise ValueError(f"state_dict[{key!r}]: expected shape {shape}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"state_dict[{key!r}]: expected finite values, got NaN or inf")
    return t


def import_authors_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    eps: float,
    beta: float,
    gamma_A: float,
    gamma_W: float,
    solver: str,
    alpha: float = 1.0,
    add_noise: float = 0.0,
    mult_noise: float = 0.0,
) -> NoisyRNN:
    r"""A :class:`~nrnn_theory.train.NoisyRNN` from a ``state_dict`` of the authors' code.

    The hyper-parameters are not stored in the authors' ``state_dict``; pass those of
    the run (their command-line arguments). Their checkpoints pickle whole modules;
    load one with their code and save ``model.state_dict()`` first (unpickling runs
    code, so it is not done here).

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        Keys ``B, C, E.weight, E.bias, D.weight, D.bias, d`` (a ``module.`` prefix
        from ``DataParallel`` is removed).
    eps : float
        The authors' ``eps``: the step of ``solver='base'`` and the initial value of
        ``d``; becomes ``dt``.
    beta, gamma_A, gamma_W, alpha : float
        As in their constructor.
    solver : {"base", "noisy"}
        ``"base"``: :math:`h + \mathrm{eps}\,f` (``d`` is unused and dropped).
        ``"noisy"``: :math:`h + d\odot m\odot f + a\zeta` with the learned step ``d``
        and, in training, the noise ``NoiseSpec.paper_code(add_noise, mult_noise)``.
    add_noise, mult_noise : float
        The authors' ``add_noise`` (:math:`a`) and ``mult_noise`` (:math:`\mu`).

    Returns
    -------
    NoisyRNN
        In eval mode, with the dtype of the state dict, ``learn_step=True`` for
        ``solver='noisy'``. Its clean forward pass equals the authors' forward in
        ``mode='test'``.

    Raises
    ------
    ValueError, TypeError
        On missing or unexpected keys, inconsistent shapes, non-finite entries, or
        noise levels given with ``solver='base'`` (whose step ignores them).

    Examples
    --------
    >>> H, D, C = 4, 1, 3
    >>> sd = {"B": torch.zeros(H, H), "C": torch.zeros(H, H), "E.weight": torch.ones(H, D),
    ...       "E.bias": torch.zeros(H), "D.weight": torch.ones(C, H),
    ...       "D.bias": torch.zeros(C), "d": torch.full((H,), 0.1)}
    >>> m = import_authors_state_dict(sd, eps=0.1, beta=0.75, gamma_A=0.001,
    ...                               gamma_W=0.001, solver="noisy", add_noise=0.02)
    >>> m.learn_step, m.noise.convention, m.noise.additive
    (True, 'paper_code', 0.02)
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to tensors, got {state_dict!r}")
    state = {}
    for key, value in state_dict.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        state[k] = value
    missing = [k for k in AUTHORS_KEYS if k not in state]
    unexpected = sorted(set(state) - set(AUTHORS_KEYS))
    if missing or unexpected:
        raise ValueError(
            f"state_dict: expected the authors' NoisyRNN keys {list(AUTHORS_KEYS)}; "
            f"missing {missing}, unexpected {unexpected}"
        )
    solver = check_choice("solver", solver, ("base", "noisy"))
    eps = check_positive("eps", eps)
    beta = check_nonnegative("beta", beta)
    gamma_A = check_real("gamma_A", gamma_A)
    gamma_W = check_real("gamma_W", gamma_W)
    alpha = check_real("alpha", alpha)
    add_noise = check_nonnegative("add_noise", add_noise)
    mult_noise = check_nonnegative("mult_noise", mult_noise)
    if solver == "base" and (add_noise or mult_noise):
        raise ValueError(
            "add_noise, mult_noise: the authors' solver='base' step ignores noise; pass "
            f"0 for both or solver='noisy', got add_noise={add_noise}, mult_noise={mult_noise}"
        )
    E = state["E.weight"]
    if not isinstance(E, Tensor) or E.ndim != 2:
        raise ValueError(f"state_dict['E.weight']: expected a (H, D) tensor, got {E!r}")
    H, D = E.shape
    Dw = state["D.weight"]
    if not isinstance(Dw, Tensor) or Dw.ndim != 2:
        raise ValueError(f"state_dict['D.weight']: expected a (C, H) tensor, got {Dw!r}")
    C = Dw.shape[0]
    shapes = {
        "B": (H, H),
        "C": (H, H),
        "E.weight": (H, D),
        "E.bias": (H,),
        "D.weight": (C, H),
        "D.bias": (C,),
        "d": (H,),
    }
    t = {k: _check_tensor_entry(state, k, s) for k, s in shapes.items()}
    dtype = t["E.weight"].dtype
    for k, v in t.items():
        if v.dtype != dtype:
            raise TypeError(
                f"state_dict[{k!r}]: expected dtype {dtype} like E.weight, got {v.dtype}"
            )
    noise = None
    if solver == "noisy" and (add_noise or mult_noise):
        noise = NoiseSpec.paper_code(add=add_noise, mult=mult_noise)
    model = NoisyRNN(
        D,
        H,
        C,
        dt=eps,
        beta=beta,
        gamma_A=gamma_A,
        gamma_W=gamma_W,
        alpha=alpha,
        noise=noise,
        learn_step=solver == "noisy",
        generator=torch.Generator().manual_seed(0),
        dtype=dtype,
    )
    ours = {
        "M_W": t["C"].mT,
        "U": t["E.weight"],
        "b": t["E.bias"],
        "V": t["D.weight"],
        "c": t["D.bias"],
    }
    if model.M_A is not None:
        ours["M_A"] = t["B"].mT
    if solver == "noisy":
        ours["step"] = t["d"]
    device = t["E.weight"].device
    model.to(device)
    with torch.no_grad():
        for name, value in ours.items():
            getattr(model, name).copy_(value)
    return model.eval()
