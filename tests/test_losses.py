"""Tests of the readout loss derivatives against autograd (docs/theory/model.md)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given

from nrnn_theory.losses import cross_entropy_derivatives

from _strategies import model_and_inputs
from _tolerances import tol


@given(model_and_inputs())
def test_gradient_and_hessian_match_autograd(model):
    params, xs, g = model
    B, H = xs.shape[0], params.hidden_size
    h = 3 * torch.randn(B, H, generator=g, dtype=torch.float64)
    y = torch.randint(0, params.num_classes, (B,), generator=g)
    loss, grad, hess = cross_entropy_derivatives(params, h, y)

    def ell(hb, yb):
        s = hb @ params.V.T + params.c
        return torch.nn.functional.cross_entropy(s.unsqueeze(0), yb.unsqueeze(0))

    torch.testing.assert_close(
        loss,
        torch.nn.functional.cross_entropy(h @ params.V.T + params.c, y, reduction="none"),
        **tol("elementwise"),
    )
    torch.testing.assert_close(
        grad, torch.func.vmap(torch.func.grad(ell))(h, y), **tol("elementwise")
    )
    torch.testing.assert_close(
        hess, torch.func.vmap(torch.func.hessian(ell))(h, y), **tol("elementwise")
    )
    eig = torch.linalg.eigvalsh(hess)
    assert torch.all(eig > -1e-12)
    # rank H_l <= C - 1: V^T Pi_p V with Pi_p 1 = 0.
    assert torch.all((eig.abs() > 1e-10).sum(-1) <= params.num_classes - 1)


def test_label_validation(generator):
    from _problems import random_params

    p = random_params(3, 1, 4, generator=generator)
    h = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^labels: expected class indices in \[0, 4\)"):
        cross_entropy_derivatives(p, h, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"^labels: expected shape \(2,\)"):
        cross_entropy_derivatives(p, h, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"^labels: expected an integer tensor"):
        cross_entropy_derivatives(p, h, torch.tensor([0.0, 1.0]))
