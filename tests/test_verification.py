"""Certified radii by bound propagation (nrnn_theory.verification).

Oracles:

* soundness by sampling: the bounds contain the logit differences of >= 10^4 points of
  every input set (half of them vertices for l_inf balls, sphere points for l_2), for
  random models (hypothesis), both norms, with and without a data range, and with
  frozen noise for noisy rollouts whose draws are sampled in the box (vertices too);
* soundness by attacks: no point found inside a certified ball by the package's
  strongest attack (``minimal_perturbation``, DeepFool + PGD bisection) nor by a PGD with
  random restarts written here (on a plain reference rollout) changes the label, on
  random models and on tiny models trained on digits in a fixture;
* exactness: a linear RNN (the identity activation of the engine) has exact bounds in
  closed form (matrix powers), so its certified radius is the exact margin; a one-unit,
  one-step tanh model's radius is its exact margin (docs/theory/margins.md one-step oracle);
* ordering: CROWN >= forward >= IBP on every bound and every radius;
* the tanh relaxation lines enclose tanh on a dense grid of every interval.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec, NRNNParams, logits, minimal_perturbation, noise_dim
from nrnn_theory._bound_propagation import (
    InputSet,
    Network,
    StepNoise,
    first_order,
    lower_bounds,
    relax_tanh,
    search_radius,
)
from nrnn_theory.verification import (
    CertifiedRadius,
    LogitBounds,
    certified_radius,
    logit_difference_bounds,
    resolve_method,
)

from _problems import one_step_margin, random_params
from _strategies import model_and_inputs, noise_specs, seeds
from _tolerances import tol


METHODS = ("ibp", "forward", "crown")
# Rounding slack of a comparison between a bound and a value computed on another
# arithmetic path (a float64 rollout): bounds can be exact at vertices (e.g. T = 1).
ROUNDING = 1e-12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread for this module: its loops are many small tensor operations,
    which two OpenMP threads on a shared 2-core machine slow down by up to ~10x."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------- helpers
def _ball_points(xs, r, norm, n, g, data_range=None):
    """``n`` points per example in the ball: half vertices/sphere, half interior."""
    B, T, D = xs.shape
    r = torch.as_tensor(r, dtype=xs.dtype).reshape(-1, 1, 1, 1).expand(B, 1, 1, 1)
    shape = (B, n, T, D)
    half = n // 2
    if norm == "linf":
        vert = torch.randint(0, 2, shape, generator=g).to(xs.dtype) * 2 - 1
        inner = 2 * torch.rand(shape, generator=g, dtype=xs.dtype) - 1
        delta = torch.cat([vert[:, :half], inner[:, half:]], dim=1)
    else:
        z = torch.randn(shape, generator=g, dtype=xs.dtype)
        z = z / z.flatten(2).norm(dim=2)[..., None, None]
        rad = torch.rand(B, n, 1, 1, generator=g, dtype=xs.dtype) ** (1.0 / (T * D))
        delta = torch.cat([z[:, :half], (z * rad)[:, half:]], dim=1)
    pts = xs.unsqueeze(1) + r * delta
    if data_range is not None:
        pts = pts.clamp(*data_range)
    return pts


def _box_draws(lo, hi, B, n, T, r, g):
    """Draws in the box [lo, hi] (B, n, T, r): half vertices, half uniform."""
    lo = lo.expand(B, T, r).unsqueeze(1)
    hi = hi.expand(B, T, r).unsqueeze(1)
    u = torch.rand(B, n, T, r, generator=g, dtype=lo.dtype)
    vert = (torch.rand(B, n, T, r, generator=g) < 0.5).to(lo.dtype)
    u = torch.cat([vert[:, : n // 2], u[:, n // 2 :]], dim=1)
    return lo + u * (hi - lo)


def _differences(params, pts, labels, noise=None, eta=None):
    """z_y - z_j at points (B, n, T, D): (B, n, C)."""
    B, n, T, D = pts.shape
    flat_eta = None if eta is None else eta.reshape(B * n, T, -1)
    z = logits(params, pts.reshape(B * n, T, D), noise=noise, eta=flat_eta).reshape(B, n, -1)
    return z.gather(2, labels.view(B, 1, 1).expand(B, n, 1)) - z


def _reference_logits(p, xs):
    """A plain clean rollout written here (independent of nrnn_theory.dynamics)."""
    h = xs.new_zeros(xs.shape[0], p.hidden_size)
    s = p.drift_step
    for k in range(xs.shape[1]):
        h = h + s * (p.alpha * h @ p.A.mT + torch.tanh(h @ p.W.mT + xs[:, k] @ p.U.mT + p.b))
    return h @ p.V.mT + p.c


def _pgd_restarts(p, xs, y, eps, norm, data_range, g, restarts=6, steps=40):
    """Smallest margin z_y - max_{j!=y} z_j found in the balls by PGD with restarts."""
    B = xs.shape[0]
    e = eps.view(B, 1, 1)
    best = torch.full((B,), math.inf, dtype=xs.dtype)
    onehot = torch.nn.functional.one_hot(y, p.num_classes).bool()

    def margin(x):
        z = _reference_logits(p, x)
        return z.gather(1, y[:, None]).squeeze(1) - z.masked_fill(onehot, -math.inf).amax(1)

    def project(delta):
        if norm == "linf":
            delta = torch.maximum(torch.minimum(delta, e), -e)
        else:
            nrm = delta.flatten(1).norm(dim=1).view(B, 1, 1)
            delta = delta * torch.where(nrm > e, e / nrm.clamp(min=1e-300), 1.0)
        if data_range is not None:
            delta = (xs + delta).clamp(*data_range) - xs
        return delta

    for _ in range(restarts):
        delta = project(e * (2 * torch.rand(xs.shape, generator=g, dtype=xs.dtype) - 1))
        for _ in range(steps):
            d = delta.detach().requires_grad_(True)
            m = margin(xs + d)
            best = torch.minimum(best, m.detach())
            (grad,) = torch.autograd.grad(m.sum(), d)
            if norm == "linf":
                step = grad.sign()
            else:
                step = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-300).view(B, 1, 1)
            delta = project(delta - 2.5 / steps * e * step)
        best = torch.minimum(best, margin(xs + delta).detach())
    return best


def _inside(xs, data_range):
    return xs if data_range is None else torch.sigmoid(xs)


# ---------------------------------------------------------------------- relaxations
@given(
    lo=st.floats(min_value=-30.0, max_value=30.0, allow_nan=False),
    width=st.one_of(
        st.floats(min_value=0.0, max_value=1e-6),
        st.floats(min_value=1e-6, max_value=40.0),
    ),
)
def test_tanh_relaxation_encloses_tanh(lo, width):
    lo_t = torch.tensor([lo], dtype=torch.float64)
    hi_t = lo_t + width
    aL, bL, aU, bU = relax_tanh(lo_t, hi_t)
    z = torch.linspace(lo, lo + width, 2001, dtype=torch.float64)
    t = torch.tanh(z)
    assert bool((aL >= 0).all()) and bool((aU >= 0).all())
    assert bool((aL * z + bL <= t).all()), "lower line above tanh"
    assert bool((aU * z + bU >= t).all()), "upper line below tanh"
    # Not trivially loose: each line touches tanh in [lo, hi] (a tangent point or the
    # chord's ends), up to the grid spacing and, below width 1e-6, the Taylor band.
    slack = 1e-11 + 0.4 * (width / 2000) ** 2 + (0.2 * width**2 if width <= 1e-6 else 0.0)
    assert float((aU * z + bU - t).min()) <= slack
    assert float((t - aL * z - bL).min()) <= slack


def test_tanh_relaxation_tangent_cases_are_tight():
    # Concave region: the lower line is the chord (exact at both ends).
    aL, bL, _, _ = relax_tanh(torch.tensor([0.5]).double(), torch.tensor([2.0]).double())
    ends = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(aL * ends + bL, torch.tanh(ends), rtol=0, atol=1e-11)
    # Crossing interval, midpoint right of d*: the tangent at the midpoint (least area).
    lo, hi = torch.tensor([-1.0]).double(), torch.tensor([3.0]).double()
    _, _, aU, bU = relax_tanh(lo, hi)
    torch.testing.assert_close(aU, 1 - torch.tanh(torch.ones(1).double()) ** 2)
    # Midpoint left of d*: the tangent through (lo, tanh lo), up to the table's grid.
    lo, hi = torch.tensor([-3.0]).double(), torch.tensor([1.0]).double()
    _, _, aU, bU = relax_tanh(lo, hi)
    assert 0 <= float(aU * lo + bU - torch.tanh(lo)) < 1e-3


# ------------------------------------------------------------------- linear exactness
def _identity_network(H, D, C, T, g, alpha=1.0):
    """A linear RNN h' = h + s(alpha A h + W h + U x + b) and its closed-form Jacobian."""
    p = random_params(H, D, C, generator=g, dt=0.3, alpha=alpha, per_unit_step=True)
    net = Network(W=p.W, U=p.U, b=p.b, aA=p.alpha * p.A, V=p.V, c=p.c, activation="identity")
    s = torch.diag(p.drift_step)
    P = torch.eye(H, dtype=torch.float64) + s @ (p.alpha * p.A + p.W)
    # h_T = sum_k P^{T-1-k} S (U x_k + b); columns time-major (T*D).
    blocks = [torch.linalg.matrix_power(P, T - 1 - k) @ s @ p.U for k in range(T)]
    Jh = torch.cat(blocks, dim=1)  # (H, T*D)
    const_h = sum(torch.linalg.matrix_power(P, T - 1 - k) @ s @ p.b for k in range(T))
    return p, net, Jh, const_h


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("data_range", [None, (-1.0, 1.0)])
@given(seed=seeds)
@settings(max_examples=15)
def test_linear_rnn_bounds_are_exact(norm, data_range, seed):
    g = torch.Generator().manual_seed(seed)
    H, D, C, T, B = 4, 2, 3, 5, 3
    p, net, Jh, const_h = _identity_network(H, D, C, T, g)
    xs = 0.5 * torch.rand(B, T, D, generator=g, dtype=torch.float64) - 0.25
    r = torch.tensor([0.0, 0.1, 0.4], dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    spec = p.V[y].unsqueeze(1) - p.V.unsqueeze(0)  # (B, C, H), row y is zero
    spec_const = p.c[y].unsqueeze(1) - p.c.unsqueeze(0)
    J = spec @ Jh  # (B, C, T*D): gradient of z_y - z_j
    value = J @ xs.reshape(B, -1, 1) + (spec @ const_h.unsqueeze(-1)) + spec_const.unsqueeze(-1)
    value = value.squeeze(-1)
    if norm == "linf":
        exact = value - r[:, None] * J.abs().sum(-1)
        if data_range is not None:
            x = xs.reshape(B, 1, -1)
            lo = torch.maximum(x - r.view(B, 1, 1), torch.full_like(x, data_range[0]))
            hi = torch.minimum(x + r.view(B, 1, 1), torch.full_like(x, data_range[1]))
            exact = (J.clamp(min=0) * lo + J.clamp(max=0) * hi).sum(-1) + (value - (J * x).sum(-1))
    else:
        exact = value - r[:, None] * J.norm(dim=-1)
    noise = StepNoise(S=p.drift_step.view(1, 1, H))
    for method in ("forward", "crown"):
        low = lower_bounds(net, noise, xs, r, norm, data_range, spec, spec_const, method)
        if norm == "l2" and data_range is not None:
            # The l2 ball cut by the range is relaxed (max of two supersets): sound only.
            assert bool((low <= exact + 1e-9).all())
            assert bool((low >= value - r[:, None] * J.norm(dim=-1) - 1e-9).all())
        else:
            torch.testing.assert_close(low, exact, **tol("reduction"))
    ibp = lower_bounds(net, noise, xs, r, norm, data_range, spec, spec_const, "ibp")
    assert bool((ibp <= exact + 1e-9).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_rnn_radius_is_the_exact_margin(norm, generator):
    H, D, C, T, B = 5, 2, 4, 6, 4
    p, net, Jh, const_h = _identity_network(H, D, C, T, generator)
    xs = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    z = (Jh @ xs.reshape(B, -1, 1)).squeeze(-1) + const_h
    scores = z @ p.V.mT + p.c
    y = scores.argmax(1)
    ar = torch.arange(C - 1).expand(B, C - 1)
    others = ar + (ar >= y[:, None]).long()
    spec = p.V[y].unsqueeze(1) - p.V[others]
    spec_const = p.c[y].unsqueeze(1) - p.c[others]
    J = spec @ Jh
    gap = scores.gather(1, y[:, None]) - scores.gather(1, others)
    dual = J.abs().sum(-1) if norm == "linf" else J.norm(dim=-1)
    exact = (gap / dual).min(dim=1).values
    noise = StepNoise(S=p.drift_step.view(1, 1, H))

    def evaluate(idx, r):
        low, reuse = lower_bounds(
            net, noise, xs[idx], r, norm, None, spec[idx], spec_const[idx], "crown", None, True
        )
        return low.min(dim=1).values, reuse

    value, dual_fo = first_order(net, noise, xs, norm, spec, spec_const)
    torch.testing.assert_close(value, gap, **tol("reduction"))
    torch.testing.assert_close(dual_fo, dual, **tol("reduction"))
    rtol = 1e-4
    res = search_radius(
        evaluate,
        torch.zeros(B, dtype=torch.float64),
        gap.min(dim=1).values,
        first=0.5 * exact,
        rtol=rtol,
        max_iter=60,
        r_max=torch.full((B,), math.inf, dtype=torch.float64),
        active=torch.ones(B, dtype=torch.bool),
    )
    assert bool(res["converged"].all())
    assert bool((res["lo"] <= exact * (1 + 1e-12)).all())
    assert bool((res["lo"] >= exact * (1 - 2 * rtol)).all())


# ------------------------------------------------------------------ tanh exactness
@pytest.mark.parametrize("norm", ["linf", "l2"])
@given(seed=seeds)
@settings(max_examples=10)
def test_one_unit_one_step_radius_is_the_exact_margin(norm, seed):
    g = torch.Generator().manual_seed(seed)
    p = random_params(1, 3, 3, generator=g, dt=0.5)
    p = p.replace(W=torch.zeros(1, 1, dtype=torch.float64))
    xs = torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    if norm == "l2":
        exact = one_step_margin(p, xs)
    else:  # the same closed form with the l1 norm of u (the dual of l_inf)
        scale = p.U[0].norm() / p.U[0].abs().sum()
        exact = one_step_margin(p, xs) * scale
    res = certified_radius(p, xs, norm=norm, method="crown", rtol=1e-4, max_iter=80, generator=g)
    finite = torch.isfinite(exact)
    assert bool((res.radius[finite] <= exact[finite] * (1 + 1e-9)).all())
    assert bool((res.radius[finite] >= exact[finite] * (1 - 2e-4)).all())


# ------------------------------------------------------------------------- soundness
@given(
    case=model_and_inputs(max_hidden=5, max_input=2, max_steps=6),
    norm=st.sampled_from(["linf", "l2"]),
    ranged=st.booleans(),
    radius=st.floats(min_value=0.0, max_value=0.6),
)
@settings(max_examples=40)
def test_bounds_contain_sampled_logits(case, norm, ranged, radius):
    params, xs, g = case
    data_range = (0.0, 1.0) if ranged else None
    xs = _inside(xs, data_range)
    pts = _ball_points(xs, radius, norm, 10_000, g, data_range)
    prev = None
    for method in METHODS:
        bnd = logit_difference_bounds(
            params, xs, radius=radius, norm=norm, method=method, data_range=data_range
        )
        d = _differences(params, pts, bnd.labels)
        assert bool((bnd.lower.unsqueeze(1) <= d + ROUNDING).all()), method
        assert bool((d <= bnd.upper.unsqueeze(1) + ROUNDING).all()), method
        assert bool((bnd.lower <= bnd.nominal + ROUNDING).all())
        if prev is not None:  # each method takes the max with the cheaper ones
            assert bool((bnd.lower >= prev.lower).all()), method
            assert bool((bnd.upper <= prev.upper).all()), method
        prev = bnd


@given(
    case=model_and_inputs(max_hidden=4, max_input=2, max_steps=5),
    noise=noise_specs(max_level=0.8),
    kind=st.sampled_from(["radius", "per_step", "pair"]),
    seed=seeds,
)
@settings(max_examples=40)
def test_frozen_noise_bounds_contain_noisy_rollouts(case, noise, kind, seed):
    params, xs, _ = case
    g = torch.Generator().manual_seed(seed)
    B, T, _ = xs.shape
    H = params.hidden_size
    r = noise_dim(noise, H)
    if kind == "radius":
        box = 2.0
        lo, hi = torch.full((1, 1, r), -2.0).double(), torch.full((1, 1, r), 2.0).double()
    elif kind == "per_step":
        box = 3.0 * torch.rand(1, T, r, generator=g, dtype=torch.float64)
        lo, hi = -box, box
    else:
        lo = -torch.rand(B, T, r, generator=g, dtype=torch.float64)
        hi = lo + 2.0 * torch.rand(B, T, r, generator=g, dtype=torch.float64)
        box = (lo, hi)
    if noise.convention == "paper_code" and not noise.is_zero:
        s3 = math.sqrt(3.0)
        lo = torch.cat([lo[..., :H], lo[..., H:].clamp(min=-s3)], -1).expand(B, T, r)
        hi = torch.cat([hi[..., :H], hi[..., H:].clamp(max=s3)], -1).expand(B, T, r)
    n = 2_000
    pts = _ball_points(xs, 0.2, "linf", n, g)
    eta = _box_draws(lo, hi, B, n, T, r, g)
    d = _differences(params, pts, logits(params, xs).argmax(1), noise, eta)
    for method in METHODS:
        bnd = logit_difference_bounds(
            params,
            xs,
            logits(params, xs).argmax(1),
            radius=0.2,
            method=method,
            noise=noise,
            noise_box=box,
        )
        assert bool((bnd.lower.unsqueeze(1) <= d + ROUNDING).all()), method
        assert bool((d <= bnd.upper.unsqueeze(1) + ROUNDING).all()), method


@given(case=model_and_inputs(max_hidden=4, max_input=2, max_steps=6), noise=noise_specs())
@settings(max_examples=30)
def test_one_frozen_path_at_radius_zero_is_exact(case, noise):
    params, xs, g = case
    B, T, _ = xs.shape
    r = noise_dim(noise, params.hidden_size)
    eta = torch.randn(B, T, r, generator=g, dtype=torch.float64)
    if noise.convention == "paper_code":
        H = params.hidden_size
        eta[..., H:] = math.sqrt(12.0) * (torch.rand(B, T, H, generator=g).double() - 0.5)
    z = logits(params, xs, noise=noise, eta=eta)
    y = z.argmax(1)
    d = z.gather(1, y[:, None]) - z
    bnd = logit_difference_bounds(
        params, xs, y, radius=0.0, method="crown", noise=noise, noise_box=(eta, eta)
    )
    # Every interval is a point and every relaxation the tangent (+ 1e-12 per line).
    torch.testing.assert_close(bnd.lower, d, rtol=0, atol=1e-9)
    torch.testing.assert_close(bnd.upper, d, rtol=0, atol=1e-9)
    torch.testing.assert_close(bnd.nominal, d, **tol("reduction"))


def test_noise_probability_closed_form():
    g = torch.Generator().manual_seed(0)
    p = random_params(3, 1, 2, generator=g)
    xs = torch.rand(2, 4, 1, generator=g, dtype=torch.float64)
    phi = 1 - 2 * torch.special.ndtr(torch.tensor(-2.5, dtype=torch.float64))
    bnd = logit_difference_bounds(
        p, xs, radius=0.0, noise=NoiseSpec(sigma1=0.1, structure="scalar"), noise_box=2.5
    )
    torch.testing.assert_close(bnd.noise_probability, (phi ** (4 * 4)).expand(2))
    # paper_code: 3 Gaussian draws per step; the uniform ones always lie in the box.
    bnd = logit_difference_bounds(
        p, xs, radius=0.0, noise=NoiseSpec.paper_code(add=0.1, mult=0.1), noise_box=2.5
    )
    torch.testing.assert_close(bnd.noise_probability, (phi ** (4 * 3)).expand(2))


# ------------------------------------------------------------------ radius vs attacks
@given(
    case=model_and_inputs(max_hidden=5, max_input=2, max_steps=6),
    norm=st.sampled_from(["linf", "l2"]),
    ranged=st.booleans(),
    method=st.sampled_from(METHODS),
)
@settings(max_examples=10)
def test_radius_never_exceeds_attacks_on_random_models(case, norm, ranged, method):
    params, xs, g = case
    data_range = (0.0, 1.0) if ranged else None
    xs = _inside(xs, data_range)
    res = certified_radius(params, xs, norm=norm, method=method, data_range=data_range, generator=g)
    y = res.labels
    emp = minimal_perturbation(params, xs, y, norm=norm, bounds=data_range, generator=g)
    assert bool((res.radius <= emp.distance).all())
    r = torch.where(torch.isfinite(res.radius), res.radius, 10.0)
    worst = _pgd_restarts(params, xs, y, r, norm, data_range, g)
    assert bool((worst > 0).all()), "a point inside a certified ball changes the label"
    for a, b in zip(METHODS, METHODS[1:], strict=False):
        if a in res.radii and b in res.radii:
            assert bool((res.radii[a] <= res.radii[b]).all())


def _train_digits(noise, seed, steps=300):
    """A tiny NRNN trained here on 8x8 digits read row by row (T = 8, D = 8, H = 16)."""
    from nrnn_theory.train import load_task

    task = load_task("digits")
    xs = task.inputs("train").double().reshape(-1, 8, 8)
    ys = task.labels("train")
    g = torch.Generator().manual_seed(seed)
    H, D, C = 16, 8, 10
    leaves = {
        "M_A": 0.1 / H * torch.randn(H, H, generator=g, dtype=torch.float64),
        "M_W": 0.1 / H * torch.randn(H, H, generator=g, dtype=torch.float64),
        "U": torch.randn(H, D, generator=g, dtype=torch.float64) / math.sqrt(D),
        "b": torch.zeros(H, dtype=torch.float64),
        "V": torch.randn(C, H, generator=g, dtype=torch.float64) / math.sqrt(H),
        "c": torch.zeros(C, dtype=torch.float64),
        "step": torch.full((H,), 0.3, dtype=torch.float64),
    }
    for t in leaves.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(leaves.values(), lr=2e-2)

    def build():
        return NRNNParams.from_lipschitz(
            leaves["M_A"],
            leaves["M_W"],
            leaves["U"],
            leaves["b"],
            leaves["V"],
            leaves["c"],
            beta=0.75,
            gamma_A=0.01,
            gamma_W=0.01,
            dt=0.3,
            step=leaves["step"],
        )

    with torch.enable_grad():
        for _ in range(steps):
            z = logits(build(), xs, noise=noise, generator=g)
            loss = torch.nn.functional.cross_entropy(z, ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
    params = build().detach()
    test_x = task.inputs("test").double().reshape(-1, 8, 8)[:30]
    test_y = task.labels("test")[:30]
    return params, test_x, test_y


@pytest.fixture(scope="module")
def trained(_one_thread):
    return {
        "clean": _train_digits(None, 0),
        "noisy": _train_digits(NoiseSpec.paper_code(add=0.05, mult=0.3), 1),
    }


@pytest.mark.parametrize(
    ("name", "norm"),
    [
        ("clean", "linf"),
        ("noisy", "l2"),
        pytest.param("clean", "l2", marks=pytest.mark.slow),
        pytest.param("noisy", "linf", marks=pytest.mark.slow),
    ],
)
def test_trained_models_radius_sound_and_nonvacuous(trained, name, norm, generator):
    params, xs, ys = trained[name]
    acc = float((logits(params, xs).argmax(1) == ys).double().mean())
    assert acc > 0.6, f"the fixture did not train ({acc})"
    res = certified_radius(
        params, xs, ys, norm=norm, method="crown", data_range=(0.0, 1.0), generator=generator
    )
    emp = minimal_perturbation(params, xs, ys, norm=norm, bounds=(0.0, 1.0), generator=generator)
    assert bool((res.radius <= emp.distance).all())
    correct = res.score_margin > 0
    worst = _pgd_restarts(
        params, xs[correct], ys[correct], res.radius[correct], norm, (0, 1), generator
    )
    assert bool((worst > 0).all())
    # Non-vacuous: CROWN beats IBP on every certified example and by far on the median.
    ok = correct & (res.radii["ibp"] > 0)
    assert bool((res.radii["crown"] >= res.radii["forward"]).all())
    assert bool((res.radii["forward"] >= res.radii["ibp"]).all())
    assert float(res.radius[correct].median()) > 0.0
    assert float((res.radii["crown"][ok] / res.radii["ibp"][ok]).median()) > 2.0
    assert set(res.status) <= {"certified", "misclassified"}


def test_trained_noisy_model_frozen_noise_bounds_contain_rollouts(trained, generator):
    params, xs, ys = trained["noisy"]
    xs = xs[:6]
    noise = NoiseSpec.paper_code(add=0.05, mult=0.3)
    B, T, _ = xs.shape
    r = noise_dim(noise, params.hidden_size)
    bnd = logit_difference_bounds(
        params, xs, radius=0.02, method="crown", data_range=(0, 1), noise=noise, noise_box=3.0
    )
    lo = torch.full((1, 1, r), -3.0, dtype=torch.float64)
    hi = -lo
    H = params.hidden_size
    lo[..., H:] = -math.sqrt(3.0)
    hi[..., H:] = math.sqrt(3.0)
    n = 2_000
    pts = _ball_points(xs, 0.02, "linf", n, generator, (0, 1))
    eta = _box_draws(lo, hi, B, n, T, r, generator)
    d = _differences(params, pts, bnd.labels, noise, eta)
    assert bool((bnd.lower.unsqueeze(1) <= d + ROUNDING).all())
    assert bool((d <= bnd.upper.unsqueeze(1) + ROUNDING).all())
    assert 0.0 < float(bnd.noise_probability.min()) < 1.0


# ----------------------------------------------------------------------- statuses
def test_statuses_misclassified_whole_range_and_not_certified(generator):
    p = random_params(3, 1, 3, generator=generator)
    xs = torch.rand(4, 5, 1, generator=generator, dtype=torch.float64)
    pred = logits(p, xs).argmax(1)
    wrong = (pred + 1) % 3
    res = certified_radius(p, xs, wrong, method="ibp", generator=generator)
    assert res.status == ("misclassified",) * 4
    assert bool((res.radius == 0).all())
    # A model that ignores its input is certified on the whole data range.
    flat = p.replace(U=torch.zeros_like(p.U))
    res = certified_radius(flat, xs, data_range=(0.0, 1.0), method="crown", generator=generator)
    assert res.status == ("whole_range",) * 4 and bool(torch.isinf(res.radius).all())
    # max_radius caps the search.
    res = certified_radius(flat, xs, max_radius=0.5, method="crown", generator=generator)
    assert res.status == ("max_radius",) * 4
    torch.testing.assert_close(res.radius, torch.full((4,), 0.5, dtype=torch.float64))
    # Huge frozen noise flips the prediction even at radius 0.
    res = certified_radius(
        p, xs, noise=NoiseSpec(sigma1=50.0), noise_box=5.0, method="crown", generator=generator
    )
    assert set(res.status) == {"not_certified"}


def test_check_raises_on_unsound_bounds(monkeypatch, generator):
    import nrnn_theory.verification as verification

    def fake(net, noise, x0, radius, norm, data_range, spec, const, method, h0, with_radius):
        low = torch.ones(x0.shape[0], spec.shape[1], dtype=torch.float64)
        return (low, radius) if with_radius else low

    p = random_params(3, 1, 3, generator=generator, scale=3.0)
    xs = torch.randn(6, 5, 1, generator=generator, dtype=torch.float64)
    monkeypatch.setattr(verification, "lower_bounds", fake)
    with pytest.raises(RuntimeError, match="unsound"):
        certified_radius(p, xs, method="ibp", max_radius=100.0, generator=generator)


# ------------------------------------------------------------------ API, records, dtype
def test_resolve_method_auto():
    assert resolve_method("auto", 64, 64) == "crown"
    assert resolve_method("auto", 784, 128) == "forward"
    assert resolve_method("ibp", 784, 128) == "ibp"
    assert resolve_method("auto", 784, 128, "cuda") == "crown"
    assert resolve_method("auto", 4000, 256, "cuda") == "forward"


def test_records_round_trip_through_json(generator):
    p = random_params(3, 2, 3, generator=generator)
    xs = torch.rand(3, 4, 2, generator=generator, dtype=torch.float64)
    noise = NoiseSpec.paper_code(add=0.01, mult=0.1)
    res = certified_radius(p, xs, method="forward", noise=noise, noise_box=2.0, generator=generator)
    assert "certified" in res.status
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    back = CertifiedRadius.from_dict(d)
    torch.testing.assert_close(back.radius, res.radius)
    assert back.status == res.status and back.noise == res.noise
    torch.testing.assert_close(back.noise_box[1], res.noise_box[1])
    assert set(back.radii) == {"ibp", "forward"}
    bnd = logit_difference_bounds(p, xs, radius=0.1, data_range=None)
    back = LogitBounds.from_dict(json.loads(json.dumps(bnd.to_dict(), allow_nan=False)))
    torch.testing.assert_close(back.lower, bnd.lower)
    assert back.method == "crown" and back.noise is None
    with pytest.raises(ValueError, match="schema"):
        LogitBounds.from_dict({**bnd.to_dict(), "schema": "LogitBounds/99"})


def test_float32_inputs_give_float64_results(generator):
    p = random_params(3, 2, 3, generator=generator, dtype=torch.float32)
    xs = torch.rand(2, 4, 2, generator=generator)
    res = certified_radius(p, xs, method="crown", generator=generator)
    assert res.radius.dtype == torch.float64
    bnd = logit_difference_bounds(p, xs, radius=0.05)
    assert bnd.lower.dtype == torch.float64 and bnd.dtype == "float64"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_follows_the_device(generator):
    p = random_params(3, 2, 3, generator=generator).to("cuda")
    xs = torch.rand(2, 4, 2, generator=generator, dtype=torch.float64).cuda()
    res = certified_radius(p, xs, method="crown", generator=torch.Generator("cuda").manual_seed(0))
    assert res.radius.device.type == "cuda"
    cpu = certified_radius(p.to("cpu"), xs.cpu(), method="crown", generator=generator)
    torch.testing.assert_close(res.radius.cpu(), cpu.radius, **tol("reduction"))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"norm": "l1"}, ValueError, "norm: expected one of"),
        ({"method": "zonotope"}, ValueError, "method: expected one of"),
        ({"radius": -0.1}, ValueError, "radius: expected a number >= 0"),
        ({"radius": torch.ones(3)}, ValueError, r"radius: expected a number or a tensor"),
        ({"data_range": (0.5, 1.0)}, ValueError, "xs: expected values inside data_range"),
        ({"data_range": (1.0, 0.0)}, ValueError, "data_range: expected low < high"),
        ({"noise": NoiseSpec(sigma1=0.1), "noise_box": -1.0}, ValueError, "noise_box: expected"),
        (
            {"noise": NoiseSpec(sigma1=0.1), "noise_box": torch.ones(2, 5, 7)},
            ValueError,
            r"noise_box: expected a shape broadcastable to \(B, T, r\)",
        ),
        ({"noise": "sde"}, TypeError, "noise: expected NoiseSpec"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match, generator):
    p = random_params(3, 1, 3, generator=generator)
    xs = torch.rand(2, 5, 1, generator=generator, dtype=torch.float64)
    kwargs = {"radius": 0.1, **kwargs}
    with pytest.raises(exc, match=match):
        logit_difference_bounds(p, xs, **kwargs)


def test_bad_search_options(generator):
    p = random_params(3, 1, 3, generator=generator)
    xs = torch.rand(2, 5, 1, generator=generator, dtype=torch.float64)
    with pytest.raises(ValueError, match="rtol: expected a number in"):
        certified_radius(p, xs, rtol=1.5)
    with pytest.raises(ValueError, match="labels: expected shape"):
        certified_radius(p, xs, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="generator"):
        certified_radius(p, xs, generator=3)


def test_input_set_l2_with_range_takes_the_better_superset():
    x0 = torch.full((1, 3, 1), 0.05, dtype=torch.float64)
    inset = InputSet(x0, torch.tensor([0.5], dtype=torch.float64), "l2", (0.0, 1.0))
    w = torch.tensor([[[1.0]], [[1.0]], [[1.0]]], dtype=torch.float64)  # (n, B, K)
    const = torch.zeros(1, 1, dtype=torch.float64)
    # Ball: -0.5 * sqrt(3); clipped box: each coordinate >= -0.05, total -0.15.
    torch.testing.assert_close(inset.bound(w, const), torch.tensor([[-0.15]], dtype=torch.float64))
