r"""Symbolic NRNN: parameter symbols, drift, clean chain and readout loss (docs/theory/model.md,
conventions.md).

The symbolic counterpart of :mod:`nrnn_theory.dynamics` for small concrete sizes: every
entry of :math:`A, W, U, b, V, c`, the inputs :math:`x_k`, the initial state, the
per-unit step :math:`d`, the noise levels and the one-hot label are sympy symbols, so
expressions built from them can be compared with the torch kernels at random points
through :func:`nrnn_theory.symbolic.to_numpy_fn`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.symbolic import _symbols


__all__ = ["NRNNSymbols", "clean_chain_expr", "cross_entropy_expr", "drift_expr"]


def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))


def _vector(name: str, n: int, **assumptions) -> sp.Matrix:
    return sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"{name}_{i + 1}", **assumptions))


@dataclass(frozen=True)
class NRNNSymbols:
    r"""Symbols of an NRNN with ``H`` units, ``D`` inputs, ``C`` classes and ``M`` steps.

    Attributes
    ----------
    A, W : sympy.Matrix, shape (H, H)
    U : sympy.Matrix, shape (H, D)
    b : sympy.Matrix, shape (H, 1)
    V : sympy.Matrix, shape (C, H)
    c : sympy.Matrix, shape (C, 1)
    xs : tuple of sympy.Matrix, each shape (D, 1)
        Inputs :math:`x_0, \dots, x_{M-1}`.
    h0 : sympy.Matrix, shape (H, 1)
    d : sympy.Matrix, shape (H, 1)
        Per-unit drift step (``params.step``, or ``dt`` in every entry).
    onehot : sympy.Matrix, shape (C, 1)
        One-hot label :math:`e_y`.
    alpha, dt, sigma1, sigma2, a, mu : sympy.Symbol
        Weight of the linear term, time step (scales ``"sde"`` noise by
        :math:`\sqrt{\Delta t}`), ``"sde"`` levels per unit :math:`\epsilon`, and the
        ``"paper_code"`` levels.

    Examples
    --------
    >>> sym = NRNNSymbols.create(H=2, D=1, C=2, M=3)
    >>> len(sym.args()), sym.A.shape
    (33, (2, 2))
    """

    A: sp.Matrix
    W: sp.Matrix
    U: sp.Matrix
    b: sp.Matrix
    V: sp.Matrix
    c: sp.Matrix
    xs: tuple[sp.Matrix, ...]
    h0: sp.Matrix
    d: sp.Matrix
    onehot: sp.Matrix
    alpha: sp.Symbol
    dt: sp.Symbol
    sigma1: sp.Symbol
    sigma2: sp.Symbol
    a: sp.Symbol
    mu: sp.Symbol

    @classmethod
    def create(cls, H: int, D: int, C: int, M: int) -> NRNNSymbols:
        """Fresh symbols for the given sizes.

        Parameters
        ----------
        H, D, C, M : int
            Hidden size, input size, number of classes and number of steps.

        Returns
        -------
        NRNNSymbols
        """
        return cls(
            A=_matrix("A", H, H),
            W=_matrix("W", H, H),
            U=_matrix("U", H, D),
            b=_vector("b", H, real=True),
            V=_matrix("V", C, H),
            c=_vector("c", C, real=True),
            xs=tuple(_vector(f"x{k}", D, real=True) for k in range(M)),
            h0=_vector("h0", H, real=True),
            d=_vector("d", H, positive=True),
            onehot=_vector("e", C, real=True),
            alpha=sp.Symbol("alpha", real=True),
            dt=_symbols.dt,
            sigma1=_symbols.sigma1,
            sigma2=_symbols.sigma2,
            a=_symbols.a,
            mu=_symbols.mu,
        )

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """``(H, D, C, M)``."""
        return self.A.shape[0], self.U.shape[1], self.V.shape[0], len(self.xs)

    def args(self) -> tuple[sp.Symbol, ...]:
        """Every symbol, in the fixed order :meth:`values` follows."""
        mats = [self.A, self.W, self.U, self.b, self.V, self.c, *self.xs, self.h0, self.d]
        flat = [s for m in mats for s in m]
        flat += list(self.onehot)
        return (*flat, self.alpha, self.dt, self.sigma1, self.sigma2, self.a, self.mu)

    def values(
        self,
        params: NRNNParams,
        xs: torch.Tensor,
        labels: torch.Tensor,
        noise: NoiseSpec,
        h0: torch.Tensor | None = None,
    ) -> list[np.ndarray]:
        """Float64 values for :meth:`args` (per-example entries have shape (B,)).

        ``noise`` supplies ``sigma1, sigma2`` per unit :math:`\\epsilon` for ``"sde"`` and
        ``a = epsilon * sigma1``, ``mu = epsilon * sigma2`` for ``"paper_code"``.

        Parameters
        ----------
        params : NRNNParams
        xs : Tensor, shape (B, M, D)
        labels : Tensor, shape (B,)
        noise : NoiseSpec
        h0 : Tensor, shape (B, H), optional
            Initial state (default zeros).

        Returns
        -------
        list of numpy.ndarray
            One float64 value per symbol of :meth:`args`, in that order.
        """
        H, D, C, M = self.sizes
        B = xs.shape[0]
        if params.hidden_size != H or xs.shape[1:] != (M, D) or params.num_classes != C:
            raise ValueError(
                f"params/xs: expected H={H}, (B, {M}, {D}) inputs and C={C} to match the "
                f"symbols, got H={params.hidden_size}, xs {tuple(xs.shape)}, "
                f"C={params.num_classes}"
            )
        p = params.detach().to(torch.float64)

        def flat(t: torch.Tensor) -> list[np.ndarray]:
            return [np.float64(v) for v in t.reshape(-1).tolist()]

        x = xs.detach().to(torch.float64).cpu().numpy()
        h = np.zeros((B, H)) if h0 is None else h0.detach().to(torch.float64).cpu().numpy()
        onehot = np.eye(C)[labels.cpu().numpy()]
        out = flat(p.A) + flat(p.W) + flat(p.U) + flat(p.b) + flat(p.V) + flat(p.c)
        out += [x[:, k, j] for k in range(M) for j in range(D)]
        out += [h[:, i] for i in range(H)]
        out += flat(p.drift_step)
        out += [onehot[:, j] for j in range(C)]
        out += [np.float64(v) for v in (p.alpha, p.dt, noise.sigma1, noise.sigma2)]
        out += [np.float64(noise.additive), np.float64(noise.multiplicative)]
        return out


def drift_expr(sym: NRNNSymbols, h: sp.Matrix, x: sp.Matrix) -> sp.Matrix:
    r"""Drift :math:`f(h, x) = \alpha A h + \tanh(Wh + Ux + b)` as an (H, 1) matrix.

    Parameters
    ----------
    sym : NRNNSymbols
    h : sympy.Matrix, shape (H, 1)
    x : sympy.Matrix, shape (D, 1)

    Returns
    -------
    sympy.Matrix, shape (H, 1)

    Examples
    --------
    >>> sym = NRNNSymbols.create(H=1, D=1, C=2, M=1)
    >>> drift_expr(sym, sym.h0, sym.xs[0])[0]
    A_11*alpha*h0_1 + tanh(U_11*x0_1 + W_11*h0_1 + b_1)
    """
    z = sym.W * h + sym.U * x + sym.b
    return sym.alpha * sym.A * h + z.applyfunc(sp.tanh)


def clean_chain_expr(sym: NRNNSymbols, step: sp.Matrix | None = None) -> list[sp.Matrix]:
    r"""States :math:`\bar h_0, \dots, \bar h_M` of :math:`\bar h_{k+1} = \bar h_k + s\odot f`.

    ``step`` defaults to ``sym.d``; pass :math:`(1-\mu/2)\,d` for the ``"paper_code"``
    reference chain.

    Parameters
    ----------
    sym : NRNNSymbols
    step : sympy.Matrix, shape (H, 1), optional
        The step vector :math:`s` (default ``sym.d``).

    Returns
    -------
    list of sympy.Matrix
        The ``M + 1`` states, each (H, 1).
    """
    s = sym.d if step is None else step
    hs = [sym.h0]
    for x in sym.xs:
        hs.append(hs[-1] + s.multiply_elementwise(drift_expr(sym, hs[-1], x)))
    return hs


def cross_entropy_expr(sym: NRNNSymbols, h: sp.Matrix) -> sp.Expr:
    r"""Cross-entropy :math:`-e_y^\top(Vh + c) + \log\sum_j\exp((Vh + c)_j)` of the readout.

    Parameters
    ----------
    sym : NRNNSymbols
        Supplies :math:`V`, :math:`c` and the one-hot label.
    h : sympy.Matrix, shape (H, 1)

    Returns
    -------
    sympy.Expr

    Examples
    --------
    >>> sym = NRNNSymbols.create(H=1, D=1, C=2, M=1)
    >>> cross_entropy_expr(sym, sp.zeros(1, 1)).subs({sym.c[0]: 0, sym.c[1]: 0,
    ...     sym.onehot[0]: 1, sym.onehot[1]: 0})
    log(2)
    """
    s = sym.V * h + sym.c
    return -(sym.onehot.T * s)[0] + sp.log(sum(sp.exp(v) for v in s))
