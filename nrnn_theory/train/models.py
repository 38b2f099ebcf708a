r"""Sequence classifiers: the noisy RNN of docs/theory/model.md, conventions.md and the baselines it
is compared with.

Every model maps batch-first inputs ``xs`` of shape (B, T, D) to logits (B, C).

* :class:`NoisyRNN` is the Lipschitz-parametrized NRNN. Its forward pass builds an
  :class:`~nrnn_theory.NRNNParams` from its parameters and calls
  :func:`nrnn_theory.dynamics.rollout` and :func:`~nrnn_theory.dynamics.readout`, so
  training and every analysis function run one and the same implementation of the step.
  Noise is injected in ``train()`` mode and switched off in ``eval()`` mode; ``noise=``
  overrides either.
* :class:`LipschitzRNN` (the same model with noise off) and :class:`AntisymmetricRNN`
  (``alpha = 0``, ``beta = 1``, docs/theory/experiments.md) complete the NRNN family: all three have
  :class:`~nrnn_theory.NRNNParams` (see :func:`nrnn_theory.train.params_from_module`).
* :class:`CoRNN`, :class:`LSTMClassifier` and :class:`GRUClassifier` are baselines with
  other dynamics.

:func:`build_model` builds any of them from a JSON-able configuration and
:func:`model_config` returns that configuration, so a checkpoint can rebuild its model.

Initialisation draws from the keyword-only ``generator`` (``None`` means fresh
randomness from torch's default generator).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from nrnn_theory._contract import (
    check_choice,
    check_noise,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_real,
    check_shape,
    check_tensor,
)
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import readout, rollout


__all__ = [
    "MODELS",
    "AntisymmetricRNN",
    "CoRNN",
    "GRUClassifier",
    "LSTMClassifier",
    "LipschitzRNN",
    "NoisyRNN",
    "build_model",
    "model_config",
]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class _TrainingNoise:
    """Sentinel default of ``noise=``: the model's training noise in train(), none in eval()."""

    def __repr__(self) -> str:
        return "<training noise in train() mode, none in eval() mode>"


TRAINING_NOISE = _TrainingNoise()


# ------------------------------------------------------------------------------ helpers
def _dtype_name(dtype: torch.dtype | str | None) -> str:
    if dtype is None:
        dtype = torch.get_default_dtype()
    if isinstance(dtype, str):
        check_choice("dtype", dtype, _DTYPES)
        return dtype
    for name, d in _DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype}")


def _uniform(shape, bound: float, generator, dtype) -> Tensor:
    u = torch.rand(*shape, generator=generator, dtype=torch.float64)
    return ((2.0 * u - 1.0) * bound).to(dtype)


def _normal(shape, std: float, generator, dtype) -> Tensor:
    return (std * torch.randn(*shape, generator=generator, dtype=torch.float64)).to(dtype)


def _check_sizes(input_size, hidden_size, num_classes) -> tuple[int, int, int]:
    D = check_positive_int("input_size", input_size)
    H = check_positive_int("hidden_size", hidden_size)
    C = check_positive_int("num_classes", num_classes, minimum=2)
    return D, H, C


def _check_inputs(xs: object, input_size: int, dtype: torch.dtype) -> Tensor:
    xs = check_tensor("xs", xs)
    check_shape("xs", xs, (None, None, input_size), f"(B, T, D) with D = {input_size}")
    if xs.shape[1] == 0:
        raise ValueError("xs: expected at least one time step (T >= 1), got T = 0")
    if xs.dtype != dtype:
        raise TypeError(f"xs: expected dtype {dtype} (the dtype of the model), got {xs.dtype}")
    return xs


def _noise_argument(noise: object) -> NoiseSpec | None:
    """``noise=`` of the NRNN family: a NoiseSpec, ``None`` or a ``NoiseSpec.to_dict``."""
    if isinstance(noise, Mapping):
        return NoiseSpec.from_dict(noise)
    return check_noise(noise)


# ------------------------------------------------------------------------ NRNN family
class NoisyRNN(nn.Module):
    r"""Noisy Lipschitz RNN: the NRNN as a trainable classifier.

    Theory: docs/theory/model.md, docs/theory/conventions.md.

    .. math::
        h_{k+1} = h_k + s\odot\big(\alpha A h_k + \tanh(W h_k + U x_k + b)\big)
                  + \text{noise},\qquad \text{logits} = V h_T + c,

    .. math::
        A = (1-\beta)(M_A + M_A^\top) + \beta(M_A - M_A^\top) - \gamma_A I,

    and likewise :math:`W` from :math:`M_W, \gamma_W`. The noise and its
    discretization are those of ``noise`` (Euler-Maruyama for ``"sde"``, the authors'
    scheme for ``"paper_code"``; docs/theory/conventions.md). The step :math:`s` is ``dt``, or a
    trainable per-unit step initialised to ``dt`` when ``learn_step=True`` (the
    authors' ``solver='noisy'``).

    The forward pass calls :func:`nrnn_theory.dynamics.rollout` and
    :func:`~nrnn_theory.dynamics.readout` on :meth:`nrnn_params`, so this model and the
    analysis functions share one implementation.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
        ``D``, ``H`` and ``C``.
    dt : float
        Time step :math:`\Delta t > 0`.
    beta : float
        In [0, 1]: 0 gives symmetric, 1 skew-symmetric recurrent matrices.
    gamma_A, gamma_W : float
        Diagonal shifts; larger values make the linear part more dissipative.
    alpha : float
        Weight of the linear term. ``alpha = 0`` removes :math:`M_A` altogether (the
        antisymmetric ablation).
    noise : NoiseSpec or None
        Noise injected in ``train()`` mode; ``None`` trains without noise.
    learn_step : bool
        Train a per-unit step ``step`` (H,), initialised to ``dt``, as the authors'
        code does. ``dt`` then only scales ``"sde"`` noise and Lyapunov time.
    init_std : float
        :math:`M_A, M_W` have i.i.d. :math:`\mathcal N(0, (\mathrm{init\_std}/H)^2)`
        entries (the authors' initialisation). :math:`U, b, V, c` are initialised like
        ``nn.Linear``: uniform in :math:`\pm 1/\sqrt{\text{fan-in}}`.
    generator : torch.Generator, optional
        Randomness of the initialisation; ``None`` means fresh randomness.
    dtype : torch.dtype, optional
        Parameter dtype (default: torch's default dtype).

    Attributes
    ----------
    M_A, M_W : Parameter, shape (H, H)
        Free matrices, column convention (``M_A`` is absent when ``alpha = 0``).
    U : Parameter, shape (H, D)
    b : Parameter, shape (H,)
    V : Parameter, shape (C, H)
    c : Parameter, shape (C,)
    step : Parameter, shape (H,), or None
    noise : NoiseSpec or None
        The training noise.

    References
    ----------
    .. [1] S. H. Lim, N. B. Erichson, L. Hodgkinson, M. W. Mahoney, "Noisy Recurrent
       Neural Networks", NeurIPS 2021.
    .. [2] N. B. Erichson, O. Azencot, A. Queiruga, L. Hodgkinson, M. W. Mahoney,
       "Lipschitz Recurrent Neural Networks", ICLR 2021.
    .. [3] docs/theory/model.md (model), docs/theory/conventions.md (conventions),
       docs/theory/experiments.md (the authors' settings).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> model = NoisyRNN(1, 8, 3, dt=0.1, noise=NoiseSpec.paper_code(add=0.02, mult=0.02),
    ...                  generator=g)
    >>> xs = torch.rand(4, 20, 1, generator=g)
    >>> model.train()(xs, generator=g).shape
    torch.Size([4, 3])
    >>> bool(torch.equal(model.eval()(xs), model(xs, noise=None)))
    True
    """

    kind = "nrnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        dt: float = 0.1,
        beta: float = 0.75,
        gamma_A: float = 0.001,
        gamma_W: float = 0.001,
        alpha: float = 1.0,
        noise: NoiseSpec | None,
        learn_step: bool = False,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        D, H, C = _check_sizes(input_size, hidden_size, num_classes)
        self.dt = check_positive("dt", dt)
        self.beta = check_nonnegative("beta", beta)
        if self.beta > 1:
            raise ValueError(f"beta: expected a number in [0, 1], got {self.beta}")
        self.gamma_A = check_real("gamma_A", gamma_A)
        self.gamma_W = check_real("gamma_W", gamma_W)
        self.alpha = check_real("alpha", alpha)
        self.init_std = check_nonnegative("init_std", init_std)
        if not isinstance(learn_step, bool):
            raise TypeError(f"learn_step: expected a bool, got {type(learn_step).__name__}")
        self.noise = _noise_argument(noise)
        self.learn_step = learn_step
        self.input_size, self.hidden_size, self.num_classes = D, H, C
        dtype_name = _dtype_name(dtype)
        dt_ = _DTYPES[dtype_name]
        self._dtype_name = dtype_name
        g = generator
        if self.alpha != 0.0:
            self.M_A = nn.Parameter(_normal((H, H), self.init_std / H, g, dt_))
        else:
            self.register_parameter("M_A", None)
        self.M_W = nn.Parameter(_normal((H, H), self.init_std / H, g, dt_))
        self.U = nn.Parameter(_uniform((H, D), 1.0 / math.sqrt(D), g, dt_))
        self.b = nn.Parameter(_uniform((H,), 1.0 / math.sqrt(D), g, dt_))
        self.V = nn.Parameter(_uniform((C, H), 1.0 / math.sqrt(H), g, dt_))
        self.c = nn.Parameter(_uniform((C,), 1.0 / math.sqrt(H), g, dt_))
        if learn_step:
            self.step = nn.Parameter(torch.full((H,), self.dt, dtype=dt_))
        else:
            self.register_parameter("step", None)

    # -------------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments; ``build_model(model.config())`` rebuilds it."""
        return {
            "model": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_classes": self.num_classes,
            "dt": self.dt,
            "beta": self.beta,
            "gamma_A": self.gamma_A,
            "gamma_W": self.gamma_W,
            "alpha": self.alpha,
            "noise": None if self.noise is None else self.noise.to_dict(),
            "learn_step": self.learn_step,
            "init_std": self.init_std,
            "dtype": self._param_dtype_name(),
        }

    def _param_dtype_name(self) -> str:
        return _dtype_name(self.M_W.dtype)

    def extra_repr(self) -> str:
        return (
            f"D={self.input_size}, H={self.hidden_size}, C={self.num_classes}, dt={self.dt}, "
            f"beta={self.beta}, gamma_A={self.gamma_A}, gamma_W={self.gamma_W}, "
            f"alpha={self.alpha}, learn_step={self.learn_step}, noise={self.noise}"
        )

    # ---------------------------------------------------------------- dynamics
    def nrnn_params(self) -> NRNNParams:
        """The model's :class:`~nrnn_theory.NRNNParams`, differentiable in its parameters.

        Use :func:`nrnn_theory.train.params_from_module` for a detached copy to analyse.
        """
        M_A = self.M_A if self.M_A is not None else torch.zeros_like(self.M_W)
        return NRNNParams.from_lipschitz(
            M_A,
            self.M_W,
            self.U,
            self.b,
            self.V,
            self.c,
            beta=self.beta,
            gamma_A=self.gamma_A,
            gamma_W=self.gamma_W,
            dt=self.dt,
            alpha=self.alpha,
            step=self.step,
        )

    def resolve_noise(self, noise: object = TRAINING_NOISE) -> NoiseSpec | None:
        """The noise a forward call with this ``noise=`` argument injects.

        Parameters
        ----------
        noise : NoiseSpec or None, optional
            ``None``: no noise; a ``NoiseSpec``: that noise; omitted: the model's training
            noise in ``train()`` mode and none in ``eval()`` mode.

        Returns
        -------
        NoiseSpec or None
        """
        if noise is TRAINING_NOISE:
            return self.noise if self.training else None
        if noise is not None and not isinstance(noise, NoiseSpec):
            raise TypeError(f"noise: expected NoiseSpec or None, got {type(noise).__name__}")
        return noise

    def forward(
        self,
        xs: Tensor,
        *,
        noise: NoiseSpec | None | _TrainingNoise = TRAINING_NOISE,
        eta: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits (B, C) for inputs ``xs`` (B, T, D).

        Parameters
        ----------
        xs : Tensor, shape (B, T, D)
        noise : NoiseSpec or None, optional
            Default: the training noise in ``train()`` mode and none in ``eval()`` mode.
            ``None`` forces the clean (inference) rollout; a spec forces that noise.
        eta : Tensor, shape (B, T, r), optional
            Standardized noise draws (see :mod:`nrnn_theory.dynamics`), e.g. to share a
            noise path between calls.
        generator : torch.Generator, optional
            Source of the noise draws when ``eta`` is omitted.
        """
        params = self.nrnn_params()
        h = rollout(params, xs, noise=self.resolve_noise(noise), eta=eta, generator=generator)
        return readout(params, h)


class LipschitzRNN(NoisyRNN):
    r"""Lipschitz RNN: the :class:`NoisyRNN` drift trained without noise.

    .. math:: h_{k+1} = h_k + \Delta t\,\big(A h_k + \tanh(W h_k + U x_k + b)\big)

    with :math:`A, W` in the :math:`(M, \beta, \gamma)` parametrization of docs/theory/model.md.
    Same parameters and keyword arguments as :class:`NoisyRNN`, without ``noise``; the
    forward pass still accepts ``noise=`` to analyse the trained model under noise.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
        ``D``, ``H`` and ``C``.
    **kwargs
        The keyword arguments of :class:`NoisyRNN` except ``noise``.

    References
    ----------
    .. [1] N. B. Erichson, O. Azencot, A. Queiruga, L. Hodgkinson, M. W. Mahoney,
       "Lipschitz Recurrent Neural Networks", ICLR 2021.

    Examples
    --------
    >>> model = LipschitzRNN(1, 8, 3, dt=0.03, generator=torch.Generator().manual_seed(0))
    >>> model.noise is None, model(torch.zeros(2, 5, 1)).shape
    (True, torch.Size([2, 3]))
    """

    kind = "lipschitz"

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, **kwargs) -> None:
        if "noise" in kwargs:
            raise TypeError("LipschitzRNN: takes no 'noise' (it is NoisyRNN without noise)")
        super().__init__(input_size, hidden_size, num_classes, noise=None, **kwargs)

    def config(self) -> dict[str, Any]:
        config = super().config()
        del config["noise"]
        return config


class AntisymmetricRNN(NoisyRNN):
    r"""Antisymmetric RNN: ``alpha = 0``, ``beta = 1`` (docs/theory/experiments.md).

    .. math:: h_{k+1} = h_k + \Delta t\,\tanh\big((M_W - M_W^\top - \gamma I) h_k
              + U x_k + b\big)

    The recurrent matrix is skew-symmetric minus :math:`\gamma I`, so the Jacobian of
    the continuous dynamics has eigenvalues with real parts :math:`\le 0`.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
    dt : float
        Step :math:`\Delta t` (the ``epsilon`` of Chang et al.).
    gamma : float
        Diffusion :math:`\gamma` (``gamma_W`` of the NRNN family).
    noise : NoiseSpec or None
        Training noise (default none, as in the authors' baseline).
    learn_step, init_std, generator, dtype
        As in :class:`NoisyRNN`.

    References
    ----------
    .. [1] B. Chang, M. Chen, E. Haber, E. H. Chi, "AntisymmetricRNN: A Dynamical
       System View on Recurrent Neural Networks", ICLR 2019.

    Examples
    --------
    >>> model = AntisymmetricRNN(1, 4, 2, dt=0.01, gamma=1e-4,
    ...                          generator=torch.Generator().manual_seed(0))
    >>> p = model.nrnn_params()
    >>> p.alpha, bool(torch.allclose(p.W + p.W.T, -2e-4 * torch.eye(4)))
    (0.0, True)
    """

    kind = "antisymmetric"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        dt: float = 0.01,
        gamma: float = 0.0001,
        noise: NoiseSpec | None = None,
        learn_step: bool = False,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_classes,
            dt=dt,
            beta=1.0,
            gamma_A=0.0,
            gamma_W=gamma,
            alpha=0.0,
            noise=noise,
            learn_step=learn_step,
            init_std=init_std,
            generator=generator,
            dtype=dtype,
        )

    def config(self) -> dict[str, Any]:
        c = super().config()
        return {
            "model": self.kind,
            "input_size": c["input_size"],
            "hidden_size": c["hidden_size"],
            "num_classes": c["num_classes"],
            "dt": c["dt"],
            "gamma": c["gamma_W"],
            "noise": c["noise"],
            "learn_step": c["learn_step"],
            "init_std": c["init_std"],
            "dtype": c["dtype"],
        }


# --------------------------------------------------------------------------- baselines
class CoRNN(nn.Module):
    r"""Coupled oscillatory RNN (coRNN), a second-order ODE discretized in time.

    .. math::
        z_k = z_{k-1} + \Delta t\,\big(\tanh(W_y y_{k-1} + W_z z_{k-1} + U x_k + b)
              - \gamma y_{k-1} - \epsilon z_\star\big),\qquad
        y_k = y_{k-1} + \Delta t\, z_k,

    with :math:`z_\star = z_k` (``scheme="imex"``, the implicit-explicit scheme of the
    paper) or :math:`z_\star = z_{k-1}` (``scheme="explicit"``, the variant found in
    its public code). Logits :math:`V y_T + c`.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
    dt : float
        Time step :math:`\Delta t > 0`.
    gamma, epsilon : float
        Oscillator stiffness and damping, both >= 0. The defaults are generic; the
        authors tune them per task.
    scheme : {"imex", "explicit"}
    generator : torch.Generator, optional
        Randomness of the initialisation (uniform in :math:`\pm 1/\sqrt{D + 2H}` for
        the input and recurrent weights, as one ``nn.Linear`` over :math:`[x, z, y]`).
    dtype : torch.dtype, optional

    References
    ----------
    .. [1] T. K. Rusch, S. Mishra, "Coupled Oscillatory Recurrent Neural Network
       (coRNN): An accurate and (gradient) stable architecture for learning long time
       dependencies", ICLR 2021.

    Examples
    --------
    >>> model = CoRNN(2, 8, 3, generator=torch.Generator().manual_seed(0))
    >>> model(torch.zeros(5, 10, 2)).shape
    torch.Size([5, 3])
    """

    kind = "cornn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        dt: float = 0.05,
        gamma: float = 1.0,
        epsilon: float = 1.0,
        scheme: Literal["imex", "explicit"] = "imex",
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        D, H, C = _check_sizes(input_size, hidden_size, num_classes)
        self.input_size, self.hidden_size, self.num_classes = D, H, C
        self.dt = check_positive("dt", dt)
        self.gamma = check_nonnegative("gamma", gamma)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.scheme = check_choice("scheme", scheme, ("imex", "explicit"))
        dt_ = _DTYPES[_dtype_name(dtype)]
        g = generator
        bound = 1.0 / math.sqrt(D + 2 * H)
        self.U = nn.Parameter(_uniform((H, D), bound, g, dt_))
        self.W_z = nn.Parameter(_uniform((H, H), bound, g, dt_))
        self.W_y = nn.Parameter(_uniform((H, H), bound, g, dt_))
        self.b = nn.Parameter(_uniform((H,), bound, g, dt_))
        self.V = nn.Parameter(_uniform((C, H), 1.0 / math.sqrt(H), g, dt_))
        self.c = nn.Parameter(_uniform((C,), 1.0 / math.sqrt(H), g, dt_))

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {
            "model": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_classes": self.num_classes,
            "dt": self.dt,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "scheme": self.scheme,
            "dtype": _dtype_name(self.U.dtype),
        }

    def forward(self, xs: Tensor) -> Tensor:
        """Logits (B, C) for inputs ``xs`` (B, T, D).

        Parameters
        ----------
        xs : Tensor, shape (B, T, D)

        Returns
        -------
        Tensor, shape (B, C)
        """
        xs = _check_inputs(xs, self.input_size, self.U.dtype)
        B = xs.shape[0]
        H = self.hidden_size
        ux = torch.addmm(self.b, xs.reshape(-1, self.input_size), self.U.mT).reshape(B, -1, H)
        R = torch.cat([self.W_z, self.W_y], dim=1).mT  # [z, y] @ R = W_z z + W_y y
        y = xs.new_zeros(B, H)
        z = xs.new_zeros(B, H)
        dt, gamma, eps = self.dt, self.gamma, self.epsilon
        imex = self.scheme == "imex"
        for u in ux.unbind(1):
            act = torch.tanh(torch.cat([z, y], dim=1) @ R + u)
            if imex:
                z = (z + dt * (act - gamma * y)) / (1.0 + dt * eps)
            else:
                z = z + dt * (act - gamma * y - eps * z)
            y = y + dt * z
        return torch.addmm(self.c, y, self.V.mT)


class _GatedClassifier(nn.Module):
    """A one-or-more-layer gated RNN from ``torch.nn`` with a linear readout of h_T."""

    kind = ""
    _cell: type[nn.Module] = nn.Module

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        num_layers: int = 1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        D, H, C = _check_sizes(input_size, hidden_size, num_classes)
        self.input_size, self.hidden_size, self.num_classes = D, H, C
        self.num_layers = check_positive_int("num_layers", num_layers)
        dt_ = _DTYPES[_dtype_name(dtype)]
        self.rnn = self._cell(D, H, num_layers=self.num_layers, batch_first=True, dtype=dt_)
        self.readout = nn.Linear(H, C, dtype=dt_)
        # Re-draw every weight from ``generator`` with torch's own init distribution.
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.copy_(_uniform(p.shape, 1.0 / math.sqrt(H), generator, dt_))
            self.readout.weight.copy_(_uniform((C, H), 1.0 / math.sqrt(H), generator, dt_))
            self.readout.bias.copy_(_uniform((C,), 1.0 / math.sqrt(H), generator, dt_))

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {
            "model": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_classes": self.num_classes,
            "num_layers": self.num_layers,
            "dtype": _dtype_name(self.readout.weight.dtype),
        }

    def forward(self, xs: Tensor) -> Tensor:
        """Logits (B, C) from the last layer's final hidden state; ``xs`` is (B, T, D).

        Parameters
        ----------
        xs : Tensor, shape (B, T, D)

        Returns
        -------
        Tensor, shape (B, C)
        """
        xs = _check_inputs(xs, self.input_size, self.readout.weight.dtype)
        out, _ = self.rnn(xs)
        return self.readout(out[:, -1])


_GATED_DOC = """{cell} sequence classifier: ``nn.{cell}`` (batch first) and a linear readout of h_T.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
    num_layers : int
        Stacked {cell} layers.
    generator : torch.Generator, optional
        Randomness of the initialisation (uniform in :math:`\\pm 1/\\sqrt H`, torch's rule).
    dtype : torch.dtype, optional

    References
    ----------
    .. [1] {reference}

    Examples
    --------
    >>> {name}(3, 8, 4, generator=torch.Generator().manual_seed(0))(
    ...     torch.zeros(2, 5, 3)).shape
    torch.Size([2, 4])
    """


class LSTMClassifier(_GatedClassifier):
    kind = "lstm"
    _cell = nn.LSTM


class GRUClassifier(_GatedClassifier):
    kind = "gru"
    _cell = nn.GRU


LSTMClassifier.__doc__ = _GATED_DOC.format(
    cell="LSTM",
    name="LSTMClassifier",
    reference='S. Hochreiter, J. Schmidhuber, "Long Short-Term Memory", Neural\n'
    "       Computation 9(8), 1997.",
)
GRUClassifier.__doc__ = _GATED_DOC.format(
    cell="GRU",
    name="GRUClassifier",
    reference="K. Cho, B. van Merriënboer, C. Gulcehre, D. Bahdanau, F. Bougares,\n"
    '       H. Schwenk, Y. Bengio, "Learning Phrase Representations using RNN\n'
    '       Encoder-Decoder for Statistical Machine Translation", EMNLP 2014.',
)


# ------------------------------------------------------------------------- registry
#: Model name (the ``"model"`` entry of a config, ``nrnn train --model``) -> class.
MODELS: dict[str, type[nn.Module]] = {
    "nrnn": NoisyRNN,
    "lipschitz": LipschitzRNN,
    "antisymmetric": AntisymmetricRNN,
    "cornn": CoRNN,
    "lstm": LSTMClassifier,
    "gru": GRUClassifier,
}


def unwrap_model(model: object) -> object:
    """The model inside ``DistributedDataParallel``/``DataParallel`` wrappers.

    Package-internal (not in ``__all__``): used by the checkpoint, loop and penalty
    modules of :mod:`nrnn_theory.train`.
    """
    while isinstance(model, DistributedDataParallel | DataParallel):
        model = model.module
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """The JSON-able configuration that :func:`build_model` turns back into ``model``.

    Parameters
    ----------
    model : nn.Module
        A model of :data:`MODELS` (possibly wrapped in ``DistributedDataParallel``).

    Returns
    -------
    dict
        ``"model"`` (the registry name), the sizes, every hyper-parameter, the noise
        (its :meth:`~nrnn_theory.NoiseSpec.to_dict`, or ``None``) and the parameter
        ``"dtype"``.

    Examples
    --------
    >>> m = LipschitzRNN(1, 4, 2, generator=torch.Generator().manual_seed(0))
    >>> model_config(m)["model"], model_config(m)["hidden_size"]
    ('lipschitz', 4)
    """
    inner = unwrap_model(model)
    if type(inner) not in MODELS.values():
        raise TypeError(
            f"model: expected one of {', '.join(c.__name__ for c in MODELS.values())}, "
            f"got {type(inner).__name__}"
        )
    return inner.config()


def build_model(config: dict[str, Any], *, generator: torch.Generator | None = None) -> nn.Module:
    """Build a model from its JSON-able configuration (the inverse of :func:`model_config`).

    Parameters
    ----------
    config : dict
        ``{"model": name, "input_size": D, "hidden_size": H, "num_classes": C, ...}``
        with ``name`` in :data:`MODELS` and the remaining keys the keyword arguments of
        that class (``"noise"`` may be a :class:`~nrnn_theory.NoiseSpec` or its
        :meth:`~nrnn_theory.NoiseSpec.to_dict`, also in the un-versioned layout of
        older checkpoints; ``"dtype"`` a name such as ``"float64"``).
    generator : torch.Generator, optional
        Randomness of the initialisation.

    Returns
    -------
    nn.Module
        A freshly initialised model in training mode.

    Raises
    ------
    ValueError, TypeError
        For an unknown model name, a missing size or an unknown keyword (named).

    Examples
    --------
    >>> m = build_model({"model": "nrnn", "input_size": 1, "hidden_size": 4,
    ...                  "num_classes": 2, "noise": {"sigma1": 0.1}},
    ...                 generator=torch.Generator().manual_seed(0))
    >>> type(m).__name__, m.noise.additive
    ('NoisyRNN', 0.1)
    """
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict, got {type(config).__name__}")
    kwargs = dict(config)
    name = kwargs.pop("model", None)
    check_choice("config['model']", name, MODELS)
    cls = MODELS[name]
    sizes = []
    for key in ("input_size", "hidden_size", "num_classes"):
        if key not in kwargs:
            raise ValueError(f"config: missing {key!r} for model {name!r}")
        sizes.append(kwargs.pop(key))
    if "dtype" in kwargs:
        kwargs["dtype"] = _DTYPES[_dtype_name(kwargs["dtype"])]
    if "noise" in kwargs:
        kwargs["noise"] = _noise_argument(kwargs["noise"])
    elif cls is NoisyRNN:
        kwargs["noise"] = None
    signature_of = NoisyRNN if cls is LipschitzRNN else cls
    accepted = set(inspect.signature(signature_of.__init__).parameters) - {"self", "generator"}
    if cls is LipschitzRNN:
        accepted.discard("noise")
    unknown = set(kwargs) - accepted
    if unknown:
        raise TypeError(f"config: unknown option(s) {sorted(unknown)} for model {name!r}")
    return cls(*sizes, generator=generator, **kwargs)
