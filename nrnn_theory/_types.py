"""The two records everything computes on: model parameters and noise specification.

Both are frozen dataclasses validated on construction (docs/theory/model.md, conventions.md;
docs/contributing.md, *API conventions*). They hold tensors, not ``nn.Module``
objects, so every analysis is a pure function of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from nrnn_theory._contract import (
    check_choice,
    check_finite,
    check_nonnegative,
    check_positive,
    check_real,
    check_same_dtype_device,
    check_shape,
    check_tensor,
)
from nrnn_theory._linalg import lipschitz_matrix
from nrnn_theory._vocabulary import CONVENTIONS, NOISE_STRUCTURES


__all__ = [
    "CONVENTIONS",
    "NOISE_STRUCTURES",
    "SCHEMA_VERSION",
    "Convention",
    "NRNNParams",
    "NoiseSpec",
    "Structure",
]

Convention = Literal["sde", "paper_code"]
Structure = Literal["diagonal", "scalar"]


#: Version of the ``to_dict`` layouts below; ``from_dict`` reads this version and
#: dictionaries without a ``schema`` key (written before serialization was versioned).
SCHEMA_VERSION = 1

_DTYPE_NAMES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def _check_mapping(name: str, data: object, kind: str, required: set[str], optional: set[str]):
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{name}: expected a mapping (the output of {kind}.to_dict), got {type(data).__name__}"
        )
    schema = data.get("schema", f"{kind}/{SCHEMA_VERSION}")
    if schema != f"{kind}/{SCHEMA_VERSION}":
        raise ValueError(f"{name}: expected schema {kind}/{SCHEMA_VERSION!r}, got {schema!r}")
    keys = set(data) - {"schema"}
    missing = sorted(required - keys)
    if missing:
        raise ValueError(f"{name}: missing key(s) {missing} for {kind}")
    extra = sorted(keys - required - optional)
    if extra:
        raise ValueError(
            f"{name}: unknown key(s) {extra} for {kind}; expected a subset of "
            f"{sorted(required | optional)}"
        )
    return {k: data[k] for k in keys}


@dataclass(frozen=True, eq=False)
class NRNNParams:
    r"""Parameters of a (noisy) Lipschitz-type RNN, column convention.

    The drift is :math:`f(h, x) = \alpha A h + \tanh(W h + U x + b)` and the clean
    Euler step is :math:`h_{k+1} = h_k + s \odot f(h_k, x_k)` with step ``s = dt``
    or the per-unit ``step`` (docs/theory/model.md, conventions.md). The readout is :math:`V h + c`.

    Parameters
    ----------
    A : Tensor, shape (H, H)
        Linear part of the drift.
    W : Tensor, shape (H, H)
        Recurrent matrix inside the activation.
    U : Tensor, shape (H, D)
        Input matrix.
    b : Tensor, shape (H,)
        Hidden bias.
    V : Tensor, shape (C, H)
        Readout matrix.
    c : Tensor, shape (C,)
        Readout bias.
    dt : float
        Time step :math:`\Delta t > 0`. Scales the ``"sde"`` noise by
        :math:`\sqrt{\Delta t}` and converts per-step Lyapunov exponents to per unit time.
    step : Tensor, shape (H,), optional
        Per-unit step :math:`d` of the authors' code (initialised to ``dt`` and
        trained there). ``None`` means ``dt`` for every unit.
    alpha : float
        Weight of the linear term; ``alpha = 0`` gives the antisymmetric-RNN ablation.

    Raises
    ------
    ValueError, TypeError
        On inconsistent shapes, mixed dtypes or devices, non-finite entries or
        ``dt <= 0``; the message names the field.

    Examples
    --------
    >>> H, D, C = 3, 2, 4
    >>> p = NRNNParams(A=-torch.eye(H), W=torch.zeros(H, H), U=torch.ones(H, D),
    ...                b=torch.zeros(H), V=torch.ones(C, H), c=torch.zeros(C), dt=0.1)
    >>> (p.hidden_size, p.input_size, p.num_classes)
    (3, 2, 4)
    """

    A: Tensor
    W: Tensor
    U: Tensor
    b: Tensor
    V: Tensor
    c: Tensor
    dt: float
    step: Tensor | None = None
    alpha: float = 1.0

    def __post_init__(self) -> None:
        A = check_tensor("A", self.A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A: expected a square matrix (H, H), got shape {tuple(A.shape)}")
        H = A.shape[0]
        W = check_tensor("W", self.W)
        check_shape("W", W, (H, H), f"to match A {tuple(A.shape)}")
        U = check_tensor("U", self.U)
        if U.ndim != 2 or U.shape[0] != H:
            raise ValueError(f"U: expected shape ({H}, D) to match A, got {tuple(U.shape)}")
        check_shape("b", check_tensor("b", self.b), (H,), "(one bias per hidden unit)")
        V = check_tensor("V", self.V)
        if V.ndim != 2 or V.shape[1] != H:
            raise ValueError(f"V: expected shape (C, {H}) to match A, got {tuple(V.shape)}")
        check_shape("c", check_tensor("c", self.c), (V.shape[0],), f"to match V {tuple(V.shape)}")
        if H == 0:
            raise ValueError("A: expected at least one hidden unit (H >= 1), got shape (0, 0)")
        if U.shape[1] == 0:
            raise ValueError(f"U: expected at least one input per step (D >= 1), got ({H}, 0)")
        if V.shape[0] == 0:
            raise ValueError(f"V: expected at least one class (C >= 1), got shape (0, {H})")
        fields = {"W": W, "U": U, "b": self.b, "V": V, "c": self.c}
        if self.step is not None:
            check_shape("step", check_tensor("step", self.step), (H,), "(one step per unit)")
            fields["step"] = self.step
        for name, t in fields.items():
            check_same_dtype_device(name, t, "A", A)
        for name, t in {"A": A, **fields}.items():
            check_finite(name, t)
        object.__setattr__(self, "dt", check_positive("dt", self.dt))
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha))

    # ------------------------------------------------------------------ sizes
    @property
    def hidden_size(self) -> int:
        """Number of hidden units ``H``."""
        return self.A.shape[0]

    @property
    def input_size(self) -> int:
        """Input dimension ``D``."""
        return self.U.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of readout classes ``C``."""
        return self.V.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.A.dtype

    @property
    def device(self) -> torch.device:
        return self.A.device

    @property
    def drift_step(self) -> Tensor:
        """The clean step vector ``s`` of shape (H,): ``step`` if given, else ``dt``."""
        if self.step is not None:
            return self.step
        return torch.full((self.hidden_size,), self.dt, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_lipschitz(
        cls,
        M_A: Tensor,
        M_W: Tensor,
        U: Tensor,
        b: Tensor,
        V: Tensor,
        c: Tensor,
        *,
        beta: float,
        gamma_A: float,
        gamma_W: float,
        dt: float,
        alpha: float = 1.0,
        step: Tensor | None = None,
    ) -> NRNNParams:
        r"""Build from the Lipschitz-RNN parametrization of docs/theory/model.md.

        .. math:: A = (1-\beta)(M_A + M_A^\top) + \beta(M_A - M_A^\top) - \gamma_A I,

        and likewise :math:`W` from :math:`M_W, \gamma_W`. Differentiable in every
        tensor argument.

        Parameters
        ----------
        M_A, M_W : Tensor, shape (H, H)
            The free matrices of :math:`A` and :math:`W`.
        U : Tensor, shape (H, D)
        b : Tensor, shape (H,)
        V : Tensor, shape (C, H)
        c : Tensor, shape (C,)
        beta : float
            Weight of the skew-symmetric part, in [0, 1].
        gamma_A, gamma_W : float
            Diagonal shifts :math:`\gamma_A, \gamma_W`.
        dt : float
            Time step :math:`\Delta t > 0`.
        alpha : float
            Weight of the linear term (default 1).
        step : Tensor, shape (H,), optional
            Per-unit step (default: ``dt`` for every unit).

        Returns
        -------
        NRNNParams

        Examples
        --------
        >>> M = torch.zeros(2, 2)
        >>> p = NRNNParams.from_lipschitz(M, M, torch.ones(2, 1), torch.zeros(2),
        ...     torch.ones(3, 2), torch.zeros(3), beta=0.75, gamma_A=0.1, gamma_W=0.2, dt=0.1)
        >>> torch.diagonal(p.A).tolist(), torch.diagonal(p.W).tolist()
        ([-0.1, -0.1], [-0.2, -0.2])
        """
        check_tensor("M_A", M_A)
        check_tensor("M_W", M_W)
        beta = check_nonnegative("beta", beta)
        if beta > 1:
            raise ValueError(f"beta: expected a number in [0, 1], got {beta}")
        gamma_A = float(gamma_A)
        gamma_W = float(gamma_W)
        return cls(
            A=lipschitz_matrix(M_A, beta, gamma_A),
            W=lipschitz_matrix(M_W, beta, gamma_W),
            U=U,
            b=b,
            V=V,
            c=c,
            dt=dt,
            step=step,
            alpha=alpha,
        )

    # ------------------------------------------------------------- conversion
    def to(self, *args, **kwargs) -> NRNNParams:
        """A copy with every tensor moved/cast by ``Tensor.to(*args, **kwargs)``.

        Parameters
        ----------
        *args, **kwargs
            Passed to every tensor's ``Tensor.to`` (a dtype, a device, or both).

        Returns
        -------
        NRNNParams
        """
        changes = {
            f.name: getattr(self, f.name).to(*args, **kwargs)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **changes)

    def detach(self) -> NRNNParams:
        """A copy with every tensor detached from autograd."""
        changes = {
            f.name: getattr(self, f.name).detach()
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **changes)

    def replace(self, **changes) -> NRNNParams:
        """A validated copy with some fields replaced.

        Parameters
        ----------
        **changes
            New values of fields, by name (``dt=...``, ``W=...``); the copy is validated.

        Returns
        -------
        NRNNParams
        """
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------- serialization
    _TENSORS = ("A", "W", "U", "b", "V", "c")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (nested lists, versioned) that :meth:`from_dict` reads.

        Values are stored exactly as Python floats of the record's dtype, so
        ``NRNNParams.from_dict(p.to_dict())`` equals ``p`` bitwise (on the CPU).

        Examples
        --------
        >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.ones(2, 1),
        ...                b=torch.zeros(2), V=torch.ones(3, 2), c=torch.zeros(3), dt=0.1)
        >>> q = NRNNParams.from_dict(p.to_dict())
        >>> bool(torch.equal(q.A, p.A)), q.dt
        (True, 0.1)
        """
        dtype_name = str(self.dtype).removeprefix("torch.")
        out: dict[str, Any] = {"schema": f"NRNNParams/{SCHEMA_VERSION}", "dtype": dtype_name}
        for name in self._TENSORS:
            out[name] = getattr(self, name).detach().cpu().tolist()
        out["step"] = None if self.step is None else self.step.detach().cpu().tolist()
        out["dt"] = self.dt
        out["alpha"] = self.alpha
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, device: torch.device | str | None = None):
        """Rebuild a record from :meth:`to_dict` output (validated like the constructor).

        Parameters
        ----------
        data : Mapping
            The dictionary; a missing or unknown key, another schema version or an
            unknown dtype raises ``ValueError`` naming it.
        device : torch.device or str, optional
            Where to put the tensors (default CPU).
        """
        fields = _check_mapping(
            "params", data, "NRNNParams", {*cls._TENSORS, "dtype", "dt"}, {"step", "alpha"}
        )
        dtype = _DTYPE_NAMES.get(fields.pop("dtype"))
        if dtype is None:
            raise ValueError(
                f"params: expected dtype one of {sorted(_DTYPE_NAMES)}, got {data['dtype']!r}"
            )
        kwargs: dict[str, Any] = {"dt": fields.pop("dt"), "alpha": fields.pop("alpha", 1.0)}
        for name, value in fields.items():
            if value is None and name == "step":
                continue
            try:
                kwargs[name] = torch.tensor(value, dtype=dtype, device=device)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ValueError(f"{name}: expected a nested list of numbers, got {err}") from None
        return cls(**kwargs)


@dataclass(frozen=True)
class NoiseSpec:
    r"""Noise injected into the hidden state, and the convention that discretizes it.

    ``"sde"`` (Euler-Maruyama, docs/theory/conventions.md):

    .. math:: h_{k+1} = h_k + \Delta t\, f(h_k, x_k)
              + \epsilon\sqrt{\Delta t}\,\sigma(h_k)\,\xi_k,

    with ``structure="diagonal"``: :math:`\sigma(h) = \sigma_1 I + \sigma_2\,\mathrm{diag}(h)`
    (one Brownian motion per unit), or ``structure="scalar"``:
    :math:`\sigma\,dB = \sigma_1 dB^{(1)} + \sigma_2 h\, d\beta` (one shared scalar
    Brownian motion :math:`\beta` for the multiplicative part).

    ``"paper_code"`` (the authors' public code, docs/theory/conventions.md):

    .. math:: h_{k+1} = h_k + d\odot m_k\odot f(h_k, x_k) + a\,\zeta_k,\quad
              m_k = 1-\mu+\mu u_k,\ u_k\sim\mathcal U(0,1)^H,

    with ``a = epsilon * sigma1`` (``add_noise``) and ``mu = epsilon * sigma2``
    (``mult_noise``); use :meth:`paper_code` to build it from ``(a, mu)``.

    Parameters
    ----------
    epsilon : float
        Overall noise scale :math:`\epsilon \ge 0`; the small-noise expansions of
        docs/theory/regularizer.md are in powers of it.
    sigma1 : float
        Additive level :math:`\sigma_1 \ge 0`.
    sigma2 : float
        Multiplicative level :math:`\sigma_2 \ge 0`.
    structure : {"diagonal", "scalar"}
        Noise structure of the ``"sde"`` convention (docs/theory/model.md). ``"paper_code"``
        draws an independent factor per unit and requires ``"diagonal"``.
    convention : {"sde", "paper_code"}
        Discretization convention (docs/theory/conventions.md).

    Examples
    --------
    >>> NoiseSpec(epsilon=0.1, sigma1=1.0).additive
    0.1
    >>> NoiseSpec.paper_code(add=0.02, mult=0.02).convention
    'paper_code'
    """

    epsilon: float = 1.0
    sigma1: float = 0.0
    sigma2: float = 0.0
    structure: Structure = "diagonal"
    convention: Convention = "sde"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_nonnegative("epsilon", self.epsilon))
        object.__setattr__(self, "sigma1", check_nonnegative("sigma1", self.sigma1))
        object.__setattr__(self, "sigma2", check_nonnegative("sigma2", self.sigma2))
        check_choice("structure", self.structure, NOISE_STRUCTURES)
        check_choice("convention", self.convention, CONVENTIONS)
        if self.convention == "paper_code" and self.structure != "diagonal":
            raise ValueError(
                "structure: expected 'diagonal' for convention 'paper_code' (the authors' "
                f"code draws one factor per unit), got {self.structure!r}"
            )
        if self.convention == "paper_code" and self.multiplicative > 1:
            raise ValueError(
                "sigma2: expected epsilon * sigma2 <= 1 for convention 'paper_code' (the "
                f"factor 1 - mu + mu*u must stay >= 0), got mu = {self.multiplicative}"
            )

    @classmethod
    def paper_code(cls, add: float = 0.0, mult: float = 0.0) -> NoiseSpec:
        r"""The authors' ``add_noise = a``, ``mult_noise = mu`` (with ``epsilon = 1``).

        Parameters
        ----------
        add : float
            The additive level :math:`a \ge 0` (the authors' ``add_noise``).
        mult : float
            The multiplicative level :math:`\mu \ge 0` (the authors' ``mult_noise``).

        Returns
        -------
        NoiseSpec
            With ``convention="paper_code"``, ``sigma1 = add``, ``sigma2 = mult``.
        """
        return cls(epsilon=1.0, sigma1=add, sigma2=mult, convention="paper_code")

    @property
    def additive(self) -> float:
        r"""Effective additive level :math:`\epsilon\sigma_1` (``a`` for ``"paper_code"``)."""
        return self.epsilon * self.sigma1

    @property
    def multiplicative(self) -> float:
        r"""Effective multiplicative level :math:`\epsilon\sigma_2` (``mu`` of ``"paper_code"``)."""
        return self.epsilon * self.sigma2

    @property
    def is_zero(self) -> bool:
        """True when no noise is injected at all."""
        return self.additive == 0.0 and self.multiplicative == 0.0

    def scaled(self, epsilon: float) -> NoiseSpec:
        """The same noise with a different overall scale ``epsilon``.

        Parameters
        ----------
        epsilon : float
            The new scale, >= 0.

        Returns
        -------
        NoiseSpec
        """
        return dataclasses.replace(self, epsilon=epsilon)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe, versioned dictionary of the five fields (read by :meth:`from_dict`).

        Examples
        --------
        >>> d = NoiseSpec.paper_code(add=0.05, mult=0.02).to_dict()
        >>> d["convention"], NoiseSpec.from_dict(d) == NoiseSpec.paper_code(add=0.05, mult=0.02)
        ('paper_code', True)
        """
        return {
            "schema": f"NoiseSpec/{SCHEMA_VERSION}",
            "epsilon": self.epsilon,
            "sigma1": self.sigma1,
            "sigma2": self.sigma2,
            "structure": self.structure,
            "convention": self.convention,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NoiseSpec | None:
        """Rebuild from :meth:`to_dict` output; ``None`` (no noise) stays ``None``.

        Missing fields take the constructor's defaults; an unknown key or another
        schema version raises ``ValueError`` naming it, and values are validated as
        by the constructor.

        Parameters
        ----------
        data : Mapping or None
            The output of :meth:`to_dict`, or ``None``.

        Returns
        -------
        NoiseSpec or None
        """
        if data is None:
            return None
        fields = _check_mapping(
            "noise",
            data,
            "NoiseSpec",
            set(),
            {"epsilon", "sigma1", "sigma2", "structure", "convention"},
        )
        return cls(**fields)
