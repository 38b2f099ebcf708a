"""Tests of the sympy -> callable gateway (docs/contributing.md, *Symbolic to numeric*).

The torch allow-list is pinned, gradients flow, rewrites and refusals behave as
documented.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from nrnn_theory.symbolic import TORCH_ALLOWED, to_numpy_fn, to_torch_fn

from _tolerances import tol


x = sp.Symbol("x", real=True)
y = sp.Symbol("y", positive=True)

# One expression per allowed head, evaluated where it is smooth.
CASES = {
    sp.tanh: sp.tanh(x) * y,
    sp.exp: sp.exp(x) + y,
    sp.log: sp.log(y) * x,
    sp.Abs: sp.Abs(x) * y + x,
    sp.erf: sp.erf(x) * y,
    sp.cosh: sp.cosh(x) / y,
    sp.sinh: sp.sinh(x) * y,
    sp.sin: sp.sin(x) * y,
    sp.cos: sp.cos(x) + y,
    sp.Piecewise: sp.Piecewise((x**2, x > 0), (-x, True)) * y,
}


def test_allow_list_is_pinned():
    assert set(CASES) == set(TORCH_ALLOWED)


@pytest.mark.parametrize("head", sorted(CASES, key=lambda h: h.__name__), ids=lambda h: h.__name__)
def test_torch_matches_numpy_and_gradients_flow(head):
    expr = CASES[head]
    xs = torch.tensor([-0.7, 0.3, 1.1], dtype=torch.float64, requires_grad=True)
    ys = torch.tensor([0.5, 1.5, 2.0], dtype=torch.float64)
    out = to_torch_fn(expr, [x, y])(xs, ys)
    ref = to_numpy_fn(expr, [x, y])(xs.detach().numpy(), ys.numpy())
    np.testing.assert_allclose(out.detach().numpy(), ref, **tol("symbolic_vs_numeric"))
    (grad,) = torch.autograd.grad(out.sum(), xs)
    dref = to_numpy_fn(sp.diff(expr, x), [x, y])(xs.detach().numpy(), ys.numpy())
    np.testing.assert_allclose(grad.numpy(), dref, **tol("symbolic_vs_numeric"))


def test_sech_and_max_are_rewritten():
    xs = torch.tensor([-1.0, 0.5], dtype=torch.float64, requires_grad=True)
    f = to_torch_fn(sp.sech(x) ** 2 + sp.Max(x, 0), [x])
    expected = 1 / torch.cosh(xs.detach()) ** 2 + xs.detach().clamp(min=0)
    torch.testing.assert_close(f(xs).detach(), expected, **tol("elementwise"))


def test_refusals_and_conversions():
    with pytest.raises(TypeError, match=r"^expr: expected a scalar expression, got a sympy Matrix"):
        to_torch_fn(sp.Matrix([x, y]), [x, y])
    with pytest.raises(ValueError, match=r"^expr: function besselj is not on the torch allow-list"):
        to_torch_fn(sp.besselj(0, x), [x])
    with pytest.raises(TypeError, match=r"^args: expected sympy Symbols"):
        to_numpy_fn(x, ["x"])
    # Python numbers are converted to the dtype of the tensor argument; constants broadcast.
    t = torch.ones(3, dtype=torch.float32)
    out = to_torch_fn(x * y, [x, y])(t, 2.0)
    assert out.dtype == torch.float32 and out.tolist() == [2.0, 2.0, 2.0]
    assert to_torch_fn(sp.Integer(2) + 0 * x, [x])(t).shape == (3,)
