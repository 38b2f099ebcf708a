r"""From trained modules to the records the analysis functions take.

* :func:`params_from_module` extracts the :class:`~nrnn_theory.NRNNParams` of a model
  of the NRNN family (:class:`~nrnn_theory.train.NoisyRNN`, ``LipschitzRNN``,
  ``AntisymmetricRNN``), of a module holding a one-layer tanh ``torch.nn.RNN`` and an
  ``nn.Linear`` readout, or of any module that exposes ``nrnn_params()`` (the
  protocol below); :func:`noise_from_module` its training noise.
* :func:`params_from_torch_rnn` maps a ``torch.nn.RNN`` and its readout exactly.
* :func:`import_authors_state_dict` reads a ``state_dict`` of the authors' public
  NoisyRNN implementation (docs/theory/conventions.md) into a :class:`~nrnn_theory.train.NoisyRNN`,
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

**A torch RNN is an NRNN.** A one-layer ``torch.nn.RNN`` with ``nonlinearity='tanh'``
computes :math:`h_{k+1} = \tanh(W_{hh}h_k + W_{ih}x_k + b_{ih} + b_{hh})` from
:math:`h_0 = 0`. The NRNN step with :math:`\Delta t = 1`, :math:`\alpha = 1` and
:math:`A = -I` is :math:`h_k + 1\cdot(-h_k + \tanh(Wh_k + Ux_k + b))`, the same map, so
:math:`W = W_{hh}`, :math:`U = W_{ih}`, :math:`b = b_{ih} + b_{hh}`, and the readout
``nn.Linear`` gives :math:`V, c`. The batch layout (``batch_first``) does not enter the
parameters: :func:`~nrnn_theory.rollout` always takes ``(B, T, D)`` inputs.

**Bringing another model.** A module whose forward pass is this model family can
expose a method ``nrnn_params()`` returning its :class:`~nrnn_theory.NRNNParams`
(differentiable in its parameters, as :meth:`NoisyRNN.nrnn_params
<nrnn_theory.train.NoisyRNN.nrnn_params>` is), and optionally an attribute ``noise``
(a :class:`~nrnn_theory.NoiseSpec` or ``None``); :func:`params_from_module` and
:func:`noise_from_module` honour them. Check the mapping once on your inputs:
``readout(p, rollout(p, xs))`` must equal the module's clean forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nrnn_theory._contract import check_choice, check_nonnegative, check_positive, check_real
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.train.models import NoisyRNN, unwrap_model


__all__ = [
    "AUTHORS_KEYS",
    "import_authors_state_dict",
    "noise_from_module",
    "params_from_module",
    "params_from_torch_rnn",
]

#: The parameter names of the authors' NoisyRNN ``state_dict``.
AUTHORS_KEYS: tuple[str, ...] = ("B", "C", "E.weight", "E.bias", "D.weight", "D.bias", "d")


def _nrnn_module(model: object) -> NoisyRNN:
    inner = unwrap_model(model)
    if not isinstance(inner, NoisyRNN):
        raise TypeError(
            f"model: expected a model of the NRNN family (NoisyRNN, LipschitzRNN, "
            f"AntisymmetricRNN), got {type(inner).__name__}; only models whose dynamics "
            "are the NRNN drift of docs/theory/model.md have NRNNParams"
        )
    return inner


def _check_torch_rnn(name: str, rnn: object) -> nn.RNN:
    """A one-layer, one-direction tanh ``nn.RNN``, or a clear error naming what is not."""
    if not isinstance(rnn, nn.RNNBase):
        raise TypeError(f"{name}: expected a torch.nn.RNN, got {type(rnn).__name__}")
    if rnn.mode not in ("RNN_TANH", "RNN_RELU"):
        raise TypeError(
            f"{name}: expected a torch.nn.RNN, got {type(rnn).__name__} (mode {rnn.mode!r}); "
            "gated cells (LSTM, GRU) are not of the NRNN family"
        )
    unsupported = []
    if rnn.mode == "RNN_RELU":
        unsupported.append("nonlinearity='relu' (the NRNN drift is tanh)")
    if rnn.num_layers != 1:
        unsupported.append(f"num_layers={rnn.num_layers} (one layer only)")
    if rnn.bidirectional:
        unsupported.append("bidirectional=True (one direction only)")
    if getattr(rnn, "proj_size", 0):
        unsupported.append(f"proj_size={rnn.proj_size}")
    if unsupported:
        raise ValueError(
            f"{name}: this torch.nn.RNN is not an NRNN; unsupported: {'; '.join(unsupported)}. "
            "Supported: one layer, one direction, nonlinearity='tanh', with or without bias"
        )
    return rnn


def _torch_rnn_pair(model: nn.Module) -> tuple[nn.RNN, nn.Linear] | None:
    """``(rnn, linear)`` if ``model`` is a torch RNN wrapper, else ``None``.

    A wrapper is a module without parameters of its own whose children with
    parameters are exactly one ``nn.RNNBase`` and one ``nn.Linear``.
    """
    if isinstance(model, nn.RNNBase):
        return None
    if any(True for _ in model.parameters(recurse=False)):
        return None
    with_params = [m for m in model.children() if any(True for _ in m.parameters())]
    rnns = [m for m in with_params if isinstance(m, nn.RNNBase)]
    linears = [m for m in with_params if isinstance(m, nn.Linear)]
    if len(with_params) == 2 and len(rnns) == 1 and len(linears) == 1:
        return rnns[0], linears[0]
    return None


def params_from_torch_rnn(
    rnn: nn.RNN,
    readout: nn.Linear,
    *,
    dtype: torch.dtype | None = None,
    detach: bool = True,
) -> NRNNParams:
    r"""The :class:`~nrnn_theory.NRNNParams` of a one-layer tanh ``torch.nn.RNN``, exactly.

    ``torch.nn.RNN`` computes
    :math:`h_{k+1} = \tanh(W_{hh}h_k + W_{ih}x_k + b_{ih} + b_{hh})` from
    :math:`h_0 = 0`: the NRNN step (docs/theory/model.md, conventions.md) with :math:`\Delta t = 1`,
    :math:`\alpha = 1`, :math:`A = -I`, since
    :math:`h + 1\cdot(-h + \tanh(z)) = \tanh(z)`.

    .. math:: A = -I,\quad W = W_{hh},\quad U = W_{ih},\quad b = b_{ih} + b_{hh},
              \quad V = W_{\rm out},\quad c = b_{\rm out},\quad \Delta t = 1

    With ``fc`` the readout, :func:`nrnn_theory.readout` of
    :func:`nrnn_theory.rollout` then equals ``fc(rnn(xs)[0][:, -1])`` for ``(B, T, D)``
    inputs (``fc(rnn(xs.transpose(0, 1))[0][-1])`` when the module is not
    ``batch_first``), up to rounding: the NRNN step adds and subtracts :math:`h_k`.

    Parameters
    ----------
    rnn : torch.nn.RNN
        One layer, one direction, ``nonlinearity='tanh'``, with or without bias, either
        batch layout. ``dropout`` is accepted: torch applies it only between layers,
        so a one-layer module ignores it.
    readout : torch.nn.Linear
        The classifier on the last hidden state, ``in_features == rnn.hidden_size``,
        with or without bias (no bias: :math:`c = 0`).
    dtype : torch.dtype, optional
        Cast the parameters (e.g. ``torch.float64`` for certificates); default: the
        module's dtype. The device is the module's.
    detach : bool
        ``True`` (default): a detached copy to analyse. ``False``: :math:`W, U, b, V, c`
        keep the autograd graph of the module's parameters.

    Returns
    -------
    NRNNParams
        With ``dt = 1``, ``alpha = 1``, ``A = -I`` and no per-unit step.

    Raises
    ------
    ValueError
        For an ``nn.RNN`` outside the NRNN family, naming each unsupported setting
        (``nonlinearity='relu'``, ``num_layers > 1``, ``bidirectional``), or a readout
        whose ``in_features`` is not the hidden size.
    TypeError
        If ``rnn`` is not an ``nn.RNN`` (an LSTM or GRU, say), ``readout`` not an
        ``nn.Linear``, or the two have different dtypes or devices.

    See Also
    --------
    params_from_module : the same for a module holding ``(rnn, readout)``.

    Examples
    --------
    >>> from nrnn_theory import readout, rollout
    >>> rnn = torch.nn.RNN(2, 5, batch_first=True, dtype=torch.float64)
    >>> fc = torch.nn.Linear(5, 3, dtype=torch.float64)
    >>> p = params_from_torch_rnn(rnn, fc)
    >>> xs = torch.rand(4, 7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> with torch.no_grad():
    ...     expected = fc(rnn(xs)[0][:, -1])
    >>> torch.testing.assert_close(readout(p, rollout(p, xs)), expected, rtol=1e-12, atol=1e-12)
    >>> p.dt, p.alpha, bool(torch.equal(p.A, -torch.eye(5, dtype=torch.float64)))
    (1.0, 1.0, True)
    """
    rnn = _check_torch_rnn("rnn", rnn)
    if not isinstance(readout, nn.Linear):
        raise TypeError(f"readout: expected a torch.nn.Linear, got {type(readout).__name__}")
    if readout.in_features != rnn.hidden_size:
        raise ValueError(
            f"readout: expected in_features={rnn.hidden_size} (the RNN's hidden_size), "
            f"got {readout.in_features}"
        )
    if not isinstance(detach, bool):
        raise TypeError(f"detach: expected a bool, got {type(detach).__name__}")
    W_hh, W_ih = rnn.weight_hh_l0, rnn.weight_ih_l0
    if readout.weight.dtype != W_hh.dtype or readout.weight.device != W_hh.device:
        raise TypeError(
            f"readout: expected dtype {W_hh.dtype} on {W_hh.device} like rnn, got "
            f"{readout.weight.dtype} on {readout.weight.device}"
        )
    H = rnn.hidden_size
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
        b = rnn.bias_ih_l0 + rnn.bias_hh_l0 if rnn.bias else torch.zeros_like(W_hh[:, 0])
        c = readout.bias if readout.bias is not None else torch.zeros_like(readout.weight[:, 0])
        tensors = {"W": W_hh, "U": W_ih, "b": b, "V": readout.weight, "c": c}
        if detach:
            tensors = {k: v.detach().clone() for k, v in tensors.items()}
        A = -torch.eye(H, dtype=W_hh.dtype, device=W_hh.device)
        params = NRNNParams(A=A, dt=1.0, alpha=1.0, **tensors)
    return params if dtype is None else params.to(dtype=dtype)


def params_from_module(
    model: nn.Module, *, dtype: torch.dtype | None = None, detach: bool = True
) -> NRNNParams:
    r"""The :class:`~nrnn_theory.NRNNParams` of a trained NRNN-family model, detached.

    ``readout(p, rollout(p, xs))`` reproduces ``model.eval()(xs)`` (the clean forward
    pass), and ``rollout(p, xs, noise=noise_from_module(model))`` its training-mode
    dynamics; the model itself is left untouched.

    Three kinds of model are accepted, in this order:

    1. the package's NRNN family (:class:`~nrnn_theory.train.NoisyRNN`,
       :class:`~nrnn_theory.train.LipschitzRNN`,
       :class:`~nrnn_theory.train.AntisymmetricRNN`);
    2. any module with a method ``nrnn_params()`` returning
       :class:`~nrnn_theory.NRNNParams` (the protocol of the module docstring);
    3. a module holding a one-layer tanh ``torch.nn.RNN`` and an ``nn.Linear`` readout
       as its only children with parameters, whose forward applies the readout to the
       last hidden state (see :func:`params_from_torch_rnn`).

    Parameters
    ----------
    model : nn.Module
        One of the three kinds above, possibly wrapped in ``DistributedDataParallel``.
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
        :math:`A, W` from the Lipschitz parametrization of docs/theory/model.md, ``U, b, V, c``,
        ``dt``, ``alpha`` and the per-unit ``step`` when the model learns one.

    Raises
    ------
    TypeError
        For models outside these kinds (coRNN, LSTM, GRU, a bare ``nn.RNN`` without a
        readout), or an ``nrnn_params()`` that does not return ``NRNNParams``.
    ValueError
        For a torch RNN outside the NRNN family (see :func:`params_from_torch_rnn`).

    Examples
    --------
    >>> from nrnn_theory.train import LipschitzRNN
    >>> from nrnn_theory import readout, rollout
    >>> model = LipschitzRNN(1, 6, 3, generator=torch.Generator().manual_seed(0)).eval()
    >>> p = params_from_module(model)
    >>> xs = torch.rand(2, 7, 1, generator=torch.Generator().manual_seed(1))
    >>> bool(torch.equal(readout(p, rollout(p, xs)), model(xs)))
    True

    A torch RNN with its readout, in a small wrapper:

    >>> class Classifier(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn = torch.nn.RNN(1, 6, batch_first=True)
    ...         self.fc = torch.nn.Linear(6, 3)
    ...     def forward(self, x):
    ...         return self.fc(self.rnn(x)[0][:, -1])
    >>> p = params_from_module(Classifier())
    >>> p.hidden_size, p.dt
    (6, 1.0)
    """
    if not isinstance(detach, bool):
        raise TypeError(f"detach: expected a bool, got {type(detach).__name__}")
    inner = unwrap_model(model)
    if isinstance(inner, NoisyRNN) or (
        isinstance(inner, nn.Module) and callable(getattr(inner, "nrnn_params", None))
    ):
        if detach:
            with torch.no_grad():
                params = inner.nrnn_params()
        else:
            params = inner.nrnn_params()
        if not isinstance(params, NRNNParams):
            raise TypeError(
                f"model: expected {type(inner).__name__}.nrnn_params() to return NRNNParams, "
                f"got {type(params).__name__}"
            )
        if detach:
            params = params.detach()
        return params if dtype is None else params.to(dtype=dtype)
    if isinstance(inner, nn.RNNBase):
        _check_torch_rnn("model", inner)
        raise TypeError(
            "model: a torch.nn.RNN alone has no readout; pass params_from_torch_rnn(rnn, "
            "linear), or a module holding the RNN and its nn.Linear readout"
        )
    pair = _torch_rnn_pair(inner) if isinstance(inner, nn.Module) else None
    if pair is not None:
        _check_torch_rnn("model", pair[0])
        return params_from_torch_rnn(*pair, dtype=dtype, detach=detach)
    _nrnn_module(inner)  # raises the TypeError that names the NRNN family
    raise AssertionError("unreachable")  # pragma: no cover


def noise_from_module(model: nn.Module) -> NoiseSpec | None:
    """The training noise of a model (``None`` if it trains without noise).

    Parameters
    ----------
    model : nn.Module
        A model that :func:`params_from_module` accepts. The NRNN family reports its
        ``noise``; a module following the ``nrnn_params()`` protocol its ``noise``
        attribute if it has one (else ``None``); a torch RNN trains without noise
        (``None``).

    Returns
    -------
    NoiseSpec or None

    Raises
    ------
    TypeError
        For models that :func:`params_from_module` does not accept, or a ``noise``
        attribute that is neither a ``NoiseSpec`` nor ``None``.

    Examples
    --------
    >>> from nrnn_theory.train import NoisyRNN
    >>> m = NoisyRNN(1, 4, 2, noise=NoiseSpec.paper_code(add=0.02), generator=torch.Generator())
    >>> noise_from_module(m).additive
    0.02
    """
    inner = unwrap_model(model)
    if isinstance(inner, NoisyRNN):
        return inner.noise
    if isinstance(inner, nn.Module) and callable(getattr(inner, "nrnn_params", None)):
        noise = getattr(inner, "noise", None)
        if noise is not None and not isinstance(noise, NoiseSpec):
            raise TypeError(
                f"model: expected {type(inner).__name__}.noise to be a NoiseSpec or None, "
                f"got {type(noise).__name__}"
            )
        return noise
    pair = _torch_rnn_pair(inner) if isinstance(inner, nn.Module) else None
    if pair is not None:
        _check_torch_rnn("model", pair[0])
        return None
    return _nrnn_module(inner).noise


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
