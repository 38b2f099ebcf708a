"""The one gateway from sympy expressions to callables.

docs/contributing.md, *Symbolic to numeric*, states the rules implemented here.

* :func:`to_numpy_fn` (the default): ``lambdify`` with common-subexpression
  elimination; constant results are broadcast to the shape of the first argument.
* :func:`to_torch_fn`: only for expressions whose function heads are on a tested
  allow-list; ``sech`` is rewritten to ``1/cosh`` and ``Max``/``Min``/``Heaviside`` to
  ``Piecewise`` first; matrices are refused (sympy would build a new float64 tensor
  detached from autograd). Python numbers are converted to tensors of the dtype and
  device of the first tensor argument, and constants are broadcast.

Both are cached: ``lambdify`` generates and ``exec``\\ s source code, so feed them only
the package's own expressions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import sympy as sp
import torch


__all__ = ["TORCH_ALLOWED", "to_numpy_fn", "to_torch_fn"]

#: Function heads the torch target handles correctly (gradients flow); pinned by a test.
TORCH_ALLOWED: frozenset[type] = frozenset(
    {sp.tanh, sp.exp, sp.log, sp.Abs, sp.erf, sp.cosh, sp.sinh, sp.Piecewise, sp.sin, sp.cos}
)


def _args_tuple(args: Sequence[sp.Symbol]) -> tuple[sp.Symbol, ...]:
    args = tuple(args)
    for a in args:
        if not isinstance(a, sp.Symbol):
            raise TypeError(f"args: expected sympy Symbols, got {type(a).__name__} ({a!r})")
    return args


@lru_cache(maxsize=512)
def _numpy_lambdified(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable:
    # scipy first so that special functions (erf, ...) map to scipy.special ufuncs.
    return sp.lambdify(args, expr, modules=["scipy", "numpy"], cse=True)


def to_numpy_fn(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Callable[..., np.ndarray]:
    """Numpy callable evaluating ``expr`` at values of ``args`` (broadcasting).

    Parameters
    ----------
    expr : sympy.Expr
        One of the package's expressions (``sympify`` evaluates what it is given).
    args : sequence of sympy.Symbol
        The symbols, in the order of the callable's arguments.

    Returns
    -------
    callable

    Examples
    --------
    >>> x = sp.Symbol("x")
    >>> to_numpy_fn(sp.tanh(x) ** 2, [x])(np.array([0.0, 1.0])).round(4).tolist()
    [0.0, 0.58]
    >>> to_numpy_fn(sp.Integer(3), [x])(np.zeros(2)).tolist()
    [3.0, 3.0]
    """
    args = _args_tuple(args)
    if isinstance(expr, sp.MatrixBase):
        raise TypeError("expr: expected a scalar expression, got a sympy Matrix; lambdify entries")
    fn = _numpy_lambdified(sp.sympify(expr), args)

    def wrapped(*values):
        out = np.asarray(fn(*values), dtype=float)
        if values:
            shape = np.broadcast_shapes(*(np.shape(v) for v in values))
            out = np.broadcast_to(out, shape).copy()
        return out

    return wrapped


def _rewrite_for_torch(expr: sp.Expr) -> sp.Expr:
    expr = expr.rewrite(sp.cosh) if expr.has(sp.sech) else expr
    expr = expr.replace(lambda e: isinstance(e, sp.sech), lambda e: 1 / sp.cosh(e.args[0]))
    for head in (sp.Max, sp.Min, sp.Heaviside):
        if expr.has(head):
            expr = expr.rewrite(sp.Piecewise)
    return expr


def _check_heads(expr: sp.Expr) -> None:
    for f in expr.atoms(sp.Function):
        head = f.func
        if head not in TORCH_ALLOWED:
            raise ValueError(
                f"expr: function {head.__name__} is not on the torch allow-list "
                f"({', '.join(sorted(h.__name__ for h in TORCH_ALLOWED))}); use to_numpy_fn"
            )


@lru_cache(maxsize=512)
def _torch_lambdified(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable:
    return sp.lambdify(args, expr, modules="torch")


def to_torch_fn(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Callable[..., torch.Tensor]:
    """Torch callable evaluating a scalar ``expr``; gradients flow through it.

    Parameters
    ----------
    expr : sympy.Expr
        One of the package's expressions (``sympify`` evaluates what it is given).
    args : sequence of sympy.Symbol
        The symbols, in the order of the callable's arguments.

    Returns
    -------
    callable

    Raises
    ------
    TypeError
        For a sympy Matrix (lambdify its entries and ``torch.stack`` them instead).
    ValueError
        If a function head is not on :data:`TORCH_ALLOWED` after rewriting.

    Examples
    --------
    >>> x = sp.Symbol("x", real=True)
    >>> f = to_torch_fn(sp.sech(x) ** 2, [x])
    >>> t = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    >>> f(t).detach().round(decimals=4).tolist()
    [1.0, 0.42]
    """
    args = _args_tuple(args)
    if isinstance(expr, sp.MatrixBase):
        raise TypeError(
            "expr: expected a scalar expression, got a sympy Matrix (it would be "
            "lambdified to a new tensor detached from autograd); lambdify entries"
        )
    expr = _rewrite_for_torch(sp.sympify(expr))
    _check_heads(expr)
    fn = _torch_lambdified(expr, args)

    def wrapped(*values):
        like = next((v for v in values if isinstance(v, torch.Tensor)), None)
        if like is None:
            raise TypeError("values: expected at least one torch.Tensor argument")
        tensors = [torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in values]
        out = fn(*tensors)
        out = torch.as_tensor(out, dtype=like.dtype, device=like.device)
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        return out.expand(shape) if out.shape != shape else out

    return wrapped
